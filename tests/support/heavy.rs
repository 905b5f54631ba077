//! The lock that keeps timing-sensitive tests from running beside each
//! other: inside this process (every test shares one), and across
//! processes on the machine (several checkouts tested at once), through a
//! `flock` on a file in the temp directory.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};

static HEAVY: Mutex<()> = Mutex::new(());

/// Held while a heavy test runs: released when dropped.
pub struct Heavy {
    _in_process: MutexGuard<'static, ()>,
    /// Closing it releases the `flock`.
    _across_processes: Option<File>,
}

/// Taken first by every test that starts real servers (nginx, php-fpm,
/// etcd, `rootswap serve` under load) or asserts on timing: such tests run
/// one at a time, while light tests still run beside them. Held until the
/// guard drops; a test that panicked while holding it does not poison it
/// for the next.
pub fn heavy() -> Heavy {
    let guard = HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let path = std::env::temp_dir().join("rootswap-heavy-tests.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ok();
    if let Some(f) = &file {
        // SAFETY: flock on a descriptor this function owns; it blocks until
        // no other process holds the lock.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    }
    Heavy {
        _in_process: guard,
        _across_processes: file,
    }
}
