//! `rootswap deploy --dry-run`: fetch (into a throwaway cache when there is
//! none yet), plan, and list what would change and which user files would
//! be carried into the new version. Nothing on disk changes.

use std::path::PathBuf;

use anyhow::Result;
use git2::Oid;

use super::types::{DryRun, Outcome, Request};
use crate::site::Site;
use crate::source::GitSource;
use crate::user_content;

/// `rootswap deploy --dry-run`: what would change, touching nothing.
pub(super) fn run(site: &Site, req: &Request) -> Result<Outcome> {
    let (cfg, layout) = (&site.config, &site.layout);
    layout.preflight()?;
    // Fetch into a throwaway cache when there is none yet, so a dry run creates nothing.
    let tmp;
    let state_dir = if layout.state.exists() {
        layout.state.clone()
    } else {
        tmp = tempfile_dir()?;
        tmp.clone()
    };
    let result = (|| {
        let state = site.state()?;
        let mut source = GitSource::open(&state_dir, &cfg.source)?;
        let to = source.fetch_and_resolve(req.reference.as_deref())?;
        let from = state
            .deployed
            .as_deref()
            .and_then(|p| Oid::from_str(p).ok())
            .filter(|o| source.has_commit(&o.to_string()));
        source.set_live(from, state.submodules);
        let plan = source.plan(from, to)?;
        let mut out = DryRun {
            from: state.deployed.clone(),
            to: to.to_string(),
            described: source.describe(to),
            added: Vec::new(),
            modified: Vec::new(),
            deleted: Vec::new(),
            user_files: Vec::new(),
            notes: plan.submodules.iter().map(|s| s.to_string()).collect(),
        };
        out.notes
            .extend(plan.external_links.iter().map(|l| l.to_string()));
        let adopted = match state.deployed {
            None => crate::adopt::adopt_git_clone(layout, cfg, &source.tracked(to)?, true)?,
            Some(_) => crate::adopt::Adopted::default(),
        };
        out.notes.extend(adopted.lines(None));
        if let Some(target) = layout.foreign_link()? {
            out.notes.push(layout.foreign_link_advice(&target));
        }
        for ch in &plan.changes {
            match ch.kind {
                crate::source::ChangeKind::Added { .. } => out.added.push(ch.path.to_path_buf()),
                crate::source::ChangeKind::Modified { .. } => {
                    out.modified.push(ch.path.to_path_buf())
                }
                crate::source::ChangeKind::Deleted => out.deleted.push(ch.path.to_path_buf()),
            }
        }
        if layout.root().is_dir() {
            let c = crate::user_content::classifier(&site.rules, &source, from.unwrap_or(to))?;
            let new_tracked = source.tracked(to)?;
            out.user_files = user_content::scan(&layout.root(), &c)?
                .into_keys()
                .filter(|p| !new_tracked.contains(p))
                .filter(|p| adopted.git_dir.is_none() || !p.starts_with(".git"))
                .collect();
        }
        Ok(Outcome::DryRun(out))
    })();
    if state_dir != layout.state {
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    result
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "rootswap-dry-run-{}-{}",
        std::process::id(),
        super::timing::new_id()
    ));
    crate::fsutil::ensure_private_dir(&dir)?;
    Ok(dir)
}
