//! Shared directories (`user_content.shared`): user content kept outside the
//! trees and symlinked into ROOT and every snapshot.

use crate::support::*;
use std::path::Path;

const APP: &[(&str, &str)] = &[
    ("index.php", "<?php echo 1;"),
    ("uploads/.keep", "placeholder from git"),
    ("lib/a.php", "<?php // a"),
];

fn link_of(p: &Path) -> String {
    std::fs::read_link(p)
        .map(|t| t.display().to_string())
        .unwrap_or_else(|e| format!("not a link: {e}"))
}

fn next_version(w: &World, v: u32) {
    w.write_files(&[("index.php", &format!("<?php echo {v};"))]);
    w.commit(&format!("v{v}"));
}

#[test]
fn a_shared_directory_is_linked_from_the_first_deploy_and_outlives_every_snapshot() {
    let w = World::new(
        APP,
        "snapshots:\n  keep: 1\nuser_content:\n  shared: [uploads]\n\
         hooks:\n  after_checkout: ['if [ -n \"$ROOTSWAP_SNAPSHOT\" ]; then echo during > \"$ROOTSWAP_SNAPSHOT/uploads/during-$ROOTSWAP_COMMIT.jpg\"; fi']\n",
    );
    w.ok(&["deploy"]);
    let shared = w.webroot.join("shared/uploads");
    assert_eq!(link_of(&w.root().join("uploads")), "../shared/uploads");
    assert_eq!(read(&shared.join(".keep")), "placeholder from git");
    // A request writes through the serving link.
    std::fs::write(w.link().join("uploads/avatar.png"), "png").unwrap();
    assert_eq!(read(&shared.join("avatar.png")), "png");

    let mut during = Vec::new();
    for v in 2..=5 {
        next_version(&w, v);
        let out = w.ok(&["deploy", "--json"]);
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["user_files_copied"], 0, "nothing to copy back: {out}");
        during.push(format!(
            "during-{}.jpg",
            git(&w.repo, &["rev-parse", "HEAD"])
        ));
        for s in w.snapshots() {
            assert_eq!(
                link_of(&w.webroot.join(&s).join("uploads")),
                "../shared/uploads"
            );
        }
    }
    // keep: 1 evicted three snapshots; the shared directory lost nothing.
    assert_eq!(w.snapshots().len(), 1);
    assert_eq!(read(&w.link().join("index.php")), "<?php echo 5;");
    assert_eq!(read(&shared.join("avatar.png")), "png");
    for d in &during {
        assert_eq!(read(&shared.join(d)), "during\n", "{d}");
        assert_eq!(read(&w.link().join("uploads").join(d)), "during\n");
    }
}

#[test]
fn an_existing_upload_directory_moves_into_the_shared_directory() {
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    std::fs::create_dir_all(w.link().join("uploads/2026/11")).unwrap();
    std::fs::write(w.link().join("uploads/2026/11/photo.jpg"), "jpg").unwrap();
    std::fs::write(w.link().join("uploads/old.txt"), "old").unwrap();
    // Turn sharing on; a visitor uploads into the served snapshot mid-deploy.
    w.set_config(
        "user_content:\n  shared: [uploads]\n\
         hooks:\n  after_checkout: ['echo mid > \"$ROOTSWAP_SNAPSHOT/uploads/mid.jpg\"']\n",
    );
    next_version(&w, 2);
    w.ok(&["deploy"]);
    let shared = w.webroot.join("shared/uploads");
    assert_eq!(link_of(&w.root().join("uploads")), "../shared/uploads");
    for (f, text) in [
        ("2026/11/photo.jpg", "jpg"),
        ("old.txt", "old"),
        (".keep", "placeholder from git"),
        ("mid.jpg", "mid\n"),
    ] {
        assert_eq!(read(&shared.join(f)), text, "{f}");
        assert_eq!(read(&w.link().join("uploads").join(f)), text, "{f}");
    }
    // The next deploy's snapshot shares the directory too.
    w.set_config("user_content:\n  shared: [uploads]\n");
    next_version(&w, 3);
    w.ok(&["deploy"]);
    let newest = w.snapshots().into_iter().last().unwrap();
    assert_eq!(
        link_of(&w.webroot.join(newest).join("uploads")),
        "../shared/uploads"
    );
}

