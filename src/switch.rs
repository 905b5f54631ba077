//! Step 3 and 6 of the flow: point the serving link at a tree, atomically.
//!
//! The new link is created under a unique temporary name in the same
//! directory and renamed over the old one with rename(2), which replaces the
//! directory entry in one step: at no instant is there no link. (`ln -sfn`
//! unlinks then creates, and requests in that window fail: see NOTES.md §1.)

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
    if let Err(e) = std::fs::rename(&tmp, link) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e)
            .with_context(|| format!("cannot rename {} over {}", tmp.display(), link.display()));
    }
    crate::fsutil::fsync_dir(dir)?;
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
