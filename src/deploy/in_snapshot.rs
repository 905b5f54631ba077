//! Step `in-snapshot`: `hooks.in_snapshot`, run inside the snapshot just
//! taken, before the link points at it, so that what the application caches
//! about its location (Laravel's `config:cache`) names the snapshot. A
//! failure fails the deploy here: nothing was served from the snapshot and
//! ROOT was not touched; the snapshot is removed.

use anyhow::{anyhow, Context, Result};

use super::state::Deploy;

impl Deploy {
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
                crate::snapshots::remove(&self.site.layout, &self.site.config, &taken)
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
}
