//! Fault injection for the crash tests: `ROOTSWAP_CRASH_AT=<point>[:<n>]`
//! makes the process SIGKILL itself the `n`th time (default 1st) it reaches
//! the named point — exactly what the OOM killer or a power cut would do
//! there. Points are the journal phases (`snapshot`, `rewrite`, …, reached
//! right after the phase is journaled) and per-entry points inside the long
//! steps (`copy-entry`, `checkout-entry`, `copy-back-entry`, `evict-entry`),
//! `link-temp`, between creating the temporary link and renaming it over the
//! serving link, and `shared-entry`/`shared-link` while a directory moves into
//! `user_content.shared_dir`.
//!
//! Unset (always, in production) it costs one relaxed atomic load per call.
//!
//! `ROOTSWAP_FAULT` injects events a live application causes, for the tests
//! that must make a race happen every time: a comma-separated list of flags
//! (`watch-overflow`, see [`crate::user_content::Watched`]) and `key=value` entries, read
//! with [`fault`]. `vanish=NAME` removes an entry called NAME from the source
//! tree right after the copy engine listed its directory, as an application
//! removing a lock directory at that instant would. A bare name makes that
//! operation fail with an error instead ([`fails`]): `first-switch`, the first
//! deploy's link creation (so the tests can drive its failure path).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

struct Target {
    point: String,
    nth: u64,
    seen: AtomicU64,
}

fn target() -> Option<&'static Target> {
    static T: OnceLock<Option<Target>> = OnceLock::new();
    T.get_or_init(|| {
        let v = std::env::var("ROOTSWAP_CRASH_AT").ok()?;
        let (point, nth) = match v.split_once(':') {
            Some((p, n)) => (p.to_string(), n.parse().unwrap_or(1)),
            None => (v, 1),
        };
        Some(Target {
            point,
            nth,
            seen: AtomicU64::new(0),
        })
    })
    .as_ref()
}

/// Marks that execution reached `point`; kills the process there when asked to.
pub fn hit(point: &str) {
    let Some(t) = target() else { return };
    if t.point != point {
        return;
    }
    if t.seen.fetch_add(1, Ordering::Relaxed) + 1 == t.nth {
        // SAFETY: kill(2) on our own pid; SIGKILL cannot be caught, as in a real crash.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// The value of `key=value` in `ROOTSWAP_FAULT` (read once per process), if set.
pub fn fault(key: &str) -> Option<&'static str> {
    static F: OnceLock<Vec<(String, String)>> = OnceLock::new();
    F.get_or_init(|| {
        std::env::var("ROOTSWAP_FAULT")
            .unwrap_or_default()
            .split(',')
            .filter_map(|f| f.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
    .iter()
    .find(|(k, _)| k == key)
    .map(|(_, v)| v.as_str())
}

/// True when `ROOTSWAP_FAULT` lists the bare `name`: the caller fails there
/// with an error saying it was injected. Never set in production.
pub fn fails(name: &str) -> bool {
    std::env::var("ROOTSWAP_FAULT").is_ok_and(|v| v.split(',').any(|f| f == name))
}
