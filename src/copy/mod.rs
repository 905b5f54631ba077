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

use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, Context, Result};

pub mod bench;
mod remove;
mod sys;
mod walk;

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
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
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
    /// Entries of the source tree copied or checked, the top directory not
    /// included: for a complete copy or sync, the number of entries in the
    /// source (remembered as the next deploy's progress total).
    pub entries: u64,
}

/// What a removal could not remove.
#[derive(Debug, Default)]
pub struct RemoveReport {
    /// Entries removed.
    pub removed: u64,
    /// Paths that could not be removed, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

fn pool(opts: &CopyOptions) -> Result<rayon::ThreadPool> {
    let nice = opts.nice;
    rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.max(1))
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
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0,
            (IOPRIO_CLASS_BE << 13) | 7,
        );
    }
}

/// Copies the tree at `src` into `dst`, which must not exist. On failure the
/// partial `dst` is removed and the error names the path and the operation.
pub fn copy_tree(src: &Path, dst: &Path, opts: &CopyOptions) -> Result<CopyStats> {
    let meta = std::fs::symlink_metadata(src)
        .with_context(|| format!("copy: cannot stat {}", src.display()))?;
    if !meta.is_dir() {
        return Err(anyhow!("copy: {} is not a directory", src.display()));
    }
    let pool = pool(opts)?;
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dst)
            .with_context(|| format!("copy: cannot create directory {}", dst.display()))?;
    }
    let res = Walk::new(src, dst, "copy").and_then(|w| {
        w.counters.dirs.fetch_add(1, Ordering::Relaxed);
        pool.install(|| w.run(false))?;
        Ok(w.counters.stats())
    });
    if res.is_err() {
        let _ = pool.install(|| remove_tree_in_pool(dst));
    }
    res
}

use walk::Walk;

/// Makes `dst` identical to `src` (types, contents, modes, mtimes, owners,
/// link targets), touching only what differs. `dst` must be a directory.
pub fn sync_tree(src: &Path, dst: &Path, opts: &CopyOptions) -> Result<CopyStats> {
    let meta = std::fs::symlink_metadata(src)
        .with_context(|| format!("sync: cannot stat {}", src.display()))?;
    if !meta.is_dir() {
        return Err(anyhow!("sync: {} is not a directory", src.display()));
    }
    let pool = pool(opts)?;
    let w = Walk::new(src, dst, "sync")?;
    pool.install(|| w.run(true))?;
    Ok(w.counters.stats())
}

/// Removes `path` and everything below it, in parallel, continuing past
/// failures; the report lists what stayed. A missing `path` is not an error.
/// Entries removed are counted on a progress bar that shows the running step.
pub fn remove_tree(path: &Path, opts: &CopyOptions) -> Result<RemoveReport> {
    pool(opts)?.install(|| remove_tree_counted(path, crate::progress::counting()))
}

fn remove_tree_in_pool(path: &Path) -> Result<RemoveReport> {
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
    let r = remove::Remover::new(base.as_fd(), parent);
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

/// Copies one file, symlink or empty directory from `src` to `dst` with its
/// metadata, writing a temporary name beside `dst` and renaming it into place.
/// Parent directories of `dst` are created as needed. Counts one entry on a
/// progress bar that shows the running step (the copy-back passes).
pub fn copy_file_atomic(src: &Path, dst: &Path) -> Result<()> {
    copy_one(src, dst, Expect::Any)?;
    crate::progress::advance();
    Ok(())
}

/// What the destination of [`copy_file_if`] must be at the instant the copy
/// lands there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Whatever it is (a plain rename).
    Any,
    /// Absent: a file that appeared meanwhile is not replaced (RENAME_NOREPLACE).
    Absent,
    /// Present, and (when given) still this version: a file deleted or
    /// rewritten meanwhile is not overwritten or brought back (RENAME_EXCHANGE,
    /// swapped back when the file it replaced is not this version).
    Present(Option<Version>),
}

/// A file's version as the copy-back compares it: size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// Size in bytes.
    pub size: u64,
    /// Modification time: seconds and nanoseconds.
    pub mtime: (i64, i64),
}

/// Whether a conditional copy landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// The copy is in place.
    Done,
    /// The destination changed (appeared or vanished) since the caller
    /// looked: the copy was discarded, the destination left as it is.
    Skipped,
}

