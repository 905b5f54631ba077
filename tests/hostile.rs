//! Hostile Git trees (issue 18, finding 1): commits whose trees hold entries
//! git refuses to check out (`..`, `../../x`, `.git`, NTFS/HFS aliases of
//! `.git`), crafted with `git hash-object --literally -t tree` and
//! `git commit-tree`, served by a real `git daemon` on a loopback port and
//! over a local path. Each deploy must be refused whole: one error naming
//! the entry and the commit, nothing created, changed or removed outside
//! ROOT (a sentinel sits where the attack writes), no `ROOT/.git`, the old
//! version still served, the refusal in the history; and a normal commit
//! after it deploys.

use std::path::{Path, PathBuf};

use crate::support::*;

/// Writes `bytes` as an object of `kind` into `repo` without git's checks.
fn hash_literally(repo: &Path, kind: &str, bytes: &[u8]) -> String {
    git_with_input(
        repo,
        &["hash-object", "-w", "--literally", "-t", kind, "--stdin"],
        bytes,
    )
}

/// One entry of a raw tree object.
enum Entry<'a> {
    File(&'a [u8], &'a str),
    Tree(&'a [u8], Vec<Entry<'a>>),
}

/// Writes a tree object exactly as given (any names, any order).
fn raw_tree(repo: &Path, entries: &[Entry]) -> String {
    let mut body = Vec::new();
    for e in entries {
        let (mode, name, id) = match e {
            Entry::File(name, text) => (
                "100644",
                *name,
                hash_literally(repo, "blob", text.as_bytes()),
            ),
            Entry::Tree(name, sub) => ("40000", *name, raw_tree(repo, sub)),
        };
        body.extend_from_slice(mode.as_bytes());
        body.push(b' ');
        body.extend_from_slice(name);
        body.push(0);
        body.extend_from_slice(&hex::decode(id).unwrap());
    }
    hash_literally(repo, "tree", &body)
}

/// Commits `entries` on top of `main` (crafted, no checks) and moves `main` there.
fn crafted_commit(repo: &Path, msg: &str, entries: &[Entry]) -> String {
    let tree = raw_tree(repo, entries);
    let parent = git(repo, &["rev-parse", "main"]);
    let commit = git(repo, &["commit-tree", &tree, "-p", &parent, "-m", msg]);
    git(repo, &["update-ref", "refs/heads/main", &commit]);
    commit
}

/// The attacks: a description, the hostile entry (next to a changed
/// index.php) and what the error must name.
fn attacks<'a>() -> Vec<(&'static str, Entry<'a>, &'static str)> {
    use Entry::*;
    let climb = |leaf| Tree(b"..", vec![Tree(b"..", vec![Tree(b"outside", vec![leaf])])]);
    vec![
        (
            "entries named ..",
            climb(File(b"sentinel", "overwritten by ..")),
            "\"..\" in the top directory",
        ),
        (
            "a name with slashes",
            Tree(
                b"lib",
                vec![File(
                    b"../../../outside/sentinel",
                    "overwritten by a slash name",
                )],
            ),
            "\"../../../outside/sentinel\" in \"lib/\"",
        ),
        (
            "a .git directory",
            Tree(b".git", vec![File(b"config", "[core]\n\tbare = false\n")]),
            "\".git\" in the top directory",
        ),
        (
            "an upper-case .GIT",
            Tree(b".GIT", vec![File(b"config", "x")]),
            "\".GIT\"",
        ),
        (
            "the NTFS short name git~1",
            Tree(b"git~1", vec![File(b"config", "x")]),
            "\"git~1\"",
        ),
        (
            "a .git with a trailing dot",
            Tree(b".git. ", vec![File(b"config", "x")]),
            "\".git. \"",
        ),
        (
            "a .git with an HFS-ignorable code point",
            Tree(".g\u{200c}it".as_bytes(), vec![File(b"config", "x")]),
            "\".g\\xe2\\x80\\x8cit\"",
        ),
    ]
}

/// A directory outside the webroot the attacks aim at.
fn plant_sentinel(w: &World) -> PathBuf {
    let outside = w.tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("sentinel"), "keep").unwrap();
    outside
}

/// The webroot without what a refused deploy may change: the Git cache,
/// the lock file, and the history (which records the refusal).
fn site_state(w: &World) -> std::collections::BTreeMap<PathBuf, String> {
    webroot_state(&w.webroot)
        .into_iter()
        .filter(|(k, _)| !k.starts_with(".rootswap/history.jsonl"))
        .collect()
}

