//! Knowing what changed in a tree without walking it again.
//!
//! A deploy looks at the user files of two trees many times: ROOT (uploads
//! it gets while the snapshot is copied, what the checkout and the hooks
//! wrote) and the served snapshot (uploads while it serves). Walking a
//! 40,000-entry tree for each look costs more than the deploy itself, so each
//! tree is walked once ([`Watched::scan`]) and an inotify watch is set on
//! every directory that walk reads, *before* reading it: whatever changes
//! later is reported. Each later look ([`Watched::manifest`]) re-reads only
//! the reported paths.
//!
//! A barrier file written into the tree and awaited in the event stream makes
//! sure every change made before the look has been read. When the kernel's
//! queue overflowed, a watch could not be added, or the barrier did not come
//! back in time, the look is a full scan again, and the log says why: the
//! watch only ever saves work, it never decides alone.
//!
//! Symlinks are not followed (the scans do not follow them either): a shared
//! directory (`user_content.shared`) is the same for both trees and is never
//! copied back.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use super::rules::Classifier;
use super::scan::{self, Manifest};

/// How long a look waits for its barrier event before it trusts nothing.
const BARRIER_WAIT: Duration = Duration::from_secs(2);

/// `ROOTSWAP_FAULT=watch-overflow` makes every look behave as if the kernel's
/// event queue had overflowed (for the tests of the full-scan fallback).
fn overflow_injected() -> bool {
    std::env::var("ROOTSWAP_FAULT").is_ok_and(|v| v.split(',').any(|f| f == "watch-overflow"))
}

/// What changed in a tree since the last [`TreeWatch::take`].
#[derive(Debug)]
pub enum Changes {
    /// These paths (relative to the tree) changed; a directory with its subtree.
    Paths(HashSet<PathBuf>),
    /// Events were lost (the reason, for the log): compare the whole tree.
    Everything(String),
}

/// An inotify watch on the directories of one tree that a scan has read.
pub struct TreeWatch {
    tree: PathBuf,
    inotify: Inotify,
    /// Watched directories, relative to the tree.
    dirs: HashMap<WatchDescriptor, PathBuf>,
    changed: HashSet<PathBuf>,
    /// Why the events since the last look cannot be trusted.
    lost: Option<String>,
    barrier: u64,
    buf: Vec<u8>,
}

fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MODIFY
        | WatchMask::ATTRIB
        | WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ONLYDIR
        | WatchMask::DONT_FOLLOW
        | WatchMask::EXCL_UNLINK
}

