//! The deploy pipeline: Enscale's zero-downtime flow, one file per step.
//!
//! The order is written once, here, top to bottom:
//!
//! | step | file | what it does |
//! |---|---|---|
//! | lock | `lock.rs` | the deploy lock, recovery of an interrupted deploy |
//! | fetch | `fetch.rs` | fetch the branch, resolve the commit (up to date: stop) |
//! | snapshot | `snapshot.rs` | copy ROOT into `ROOT_<timestamp>`, start the change watches |
//! | in-snapshot | `hooks.rs` | `in_snapshot` inside the snapshot, before it serves |
//! | switch-to-snapshot | `switch.rs` | carry uploads over, point the link at the snapshot, drain |
//! | checkout | `checkout.rs` | write the new commit into ROOT, link the shared directories |
//! | hooks | `hooks.rs` | `after_checkout` (and, after the copy-back, `before_switch`) |
//! | copy-back | `copy_back.rs` | user files the snapshot got meanwhile, back into ROOT |
//! | switch-to-root | `switch_back.rs` | last copy-back, OPcache reset, point the link back, health check |
//! | after-switch | `hooks.rs` | `after_switch` in ROOT, which serves the new version |
//! | evict | `evict.rs` | remove the oldest snapshots |
//! | record | `record.rs` | the history line and the summary |
//!
//! [`prepare`] runs the steps up to the copy-back: the site still serves the
//! old version (the snapshot) and ROOT holds the new one. [`Prepared::commit`]
//! runs the rest; [`Prepared::abort`] restores ROOT instead. [`deploy`] is
//! both halves in a row. Any failure before the switch back restores ROOT
//! from the snapshot: the site serves the old version throughout.
//!
//! Why each step is what it is: `docs/flow.md` and `docs/zero-downtime.md`.

mod after_switch;
mod checkout;
mod copy_back;
mod dry_run;
mod evict;
mod fetch;
mod hooks;
mod in_snapshot;
mod lock;
mod record;
mod restore;
mod snapshot;
mod state;
mod timing;
mod to_root;
mod to_snapshot;
mod types;

use anyhow::Result;

pub use types::{DryRun, Outcome, Request, Summary, Trigger};

use crate::site::Site;
use fetch::Fetched;
use state::{Deploy, OnUnhealthy};
use timing::Run;
pub use to_root::WAIT_PASS;

/// Runs the whole pipeline once (`rootswap deploy`).
pub fn deploy(site: &Site, req: &Request) -> Result<Outcome> {
    if req.dry_run {
        return dry_run::run(site, req);
    }
    match prepare(site, req)? {
        Prepare::UpToDate { commit } => Ok(Outcome::UpToDate { commit }),
        Prepare::Ready(p) => p.commit(),
    }
}

/// What [`prepare`] left.
pub enum Prepare {
    /// The commit is already live; nothing was touched.
    UpToDate {
        /// The live commit.
        commit: String,
    },
    /// ROOT holds the new version, the snapshot serves the old one.
    Ready(Prepared),
}

/// A deploy between its two halves: it holds the deploy lock, the site
/// serves the old version, ROOT holds the new one.
pub struct Prepared(Box<Deploy>);

/// The first half: lock, fetch, snapshot, switch to the snapshot, checkout,
/// hooks, copy-back (then `before_switch`).
pub fn prepare(site: &Site, req: &Request) -> Result<Prepare> {
    let fresh = lock::fresh(site);
    let result = prepare_locked(site, req);
    if result.is_err() && fresh {
        lock::forget_fresh_state(site);
    }
    result
}

