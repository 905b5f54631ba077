//! `hooks.in_snapshot` (the snapshot is a self-consistent old version) and
//! `hooks.after_switch` (workers restart once the new version is live), with
//! the real binary, real Git repositories and directories; and `rootswap
//! doctor`'s warning about cron jobs that run PHP from ROOT.
//!
//! The "app" caches its own location the way Laravel's `config:cache` does:
//! a hook writes `$PWD` (the absolute path of the tree it runs in) into
//! `cache/where.txt`, and, like any untracked file, into `where.txt`, which
//! no `.gitignore` hides (user content by the rules); the snapshot's hook
//! also writes `snapshot-only.txt`, which nothing in ROOT writes.

use crate::support;
use crate::support::*;
use std::path::{Path, PathBuf};

const APP: &[(&str, &str)] = &[
    ("index.php", "<?php echo 'v1';"),
    (".gitignore", "/cache/\n"),
];

/// The app's "config:cache": where it runs, in an ignored and in a user file.
const CACHE: &str =
    "mkdir -p cache && printf %s \"$PWD\" > cache/where.txt && printf %s \"$PWD\" > where.txt";

fn real(p: &Path) -> PathBuf {
    p.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The tree `tree`'s cache names (canonical).
fn cached_location(tree: &Path) -> (PathBuf, PathBuf) {
    (
        real(Path::new(&read(&tree.join("cache/where.txt")))),
        real(Path::new(&read(&tree.join("where.txt")))),
    )
}

fn assert_names_itself(tree: &Path, what: &str) {
    let me = real(tree);
    let (ignored, user) = cached_location(tree);
    assert_eq!(ignored, me, "{what}: cache/where.txt names another tree");
    assert_eq!(user, me, "{what}: where.txt names another tree");
}

fn in_snapshot_config(extra: &str) -> String {
    format!(
        "hooks:\n  after_checkout: ['{CACHE}']\n  in_snapshot:\n    - '{CACHE}'\n    \
         - 'readlink \"$ROOTSWAP_ROOT/../current\" > cache/link-during-hook; printf \"%s|%s\" \"$ROOTSWAP_SNAPSHOT\" \"$ROOTSWAP_ROOT\" > cache/env; printf %s \"$PWD\" > snapshot-only.txt'\n\
         snapshots:\n  keep: 5\n{extra}"
    )
}

fn last_history(w: &World) -> serde_json::Value {
    let hist = read(&w.webroot.join(".rootswap/history.jsonl"));
    serde_json::from_str(hist.lines().last().expect("a history line")).expect("JSON")
}

#[test]
fn the_snapshot_names_itself_and_root_names_root_after_deploy_restore_and_rollback() {
    let w = World::new(APP, &in_snapshot_config(""));
    w.ok(&["deploy"]);
    assert_names_itself(&w.root(), "ROOT after the first deploy");

    w.write_files(&[("index.php", "<?php echo 'v2';")]);
    w.commit("v2");
    let out = w.run(&["deploy"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    let snaps = w.snapshots();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let snap = w.webroot.join(&snaps[0]);
    // The copy of ROOT named ROOT; the hook made it name itself, before it served.
    assert_names_itself(&snap, "the snapshot");
    assert_eq!(read(&snap.join("cache/link-during-hook")).trim(), "ROOT");
    assert_eq!(
        read(&snap.join("cache/env")),
        format!("{}|{}", snap.display(), w.root().display())
    );
    // ROOT's own cache names ROOT: the snapshot's was not carried back, not
    // even a file only the snapshot's hook writes, which no rule ignores.
    assert_names_itself(&w.root(), "ROOT after the second deploy");
    assert!(
        !w.root().join("snapshot-only.txt").exists(),
        "the in_snapshot hooks' output is not user content"
    );
    assert!(log.contains("in-snapshot"), "the step is reported: {log}");

    // A failed deploy restores ROOT from the snapshot (whose caches name the
    // snapshot); ROOT's must name ROOT again before it serves.
    let failing = format!(
        "hooks:\n  after_checkout: ['{CACHE}', 'exit 7']\n  in_snapshot: ['{CACHE}']\nsnapshots:\n  keep: 5\n"
    );
    w.set_config(&failing);
    w.write_files(&[("index.php", "<?php echo 'v3';")]);
    w.commit("v3");
    let err = w.fails(&["deploy"]);
    assert!(err.contains("exited with status 7"), "{err}");
    assert_eq!(w.link_target(), "ROOT");
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v2';");
    assert_names_itself(&w.root(), "ROOT restored after a failed deploy");

    // A rollback is a deploy of the old commit: same rule.
    w.set_config(&in_snapshot_config(""));
    w.ok(&["rollback", &snaps[0]]);
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v1';");
    assert_names_itself(&w.root(), "ROOT after a rollback");
    for s in w.snapshots() {
        assert_names_itself(&w.webroot.join(&s), &format!("snapshot {s}"));
    }
}

#[test]
fn a_failing_in_snapshot_hook_fails_the_deploy_before_the_snapshot_serves() {
    let w = World::new(APP, &in_snapshot_config(""));
    w.ok(&["deploy"]);
    w.write_files(&[("index.php", "<?php echo 'v2';")]);
    w.commit("v2");
    w.ok(&["deploy"]);
    let before = webroot_state(&w.webroot);
    let root_before = tree_state(&w.root());
    w.set_config(&format!(
        "hooks:\n  after_checkout: ['{CACHE}']\n  in_snapshot:\n    - 'readlink \"$ROOTSWAP_ROOT/../current\" > \"$ROOTSWAP_ROOT/../link-seen\"'\n    - 'echo artisan failed >&2; exit 9'\nsnapshots:\n  keep: 5\n"
    ));
    w.write_files(&[("index.php", "<?php echo 'v3';")]);
    w.commit("v3");
    let err = w.fails(&["deploy"]);
    assert!(
        err.contains("hook in_snapshot") && err.contains("exited with status 9"),
        "{err}"
    );
    assert!(
        err.contains("nothing was served from the snapshot"),
        "{err}"
    );
    // The link never pointed at the snapshot, ROOT was not touched, and the
    // snapshot whose hooks failed is gone.
    assert_eq!(read(&w.webroot.join("link-seen")).trim(), "ROOT");
    std::fs::remove_file(w.webroot.join("link-seen")).unwrap();
    assert_eq!(w.link_target(), "ROOT");
    assert_same(&root_before, &tree_state(&w.root()), "ROOT is untouched");
    let after = webroot_state(&w.webroot);
    let entries = |m: &std::collections::BTreeMap<PathBuf, String>| -> Vec<PathBuf> {
        m.keys()
            .filter(|p| !p.starts_with(".rootswap"))
            .cloned()
            .collect()
    };
    assert_eq!(entries(&before), entries(&after), "no snapshot left behind");
    let rec = last_history(&w);
    assert_eq!(rec["result"], "failed", "{rec}");
    assert!(
        rec["error"].as_str().unwrap_or("").contains("in_snapshot"),
        "{rec}"
    );
    // No journal is left for the next command to "recover".
    assert!(!w.webroot.join(".rootswap/journal.json").exists());

    // Fixed, the next deploy goes through.
    w.set_config(&in_snapshot_config(""));
    w.ok(&["deploy"]);
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v3';");
    assert_names_itself(&w.root(), "ROOT");
}

#[test]
fn a_restore_whose_in_snapshot_hook_fails_keeps_serving_the_snapshot_until_fixed() {
    let w = World::new(APP, &in_snapshot_config(""));
    w.ok(&["deploy"]);
    // In ROOT (only there: the restore), the hook fails.
    let picky = format!(
        "hooks:\n  after_checkout: ['{CACHE}', 'exit 7']\n  in_snapshot: ['[ \"$(pwd -P)\" != \"$(cd \"$ROOTSWAP_ROOT\" && pwd -P)\" ] || exit 5', '{CACHE}']\n"
    );
    w.set_config(&picky);
    w.write_files(&[("index.php", "<?php echo 'v2';")]);
    w.commit("v2");
    let err = w.fails(&["deploy"]);
    assert!(err.contains("exited with status 7"), "{err}");
    assert!(err.contains("keeps serving the complete snapshot"), "{err}");
    let snap = w.link_target();
    assert!(
        snap.starts_with("ROOT_"),
        "the snapshot still serves: {snap}"
    );
    assert_names_itself(&w.webroot.join(&snap), "the serving snapshot");

    // Fixed: the next command's recovery restores ROOT again, with its caches.
    w.set_config(&in_snapshot_config(""));
    w.ok(&["status"]);
    w.ok(&["deploy"]);
    assert_eq!(w.link_target(), "ROOT");
    assert_names_itself(&w.root(), "ROOT after the recovery and the deploy");
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v2';");
}

/// A hook that appends what it sees to `marker` (outside the webroot).
fn after_switch_config(marker: &Path, extra: &str) -> String {
    format!(
        "hooks:\n  after_switch:\n    - 'printf \"%s %s %s %s\\n\" \"$ROOTSWAP_COMMIT\" \"${{ROOTSWAP_PREVIOUS_COMMIT:--}}\" \"$(readlink \"$ROOTSWAP_ROOT/../current\")\" \"$PWD\" >> {}'\n{extra}",
        marker.display()
    )
}

fn marker_lines(marker: &Path) -> Vec<Vec<String>> {
    read(marker)
        .lines()
        .map(|l| l.split(' ').map(str::to_owned).collect())
        .collect()
}

#[test]
fn after_switch_runs_once_the_new_version_is_live_and_after_a_rollback() {
    let w = World::new(APP, "");
    let marker = w.tmp.path().join("after-switch.log");
    w.set_config(&after_switch_config(&marker, ""));
    let c1 = support::git(&w.repo, &["rev-parse", "HEAD"]);
    w.ok(&["deploy"]);
    w.write_files(&[("index.php", "<?php echo 'v2';")]);
    let c2 = w.commit("v2");
    let out = w.run(&["deploy"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("after-switch"), "the step is reported: {err}");
    let root = real(&w.root()).to_string_lossy().into_owned();
    let lines = marker_lines(&marker);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], [&c1, "-", "ROOT", &root], "first deploy");
    assert_eq!(lines[1], [&c2, &c1, "ROOT", &root], "second deploy");
    // An up-to-date deploy switches nothing, and runs nothing.
    w.ok(&["deploy"]);
    assert_eq!(marker_lines(&marker).len(), 2);
    w.ok(&["rollback"]);
    let lines = marker_lines(&marker);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[2], [&c1, &c2, "ROOT", &root], "after the rollback");
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v1';");
}

#[test]
fn after_switch_runs_when_recovery_rolls_a_killed_deploy_forward() {
    let w = World::new(APP, "");
    let marker = w.tmp.path().join("after-switch.log");
    w.set_config(&after_switch_config(&marker, ""));
    w.ok(&["deploy"]);
    w.write_files(&[("index.php", "<?php echo 'v2';")]);
    let c2 = w.commit("v2");
    // Killed right after the link returned to ROOT, before the hooks ran.
    let out = std::process::Command::new(bin())
        .arg("-c")
        .arg(&w.config)
        .arg("deploy")
        .env("ROOTSWAP_CRASH_AT", "finish")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(marker_lines(&marker).len(), 1, "the hooks did not run yet");
    // The next command rolls forward, and the hooks run for the live version.
    let st = w.ok(&["deploy"]);
    assert!(st.contains("up to date"), "{st}");
    let lines = marker_lines(&marker);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1][0], c2);
    assert_eq!(lines[1][2], "ROOT");
}

