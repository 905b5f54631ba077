//! Copy engine edge cases: bounded descriptors on deep trees, large
//! directories split into parallel chunks with hard links across them,
//! owners (as root), set-group-ID directories, and failures that must name
//! the path and the operation.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::support;
use rootswap::copy::{copy_tree, remove_tree, sync_tree, CopyOptions};

fn opts() -> CopyOptions {
    CopyOptions {
        threads: 2,
        nice: None,
    }
}

/// Sets (`on`) or clears the immutable attribute with `chattr`. Setting it
/// needs root, `chattr` (e2fsprogs) and a filesystem with attributes; when
/// one is missing the test is skipped locally and fails under `CI=true`
/// ([`crate::support::skip_or_fail`]), so it cannot pass there without running.
fn immutable(p: &Path, on: bool) -> bool {
    if on && !support::require_root("chattr +i") {
        return false;
    }
    let Some(chattr) = (if on {
        support::require_tool("chattr")
    } else {
        support::find_tool("chattr")
    }) else {
        return false;
    };
    match Command::new(chattr)
        .arg(if on { "+i" } else { "-i" })
        .arg(p)
        .output()
    {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            support::skip_or_fail(&format!(
                "chattr +i fails on {}: {}",
                p.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            false
        }
        Err(e) => {
            support::skip_or_fail(&format!("chattr cannot run: {e}"));
            false
        }
    }
}

#[test]
fn deep_tree_copies_with_few_descriptors() {
    // It counts the descriptors of the whole test process: not beside a
    // test holding servers and connections open.
    let _heavy = support::heavy();
    // 300 levels: a walk that kept every ancestor open would need 600+ descriptors.
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let mut p = src.clone();
    for i in 0..300 {
        p.push(format!("d{}", i % 10));
    }
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("leaf.php"), "<?php").unwrap();
    let dst = t.path().join("dst");
    let before = std::fs::read_dir("/proc/self/fd").unwrap().count();
    copy_tree(&src, &dst, &opts()).unwrap();
    let after = std::fs::read_dir("/proc/self/fd").unwrap().count();
    // (light tests of this binary run at the same time and open a few)
    assert!(
        after <= before + 20,
        "descriptors leaked: {before} -> {after}"
    );
    let leaf = dst.join(p.strip_prefix(&src).unwrap()).join("leaf.php");
    assert_eq!(std::fs::read_to_string(leaf).unwrap(), "<?php");
    let stats = sync_tree(&src, &dst, &opts()).unwrap();
    assert_eq!(stats.files + stats.dirs, 0, "{stats:?}");
    let r = remove_tree(&dst, &opts()).unwrap();
    assert!(r.failed.is_empty() && !dst.exists());
}

#[test]
fn wide_directory_with_hard_links_across_chunks() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..1500 {
        std::fs::write(src.join(format!("f{i:04}")), format!("{i}")).unwrap();
    }
    // Links between far-apart entries (different chunks of the listing).
    for i in 0..20 {
        std::fs::hard_link(src.join(format!("f{i:04}")), src.join(format!("link{i}"))).unwrap();
    }
    let dst = t.path().join("dst");
    let stats = copy_tree(&src, &dst, &opts()).unwrap();
    assert_eq!(stats.files, 1500);
    assert_eq!(stats.hardlinks, 20);
    for i in 0..20 {
        let a = std::fs::metadata(dst.join(format!("f{i:04}"))).unwrap();
        let b = std::fs::metadata(dst.join(format!("link{i}"))).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(a.nlink(), 2);
    }
    let sd = std::fs::metadata(&src).unwrap();
    let dd = std::fs::metadata(&dst).unwrap();
    assert_eq!((sd.mtime(), sd.mtime_nsec()), (dd.mtime(), dd.mtime_nsec()));
}

