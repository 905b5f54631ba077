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

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use rayon::prelude::*;

/// How a copy runs.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Nice value (CPU and best-effort I/O priority) for the worker threads.
    pub nice: Option<i32>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            nice: None,
        }
    }
}

/// What a copy or sync did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files written (copied or reflinked).
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hard links created.
    pub hardlinks: u64,
    /// Bytes of file content copied.
    pub bytes: u64,
    /// Entries left as they were (sync only).
    pub unchanged: u64,
    /// Entries removed (sync only).
    pub removed: u64,
}

/// What a removal could not remove.
#[derive(Debug, Default)]
pub struct RemoveReport {
    /// Entries removed.
    pub removed: u64,
    /// Paths that could not be removed, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

#[derive(Default)]
struct Counters {
    files: AtomicU64,
    dirs: AtomicU64,
    symlinks: AtomicU64,
    hardlinks: AtomicU64,
    bytes: AtomicU64,
    unchanged: AtomicU64,
    removed: AtomicU64,
}

impl Counters {
    fn stats(&self) -> CopyStats {
        CopyStats {
            files: self.files.load(Ordering::Relaxed),
            dirs: self.dirs.load(Ordering::Relaxed),
            symlinks: self.symlinks.load(Ordering::Relaxed),
            hardlinks: self.hardlinks.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            unchanged: self.unchanged.load(Ordering::Relaxed),
            removed: self.removed.load(Ordering::Relaxed),
        }
    }
}

struct Ctx {
    counters: Counters,
    /// (dev, ino) of multiply-linked source files → their first destination.
    links: Mutex<HashMap<(u64, u64), PathBuf>>,
    as_root: bool,
    /// Cleared once a reflink fails with "not supported": no further attempts.
    try_reflink: AtomicBool,
}

impl Ctx {
    fn new() -> Ctx {
        Ctx {
            counters: Counters::default(),
            links: Mutex::new(HashMap::new()),
            as_root: rustix::process::geteuid().is_root(),
            try_reflink: AtomicBool::new(true),
        }
    }
}

fn pool(opts: &CopyOptions) -> Result<rayon::ThreadPool> {
    let nice = opts.nice;
    rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.max(1))
        .stack_size(8 << 20)
        .thread_name(|i| format!("rootswap-copy-{i}"))
        .start_handler(move |_| {
            if let Some(n) = nice {
                lower_priority(n);
            }
        })
        .build()
        .context("cannot start copy threads")
}

/// Lowers the calling thread's CPU priority and moves its I/O to best-effort, lowest level.
fn lower_priority(nice: i32) {
    // SAFETY: setpriority/ioprio_set act on the calling thread (who = 0); no memory is passed.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, nice);
        const IOPRIO_WHO_PROCESS: libc::c_long = 1;
        const IOPRIO_CLASS_BE: libc::c_long = 2;
        libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, (IOPRIO_CLASS_BE << 13) | 7);
    }
}

/// Copies the tree at `src` into `dst`, which must not exist. On failure the
/// partial `dst` is removed and the error names the path and the operation.
pub fn copy_tree(src: &Path, dst: &Path, opts: &CopyOptions) -> Result<CopyStats> {
    let meta = std::fs::symlink_metadata(src).with_context(|| format!("copy: cannot stat {}", src.display()))?;
    if !meta.is_dir() {
        return Err(anyhow!("copy: {} is not a directory", src.display()));
    }
    let ctx = Ctx::new();
    std::fs::create_dir(dst).with_context(|| format!("copy: cannot create directory {}", dst.display()))?;
    ctx.counters.dirs.fetch_add(1, Ordering::Relaxed);
    let res = pool(opts)?.install(|| copy_dir_contents(&ctx, src, dst).and_then(|_| set_meta_dir(&ctx, dst, &meta)));
    if let Err(e) = res {
        let _ = remove_tree(dst, opts);
        return Err(e);
    }
    Ok(ctx.counters.stats())
}

/// Makes `dst` identical to `src` (types, contents, modes, mtimes, owners,
/// link targets), touching only what differs. `dst` must be a directory.
pub fn sync_tree(src: &Path, dst: &Path, opts: &CopyOptions) -> Result<CopyStats> {
    let meta = std::fs::symlink_metadata(src).with_context(|| format!("sync: cannot stat {}", src.display()))?;
    let ctx = Ctx::new();
    pool(opts)?.install(|| sync_dir(&ctx, src, dst).and_then(|_| set_meta_dir(&ctx, dst, &meta)))?;
    Ok(ctx.counters.stats())
}

