//! `rootswap deploy`: the pipeline against real Git repositories and directories.

use crate::support;
use crate::support::*;
use std::path::Path;

const APP: &[(&str, &str)] = &[
    ("index.php", "<?php echo 'v1';"),
    ("lib/a.php", "<?php // a v1"),
    ("lib/old.php", "<?php // old"),
    (".gitignore", "/cache/\n*.log\n/storage/\n"),
];

#[test]
fn first_deploy_checks_out_and_creates_the_link() {
    let w = World::new(APP, "");
    let out = w.ok(&["deploy"]);
    assert!(out.contains("deployed"), "{out}");
    assert_eq!(w.link_target(), "ROOT", "relative link target");
    assert_eq!(read(&w.link().join("index.php")), "<?php echo 'v1';");
    assert!(!w.root().join(".git").exists(), "no .git in ROOT");
    assert!(
        w.snapshots().is_empty(),
        "nothing to snapshot on a first deploy"
    );
    let hist = read(&w.webroot.join(".rootswap/history.jsonl"));
    assert_eq!(hist.lines().count(), 1);
    assert!(hist.contains("\"result\":\"success\""), "{hist}");
    // Same commit again: up to date, nothing changes.
    let out = w.ok(&["deploy", "now"]);
    assert!(out.starts_with("up to date ("), "{out}");
    assert!(w.snapshots().is_empty());
}

#[test]
fn second_deploy_adds_changes_and_deletes_through_a_snapshot() {
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    let before = contents(&w.root());
    w.write_files(&[
        ("index.php", "<?php echo 'v2';"),
        ("lib/new.php", "<?php // new"),
    ]);
    std::fs::remove_file(w.repo.join("lib/old.php")).unwrap();
    let c2 = w.commit("v2");
    let out = w.ok(&["deploy"]);
    assert!(out.contains("+1 ~1 -1"), "{out}");
    assert_eq!(w.link_target(), "ROOT");
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v2';");
    assert!(w.root().join("lib/new.php").exists());
    assert!(!w.root().join("lib/old.php").exists());
    let snaps = w.snapshots();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(
        contents(&w.webroot.join(&snaps[0])),
        before,
        "the snapshot holds the previous version"
    );
    let status = w.ok(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["deployed_commit"], c2.as_str());
    assert_eq!(v["live"], "ROOT");
    assert_eq!(v["snapshots"][0]["live"], false);
}

