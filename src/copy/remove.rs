//! Parallel removal with `unlinkat` on directory file descriptors.
//!
//! Each directory is one job: it is opened (by a path relative to the base
//! descriptor, so only one descriptor per running job is open), listed, its
//! non-directories unlinked, its subdirectories spawned as jobs; the last job
//! of a subtree to finish removes the directory itself. Failures are collected
//! and the removal goes on with the rest.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use rustix::fs::{AtFlags, FileType};

use super::options::{pool, CopyOptions};
use super::sys;

/// What a removal could not remove.
#[derive(Debug, Default)]
pub struct RemoveReport {
    /// Entries removed.
    pub removed: u64,
    /// Paths that could not be removed, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

/// Removes `path` and everything below it, in parallel, continuing past
/// failures; the report lists what stayed. A missing `path` is not an error.
/// Entries removed are counted on a progress bar that shows the running step.
pub fn remove_tree(path: &Path, opts: &CopyOptions) -> Result<RemoveReport> {
    pool(opts)?.install(|| remove_tree_counted(path, crate::progress::counting()))
}

pub(super) fn remove_tree_in_pool(path: &Path) -> Result<RemoveReport> {
    remove_tree_counted(path, false)
}

/// While `f` runs, a thread moves the growth of `counter` to the progress
/// bar every 50 ms (the removal's own counter: nothing added per entry).
fn reporting<R>(counter: &AtomicU64, f: impl FnOnce() -> R) -> R {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let watcher = std::thread::Builder::new().spawn_scoped(s, move || {
            let mut seen = 0;
            loop {
                let done = !matches!(
                    stopped.recv_timeout(std::time::Duration::from_millis(50)),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                );
                let now = counter.load(Ordering::Relaxed);
                crate::progress::advance_by(now.saturating_sub(seen));
                seen = now;
                if done {
                    return;
                }
            }
        });
        let r = f();
        drop(stop);
        if let Ok(w) = watcher {
            let _ = w.join();
        }
        r
    })
}

fn remove_tree_counted(path: &Path, counted: bool) -> Result<RemoveReport> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RemoveReport::default()),
        Err(e) => return Err(e).with_context(|| format!("remove: cannot stat {}", path.display())),
    };
    let name = path.file_name().ok_or_else(|| {
        anyhow!(
            "remove: refusing to remove {} (no final name)",
            path.display()
        )
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !meta.is_dir() {
        return match std::fs::remove_file(path) {
            Ok(()) => Ok(RemoveReport {
                removed: 1,
                failed: Vec::new(),
            }),
            Err(e) => Ok(RemoveReport {
                removed: 0,
                failed: vec![(path.to_path_buf(), format!("cannot remove: {e}"))],
            }),
        };
    }
    let base = sys::open_dir_path(parent)
        .with_context(|| format!("remove: cannot open directory {}", parent.display()))?;
    let r = Remover::new(base.as_fd(), parent);
    if counted {
        reporting(&r.removed, || r.remove_dir(Path::new(name)));
    } else {
        r.remove_dir(Path::new(name));
    }
    Ok(RemoveReport {
        removed: r.removed.load(Ordering::Relaxed),
        failed: r.failed.into_inner().unwrap_or_default(),
    })
}

/// Shared state of one removal.
pub(super) struct Remover<'a> {
    /// Directory the relative paths start from.
    pub base: BorrowedFd<'a>,
    /// Display path of `base`, for messages.
    pub base_path: &'a Path,
    pub removed: AtomicU64,
    pub failed: Mutex<Vec<(PathBuf, String)>>,
}

struct Node {
    rel: PathBuf,
    pending: AtomicUsize,
    child_failed: AtomicBool,
    parent: Option<Arc<Node>>,
}