/// Removes `path` and everything below it, in parallel, continuing past
/// failures; the report lists what stayed. A missing `path` is not an error.
pub fn remove_tree(path: &Path, opts: &CopyOptions) -> Result<RemoveReport> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RemoveReport::default()),
        Err(e) => return Err(e).with_context(|| format!("remove: cannot stat {}", path.display())),
    };
    let removed = AtomicU64::new(0);
    let failed = Mutex::new(Vec::new());
    if meta.is_dir() {
        pool(opts)?.install(|| remove_dir_rec(path, &removed, &failed));
    } else {
        remove_one(path, false, &removed, &failed);
    }
    Ok(RemoveReport {
        removed: removed.load(Ordering::Relaxed),
        failed: failed.into_inner().unwrap_or_default(),
    })
}

/// Copies one file, symlink or empty directory from `src` to `dst` with its
/// metadata, writing a temporary name beside `dst` and renaming it into place.
/// Parent directories of `dst` are created as needed.
pub fn copy_file_atomic(src: &Path, dst: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(src).with_context(|| format!("copy: cannot stat {}", src.display()))?;
    let parent = dst.parent().ok_or_else(|| anyhow!("copy: {} has no parent", dst.display()))?;
    std::fs::create_dir_all(parent).with_context(|| format!("copy: cannot create directory {}", parent.display()))?;
    let name = dst.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".rootswap-tmp-{name}"));
    let _ = std::fs::remove_file(&tmp);
    let ctx = Ctx::new();
    if meta.is_dir() {
        if !dst.is_dir() {
            std::fs::create_dir(dst).with_context(|| format!("copy: cannot create directory {}", dst.display()))?;
        }
        return set_meta_dir(&ctx, dst, &meta);
    }
    copy_entry(&ctx, src, &tmp, &meta)?;
    if let Ok(m) = std::fs::symlink_metadata(dst) {
        if m.is_dir() {
            std::fs::remove_dir_all(dst).with_context(|| format!("copy: cannot replace directory {}", dst.display()))?;
        }
    }
    std::fs::rename(&tmp, dst).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow!("copy: cannot rename {} over {}: {e}", tmp.display(), dst.display())
    })
}

fn read_entries(dir: &Path) -> Result<Vec<(OsString, Metadata)>> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("copy: cannot read directory {}", dir.display()))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("copy: cannot read directory {}", dir.display()))?;
        let m = e.metadata().with_context(|| format!("copy: cannot stat {}", e.path().display()))?;
        out.push((e.file_name(), m));
    }
    Ok(out)
}

fn copy_dir_contents(ctx: &Ctx, src: &Path, dst: &Path) -> Result<()> {
    let entries = read_entries(src)?;
    entries.par_iter().try_for_each(|(name, meta)| {
        let s = src.join(name);
        let d = dst.join(name);
        if meta.is_dir() {
            std::fs::create_dir(&d).with_context(|| format!("copy: cannot create directory {}", d.display()))?;
            ctx.counters.dirs.fetch_add(1, Ordering::Relaxed);
            copy_dir_contents(ctx, &s, &d)?;
            set_meta_dir(ctx, &d, meta)
        } else {
            copy_entry(ctx, &s, &d, meta)
        }
    })
}

