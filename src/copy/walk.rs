//! The tree walk behind `copy_tree` and `sync_tree`.
//!
//! One job per directory: it opens the source and destination directory (by
//! a path relative to the two root descriptors, resolved once per directory,
//! not per file), lists the source (and, when syncing, the destination),
//! handles every entry with `*at` calls on those two descriptors, and spawns a
//! job per subdirectory. Large directories are split into chunks that run in
//! parallel and share the two descriptors. A directory's mode and times are
//! set by the last job of its subtree to finish, so they are set after its
//! contents. Open descriptors: two per running job or chunk plus two per
//! queued chunk of a directory being worked on; memory: the listings of the
//! directories being worked on.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use anyhow::{anyhow, Result};
use rustix::fs::{AtFlags, FileType, Mode};

use super::entry::{chown_to, copy_file, copy_symlink, file_type, gid, uid, vanished, Env};
use super::entry::{OpError, Side};
use super::remove::{osname, Remover};
use super::stats::CopyStats;
use super::sys::{self, Kind, Listing, Meta, S_ISGID};

/// Entries per parallel chunk of a large directory.
const CHUNK: usize = 128;

#[derive(Default)]
pub(super) struct Counters {
    pub files: AtomicU64,
    pub dirs: AtomicU64,
    pub symlinks: AtomicU64,
    pub hardlinks: AtomicU64,
    pub bytes: AtomicU64,
    pub unchanged: AtomicU64,
    pub removed: AtomicU64,
    pub entries: AtomicU64,
}

impl Counters {
    pub fn stats(&self) -> CopyStats {
        CopyStats {
            files: self.files.load(Ordering::Relaxed),
            dirs: self.dirs.load(Ordering::Relaxed),
            symlinks: self.symlinks.load(Ordering::Relaxed),
            hardlinks: self.hardlinks.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            unchanged: self.unchanged.load(Ordering::Relaxed),
            removed: self.removed.load(Ordering::Relaxed),
            entries: self.entries.load(Ordering::Relaxed),
        }
    }
}

/// A hard-link group: the first path copied, and (once done) its destination inode.
struct LinkSlot {
    dst_rel: PathBuf,
    state: Mutex<Option<std::result::Result<u64, ()>>>,
    cv: Condvar,
}

impl LinkSlot {
    fn publish(&self, r: std::result::Result<u64, ()>) {
        if let Ok(mut s) = self.state.lock() {
            *s = Some(r);
        }
        self.cv.notify_all();
    }

    fn wait(&self) -> std::result::Result<u64, ()> {
        let Ok(mut s) = self.state.lock() else {
            return Err(());
        };
        loop {
            if let Some(r) = *s {
                return r;
            }
            s = match self.cv.wait(s) {
                Ok(s) => s,
                Err(_) => return Err(()),
            };
        }
    }
}

/// State shared by every job of one copy or sync.
pub(super) struct Walk<'a> {
    pub env: Env,
    pub counters: Counters,
    src_root: OwnedFd,
    dst_root: OwnedFd,
    src_path: &'a Path,
    dst_path: &'a Path,
    /// "sync" or "copy", for messages.
    verb: &'static str,
    links: Mutex<HashMap<(u64, u64), Arc<LinkSlot>>>,
    aborted: AtomicBool,
    error: Mutex<Option<anyhow::Error>>,
}

/// A directory of the walk; finished (mode and times set) when `pending` drops to 0.
struct Node {
    rel: PathBuf,
    /// The source directory's metadata.
    src: Meta,
    /// The destination's metadata before the walk touched it (None: created by the walk).
    dst_before: Option<Meta>,
    /// The destination's current permission bits.
    dst_mode: AtomicU32,
    /// Group new entries in the destination get.
    new_gid: u32,
    /// Whether the destination directory still has S_ISGID (inherited by new subdirectories).
    setgid: bool,
    /// Entries were added or removed directly in the destination (its mtime changed).
    modified: AtomicBool,
    /// Compare with an existing destination (sync) or copy into a new one.
    sync: bool,
    /// The source directory vanished before it could be read: its
    /// destination was removed, there is nothing to finish.
    vanished: AtomicBool,
    pending: AtomicUsize,
    parent: Option<Arc<Node>>,
}

