//! Persistent deploy state in `<state>/state.json`: which commit ROOT holds,
//! which commit each snapshot holds, and a rollback pin.
//!
//! Snapshots are identified by their directory's inode number, which a
//! rename keeps: a snapshot the user renamed still knows its commit.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// What rootswap remembers between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// Commit ROOT holds (the last successful deploy).
    pub deployed: Option<String>,
    /// ROOT holds the submodules of `deployed` (`source.submodules` when it
    /// was deployed; false for a state written before rootswap deployed
    /// submodules): the next plan starts from what ROOT really holds.
    #[serde(default)]
    pub submodules: bool,
    /// Branch head that was live when a rollback or a manual deploy of another
    /// ref happened: the service does not redeploy it (only a newer commit).
    #[serde(default)]
    pub pinned_from: Option<String>,
    /// Commit of each snapshot, keyed by the directory's inode number.
    #[serde(default)]
    pub snapshots: BTreeMap<u64, SnapshotInfo>,
    /// Entries ROOT had when the last snapshot was taken (the copy engine
    /// counts them as it goes): the next snapshot's progress-bar total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_entries: Option<u64>,
}

/// What is known about one snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Commit the snapshot holds (None for a site adopted before any deploy).
    pub commit: Option<String>,
    /// When it was taken, RFC 3339.
    pub created: String,
}

impl State {
    /// Loads the state (empty when there is none yet).
    pub fn load(state_dir: &Path) -> Result<State> {
        let path = state_dir.join("state.json");
        match crate::fsutil::read_optional(&path)? {
            None => Ok(State::default()),
            Some(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is damaged; move it away to start from a clean state",
                    path.display()
                )
            }),
        }
    }

    /// Saves the state durably.
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        let data = serde_json::to_vec_pretty(self).context("cannot encode state")?;
        crate::fsutil::write_atomic(&state_dir.join("state.json"), &data)
    }

    /// Records the commit of the snapshot directory at `path`.
    pub fn set_snapshot(&mut self, path: &Path, commit: Option<String>) -> Result<()> {
        let ino = std::fs::metadata(path)
            .with_context(|| format!("cannot stat {}", path.display()))?
            .ino();
        self.snapshots.insert(
            ino,
            SnapshotInfo {
                commit,
                created: chrono::Local::now().to_rfc3339(),
            },
        );
        Ok(())
    }

    /// What is known of the snapshot directory at `path`.
    pub fn snapshot(&self, path: &Path) -> Option<&SnapshotInfo> {
        let ino = std::fs::metadata(path).ok()?.ino();
        self.snapshots.get(&ino)
    }

    /// Forgets snapshots whose directory is gone (by inode).
    pub fn retain_snapshots(&mut self, live_inodes: &[u64]) {
        self.snapshots.retain(|ino, _| live_inodes.contains(ino));
    }
}
