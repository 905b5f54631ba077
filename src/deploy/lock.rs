//! Step `lock`: one deploy at a time per webroot, and a clean start.
//!
//! The lock is a kernel `flock` on a file in the state directory: it goes
//! away with the process, so a crash never leaves a stale lock. With the
//! lock held, an interrupted deploy is recovered first (see
//! [`crate::recover`]), so every deploy starts from one complete version.

use anyhow::Result;

use crate::config::Config;
use crate::layout::{Layout, LinkState};
use crate::lock::DeployLock;
use crate::state::State;

/// The webroot, locked, with any interrupted deploy recovered.
pub(super) struct Locked {
    pub(super) layout: Layout,
    pub(super) lock: DeployLock,
    pub(super) state: State,
}

/// Takes the deploy lock (creating the state directory) and recovers.
pub(super) fn acquire(cfg: &Config) -> Result<Locked> {
    let layout = Layout::from_config(cfg);
    layout.preflight()?;
    crate::fsutil::ensure_private_dir(&layout.state)?;
    let lock = DeployLock::acquire(&layout.state)?;
    crate::recover::recover(cfg, &layout)?;
    let state = State::load(&layout.state)?;
    Ok(Locked {
        layout,
        lock,
        state,
    })
}

/// Whether the state directory is still to be created (nothing was ever deployed).
pub(super) fn fresh(cfg: &Config) -> bool {
    !Layout::from_config(cfg).state.exists()
}

/// After a failed deploy into a webroot that had never been deployed to:
/// leave the disk as it was found (call once the lock is released).
pub(super) fn forget_fresh_state(cfg: &Config) {
    let layout = Layout::from_config(cfg);
    if !layout.root().exists() && !matches!(layout.link_state(), Ok(LinkState::Symlink(_))) {
        let _ = std::fs::remove_dir_all(&layout.state);
    }
}