/// Deploys, expecting the refusal of `commit` naming `entry`, with nothing
/// changed on disk, the old version still served and the refusal recorded.
fn assert_refused(w: &World, outside: &Path, commit: &str, entry: &str, what: &str) {
    let (site, out) = (site_state(w), tree_state(outside));
    let history_before = history_len(w);
    let err = w.fails(&["deploy"]);
    let short = &commit[..7];
    assert!(
        err.contains(&format!("commit {short} has a tree entry git refuses")),
        "{what}: {err}"
    );
    assert!(err.contains(entry), "{what}: expected {entry} in {err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{what}: {err}"
    );
    assert_same(
        &out,
        &tree_state(outside),
        &format!("{what}: outside the webroot"),
    );
    assert_same(&site, &site_state(w), &format!("{what}: the webroot"));
    assert_eq!(read(&outside.join("sentinel")), "keep", "{what}");
    assert!(!w.root().join(".git").exists(), "{what}: ROOT/.git");
    assert!(!w.tmp.path().join("sentinel").exists(), "{what}");
    assert_eq!(
        read(&w.link().join("index.php")),
        "v1",
        "{what}: the site serves v1"
    );
    let history = read(&w.webroot.join(".rootswap/history.jsonl"));
    assert_eq!(
        history.lines().count(),
        history_before + 1,
        "{what}: one line recorded"
    );
    let last: serde_json::Value = serde_json::from_str(history.lines().last().unwrap()).unwrap();
    assert_eq!(last["result"], "failed", "{what}");
    assert_eq!(last["commit"], commit, "{what}");
    assert!(
        last["error"].as_str().unwrap().contains("git refuses"),
        "{what}: {last}"
    );
}

fn history_len(w: &World) -> usize {
    std::fs::read_to_string(w.webroot.join(".rootswap/history.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn hostile_trees_fetched_over_git_daemon_are_refused_whole() {
    let w = World::new(&[("index.php", "v1")], "");
    let served = w.tmp.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    git(&served, &["init", "-q", "--bare", "-b", "main", "site.git"]);
    let Some(daemon) = GitDaemon::start(&served) else {
        return;
    };
    let push = || {
        git(
            &w.repo,
            &[
                "push",
                "-q",
                "-f",
                served.join("site.git").to_str().unwrap(),
                "main",
            ],
        )
    };
    push();
    let url = format!("git://127.0.0.1:{}/site.git", daemon.port);
    let text = std::fs::read_to_string(&w.config).unwrap();
    let text = text.replace(
        &format!("repo: {}", w.repo.display()),
        &format!("repo: {url}"),
    );
    std::fs::write(&w.config, text).unwrap();
    w.ok(&["deploy"]);
    assert_eq!(read(&w.root().join("index.php")), "v1");
    let outside = plant_sentinel(&w);
    let good = git(&w.repo, &["rev-parse", "main"]);
    for (what, hostile, entry) in attacks() {
        git(&w.repo, &["update-ref", "refs/heads/main", &good]);
        let commit = crafted_commit(&w.repo, what, &[Entry::File(b"index.php", "v2"), hostile]);
        push();
        assert_refused(&w, &outside, &commit, entry, what);
    }
    // Control: a normal commit after the refusals deploys.
    git(&w.repo, &["update-ref", "refs/heads/main", &good]);
    git(&w.repo, &["reset", "-q", "--hard", "main"]);
    w.write_files(&[("index.php", "v3"), ("lib/a.php", "a")]);
    w.commit("fixed");
    push();
    w.ok(&["deploy"]);
    assert_eq!(read(&w.link().join("index.php")), "v3");
    assert_eq!(read(&w.link().join("lib/a.php")), "a");
    assert_eq!(read(&outside.join("sentinel")), "keep");
}

#[test]
fn hostile_trees_over_a_local_path_write_and_delete_nothing_outside_root() {
    let w = World::new(&[("index.php", "v1")], "");
    let outside = plant_sentinel(&w);
    let good = git(&w.repo, &["rev-parse", "main"]);
    let slash = |text| Entry::File(b"../../outside/sentinel", text);
    // A first deploy of a hostile commit on a fresh webroot: nothing at all.
    let first = crafted_commit(
        &w.repo,
        "first",
        &[Entry::File(b"index.php", "v0"), slash("first")],
    );
    let err = w.fails(&["deploy"]);
    assert!(
        err.contains(&format!(
            "commit {} has a tree entry git refuses",
            &first[..7]
        )),
        "{err}"
    );
    assert!(
        err.contains("\"../../outside/sentinel\" in the top directory"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&w.webroot).unwrap().count(),
        0,
        "the webroot stays empty"
    );
    assert_eq!(read(&outside.join("sentinel")), "keep");
    // The good commit, then a hostile one on top: refused.
    git(&w.repo, &["update-ref", "refs/heads/main", &good]);
    w.ok(&["deploy"]);
    let bad = crafted_commit(
        &w.repo,
        "bad",
        &[Entry::File(b"index.php", "v2"), slash("bad")],
    );
    assert_refused(
        &w,
        &outside,
        &bad,
        "\"../../outside/sentinel\"",
        "local path",
    );
    // As if an older rootswap had deployed it: the next commit drops the
    // entry, and its deletion must not reach outside ROOT.
    let state_path = w.webroot.join(".rootswap/state.json");
    let mut state: serde_json::Value = serde_json::from_str(&read(&state_path)).unwrap();
    state["deployed"] = serde_json::Value::String(bad.clone());
    std::fs::write(&state_path, serde_json::to_string(&state).unwrap()).unwrap();
    crafted_commit(&w.repo, "drops it", &[Entry::File(b"index.php", "v3")]);
    let out = w.run(&["deploy"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("not deleting \\\"../../outside/sentinel\\\"")
            || log.contains("not deleting \"../../outside/sentinel\""),
        "{log}"
    );
    assert_eq!(
        read(&outside.join("sentinel")),
        "keep",
        "the deletion stayed inside ROOT"
    );
    assert_eq!(read(&w.link().join("index.php")), "v3");
}
