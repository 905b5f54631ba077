//! The drain: after the link stops pointing at a tree, wait until requests
//! that resolved the old target have finished before that tree is changed
//! or removed.
//!
//! nginx resolves the link once per request (`$realpath_root`), so a request
//! that started on a tree finishes on it; the wait must outlast the slowest
//! such request (NOTES.md §8: 190 torn responses in 50 deploys without it).

use crate::config::Config;

/// Waits `drain` (fixed duration from the configuration).
pub fn wait(cfg: &Config) {
    if !cfg.drain.is_zero() {
        std::thread::sleep(cfg.drain);
    }
}