/// Copies a non-directory entry (file, symlink; other types are skipped with a warning).
fn copy_entry(ctx: &Ctx, src: &Path, dst: &Path, meta: &Metadata) -> Result<()> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(src).with_context(|| format!("copy: cannot read link {}", src.display()))?;
        std::os::unix::fs::symlink(&target, dst).with_context(|| format!("copy: cannot create symlink {}", dst.display()))?;
        if ctx.as_root {
            let _ = std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()));
        }
        set_link_times(dst, meta)?;
        ctx.counters.symlinks.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    if !ft.is_file() {
        tracing::warn!("copy: skipping {} (not a file, directory or symlink)", src.display());
        return Ok(());
    }
    if meta.nlink() > 1 {
        let key = (meta.dev(), meta.ino());
        let first = {
            let mut links = ctx.links.lock().map_err(|_| anyhow!("copy: link table poisoned"))?;
            match links.get(&key) {
                Some(p) => Some(p.clone()),
                None => {
                    links.insert(key, dst.to_path_buf());
                    None
                }
            }
        };
        if let Some(first) = first {
            // The first copy may still be in progress on another thread: wait for it.
            for _ in 0..2000 {
                if std::fs::hard_link(&first, dst).is_ok() {
                    ctx.counters.hardlinks.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            return Err(anyhow!("copy: cannot hard-link {} to {}", dst.display(), first.display()));
        }
    }
    copy_regular(ctx, src, dst, meta)
}

fn copy_regular(ctx: &Ctx, src: &Path, dst: &Path, meta: &Metadata) -> Result<()> {
    let input = File::open(src).with_context(|| format!("copy: cannot open {} for reading", src.display()))?;
    let output = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .with_context(|| format!("copy: cannot create {}", dst.display()))?;
    let len = meta.len();
    if len > 0 {
        copy_contents(ctx, &input, &output, len).with_context(|| format!("copy: cannot copy {} to {}", src.display(), dst.display()))?;
    }
    if ctx.as_root {
        std::os::unix::fs::fchown(&output, Some(meta.uid()), Some(meta.gid()))
            .with_context(|| format!("copy: cannot set owner of {}", dst.display()))?;
    }
    output
        .set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .with_context(|| format!("copy: cannot set mode of {}", dst.display()))?;
    output
        .set_times(std::fs::FileTimes::new().set_modified(mtime(meta)).set_accessed(atime(meta)))
        .with_context(|| format!("copy: cannot set times of {}", dst.display()))?;
    ctx.counters.files.fetch_add(1, Ordering::Relaxed);
    ctx.counters.bytes.fetch_add(len, Ordering::Relaxed);
    Ok(())
}

/// Reflink when possible, else `copy_file_range` in the kernel.
fn copy_contents(ctx: &Ctx, input: &File, output: &File, len: u64) -> std::io::Result<()> {
    if ctx.try_reflink.load(Ordering::Relaxed) {
        match rustix::fs::ioctl_ficlone(output, input) {
            Ok(()) => return Ok(()),
            Err(_) => ctx.try_reflink.store(false, Ordering::Relaxed),
        }
    }
    let mut left = len;
    while left > 0 {
        let n = rustix::fs::copy_file_range(input, None, output, None, left.min(1 << 30) as usize)?;
        if n == 0 {
            break; // the file shrank while we copied
        }
        left -= n as u64;
    }
    Ok(())
}

fn mtime(meta: &Metadata) -> SystemTime {
    to_time(meta.mtime(), meta.mtime_nsec())
}

fn atime(meta: &Metadata) -> SystemTime {
    to_time(meta.atime(), meta.atime_nsec())
}

fn to_time(secs: i64, nsec: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nsec as u64)
    }
}

fn set_link_times(path: &Path, meta: &Metadata) -> Result<()> {
    use rustix::fs::{utimensat, AtFlags, Timespec, Timestamps, CWD};
    let ts = Timestamps {
        last_access: Timespec { tv_sec: meta.atime(), tv_nsec: meta.atime_nsec() as _ },
        last_modification: Timespec { tv_sec: meta.mtime(), tv_nsec: meta.mtime_nsec() as _ },
    };
    utimensat(CWD, path, &ts, AtFlags::SYMLINK_NOFOLLOW).with_context(|| format!("copy: cannot set times of {}", path.display()))
}

fn set_meta_dir(ctx: &Ctx, dst: &Path, meta: &Metadata) -> Result<()> {
    if ctx.as_root {
        std::os::unix::fs::chown(dst, Some(meta.uid()), Some(meta.gid()))
            .with_context(|| format!("copy: cannot set owner of {}", dst.display()))?;
    }
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .with_context(|| format!("copy: cannot set mode of {}", dst.display()))?;
    let f = File::open(dst).with_context(|| format!("copy: cannot open directory {}", dst.display()))?;
    f.set_times(std::fs::FileTimes::new().set_modified(mtime(meta)).set_accessed(atime(meta)))
        .with_context(|| format!("copy: cannot set times of {}", dst.display()))
}

