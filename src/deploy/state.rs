//! The state of one deploy as it goes through the steps: what every step
//! reads and leaves for the next. Steps import this file and `types.rs`,
//! never each other.
//!
//! A [`Deploy`] carries everything the steps share; each step is a method in
//! a file of its own, named like the step's line of output. What the steps
//! share beyond the state itself lives here too: the served snapshot
//! ([`Served`]), the lock ([`Locked`]), running a hook list as a step.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::Oid;

use super::timing::Run;
use super::types::Request;
use crate::deploy_lock::DeployLock;
use crate::hooks::{self, HookEnv};
use crate::journal::Journal;
use crate::progress::Count;
use crate::site::Site;
use crate::snapshots::Taken;
use crate::source::{GitSource, Plan};
use crate::state::State;
use crate::user_content::Watched;
use crate::user_content::{Classifier, Manifest};

/// One deploy between its steps.
pub(super) struct Deploy {
    /// The site, as opened by the front-end.
    pub(super) site: Site,
    pub(super) req: Request,
    /// Held until the deploy is dropped.
    pub(super) _lock: DeployLock,
    pub(super) run: Run,
    pub(super) state: State,
    pub(super) source: GitSource,
    pub(super) commit: Oid,
    pub(super) commit_hex: String,
    pub(super) previous: Option<String>,
    /// ROOT held the submodules of `previous` (`State::submodules` before
    /// this deploy): restored with `previous` when the deploy is reverted.
    pub(super) previous_submodules: bool,
    pub(super) plan: Plan,
    /// Files the new commit tracks.
    pub(super) new_tracked: HashSet<PathBuf>,
    /// User content as the live (old) commit defines it, for every pass.
    pub(super) classifier: Classifier,
    pub(super) journal: Journal,
    /// Nothing was live before this deploy (decided once, at the fetch: the
    /// journal's phase moves on at the first switch).
    pub(super) first: bool,
    /// The snapshot and what is known of both trees (None on a first deploy).
    pub(super) served: Option<Served>,
    pub(super) evicted: Vec<String>,
    /// The OPcache was cleared before the fleet's commit point: whether a
    /// php-fpm was found, and the reset's note.
    pub(super) opcache_early: Option<(bool, String)>,
    /// The health check failed after the switch back, in a fleet (which
    /// decides whether every node rolls back).
    pub(super) unhealthy: Option<String>,
}

impl Deploy {
    /// Nothing was live before: no snapshot, the checkout goes into an empty ROOT.
    pub(super) fn first_deploy(&self) -> bool {
        self.first
    }

    pub(super) fn commit_hex(&self) -> &str {
        &self.commit_hex
    }

    pub(super) fn snapshot_name(&self) -> Option<&str> {
        self.served.as_ref().map(|s| s.taken.name.as_str())
    }

    /// Runs step `name` of the flow: `body` does the work and says what it
    /// did, in a few words, for the step's line of output.
    pub(super) fn step(
        &mut self,
        name: &str,
        body: impl FnOnce(&mut Deploy) -> Result<String>,
    ) -> Result<()> {
        self.run.begin(name);
        match body(self) {
            Ok(what) => {
                self.run.end(&what);
                Ok(())
            }
            Err(e) => {
                self.run.abandon();
                Err(e)
            }
        }
    }

    /// The drain of `tree`, the tree traffic just left: requests that
    /// resolved it before the switch may still write there (a save, an
    /// upload). `carry` (one catch-up or copy-back pass, returning how many
    /// files it carried) runs every 25 ms while the drain waits, so such a
    /// write reaches the tree that serves now within milliseconds, not once
    /// the drain is over. Returns how many files were carried.
    pub(super) fn drain_carrying(
        &mut self,
        tree: &std::path::Path,
        mut carry: impl FnMut(&mut Served, &Classifier, &HashSet<PathBuf>) -> Result<usize>,
    ) -> Result<usize> {
        let Deploy {
            run,
            served,
            classifier,
            new_tracked,
            site,
            ..
        } = self;
        let s = served.as_mut().context("no snapshot serves")?;
        let mut carried = 0;
        let drained = run.pass("drain", || {
            crate::drain::wait_while(&site.config, tree, || {
                carried += carry(s, classifier, new_tracked)?;
                Ok(())
            })
        })?;
        run.warn(drained);
        Ok(carried)
    }

