//! A layout that cannot point at itself, and a first deploy that restores
//! nothing it did not snapshot (issue 18, finding 4); a serving link left
//! by another tool, outside the webroot, is refused or adopted, never
//! silently replaced (finding 9).

use std::path::Path;
use std::process::Command;

use crate::support::*;

const APP: &[(&str, &str)] = &[("index.php", "v1"), ("lib/a.php", "a1")];

#[test]
fn a_layout_that_points_at_itself_is_refused_before_anything_changes() {
    let w = World::new(APP, "");
    for (yaml, expect) in [
        (
            "link: .rootswap\n",
            &["`link: .rootswap`", "`state_dir: .rootswap`", "set `link`"][..],
        ),
        (
            "state_dir: current/.state\n",
            &[
                "`link: current`",
                "`state_dir: current/.state`",
                "set `state_dir`",
            ],
        ),
        ("link: ROOT_live\n", &["`link: ROOT_live`", "snapshot name"]),
        (
            "state_dir: shared\nuser_content: {shared: [uploads]}\n",
            &["`state_dir: shared`", "`user_content.shared_dir: shared`"],
        ),
    ] {
        w.set_config(yaml);
        let err = w.fails(&["config"]);
        for e in expect {
            assert!(err.contains(e), "{yaml}: expected {e:?} in {err}");
        }
        assert_untouched(&w, &["deploy"], expect);
        assert_eq!(
            std::fs::read_dir(&w.webroot).unwrap().count(),
            0,
            "{yaml}: webroot untouched"
        );
    }
    // Control: the defaults deploy.
    w.set_config("");
    w.ok(&["deploy"]);
    assert_eq!(read(&w.link().join("index.php")), "v1");
}

#[test]
fn a_failing_first_switch_restores_nothing_and_leaves_the_webroot_as_found() {
    let w = World::new(APP, "");
    std::fs::write(w.webroot.join("sentinel.txt"), "webroot file").unwrap();
    let out = Command::new(bin())
        .arg("-c")
        .arg(&w.config)
        .arg("deploy")
        .env("ROOTSWAP_FAULT", "first-switch")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("first deploy failed; nothing was live before"),
        "{err}"
    );
    assert!(
        err.contains("injected: ROOTSWAP_FAULT=first-switch"),
        "{err}"
    );
    assert!(
        !err.contains("restoring ROOT from"),
        "no restore from a snapshot it never took: {err}"
    );
    // ROOT was never served: it is gone, not filled with the webroot.
    assert!(
        !w.root().exists(),
        "ROOT left behind: {:?}",
        tree_state(&w.webroot)
    );
    assert!(std::fs::symlink_metadata(w.link()).is_err(), "no link");
    let mut names: Vec<String> = std::fs::read_dir(&w.webroot)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // The state directory stays: its history records the failure.
    assert_eq!(
        names,
        [".rootswap", "sentinel.txt"],
        "the webroot as it was found"
    );
    let history = read(&w.webroot.join(".rootswap/history.jsonl"));
    let last: serde_json::Value = serde_json::from_str(history.lines().last().unwrap()).unwrap();
    assert_eq!(last["result"], "failed");
    assert!(
        !w.webroot.join(".rootswap/journal.json").exists(),
        "no journal left to recover"
    );
    // Control: without the fault the first deploy goes through.
    w.ok(&["deploy"]);
    assert_eq!(read(&w.link().join("index.php")), "v1");
    assert!(!w.root().join("sentinel.txt").exists());
    assert!(!w.root().join("ROOT").exists());
}

/// `current -> <tmp>/releases/42`, a tree with an upload, as another tool left it.
fn foreign_release(w: &World) -> std::path::PathBuf {
    let release = w.tmp.path().join("releases/42");
    std::fs::create_dir_all(release.join("uploads")).unwrap();
    std::fs::write(release.join("index.php"), "old tool's version").unwrap();
    std::fs::write(release.join("uploads/cat.jpg"), "an upload").unwrap();
    std::os::unix::fs::symlink(&release, w.link()).unwrap();
    release
}

#[test]
fn a_foreign_current_is_refused_with_both_ways_out_and_doctor_says_the_same() {
    let w = World::new(APP, "");
    let release = foreign_release(&w);
    let before_release = tree_state(&release);
    assert_untouched(
        &w,
        &["deploy"],
        &[
            &release.display().to_string(),
            "points outside the webroot",
            "mv ",
            "rootswap deploy --adopt-current",
        ],
    );
    assert_same(&before_release, &tree_state(&release), "the foreign tree");
    let dry = w.ok(&["deploy", "--dry-run"]);
    assert!(
        dry.contains("--adopt-current"),
        "the dry run says it too: {dry}"
    );
    assert_eq!(std::fs::read_link(w.link()).unwrap(), release);
    let out = w.run(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("outside the webroot"), "{text}");
    assert!(text.contains("--adopt-current"), "{text}");
    // Adopting while ROOT already holds files is refused too.
    std::fs::create_dir_all(w.root()).unwrap();
    std::fs::write(w.root().join("stray.php"), "x").unwrap();
    assert_untouched(&w, &["deploy", "--adopt-current"], &["already holds files"]);
}

#[test]
fn adopt_current_copies_the_foreign_tree_into_root_and_deploys() {
    let w = World::new(APP, "");
    let release = foreign_release(&w);
    let before_release = tree_state(&release);
    w.ok(&["deploy", "--adopt-current"]);
    assert_eq!(w.link_target(), "ROOT");
    let served = served_contents(&w.link());
    assert_eq!(
        served.get("index.php").map(String::as_str),
        Some("v1"),
        "the commit's file wins"
    );
    assert_eq!(served.get("lib/a.php").map(String::as_str), Some("a1"));
    assert_eq!(
        served.get("uploads/cat.jpg").map(String::as_str),
        Some("an upload"),
        "the upload stays served"
    );
    assert_same(
        &before_release,
        &tree_state(&release),
        "the foreign tree is copied, not moved",
    );
    // Control: the next deploy is an ordinary one and keeps the upload.
    w.write_files(&[("index.php", "v2")]);
    w.commit("v2");
    w.ok(&["deploy"]);
    assert_eq!(read(&w.link().join("index.php")), "v2");
    assert_eq!(read(&w.link().join("uploads/cat.jpg")), "an upload");
    assert!(Path::new(&w.root().join("uploads/cat.jpg")).exists());
}
