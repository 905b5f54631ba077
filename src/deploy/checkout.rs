//! Step `checkout`: write the new commit into ROOT, link the shared
//! directories.
//!
//! Only what the plan changes is written (the plan is the diff between the
//! live commit and the new one); on a first deploy that is every file. The
//! snapshot serves meanwhile, so ROOT may be incomplete for as long as this
//! takes. A failure here restores ROOT from the snapshot.

use std::path::Path;

use anyhow::Result;

use super::state::Deploy;
use crate::journal::Phase;
use crate::progress::Count;
use crate::shared::Shared;

impl Deploy {
    /// Checks the new commit out into ROOT and links the shared directories.
    pub(super) fn checkout(&mut self) -> Result<()> {
        self.step("checkout", |d| {
            if d.first_deploy() {
                d.journal
                    .enter(&d.site.layout.state, Phase::FirstCheckout)?;
            }
            let root = d.site.layout.root();
            let changes = Some(Count {
                unit: "changes",
                total: Some(d.plan.changes.len() as u64),
            });
            let (source, plan, shared) = (&d.source, &d.plan, &d.site.shared);
            d.run.counted("checkout", changes, || {
                source.checkout(plan, &root, |_| crate::progress::advance())
            })?;
            d.run.pass("shared", || link_shared(shared, &root))?;
            let (a, m, del) = d.plan.counts();
            Ok(format!("{a} added, {m} modified, {del} deleted"))
        })
    }
}

/// Links the shared directories into `root` (after a checkout, before the hooks).
fn link_shared(shared: &Shared, root: &Path) -> Result<()> {
    for done in shared.link_into(root)? {
        tracing::info!("shared directory {done}");
    }
    Ok(())
}
