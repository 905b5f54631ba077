//! Step `fetch`: bring the branch into the Git cache and decide what to deploy.
//!
//! Everything a deploy needs to know about the two commits is worked out
//! here, once: the plan (what changes in ROOT), the files the new commit
//! tracks, and the classifier of user content (the live commit's tracked
//! files and `.gitignore` rules), which every later pass reuses.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{Context, Result};
use git2::Oid;

use super::state::Deploy;
use super::state::Locked;
use super::timing::Run;
use super::types::Request;
use crate::config::Config;
use crate::journal::{Journal, Phase};
use crate::layout::Layout;
use crate::shared::Shared;
use crate::site::Site;
use crate::source::{short, ChangeKind, GitSource, Plan};

/// What the fetch found.
pub(super) enum Fetched {
    /// The commit is already live.
    UpToDate(String),
    /// A deploy to run.
    New(Box<Deploy>),
}

/// Fetches, resolves the commit to deploy and plans the checkout.
pub(super) fn fetch(site: &Site, req: &Request, locked: Locked, mut run: Run) -> Result<Fetched> {
    let Locked { lock, state } = locked;
    let (cfg, layout) = (&site.config, &site.layout);
    run.begin("fetch");
    let (mut source, commit) = run.pass("git fetch", || open_and_fetch(site, req))?;
    let previous = state.deployed.clone();
    let prev_oid = previous
        .as_deref()
        .and_then(|p| Oid::from_str(p).ok())
        .filter(|_| previous.as_deref().is_some_and(|p| source.has_commit(p)));
    let previous_submodules = state.submodules;
    source.set_live(prev_oid, previous_submodules);
    let root_empty = layout.root_is_empty()?;
    let same_commit = previous.as_deref() == Some(commit.to_string().as_str());
    let mut plan = match run.pass("plan", || source.plan(prev_oid, commit)) {
        Ok(plan) => plan,
        Err(e) if e.is::<crate::source::RefusedTree>() => {
            return Err(record_refusal(&mut run, layout, commit, previous, e))
        }
        Err(e) => return Err(e),
    };
    // The same commit is up to date unless ROOT lacks its submodules (or
    // holds them under `source.submodules: false`).
    if same_commit && plan.changes.is_empty() && !req.force && !root_empty {
        tracing::info!("up to date ({})", short(commit));
        return Ok(Fetched::UpToDate(commit.to_string()));
    }
    for s in &plan.submodules {
        tracing::info!("{s}");
    }
    // `--adopt-current`: the foreign link's tree becomes ROOT (and so the
    // version the snapshot serves) only once the commit is known to be deployable.
    let root_empty = match adopt_current(cfg, layout, req.adopt_current)? {
        true => false,
        false => root_empty,
    };
    run.warn(plan.external_links.iter().map(|l| l.to_string()));
    let classifier = run.pass("classify", || {
        crate::user_content::classifier(&site.rules, &source, prev_oid.unwrap_or(commit))
    })?;
    let new_tracked = match prev_oid {
        // The live commit's files, changed as the plan changes them: no second walk.
        Some(_) => tracked_after(classifier.tracked(), &plan),
        None => classifier.tracked().clone(),
    };
    // A site that was a `git clone`: its .git leaves the served tree before
    // the snapshot copies it (crate::adopt).
    for line in crate::adopt::before_snapshot(layout, cfg, &new_tracked, previous.is_none())? {
        tracing::info!("{line}");
    }
    shared_dirs(&site.shared, &layout.root(), &new_tracked, &mut plan)?;
    let journal = journal(&run, req, commit, &previous, root_empty);
    run.end(&what(&source, commit, previous.as_deref(), &plan));
    Ok(Fetched::New(Box::new(Deploy {
        site: site.clone(),
        req: req.clone(),
        _lock: lock,
        run,
        state,
        source,
        commit,
        commit_hex: commit.to_string(),
        previous,
        previous_submodules,
        plan,
        new_tracked,
        classifier,
        first: journal.phase == Phase::FirstCheckout,
        journal,
        served: None,
        evicted: Vec::new(),
        opcache_early: None,
        unhealthy: None,
    })))
}

/// The cache repository, opened and fetched (the branch, or everything
/// when `--ref` names something else), and the commit to deploy.
fn open_and_fetch(site: &Site, req: &Request) -> Result<(GitSource, Oid)> {
    let mut source = GitSource::open(&site.layout.state, &site.config.source)?;
    source.clear_stale_locks()?;
    let commit = source.fetch_and_resolve(req.reference.as_deref())?;
    Ok((source, commit))
}