/// [`copy_file_atomic`], landing only if the destination is still as the
/// caller saw it (`expect`), decided atomically by the final rename. The
/// copy-back uses it so that a file a request deletes or creates while the
/// copy is in flight is not overwritten or brought back. On filesystems
/// without rename flags it falls back to a plain rename.
pub fn copy_file_if(src: &Path, dst: &Path, expect: Expect) -> Result<Placed> {
    let placed = copy_one(src, dst, expect)?;
    if placed == Placed::Done {
        crate::progress::advance();
    }
    Ok(placed)
}

fn copy_one(src: &Path, dst: &Path, expect: Expect) -> Result<Placed> {
    let smeta = std::fs::symlink_metadata(src)
        .with_context(|| format!("copy: cannot stat {}", src.display()))?;
    let dparent = parent_or_dot(dst);
    let sparent = parent_or_dot(src);
    let sname = cname(src)?;
    let dname = cname(dst)?;
    let env = walk::Env::new();
    make_parents(&env, src, dst)?;
    if smeta.is_dir() {
        if !dst.is_dir() {
            std::fs::create_dir(dst)
                .with_context(|| format!("copy: cannot create directory {}", dst.display()))?;
        }
        return set_dir_meta(&env, src, dst).map(|()| Placed::Done);
    }
    let sdir = sys::open_dir_path_follow(sparent)
        .with_context(|| format!("copy: cannot open directory {}", sparent.display()))?;
    let ddir = match sys::open_dir_path_follow(dparent) {
        Ok(d) => d,
        // Removed (by the application) since it was made or seen: its removal is newer.
        Err(e) if walk::vanished(&e) => return Ok(Placed::Skipped),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("copy: cannot open directory {}", dparent.display()))
        }
    };
    let m = sys::stat_at(sdir.as_fd(), sname.as_c_str())
        .with_context(|| format!("copy: cannot stat {}", src.display()))?;
    let dm = sys::fstat(ddir.as_fd())
        .with_context(|| format!("copy: cannot stat {}", dparent.display()))?;
    let new_gid = if dm.mode & sys::S_ISGID != 0 {
        dm.gid
    } else {
        env.egid
    };
    let tmp_os = format!(
        ".rootswap-tmp-{}",
        dst.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let tmp = CString::new(tmp_os.as_bytes())
        .map_err(|_| anyhow!("copy: {} contains a NUL byte", dst.display()))?;
    let tmp_path = dparent.join(&tmp_os);
    let _ = rustix::fs::unlinkat(&ddir, tmp.as_c_str(), rustix::fs::AtFlags::empty());
    let written = match m.kind() {
        sys::Kind::File => {
            walk::copy_file(&env, sdir.as_fd(), &sname, &m, ddir.as_fd(), &tmp, new_gid).map(|_| ())
        }
        sys::Kind::Symlink => {
            walk::copy_symlink(&env, sdir.as_fd(), &sname, &m, ddir.as_fd(), &tmp, new_gid)
        }
        _ => {
            return Err(anyhow!(
                "copy: {} is not a file, directory or symlink",
                src.display()
            ))
        }
    };
    match written {
        Ok(()) => {}
        // The destination directory was removed while the copy was written.
        Err((_, walk::Side::Dst, e)) if walk::vanished(&e) => return Ok(Placed::Skipped),
        Err((op, side, e)) => {
            let p = if side == walk::Side::Src {
                src
            } else {
                tmp_path.as_path()
            };
            return Err(anyhow!("copy: cannot {op} {}: {e}", p.display()));
        }
    }
    let target = Target {
        dir: &ddir,
        tmp: &tmp,
        tmp_path: &tmp_path,
        name: &dname,
        path: dst,
    };
    target.land(expect)
}

/// The parent directory of `p` (`.` for a bare name).
fn parent_or_dot(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Where a copy written under a temporary name lands.
struct Target<'a> {
    dir: &'a std::os::fd::OwnedFd,
    tmp: &'a CString,
    tmp_path: &'a Path,
    name: &'a CString,
    path: &'a Path,
}