impl<'a> Remover<'a> {
    pub fn new(base: BorrowedFd<'a>, base_path: &'a Path) -> Remover<'a> {
        Remover {
            base,
            base_path,
            removed: AtomicU64::new(0),
            failed: Mutex::new(Vec::new()),
        }
    }

    /// Removes the directory `base/rel` and its contents, in the current rayon pool.
    pub fn remove_dir(&self, rel: &Path) {
        let root = Arc::new(Node {
            rel: rel.to_path_buf(),
            pending: AtomicUsize::new(1),
            child_failed: AtomicBool::new(false),
            parent: None,
        });
        rayon::scope(|s| self.run(s, root));
    }

    fn report(
        &self,
        path: PathBuf,
        op: &str,
        e: &io::Error,
        owner_of: Option<(BorrowedFd<'_>, &CStr)>,
    ) {
        let owner = owner_of
            .and_then(|(d, n)| sys::stat_at(d, n).ok())
            .map(|m| format!(" (owner uid {}, gid {})", m.uid, m.gid))
            .unwrap_or_default();
        if let Ok(mut f) = self.failed.lock() {
            f.push((path, format!("cannot {op}: {e}{owner}")));
        }
    }

    fn full(&self, rel: &Path) -> PathBuf {
        self.base_path.join(rel)
    }

    fn run<'s>(&'s self, s: &rayon::Scope<'s>, node: Arc<Node>) {
        let fd = match sys::open_dir(self.base, &node.rel) {
            Ok(fd) => fd,
            Err(e) => {
                // Gone already (removed by someone else meanwhile): nothing to do.
                let gone = e.kind() == io::ErrorKind::NotFound;
                // An unreadable directory may still be removable if it is empty.
                let removed =
                    !gone && rustix::fs::unlinkat(self.base, &node.rel, AtFlags::REMOVEDIR).is_ok();
                if gone || removed {
                    if removed {
                        self.removed.fetch_add(1, Ordering::Relaxed);
                    }
                    node.pending.store(0, Ordering::Release);
                    if let Some(p) = &node.parent {
                        self.done(p.clone());
                    }
                } else {
                    self.report(
                        self.full(&node.rel),
                        "read directory",
                        &e,
                        Some((self.base, &cpath(&node.rel))),
                    );
                    self.fail_up(&node);
                }
                return;
            }
        };
        let listing = match sys::list_dir(fd.as_fd()) {
            Ok(l) => l,
            Err(e) => {
                self.report(self.full(&node.rel), "read directory", &e, None);
                self.fail_up(&node);
                return;
            }
        };
        let mut made_writable = false;
        for i in 0..listing.len() {
            let (name, ft) = listing.get(i);
            if ft == FileType::Directory {
                self.spawn_child(s, &node, name);
                continue;
            }
            let mut res = rustix::fs::unlinkat(&fd, name, AtFlags::empty());
            if matches!(
                res,
                Err(rustix::io::Errno::ACCESS) | Err(rustix::io::Errno::PERM)
            ) && !made_writable
            {
                // A directory we own but without write permission (0555): open it up and retry.
                made_writable = true;
                if let Ok(m) = sys::fstat(fd.as_fd()) {
                    if rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(m.perm() | 0o700))
                        .is_ok()
                    {
                        res = rustix::fs::unlinkat(&fd, name, AtFlags::empty());
                    }
                }
            }
            match res {
                Ok(()) => {
                    self.removed.fetch_add(1, Ordering::Relaxed);
                }
                Err(rustix::io::Errno::ISDIR) => self.spawn_child(s, &node, name),
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => {
                    let p = self.full(&node.rel).join(osname(name));
                    self.report(p, "remove", &e.into(), Some((fd.as_fd(), name)));
                    node.child_failed.store(true, Ordering::Relaxed);
                }
            }
        }
        drop(fd);
        self.done(node);
    }

    fn spawn_child<'s>(&'s self, s: &rayon::Scope<'s>, node: &Arc<Node>, name: &CStr) {
        node.pending.fetch_add(1, Ordering::AcqRel);
        let child = Arc::new(Node {
            rel: node.rel.join(osname(name)),
            pending: AtomicUsize::new(1),
            child_failed: AtomicBool::new(false),
            parent: Some(node.clone()),
        });
        s.spawn(move |s| self.run(s, child));
    }

    /// Marks `node` as failed and finishes it without removing it.
    fn fail_up(&self, node: &Arc<Node>) {
        node.child_failed.store(true, Ordering::Relaxed);
        self.done(node.clone());
    }

    /// One job or child of `node` finished; the last one removes the directory.
    fn done(&self, mut node: Arc<Node>) {
        loop {
            if node.pending.fetch_sub(1, Ordering::AcqRel) != 1 {
                return;
            }
            let failed_below = node.child_failed.load(Ordering::Relaxed);
            let ok = if failed_below {
                false
            } else {
                match rustix::fs::unlinkat(self.base, &node.rel, AtFlags::REMOVEDIR) {
                    Ok(()) => {
                        self.removed.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                    Err(rustix::io::Errno::NOENT) => true,
                    Err(e) => {
                        self.report(
                            self.full(&node.rel),
                            "remove directory",
                            &e.into(),
                            Some((self.base, &cpath(&node.rel))),
                        );
                        false
                    }
                }
            };
            match node.parent.clone() {
                Some(p) => {
                    if !ok {
                        p.child_failed.store(true, Ordering::Relaxed);
                    }
                    node = p;
                }
                None => return,
            }
        }
    }
}

/// A CStr name as an OsStr (for building display paths).
pub(super) fn osname(name: &CStr) -> &std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(name.to_bytes())
}

fn cpath(p: &Path) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}
