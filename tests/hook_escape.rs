//! `hooks.timeout` bounds a deploy whatever a hook's children do (issue 18,
//! finding 5): a child that leaves the hook's session with `setsid` and keeps
//! its stdout open no longer holds the deploy and its lock. The real binary,
//! real hooks, real `setsid`.

use crate::support::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// True while `pid` runs (a zombie counts as gone).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn read_pid(p: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(pid) = std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "{} was never written",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(pid: i32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_hook_whose_child_escapes_its_session_still_times_out() {
    let _heavy = heavy();
    if require_tool("setsid").is_none() {
        return;
    }
    let w = World::new(&[("index.php", "v1")], "");
    w.ok(&["deploy"]);
    w.write_files(&[("index.php", "v2")]);
    w.commit("v2");
    let pidfile = w.tmp.path().join("escaped.pid");
    // The child leaves the hook's session and holds stdout for 60 s; the
    // shell itself outlives the 3 s timeout.
    let hook = format!(
        "setsid sh -c \"echo \\$\\$ > {}; exec sleep 60\" & sleep 0.5; echo done; sleep 60",
        pidfile.display()
    );
    w.set_config(&format!(
        "hooks:\n  timeout: 3s\n  after_checkout: ['{hook}']\n"
    ));
    let started = Instant::now();
    let out = w.run(&["deploy"]);
    let took = started.elapsed();
    let err = stderr_of(&out);
    assert!(!out.status.success(), "the deploy succeeded:\n{err}");
    eprintln!("timed-out deploy took {took:.2?}");
    assert!(
        took < Duration::from_secs(10),
        "the deploy took {took:?} with a 3 s hook timeout:\n{err}"
    );
    assert!(err.contains("timed out after 3s"), "{err}");
    let pid = read_pid(&pidfile);
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        !alive(pid)
    });
    if !gone {
        kill(pid);
    }
    assert!(gone, "the escaped child {pid} survived the timeout");
    let history = std::fs::read_to_string(w.webroot.join(".rootswap/history.jsonl")).unwrap();
    let last: serde_json::Value =
        serde_json::from_str(history.lines().last().expect("a history record")).unwrap();
    assert_eq!(last["result"], "failed", "{last}");
    let error = last["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("hook after_checkout")
            && error.contains("setsid")
            && error.contains("timed out"),
        "the history does not name the hook: {error}"
    );
    assert_eq!(read(&w.link().join("index.php")), "v1", "v1 stays live");
    // The lock went with the deploy: the next one runs at once.
    w.set_config("");
    w.ok(&["deploy"]);
    assert_eq!(read(&w.link().join("index.php")), "v2");
}

#[test]
fn a_daemonizing_hook_that_succeeds_returns_promptly() {
    let _heavy = heavy();
    if require_tool("setsid").is_none() {
        return;
    }
    let w = World::new(&[("index.php", "v1")], "");
    let pidfile = w.tmp.path().join("daemon.pid");
    // The finding's hook: the shell ends after 0.5 s, its child keeps stdout 60 s.
    let hook = format!(
        "setsid sh -c \"echo \\$\\$ > {}; exec sleep 60\" & sleep 0.5; echo done",
        pidfile.display()
    );
    w.set_config(&format!(
        "hooks:\n  timeout: 30s\n  after_checkout: ['{hook}']\n"
    ));
    let started = Instant::now();
    let out = w.run(&["deploy"]);
    let took = started.elapsed();
    let err = stderr_of(&out);
    let pid = read_pid(&pidfile);
    let still_running = alive(pid);
    kill(pid);
    assert!(out.status.success(), "the deploy failed:\n{err}");
    eprintln!("deploy with a daemonizing hook took {took:.2?}");
    assert!(
        took < Duration::from_secs(10),
        "the deploy waited {took:?} for the daemon:\n{err}"
    );
    assert!(
        err.contains("| done"),
        "the hook's own output is lost:\n{err}"
    );
    assert!(
        err.contains("kept the hook's output open") && err.contains(&format!("pid {pid}")),
        "no word about the process holding the output:\n{err}"
    );
    assert!(
        still_running,
        "a daemon in its own session is the user's: left running"
    );
    assert_eq!(read(&w.link().join("index.php")), "v1");
}

#[test]
fn a_normal_hooks_output_is_logged_and_nothing_is_waited_for() {
    let _heavy = heavy();
    let w = World::new(&[("index.php", "v1")], "");
    w.set_config(
        "hooks:\n  timeout: 30s\n  after_checkout: ['echo out-line; echo err-line >&2; printf no-newline']\n",
    );
    let started = Instant::now();
    let out = w.run(&["deploy"]);
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("| out-line"), "{err}");
    assert!(err.contains("| err-line"), "{err}");
    assert!(err.contains("| no-newline"), "{err}");
    assert!(!err.contains("kept the hook's output open"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
