//! Copying one entry between two open directories: a regular file (reflink,
//! else `copy_file_range`, else read/write) or a symlink, with its owner,
//! mode and times, in as few system calls as the process allows ([`Env`]).
//! The tree walk and the single-file copy both go through here.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Gid, Mode, Uid};

use super::sys::{self, Kind, Meta};

/// What the process may and may not do, and which fast paths still work.
pub(super) struct Env {
    pub as_root: bool,
    pub euid: u32,
    pub egid: u32,
    pub umask: Option<u32>,
    /// Cleared once a reflink fails with "not supported" (ext4, cross-device).
    pub try_reflink: AtomicBool,
    /// Cleared once `copy_file_range` fails with "not supported".
    pub try_cfr: AtomicBool,
}

impl Env {
    pub fn new() -> Env {
        Env {
            as_root: rustix::process::geteuid().is_root(),
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            umask: sys::umask(),
            try_reflink: AtomicBool::new(true),
            try_cfr: AtomicBool::new(true),
        }
    }

    /// Whether a new entry owned by (euid, `new_gid`) must be chowned to match `m`.
    pub(super) fn needs_chown(&self, m: &Meta, new_gid: u32) -> bool {
        self.as_root && (m.uid != self.euid || m.gid != new_gid)
    }

    /// Mode a file created with `mode` (no special bits) gets, if known.
    pub(super) fn created_mode(&self, mode: u32) -> Option<u32> {
        self.umask.map(|u| mode & !u)
    }
}

/// True for the errors that mean "the entry listed a moment ago is not
/// there any more" (removed, or its name now holds something else).
pub(super) fn vanished(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

pub(super) fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::Other => FileType::Unknown,
    }
}

/// Gives the entry `dir/name` (not following a symlink) the owner and group of `m`.
pub(super) fn chown_to(dir: impl AsFd, name: &CStr, m: &Meta) -> rustix::io::Result<()> {
    rustix::fs::chownat(
        dir,
        name,
        Some(uid(m.uid)),
        Some(gid(m.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
}

pub(super) fn uid(u: u32) -> Uid {
    Uid::from_raw(u)
}

pub(super) fn gid(g: u32) -> Gid {
    Gid::from_raw(g)
}

/// Which side an error is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Src,
    Dst,
}

pub(super) type OpError = (&'static str, Side, io::Error);

/// Copies the regular file `sdir/sname` (metadata `m`) to the new file
/// `ddir/dname`: contents (reflink, else `copy_file_range`), owner (as root,
/// only when it differs from what a new file gets), mode (only when the umask
/// changed it), times. On failure the partial destination is removed.
/// Returns the bytes copied.
pub(super) fn copy_file(
    env: &Env,
    sdir: BorrowedFd<'_>,
    sname: &CStr,
    m: &Meta,
    ddir: BorrowedFd<'_>,
    dname: &CStr,
    new_gid: u32,
) -> std::result::Result<u64, OpError> {
    let input = if m.size > 0 {
        Some(sys::open_read(sdir, sname).map_err(|e| ("open", Side::Src, e))?)
    } else {
        None
    };
    let create_mode = m.perm() & 0o777;
    let out = sys::create_file(ddir, dname, create_mode).map_err(|e| ("create", Side::Dst, e))?;
    let res = (|| {
        let mut n = 0;
        if let Some(input) = &input {
            n = copy_contents(env, input.as_fd(), out.as_fd(), m.size)
                .map_err(|e| ("copy contents to", Side::Dst, e))?;
        }
        let chowned = env.needs_chown(m, new_gid);
        if chowned {
            rustix::fs::fchown(&out, Some(uid(m.uid)), Some(gid(m.gid)))
                .map_err(|e| ("set owner of", Side::Dst, e.into()))?;
        }
        if env.created_mode(create_mode) != Some(m.perm()) {
            rustix::fs::fchmod(&out, Mode::from_raw_mode(m.perm()))
                .map_err(|e| ("set mode of", Side::Dst, e.into()))?;
        }
        rustix::fs::futimens(&out, &m.times())
            .map_err(|e| ("set times of", Side::Dst, e.into()))?;
        Ok(n)
    })();
    if res.is_err() {
        drop(out);
        let _ = rustix::fs::unlinkat(ddir, dname, AtFlags::empty());
    }
    res
}

/// Reflink when possible, else `copy_file_range` in the kernel, else read/write.
fn copy_contents(
    env: &Env,
    input: BorrowedFd<'_>,
    output: BorrowedFd<'_>,
    len: u64,
) -> io::Result<u64> {
    if env.try_reflink.load(Ordering::Relaxed) {
        match rustix::fs::ioctl_ficlone(output, input) {
            Ok(()) => return Ok(len),
            Err(e) => {
                if sys::unsupported(&e.into()) {
                    env.try_reflink.store(false, Ordering::Relaxed);
                }
            }
        }
    }
    let mut done = 0u64;
    if env.try_cfr.load(Ordering::Relaxed) {
        while done < len {
            match rustix::fs::copy_file_range(
                input,
                None,
                output,
                None,
                (len - done).min(1 << 30) as usize,
            ) {
                Ok(0) => return Ok(done), // the file shrank while we copied
                Ok(n) => done += n as u64,
                Err(e) if done == 0 && sys::unsupported(&e.into()) => {
                    env.try_cfr.store(false, Ordering::Relaxed);
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if done >= len {
            return Ok(done);
        }
    }
    let mut buf = vec![0u8; 128 * 1024];
    while done < len {
        let n = rustix::io::read(input, &mut buf)?;
        if n == 0 {
            break;
        }
        let mut w = 0;
        while w < n {
            w += rustix::io::write(output, &buf[w..n])?;
        }
        done += n as u64;
    }
    Ok(done)
}

/// Copies the symlink `sdir/sname` as a link with the same target, owner and times.
pub(super) fn copy_symlink(
    env: &Env,
    sdir: BorrowedFd<'_>,
    sname: &CStr,
    m: &Meta,
    ddir: BorrowedFd<'_>,
    dname: &CStr,
    new_gid: u32,
) -> std::result::Result<(), OpError> {
    let target: CString =
        rustix::fs::readlinkat(sdir, sname, Vec::with_capacity(m.size as usize + 1))
            .map_err(|e| ("read link", Side::Src, e.into()))?;
    rustix::fs::symlinkat(target.as_c_str(), ddir, dname)
        .map_err(|e| ("create symlink", Side::Dst, e.into()))?;
    let res = (|| {
        if env.needs_chown(m, new_gid) {
            chown_to(ddir, dname, m).map_err(|e| ("set owner of", Side::Dst, e.into()))?;
        }
        rustix::fs::utimensat(ddir, dname, &m.times(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| ("set times of", Side::Dst, e.into()))
    })();
    if res.is_err() {
        let _ = rustix::fs::unlinkat(ddir, dname, AtFlags::empty());
    }
    res
}