impl Target<'_> {
    fn unlink_tmp(&self) {
        let _ = rustix::fs::unlinkat(self.dir, self.tmp.as_c_str(), rustix::fs::AtFlags::empty());
    }

    fn rename_error(&self, e: rustix::io::Errno) -> anyhow::Error {
        self.unlink_tmp();
        anyhow!(
            "copy: cannot rename {} over {}: {e}",
            self.tmp_path.display(),
            self.path.display()
        )
    }

    /// Renames the temporary copy over the destination as `expect` says.
    fn land(&self, expect: Expect) -> Result<Placed> {
        let (ddir, tmp, dname) = (self.dir, self.tmp.as_c_str(), self.name.as_c_str());
        let mut expect = expect;
        if let Ok(existing) = sys::stat_at(ddir.as_fd(), dname) {
            if existing.kind() == sys::Kind::Dir {
                expect = Expect::Any;
                let r = remove_tree_in_pool(self.path)?;
                if let Some((p, why)) = r.failed.first() {
                    self.unlink_tmp();
                    return Err(anyhow!(
                        "copy: cannot replace directory {}: {}: {why}",
                        self.path.display(),
                        p.display()
                    ));
                }
            }
        }
        let flags = match expect {
            Expect::Any => None,
            Expect::Absent => Some(rustix::fs::RenameFlags::NOREPLACE),
            Expect::Present(_) => Some(rustix::fs::RenameFlags::EXCHANGE),
        };
        if let Some(flags) = flags {
            match rustix::fs::renameat_with(ddir, tmp, ddir, dname, flags) {
                Ok(()) => return Ok(self.keep_or_swap_back(expect)),
                Err(rustix::io::Errno::EXIST) | Err(rustix::io::Errno::NOENT) => {
                    self.unlink_tmp();
                    return Ok(Placed::Skipped);
                }
                // No rename flags here (an old kernel, some network filesystems): plain rename.
                Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {}
                Err(e) => return Err(self.rename_error(e)),
            }
        }
        match rustix::fs::renameat(ddir, tmp, ddir, dname) {
            Ok(()) => Ok(Placed::Done),
            // The directory was removed meanwhile, with the temporary copy in it.
            Err(rustix::io::Errno::NOENT) => Ok(Placed::Skipped),
            Err(e) => Err(self.rename_error(e)),
        }
    }

    /// After an exchange the temporary name holds the replaced file: if it
    /// is not the version the caller decided on, put it back.
    fn keep_or_swap_back(&self, expect: Expect) -> Placed {
        let (ddir, tmp, dname) = (self.dir, self.tmp.as_c_str(), self.name.as_c_str());
        if let Expect::Present(Some(want)) = expect {
            let replaced = sys::stat_at(ddir.as_fd(), tmp).ok().map(|m| Version {
                size: m.size,
                mtime: m.mtime,
            });
            if replaced.is_some_and(|v| v != want)
                && rustix::fs::renameat_with(
                    ddir,
                    tmp,
                    ddir,
                    dname,
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .is_ok()
            {
                self.unlink_tmp();
                return Placed::Skipped;
            }
        }
        self.unlink_tmp();
        Placed::Done
    }
}

/// Creates the missing parent directories of `dst`, top down. Each one gets
/// the owner, group and mode of its counterpart in the source tree (the
/// directory at the same place above `src`), or, where the source has none,
/// of the directory it is created in: never the owner of the process (root),
/// which would lock the application out of its own directories. A directory
/// someone else creates meanwhile is left as they made it. Without root,
/// owners cannot be given away: the directories are the process's, with the
/// counterpart's mode plus `u+rwx` (the copy must write into them).
fn make_parents(env: &walk::Env, src: &Path, dst: &Path) -> Result<()> {
    let mut missing: Vec<(&Path, Option<&Path>)> = Vec::new();
    let (mut d, mut s) = (dst.parent(), src.parent());
    while let Some(dir) = d.filter(|p| !p.as_os_str().is_empty()) {
        match std::fs::metadata(dir) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let counterpart = s.filter(|c| c.file_name() == dir.file_name());
                missing.push((dir, counterpart));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("copy: cannot stat {}", dir.display()))
            }
        }
        d = dir.parent();
        s = s.and_then(Path::parent);
    }
    for (dir, counterpart) in missing.into_iter().rev() {
        make_dir_like(env, dir, counterpart)?;
    }
    Ok(())
}

/// Creates the directory `dir` with the owner, group and mode of
/// `counterpart` when that is a directory, else of `dir`'s parent. A
/// directory removed meanwhile (by the application, with its parent) is not
/// an error: the copy into it is skipped when it finds it gone.
fn make_dir_like(env: &walk::Env, dir: &Path, counterpart: Option<&Path>) -> Result<()> {
    match try_make_dir_like(env, dir, counterpart) {
        Ok(()) => Ok(()),
        Err((e, _)) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err((e, what)) => Err(e).with_context(|| format!("copy: cannot {what} {}", dir.display())),
    }
}

