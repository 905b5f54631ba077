//! Step `lock`: one deploy at a time per webroot, and a clean start.
//!
//! The lock is a kernel `flock` on a file in the state directory: it goes
//! away with the process, so a crash never leaves a stale lock. With the
//! lock held, an interrupted deploy is recovered first (see
//! [`crate::recover`]), so every deploy starts from one complete version.

use anyhow::Result;

use super::state::Locked;
use crate::deploy_lock::DeployLock;
use crate::layout::{Layout, LinkState};
use crate::site::Site;

/// Takes the deploy lock (creating the state directory) and recovers.
/// A foreign serving link is refused before anything changes, unless
/// `adopt_current` (`--adopt-current`) and ROOT is empty.
pub(super) fn acquire(site: &Site, adopt_current: bool) -> Result<Locked> {
    let layout = &site.layout;
    layout.preflight()?;
    check_foreign_link(layout, adopt_current)?;
    crate::fsutil::ensure_private_dir(&layout.state)?;
    let lock = DeployLock::acquire(&layout.state)?;
    crate::recover::recover(site)?;
    let state = site.state()?;
    Ok(Locked { lock, state })
}

/// A link to a tree outside the webroot: refused with the two ways out, or,
/// with `--adopt-current`, accepted when ROOT is empty (the fetch copies
/// the tree into ROOT once the commit is known to be deployable).
fn check_foreign_link(layout: &Layout, adopt_current: bool) -> Result<()> {
    let Some(target) = layout.foreign_link()? else {
        return Ok(());
    };
    if !adopt_current {
        anyhow::bail!("{}", layout.foreign_link_advice(&target));
    }
    if !layout.root_is_empty()? {
        anyhow::bail!(
            "`--adopt-current` copies {} into {root}, but {root} already holds files; move one of the two away and deploy again",
            target.display(),
            root = layout.root().display()
        );
    }
    Ok(())
}

/// Whether the state directory is still to be created (nothing was ever deployed).
pub(super) fn fresh(site: &Site) -> bool {
    !site.layout.state.exists()
}

/// After a failed deploy into a webroot that had never been deployed to:
/// leave the disk as it was found (call once the lock is released).
pub(super) fn forget_fresh_state(site: &Site) {
    let layout = &site.layout;
    if !layout.root().exists() && !matches!(layout.link_state(), Ok(LinkState::Symlink(_))) {
        let _ = std::fs::remove_dir_all(&layout.state);
    }
}