impl TreeWatch {
    /// An inotify instance for `tree`, with no directory watched yet.
    pub fn new(tree: &Path) -> std::io::Result<TreeWatch> {
        Ok(TreeWatch {
            tree: tree.to_path_buf(),
            inotify: Inotify::init()?,
            dirs: HashMap::new(),
            changed: HashSet::new(),
            lost: None,
            barrier: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Watches the directory `rel` (relative to the tree). Call before
    /// reading the directory, so that nothing created meanwhile is missed.
    pub fn add_dir(&mut self, rel: &Path) {
        match self.inotify.watches().add(self.tree.join(rel), mask()) {
            // The same directory (moved since) gets the same descriptor: its new name wins.
            Ok(wd) => {
                self.dirs.insert(wd, rel.to_path_buf());
            }
            // Gone before it could be watched: its parent reports that.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                if self.lost.is_none() {
                    self.lost = Some(format!(
                        "cannot watch {}: {e} (see fs.inotify.max_user_watches)",
                        self.tree.join(rel).display()
                    ));
                }
            }
        }
    }

    /// Reads the events the kernel has queued; true when `barrier` was among them.
    fn read_queued(&mut self, barrier: Option<&std::ffi::OsStr>) -> bool {
        let mut seen = false;
        loop {
            let events = match self.inotify.read_events(&mut self.buf) {
                Ok(ev) => ev,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return seen,
                Err(e) => {
                    self.lost
                        .get_or_insert(format!("cannot read the change events: {e}"));
                    return seen;
                }
            };
            for ev in events {
                if ev.mask.contains(EventMask::Q_OVERFLOW) {
                    self.lost.get_or_insert(
                        "the kernel's event queue overflowed (fs.inotify.max_queued_events)".into(),
                    );
                    continue;
                }
                if ev.mask.contains(EventMask::IGNORED) {
                    self.dirs.remove(&ev.wd);
                    continue;
                }
                let (Some(name), Some(dir)) = (ev.name, self.dirs.get(&ev.wd)) else {
                    continue; // an event on a watched directory itself: its parent reports what matters
                };
                if dir.as_os_str().is_empty() && Some(name) == barrier {
                    seen = true;
                    continue;
                }
                self.changed.insert(dir.join(name));
            }
        }
    }

    /// The paths changed since the last call, after making sure every change
    /// made before this call has been read.
    pub fn take(&mut self) -> Changes {
        self.barrier += 1;
        let name = format!(
            ".rootswap-tmp-barrier-{}-{}",
            std::process::id(),
            self.barrier
        );
        let path = self.tree.join(&name);
        let seen = match std::fs::write(&path, b"") {
            Ok(()) => self.wait_for(std::ffi::OsStr::new(&name)),
            Err(e) => {
                self.lost
                    .get_or_insert(format!("cannot write {}: {e}", path.display()));
                false
            }
        };
        let _ = std::fs::remove_file(&path);
        if !seen {
            self.lost.get_or_insert(format!(
                "the change events did not arrive within {}s",
                BARRIER_WAIT.as_secs()
            ));
        }
        if overflow_injected() {
            self.lost.get_or_insert(
                "the kernel's event queue overflowed (injected: ROOTSWAP_FAULT=watch-overflow)"
                    .into(),
            );
        }
        let changed = std::mem::take(&mut self.changed);
        match self.lost.take() {
            Some(why) => Changes::Everything(why),
            None => Changes::Paths(changed),
        }
    }

    /// Puts `changes` back, so that the next [`TreeWatch::take`] reports them again.
    fn put_back(&mut self, changes: &Changes) {
        match changes {
            Changes::Paths(p) => self.changed.extend(p.iter().cloned()),
            Changes::Everything(why) => {
                self.lost.get_or_insert(why.clone());
            }
        }
    }

    fn wait_for(&mut self, barrier: &std::ffi::OsStr) -> bool {
        let deadline = Instant::now() + BARRIER_WAIT;
        loop {
            if self.read_queued(Some(barrier)) {
                return true;
            }
            if self.lost.is_some() {
                return true; // events were lost anyway: no need to wait for the barrier
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let fd = self.inotify.as_fd();
            let mut fds = [rustix::event::PollFd::new(
                &fd,
                rustix::event::PollFlags::IN,
            )];
            let timeout = rustix::event::Timespec::try_from(left).ok();
            let _ = rustix::event::poll(&mut fds, timeout.as_ref());
        }
    }
}

/// A tree whose user files are known: walked once, then followed by its watch.
pub struct Watched {
    tree: PathBuf,
    watch: Option<TreeWatch>,
    /// Why there is no watch (every look is then a full scan).
    no_watch: Option<String>,
    /// Full scans done after the first one, with their reasons.
    pub full_scans: usize,
}

impl Watched {
    /// Lists the user files of `tree`, watching every directory the walk reads.
    pub fn scan(tree: &Path, c: &Classifier) -> Result<(Watched, Manifest)> {
        Self::scan_visiting(tree, c, &mut |_| {})
    }

    /// [`Watched::scan`], calling `visit` with each directory (relative to
    /// the tree) before it is read: ROOT's scan repairs owners on the way
    /// ([`crate::user_content::Repair`]) without a walk of its own.
    pub fn scan_visiting(
        tree: &Path,
        c: &Classifier,
        visit: &mut dyn FnMut(&Path),
    ) -> Result<(Watched, Manifest)> {
        let (watch, no_watch) = match TreeWatch::new(tree) {
            Ok(w) => (Some(w), None),
            Err(e) => (
                None,
                Some(format!("no change watch on {}: {e}", tree.display())),
            ),
        };
        let mut w = Watched {
            tree: tree.to_path_buf(),
            watch,
            no_watch,
            full_scans: 0,
        };
        let m = match &mut w.watch {
            Some(watch) => scan::scan_with(tree, c, &mut |rel| {
                visit(rel);
                watch.add_dir(rel)
            })?,
            None => scan::scan_with(tree, c, visit)?,
        };
        Ok((w, m))
    }

    fn full(&mut self, c: &Classifier) -> Result<Manifest> {
        match &mut self.watch {
            Some(w) => scan::scan_with(&self.tree, c, &mut |rel| w.add_dir(rel)),
            None => scan::scan(&self.tree, c),
        }
    }

    /// Watches `tree`, a copy of the tree `like` watches, on the same
    /// directories, without walking it; its user files are then `like`'s at
    /// the time of the copy, re-read where `like` changed since (see
    /// [`Watched::rescan`]). `None` when `like` has no watch.
    pub fn follow(tree: &Path, like: &Watched) -> Option<Watched> {
        let dirs = like.watch.as_ref()?.dirs.values();
        let mut watch = TreeWatch::new(tree).ok()?;
        for rel in dirs {
            watch.add_dir(rel);
        }
        Some(Watched {
            tree: tree.to_path_buf(),
            watch: Some(watch),
            no_watch: None,
            full_scans: 0,
        })
    }

    /// What changed since the last look, left in place for the next look.
    pub fn peek(&mut self) -> Changes {
        match self.watch.as_mut() {
            Some(w) => {
                let c = w.take();
                w.put_back(&c);
                c
            }
            None => Changes::Everything(self.no_watch.clone().unwrap_or_default()),
        }
    }

    /// `last` with the `paths` of the tree read again (watching the
    /// directories read).
    pub fn rescan(
        &mut self,
        last: &Manifest,
        paths: &HashSet<PathBuf>,
        c: &Classifier,
    ) -> Manifest {
        match self.watch.as_mut() {
            Some(w) => scan::rescan_with(&self.tree, c, last, paths, &mut |rel| w.add_dir(rel)),
            None => scan::rescan(&self.tree, c, last, paths),
        }
    }

    /// The user files of the tree now, from `last` (what the previous look
    /// returned) and the paths that changed since; a full scan, logged with
    /// its reason, when the events cannot be trusted.
    pub fn manifest(&mut self, last: &Manifest, c: &Classifier) -> Result<Manifest> {
        let why = match self.watch.as_mut().map(|w| w.take()) {
            Some(Changes::Paths(paths)) => {
                let w = self.watch.as_mut().expect("watch present");
                return Ok(scan::rescan_with(&self.tree, c, last, &paths, &mut |rel| {
                    w.add_dir(rel)
                }));
            }
            Some(Changes::Everything(why)) => why,
            None => self.no_watch.clone().unwrap_or_default(),
        };
        tracing::info!("full scan of {}: {why}", self.tree.display());
        self.full_scans += 1;
        self.full(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UserContentConfig;
    use crate::user_content::rules::Rules;

    fn classifier() -> Classifier {
        let rules = Rules::new(&UserContentConfig::default()).unwrap();
        Classifier::new(rules, HashSet::new(), &[], Path::new(""))
    }

    #[test]
    fn watched_manifest_equals_a_full_scan() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path();
        std::fs::create_dir_all(tree.join("uploads/old")).unwrap();
        for i in 0..5 {
            std::fs::write(tree.join(format!("uploads/f{i}")), "x").unwrap();
        }
        std::fs::write(tree.join("uploads/old/a"), "a").unwrap();
        let c = classifier();
        let (mut w, first) = Watched::scan(tree, &c).unwrap();
        assert!(w.watch.is_some(), "inotify works here");
        std::fs::write(tree.join("uploads/new"), "n").unwrap();
        std::fs::write(tree.join("uploads/f0"), "changed").unwrap();
        std::fs::remove_file(tree.join("uploads/f1")).unwrap();
        std::fs::rename(tree.join("uploads/f2"), tree.join("uploads/f2-renamed")).unwrap();
        std::fs::create_dir_all(tree.join("uploads/deep/er")).unwrap();
        std::fs::write(tree.join("uploads/deep/er/x"), "x").unwrap();
        std::fs::rename(tree.join("uploads/old"), tree.join("uploads/moved")).unwrap();
        let watched = w.manifest(&first, &c).unwrap();
        assert_eq!(watched, scan::scan(tree, &c).unwrap());
        // A directory created since is watched too, and so is a moved one under its new name.
        std::fs::write(tree.join("uploads/deep/er/y"), "y").unwrap();
        std::fs::write(tree.join("uploads/moved/b"), "b").unwrap();
        let again = w.manifest(&watched, &c).unwrap();
        assert_eq!(again, scan::scan(tree, &c).unwrap());
        assert!(again.contains_key(Path::new("uploads/moved/b")));
        assert!(!again.contains_key(Path::new("uploads/old/b")));
        assert_eq!(w.full_scans, 0, "no look needed a full scan");
    }

    #[test]
    fn a_symlinked_directory_is_not_watched() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        let shared = t.path().join("shared");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::create_dir_all(&shared).unwrap();
        std::os::unix::fs::symlink("../shared", tree.join("uploads")).unwrap();
        let c = classifier();
        let (mut w, _) = Watched::scan(&tree, &c).unwrap();
        let watch = w.watch.as_mut().unwrap();
        std::fs::write(shared.join("through-the-store"), "x").unwrap();
        std::fs::write(tree.join("uploads/through-the-link"), "y").unwrap();
        std::fs::write(tree.join("own"), "z").unwrap();
        match watch.take() {
            Changes::Paths(p) => {
                assert!(p.contains(Path::new("own")), "{p:?}");
                assert!(p.iter().all(|p| !p.starts_with("uploads/")), "{p:?}");
            }
            Changes::Everything(why) => panic!("no overflow expected: {why}"),
        }
    }

    #[test]
    fn a_real_queue_overflow_falls_back_to_a_full_scan_that_finds_everything() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path();
        std::fs::create_dir_all(tree.join("uploads")).unwrap();
        let c = classifier();
        let (mut w, first) = Watched::scan(tree, &c).unwrap();
        // More events than the kernel queues for one reader (16,384 by default).
        let limit: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(16384);
        for i in 0..limit + 100 {
            std::fs::write(tree.join(format!("uploads/u{i}")), "u").unwrap();
        }
        let now = w.manifest(&first, &c).unwrap();
        assert_eq!(w.full_scans, 1, "the overflow was noticed");
        assert_eq!(
            now.len(),
            limit + 100,
            "the full scan found every user file"
        );
        assert_eq!(now, scan::scan(tree, &c).unwrap());
        // The watch goes on after the full scan.
        std::fs::write(tree.join("uploads/after"), "a").unwrap();
        let later = w.manifest(&now, &c).unwrap();
        assert_eq!(w.full_scans, 1);
        assert!(later.contains_key(Path::new("uploads/after")));
    }
}