/// A directory being worked on: its two descriptors and its listings.
struct Open {
    node: Arc<Node>,
    src: OwnedFd,
    dst: OwnedFd,
    list: Listing,
    /// Destination listing, sorted (sync only).
    dst_list: Option<Listing>,
}

fn rel_or_dot(rel: &Path) -> &Path {
    if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    }
}

impl<'a> Walk<'a> {
    /// Opens both roots. `dst` must exist and be a directory.
    pub fn new(src_path: &'a Path, dst_path: &'a Path, verb: &'static str) -> Result<Walk<'a>> {
        let src_root = sys::open_dir_path(src_path)
            .map_err(|e| anyhow!("{verb}: cannot open directory {}: {e}", src_path.display()))?;
        let dst_root = sys::open_dir_path(dst_path)
            .map_err(|e| anyhow!("{verb}: cannot open directory {}: {e}", dst_path.display()))?;
        Ok(Walk {
            env: Env::new(),
            counters: Counters::default(),
            src_root,
            dst_root,
            src_path,
            dst_path,
            verb,
            links: Mutex::new(HashMap::new()),
            aborted: AtomicBool::new(false),
            error: Mutex::new(None),
        })
    }

    /// Runs the walk in the current rayon pool. `sync`: compare with the
    /// existing destination; else the destination is new and empty (just created
    /// with mode `created_mode`).
    pub fn run(&self, sync: bool) -> Result<()> {
        let err = |op: &str, p: &Path, e: io::Error| {
            anyhow!("{}: cannot {op} {}: {e}", self.verb, p.display())
        };
        let src = sys::fstat(self.src_root.as_fd()).map_err(|e| err("stat", self.src_path, e))?;
        let dst = sys::fstat(self.dst_root.as_fd()).map_err(|e| err("stat", self.dst_path, e))?;
        if self.env.as_root && (dst.uid != src.uid || dst.gid != src.gid) {
            rustix::fs::fchown(&self.dst_root, Some(uid(src.uid)), Some(gid(src.gid)))
                .map_err(|e| err("set owner of", self.dst_path, e.into()))?;
        }
        let (new_gid, setgid) = self.gid_rule(&dst, src.gid);
        let root = Arc::new(Node {
            rel: PathBuf::new(),
            src,
            dst_before: if sync { Some(dst) } else { None },
            dst_mode: AtomicU32::new(dst.perm()),
            new_gid,
            setgid,
            modified: AtomicBool::new(false),
            sync,
            vanished: AtomicBool::new(false),
            pending: AtomicUsize::new(1),
            parent: None,
        });
        rayon::scope(|s| self.dir_job(s, root));
        match self.error.lock() {
            Ok(mut e) => match e.take() {
                Some(e) => Err(e),
                None => Ok(()),
            },
            Err(_) => Err(anyhow!("{}: an error report was lost", self.verb)),
        }
    }

    /// Group that entries created in a directory with metadata `dst` get, after
    /// it was chowned to `src_gid` (as root), and whether it has S_ISGID.
    fn gid_rule(&self, dst: &Meta, src_gid: u32) -> (u32, bool) {
        let setgid = dst.mode & S_ISGID != 0;
        let dir_gid = if self.env.as_root { src_gid } else { dst.gid };
        (if setgid { dir_gid } else { self.env.egid }, setgid)
    }

    fn fail(&self, e: anyhow::Error) {
        self.aborted.store(true, Ordering::Relaxed);
        if let Ok(mut slot) = self.error.lock() {
            if slot.is_none() {
                *slot = Some(e);
            }
        }
    }

    fn src_full(&self, rel: &Path, name: Option<&CStr>) -> PathBuf {
        let p = self.src_path.join(rel);
        match name {
            Some(n) => p.join(osname(n)),
            None => p,
        }
    }

    fn dst_full(&self, rel: &Path, name: Option<&CStr>) -> PathBuf {
        let p = self.dst_path.join(rel);
        match name {
            Some(n) => p.join(osname(n)),
            None => p,
        }
    }

    fn err(&self, op: &str, path: PathBuf, e: impl Into<io::Error>) -> anyhow::Error {
        anyhow!(
            "{}: cannot {op} {}: {}",
            self.verb,
            path.display(),
            e.into()
        )
    }

    fn dir_job<'s>(&'s self, s: &rayon::Scope<'s>, node: Arc<Node>) {
        if self.aborted.load(Ordering::Relaxed) {
            return self.done(node);
        }
        match self.open(&node) {
            Ok(None) => {
                if let Err(e) = self.vanished_dir(&node) {
                    self.fail(e);
                }
            }
            Ok(Some(open)) => {
                let open = Arc::new(open);
                let n = open.list.len();
                // Spawn all chunks but the first, which runs here.
                let mut start = CHUNK.min(n);
                while start < n {
                    let end = (start + CHUNK).min(n);
                    node.pending.fetch_add(1, Ordering::AcqRel);
                    let o = open.clone();
                    s.spawn(move |s| {
                        self.chunk(s, &o, start, end);
                        self.done(o.node.clone());
                    });
                    start = end;
                }
                self.chunk(s, &open, 0, CHUNK.min(n));
            }
            Err(e) => self.fail(e),
        }
        self.done(node);
    }

