//! Recording what changes under the served snapshot, so that copy-back passes
//! look only at those paths instead of walking the whole tree.
//!
//! A recursive `notify` (inotify) watch is set on the snapshot before it is
//! first scanned. Each pass asks for the paths changed since the previous one
//! ([`ChangeWatch::take`]); a barrier file written into the tree and awaited
//! in the event stream makes sure every change made before the call has been
//! delivered. When the kernel's queue overflowed, the watch could not be set,
//! or the barrier did not come back in time, the caller falls back to a full
//! scan: the watch only ever saves work, it never decides alone.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher};

use crate::user_content::{self, Classifier, Manifest};

#[derive(Default)]
struct Seen {
    paths: HashSet<PathBuf>,
    overflow: bool,
}

/// A recursive watch on one tree.
pub struct ChangeWatch {
    tree: PathBuf,
    seen: Arc<(Mutex<Seen>, Condvar)>,
    barrier: u64,
    _watcher: RecommendedWatcher,
}

/// Paths changed since the last [`ChangeWatch::take`], or "look at everything".
pub enum Changes {
    /// These paths (relative to the tree) changed.
    Paths(HashSet<PathBuf>),
    /// Events were lost: compare the whole tree.
    Everything,
}

impl ChangeWatch {
    /// Starts watching `tree`; `None` when the watch cannot be set (the
    /// caller then scans the whole tree each time).
    pub fn start(tree: &Path) -> Option<ChangeWatch> {
        let seen: Arc<(Mutex<Seen>, Condvar)> = Arc::default();
        let sink = seen.clone();
        let root = tree.to_path_buf();
        // Symlinks are not followed, as the scans do not follow them: a shared
        // directory (`user_content.shared`) is the same for both trees and is
        // never copied back.
        let config = notify::Config::default().with_follow_symlinks(false);
        let mut watcher = RecommendedWatcher::new(
            move |res: notify::Result<Event>| {
                let (lock, cv) = &*sink;
                let Ok(mut s) = lock.lock() else { return };
                match res {
                    Ok(ev) if !ev.need_rescan() => {
                        for p in ev.paths {
                            if let Ok(rel) = p.strip_prefix(&root) {
                                s.paths.insert(rel.to_path_buf());
                            }
                        }
                    }
                    _ => s.overflow = true,
                }
                cv.notify_all();
            },
            config,
        )
        .map_err(|e| tracing::debug!("no change watch on {}: {e}", tree.display()))
        .ok()?;
        if let Err(e) = watcher.watch(tree, RecursiveMode::Recursive) {
            tracing::debug!("no change watch on {}: {e}", tree.display());
            return None;
        }
        Some(ChangeWatch {
            tree: tree.to_path_buf(),
            seen,
            barrier: 0,
            _watcher: watcher,
        })
    }

    /// The paths changed since the last call (after making sure every change
    /// made before this call has been delivered).
    pub fn take(&mut self) -> Changes {
        self.barrier += 1;
        let name = PathBuf::from(format!(
            ".rootswap-tmp-barrier-{}-{}",
            std::process::id(),
            self.barrier
        ));
        let path = self.tree.join(&name);
        if std::fs::write(&path, b"").is_err() {
            return Changes::Everything;
        }
        let (lock, cv) = &*self.seen;
        let Ok(guard) = lock.lock() else {
            return Changes::Everything;
        };
        let waited = cv.wait_timeout_while(guard, Duration::from_secs(2), |s| {
            !s.overflow && !s.paths.contains(&name)
        });
        let _ = std::fs::remove_file(&path);
        let Ok((mut s, timeout)) = waited else {
            return Changes::Everything;
        };
        let out = if timeout.timed_out() || s.overflow {
            Changes::Everything
        } else {
            Changes::Paths(std::mem::take(&mut s.paths))
        };
        s.paths.clear();
        s.overflow = false;
        out
    }

    /// The user files of the tree now, starting from `last` (its state at the
    /// previous call) and looking only at what changed; a full scan when the
    /// events cannot be trusted.
    pub fn manifest(&mut self, last: &Manifest, c: &Classifier) -> anyhow::Result<Manifest> {
        match self.take() {
            Changes::Everything => user_content::scan(&self.tree, c),
            Changes::Paths(paths) => Ok(user_content::rescan(&self.tree, c, last, &paths)),
        }
    }
}

/// The user files of `tree`: through the watch when there is one, else a full scan.
pub fn manifest(
    watch: Option<&mut ChangeWatch>,
    tree: &Path,
    last: &Manifest,
    c: &Classifier,
) -> anyhow::Result<Manifest> {
    match watch {
        Some(w) => w.manifest(last, c),
        None => user_content::scan(tree, c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UserContentConfig;
    use crate::user_content::Rules;

    #[test]
    fn watched_manifest_equals_a_full_scan() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path();
        std::fs::create_dir_all(tree.join("uploads/old")).unwrap();
        for i in 0..5 {
            std::fs::write(tree.join(format!("uploads/f{i}")), "x").unwrap();
        }
        std::fs::write(tree.join("uploads/old/a"), "a").unwrap();
        let rules = Rules::new(&UserContentConfig::default()).unwrap();
        let c = Classifier::new(rules, HashSet::new(), &[], Path::new(""));
        let mut w = ChangeWatch::start(tree).expect("inotify works here");
        let first = user_content::scan(tree, &c).unwrap();
        std::fs::write(tree.join("uploads/new"), "n").unwrap();
        std::fs::write(tree.join("uploads/f0"), "changed").unwrap();
        std::fs::remove_file(tree.join("uploads/f1")).unwrap();
        std::fs::rename(tree.join("uploads/f2"), tree.join("uploads/f2-renamed")).unwrap();
        std::fs::create_dir_all(tree.join("uploads/deep/er")).unwrap();
        std::fs::write(tree.join("uploads/deep/er/x"), "x").unwrap();
        std::fs::rename(tree.join("uploads/old"), tree.join("uploads/moved")).unwrap();
        let watched = w.manifest(&first, &c).unwrap();
        assert_eq!(watched, user_content::scan(tree, &c).unwrap());
        // Later events (directory attributes, the barrier's removal) only cause rescans.
        let again = w.manifest(&watched, &c).unwrap();
        assert_eq!(again, watched);
    }

    #[test]
    fn a_symlinked_directory_is_not_watched() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        let shared = t.path().join("shared");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::create_dir_all(&shared).unwrap();
        std::os::unix::fs::symlink("../shared", tree.join("uploads")).unwrap();
        let mut w = ChangeWatch::start(&tree).expect("inotify works here");
        std::fs::write(shared.join("through-the-store"), "x").unwrap();
        std::fs::write(tree.join("uploads/through-the-link"), "y").unwrap();
        std::fs::write(tree.join("own"), "z").unwrap();
        match w.take() {
            Changes::Paths(p) => {
                assert!(p.contains(Path::new("own")), "{p:?}");
                assert!(p.iter().all(|p| !p.starts_with("uploads/")), "{p:?}");
            }
            Changes::Everything => panic!("no overflow expected"),
        }
    }
}
