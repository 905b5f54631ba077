//! The drain: after the link stops pointing at a tree, wait until requests
//! that resolved the old target have finished before that tree is changed
//! or removed.
//!
//! nginx resolves the link once per request (`$realpath_root`), so a request
//! that started on a tree finishes on it; the wait must outlast the slowest
//! such request (NOTES.md §8: 190 torn responses in 50 deploys without it).

use crate::config::{Config, Drain};

/// Waits `drain` (a fixed duration; `auto` waits `drain_max` until php-fpm's status page is consulted).
pub fn wait(cfg: &Config) {
    let d = match cfg.drain {
        Drain::Fixed(d) => d,
        Drain::Auto => cfg.drain_max,
    };
    if !d.is_zero() {
        std::thread::sleep(d);
    }
}