#[test]
fn a_failing_after_switch_hook_is_reported_and_the_new_version_stays() {
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    w.set_config("hooks:\n  after_switch: ['echo queue restart failed >&2; exit 4']\n");
    w.write_files(&[("index.php", "<?php echo 'v2';")]);
    w.commit("v2");
    let out = w.run(&["deploy"]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "report: the deploy is done: {text}");
    assert!(text.contains("hooks.after_switch failed"), "{text}");
    assert_eq!(w.link_target(), "ROOT");
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v2';");
    let rec = last_history(&w);
    assert_eq!(rec["result"], "success", "{rec}");
    let warned = rec["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .any(|w| w.contains("hooks.after_switch failed") && w.contains("exited with status 4"));
    assert!(warned, "{rec}");
    let status = w.ok(&["status"]);
    assert!(status.contains("hooks.after_switch failed"), "{status}");
}

#[test]
fn a_failing_after_switch_hook_rolls_back_when_told_to() {
    let w = World::new(APP, "");
    let marker = w.tmp.path().join("after-switch.log");
    // Fails for v3 only, after recording what it saw.
    let cfg = format!(
        "hooks:\n  after_switch_failure: rollback\n  after_switch:\n    - 'echo \"$ROOTSWAP_COMMIT\" >> {m}'\n    - 'grep -qv v3 index.php'\n",
        m = marker.display()
    );
    w.set_config(&cfg);
    w.ok(&["deploy"]);
    w.write_files(&[("index.php", "<?php echo 'v2';")]);
    let c2 = w.commit("v2");
    w.ok(&["deploy"]);
    w.write_files(&[("index.php", "<?php echo 'v3';")]);
    let c3 = w.commit("v3");
    let err = w.fails(&["deploy"]);
    assert!(err.contains("hooks.after_switch failed"), "{err}");
    assert!(err.contains("previous version is live"), "{err}");
    assert_eq!(w.link_target(), "ROOT");
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v2';");
    let rec = last_history(&w);
    assert_eq!(rec["result"], "rolled-back", "{rec}");
    // Ran for v3 (failed), then again for v2 once v2 was back.
    let seen: Vec<String> = read(&marker).lines().map(str::to_owned).collect();
    assert_eq!(&seen[seen.len() - 2..], [c3, c2.clone()], "{seen:?}");
    let status = w.ok(&["status", "--json"]);
    assert!(status.contains(&c2), "v2 is recorded as live: {status}");
}

/// Removes a file when dropped (the test's cron.d entry, also on a failure).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn doctor_warns_about_cron_jobs_that_run_php_from_root() {
    if !require_root("writing a file into /etc/cron.d") {
        return;
    }
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    let root = w.root();
    let name = format!(
        "rootswap-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let file = PathBuf::from("/etc/cron.d").join(&name);
    let _cleanup = RemoveOnDrop(file.clone());
    let doctor = |w: &World| String::from_utf8_lossy(&w.run(&["doctor"]).stdout).into_owned();
    // Control: through the link only, nothing to say.
    std::fs::write(
        &file,
        format!(
            "# test entry\n* * * * * root php {}/artisan schedule:run\n",
            w.link().display()
        ),
    )
    .unwrap();
    let out = doctor(&w);
    assert!(!out.contains(&name), "the link is fine: {out}");
    // ROOT's own path: named, with the line and the fix.
    std::fs::write(
        &file,
        format!(
            "# test entry\n* * * * * root php {}/artisan schedule:run\n*/5 * * * * root cd {} && php artisan x\n",
            w.link().display(),
            root.display()
        ),
    )
    .unwrap();
    let out = doctor(&w);
    assert!(
        out.contains(&format!("/etc/cron.d/{name}:3")) && out.contains("runs PHP from ROOT"),
        "{out}"
    );
    assert!(!out.contains(&format!("/etc/cron.d/{name}:2")), "{out}");
    assert!(
        out.contains(&format!(
            "replace {} with {}",
            root.display(),
            w.link().display()
        )),
        "{out}"
    );
}
