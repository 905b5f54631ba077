//! Step `hooks`: the commands of `hooks.after_checkout` (right after the
//! checkout) and `hooks.before_switch` (the last thing before the link may
//! return to ROOT), run in ROOT while the snapshot serves. Each list is a
//! step of its own when it has commands, and no line at all when it has none.
//!
//! Hooks get `ROOTSWAP_*` variables and `hooks.env`; a hook that fails
//! fails the deploy, and ROOT is restored from the snapshot.

use anyhow::Result;

use super::run::Deploy;
use crate::hooks::{self, HookEnv};

impl Deploy {
    /// `hooks.after_checkout`, as step `hooks` when there are any.
    pub(super) fn hooks(&mut self) -> Result<()> {
        if self.cfg.hooks.after_checkout.is_empty() {
            return Ok(());
        }
        self.step("hooks", |d| {
            Ok(d.run_hooks("after_checkout")?
                .trim_start_matches("; ")
                .to_string())
        })
    }

    /// Runs the hook list `stage` (`after_checkout` or `before_switch`) as a
    /// pass of the running step; returns a few words for the step's line.
    fn run_hooks(&mut self, stage: &str) -> Result<String> {
        let commands = match stage {
            "after_checkout" => &self.cfg.hooks.after_checkout,
            _ => &self.cfg.hooks.before_switch,
        };
        if commands.is_empty() {
            return Ok(String::new());
        }
        let env = self.hook_env();
        let (root, timeout) = (self.layout.root(), self.cfg.hooks.timeout);
        let pass = if stage == "after_checkout" {
            "hooks"
        } else {
            "before-switch hooks"
        };
        self.run.pass(pass, || {
            hooks::run_all(stage, commands, &root, &env, timeout)
        })?;
        let n = commands.len();
        Ok(format!(
            "; {stage}: {n} command{}",
            if n == 1 { "" } else { "s" }
        ))
    }

    /// `hooks.before_switch`, as a step of its own when there are any; then
    /// a warning for credential files the hooks left where they are served.
    pub(super) fn before_switch(&mut self) -> Result<()> {
        if !self.cfg.hooks.before_switch.is_empty() {
            self.step("before-switch", |d| {
                Ok(d.run_hooks("before_switch")?
                    .trim_start_matches("; ")
                    .to_string())
            })?;
        }
        let exposed = hooks::exposed_credentials(&self.layout.root(), &self.cfg.public);
        for w in &exposed {
            tracing::warn!("{w}");
        }
        self.run.warn(exposed);
        Ok(())
    }

    fn hook_env(&self) -> HookEnv {
        let served = self.served.as_ref();
        HookEnv {
            commit: self.commit_hex.clone(),
            previous_commit: self.previous.clone().unwrap_or_default(),
            snapshot: served
                .map(|s| s.taken.path.to_string_lossy().into_owned())
                .unwrap_or_default(),
            root: self.layout.root().to_string_lossy().into_owned(),
            extra: self
                .cfg
                .hooks
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}
