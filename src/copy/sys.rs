//! Thin wrappers over the `*at` system calls the engine uses: everything
//! works on directory file descriptors and single names, so the kernel never
//! re-resolves a long path per file.

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, Timespec, Timestamps};

/// `S_IFMT` and friends (the same on every Linux architecture).
const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
/// Set-group-ID bit.
pub const S_ISGID: u32 = 0o2000;

/// What kind of entry a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

/// The part of `struct stat` the engine needs.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
}

impl Meta {
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn from_stat(st: &rustix::fs::Stat) -> Meta {
        Meta {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            nlink: st.st_nlink as u64,
            mode: st.st_mode as u32,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            size: st.st_size.max(0) as u64,
            atime: (st.st_atime as i64, st.st_atime_nsec as i64),
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
        }
    }

    /// The kind of entry.
    pub fn kind(&self) -> Kind {
        match self.mode & S_IFMT {
            S_IFDIR => Kind::Dir,
            S_IFREG => Kind::File,
            S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        }
    }

    /// Permission bits including set-id and sticky bits.
    pub fn perm(&self) -> u32 {
        self.mode & 0o7777
    }

    /// Access and modification times, for `futimens`/`utimensat`.
    pub fn times(&self) -> Timestamps {
        Timestamps {
            last_access: Timespec {
                tv_sec: self.atime.0,
                tv_nsec: self.atime.1 as _,
            },
            last_modification: Timespec {
                tv_sec: self.mtime.0,
                tv_nsec: self.mtime.1 as _,
            },
        }
    }
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
pub fn stat_at<P: rustix::path::Arg>(dir: BorrowedFd<'_>, name: P) -> io::Result<Meta> {
    Ok(Meta::from_stat(&rustix::fs::statat(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
    )?))
}

/// `fstat(fd)`.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<Meta> {
    Ok(Meta::from_stat(&rustix::fs::fstat(fd)?))
}

/// Opens a directory below `dir` without following a final symlink.
pub fn open_dir<P: rustix::path::Arg>(dir: BorrowedFd<'_>, path: P) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens a directory by path (relative to the working directory or absolute).
pub fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    open_dir(rustix::fs::CWD, path)
}

/// Opens a directory by path, following symlinks on the way (the parent of
/// a single file being copied may be a link, e.g. a shared directory).
pub fn open_dir_path_follow(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        rustix::fs::CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens a file for reading without following a symlink.
pub fn open_read(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Creates a new file (it must not exist) for writing with `mode`.
pub fn create_file(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?)
}

/// Names (and `d_type`) of a directory's entries, except `.` and `..`.
/// Names are kept in one buffer to avoid an allocation per entry.
pub struct Listing {
    names: Vec<u8>,
    /// (start, end including the NUL, type) of each entry in `names`.
    entries: Vec<(u32, u32, FileType)>,
}

impl Listing {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Name and type of entry `i`.
    pub fn get(&self, i: usize) -> (&CStr, FileType) {
        let (s, e, t) = self.entries[i];
        // The buffer holds NUL-terminated names copied from CStrs: cannot fail.
        let name = CStr::from_bytes_with_nul(&self.names[s as usize..e as usize]).unwrap_or(c"");
        (name, t)
    }

    /// Sorts the entries by name (bytewise).
    pub fn sort(&mut self) {
        let names = &self.names;
        self.entries.sort_unstable_by(|a, b| {
            names[a.0 as usize..a.1 as usize].cmp(&names[b.0 as usize..b.1 as usize])
        });
    }

    /// Index of `name` in a sorted listing.
    pub fn find(&self, name: &CStr) -> Option<usize> {
        let key = name.to_bytes_with_nul();
        self.entries
            .binary_search_by(|e| self.names[e.0 as usize..e.1 as usize].cmp(key))
            .ok()
    }
}

/// Reads all entries of the directory open at `fd` (which must be freshly opened).
pub fn list_dir(fd: BorrowedFd<'_>) -> io::Result<Listing> {
    let mut buf: Vec<MaybeUninit<u8>> = Vec::with_capacity(32 * 1024);
    buf.resize(32 * 1024, MaybeUninit::uninit());
    let mut out = Listing {
        names: Vec::new(),
        entries: Vec::new(),
    };
    let mut iter = RawDir::new(fd, &mut buf);
    while let Some(entry) = iter.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes_with_nul();
        if name == b".\0" || name == b"..\0" {
            continue;
        }
        let start = out.names.len();
        out.names.extend_from_slice(name);
        let end = out.names.len();
        if end > u32::MAX as usize {
            return Err(io::Error::other("directory listing too large"));
        }
        out.entries
            .push((start as u32, end as u32, entry.file_type()));
    }
    Ok(out)
}

/// True for errors meaning "this filesystem (pair) cannot do that operation".
pub fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP)
            | Some(libc::EXDEV)
            | Some(libc::EINVAL)
            | Some(libc::ENOTTY)
            | Some(libc::ENOSYS)
    )
}

/// The process umask, read from /proc (reading it with umask(2) would race
/// with other threads creating files). `None` when unknown.
pub fn umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
}