/// A hook runs while the snapshot serves: it plays the part of visitors
/// uploading to, editing and deleting from the served tree.
#[test]
fn user_files_written_while_the_snapshot_serves_arrive_in_root() {
    let w = World::new(APP, "");
    w.set_config("user_content:\n  preserve: ['storage/app/**', '.env']\n  exclude: ['storage/app/tmp/**']\n");
    // Before the deploy: user files in the live tree.
    w.ok(&["deploy"]);
    let live = w.link();
    std::fs::create_dir_all(live.join("uploads")).unwrap();
    std::fs::write(live.join("uploads/old.jpg"), "old").unwrap();
    std::fs::write(live.join("uploads/edit.jpg"), "v1").unwrap();
    std::fs::write(live.join("uploads/gone.jpg"), "bye").unwrap();
    std::fs::write(live.join(".env"), "SECRET=1").unwrap();
    let hook = "S=$ROOTSWAP_SNAPSHOT; \
        echo new > $S/uploads/new.jpg; echo v2 > $S/uploads/edit.jpg; rm $S/uploads/gone.jpg; \
        echo ignored > $S/debug.log; mkdir -p $S/cache $S/storage/app/tmp $S/storage/logs; echo c > $S/cache/x; \
        echo kept > $S/storage/app/avatar.png; echo tmp > $S/storage/app/tmp/t; echo l > $S/storage/logs/l.log; \
        echo SECRET=2 > $S/.env; echo built > $ROOTSWAP_ROOT/built.txt";
    w.set_config(&format!(
        "user_content:\n  preserve: ['storage/app/**', '.env']\n  exclude: ['storage/app/tmp/**']\nhooks:\n  after_checkout: ['{hook}']\n"
    ));
    w.write_files(&[("index.php", "<?php echo 'v2';")]);
    w.commit("v2");
    let out = w.ok(&["deploy"]);
    assert!(out.contains("user files copied back"), "{out}");
    let root = w.root();
    assert_eq!(
        read(&root.join("uploads/old.jpg")),
        "old",
        "untouched user file stays"
    );
    assert_eq!(
        read(&root.join("uploads/new.jpg")),
        "new\n",
        "created during deploy"
    );
    assert_eq!(
        read(&root.join("uploads/edit.jpg")),
        "v2\n",
        "changed during deploy"
    );
    assert!(
        !root.join("uploads/gone.jpg").exists(),
        "deleted during deploy"
    );
    assert!(!root.join("debug.log").exists(), "ignored by .gitignore");
    assert!(!root.join("cache/x").exists(), "ignored directory");
    assert_eq!(
        read(&root.join("storage/app/avatar.png")),
        "kept\n",
        "preserve overrides .gitignore"
    );
    assert!(
        !root.join("storage/app/tmp/t").exists(),
        "exclude wins over preserve"
    );
    assert!(
        !root.join("storage/logs/l.log").exists(),
        "ignored and not preserved"
    );
    assert_eq!(read(&root.join(".env")), "SECRET=2\n", "preserved dotfile");
    assert_eq!(
        read(&root.join("built.txt")),
        "built\n",
        "what the hooks built stays"
    );
    assert_eq!(read(&root.join("index.php")), "<?php echo 'v2';");
}

#[test]
fn a_path_the_new_commit_tracks_is_not_overwritten_by_user_content() {
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    std::fs::write(w.link().join("robots.txt"), "user version").unwrap();
    w.set_config(
        "hooks:\n  after_checkout: ['echo changed-by-user > $ROOTSWAP_SNAPSHOT/robots.txt']\n",
    );
    w.write_files(&[("robots.txt", "commit version")]);
    w.commit("track robots.txt");
    let out = w.run(&["deploy"]);
    assert!(out.status.success());
    assert_eq!(read(&w.root().join("robots.txt")), "commit version");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("robots.txt") && err.contains("commit's version wins"),
        "{err}"
    );
}

#[test]
fn subdir_deploys_only_that_directory() {
    let w = World::new(
        &[
            ("site/index.php", "<?php echo 'site';"),
            ("docs/readme.md", "docs"),
            ("site/.gitignore", "*.tmp\n"),
        ],
        "",
    );
    let text = read(&w.config).replace("  branch: main\n", "  branch: main\n  subdir: site\n");
    std::fs::write(&w.config, text).unwrap();
    w.ok(&["deploy"]);
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'site';");
    assert!(!w.root().join("docs").exists());
    assert!(!w.root().join("site").exists());
    w.write_files(&[
        ("site/index.php", "<?php echo 'site2';"),
        ("docs/readme.md", "docs2"),
    ]);
    w.commit("v2");
    w.ok(&["deploy"]);
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'site2';");
}

fn deploy_n(w: &World, n: usize) {
    for i in 0..n {
        w.write_files(&[("index.php", &format!("<?php echo {i};"))]);
        w.commit(&format!("c{i}"));
        w.ok(&["deploy"]);
    }
}

#[test]
fn keep_one_and_keep_three() {
    let w = World::new(APP, "snapshots:\n  keep: 1\n");
    w.ok(&["deploy"]);
    deploy_n(&w, 3);
    assert_eq!(w.snapshots().len(), 1, "{:?}", w.snapshots());
    w.set_config("snapshots:\n  keep: 3\n");
    deploy_n(&w, 4);
    let snaps = w.snapshots();
    assert_eq!(snaps.len(), 3, "{snaps:?}");
    // The newest snapshot holds the version live before the last deploy.
    assert_eq!(
        read(&w.webroot.join(&snaps[2]).join("index.php")),
        "<?php echo 2;"
    );
    // Names sort by creation time (same-second deploys get -2, -3 ...).
    let listed: Vec<String> = w
        .ok(&["snapshots", "list", "--json"])
        .lines()
        .filter(|l| l.contains("\"name\""))
        .map(|l| l.to_string())
        .collect();
    assert_eq!(listed.len(), 3);
}