    /// Opens and lists a directory of the walk; `None` when the source
    /// directory vanished after its parent listed it (an application removing
    /// a lock or cache directory): a normal event, not a failed copy.
    fn open(&self, node: &Arc<Node>) -> Result<Option<Open>> {
        let rel = rel_or_dot(&node.rel);
        if let Some(name) = node.rel.file_name() {
            use std::os::unix::ffi::OsStrExt;
            about_to_open(name.as_bytes(), || self.src_full(&node.rel, None));
        }
        let src = match sys::open_dir(self.src_root.as_fd(), rel) {
            Ok(fd) => fd,
            Err(e) if vanished(&e) && !node.rel.as_os_str().is_empty() => return Ok(None),
            Err(e) => return Err(self.err("open directory", self.src_full(&node.rel, None), e)),
        };
        let dst = sys::open_dir(self.dst_root.as_fd(), rel)
            .map_err(|e| self.err("open directory", self.dst_full(&node.rel, None), e))?;
        // Reading a directory removed since it was opened fails with ENOENT.
        let mut list = match sys::list_dir(src.as_fd()) {
            Ok(l) => l,
            Err(e) if vanished(&e) && !node.rel.as_os_str().is_empty() => return Ok(None),
            Err(e) => return Err(self.err("read directory", self.src_full(&node.rel, None), e)),
        };
        let mut dst_list = None;
        if node.sync {
            let mut dl = sys::list_dir(dst.as_fd())
                .map_err(|e| self.err("read directory", self.dst_full(&node.rel, None), e))?;
            dl.sort();
            list.sort();
            // Remove what the source no longer has.
            for i in 0..dl.len() {
                let (name, ft) = dl.get(i);
                if list.find(name).is_none() {
                    self.remove_entry(node, dst.as_fd(), name, ft)?;
                }
            }
            dst_list = Some(dl);
        }
        Ok(Some(Open {
            node: node.clone(),
            src,
            dst,
            list,
            dst_list,
        }))
    }

    /// The source directory of `node` vanished after it was listed: its
    /// destination goes too (the copy then looks as if the listing had come
    /// a moment later), and the parent's times are set again.
    fn vanished_dir(&self, node: &Node) -> Result<()> {
        tracing::info!(
            "{}: {} vanished while copying (skipped)",
            self.verb,
            self.src_full(&node.rel, None).display()
        );
        node.vanished.store(true, Ordering::Relaxed);
        if let Some(p) = &node.parent {
            p.modified.store(true, Ordering::Relaxed);
        }
        self.remove_subtree(self.dst_root.as_fd(), self.dst_path, &node.rel)
    }