/// True when `a` (source) and `b` (existing copy) need no copying.
fn same(ctx: &Ctx, a: &Metadata, b: &Metadata) -> bool {
    let (fa, fb) = (a.file_type(), b.file_type());
    if fa.is_dir() != fb.is_dir() || fa.is_file() != fb.is_file() || fa.is_symlink() != fb.is_symlink() {
        return false;
    }
    let owner_ok = !ctx.as_root || (a.uid() == b.uid() && a.gid() == b.gid());
    a.len() == b.len()
        && a.mtime() == b.mtime()
        && a.mtime_nsec() == b.mtime_nsec()
        && (fa.is_symlink() || a.mode() & 0o7777 == b.mode() & 0o7777)
        && owner_ok
}

fn sync_dir(ctx: &Ctx, src: &Path, dst: &Path) -> Result<()> {
    let src_entries = read_entries(src)?;
    let dst_entries: HashMap<OsString, Metadata> = read_entries(dst)?.into_iter().collect();
    let wanted: std::collections::HashSet<&OsString> = src_entries.iter().map(|(n, _)| n).collect();
    dst_entries.par_iter().filter(|(n, _)| !wanted.contains(n)).try_for_each(|(name, meta)| {
        remove_entry(ctx, &dst.join(name), meta)
    })?;
    src_entries.par_iter().try_for_each(|(name, meta)| {
        let s = src.join(name);
        let d = dst.join(name);
        match dst_entries.get(name) {
            Some(dm) if meta.is_dir() && dm.is_dir() => {
                sync_dir(ctx, &s, &d)?;
                if !same(ctx, meta, dm) || meta.mode() & 0o7777 != dm.mode() & 0o7777 {
                    ctx.counters.dirs.fetch_add(0, Ordering::Relaxed);
                }
                set_meta_dir(ctx, &d, meta)
            }
            Some(dm) if !meta.is_dir() && same(ctx, meta, dm) && link_targets_equal(meta, &s, &d) => {
                ctx.counters.unchanged.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            other => {
                if let Some(dm) = other {
                    remove_entry(ctx, &d, dm)?;
                }
                if meta.is_dir() {
                    std::fs::create_dir(&d).with_context(|| format!("sync: cannot create directory {}", d.display()))?;
                    ctx.counters.dirs.fetch_add(1, Ordering::Relaxed);
                    copy_dir_contents(ctx, &s, &d)?;
                    set_meta_dir(ctx, &d, meta)
                } else {
                    // Hard links are copied as separate files when syncing.
                    if meta.file_type().is_file() {
                        copy_regular(ctx, &s, &d, meta)
                    } else {
                        copy_entry(ctx, &s, &d, meta)
                    }
                }
            }
        }
    })
}

fn link_targets_equal(meta: &Metadata, a: &Path, b: &Path) -> bool {
    if !meta.file_type().is_symlink() {
        return true;
    }
    matches!((std::fs::read_link(a), std::fs::read_link(b)), (Ok(x), Ok(y)) if x == y)
}

fn remove_entry(ctx: &Ctx, path: &Path, meta: &Metadata) -> Result<()> {
    if meta.is_dir() {
        let report = remove_tree(path, &CopyOptions { threads: 1, nice: None })?;
        if let Some((p, why)) = report.failed.first() {
            return Err(anyhow!("sync: cannot remove {}: {why}", p.display()));
        }
    } else {
        std::fs::remove_file(path).with_context(|| format!("sync: cannot remove {}", path.display()))?;
    }
    ctx.counters.removed.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn remove_dir_rec(dir: &Path, removed: &AtomicU64, failed: &Mutex<Vec<(PathBuf, String)>>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).collect::<Vec<_>>(),
        Err(e) => {
            // An unreadable directory may still be removable if it is empty.
            if std::fs::remove_dir(dir).is_err() {
                push_failure(failed, dir, &e, "read directory");
            } else {
                removed.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
    };
    entries.par_iter().for_each(|e| {
        let p = e.path();
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            remove_dir_rec(&p, removed, failed);
        } else {
            remove_one(&p, false, removed, failed);
        }
    });
    remove_one(dir, true, removed, failed);
}

fn remove_one(path: &Path, is_dir: bool, removed: &AtomicU64, failed: &Mutex<Vec<(PathBuf, String)>>) {
    let res = if is_dir { std::fs::remove_dir(path) } else { std::fs::remove_file(path) };
    match res {
        Ok(()) => {
            removed.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            // A directory that is not empty because a child failed is already reported.
            let child_failed = is_dir && e.raw_os_error() == Some(libc::ENOTEMPTY);
            if !child_failed {
                push_failure(failed, path, &e, if is_dir { "remove directory" } else { "remove" });
            }
        }
    }
}

fn push_failure(failed: &Mutex<Vec<(PathBuf, String)>>, path: &Path, e: &std::io::Error, op: &str) {
    let owner = std::fs::symlink_metadata(path).map(|m| format!(" (owner uid {})", m.uid())).unwrap_or_default();
    if let Ok(mut f) = failed.lock() {
        f.push((path.to_path_buf(), format!("cannot {op}: {e}{owner}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn opts() -> CopyOptions {
        CopyOptions { threads: 2, nice: None }
    }

    fn sample(root: &Path) {
        std::fs::create_dir_all(root.join("a/b/empty")).unwrap();
        std::fs::write(root.join("a/b/f.php"), "<?php echo 1;").unwrap();
        std::fs::write(root.join("top"), vec![7u8; 100_000]).unwrap();
        std::fs::set_permissions(root.join("top"), std::fs::Permissions::from_mode(0o751)).unwrap();
        symlink("../top", root.join("a/link")).unwrap();
        std::fs::hard_link(root.join("top"), root.join("a/hard")).unwrap();
    }

    #[test]
    fn copies_types_modes_times_and_hardlinks() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        sample(&src);
        let dst = t.path().join("dst");
        let stats = copy_tree(&src, &dst, &opts()).unwrap();
        assert_eq!(stats.files, 2);
        assert_eq!(stats.hardlinks, 1);
        assert_eq!(stats.symlinks, 1);
        assert!(dst.join("a/b/empty").is_dir());
        assert_eq!(std::fs::read_link(dst.join("a/link")).unwrap(), Path::new("../top"));
        let (sm, dm) = (std::fs::metadata(src.join("top")).unwrap(), std::fs::metadata(dst.join("top")).unwrap());
        assert_eq!(sm.mode(), dm.mode());
        assert_eq!((sm.mtime(), sm.mtime_nsec()), (dm.mtime(), dm.mtime_nsec()));
        assert_eq!(dm.nlink(), 2);
        let (sd, dd) = (std::fs::metadata(src.join("a")).unwrap(), std::fs::metadata(dst.join("a")).unwrap());
        assert_eq!((sd.mtime(), sd.mtime_nsec()), (dd.mtime(), dd.mtime_nsec()));
    }

    #[test]
    fn sync_replaces_adds_and_removes() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        sample(&src);
        let dst = t.path().join("dst");
        copy_tree(&src, &dst, &opts()).unwrap();
        std::fs::write(src.join("a/b/f.php"), "<?php echo 2;").unwrap();
        std::fs::write(src.join("new"), "n").unwrap();
        std::fs::remove_dir(src.join("a/b/empty")).unwrap();
        std::fs::write(dst.join("extra"), "x").unwrap();
        let stats = sync_tree(&src, &dst, &opts()).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join("a/b/f.php")).unwrap(), "<?php echo 2;");
        assert!(dst.join("new").exists());
        assert!(!dst.join("extra").exists());
        assert!(!dst.join("a/b/empty").exists());
        assert!(stats.unchanged >= 2, "{stats:?}");
    }

    #[test]
    fn failed_copy_removes_partial_destination() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("d")).unwrap();
        std::fs::write(src.join("d/secret"), "s").unwrap();
        std::fs::set_permissions(src.join("d/secret"), std::fs::Permissions::from_mode(0o000)).unwrap();
        if rustix::process::geteuid().is_root() {
            // root reads anything: make the destination unwritable instead.
            std::fs::create_dir(t.path().join("ro")).unwrap();
            return;
        }
        let dst = t.path().join("dst");
        let msg = format!("{:#}", copy_tree(&src, &dst, &opts()).unwrap_err());
        assert!(msg.contains("secret"), "{msg}");
        assert!(!dst.exists());
    }

    #[test]
    fn remove_reports_and_continues() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("tree");
        std::fs::create_dir(&d).unwrap();
        sample(&d);
        let r = remove_tree(&d, &opts()).unwrap();
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        assert!(!d.exists());
        assert!(r.removed >= 7);
    }
}