#[test]
fn a_snapshot_label_is_a_plain_name() {
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    deploy_n(&w, 1);
    let snap = w.snapshots()[0].clone();
    let before = webroot_state(&w.webroot);
    let long = "a".repeat(65);
    for bad in [
        "two\nlines",
        "\u{1b}[31mred\u{1b}[0m",
        "tab\there",
        ".hidden",
        "a/b",
        "sp ace",
        "ümlaut",
        long.as_str(),
    ] {
        let err = w.fails(&["snapshots", "keep", &snap, &format!("--as={bad}")]);
        assert!(
            err.contains("snapshot label") && err.contains("letters, digits"),
            "{bad:?}: {err}"
        );
        // The message shows the label escaped: no raw newline or escape reaches the terminal.
        assert!(!err.contains('\u{1b}'), "{bad:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{bad:?}: {err}");
        assert_same(&before, &webroot_state(&w.webroot), bad);
    }
    let err = w.fails(&["snapshots", "keep", &snap, "--as=-dash"]);
    assert!(err.contains("snapshot label"), "{err}");
    // Control: a plain label (64 characters at most) is kept.
    let label = format!("v1.2_{}", "x".repeat(59));
    let out = w.ok(&["snapshots", "keep", &snap, "--as", &label]);
    assert!(out.contains(&format!("ROOT_{label}")), "{out}");
    assert!(w.webroot.join(format!("ROOT_{label}")).is_dir());
    // A snapshot renamed by hand with a terminal escape and a newline in its
    // name: `snapshots list` shows it escaped, on one line.
    std::fs::rename(
        w.webroot.join(format!("ROOT_{label}")),
        w.webroot.join("ROOT_\u{1b}[31mred\nforged"),
    )
    .unwrap();
    let list = w.ok(&["snapshots", "list"]);
    assert!(!list.contains('\u{1b}'), "{list}");
    assert!(list.contains("ROOT_\\u{1b}[31mred\\nforged"), "{list}");
    assert!(!list.lines().any(|l| l.starts_with("forged")), "{list}");
}

#[test]
fn a_renamed_snapshot_survives_ten_deploys() {
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    deploy_n(&w, 1);
    let snap = w.snapshots()[0].clone();
    let out = w.ok(&["snapshots", "keep", &snap, "--as", "before-big-change"]);
    assert!(out.contains("ROOT_before-big-change"), "{out}");
    deploy_n(&w, 10);
    let snaps = w.snapshots();
    assert!(
        snaps.contains(&"ROOT_before-big-change".to_string()),
        "{snaps:?}"
    );
    assert_eq!(snaps.len(), 2, "one kept + keep:1 → {snaps:?}");
    assert_eq!(
        read(&w.webroot.join("ROOT_before-big-change/index.php")),
        "<?php echo 'v1';"
    );
    // Renaming by hand (mv) works too.
    let stamped = w
        .snapshots()
        .into_iter()
        .find(|s| s != "ROOT_before-big-change")
        .unwrap();
    std::fs::rename(w.webroot.join(&stamped), w.webroot.join("ROOT_by-hand")).unwrap();
    deploy_n(&w, 2);
    assert!(w.webroot.join("ROOT_by-hand").is_dir());
    let table = w.ok(&["snapshots", "list"]);
    assert!(
        table.contains("kept") && table.contains("ROOT_by-hand"),
        "{table}"
    );
}

