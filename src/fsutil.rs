//! Small filesystem helpers shared by the stages: durable writes and fsyncs.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// fsyncs a directory so that renames inside it survive a crash.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let f = std::fs::File::open(dir)
        .with_context(|| format!("cannot open {} to fsync it", dir.display()))?;
    f.sync_all()
        .with_context(|| format!("cannot fsync {}", dir.display()))
}

/// Is `name` a temporary name [`write_atomic`] uses (`.NAME.tmp-PID`)?
pub fn is_write_temp(name: &str) -> bool {
    name.starts_with('.')
        && name
            .rsplit_once(".tmp-")
            .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes the temporary files a killed [`write_atomic`] left in `dir`
/// (best effort; call with the deploy lock held).
pub fn remove_write_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if is_write_temp(&e.file_name().to_string_lossy())
            && e.file_type().is_ok_and(|t| t.is_file())
        {
            if let Err(err) = std::fs::remove_file(e.path()) {
                tracing::warn!("cannot remove {}: {err}", e.path().display());
            }
        }
    }
}

/// Writes `data` to `path` durably: temporary file, fsync, rename, directory
/// fsync. The file is created 0600 whatever the umask (it is state: the
/// journal, `state.json`).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| -> Result<()> {
        let mut f = private_options()
            .truncate(true)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(data)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("cannot fsync {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        fsync_dir(dir)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Options that create a file 0600 (owner only) whatever the umask, for
/// writing: the files of the state directory.
pub fn private_options() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).mode(0o600);
    o
}

/// Replaces the contents of `path` with `data` (not atomically), creating
/// it 0600: small state files such as `last-poll`.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    private_options().truncate(true).open(path)?.write_all(data)
}

/// Creates the state directory `dir` 0700 (owner only) whatever the umask,
/// its parents as usual; an existing one that others can read is tightened
/// once, with one log line: the directory to 0700, and its files (and the
/// Git cache's `config`) to owner-only. The state holds the deploy history
/// and the whole Git cache. A tightening that fails is a warning.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot create state directory {}", dir.display()))
            }
        }
        // mkdir(2) applies the umask: 0700 is kept by any umask, but say it.
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        return Ok(());
    }
    let mut changed = Vec::new();
    let mut tighten = |path: &Path, keep: u32| match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_symlink() && m.permissions().mode() & 0o077 != 0 => {
            let old = m.permissions().mode() & 0o7777;
            match std::fs::set_permissions(path, std::fs::Permissions::from_mode(old & keep)) {
                Ok(()) => changed.push(format!(
                    "{} {old:04o} -> {:04o}",
                    path.display(),
                    old & keep
                )),
                Err(e) => tracing::warn!(
                    "cannot make {} private ({e}); run `chmod go-rwx {}` as its owner",
                    path.display(),
                    path.display()
                ),
            }
        }
        _ => {}
    };
    tighten(dir, 0o700);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                tighten(&e.path(), 0o700);
            }
        }
    }
    tighten(&dir.join("repo.git").join("config"), 0o700);
    if !changed.is_empty() {
        tracing::info!(
            "made the state directory private to its owner (it holds the deploy history and the Git cache): {}",
            changed.join(", ")
        );
    }
    Ok(())
}

/// Reads a file to a string, `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// "Now" on the filesystem's clock, in nanoseconds since the epoch: the mtime
/// of a marker file written in `dir`. File mtimes come from the kernel's
/// coarse clock, which can lag the system clock by a tick; comparing a file's
/// mtime with this value is consistent, comparing it with `SystemTime::now()`
/// is not.
pub fn fs_now_ns(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let p = dir.join("clock");
    match write_private(&p, b"x").and_then(|_| std::fs::metadata(&p)) {
        Ok(m) => (m.mtime().max(0) as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(m.mtime_nsec().max(0) as u64),
        Err(_) => crate::fsutil::now_ns(),
    }
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The host name of this machine.
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_killed_write_leaves_a_temp_that_is_recognised_and_removed() {
        let t = tempfile::tempdir().unwrap();
        write_atomic(&t.path().join("state.json"), b"{}").unwrap();
        std::fs::write(t.path().join(".journal.json.tmp-4242"), b"half").unwrap();
        std::fs::write(t.path().join(".keep.tmp-notapid"), b"user").unwrap();
        assert!(is_write_temp(".state.json.tmp-1"));
        assert!(!is_write_temp("state.json.tmp-1"));
        remove_write_temps(t.path());
        let mut names: Vec<String> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".keep.tmp-notapid", "state.json"]);
    }
}
