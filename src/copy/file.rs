//! One file, symlink or empty directory copied into place: written under a
//! temporary name beside its destination and renamed over it, optionally
//! only if the destination is still what the caller saw.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{anyhow, Context, Result};

use super::entry::{self, Env, Side};
use super::remove::remove_tree_in_pool;
use super::sys;

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
    let env = Env::new();
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
        Err(e) if entry::vanished(&e) => return Ok(Placed::Skipped),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("copy: cannot open directory {}", dparent.display()))
        }
    };
    let tmp_os = format!(
        ".rootswap-tmp-{}",
        dst.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let tmp = CString::new(tmp_os.as_bytes())
        .map_err(|_| anyhow!("copy: {} contains a NUL byte", dst.display()))?;
    let target = Target {
        dir: &ddir,
        tmp: &tmp,
        tmp_path: &dparent.join(&tmp_os),
        name: &dname,
        path: dst,
    };
    if !target.write(&env, src, &sdir, &sname)? {
        return Ok(Placed::Skipped);
    }
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
    /// Writes the copy of `sdir/sname` (the file or symlink at `src`)
    /// under the temporary name. False when the destination directory was
    /// removed meanwhile (nothing to land).
    fn write(
        &self,
        env: &Env,
        src: &Path,
        sdir: &std::os::fd::OwnedFd,
        sname: &CString,
    ) -> Result<bool> {
        let ddir = self.dir;
        let m = sys::stat_at(sdir.as_fd(), sname.as_c_str())
            .with_context(|| format!("copy: cannot stat {}", src.display()))?;
        let dm = sys::fstat(ddir.as_fd())
            .with_context(|| format!("copy: cannot stat {}", parent_or_dot(self.path).display()))?;
        let new_gid = if dm.mode & sys::S_ISGID != 0 {
            dm.gid
        } else {
            env.egid
        };
        self.unlink_tmp();
        let (sdir, ddir, tmp) = (sdir.as_fd(), ddir.as_fd(), self.tmp);
        let written = match m.kind() {
            sys::Kind::File => {
                entry::copy_file(env, sdir, sname, &m, ddir, tmp, new_gid).map(|_| ())
            }
            sys::Kind::Symlink => entry::copy_symlink(env, sdir, sname, &m, ddir, tmp, new_gid),
            _ => {
                return Err(anyhow!(
                    "copy: {} is not a file, directory or symlink",
                    src.display()
                ))
            }
        };
        match written {
            Ok(()) => Ok(true),
            // The destination directory was removed while the copy was written.
            Err((_, Side::Dst, e)) if entry::vanished(&e) => Ok(false),
            Err((op, side, e)) => {
                let p = if side == Side::Src {
                    src
                } else {
                    self.tmp_path
                };
                Err(anyhow!("copy: cannot {op} {}: {e}", p.display()))
            }
        }
    }

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
fn make_parents(env: &Env, src: &Path, dst: &Path) -> Result<()> {
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
fn make_dir_like(env: &Env, dir: &Path, counterpart: Option<&Path>) -> Result<()> {
    match try_make_dir_like(env, dir, counterpart) {
        Ok(()) => Ok(()),
        Err((e, _)) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err((e, what)) => Err(e).with_context(|| format!("copy: cannot {what} {}", dir.display())),
    }
}

type Failed = (std::io::Error, &'static str);

fn try_make_dir_like(
    env: &Env,
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
fn set_dir_meta(env: &Env, src: &Path, dst: &Path) -> Result<()> {
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
