//! Unit tests of the copy engine.

use super::walk;
use super::*;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

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
    let removed = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (stop2, removed2) = (stop.clone(), removed.clone());
    let remover = std::thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            if std::fs::remove_dir_all(&gone).is_ok() {
                removed2.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    // At least 500 copies, and on until the remover has struck (on a busy
    // machine its thread may start after the first 500), within 30 s.
    let (mut done, mut skipped) = (0, 0);
    let start = std::time::Instant::now();
    let mut i = 0;
    while (i < 500 || removed.load(Ordering::Relaxed) == 0)
        && start.elapsed() < std::time::Duration::from_secs(30)
    {
        i += 1;
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
    remover.join().unwrap();
    assert!(
        removed.load(Ordering::Relaxed) > 0,
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