    /// Removes the directory `rel` under `base` (open as `dfd`) with
    /// everything in it, counting what went; the first failure is the error.
    fn remove_subtree(&self, dfd: BorrowedFd<'_>, base: &Path, rel: &Path) -> Result<()> {
        let r = Remover::new(dfd, base);
        r.remove_dir(rel);
        let failed = r.failed.into_inner().unwrap_or_default();
        if let Some((p, why)) = failed.first() {
            return Err(anyhow!("{}: {}: {why}", self.verb, p.display()));
        }
        self.counters
            .removed
            .fetch_add(r.removed.load(Ordering::Relaxed), Ordering::Relaxed);
        Ok(())
    }

    fn chunk<'s>(&'s self, s: &rayon::Scope<'s>, open: &Arc<Open>, start: usize, end: usize) {
        // Entries are counted once per chunk (the stats), and per entry only
        // for a progress bar that shows them (one relaxed load when none does).
        let mut done = 0;
        for i in start..end {
            if self.aborted.load(Ordering::Relaxed) {
                break;
            }
            let (name, _) = open.list.get(i);
            let in_dst = open
                .dst_list
                .as_ref()
                .is_some_and(|l| l.find(name).is_some());
            if let Err(e) = self.entry(s, open, name, in_dst) {
                self.fail(e);
                break;
            }
            done += 1;
            crate::progress::advance();
        }
        self.counters.entries.fetch_add(done, Ordering::Relaxed);
    }

    /// Copies or brings up to date one entry of a directory.
    fn entry<'s>(
        &'s self,
        s: &rayon::Scope<'s>,
        open: &Arc<Open>,
        name: &CStr,
        in_dst: bool,
    ) -> Result<()> {
        let node = &open.node;
        let (sfd, dfd) = (open.src.as_fd(), open.dst.as_fd());
        let m = match sys::stat_at(sfd, name) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::info!(
                    "{}: {} vanished while copying",
                    self.verb,
                    self.src_full(&node.rel, Some(name)).display()
                );
                if in_dst {
                    self.remove_existing(node, dfd, name)?;
                }
                return Ok(());
            }
            Err(e) => return Err(self.err("stat", self.src_full(&node.rel, Some(name)), e)),
        };
        let mut in_dst = in_dst;
        let link = if m.kind() == Kind::File && m.nlink > 1 {
            // A directory in the way is removed before joining the link group: the
            // group's first file must never wait on anything (its other links wait on it).
            if in_dst {
                if let Ok(d) = sys::stat_at(dfd, name) {
                    if d.kind() == Kind::Dir {
                        self.remove_entry(node, dfd, name, FileType::Directory)?;
                        in_dst = false;
                    }
                }
            }
            Some(self.link_slot(&m, &node.rel, name))
        } else {
            None
        };
        if let Some((slot, false)) = &link {
            if self.follow_link(open, name, in_dst, slot)? {
                return Ok(());
            }
            // The group's first file vanished before it was copied: copy this one.
        }
        let res = self.entry_inner(s, open, name, in_dst, &m);
        if let Some((slot, true)) = &link {
            // Publish the destination inode for the other links of this file.
            let r = match &res {
                Ok(()) => sys::stat_at(dfd, name).map(|d| d.ino).map_err(|_| ()),
                Err(_) => Err(()),
            };
            slot.publish(r);
        }
        res
    }

    fn entry_inner<'s>(
        &'s self,
        s: &rayon::Scope<'s>,
        open: &Arc<Open>,
        name: &CStr,
        in_dst: bool,
        m: &Meta,
    ) -> Result<()> {
        let node = &open.node;
        let (sfd, dfd) = (open.src.as_fd(), open.dst.as_fd());
        if in_dst && self.settle_existing(s, open, name, m)? {
            return Ok(());
        }
        node.modified.store(true, Ordering::Relaxed);
        match m.kind() {
            Kind::Dir => self.create_dir(s, node, dfd, name, m),
            Kind::File => {
                about_to_open(name.to_bytes(), || self.src_full(&node.rel, Some(name)));
                match copy_file(&self.env, sfd, name, m, dfd, name, node.new_gid) {
                    Ok(n) => {
                        self.counters.files.fetch_add(1, Ordering::Relaxed);
                        self.counters.bytes.fetch_add(n, Ordering::Relaxed);
                        Ok(())
                    }
                    Err(e) => self.entry_error(node, name, e),
                }
            }
            Kind::Symlink => match copy_symlink(&self.env, sfd, name, m, dfd, name, node.new_gid) {
                Ok(()) => {
                    self.counters.symlinks.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(e) => self.entry_error(node, name, e),
            },
            Kind::Other => {
                tracing::warn!(
                    "{}: skipping {} (not a file, directory or symlink)",
                    self.verb,
                    self.src_full(&node.rel, Some(name)).display()
                );
                Ok(())
            }
        }
    }

    /// What the destination holds at `name` (sync): a directory where the
    /// source has one is entered, an entry the same as the source's is kept
    /// (both: true, nothing more to do); anything else is removed (false: the
    /// caller creates the entry).
    fn settle_existing<'s>(
        &'s self,
        s: &rayon::Scope<'s>,
        open: &Arc<Open>,
        name: &CStr,
        m: &Meta,
    ) -> Result<bool> {
        let node = &open.node;
        let dfd = open.dst.as_fd();
        let d = match sys::stat_at(dfd, name) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.err("stat", self.dst_full(&node.rel, Some(name)), e)),
        };
        if m.kind() == Kind::Dir && d.kind() == Kind::Dir {
            self.enter_existing_dir(s, node, dfd, name, m, d)?;
            return Ok(true);
        }
        if self.same(m, &d) && (m.kind() != Kind::Symlink || self.same_target(open, name)?) {
            self.counters.unchanged.fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        self.remove_entry(node, dfd, name, file_type(d.kind()))?;
        Ok(false)
    }

    /// Syncs into the existing directory `name` (metadata `d`) of the
    /// destination: writable for the walk, owned like the source (as root),
    /// then a job of its own.
    fn enter_existing_dir<'s>(
        &'s self,
        s: &rayon::Scope<'s>,
        node: &Arc<Node>,
        dfd: BorrowedFd<'_>,
        name: &CStr,
        m: &Meta,
        d: Meta,
    ) -> Result<()> {
        let mut mode_now = d.perm();
        if !self.env.as_root && mode_now & 0o700 != 0o700 {
            // We need to write into it; its final mode is set when it is finished.
            mode_now |= 0o700;
            rustix::fs::chmodat(dfd, name, Mode::from_raw_mode(mode_now), AtFlags::empty())
                .map_err(|e| self.err("set mode of", self.dst_full(&node.rel, Some(name)), e))?;
        }
        if self.env.as_root && (d.uid != m.uid || d.gid != m.gid) {
            chown_to(dfd, name, m)
                .map_err(|e| self.err("set owner of", self.dst_full(&node.rel, Some(name)), e))?;
        }
        let (new_gid, setgid) = self.gid_rule(&d, m.gid);
        self.spawn_dir(s, node, name, *m, Some(d), mode_now, new_gid, setgid, true);
        Ok(())
    }

    /// Creates the directory `name` like the source's `m` (writable for the
    /// walk until it is finished) and starts a job for it.
    fn create_dir<'s>(
        &'s self,
        s: &rayon::Scope<'s>,
        node: &Arc<Node>,
        dfd: BorrowedFd<'_>,
        name: &CStr,
        m: &Meta,
    ) -> Result<()> {
        let want = m.perm() & 0o1777 | if self.env.as_root { 0 } else { 0o700 };
        rustix::fs::mkdirat(dfd, name, Mode::from_raw_mode(want))
            .map_err(|e| self.err("create directory", self.dst_full(&node.rel, Some(name)), e))?;
        self.counters.dirs.fetch_add(1, Ordering::Relaxed);
        let mut dir_gid = node.new_gid;
        if self.env.needs_chown(m, node.new_gid) {
            chown_to(dfd, name, m)
                .map_err(|e| self.err("set owner of", self.dst_full(&node.rel, Some(name)), e))?;
            dir_gid = m.gid;
        }
        // Subdirectories inherit S_ISGID; u32::MAX: mode unknown, set it when finished.
        let got = match self.env.created_mode(want) {
            Some(g) => g | if node.setgid { S_ISGID } else { 0 },
            None => u32::MAX,
        };
        let new_gid = if node.setgid { dir_gid } else { self.env.egid };
        self.spawn_dir(s, node, name, *m, None, got, new_gid, node.setgid, false);
        Ok(())
    }

    /// A file or symlink could not be copied: a source that vanished since
    /// it was listed is skipped (nothing was created for it), anything else
    /// fails the walk with the path and the operation.
    fn entry_error(&self, node: &Node, name: &CStr, (op, which, e): OpError) -> Result<()> {
        let src = self.src_full(&node.rel, Some(name));
        if which == Side::Src && vanished(&e) {
            tracing::info!("{}: {} vanished while copying", self.verb, src.display());
            return Ok(());
        }
        let p = if which == Side::Src {
            src
        } else {
            self.dst_full(&node.rel, Some(name))
        };
        Err(self.err(op, p, e))
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn_dir<'s>(
        &'s self,
        s: &rayon::Scope<'s>,
        node: &Arc<Node>,
        name: &CStr,
        src: Meta,
        dst_before: Option<Meta>,
        dst_mode: u32,
        new_gid: u32,
        setgid: bool,
        sync: bool,
    ) {
        node.pending.fetch_add(1, Ordering::AcqRel);
        let child = Arc::new(Node {
            rel: node.rel.join(osname(name)),
            src,
            dst_before,
            dst_mode: AtomicU32::new(dst_mode),
            new_gid,
            setgid,
            modified: AtomicBool::new(false),
            sync,
            vanished: AtomicBool::new(false),
            pending: AtomicUsize::new(1),
            parent: Some(node.clone()),
        });
        s.spawn(move |s| self.dir_job(s, child));
    }

    /// True when the existing copy `d` of `m` needs no work (type, size, mtime, mode, owner).
    fn same(&self, m: &Meta, d: &Meta) -> bool {
        m.kind() == d.kind()
            && m.size == d.size
            && m.mtime == d.mtime
            && (m.kind() == Kind::Symlink || m.perm() == d.perm())
            && (!self.env.as_root || (m.uid == d.uid && m.gid == d.gid))
            // A copy still hard-linked to something the source no longer links it to.
            && (m.kind() != Kind::File || m.nlink > 1 || d.nlink == 1)
    }

    fn same_target(&self, open: &Open, name: &CStr) -> Result<bool> {
        let a = rustix::fs::readlinkat(&open.src, name, Vec::new())
            .map_err(|e| self.err("read link", self.src_full(&open.node.rel, Some(name)), e))?;
        Ok(matches!(rustix::fs::readlinkat(&open.dst, name, Vec::new()), Ok(b) if a == b))
    }

    /// Registers a multiply-linked file; returns its group and whether we lead it.
    fn link_slot(&self, m: &Meta, rel: &Path, name: &CStr) -> (Arc<LinkSlot>, bool) {
        let key = (m.dev, m.ino);
        let mut links = match self.links.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        match links.get(&key) {
            Some(s) => (s.clone(), false),
            None => {
                let slot = Arc::new(LinkSlot {
                    dst_rel: rel.join(osname(name)),
                    state: Mutex::new(None),
                    cv: Condvar::new(),
                });
                links.insert(key, slot.clone());
                (slot, true)
            }
        }
    }

    /// Makes `name` a hard link to its group's first copy (which is being
    /// written by a running job, so the wait is short). False when that copy
    /// is not there because its source vanished: the caller copies `name`.
    fn follow_link(&self, open: &Open, name: &CStr, in_dst: bool, slot: &LinkSlot) -> Result<bool> {
        let node = &open.node;
        let Ok(ino) = slot.wait() else {
            if !self.aborted.load(Ordering::Relaxed) {
                return Ok(false);
            }
            return Err(anyhow!(
                "{}: cannot hard-link {}: copying {} failed",
                self.verb,
                self.dst_full(&node.rel, Some(name)).display(),
                self.dst_path.join(&slot.dst_rel).display()
            ));
        };
        if in_dst {
            match sys::stat_at(open.dst.as_fd(), name) {
                Ok(d) if d.ino == ino => {
                    self.counters.unchanged.fetch_add(1, Ordering::Relaxed);
                    return Ok(true);
                }
                Ok(d) => self.remove_entry(node, open.dst.as_fd(), name, file_type(d.kind()))?,
                Err(_) => {}
            }
        }
        node.modified.store(true, Ordering::Relaxed);
        rustix::fs::linkat(
            &self.dst_root,
            &slot.dst_rel,
            &open.dst,
            name,
            AtFlags::empty(),
        )
        .map_err(|e| self.err("create hard link", self.dst_full(&node.rel, Some(name)), e))?;
        self.counters.hardlinks.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    fn remove_existing(&self, node: &Node, dfd: BorrowedFd<'_>, name: &CStr) -> Result<()> {
        match sys::stat_at(dfd, name) {
            Ok(d) => self.remove_entry(node, dfd, name, file_type(d.kind())),
            Err(_) => Ok(()),
        }
    }

    /// Removes an entry of the destination (a whole subtree for a directory).
    fn remove_entry(
        &self,
        node: &Node,
        dfd: BorrowedFd<'_>,
        name: &CStr,
        ft: FileType,
    ) -> Result<()> {
        node.modified.store(true, Ordering::Relaxed);
        let path = || self.dst_full(&node.rel, Some(name));
        if ft != FileType::Directory {
            match rustix::fs::unlinkat(dfd, name, AtFlags::empty()) {
                Ok(()) => {
                    self.counters.removed.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(rustix::io::Errno::ISDIR) => {}
                Err(e) => return Err(self.err("remove", path(), e)),
            }
        }
        let base = self.dst_full(&node.rel, None);
        self.remove_subtree(dfd, &base, Path::new(osname(name)))
    }

    /// One job of `node` finished; the last one sets the directory's mode and times.
    fn done(&self, mut node: Arc<Node>) {
        loop {
            if node.pending.fetch_sub(1, Ordering::AcqRel) != 1 {
                return;
            }
            if !self.aborted.load(Ordering::Relaxed) {
                if let Err(e) = self.finish(&node) {
                    self.fail(e);
                }
            }
            match node.parent.clone() {
                Some(p) => node = p,
                None => return,
            }
        }
    }

    fn finish(&self, node: &Node) -> Result<()> {
        if node.vanished.load(Ordering::Relaxed) {
            return Ok(());
        }
        let rel = rel_or_dot(&node.rel);
        let root = self.dst_root.as_fd();
        let m = &node.src;
        let mode_now = node.dst_mode.load(Ordering::Relaxed);
        if mode_now != m.perm() {
            rustix::fs::chmodat(root, rel, Mode::from_raw_mode(m.perm()), AtFlags::empty())
                .map_err(|e| self.err("set mode of", self.dst_full(&node.rel, None), e))?;
        }
        let touched = match &node.dst_before {
            None => true,
            Some(d) => node.modified.load(Ordering::Relaxed) || d.mtime != m.mtime,
        };
        if touched {
            rustix::fs::utimensat(root, rel, &m.times(), AtFlags::empty())
                .map_err(|e| self.err("set times of", self.dst_full(&node.rel, None), e))?;
        } else {
            self.counters.unchanged.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Called right before the engine opens a source entry (`name`, at path
/// `full()`) it has listed and looked at: with `ROOTSWAP_FAULT=vanish=NAME`,
/// an entry called NAME is removed from the source at that instant, as an
/// application removing its lock directory at the worst moment would (the
/// tests make the race happen every time this way; see
/// [`crate::crashpoint::fault`]). Costs one load when unset.
fn about_to_open(name: &[u8], full: impl Fn() -> PathBuf) {
    #[cfg(test)]
    tests_hook::opening(&full());
    if crate::crashpoint::fault("vanish").is_some_and(|v| v.as_bytes() == name) {
        let p = full();
        let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
    }
}

/// Unit tests make the race happen on a path of their own.
#[cfg(test)]
pub(super) mod tests_hook {
    use super::*;

    /// Paths removed (once) right before the engine opens them.
    pub static VANISH: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

    pub fn opening(path: &Path) {
        let Ok(mut v) = VANISH.lock() else { return };
        if let Some(i) = v.iter().position(|p| p == path) {
            v.remove(i);
            let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
        }
    }
}
