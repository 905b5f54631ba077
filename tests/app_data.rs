//! An application's own data under deploys (issue 19, points 2 and 3):
//! run as root, rootswap gives the directories it creates in user content
//! the owner, group and mode of their counterpart, never root's, and repairs
//! root-owned ones an earlier version left; directories that an application
//! creates and removes all the time (DokuWiki's `data/locks/<md5>`) never
//! fail a deploy, and a deploy that fails is in the history with its error.

use crate::support::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The application's user: Debian's www-data.
const APP_UID: u32 = 33;
const APP_GID: u32 = 33;

/// A DokuWiki-like site: code committed, `data/`'s runtime directories
/// ignored by Git and kept by `user_content.preserve`.
fn wiki(extra_yaml: &str) -> World {
    let w = World::new(
        &[
            ("index.php", "<?php echo 'v0';"),
            ("inc/init.php", "<?php // v0"),
            ("data/.htaccess", "deny from all"),
            ("data/conf/local.php", "<?php"),
            (".gitignore", "data/pages/\ndata/locks/\n"),
        ],
        "",
    );
    w.set_config(&format!(
        "user_content:\n  preserve: [\"data/pages/**\", \"data/locks/**\"]\n{extra_yaml}"
    ));
    w
}

fn next_version(w: &World, v: &str) {
    w.write_files(&[("index.php", &format!("<?php echo '{v}';"))]);
    w.commit(v);
}

fn owner_mode(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid(), m.mode())
}

