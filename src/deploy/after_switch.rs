//! Step `after-switch`: `hooks.after_switch`, run in ROOT once it serves the
//! new version (after the switch back and its drain): queue workers to
//! restart, caches to warm. A failure is reported, or rolls the deploy back
//! (`hooks.after_switch_failure: rollback`).

use anyhow::{anyhow, Result};

use super::state::Deploy;
use crate::config::AfterSwitchFailure;
use crate::hooks::{self, HookEnv};

/// What the `after_switch` hooks' failure was (None: they passed or there are none).
pub(super) type AfterSwitchFailed = Option<String>;

impl Deploy {
    /// `hooks.after_switch`, as step `after-switch` when there are any: ROOT
    /// serves the new version. A failure is a warning of the deploy
    /// (history, notification, `status`); it is returned for the caller to
    /// roll back when `hooks.after_switch_failure: rollback` says so.
    pub(super) fn after_switch(&mut self) -> AfterSwitchFailed {
        if self.site.config.hooks.after_switch.is_empty() {
            return None;
        }
        let mut failed = None;
        let r = self.step("after-switch", |d| {
            let root = d.site.layout.root();
            match d.run_hooks("after_switch", "after-switch hooks", &root) {
                Ok(what) => Ok(what),
                Err(e) => {
                    failed = Some(format!("{e:#}"));
                    Ok(String::from("FAILED"))
                }
            }
        });
        if let Err(e) = r {
            failed = Some(format!("{e:#}"));
        }
        let why = failed?;
        let w = format!("hooks.after_switch failed: {why}");
        tracing::error!("{w}");
        self.run.warn([w]);
        Some(why)
    }

    /// After the switch back (a deploy on its own): `after_switch`, and on
    /// its failure with `hooks.after_switch_failure: rollback`, back to the
    /// previous version (as after a failed health check; the hooks then run
    /// again for the previous version). A first deploy has nothing to go
    /// back to, and a fleet node (catching up) does not go back alone: they report.
    pub(super) fn after_switch_gate(&mut self) -> Result<()> {
        let Some(why) = self.after_switch() else {
            return Ok(());
        };
        let snap = self.snapshot_name().unwrap_or_default().to_string();
        if self.site.config.hooks.after_switch_failure != AfterSwitchFailure::Rollback
            || self.first_deploy()
            || self.run.fleet_id.is_some()
            || snap.is_empty()
        {
            return Ok(());
        }
        let res = self.roll_back_unhealthy(&snap, None);
        self.state.deployed = self.previous.clone();
        self.state.submodules = self.previous_submodules;
        self.state.pinned_from = None;
        if let Err(e) = self.state.save(&self.site.layout.state) {
            tracing::warn!("{e:#}");
        }
        let msg = match res {
            Ok(_) => {
                self.after_switch_for_previous();
                format!(
                    "hooks.after_switch failed: {why}\n`hooks.after_switch_failure: rollback`: the link went back to {snap} \
                     and ROOT was restored from it: the previous version is live"
                )
            }
            Err(re) => {
                format!("hooks.after_switch failed: {why}\nrolling back failed too ({re:#})")
            }
        };
        self.record("rolled-back", Some(msg.clone()));
        Err(anyhow!(msg))
    }

    /// After a rollback that followed the `after_switch` hooks: they run
    /// again, for the previous version (the commits swapped in their
    /// environment); a failure is a warning.
    pub(super) fn after_switch_for_previous(&mut self) {
        if self.site.config.hooks.after_switch.is_empty() {
            return;
        }
        let (commit, previous) = (
            self.previous.clone().unwrap_or_default(),
            self.commit_hex.clone(),
        );
        let env = HookEnv {
            commit,
            previous_commit: previous,
            ..self.hook_env()
        };
        let (root, timeout) = (self.site.layout.root(), self.site.config.hooks.timeout);
        let commands = &self.site.config.hooks.after_switch;
        let r = self.run.pass("after-switch hooks (previous version)", || {
            hooks::run_all("after_switch", commands, &root, &env, timeout)
        });
        if let Err(e) = r {
            let w = format!("hooks.after_switch failed after the rollback: {e:#}");
            tracing::error!("{w}");
            self.run.warn([w]);
        }
    }
}