#[test]
fn a_failing_hook_leaves_the_old_version_live_and_root_identical() {
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    std::fs::create_dir_all(w.link().join("uploads")).unwrap();
    std::fs::write(w.link().join("uploads/u.jpg"), "u").unwrap();
    let before = tree_state(&w.root());
    w.set_config("hooks:\n  after_checkout: ['echo partial > half-built.txt', 'echo composer failed >&2; exit 7']\n");
    w.write_files(&[("index.php", "<?php echo 'broken';")]);
    w.commit("v2");
    let err = w.fails(&["deploy"]);
    assert!(err.contains("exited with status 7"), "{err}");
    assert!(err.contains("previous version stays live"), "{err}");
    assert_eq!(w.link_target(), "ROOT");
    assert_same(&before, &tree_state(&w.root()), "ROOT is exactly as before");
    let hist = read(&w.webroot.join(".rootswap/history.jsonl"));
    assert!(
        hist.lines()
            .last()
            .unwrap()
            .contains("\"result\":\"failed\""),
        "{hist}"
    );
    // The next good commit deploys normally.
    w.set_config("");
    w.write_files(&[("index.php", "<?php echo 'v3';")]);
    w.commit("v3");
    w.ok(&["deploy"]);
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v3';");
}

#[test]
fn deploy_ref_dry_run_and_force() {
    let w = World::new(APP, "");
    let c1 = w.commit("c1");
    support::git(&w.repo, &["tag", "v1.0"]);
    w.ok(&["deploy"]);
    w.write_files(&[("index.php", "<?php echo 'v2';")]);
    w.commit("v2");
    let webroot_before = webroot_state(&w.webroot);
    let out = w.ok(&["deploy", "--dry-run"]);
    assert!(
        out.contains("change index.php") && out.contains("1 changed"),
        "{out}"
    );
    assert_same(
        &webroot_before,
        &webroot_state(&w.webroot),
        "dry run changes nothing",
    );
    w.ok(&["deploy"]);
    w.ok(&["deploy", "--ref", "v1.0"]);
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v1';");
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["status", "--json"])).unwrap();
    assert_eq!(v["deployed_commit"], c1.as_str());
    let out = w.ok(&["deploy", "--ref", &c1[..10], "--force"]);
    assert!(out.contains("deployed"), "{out}");
}

#[test]
fn snapshot_remove_refuses_the_live_one() {
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    deploy_n(&w, 1);
    let snap = w.snapshots()[0].clone();
    let err = w.fails(&["snapshots", "remove", "ROOT_nope"]);
    assert!(
        err.contains("no snapshot named ROOT_nope") && err.contains(&snap),
        "{err}"
    );
    std::fs::remove_file(w.link()).unwrap();
    std::os::unix::fs::symlink(&snap, w.link()).unwrap();
    let err = w.fails(&["snapshots", "remove", &snap]);
    assert!(err.contains("is live"), "{err}");
    support::git(&w.repo, &["status"]);
    std::fs::remove_file(w.link()).unwrap();
    std::os::unix::fs::symlink("ROOT", w.link()).unwrap();
    w.ok(&["snapshots", "remove", &snap]);
    assert!(w.snapshots().is_empty());
}