#[test]
fn commits_below_a_linked_directory_are_left_to_the_site() {
    let w = World::new(APP, "user_content:\n  shared: [uploads]\n");
    w.ok(&["deploy"]);
    w.write_files(&[
        ("uploads/.keep", "changed in git"),
        ("uploads/new.txt", "from git"),
    ]);
    next_version(&w, 2);
    w.ok(&["deploy"]);
    let shared = w.webroot.join("shared/uploads");
    assert_eq!(read(&shared.join(".keep")), "placeholder from git");
    assert!(!shared.join("new.txt").exists());
    assert_eq!(read(&w.link().join("index.php")), "<?php echo 2;");
}

#[test]
fn rollback_and_a_failed_deploy_keep_the_link_and_its_files() {
    let w = World::new(APP, "user_content:\n  shared: [uploads]\n");
    w.ok(&["deploy"]);
    std::fs::write(w.link().join("uploads/a.jpg"), "a").unwrap();
    next_version(&w, 2);
    w.ok(&["deploy"]);
    std::fs::write(w.link().join("uploads/b.jpg"), "b").unwrap();
    w.ok(&["rollback"]);
    assert_eq!(read(&w.link().join("index.php")), "<?php echo 1;");
    assert_eq!(link_of(&w.root().join("uploads")), "../shared/uploads");
    w.set_config(
        "user_content:\n  shared: [uploads]\nhooks:\n  after_checkout: ['echo x > \"$ROOTSWAP_SNAPSHOT/uploads/c.jpg\"; exit 4']\n",
    );
    next_version(&w, 3);
    let err = w.fails(&["deploy", "--force"]);
    assert!(err.contains("status 4"), "{err}");
    assert_eq!(link_of(&w.root().join("uploads")), "../shared/uploads");
    assert_eq!(w.link_target(), "ROOT");
    for (f, t) in [("a.jpg", "a"), ("b.jpg", "b"), ("c.jpg", "x\n")] {
        assert_eq!(read(&w.link().join("uploads").join(f)), t, "{f}");
    }
}

#[test]
fn bad_shared_settings_change_nothing() {
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    next_version(&w, 2);
    w.set_config("user_content:\n  shared: ['../etc']\n");
    assert_untouched(
        &w,
        &["deploy"],
        &["shared: ../etc", "relative", "rootswap.yaml"],
    );
    w.set_config("user_content:\n  shared: [uploads]\n  shared_dir: ROOT/files\n");
    assert_untouched(
        &w,
        &["deploy"],
        &["shared_dir: ROOT/files", "not inside ROOT"],
    );
    // The commit tracks the shared path as a file.
    w.set_config("user_content:\n  shared: [index.php]\n");
    assert_untouched(
        &w,
        &["deploy"],
        &["tracks index.php as a file", "remove it"],
    );
    // ROOT holds a file where a shared directory should be.
    std::fs::write(w.link().join("notes"), "a file").unwrap();
    w.set_config("user_content:\n  shared: [notes]\n");
    assert_untouched(
        &w,
        &["deploy"],
        &["notes", "is a file", "shared entries are directories"],
    );
}

#[test]
fn doctor_reports_each_shared_directory() {
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    w.set_config("user_content:\n  shared: [uploads]\n");
    let text = |w: &World| String::from_utf8_lossy(&w.run(&["doctor"]).stdout).into_owned();
    let before = text(&w);
    assert!(
        w.ok(&["status"])
            .contains("(not linked yet: the next deploy moves it there)"),
        "status before the first deploy with sharing"
    );
    assert!(
        before.contains(
            "✓ shared directory uploads is still a directory in ROOT: the next deploy moves it"
        ),
        "{before}"
    );
    next_version(&w, 2);
    w.ok(&["deploy"]);
    let status = w.ok(&["status"]);
    assert!(
        status.contains(&format!(
            "uploads -> {} (linked)",
            w.webroot.join("shared/uploads").display()
        )),
        "{status}"
    );
    let json: serde_json::Value = serde_json::from_str(&w.ok(&["status", "--json"])).unwrap();
    assert_eq!(json["shared"][0]["linked"], true, "{json}");
    let after = text(&w);
    let store = w.webroot.join("shared/uploads");
    assert!(
        after.contains(&format!(
            "✓ shared directory uploads -> {}",
            store.display()
        )),
        "{after}"
    );
    std::fs::remove_dir_all(&store).unwrap();
    let gone = text(&w);
    assert!(
        gone.contains("✗ shared directory uploads:") && gone.contains("is missing"),
        "{gone}"
    );
}
