//! The incremental snapshot through the real binary: with `keep: 1` the next
//! deploy renames the previous snapshot and brings it up to date with ROOT
//! (same inode, contents equal to ROOT's), `incremental: false` copies from
//! scratch, and a snapshot the user kept is never recycled.

use crate::support::*;
use std::os::unix::fs::MetadataExt;

const APP: &[(&str, &str)] = &[
    ("index.php", "<?php echo 'v1';"),
    ("lib/a.php", "<?php // a v1"),
    ("lib/old.php", "<?php // old"),
    ("vendor/pkg/src/Thing.php", "<?php class Thing {}"),
];

fn ino(w: &World, name: &str) -> u64 {
    std::fs::metadata(w.webroot.join(name)).unwrap().ino()
}

/// Commits a change and deploys it; returns ROOT's state just before the deploy.
fn change_and_deploy(
    w: &World,
    files: &[(&str, &str)],
    remove: &[&str],
) -> std::collections::BTreeMap<std::path::PathBuf, String> {
    w.write_files(files);
    for r in remove {
        std::fs::remove_file(w.repo.join(r)).unwrap();
    }
    w.commit("change");
    let before = tree_state(&w.root());
    w.ok(&["deploy"]);
    before
}

#[test]
fn next_deploy_recycles_the_previous_snapshot_into_an_exact_copy_of_root() {
    let w = World::new(APP, "snapshots:\n  keep: 1\n");
    w.ok(&["deploy"]);
    change_and_deploy(
        &w,
        &[
            ("index.php", "<?php echo 'v2';"),
            ("lib/new.php", "<?php // new"),
        ],
        &["lib/old.php"],
    );
    let first = w.snapshots();
    assert_eq!(first.len(), 1, "{first:?}");
    let first_ino = ino(&w, &first[0]);

    let root_before = change_and_deploy(
        &w,
        &[
            ("index.php", "<?php echo 'v3';"),
            ("lib/old.php", "<?php // back"),
        ],
        &["lib/new.php"],
    );
    let second = w.snapshots();
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second[0], first[0], "a new snapshot name");
    assert_eq!(
        ino(&w, &second[0]),
        first_ino,
        "the previous snapshot was renamed and brought up to date, not copied"
    );
    assert_same(
        &root_before,
        &tree_state(&w.webroot.join(&second[0])),
        "recycled snapshot vs ROOT before the deploy",
    );
    assert_eq!(read(&w.link().join("index.php")), "<?php echo 'v3';");
}

#[test]
fn incremental_false_copies_from_scratch() {
    let w = World::new(APP, "snapshots:\n  keep: 1\n  incremental: false\n");
    w.ok(&["deploy"]);
    change_and_deploy(&w, &[("index.php", "<?php echo 'v2';")], &[]);
    let first = w.snapshots();
    let first_ino = ino(&w, &first[0]);
    let root_before = change_and_deploy(&w, &[("index.php", "<?php echo 'v3';")], &[]);
    let second = w.snapshots();
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(ino(&w, &second[0]), first_ino, "a fresh copy");
    assert_same(
        &root_before,
        &tree_state(&w.webroot.join(&second[0])),
        "fresh snapshot vs ROOT before the deploy",
    );
}

#[test]
fn a_kept_snapshot_is_never_recycled() {
    let w = World::new(APP, "snapshots:\n  keep: 1\n");
    w.ok(&["deploy"]);
    change_and_deploy(&w, &[("index.php", "<?php echo 'v2';")], &[]);
    let first = w.snapshots();
    w.ok(&["snapshots", "keep", &first[0], "--as", "before-v3"]);
    let kept_state = tree_state(&w.webroot.join("ROOT_before-v3"));
    let kept_ino = ino(&w, "ROOT_before-v3");
    change_and_deploy(&w, &[("index.php", "<?php echo 'v3';")], &[]);
    assert_eq!(ino(&w, "ROOT_before-v3"), kept_ino);
    assert_same(
        &kept_state,
        &tree_state(&w.webroot.join("ROOT_before-v3")),
        "kept snapshot",
    );
    let timestamped: Vec<String> = w
        .snapshots()
        .into_iter()
        .filter(|n| n != "ROOT_before-v3")
        .collect();
    assert_eq!(timestamped.len(), 1, "{timestamped:?}");
    assert_ne!(ino(&w, &timestamped[0]), kept_ino);
}