#[test]
fn owners_and_setgid_directories_as_root() {
    if !support::require_root("changing owners") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("uploads/2026")).unwrap();
    std::fs::write(src.join("uploads/2026/a.jpg"), "jpg").unwrap();
    std::fs::write(src.join("index.php"), "<?php").unwrap();
    std::os::unix::fs::symlink("index.php", src.join("link")).unwrap();
    std::os::unix::fs::chown(src.join("uploads"), Some(33), Some(33)).unwrap();
    std::fs::set_permissions(src.join("uploads"), std::fs::Permissions::from_mode(0o2775)).unwrap();
    std::os::unix::fs::chown(src.join("uploads/2026"), Some(33), Some(33)).unwrap();
    std::os::unix::fs::chown(src.join("uploads/2026/a.jpg"), Some(33), Some(33)).unwrap();
    std::os::unix::fs::lchown(src.join("link"), Some(1234), Some(4321)).unwrap();
    std::fs::set_permissions(
        src.join("index.php"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let dst = t.path().join("dst");
    copy_tree(&src, &dst, &opts()).unwrap();
    for rel in [
        "uploads",
        "uploads/2026",
        "uploads/2026/a.jpg",
        "index.php",
        "link",
    ] {
        let s = std::fs::symlink_metadata(src.join(rel)).unwrap();
        let d = std::fs::symlink_metadata(dst.join(rel)).unwrap();
        assert_eq!(
            (s.uid(), s.gid(), s.mode()),
            (d.uid(), d.gid(), d.mode()),
            "{rel}"
        );
    }
    // Sync fixes an owner and a mode changed in the copy.
    std::os::unix::fs::chown(dst.join("index.php"), Some(0), Some(0)).unwrap();
    std::fs::set_permissions(dst.join("uploads"), std::fs::Permissions::from_mode(0o755)).unwrap();
    sync_tree(&src, &dst, &opts()).unwrap();
    let d = std::fs::metadata(dst.join("index.php")).unwrap();
    assert_eq!((d.uid(), d.mode() & 0o7777), (0, 0o4755));
    assert_eq!(
        std::fs::metadata(dst.join("uploads")).unwrap().mode() & 0o7777,
        0o2775
    );
}

#[test]
fn removal_reports_what_it_cannot_remove_and_removes_the_rest() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("tree");
    std::fs::create_dir_all(d.join("a/b")).unwrap();
    std::fs::create_dir_all(d.join("c")).unwrap();
    std::fs::write(d.join("a/b/stuck"), "x").unwrap();
    std::fs::write(d.join("a/b/other"), "x").unwrap();
    std::fs::write(d.join("c/free"), "x").unwrap();
    if !immutable(&d.join("a/b/stuck"), true) {
        return;
    }
    let r = remove_tree(&d, &opts()).unwrap();
    immutable(&d.join("a/b/stuck"), false);
    assert_eq!(r.failed.len(), 1, "{:?}", r.failed);
    assert!(r.failed[0].0.ends_with("a/b/stuck"), "{:?}", r.failed);
    assert!(r.failed[0].1.contains("cannot remove"), "{:?}", r.failed);
    assert!(!d.join("c").exists() && !d.join("a/b/other").exists());
    assert!(d.join("a/b/stuck").exists());
    assert!(remove_tree(&d, &opts()).unwrap().failed.is_empty());
    assert!(!d.exists());
}

#[test]
fn sync_failure_names_the_path_and_the_operation() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("locked")).unwrap();
    let dst = t.path().join("dst");
    copy_tree(&src, &dst, &opts()).unwrap();
    std::fs::write(src.join("locked/new.php"), "<?php").unwrap();
    if !immutable(&dst.join("locked"), true) {
        return;
    }
    let res = sync_tree(&src, &dst, &opts());
    immutable(&dst.join("locked"), false);
    let msg = format!("{:#}", res.unwrap_err());
    assert!(
        msg.contains("cannot create") && msg.contains("locked/new.php"),
        "{msg}"
    );
}

#[test]
fn copy_into_existing_destination_fails_without_touching_it() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let dst = t.path().join("dst");
    std::fs::create_dir(&dst).unwrap();
    std::fs::write(dst.join("keep"), "k").unwrap();
    let msg = format!("{:#}", copy_tree(&src, &dst, &opts()).unwrap_err());
    assert!(
        msg.contains("cannot create directory") && msg.contains("dst"),
        "{msg}"
    );
    assert!(dst.join("keep").exists());
}
