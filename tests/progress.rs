//! `rootswap deploy` on a terminal: progress bars for the long steps (the
//! snapshot copy counted against the entry count of the last deploy, the
//! checkout against the plan, the eviction), and nothing drawn without a
//! terminal. The terminal is a pseudo-terminal from `script` (util-linux,
//! Debian's essential `bsdutils`).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support;
use crate::support::World;

/// Skips (locally) or fails (under CI=true) when there is no `script`.
fn need_script() -> bool {
    support::require_tool("script").is_some()
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `rootswap -c CONFIG args…` with stdout and stderr on a pseudo-terminal;
/// returns everything written to it.
fn on_terminal(w: &World, args: &[&str]) -> String {
    let mut cmd = vec![
        quote(&support::bin().to_string_lossy()),
        "-c".to_string(),
        quote(&w.config.to_string_lossy()),
    ];
    cmd.extend(args.iter().map(|a| quote(a)));
    let out = Command::new("script")
        .args(["-qec", &cmd.join(" "), "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .env_remove("ROOTSWAP_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("script runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "rootswap {args:?} on a terminal failed ({:?}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// `line` without terminal escape sequences (`ESC [ … letter`).
fn without_escapes(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Entries below `dir` (not `dir` itself), symlinks not followed.
fn count_entries(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        n += 1;
        if e.file_type().unwrap().is_dir() {
            n += count_entries(&e.path());
        }
    }
    n
}

fn remembered_entries(w: &World) -> Option<u64> {
    let state: serde_json::Value =
        serde_json::from_str(&support::read(&w.webroot.join(".rootswap/state.json"))).unwrap();
    state["root_entries"].as_u64()
}

/// A site of 150 files in a few directories, full copies (so that the third
/// deploy evicts the second's snapshot).
fn site() -> World {
    let names: Vec<(String, String)> = (0..150)
        .map(|i| {
            (
                format!("lib/m{}/f{i}.php", i % 5),
                format!("<?php // {i}\n"),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = names
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    World::new(&files, "snapshots:\n  incremental: false\n")
}

/// Changes `n` existing files (no entry added or removed) and commits.
fn change(w: &World, n: usize, tag: &str) {
    for i in 0..n {
        w.write_files(&[(
            &format!("lib/m{}/f{i}.php", i % 5),
            &format!("<?php // {tag} {i}\n"),
        )]);
    }
    w.commit(tag);
}

#[test]
fn bars_on_a_terminal_for_snapshot_checkout_and_eviction() {
    if !need_script() {
        return;
    }
    let w = site();
    w.ok(&["deploy"]); // first deploy: checkout only, no snapshot
    let entries = count_entries(&w.root());
    assert_eq!(entries, 156, "150 files, lib and lib/m0..m4");

    // Second deploy: the entry count is not known yet, so the snapshot shows a
    // counter; the checkout a bar over the plan's 3 changes.
    change(&w, 3, "second");
    let out = on_terminal(&w, &["deploy"]);
    assert!(
        out.contains(&format!("snapshot {entries} entries")),
        "counter for the snapshot: {out}"
    );
    assert!(
        !out.contains(&format!("/{entries} entries")),
        "no total before one is known: {out}"
    );
    assert!(out.contains("checkout ["), "bar for the checkout: {out}");
    assert!(
        out.contains("3/3 changes"),
        "checkout position/total: {out}"
    );
    assert!(out.contains("deployed "), "summary line: {out}");
    assert_eq!(
        remembered_entries(&w),
        Some(entries),
        "the copy engine's count of ROOT is remembered"
    );

    // Third deploy: the snapshot bar's total is the remembered count, and the
    // eviction of the second deploy's snapshot (its entries and itself) has one too.
    change(&w, 2, "third");
    let out = on_terminal(&w, &["deploy"]);
    assert!(
        out.contains("snapshot [") && out.contains(&format!("{entries}/{entries} entries")),
        "bar for the snapshot copy: {out}"
    );
    assert!(
        out.contains("2/2 changes"),
        "checkout position/total: {out}"
    );
    let removed = entries + 1;
    assert!(
        out.contains(&format!("{removed}/{removed} entries removed")),
        "bar for the eviction: {out}"
    );
    assert!(out.contains("ETA"), "{out}");
    let summary = out
        .lines()
        .map(|l| without_escapes(l.rsplit('\r').next().unwrap_or(l)))
        .find(|l| l.contains("deployed "))
        .unwrap_or_else(|| panic!("summary line: {out}"));
    assert!(
        summary.starts_with("deployed "),
        "the bar is gone before the summary is printed: {summary:?}"
    );
}

#[test]
fn nothing_drawn_without_a_terminal_nor_with_json() {
    let w = site();
    for round in 0..3 {
        change(&w, 1, &format!("round {round}"));
        let out = w.run(&["deploy"]);
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stdout.starts_with("deployed "),
            "summary unchanged: {stdout}"
        );
        assert!(!stderr.contains('\x1b'), "no escape codes: {stderr:?}");
        assert!(!stderr.contains('\r'), "no redrawn lines: {stderr:?}");
        for drawn in [" entries", " changes", "ETA", "/s)"] {
            assert!(!stderr.contains(drawn), "{drawn:?} drawn: {stderr}");
        }
        // The log still names every step.
        assert!(stderr.contains("checkout ("), "{stderr}");
    }
    assert!(
        remembered_entries(&w).is_some(),
        "counted without a bar too"
    );

    if !need_script() {
        return;
    }
    // `--json` on a terminal: the JSON summary, no bar.
    change(&w, 1, "json");
    let out = on_terminal(&w, &["deploy", "--json"]);
    assert!(!out.contains("\x1b[2K"), "no bar drawn: {out:?}");
    assert!(!out.contains(" entries"), "no bar drawn: {out}");
    assert!(out.contains('{'), "JSON printed: {out}");
}