    /// Runs steps that change ROOT; when one fails, the old version is put
    /// back ([`Deploy::fail`]) and the error says so.
    pub(super) fn guard(&mut self, steps: impl FnOnce(&mut Deploy) -> Result<()>) -> Result<()> {
        match steps(self) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }
}

/// The served snapshot and what is known of the user files of both trees.
pub(super) struct Served {
    pub(super) taken: Taken,
    pub(super) root_path: PathBuf,
    /// ROOT's watch, until ROOT's user files are last looked at before the switch back.
    pub(super) root: Option<Watched>,
    /// ROOT's user files at the last look.
    pub(super) root_last: Manifest,
    /// Catch-up: ROOT's user files as last carried into the snapshot.
    pub(super) root_base: Manifest,
    pub(super) snap: Watched,
    /// The snapshot's user files at the last look.
    pub(super) snap_last: Manifest,
    /// Base of the first copy-back pass: the snapshot's user files after the
    /// copy and the catch-up (None once that pass ran).
    pub(super) before: Option<Manifest>,
    /// ROOT's user files, kept in step with what the passes do to ROOT, from
    /// the last look before the switch back.
    pub(super) root_seen: Option<Manifest>,
    /// When the link returned to ROOT (ns since the epoch).
    pub(super) switched_back: Option<u64>,
    /// User files copied into ROOT, over all copy-back passes.
    pub(super) copied: usize,
    /// User files removed from ROOT, over all copy-back passes.
    pub(super) removed: usize,
    /// User files carried from ROOT into the snapshot before it served.
    pub(super) caught_up: usize,
}

/// Copy-back and catch-up passes count the user files they copy (how many
/// there are is known only inside the pass).
pub(super) const COPIED: Option<Count> = Some(Count {
    unit: "files copied",
    total: None,
});

/// What a failing health check after the switch back does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnUnhealthy {
    /// Put the old version back at once (a deploy on its own).
    RollBack,
    /// Keep serving and say so: the fleet decides, every node together.
    Report,
}

/// The webroot, locked, with any interrupted deploy recovered.
pub(super) struct Locked {
    pub(super) lock: DeployLock,
    pub(super) state: State,
}

impl Deploy {
    pub(super) fn served_ref(&self) -> Result<&Served> {
        self.served.as_ref().context("no snapshot serves")
    }

    /// Runs the hook list `stage` in `dir` as pass `pass` of the running step;
    /// returns a few words for the step's line.
    pub(super) fn run_hooks(&mut self, stage: &str, pass: &str, dir: &Path) -> Result<String> {
        let commands = match stage {
            "after_checkout" => &self.site.config.hooks.after_checkout,
            "in_snapshot" => &self.site.config.hooks.in_snapshot,
            "after_switch" => &self.site.config.hooks.after_switch,
            _ => &self.site.config.hooks.before_switch,
        };
        if commands.is_empty() {
            return Ok(String::new());
        }
        let env = self.hook_env();
        let timeout = self.site.config.hooks.timeout;
        self.run
            .pass(pass, || hooks::run_all(stage, commands, dir, &env, timeout))?;
        let n = commands.len();
        Ok(format!(
            "{stage}: {n} command{}",
            if n == 1 { "" } else { "s" }
        ))
    }

    pub(super) fn hook_env(&self) -> HookEnv {
        let snapshot = self
            .served
            .as_ref()
            .map(|s| s.taken.path.to_string_lossy().into_owned())
            .unwrap_or_default();
        HookEnv::new(
            &self.site.config,
            &self.commit_hex,
            self.previous.as_deref().unwrap_or_default(),
            &snapshot,
        )
    }
}
