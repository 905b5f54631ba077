//! `rootswap rollback [SNAPSHOT]`: make a snapshot's version live again,
//! with the same zero-downtime steps as a deploy.
//!
//! The snapshot's commit is known (recorded when it was taken, by inode, so
//! renamed snapshots keep it); rolling back deploys that commit through the
//! ordinary pipeline: the current ROOT is snapshotted first (so the rollback
//! can itself be undone), user content is carried over, and the branch head
//! rolled back from is pinned so that `rootswap serve` does not redeploy it
//! until the branch gets a new commit.

use anyhow::{bail, Result};

use crate::deploy::{self, Outcome, Request, Trigger};
use crate::site::Site;
use crate::snapshots;

/// Rolls back to `name` (default: the newest timestamped snapshot).
pub fn rollback(site: &Site, name: Option<&str>) -> Result<Outcome> {
    deploy::deploy(site, &request(site, name, None)?)
}

/// The deploy that rolls back to `name` (default: the newest timestamped
/// snapshot), with deploy id `id` (generated when None).
pub fn request(site: &Site, name: Option<&str>, id: Option<String>) -> Result<Request> {
    let layout = &site.layout;
    layout.preflight()?;
    let snap = match name {
        Some(n) => snapshots::find(layout, n)?,
        None => match layout.timestamped()?.pop() {
            Some(s) => s,
            None => bail!(
                "there is no snapshot to roll back to in {}; name one with `rootswap rollback NAME` (see `rootswap snapshots list`)",
                layout.webroot.display()
            ),
        },
    };
    let state = site.state()?;
    let Some(commit) = state.snapshot(&snap.path).and_then(|i| i.commit.clone()) else {
        bail!(
            "the commit of {} is not known (it holds a site rootswap adopted before its first deploy); \
             deploy a known version instead with `rootswap deploy --ref REF`",
            snap.name
        );
    };
    tracing::info!(
        "rolling back to {} ({})",
        snap.name,
        crate::commit::short(&commit)
    );
    Ok(Request {
        reference: Some(commit),
        force: true,
        trigger: Trigger::Rollback,
        id,
        ..Request::manual()
    })
}
