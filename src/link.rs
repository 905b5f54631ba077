//! The atomic link switch: point the serving link at a tree with one rename.
//!
//! The new link is created under a unique temporary name in the same
//! directory and renamed over the old one with rename(2), which replaces the
//! directory entry in one step: at no instant is there no link. (`ln -sfn`
//! unlinks then creates, and requests in that window fail: see
//! docs/zero-downtime.md#switching-the-link.)

use std::path::Path;

use anyhow::{Context, Result};

/// Points the symlink `link` at `target` (a name relative to the link's
/// directory, e.g. `ROOT`) with one rename(2), then fsyncs the directory.
pub fn point_link(link: &Path, target: &str) -> Result<()> {
    let dir = link.parent().unwrap_or(Path::new("."));
    let name = link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.rootswap-tmp-{}", std::process::id()));
    // A leftover from a crashed run with the same pid: remove it first.
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("cannot create symlink {} -> {target}", tmp.display()))?;
    crate::crashpoint::hit("link-temp");
    if let Err(e) = std::fs::rename(&tmp, link) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e)
            .with_context(|| format!("cannot rename {} over {}", tmp.display(), link.display()));
    }
    crate::fsutil::fsync_dir(dir)?;
    Ok(())
}

/// Removes temporary links a killed run left next to `link` (the
/// `.NAME.rootswap-tmp-PID` names `point_link` creates). Call with the deploy
/// lock held: no other rootswap process is switching then.
pub fn remove_stale_temps(link: &Path) -> Result<()> {
    let dir = link.parent().unwrap_or(Path::new("."));
    let Some(name) = link.file_name() else {
        return Ok(());
    };
    let prefix = format!(".{}.rootswap-tmp-", name.to_string_lossy());
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let path = entry.path();
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove stale link {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn creates_and_replaces_a_link() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ROOT")).unwrap();
        std::fs::create_dir(dir.path().join("ROOT_x")).unwrap();
        let link = dir.path().join("current");
        point_link(&link, "ROOT").unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("ROOT"));
        point_link(&link, "ROOT_x").unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("ROOT_x"));
        // No temporary names are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn stale_temporary_links_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ROOT")).unwrap();
        let link = dir.path().join("current");
        point_link(&link, "ROOT").unwrap();
        std::os::unix::fs::symlink("ROOT_x", dir.path().join(".current.rootswap-tmp-123")).unwrap();
        std::fs::write(dir.path().join(".other.rootswap-tmp-1"), "keep").unwrap();
        remove_stale_temps(&link).unwrap();
        assert!(std::fs::symlink_metadata(dir.path().join(".current.rootswap-tmp-123")).is_err());
        assert!(dir.path().join(".other.rootswap-tmp-1").exists());
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("ROOT"));
    }

    #[test]
    fn the_link_never_disappears_while_switching() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("A")).unwrap();
        std::fs::create_dir(dir.path().join("B")).unwrap();
        std::fs::write(dir.path().join("A/f"), "a").unwrap();
        std::fs::write(dir.path().join("B/f"), "b").unwrap();
        let link = dir.path().join("current");
        point_link(&link, "A").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let stop = stop.clone();
            let f = link.join("f");
            std::thread::spawn(move || {
                let mut misses = 0u64;
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match std::fs::read(&f) {
                        Ok(_) => reads += 1,
                        Err(_) => misses += 1,
                    }
                }
                (reads, misses)
            })
        };
        for i in 0..2000 {
            point_link(&link, if i % 2 == 0 { "B" } else { "A" }).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let (reads, misses) = reader.join().unwrap();
        assert!(reads > 0);
        assert_eq!(
            misses, 0,
            "the link was missing {misses} times in {reads} reads"
        );
    }
}
