//! Putting the old version back from inside a deploy: after a failed step,
//! on a fleet abort, and after a failed health check.
//!
//! ROOT is restored from the snapshot ([`crate::recover::restore_root`], the
//! same code recovery after a crash uses) and the link points at it again;
//! uploads ROOT received meanwhile are kept. The history records why.

use std::time::Instant;

use anyhow::{anyhow, Result};

use super::state::Deploy;
use super::state::OnUnhealthy;
use crate::journal::{Journal, Phase};

impl Deploy {
    /// A step failed with `e`: serve the old version and say so. The
    /// history records the error in every case; should this process die
    /// while it puts the old version back, the journal carries the error to
    /// the recovery, which records it.
    pub(super) fn fail(&mut self, e: anyhow::Error) -> anyhow::Error {
        if self.first_deploy() {
            // The first switch moves the journal on; nothing was live before,
            // so recovery undoes a first checkout (ROOT goes unless it serves).
            if self.journal.phase != Phase::FirstCheckout {
                if let Err(je) = self
                    .journal
                    .enter(&self.site.layout.state, Phase::FirstCheckout)
                {
                    tracing::warn!("{je:#}");
                }
            }
            if let Err(re) = crate::recover::clean_up_failed(&self.site) {
                tracing::warn!("cannot clean up the failed first deploy: {re:#}");
            }
            self.record("failed", Some(format!("{e:#}")));
            return e.context(
                "first deploy failed; nothing was live before, so the link was not created",
            );
        }
        let root_serves = self
            .site
            .layout
            .live_name()
            .is_ok_and(|n| n.as_deref() == Some(self.site.layout.root_name.as_str()));
        if self.journal.phase < Phase::Rewrite && (root_serves || self.served.is_none()) {
            // ROOT was not touched and still serves (or there is no snapshot
            // to restore from): only the (partial) snapshot goes.
            if let Err(re) = crate::recover::clean_up_failed(&self.site) {
                tracing::warn!("cannot clean up after the failed snapshot: {re:#}");
            }
            let note = match root_serves {
                true => "ROOT was not touched and stays live",
                false => "ROOT was not touched",
            };
            self.record("failed", Some(format!("{e:#}\n{note}")));
            return e;
        }
        self.journal.error = Some(format!("{e:#}"));
        let snap = self.snapshot_name().unwrap_or_default().to_string();
        let msg = match self.restore(None) {
            Ok(()) => format!(
                "{e:#}\nROOT was restored from {snap} and the previous version stays live"
            ),
            Err(re) => format!(
                "{e:#}\nrestoring ROOT from {snap} failed too ({re:#}); the site keeps serving the complete snapshot {snap}"
            ),
        };
        self.record("failed", Some(msg.clone()));
        anyhow!(msg)
    }

    /// Restores ROOT from the snapshot and points the link back at it.
    /// `served_since`: when ROOT started serving the new version (its uploads are kept).
    /// ROOT's own caches are rebuilt by `hooks.in_snapshot` before it serves
    /// (see [`crate::recover::restore_root`]).
    fn restore(&mut self, served_since: Option<u64>) -> Result<()> {
        let Some(snap) = self.snapshot_name().map(str::to_string) else {
            anyhow::bail!("this deploy took no snapshot, so there is nothing to restore ROOT from");
        };
        self.journal
            .enter(&self.site.layout.state, Phase::Restore)?;
        let env = crate::hooks::HookEnv::new(
            &self.site.config,
            self.previous.as_deref().unwrap_or_default(),
            &self.commit_hex,
            &self.site.layout.entry(&snap).to_string_lossy(),
        );
        crate::recover::restore_root(
            &self.site,
            &snap,
            &self.classifier,
            (self.journal.switched_at, served_since),
            &env,
        )?;
        Journal::finish(&self.site.layout.state)
    }

