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

use anyhow::Result;

use super::state::Deploy;
use crate::hooks;

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
}