fn prepare_locked(site: &Site, req: &Request) -> Result<Prepare> {
    let run = Run::new(&site.config, req);
    let span = run.span.clone();
    let _enter = span.enter();
    let locked = lock::acquire(site, req.adopt_current)?;
    let mut d = match fetch::fetch(site, req, locked, run)? {
        Fetched::UpToDate(commit) => return Ok(Prepare::UpToDate { commit }),
        Fetched::New(d) => d,
    };
    if d.first_deploy() {
        d.guard(|d| {
            d.checkout()?;
            d.hooks()?;
            d.before_switch()
        })?;
        return Ok(Prepare::Ready(Prepared(d)));
    }
    d.guard(|d| d.snapshot())?;
    // Its own failure path: the snapshot goes, ROOT never stopped serving.
    d.in_snapshot()?;
    d.guard(|d| {
        d.switch_to_snapshot()?;
        d.checkout()?;
        d.hooks()?;
        d.copy_back()
    })?;
    Ok(Prepare::Ready(Prepared(d)))
}

impl Prepared {
    /// The commit being deployed (full hex id).
    pub fn commit_id(&self) -> &str {
        self.0.commit_hex()
    }

    /// The snapshot serving now (None on a first deploy).
    pub fn snapshot(&self) -> Option<&str> {
        self.0.snapshot_name()
    }

    /// Clears php-fpm's OPcache ahead of the switch back (a fleet does it
    /// before its commit point, so that no node's switch waits for a busy
    /// php-fpm). The site still serves the snapshot.
    pub fn clear_opcache(&mut self) {
        let span = self.0.run.span.clone();
        let _enter = span.enter();
        self.0.clear_opcache_early();
    }

    /// The second half: switch back to ROOT (last copy-back, OPcache reset,
    /// health check: a failing one rolls back), evict, record.
    pub fn commit(self) -> Result<Outcome> {
        let mut d = self.0;
        let span = d.run.span.clone();
        let _enter = span.enter();
        if let Err(e) = d.switch_to_root(None, OnUnhealthy::RollBack) {
            d.journal.keep_error(&d.site.layout.state, &e);
            return Err(e);
        }
        d.after_switch_gate()?;
        d.finish()
    }

    /// The fleet's second half: switch back to ROOT, not before `at` (the
    /// instant every node renames), and run the health check, whose failure
    /// is reported ([`Switched::unhealthy`]), not acted on: the fleet either
    /// finishes ([`Switched::finish`]) or rolls back on every node
    /// ([`Switched::revert`]).
    pub fn switch(self, at: Option<std::time::Instant>) -> Result<Switched> {
        let mut d = self.0;
        let span = d.run.span.clone();
        let _enter = span.enter();
        if let Err(e) = d.switch_to_root(at, OnUnhealthy::Report) {
            d.journal.keep_error(&d.site.layout.state, &e);
            return Err(e);
        }
        Ok(Switched(d))
    }

    /// Gives up: ROOT is restored from the snapshot and the link points back
    /// at it; the deploy is recorded as aborted with `reason`. Nothing ever
    /// served the new version.
    pub fn abort(self, reason: &str) -> Result<()> {
        let span = self.0.run.span.clone();
        let _enter = span.enter();
        self.0.abort(reason)
    }
}

/// A fleet deploy after its switch back: the new version is live here; the
/// snapshot (the old version) is kept until the fleet has settled.
pub struct Switched(Box<Deploy>);

impl Switched {
    /// The health check's failure after the switch back, if it failed.
    pub fn unhealthy(&self) -> Option<&str> {
        self.0.unhealthy.as_deref()
    }

    /// The fleet settled on the new version: `hooks.after_switch` (its
    /// failure is reported: the fleet has settled, one node does not roll
    /// back alone), evict, record.
    pub fn finish(self) -> Result<Outcome> {
        let mut d = self.0;
        let span = d.run.span.clone();
        let _enter = span.enter();
        d.after_switch();
        d.finish()
    }

    /// The fleet rolls back: at `at`, the link goes back to the snapshot,
    /// then ROOT is restored from it; recorded as rolled back with `reason`.
    /// Returns the instant the link went back (ns since the epoch, the
    /// filesystem's clock).
    pub fn revert(self, at: Option<std::time::Instant>, reason: &str) -> Result<u64> {
        let span = self.0.run.span.clone();
        let _enter = span.enter();
        self.0.revert(at, reason)
    }
}

/// A fresh deploy id: local time plus a few random-ish hex digits.
pub fn new_id() -> String {
    timing::new_id()
}
