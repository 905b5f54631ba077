//! Step `copy-back`: user files the snapshot got while it served, back into ROOT.
//!
//! User content is what the live commit does not track, minus what its
//! `.gitignore` files ignore, plus `user_content.preserve`, minus
//! `user_content.exclude` (see [`crate::user_content`]). A pass looks only at
//! the snapshot's paths its change watch reports, and applies creations,
//! changes and deletions to ROOT; where ROOT holds a newer version of its
//! own, ROOT's wins; a file the new commit tracks keeps the commit's version.
//!
//! The first pass runs here, after the hooks; more run in the switch back,
//! until a pass finds nothing, then twice after the link returned to ROOT.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::state::Deploy;
use super::state::Served;
use super::state::COPIED;
use crate::user_content::{self, Carried, Classifier, Manifest};

impl Deploy {
    /// The first copy-back pass, then `before_switch`.
    pub(super) fn copy_back(&mut self) -> Result<()> {
        self.step("copy-back", |d| {
            let cutoff = d.journal.switched_at;
            let r = d.copy_back_pass("copy-back", cutoff, false)?;
            Ok(format!(
                "{} copied, {} removed",
                r.copied.len(),
                r.removed.len()
            ))
        })?;
        self.before_switch()
    }

    /// One copy-back pass named `name`; `after_switch_back`: ROOT serves
    /// again, and a file deleted there since is not brought back.
    pub(super) fn copy_back_pass(
        &mut self,
        name: &str,
        cutoff: Option<u64>,
        after_switch_back: bool,
    ) -> Result<Carried> {
        let Deploy {
            run,
            served,
            classifier,
            new_tracked,
            ..
        } = self;
        let s = served.as_mut().context("no snapshot serves")?;
        run.counted(name, COPIED, || {
            s.pass(classifier, new_tracked, cutoff, after_switch_back)
        })
    }
}

impl Served {
    /// The snapshot's user files now (its state at the last look plus what the
    /// watch saw change since) applied to ROOT.
    pub(super) fn pass(
        &mut self,
        c: &Classifier,
        new_tracked: &HashSet<PathBuf>,
        cutoff: Option<u64>,
        after_switch_back: bool,
    ) -> Result<Carried> {
        let mut now = self.snap.manifest(&self.snap_last, c)?;
        let base = self.before.as_ref().unwrap_or(&self.snap_last);
        let root_seen = self.root_seen.as_ref().filter(|_| after_switch_back);
        let r = user_content::carry(
            &self.taken.path,
            &self.root_path,
            base,
            &mut now,
            new_tracked,
            root_seen,
            cutoff,
        )?;
        if let Some(seen) = &mut self.root_seen {
            applied_to_root(seen, &now, &r);
        }
        self.before = None;
        self.snap_last = now;
        self.copied += r.copied.len();
        self.removed += r.removed.len();
        Ok(r)
    }
}

/// Keeps `root_seen` (ROOT's user files) in step with what a copy-back pass
/// did to ROOT: a copied file's entry in `now` is what was written there; a
/// removed file is gone (removed by rootswap, not deleted by a request).
fn applied_to_root(root_seen: &mut Manifest, now: &Manifest, r: &Carried) {
    for p in &r.copied {
        if let Some(sig) = now.get(p) {
            root_seen.insert(p.clone(), *sig);
        }
    }
    for p in &r.removed {
        root_seen.remove(p);
    }
}