type Failed = (std::io::Error, &'static str);

fn try_make_dir_like(
    env: &walk::Env,
    dir: &Path,
    counterpart: Option<&Path>,
) -> std::result::Result<(), Failed> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let like = counterpart
        .and_then(|c| std::fs::metadata(c).ok())
        .filter(|m| m.is_dir());
    let like = match like {
        Some(m) => m,
        None => std::fs::metadata(parent_or_dot(dir)).map_err(|e| (e, "stat the parent of"))?,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        // Someone else made it meanwhile: theirs, left as they made it.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err((e, "create directory")),
    }
    let mut mode = like.mode() & 0o7777;
    if env.as_root {
        std::os::unix::fs::chown(dir, Some(like.uid()), Some(like.gid()))
            .map_err(|e| (e, "set the owner of"))?;
    } else {
        mode |= 0o700;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| (e, "set the mode of"))
}

fn cname(p: &Path) -> Result<CString> {
    let n = p
        .file_name()
        .ok_or_else(|| anyhow!("copy: {} has no file name", p.display()))?;
    CString::new(n.as_bytes()).map_err(|_| anyhow!("copy: {} contains a NUL byte", p.display()))
}

/// Gives the directory `dst` the mode, times and (as root) owner of `src`.
fn set_dir_meta(env: &walk::Env, src: &Path, dst: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::symlink_metadata(src)
        .with_context(|| format!("copy: cannot stat {}", src.display()))?;
    if env.as_root {
        std::os::unix::fs::chown(dst, Some(m.uid()), Some(m.gid()))
            .with_context(|| format!("copy: cannot set owner of {}", dst.display()))?;
    }
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))
        .with_context(|| format!("copy: cannot set mode of {}", dst.display()))?;
    let fd = sys::open_dir_path(dst)
        .with_context(|| format!("copy: cannot open directory {}", dst.display()))?;
    let meta = sys::fstat(
        sys::open_dir_path(src)
            .with_context(|| format!("copy: cannot open {}", src.display()))?
            .as_fd(),
    )?;
    rustix::fs::futimens(&fd, &meta.times())
        .with_context(|| format!("copy: cannot set times of {}", dst.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn opts() -> CopyOptions {
        CopyOptions {
            threads: 2,
            nice: None,
        }
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
        assert_eq!(
            std::fs::read_link(dst.join("a/link")).unwrap(),
            Path::new("../top")
        );
        let (sm, dm) = (
            std::fs::metadata(src.join("top")).unwrap(),
            std::fs::metadata(dst.join("top")).unwrap(),
        );
        assert_eq!(sm.mode(), dm.mode());
        assert_eq!((sm.mtime(), sm.mtime_nsec()), (dm.mtime(), dm.mtime_nsec()));
        assert_eq!(dm.nlink(), 2);
        let (sd, dd) = (
            std::fs::metadata(src.join("a")).unwrap(),
            std::fs::metadata(dst.join("a")).unwrap(),
        );
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
        assert_eq!(
            std::fs::read_to_string(dst.join("a/b/f.php")).unwrap(),
            "<?php echo 2;"
        );
        assert!(dst.join("new").exists());
        assert!(!dst.join("extra").exists());
        assert!(!dst.join("a/b/empty").exists());
        assert!(stats.unchanged >= 2, "{stats:?}");
    }

    #[test]
    fn copy_and_sync_count_every_source_entry() {
        // The snapshot's progress total is the last count: copy and sync of the
        // same tree must count the same, whatever they had to do.
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        sample(&src); // a, a/b, a/b/empty, a/b/f.php, top, a/link, a/hard
        for i in 0..300 {
            // More than one chunk in one directory.
            std::fs::write(src.join(format!("a/b/many-{i}")), "x").unwrap();
        }
        let dst = t.path().join("dst");
        assert_eq!(copy_tree(&src, &dst, &opts()).unwrap().entries, 307);
        assert_eq!(sync_tree(&src, &dst, &opts()).unwrap().entries, 307);
        std::fs::write(src.join("new"), "n").unwrap();
        std::fs::write(dst.join("extra"), "x").unwrap();
        assert_eq!(sync_tree(&src, &dst, &opts()).unwrap().entries, 308);
    }

    #[test]
    fn failed_copy_removes_partial_destination() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("d")).unwrap();
        std::fs::write(src.join("d/secret"), "s").unwrap();
        std::fs::set_permissions(src.join("d/secret"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
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
    fn a_conditional_copy_lands_only_on_what_the_caller_saw() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::write(&src, "snapshot's version").unwrap();
        let dst = t.path().join("dst");
        // Absent, and still absent: lands.
        assert_eq!(
            copy_file_if(&src, &dst, Expect::Absent).unwrap(),
            Placed::Done
        );
        assert_eq!(std::fs::read_to_string(&dst).unwrap(), "snapshot's version");
        // Absent, but a request created it meanwhile: the request's file stays.
        std::fs::write(&dst, "request's upload").unwrap();
        assert_eq!(
            copy_file_if(&src, &dst, Expect::Absent).unwrap(),
            Placed::Skipped
        );
        assert_eq!(std::fs::read_to_string(&dst).unwrap(), "request's upload");
        // Present at the version seen: replaced.
        let seen = |p: &Path| {
            let m = std::fs::metadata(p).unwrap();
            Some(Version {
                size: m.len(),
                mtime: (m.mtime(), m.mtime_nsec()),
            })
        };
        let v = seen(&dst);
        assert_eq!(
            copy_file_if(&src, &dst, Expect::Present(v)).unwrap(),
            Placed::Done
        );
        assert_eq!(std::fs::read_to_string(&dst).unwrap(), "snapshot's version");
        // Present, but rewritten meanwhile: swapped back, the rewrite stays.
        let v = seen(&dst);
        std::fs::write(&dst, "appended by a request").unwrap();
        assert_eq!(
            copy_file_if(&src, &dst, Expect::Present(v)).unwrap(),
            Placed::Skipped
        );
        assert_eq!(
            std::fs::read_to_string(&dst).unwrap(),
            "appended by a request"
        );
        // Present, but deleted meanwhile: not brought back.
        std::fs::remove_file(&dst).unwrap();
        assert_eq!(
            copy_file_if(&src, &dst, Expect::Present(None)).unwrap(),
            Placed::Skipped
        );
        assert!(!dst.exists());
        // No temporary file is left by any of them.
        let names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("src")]);
    }

    /// Makes `paths` vanish right before the engine opens them (after their
    /// directory was listed and they were looked at).
    fn vanish_on_open(paths: &[PathBuf]) {
        walk::tests_hook::VANISH
            .lock()
            .unwrap()
            .extend(paths.iter().cloned());
    }

    fn locks(src: &Path) {
        for d in ["keep", "gone", "gone/sub"] {
            std::fs::create_dir_all(src.join("data/locks").join(d)).unwrap();
        }
        std::fs::write(src.join("data/locks/keep/lock"), "k").unwrap();
        std::fs::write(src.join("data/locks/gone/lock"), "g").unwrap();
        std::fs::write(src.join("data/locks/gone/sub/f"), "g").unwrap();
        std::fs::write(src.join("data/page.txt"), "p").unwrap();
        std::fs::write(src.join("data/gone.txt"), "g").unwrap();
    }

    #[test]
    fn a_directory_or_file_that_vanishes_between_listing_and_opening_is_skipped() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        sample(&src);
        locks(&src);
        vanish_on_open(&[src.join("data/locks/gone"), src.join("data/gone.txt")]);
        let dst = t.path().join("dst");
        copy_tree(&src, &dst, &opts()).expect("a vanished entry does not fail the copy");
        assert!(!src.join("data/locks/gone").exists(), "the race happened");
        assert!(!src.join("data/gone.txt").exists(), "the race happened");
        assert!(!dst.join("data/locks/gone").exists());
        assert!(!dst.join("data/gone.txt").exists());
        assert_eq!(
            std::fs::read_to_string(dst.join("data/locks/keep/lock")).unwrap(),
            "k"
        );
        assert_eq!(
            std::fs::read_to_string(dst.join("data/page.txt")).unwrap(),
            "p"
        );
        assert!(dst.join("a/b/f.php").is_file());
    }

    #[test]
    fn the_sync_of_a_recycled_copy_skips_what_vanishes_and_drops_its_old_copy() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        sample(&src);
        locks(&src);
        let dst = t.path().join("dst");
        copy_tree(&src, &dst, &opts()).unwrap();
        // An old lock the copy has, and a new one it lacks, both vanish mid-sync.
        std::fs::create_dir_all(src.join("data/locks/new/sub")).unwrap();
        std::fs::write(src.join("data/locks/new/sub/f"), "n").unwrap();
        std::fs::write(src.join("data/page.txt"), "p2").unwrap();
        vanish_on_open(&[src.join("data/locks/gone"), src.join("data/locks/new")]);
        sync_tree(&src, &dst, &opts()).expect("a vanished directory does not fail the sync");
        assert!(!src.join("data/locks/gone").exists() && !src.join("data/locks/new").exists());
        assert!(!dst.join("data/locks/gone").exists(), "its old copy goes");
        assert!(!dst.join("data/locks/new").exists());
        assert_eq!(
            std::fs::read_to_string(dst.join("data/page.txt")).unwrap(),
            "p2"
        );
        // The next sync finds nothing left to do: the copy is the source.
        let again = sync_tree(&src, &dst, &opts()).unwrap();
        assert_eq!(
            (again.files, again.dirs, again.removed),
            (0, 0, 0),
            "{again:?}"
        );
    }

    #[test]
    fn copied_files_get_parent_directories_like_their_counterparts() {
        use std::os::unix::fs::DirBuilderExt;
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("snap"), t.path().join("root"));
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::DirBuilder::new()
            .mode(0o750)
            .recursive(true)
            .create(src.join("data/pages/ns/sub"))
            .unwrap();
        std::fs::set_permissions(
            src.join("data/pages/ns"),
            std::fs::Permissions::from_mode(0o2771),
        )
        .unwrap();
        std::fs::write(src.join("data/pages/ns/sub/page.txt"), "p").unwrap();
        let as_root = rustix::process::geteuid().is_root();
        if as_root {
            for d in ["data", "data/pages", "data/pages/ns", "data/pages/ns/sub"] {
                std::os::unix::fs::chown(src.join(d), Some(33), Some(34)).unwrap();
            }
        }
        copy_file_atomic(
            &src.join("data/pages/ns/sub/page.txt"),
            &dst.join("data/pages/ns/sub/page.txt"),
        )
        .unwrap();
        for d in ["data", "data/pages", "data/pages/ns", "data/pages/ns/sub"] {
            let (s, d2) = (
                std::fs::metadata(src.join(d)).unwrap(),
                std::fs::metadata(dst.join(d)).unwrap(),
            );
            if as_root {
                assert_eq!((d2.uid(), d2.gid()), (s.uid(), s.gid()), "{d}");
                assert_eq!(d2.mode(), s.mode(), "{d}");
            } else {
                assert_eq!(d2.mode(), s.mode() | 0o700, "{d}");
            }
        }
        // No counterpart (the source has no such directory): like the parent.
        std::fs::write(t.path().join("lone"), "l").unwrap();
        copy_file_atomic(&t.path().join("lone"), &dst.join("data/pages/ns/new/lone")).unwrap();
        let (p, n) = (
            std::fs::metadata(dst.join("data/pages/ns")).unwrap(),
            std::fs::metadata(dst.join("data/pages/ns/new")).unwrap(),
        );
        assert_eq!((n.uid(), n.gid(), n.mode()), (p.uid(), p.gid(), p.mode()));
    }

    #[test]
    fn a_copy_into_a_directory_removed_meanwhile_is_skipped() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("snap"), t.path().join("root"));
        std::fs::create_dir_all(src.join("locks/x")).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::write(src.join("locks/x/lock"), "l").unwrap();
        // The application removes the destination directory as fast as it can
        // (DokuWiki's lock directories): every instant of the copy gets hit.
        let gone = dst.join("locks/x");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let remover = std::thread::spawn(move || {
            let mut removed = 0u32;
            while !stop2.load(Ordering::Relaxed) {
                if std::fs::remove_dir_all(&gone).is_ok() {
                    removed += 1;
                }
            }
            removed
        });
        let (mut done, mut skipped) = (0, 0);
        for _ in 0..500 {
            let placed = copy_file_if(
                &src.join("locks/x/lock"),
                &dst.join("locks/x/lock"),
                Expect::Absent,
            );
            match placed {
                Ok(Placed::Skipped) => skipped += 1,
                Ok(Placed::Done) => done += 1,
                Err(e) => panic!("a directory removed meanwhile fails the copy: {e:#}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        let removed = remover.join().unwrap();
        assert!(
            removed > 0,
            "the remover ran ({done} copied, {skipped} skipped)"
        );
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
