//! The deploy lock: a kernel `flock` on `<state>/lock`.
//!
//! The kernel releases it when the process dies, so a crash never leaves a
//! stale lock (docs/flow.md#locking). The holder's pid is written into the file for
//! the "already running" message.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use rustix::fs::{flock, FlockOperation};

/// A held deploy lock; released on drop (or when the process dies).
#[derive(Debug)]
pub struct DeployLock {
    _file: File,
}

impl DeployLock {
    /// Takes the lock without waiting; fails with "a deploy is already running (pid N)".
    pub fn acquire(state: &Path) -> Result<DeployLock> {
        let path = state.join("lock");
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let pid = if pid.is_empty() { "unknown" } else { pid };
            bail!(
                "a deploy is already running (pid {pid}); wait for it to finish (lock: {})",
                path.display()
            );
        }
        file.set_len(0)
            .with_context(|| format!("cannot write {}", path.display()))?;
        file.rewind()
            .with_context(|| format!("cannot write {}", path.display()))?;
        write!(file, "{}", std::process::id())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(DeployLock { _file: file })
    }

    /// The pid holding the lock, if one does (without taking it).
    pub fn holder(state: &Path) -> Option<u32> {
        let path = state.join("lock");
        let mut file = File::open(&path).ok()?;
        if flock(&file, FlockOperation::NonBlockingLockShared).is_ok() {
            return None;
        }
        let mut pid = String::new();
        file.read_to_string(&mut pid).ok()?;
        pid.trim().parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = DeployLock::acquire(dir.path()).unwrap();
        // flock locks belong to the open file description: a second open conflicts.
        let msg = format!("{:#}", DeployLock::acquire(dir.path()).unwrap_err());
        assert!(
            msg.contains(&format!(
                "a deploy is already running (pid {})",
                std::process::id()
            )),
            "{msg}"
        );
        assert_eq!(DeployLock::holder(dir.path()), Some(std::process::id()));
        drop(held);
        assert_eq!(DeployLock::holder(dir.path()), None);
        DeployLock::acquire(dir.path()).unwrap();
    }
}
