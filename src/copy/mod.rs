//! The copy engine: every step that copies or removes a tree goes through here.
//!
//! - [`copy_tree`] copies a tree into a new directory: directories, regular
//!   files (reflink first where the filesystem can, else `copy_file_range`),
//!   symlinks as links, hard links inside the tree as hard links; it keeps
//!   modes, nanosecond mtimes and (as root) owners, and sets directory times
//!   after their contents. A failed copy removes its partial destination.
//! - [`sync_tree`] brings an existing copy up to date: entries whose type,
//!   size, mtime, mode or owner differ are replaced, missing ones copied,
//!   extra ones removed. The result is indistinguishable from a fresh copy.
//! - [`remove_tree`] removes a tree in parallel and reports every path it
//!   could not remove instead of stopping at the first.
//! - [`copy_file_atomic`] copies one file next to its destination and renames
//!   it into place (readers see the old or the new file, never a partial one).
//!
//! Work runs on a bounded pool of threads ([`CopyOptions::threads`]).
//!
//! How it is fast: the cost of copying a PHP tree is per-file kernel work, so
//! every file costs as few system calls as possible, all relative to open
//! directory descriptors (`fstatat`, `openat` ×2, one `copy_file_range`,
//! `futimens`, `close` ×2; `fchmod` only when the umask changed the mode,
//! `fchown` only as root and only when the owner differs). Paths are resolved
//! once per directory, never per file. Open descriptors stay bounded (two per
//! running job, see `walk`), and so does memory (the listings of the
//! directories being worked on).
//!
//! Files: `tree.rs` (copy and sync of a tree), `file.rs` (one file copied
//! into place), `remove.rs` (parallel removal), `options.rs` (threads and
//! priority), `stats.rs` (what a copy did), `walk.rs` (the parallel tree
//! walk behind copy and sync), `entry.rs` (the system calls that copy one
//! file or symlink), `sys.rs` (thin wrappers over the `*at` calls),
//! `bench.rs` (`rootswap bench-copy`).

pub mod bench;
mod entry;
mod file;
mod options;
mod remove;
mod stats;
mod sys;
mod tree;
mod walk;

#[cfg(test)]
mod tests;

pub use file::{copy_file_atomic, copy_file_if, Expect, Placed, Version};
pub use options::CopyOptions;
pub use remove::{remove_tree, RemoveReport};
pub use stats::CopyStats;
pub use tree::{copy_tree, sync_tree};