    /// Gives up a prepared deploy (a fleet that did not reach its commit point).
    pub(super) fn abort(mut self: Box<Self>, reason: &str) -> Result<()> {
        tracing::warn!("deploy {} aborted: {reason}", self.run.id);
        if self.first_deploy() {
            crate::recover::recover(&self.site)?;
        } else {
            self.restore(None)?;
        }
        self.record("aborted", Some(reason.to_string()));
        Ok(())
    }

    /// After the switch back: a failing health check puts the old version
    /// back at once (serve the snapshot, drain, restore ROOT, serve ROOT), or,
    /// in a fleet, is kept for the fleet to decide ([`Deploy::revert`]).
    pub(super) fn health_gate(&mut self, unhealthy: OnUnhealthy) -> Result<()> {
        let Some(hc) = self.site.config.health_check.clone() else {
            return Ok(());
        };
        let Err(e) = self.run.pass("health-check", || crate::health::check(&hc)) else {
            return Ok(());
        };
        if unhealthy == OnUnhealthy::Report {
            tracing::error!("{e:#}; the fleet decides whether every node rolls back");
            self.unhealthy = Some(format!("{e:#}"));
            return Ok(());
        }
        let snap = self.snapshot_name().unwrap_or_default().to_string();
        let msg = match self.roll_back_unhealthy(&snap, None) {
            Ok(_) => format!("{e:#}\nthe link went back to {snap} and ROOT was restored from it: the previous version is live"),
            Err(re) => format!("{e:#}\nrolling back failed too ({re:#})"),
        };
        self.record("rolled-back", Some(msg.clone()));
        Err(anyhow!(msg))
    }

    /// The fleet rolls back after its commit point (a node's health check or
    /// switch failed): at `at`, the link goes back to the snapshot, which
    /// holds the old version; then ROOT is restored from it as after a
    /// failed health check. Recorded as rolled back, with `reason`.
    /// Returns the instant the link went back (ns, filesystem clock).
    pub(super) fn revert(mut self: Box<Self>, at: Option<Instant>, reason: &str) -> Result<u64> {
        let snap = self.snapshot_name().unwrap_or_default().to_string();
        if self.first_deploy() || snap.is_empty() {
            anyhow::bail!(
                "this node had nothing live before the deploy: there is no snapshot to go back to"
            );
        }
        let res = self.roll_back_unhealthy(&snap, at);
        self.state.deployed = self.previous.clone();
        self.state.submodules = self.previous_submodules;
        self.state.pinned_from = None;
        let saved = self.state.save(&self.site.layout.state);
        let msg = match &res {
            Ok(_) => format!("{reason}\nthe link went back to {snap} and ROOT was restored from it: the previous version is live"),
            Err(re) => format!("{reason}\nrolling back failed ({re:#})"),
        };
        self.record("rolled-back", Some(msg));
        let back = res?;
        saved.map(|()| back)
    }

    /// Returns the instant the link went back to the snapshot (ns).
    pub(super) fn roll_back_unhealthy(&mut self, snap: &str, at: Option<Instant>) -> Result<u64> {
        let switched_back = self.served.as_ref().and_then(|s| s.switched_back);
        // Journaled first: a crash from here on restores, it does not roll forward.
        self.journal
            .enter(&self.site.layout.state, Phase::Restore)?;
        self.wait_for_switch_instant(at);
        let back = crate::fsutil::fs_now_ns(&self.site.layout.state);
        crate::link::point_link(&self.site.layout.link(), snap)?;
        let _ = crate::drain::wait(&self.site.config, &self.site.layout.root());
        // Uploads ROOT received during the snapshot copy, and while it served
        // the new version, are kept.
        self.restore(switched_back)?;
        // restore_root cleared the OPcache before and after its switch; also
        // drop the bytecode of exactly the files this deploy changed.
        let _ = crate::opcache::clear_for_deploy(
            self.site.php_fpm(),
            &self.site.config,
            &self.site.layout.root(),
            self.plan.changes.iter().map(|c| c.path.as_path()),
            "after rolling back",
        );
        Ok(back)
    }
}