/// Makes `dirs` (relative to `root`) the application's, with `mode`.
fn give_to_app(root: &Path, dirs: &[&str], mode: u32) {
    for d in dirs {
        let p = root.join(d);
        std::fs::create_dir_all(&p).unwrap();
        std::os::unix::fs::chown(&p, Some(APP_UID), Some(APP_GID)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

fn history(w: &World) -> Vec<serde_json::Value> {
    read(&w.webroot.join(".rootswap/history.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn run_with_env(w: &World, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(bin());
    c.arg("-c").arg(&w.config).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("rootswap runs")
}

fn assert_ok(out: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed:\n{err}");
    err
}

#[test]
fn directories_the_copy_back_creates_keep_the_owner_group_and_mode_of_their_source() {
    if !require_root("deploying as root while the application writes as www-data") {
        return;
    }
    let w = wiki("");
    w.ok(&["deploy"]);
    give_to_app(&w.root(), &["data", "data/pages"], 0o2775);
    // While the snapshot serves (the hook runs after the checkout, before the
    // copy-back), the application saves a page in new nested namespaces,
    // through the link, as www-data would: its own directories, its modes.
    let app = w.tmp.path().join("app-saves-a-page.sh");
    std::fs::write(
        &app,
        format!(
            "set -e\ncd \"{}/data/pages\"\nmkdir -p wiki/ns/sub\necho page > wiki/ns/sub/start.txt\n\
             chmod 2770 wiki/ns\nchmod 0750 wiki/ns/sub\nchmod 0640 wiki/ns/sub/start.txt\n\
             chown -R {APP_UID}:{APP_GID} wiki\n",
            w.link().display()
        ),
    )
    .unwrap();
    w.set_config(&format!(
        "user_content:\n  preserve: [\"data/pages/**\", \"data/locks/**\"]\n\
         hooks:\n  after_checkout: [\"sh {}\"]\n",
        app.display()
    ));
    next_version(&w, "v1");
    let out = w.ok(&["deploy"]);
    let snap = w
        .webroot
        .join(w.snapshots().last().expect("the snapshot is kept"));
    assert!(
        snap.join("data/pages/wiki/ns/sub/start.txt").is_file(),
        "the page was written in the served snapshot: {out}"
    );
    for rel in [
        "data/pages/wiki",
        "data/pages/wiki/ns",
        "data/pages/wiki/ns/sub",
        "data/pages/wiki/ns/sub/start.txt",
    ] {
        let (in_root, in_snap) = (owner_mode(&w.root().join(rel)), owner_mode(&snap.join(rel)));
        assert_eq!(
            in_root, in_snap,
            "{rel}: ROOT's (uid, gid, mode) is the served snapshot's"
        );
        assert_eq!((in_root.0, in_root.1), (APP_UID, APP_GID), "{rel}");
    }
    assert_eq!(
        read(&w.root().join("data/pages/wiki/ns/sub/start.txt")),
        "page\n"
    );
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v1';");
}

#[test]
fn root_owned_directories_an_earlier_version_left_are_given_back() {
    if !require_root("changing owners") {
        return;
    }
    let w = wiki("");
    w.ok(&["deploy"]);
    give_to_app(&w.root(), &["data", "data/pages"], 0o775);
    // What the copy-back of earlier versions made: root:root 755 directories
    // in the application's data, holding the application's pages.
    for d in ["data/pages/old", "data/pages/old/deeper"] {
        std::fs::create_dir(w.root().join(d)).unwrap();
        std::fs::set_permissions(w.root().join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(w.root().join("data/pages/old/deeper/p.txt"), "p").unwrap();
    // Controls: root's own directory under a root-owned parent, and a
    // root-owned directory the repository tracks files in (data/conf).
    std::fs::create_dir_all(w.root().join("rootonly/x")).unwrap();
    std::fs::write(w.root().join("rootonly/x/f"), "f").unwrap();
    assert_eq!(owner_mode(&w.root().join("data/conf")).0, 0);
    next_version(&w, "v1");
    let out = w.run(&["deploy"]);
    let err = assert_ok(&out, "deploy");
    for d in ["data/pages/old", "data/pages/old/deeper"] {
        let (uid, gid, _) = owner_mode(&w.root().join(d));
        assert_eq!((uid, gid), (APP_UID, APP_GID), "{d} repaired");
        assert!(
            err.contains(&format!(
                "repaired the owner of {}",
                w.root().join(d).display()
            )),
            "a log line names {d}:\n{err}"
        );
    }
    assert_eq!(
        owner_mode(&w.root().join("rootonly/x")).0,
        0,
        "parent is root's"
    );
    assert_eq!(
        owner_mode(&w.root().join("data/conf")).0,
        0,
        "tracked: not user content"
    );
    assert_eq!(read(&w.root().join("data/pages/old/deeper/p.txt")), "p");
    let h = history(&w);
    let warnings = h.last().unwrap()["warnings"].to_string();
    assert!(
        warnings.contains("gave 2 root-owned directories"),
        "the deploy's history says so: {warnings}"
    );
    // Once repaired, the next deploy has nothing to say.
    next_version(&w, "v2");
    let err = assert_ok(&w.run(&["deploy"]), "second deploy");
    assert!(!err.contains("repaired the owner"), "{err}");
}

/// Creates and removes lock directories with a file in them under `dir`, as
/// fast as it can, until `stop`; counts the directories it removed.
fn churn(dir: std::path::PathBuf, stop: Arc<AtomicBool>, removed: Arc<AtomicU64>, tag: &str) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let d = dir.join(format!("{tag}{:x}", n % 16));
        // Failures are the point: the other tree, a directory half made.
        if std::fs::create_dir_all(d.join("sub")).is_ok()
            && std::fs::write(d.join("lock"), "l").is_ok()
            && std::fs::write(d.join("sub/f"), "f").is_ok()
            && std::fs::remove_dir_all(&d).is_ok()
        {
            removed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn directories_that_come_and_go_never_fail_a_deploy() {
    let w = wiki("");
    w.ok(&["deploy"]);
    std::fs::create_dir_all(w.root().join("data/locks")).unwrap();
    std::fs::create_dir_all(w.root().join("data/pages")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let removed = Arc::new(AtomicU64::new(0));
    // One churner on ROOT's path (hit by the snapshot copy and the sync of
    // the recycled snapshot), one through the link (whichever tree serves:
    // hit by the catch-up and the copy-back).
    let churners: Vec<_> = [
        (w.root().join("data/locks"), "r"),
        (w.link().join("data/locks"), "l"),
    ]
    .into_iter()
    .map(|(dir, tag)| {
        let (stop, removed) = (stop.clone(), removed.clone());
        std::thread::spawn(move || churn(dir, stop, removed, tag))
    })
    .collect();
    let mut failed = Vec::new();
    for i in 1..=20 {
        next_version(&w, &format!("v{i}"));
        let out = w.run(&["deploy"]);
        if !out.status.success() {
            failed.push(String::from_utf8_lossy(&out.stderr).into_owned());
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in churners {
        c.join().unwrap();
    }
    let removed = removed.load(Ordering::Relaxed);
    eprintln!("20 deploys while {removed} lock directories came and went");
    assert!(
        failed.is_empty(),
        "{} failed deploys: {failed:#?}",
        failed.len()
    );
    assert!(removed > 100, "the churners ran: {removed}");
    let results: Vec<String> = history(&w)
        .iter()
        .map(|r| r["result"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        results.iter().all(|r| r == "success"),
        "history: {results:?}"
    );
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v20';");
}

#[test]
fn a_directory_that_vanishes_right_before_it_is_copied_is_skipped_in_the_copy_and_the_sync() {
    // ROOTSWAP_FAULT=vanish=NAME removes NAME from the source right before the
    // copy engine opens it: the race of the field report, every time.
    let w = wiki("snapshots:\n  keep: 1\n");
    w.ok(&["deploy"]);
    let lock = "0123456789abcdef0123456789abcdef";
    for round in 1..=3 {
        // Round 1 copies ROOT into a new snapshot, rounds 2 and 3 sync the
        // recycled one (round 3: it still holds the lock from round 2's ROOT).
        std::fs::create_dir_all(w.root().join("data/locks").join(lock).join("sub")).unwrap();
        std::fs::write(w.root().join("data/locks").join(lock).join("sub/f"), "l").unwrap();
        std::fs::write(w.root().join("data/locks/other.lock"), "o").unwrap();
        next_version(&w, &format!("v{round}"));
        let out = run_with_env(
            &w,
            &[("ROOTSWAP_FAULT", &format!("vanish={lock}"))],
            &["deploy"],
        );
        let err = assert_ok(&out, &format!("round {round}"));
        assert!(
            err.contains("vanished while copying"),
            "round {round}: {err}"
        );
        assert!(!w.root().join("data/locks").join(lock).exists());
        let snap = w.webroot.join(w.snapshots().last().unwrap());
        assert!(
            !snap.join("data/locks").join(lock).exists(),
            "round {round}"
        );
        assert_eq!(
            read(&snap.join("data/locks/other.lock")),
            "o",
            "round {round}"
        );
        assert_eq!(
            read(&w.root().join("index.php")),
            format!("<?php echo 'v{round}';")
        );
        if round == 2 {
            // Leave the lock in this snapshot for round 3 to drop.
            std::fs::create_dir_all(snap.join("data/locks").join(lock)).unwrap();
        }
    }
    assert!(history(&w).iter().all(|r| r["result"] == "success"));
}

#[test]
fn a_failed_snapshot_is_in_the_history_with_its_error_and_leaves_no_journal() {
    let w = wiki("");
    w.ok(&["deploy"]);
    std::fs::write(w.root().join("secret.txt"), "s").unwrap();
    std::fs::set_permissions(
        w.root().join("secret.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    next_version(&w, "v1");
    // root reads any file: run without the capabilities that allow that.
    let Some(mut cmd) = bin_without_dac_override() else {
        return;
    };
    let out = cmd.arg("-c").arg(&w.config).arg("deploy").output().unwrap();
    assert!(!out.status.success());
    assert!(
        !w.webroot.join(".rootswap/journal.json").exists(),
        "no journal left"
    );
    let h = history(&w);
    let last = h.last().unwrap();
    assert_eq!(last["result"], "failed", "{last}");
    let error = last["error"].as_str().unwrap_or("");
    assert!(
        error.contains("secret.txt") && error.contains("Permission denied"),
        "{error}"
    );
    // The next deploy has nothing to recover: no second line for that deploy.
    std::fs::remove_file(w.root().join("secret.txt")).unwrap();
    w.ok(&["deploy"]);
    let h = history(&w);
    assert!(h.iter().all(|r| r["result"] != "interrupted"), "{h:#?}");
    assert_eq!(h.last().unwrap()["result"], "success");
}

#[test]
fn a_deploy_that_fails_and_dies_while_restoring_is_recorded_with_its_error_by_the_recovery() {
    let w = wiki("");
    w.ok(&["deploy"]);
    w.set_config(
        "user_content:\n  preserve: [\"data/pages/**\"]\n\
         hooks:\n  after_checkout: [\"echo the-hook-broke >&2; exit 3\"]\n",
    );
    next_version(&w, "v1");
    // The hook fails; the deploy is killed as it starts to put the old version back.
    let out = run_with_env(&w, &[("ROOTSWAP_CRASH_AT", "restore")], &["deploy"]);
    assert!(!out.status.success());
    let id_line = history(&w).len();
    // The next command recovers it and writes its history line, with the error.
    w.set_config("user_content:\n  preserve: [\"data/pages/**\"]\n");
    w.ok(&["deploy"]);
    let h = history(&w);
    let rec = &h[id_line];
    assert_eq!(rec["result"], "interrupted", "{rec}");
    let error = rec["error"].as_str().unwrap_or("");
    assert!(
        error.contains("the-hook-broke") || error.contains("exit"),
        "{error}"
    );
    assert!(
        error.contains("putting the previous version back"),
        "{error}"
    );
    assert_eq!(h.last().unwrap()["result"], "success");
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v1';");
}
