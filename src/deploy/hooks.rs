//! The hook lists of a deploy, each a step of its own when it has commands
//! (and no line at all when it has none):
//!
//! | list | step | runs in | when |
//! |---|---|---|---|
//! | `in_snapshot` | `in-snapshot` | the snapshot | after the snapshot copy, before the link points at it |
//! | `after_checkout` | `hooks` | ROOT | right after the checkout, while the snapshot serves |
//! | `before_switch` | `before-switch` | ROOT | after the copy-back, the last thing before the link may return to ROOT |
//! | `after_switch` | `after-switch` | ROOT | once ROOT serves the new version (after the switch back and its drain) |
//!
//! Hooks get `ROOTSWAP_*` variables and `hooks.env`. A failing `in_snapshot`
//! hook fails the deploy before anything is served from the snapshot (ROOT,
//! untouched, keeps serving; the snapshot is removed); a failing
//! `after_checkout` or `before_switch` hook fails it while the snapshot
//! serves, and ROOT is restored from the snapshot. A failing `after_switch`
//! hook is reported, or rolls back (`hooks.after_switch_failure`).

use std::path::Path;

use anyhow::{anyhow, Context, Result};

use super::run::Deploy;
use crate::config::AfterSwitchFailure;
use crate::hooks::{self, HookEnv};

/// What the `after_switch` hooks' failure was (None: they passed or there are none).
pub(super) type AfterSwitchFailed = Option<String>;

impl Deploy {
    /// `hooks.after_checkout`, as step `hooks` when there are any.
    pub(super) fn hooks(&mut self) -> Result<()> {
        if self.site.config.hooks.after_checkout.is_empty() {
            return Ok(());
        }
        self.step("hooks", |d| {
            let root = d.site.layout.root();
            d.run_hooks("after_checkout", "hooks", &root)
        })
    }

    /// Runs the hook list `stage` in `dir` as pass `pass` of the running step;
    /// returns a few words for the step's line.
    fn run_hooks(&mut self, stage: &str, pass: &str, dir: &Path) -> Result<String> {
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

    /// `hooks.in_snapshot`, as step `in-snapshot` when there are any: run
    /// inside the snapshot just taken, before the link points at it, so that
    /// what the application caches about its location names the snapshot.
    /// What the hooks write there is the snapshot's own state, not user
    /// content to carry back into ROOT. A failure fails the deploy here:
    /// nothing was served from the snapshot and ROOT was not touched.
    pub(super) fn in_snapshot(&mut self) -> Result<()> {
        if self.site.config.hooks.in_snapshot.is_empty() {
            return Ok(());
        }
        let r = self.step("in-snapshot", |d| {
            let snap = d.served_ref()?.taken.path.clone();
            let what = d.run_hooks("in_snapshot", "in-snapshot hooks", &snap)?;
            d.rebaseline_snapshot()?;
            Ok(what)
        });
        r.map_err(|e| self.fail_before_serving(e))
    }

    /// The snapshot's user files after the `in_snapshot` hooks become the
    /// base the copy-back compares against: only what requests change from
    /// now on is carried back into ROOT.
    fn rebaseline_snapshot(&mut self) -> Result<()> {
        let Deploy {
            served, classifier, ..
        } = self;
        let s = served.as_mut().context("no snapshot serves")?;
        let now = s.snap.manifest(&s.snap_last, classifier)?;
        s.before = Some(now.clone());
        s.snap_last = now;
        Ok(())
    }

    /// The deploy failed before the link ever pointed at the snapshot: ROOT
    /// still serves, untouched. The snapshot (whose hooks failed) goes, the
    /// journal is closed and the failure recorded.
    fn fail_before_serving(&mut self, e: anyhow::Error) -> anyhow::Error {
        let snap = self.snapshot_name().unwrap_or_default().to_string();
        let removed = match self.served.as_ref() {
            Some(s) => {
                let taken = crate::layout::Snapshot {
                    name: s.taken.name.clone(),
                    path: s.taken.path.clone(),
                    stamp: None,
                };
                crate::snapshot::remove(&self.site.layout, &self.site.config, &taken)
                    .map(|()| format!("the snapshot {snap} was removed"))
                    .unwrap_or_else(|re| format!("removing the snapshot {snap} failed ({re:#})"))
            }
            None => String::new(),
        };
        if let Err(je) = crate::journal::Journal::finish(&self.site.layout.state) {
            tracing::warn!("{je:#}");
        }
        let msg = format!(
            "{e:#}\nnothing was served from the snapshot: ROOT was not touched and keeps serving \
             the previous version; {removed}"
        );
        self.record("failed", Some(msg.clone()));
        anyhow!(msg)
    }

    /// `hooks.before_switch`, as a step of its own when there are any; then
    /// a warning for credential files the hooks left where they are served.
    pub(super) fn before_switch(&mut self) -> Result<()> {
        if !self.site.config.hooks.before_switch.is_empty() {
            self.step("before-switch", |d| {
                let root = d.site.layout.root();
                d.run_hooks("before_switch", "before-switch hooks", &root)
            })?;
        }
        let exposed =
            hooks::exposed_credentials(&self.site.layout.root(), &self.site.config.public);
        for w in &exposed {
            tracing::warn!("{w}");
        }
        self.run.warn(exposed);
        Ok(())
    }

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

    fn hook_env(&self) -> HookEnv {
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
