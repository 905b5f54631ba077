//! The lock that keeps timing-sensitive tests from running beside each
//! other now that every test shares one process.

use std::sync::{Mutex, MutexGuard};

static HEAVY: Mutex<()> = Mutex::new(());

/// Taken first by every test that starts real servers (nginx, php-fpm,
/// etcd, `rootswap serve` under load) or asserts on timing: such tests run
/// one at a time, while light tests still run beside them. Held until the
/// guard drops; a test that panicked while holding it does not poison it
/// for the next.
pub fn heavy() -> MutexGuard<'static, ()> {
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
