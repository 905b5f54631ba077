//! Step `lock`: one deploy at a time per webroot, and a clean start.
//!
//! The lock is a kernel `flock` on a file in the state directory: it goes
//! away with the process, so a crash never leaves a stale lock. With the
//! lock held, an interrupted deploy is recovered first (see
//! [`crate::recover`]), so every deploy starts from one complete version.

use anyhow::{Context, Result};

use crate::config::Config;
use crate::layout::{Layout, LinkState};
use crate::lock::DeployLock;
use crate::site::Site;
use crate::state::State;

/// The webroot, locked, with any interrupted deploy recovered.
pub(super) struct Locked {
    pub(super) lock: DeployLock,
    pub(super) state: State,
}

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

/// With `--adopt-current` and a foreign link: copies its target into the
/// empty ROOT with the copy engine, so the deploy that follows treats it
/// as the live site (its untracked files are user content). True when it did.
pub(super) fn adopt_current(cfg: &Config, layout: &Layout, adopt_current: bool) -> Result<bool> {
    if !adopt_current {
        return Ok(false);
    }
    let Some(target) = layout.foreign_link()? else {
        tracing::info!(
            "--adopt-current: {} is not a foreign link; nothing to adopt",
            layout.link().display()
        );
        return Ok(false);
    };
    let root = layout.root();
    if root.is_dir() {
        // Empty (checked under the lock's preflight): copy_tree wants a new directory.
        std::fs::remove_dir(&root)
            .with_context(|| format!("cannot remove the empty {}", root.display()))?;
    }
    let stats = crate::copy::copy_tree(&target, &root, &crate::snapshot::copy_options(cfg))
        .with_context(|| format!("cannot copy {} into {}", target.display(), root.display()))?;
    tracing::info!(
        "adopted {}: copied {} into {} ({} files); the deploy goes on from there",
        layout.link().display(),
        target.display(),
        root.display(),
        stats.files
    );
    Ok(true)
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