#[test]
fn a_symlink_pointing_outside_root_is_deployed_as_git_has_it_with_a_warning() {
    // `source.external_symlinks: refuse` (tests/sites.rs) restores the refusal.
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    std::os::unix::fs::symlink("/etc/passwd", w.repo.join("passwd")).unwrap();
    w.commit("link out of the tree");
    let out = w.run(&["deploy"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: symlink passwd -> /etc/passwd points outside the deployed tree"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_link(w.root().join("passwd")).unwrap(),
        std::path::Path::new("/etc/passwd")
    );
    assert_eq!(w.link_target(), "ROOT");
}

#[test]
fn two_deploys_at_once_one_gets_the_lock_error() {
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    // The first deploy's hook says when it runs (so the lock is held: hooks
    // run under it) and then waits until the test lets it go.
    let running = w.tmp.path().join("hook-running");
    let go = w.tmp.path().join("hook-go");
    w.set_config(&format!(
        "hooks:\n  after_checkout:\n    - 'touch {}; i=0; while [ ! -e {} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done'\n",
        running.display(),
        go.display()
    ));
    w.write_files(&[("index.php", "<?php echo 'v2';")]);
    w.commit("v2");
    let mut first = std::process::Command::new(bin())
        .arg("-c")
        .arg(&w.config)
        .arg("deploy")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Bounded poll for the hook's marker (the sleep is the polling interval).
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !running.exists() {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first deploy ended before its hook ran"
        );
        assert!(std::time::Instant::now() < until, "the hook never ran");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let err = w.fails(&["deploy"]);
    assert!(
        err.contains(&format!("a deploy is already running (pid {})", first.id())),
        "{err}"
    );
    let status = w.ok(&["status"]);
    assert!(
        status.contains(&format!("yes (pid {})", first.id())),
        "{status}"
    );
    std::fs::write(&go, "").unwrap();
    assert!(first.wait().unwrap().success());
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v2';");
}

#[test]
fn adopts_an_existing_site() {
    let w = World::new(APP, "");
    std::fs::create_dir_all(w.root().join("uploads")).unwrap();
    std::fs::write(w.root().join("index.php"), "<?php echo 'hand-made';").unwrap();
    std::fs::write(w.root().join("uploads/photo.jpg"), "p").unwrap();
    w.ok(&["deploy"]);
    assert_eq!(
        read(&w.root().join("index.php")),
        "<?php echo 'v1';",
        "the commit wins"
    );
    assert_eq!(
        read(&w.root().join("uploads/photo.jpg")),
        "p",
        "existing user files stay"
    );
    let snaps = w.snapshots();
    assert_eq!(snaps.len(), 1, "the adopted site is kept as a snapshot");
    assert_eq!(
        read(&w.webroot.join(&snaps[0]).join("index.php")),
        "<?php echo 'hand-made';"
    );
}

// ---- bad input: one clear message, non-zero exit, nothing changed on disk ----

#[test]
fn bad_config_files() {
    let w = World::new(APP, "");
    std::fs::remove_file(&w.config).unwrap();
    assert_untouched(&w, &["deploy"], &["rootswap.yaml", "cannot read"]);
    std::fs::write(
        &w.config,
        "webroot: /tmp\nsource:\n  repo: x\n  brnach: main\n",
    )
    .unwrap();
    assert_untouched(&w, &["deploy"], &["brnach", "line 4", "rootswap.yaml"]);
    std::fs::write(&w.config, "webroot: [unclosed\n").unwrap();
    assert_untouched(&w, &["deploy"], &["rootswap.yaml", "line"]);
    w.set_config("");
    std::fs::write(
        &w.config,
        read(&w.config).replace("drain: 0s", "drain: forever"),
    )
    .unwrap();
    assert_untouched(&w, &["deploy"], &["forever", "drain"]);
    w.set_config("state_dir: ROOT/.state\n");
    assert_untouched(&w, &["deploy"], &["inside ROOT"]);
}

#[test]
fn bad_layouts() {
    let w = World::new(APP, "");
    let text = read(&w.config);
    std::fs::write(
        &w.config,
        text.replace(&w.webroot.display().to_string(), "/nonexistent/webroot"),
    )
    .unwrap();
    assert_untouched(&w, &["deploy"], &["/nonexistent/webroot", "mkdir"]);
    w.set_config("");
    std::fs::write(w.root(), "not a dir").unwrap();
    assert_untouched(&w, &["deploy"], &["ROOT", "is a file"]);
    std::fs::remove_file(w.root()).unwrap();
    std::fs::create_dir(w.link()).unwrap();
    std::fs::write(w.link().join("index.php"), "old site").unwrap();
    assert_untouched(&w, &["deploy"], &["not a symlink", "migrate", "mv "]);
}

#[test]
fn bad_sources() {
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    w.set_config("");
    let text = read(&w.config);
    std::fs::write(&w.config, text.replace("branch: main", "branch: nope")).unwrap();
    assert_untouched(&w, &["deploy"], &["branch 'nope' not found", "main"]);
    std::fs::write(
        &w.config,
        text.replace(&w.repo.display().to_string(), "/nonexistent/repo.git"),
    )
    .unwrap();
    let before = tree_state(&w.root());
    let err = w.fails(&["deploy"]);
    assert!(
        err.contains("/nonexistent/repo.git does not exist"),
        "{err}"
    );
    assert_same(&before, &tree_state(&w.root()), "ROOT unchanged");
    assert_eq!(w.link_target(), "ROOT");
}

#[test]
fn unreachable_repository_on_first_deploy_leaves_no_trace() {
    let w = World::new(APP, "");
    let text = read(&w.config);
    std::fs::write(
        &w.config,
        text.replace(&w.repo.display().to_string(), "/nonexistent/repo.git"),
    )
    .unwrap();
    assert_untouched(&w, &["deploy"], &["/nonexistent/repo.git does not exist"]);
    assert!(!w.webroot.join(".rootswap").exists());
}

#[test]
fn permission_denied_is_reported() {
    // As root, run without CAP_DAC_OVERRIDE: permissions are enforced then too.
    let Some(mut unprivileged) = bin_without_dac_override() else {
        return;
    };
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    std::fs::set_permissions(
        &w.webroot,
        std::os::unix::fs::PermissionsExt::from_mode(0o555),
    )
    .unwrap();
    w.write_files(&[("index.php", "<?php echo 'v2';")]);
    w.commit("v2");
    let out = unprivileged
        .arg("-c")
        .arg(&w.config)
        .arg("deploy")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    std::fs::set_permissions(
        &w.webroot,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    assert!(err.contains("ermission denied"), "{err}");
    assert_eq!(w.link_target(), "ROOT");
}

#[test]
fn no_git_directory_is_ever_served() {
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    deploy_n(&w, 2);
    for e in walkdir::WalkDir::new(&w.webroot)
        .into_iter()
        .filter_map(|e| e.ok())
    {
        let p = e.path();
        if p.starts_with(w.webroot.join(".rootswap")) {
            continue;
        }
        assert!(
            p.file_name() != Some(std::ffi::OsStr::new(".git")),
            "{}",
            p.display()
        );
    }
    assert!(Path::new(&w.webroot.join(".rootswap/repo.git")).is_dir());
}

#[test]
fn hooks_get_hooks_env_and_a_served_auth_json_is_flagged() {
    let w = World::new(
        APP,
        "public: .\nhooks:\n  env:\n    COMPOSER_AUTH: '{\"github-oauth\":{\"github.com\":\"gh0-secret\"}}'\n  \
         after_checkout: ['printf %s \"$COMPOSER_AUTH\" > auth.json']\n",
    );
    let out = w.run(&["deploy"]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        read(&w.root().join("auth.json")),
        "{\"github-oauth\":{\"github.com\":\"gh0-secret\"}}",
        "the hook got hooks.env"
    );
    assert!(
        err.contains("auth.json is in the served tree: anyone can download it"),
        "{err}"
    );
    let hist = read(&w.webroot.join(".rootswap/history.jsonl"));
    assert!(hist.contains("auth.json is in the served tree"), "{hist}");
    // The value is masked where configs are shown, and the doctor flags the file.
    let eff = w.ok(&["config", "--effective"]);
    assert!(!eff.contains("gh0-secret"), "{eff}");
    assert!(eff.contains("COMPOSER_AUTH: '********'"), "{eff}");
    let doc = String::from_utf8_lossy(&w.run(&["doctor"]).stdout).into_owned();
    assert!(
        doc.contains("✗") && doc.contains("auth.json is in the served tree"),
        "{doc}"
    );
    // A bad variable name is refused before anything happens.
    w.set_config("hooks:\n  env:\n    ROOTSWAP_ROOT: x\n");
    assert_untouched(
        &w,
        &["deploy", "--force"],
        &["hooks.env: ROOTSWAP_ROOT", "rootswap.yaml"],
    );
}