/// The journal entry of the deploy about to start: a first checkout into
/// an empty ROOT, or a deploy that starts with the snapshot.
fn journal(
    run: &Run,
    req: &Request,
    commit: Oid,
    previous: &Option<String>,
    root_empty: bool,
) -> Journal {
    Journal {
        id: run.id.clone(),
        trigger: req.trigger.as_str().to_string(),
        commit: commit.to_string(),
        previous: previous.clone(),
        snapshot: None,
        phase: match root_empty {
            true => Phase::FirstCheckout,
            false => Phase::Snapshot,
        },
        started: run.started.to_rfc3339(),
        switched_at: None,
        error: None,
    }
}

/// A commit refused before anything was written because its tree has an
/// entry git refuses: one `failed` line in the history (a pusher tried
/// something; the operator should see it), then the error as it was.
fn record_refusal(
    run: &mut Run,
    layout: &crate::layout::Layout,
    commit: Oid,
    previous: Option<String>,
    e: anyhow::Error,
) -> anyhow::Error {
    run.abandon();
    let rec = crate::history::Record {
        id: run.id.clone(),
        started: run.started.to_rfc3339(),
        finished: chrono::Local::now().to_rfc3339(),
        trigger: run.trigger.as_str().to_string(),
        result: "failed".into(),
        commit: Some(commit.to_string()),
        previous_commit: previous,
        snapshot: None,
        evicted: Vec::new(),
        error: Some(format!("{e:#}; nothing was changed")),
        warnings: run.warnings.clone(),
        steps: run.steps.clone(),
        duration_ms: run.clock.elapsed().as_millis() as u64,
        fleet_id: run.fleet_id.clone(),
    };
    if let Err(err) = crate::history::append(&layout.state, &rec) {
        tracing::warn!("cannot record the refused deploy in the history: {err:#}");
    }
    e
}

/// The shared directories, checked before anything changes; once linked,
/// the checkout leaves what is below them alone (dropped from `plan`).
fn shared_dirs(
    shared: &Shared,
    root: &std::path::Path,
    new_tracked: &HashSet<PathBuf>,
    plan: &mut Plan,
) -> Result<()> {
    if !shared.is_empty() {
        shared.check(root, new_tracked)?;
        let linked = shared.linked_in(root);
        plan.changes
            .retain(|c| !crate::shared::covers(&linked, &c.path));
    }
    Ok(())
}

/// The step's line: the commit, the live one, what the checkout will do.
fn what(source: &GitSource, commit: Oid, previous: Option<&str>, plan: &Plan) -> String {
    let (a, m, d) = plan.counts();
    let from = previous
        .map(|p| format!(" (live: {})", crate::commit::short(p)))
        .unwrap_or_default();
    format!(
        "{}{from}; {a} added, {m} modified, {d} deleted",
        source.describe(commit)
    )
}

/// The files tracked after `plan`, from those tracked before it.
fn tracked_after(before: &HashSet<PathBuf>, plan: &Plan) -> HashSet<PathBuf> {
    let mut out = before.clone();
    for c in &plan.changes {
        match c.kind {
            ChangeKind::Deleted => out.remove(c.path.as_path()),
            ChangeKind::Added { .. } | ChangeKind::Modified { .. } => {
                out.insert(c.path.to_path_buf())
            }
        };
    }
    out
}

/// With `--adopt-current` and a foreign link: copies its target into the
/// empty ROOT with the copy engine, so the deploy that follows treats it
/// as the live site (its untracked files are user content). True when it did.
pub(super) fn adopt_current(cfg: &Config, layout: &Layout, adopt_current: bool) -> Result<bool> {
    if !adopt_current {
        return Ok(false);
    }
    let Some(target) = layout.foreign_link()? else {
        tracing::info!(
            "--adopt-current: {} is not a foreign link; nothing to adopt",
            layout.link().display()
        );
        return Ok(false);
    };
    let root = layout.root();
    if root.is_dir() {
        // Empty (checked under the lock's preflight): copy_tree wants a new directory.
        std::fs::remove_dir(&root)
            .with_context(|| format!("cannot remove the empty {}", root.display()))?;
    }
    let stats = crate::copy::copy_tree(&target, &root, &crate::snapshots::copy_options(cfg))
        .with_context(|| format!("cannot copy {} into {}", target.display(), root.display()))?;
    tracing::info!(
        "adopted {}: copied {} into {} ({} files); the deploy goes on from there",
        layout.link().display(),
        target.display(),
        root.display(),
        stats.files
    );
    Ok(true)
}
