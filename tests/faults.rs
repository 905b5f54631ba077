//! Faults and recovery paths: rollback, health gate, notifications, history,
//! disk full, hung hooks, force-pushed branches, unusual file names.

use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const APP: &[(&str, &str)] = &[
    ("index.php", "<?php echo 'v1';"),
    ("lib/a.php", "<?php // v1"),
];

/// A tiny HTTP server on 127.0.0.1 answering every request with `status`,
/// recording request bodies. Stops when the test process ends.
struct Http {
    port: u16,
    status: Arc<AtomicU16>,
    bodies: Arc<Mutex<Vec<String>>>,
}

fn http_server(status: u16) -> Http {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let st = Arc::new(AtomicU16::new(status));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let (st2, b2) = (st.clone(), bodies.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            c.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read headers, then Content-Length bytes of body.
            loop {
                let n = c.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        b2.lock().unwrap().push(text[end + 4..].to_string());
                        break;
                    }
                }
            }
            let code = st2.load(Ordering::Relaxed);
            let _ = write!(
                c,
                "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    Http {
        port,
        status: st,
        bodies,
    }
}

fn next_version(w: &World, v: &str) {
    w.write_files(&[
        ("index.php", &format!("<?php echo '{v}';")),
        ("lib/a.php", &format!("<?php // {v}")),
    ]);
    w.commit(v);
}

#[test]
fn rollback_makes_the_previous_version_live_and_keeps_uploads() {
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    next_version(&w, "v2");
    w.ok(&["deploy"]);
    std::fs::create_dir_all(w.link().join("uploads")).unwrap();
    std::fs::write(w.link().join("uploads/photo.jpg"), "p").unwrap();
    let out = w.ok(&["rollback"]);
    assert!(out.contains("rolled back"), "{out}");
    assert_eq!(w.link_target(), "ROOT");
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v1';");
    assert_eq!(
        read(&w.root().join("uploads/photo.jpg")),
        "p",
        "uploads survive a rollback"
    );
    let state = read(&w.webroot.join(".rootswap/state.json"));
    let head = git(&w.repo, &["rev-parse", "HEAD"]);
    assert!(
        state.contains(&format!("\"pinned_from\": \"{head}\"")),
        "the branch head is pinned: {state}"
    );
    // The rollback snapshotted v2 first: rolling back again restores v2.
    w.ok(&["rollback"]);
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v2';");
    let hist = w.ok(&["history", "--json"]);
    assert!(hist.contains("\"trigger\": \"rollback\""), "{hist}");
    // Bad input: an unknown snapshot is named, nothing changes.
    let before = webroot_state(&w.webroot);
    let err = w.fails(&["rollback", "ROOT_nope"]);
    assert!(err.contains("no snapshot named ROOT_nope"), "{err}");
    assert_same(
        &before,
        &webroot_state(&w.webroot),
        "bad rollback changed the disk",
    );
}

#[test]
fn rollback_without_snapshots_is_explained() {
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    let err = w.fails(&["rollback"]);
    assert!(err.contains("no snapshot to roll back to"), "{err}");
}

#[test]
fn health_gate_rolls_back_a_version_that_does_not_answer() {
    let http = http_server(500);
    let w = World::new(APP, "");
    let hc = format!(
        "health_check:\n  url: http://127.0.0.1:{}/health\n  timeout: 2s\n  retries: 1\n",
        http.port
    );
    w.set_config(&hc);
    http.status.store(200, Ordering::Relaxed);
    w.ok(&["deploy"]);
    std::fs::create_dir_all(w.link().join("uploads")).unwrap();
    std::fs::write(w.link().join("uploads/u.txt"), "u").unwrap();
    http.status.store(500, Ordering::Relaxed);
    next_version(&w, "v2-broken");
    let err = w.fails(&["deploy"]);
    assert!(err.contains("health check") && err.contains("500"), "{err}");
    assert!(err.contains("previous version is live"), "{err}");
    assert_eq!(w.link_target(), "ROOT");
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v1';");
    assert_eq!(read(&w.root().join("lib/a.php")), "<?php // v1");
    assert_eq!(read(&w.root().join("uploads/u.txt")), "u");
    let hist = read(&w.webroot.join(".rootswap/history.jsonl"));
    assert!(
        hist.lines()
            .last()
            .unwrap()
            .contains("\"result\":\"rolled-back\""),
        "{hist}"
    );
    http.status.store(200, Ordering::Relaxed);
    w.ok(&["deploy"]);
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v2-broken';");
}

