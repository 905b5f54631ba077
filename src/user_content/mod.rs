//! User-generated content: which files are the users' (not the
//! repository's), what changed in them, and carrying them between trees.
//!
//! - `rules.rs`: the `user_content` rules compiled ([`Rules`]) and the
//!   classifier of one commit ([`Classifier`]);
//! - `scan.rs`: the user files of a tree with what identifies each version
//!   ([`Manifest`], [`Sig`]);
//! - `watch.rs`: knowing what changed in a tree without walking it again
//!   (inotify, [`Watched`]);
//! - `carry.rs`: applying what changed in one tree to the other ([`carry`]);
//! - `owners.rs`: who owns the directories rootswap creates in user content.

mod carry;
mod owners;
mod rules;
mod scan;
mod watch;

pub use carry::{carry, Carried};
pub use owners::Repair;
pub use rules::{classifier, Classifier, Rules};
pub use scan::{rescan, rescan_with, scan, scan_with, Manifest, Sig};
pub use watch::{Changes, TreeWatch, Watched};

#[cfg(test)]
mod tests;
