//! The pipeline as people see it: one line per step of the flow, the passes
//! behind `-v` and in `history --json`; and the change watch's fallback: when
//! events are lost, a full scan still finds every user file.

use std::path::Path;
use std::process::Output;

use crate::support;
use crate::support::{read, World};

const STEPS: [&str; 7] = [
    "fetch",
    "snapshot",
    "switch-to-snapshot",
    "checkout",
    "copy-back",
    "switch-to-root",
    "evict",
];

/// A site whose `uploads/` is user content, deployed once.
fn site(extra: &str) -> World {
    let w = World::new(
        &[
            ("index.php", "<?php echo 'v1';"),
            ("lib/a.php", "<?php // a"),
            (".gitignore", "uploads/\n"),
        ],
        &format!("user_content:\n  preserve: [\"uploads/**\"]\n{extra}"),
    );
    w.ok(&["deploy"]);
    w
}

fn deploy_with(w: &World, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = support::rootswap(&w.config)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("rootswap runs");
    assert!(
        out.status.success(),
        "rootswap {args:?} failed\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The step names the log lines start with (after the level and time).
fn step_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| {
            let mut names: Vec<&str> = STEPS.to_vec();
            names.extend(["catch-up", "scan ROOT", "drain", "copy-back (late)"]);
            // The longest name first: `copy-back (late) (0ms)` is not `copy-back`.
            names.sort_by_key(|n| std::cmp::Reverse(n.len()));
            names
                .into_iter()
                .find(|s| l.trim_start().starts_with(&format!("{s} (")))
                .map(|s| s.to_string())
        })
        .collect()
}

fn change(w: &World, n: u32) {
    w.write_files(&[("index.php", &format!("<?php echo 'v{n}';"))]);
    w.commit(&format!("v{n}"));
}

#[test]
fn one_line_per_step_by_default_the_passes_with_v_and_in_history_json() {
    let w = site("");
    change(&w, 2);
    let out = deploy_with(&w, &["deploy"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(step_lines(&err), STEPS, "one line per step:\n{err}");
    assert!(
        err.lines().count() <= STEPS.len() + 2,
        "nothing but the steps (and at most the OPcache notice) by default:\n{err}"
    );

    change(&w, 3);
    let out = deploy_with(&w, &["-v", "deploy"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    let lines = step_lines(&err);
    for pass in ["catch-up", "scan ROOT", "drain", "copy-back (late)"] {
        assert!(lines.iter().any(|l| l == pass), "-v shows {pass}:\n{err}");
    }

    let history: serde_json::Value = serde_json::from_str(&w.ok(&["history", "--json"])).unwrap();
    let last = history.as_array().unwrap().last().unwrap();
    let names: Vec<&str> = last["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(names, STEPS, "history lists the steps");
    let back = &last["steps"][5];
    let passes: Vec<&str> = back["passes"]
        .as_array()
        .expect("switch-to-root has passes")
        .iter()
        .map(|p| p["step"].as_str().unwrap())
        .collect();
    for p in [
        "copy-back",
        "switch",
        "copy-back (late)",
        "copy-back (after drain)",
    ] {
        assert!(passes.contains(&p), "{p} in {passes:?}");
    }
    let table = w.ok(&["history"]);
    assert!(
        !table.contains("catch-up"),
        "the table shows steps: {table}"
    );
}

/// A hook writes "uploads" into the served snapshot (as requests would) and
/// into ROOT before the switch; returns the deploy's stderr.
fn deploy_with_uploads(w: &World, env: &[(&str, &str)]) -> String {
    change(w, 2);
    let out = deploy_with(w, &["-v", "deploy"], env);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn uploads_hook() -> String {
    // 40 files in nested, new directories of the served snapshot, one changed, one deleted.
    "hooks:\n  after_checkout:\n    - \"[ -n \\\"$ROOTSWAP_SNAPSHOT\\\" ] || exit 0; for i in $(seq 1 40); do mkdir -p $ROOTSWAP_SNAPSHOT/uploads/d$((i % 4))/e; echo $i > $ROOTSWAP_SNAPSHOT/uploads/d$((i % 4))/e/u$i.jpg; done; echo changed > $ROOTSWAP_SNAPSHOT/uploads/old.jpg; rm $ROOTSWAP_SNAPSHOT/uploads/gone.jpg\"\n".to_string()
}

fn assert_every_upload_arrived(w: &World) {
    let root = w.root();
    for i in 1..=40 {
        let p = root.join(format!("uploads/d{}/e/u{i}.jpg", i % 4));
        assert_eq!(read(&p).trim(), i.to_string(), "{}", p.display());
    }
    assert_eq!(read(&root.join("uploads/old.jpg")).trim(), "changed");
    assert!(!root.join("uploads/gone.jpg").exists(), "deletion applied");
    assert_eq!(read(&root.join("uploads/kept.jpg")).trim(), "kept");
}

fn seed_uploads(w: &World) {
    let up = w.root().join("uploads");
    std::fs::create_dir_all(&up).unwrap();
    for (f, t) in [
        ("old.jpg", "old"),
        ("gone.jpg", "gone"),
        ("kept.jpg", "kept"),
    ] {
        std::fs::write(up.join(f), t).unwrap();
    }
}

#[test]
fn the_watch_finds_uploads_without_a_full_scan() {
    let w = site(&uploads_hook());
    seed_uploads(&w);
    let err = deploy_with_uploads(&w, &[]);
    assert_every_upload_arrived(&w);
    assert!(
        !err.contains("full scan of"),
        "no event was lost, so no full scan:\n{err}"
    );
}

#[test]
fn lost_events_fall_back_to_a_full_scan_that_finds_every_user_file() {
    let w = site(&uploads_hook());
    seed_uploads(&w);
    let err = deploy_with_uploads(&w, &[("ROOTSWAP_FAULT", "watch-overflow")]);
    assert_every_upload_arrived(&w);
    assert!(
        err.contains("full scan of") && err.contains("overflowed"),
        "the log says when and why it scanned everything:\n{err}"
    );
    assert!(
        Path::new(&w.link()).exists(),
        "the site serves after the fallback"
    );
}