#[test]
fn notifications_are_sent_and_never_fail_a_deploy() {
    let http = http_server(200);
    let w = World::new(APP, "");
    w.set_config(&format!(
        "notify:\n  webhook: http://127.0.0.1:{}/hook\n",
        http.port
    ));
    w.ok(&["deploy"]);
    w.set_config(&format!(
        "notify:\n  webhook: http://127.0.0.1:{}/hook\nhooks:\n  after_checkout: ['exit 1']\n",
        http.port
    ));
    next_version(&w, "v2");
    w.fails(&["deploy"]);
    let bodies = http.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let ok: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(ok["result"], "success");
    assert!(ok["text"].as_str().unwrap().contains("deployed"), "{ok}");
    let failed: serde_json::Value = serde_json::from_str(&bodies[1]).unwrap();
    assert_eq!(failed["result"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains("exit"),
        "{failed}"
    );
    // A webhook that is down: the deploy succeeds anyway, with a warning.
    let dead = free_port();
    w.set_config(&format!(
        "notify:\n  webhook: http://127.0.0.1:{dead}/hook\n"
    ));
    let out = w.run(&["deploy"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("notification"),
        "the failure is logged"
    );
}

#[test]
fn history_lists_deploys() {
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    next_version(&w, "v2");
    w.ok(&["deploy"]);
    let table = w.ok(&["history"]);
    assert!(
        table.contains("manual") && table.contains("success") && table.contains("snapshot"),
        "{table}"
    );
    let last: serde_json::Value =
        serde_json::from_str(&w.ok(&["history", "--json", "-n", "1"])).unwrap();
    assert_eq!(last.as_array().unwrap().len(), 1);
    assert!(last[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["step"] == "checkout"));
}

#[test]
fn a_hook_that_hangs_is_killed_with_its_process_group() {
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    w.set_config("hooks:\n  timeout: 1s\n  after_checkout: ['(sleep 60; echo late > /dev/null) & sleep 60']\n");
    next_version(&w, "v2");
    let t = Instant::now();
    let err = w.fails(&["deploy"]);
    assert!(err.contains("timed out after 1s"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v1';");
    assert_eq!(w.link_target(), "ROOT");
}

#[test]
fn a_force_pushed_branch_deploys_the_new_history() {
    let w = World::new(APP, "");
    next_version(&w, "v2");
    w.ok(&["deploy"]);
    git(&w.repo, &["reset", "-q", "--hard", "HEAD~1"]);
    next_version(&w, "v2-rewritten");
    w.ok(&["deploy"]);
    assert_eq!(
        read(&w.root().join("index.php")),
        "<?php echo 'v2-rewritten';"
    );
}

#[test]
fn names_with_spaces_newlines_and_non_utf8_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let w = World::new(APP, "");
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9 \xff.txt");
    w.write_files(&[
        ("dir with space/a b.php", "<?php // 1"),
        ("new\nline.txt", "nl"),
    ]);
    std::fs::write(w.repo.join(odd), "latin1").unwrap();
    w.commit("odd names");
    w.ok(&["deploy"]);
    assert_eq!(read(&w.root().join("dir with space/a b.php")), "<?php // 1");
    assert_eq!(read(&w.root().join("new\nline.txt")), "nl");
    assert_eq!(std::fs::read(w.root().join(odd)).unwrap(), b"latin1");
    // User files with odd names are carried over too.
    let up = std::ffi::OsStr::from_bytes(b"up \xfe\nload");
    std::fs::write(w.link().join(up), "u").unwrap();
    w.write_files(&[("dir with space/a b.php", "<?php // 2")]);
    std::fs::remove_file(w.repo.join(odd)).unwrap();
    w.commit("v2");
    w.ok(&["deploy"]);
    assert_eq!(read(&w.root().join("dir with space/a b.php")), "<?php // 2");
    assert!(!w.root().join(odd).exists());
    assert_eq!(std::fs::read(w.root().join(up)).unwrap(), b"u");
    let hist = w.ok(&["history", "--json"]);
    assert!(serde_json::from_str::<serde_json::Value>(&hist).is_ok());
}

#[test]
fn disk_full_during_the_snapshot_keeps_the_old_version_live() {
    if !require_root("mounting a small filesystem") {
        return;
    }
    let Some(mount) = require_tool("mount") else {
        return;
    };
    let w = World::new(APP, "");
    let mount = std::process::Command::new(mount)
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&w.webroot)
        .output();
    match mount {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            skip_or_fail(&format!(
                "cannot mount a tmpfs here: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            return;
        }
        Err(e) => {
            skip_or_fail(&format!("cannot run mount: {e}"));
            return;
        }
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _guard = Unmount(w.webroot.clone());
    // 1.8 MiB of site in a 3 MiB filesystem: the snapshot cannot fit.
    let big = "x".repeat(1 << 20);
    w.write_files(&[("big1.bin", &big), ("big2.bin", &big[..800_000])]);
    w.commit("big");
    w.ok(&["deploy"]);
    next_version(&w, "v2");
    let err = w.fails(&["deploy"]);
    assert!(
        err.contains("No space left") || err.contains("space"),
        "{err}"
    );
    assert_eq!(w.link_target(), "ROOT");
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v1';");
    assert_no_snapshot_left(&w);
}

/// A failed snapshot copy leaves neither a snapshot nor its partial directory.
fn assert_no_snapshot_left(w: &World) {
    let names: Vec<String> = std::fs::read_dir(&w.webroot)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("ROOT_") && !n.starts_with(".partial-")),
        "partial snapshot removed: {names:?}"
    );
}

#[test]
fn an_unreadable_file_in_root_fails_the_snapshot_cleanly() {
    let w = World::new(APP, "");
    w.ok(&["deploy"]);
    std::fs::write(w.root().join("secret.txt"), "s").unwrap();
    std::fs::set_permissions(
        w.root().join("secret.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    next_version(&w, "v2");
    // root reads any file: run it without the capabilities that allow that
    // (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), as a deploy user would be.
    let Some(mut cmd) = bin_without_dac_override() else {
        return;
    };
    let out = cmd.arg("-c").arg(&w.config).arg("deploy").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("secret.txt"), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(w.link_target(), "ROOT");
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 'v1';");
    assert_no_snapshot_left(&w);
}
