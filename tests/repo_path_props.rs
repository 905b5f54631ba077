//! Property tests of the gate for paths that come from Git
//! (`rootswap::repo_path`): over generated hostile names (arbitrary bytes,
//! `.git` and its NTFS/HFS aliases, deep `..` chains, names with `/`), the
//! gate refuses exactly what git refuses (checked against a separate,
//! simpler statement of git's rules), and a path built from accepted names,
//! joined onto ROOT and written to disk, never creates, changes or removes
//! anything outside ROOT.

use std::path::{Component, Path};

use crate::support;
use proptest::prelude::*;
use rootswap::repo_path::{check_name, RepoPath};

/// Git's rules restated: the name as NTFS and HFS+ would read it, compared
/// with `.git` (the implementation under test walks bytes instead).
fn git_refuses(name: &[u8]) -> bool {
    if name.is_empty() || name == b"." || name == b".." {
        return true;
    }
    if name.iter().any(|b| matches!(b, b'/' | b'\\' | 0)) {
        return true;
    }
    let lower = name.to_ascii_lowercase();
    // NTFS: a stream suffix and then trailing dots and spaces are dropped.
    let no_stream = match lower.iter().position(|&b| b == b':') {
        Some(i) => &lower[..i],
        None => &lower[..],
    };
    let mut end = no_stream.len();
    while end > 0 && matches!(no_stream[end - 1], b'.' | b' ') {
        end -= 1;
    }
    let ntfs = &no_stream[..end];
    if ntfs == b".git" || ntfs == b"git~1" {
        return true;
    }
    // HFS+: ignorable code points dropped; malformed UTF-8 ends the name.
    let valid = match std::str::from_utf8(name) {
        Ok(s) => s.to_string(),
        Err(e) => String::from_utf8_lossy(&name[..e.valid_up_to()]).into_owned(),
    };
    let hfs: String = valid
        .chars()
        .filter(
            |c| !matches!(*c as u32, 0x200c..=0x200f | 0x202a..=0x202e | 0x206a..=0x206f | 0xfeff),
        )
        .collect();
    hfs.eq_ignore_ascii_case(".git")
}

const TRICKS: &[&str] = &[
    ".",
    "..",
    ".git",
    ".GIT",
    ".Git",
    "git~1",
    "GIT~1",
    ".git.",
    ".git ",
    ".git. .",
    ".git::$INDEX_ALLOCATION",
    "git~1:x",
    ".g\u{200c}it",
    "\u{feff}.git",
    ".gi\u{206f}t",
    ".gitignore",
    ".github",
    "git~2",
    "...",
    "index.php",
    "a b",
    "\u{e9}t\u{e9}",
];

/// Names an attacker (or an ordinary repository) might use.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..10),
        3 => proptest::sample::select(TRICKS).prop_map(|s| s.as_bytes().to_vec()),
        3 => "[.gitGIT~1 :/\\\\]{0,7}".prop_map(|s| s.into_bytes()),
        2 => (1..8usize, "[a-z]{1,4}").prop_map(|(n, leaf)| format!("{}{leaf}", "../".repeat(n)).into_bytes()),
        2 => "[a-z/]{1,8}".prop_map(|s| s.into_bytes()),
        1 => ("[.gitGIT]{1,4}", proptest::sample::select(vec!['\u{200c}', '\u{200d}', '\u{202a}', '\u{feff}']))
            .prop_map(|(s, c)| { let mut s = s; s.insert(1.min(s.len()), c); s.into_bytes() }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        // Regressions beside this file (NAME.proptest-regressions), where they
        // always were: with tests/lib.rs present, proptest's default would
        // look for them in proptest-regressions/NAME.txt instead.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_gate_refuses_exactly_what_git_refuses(n in name()) {
        prop_assert_eq!(check_name(&n, false).is_err(), git_refuses(&n), "{:?}", String::from_utf8_lossy(&n));
    }

    #[test]
    fn nothing_outside_root_is_ever_touched(names in proptest::collection::vec(name(), 1..6)) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("webroot/ROOT");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(tmp.path().join("sentinel"), "keep").unwrap();
        std::fs::write(tmp.path().join("webroot/sentinel"), "keep").unwrap();
        let before = support::tree_state(tmp.path());
        let mut path = RepoPath::top();
        let mut refused = false;
        for n in &names {
            match path.child(n, false) {
                Ok(p) => path = p,
                Err(_) => { refused = true; break; }
            }
        }
        prop_assert_eq!(refused, names.iter().any(|n| git_refuses(n)));
        if refused {
            return Ok(());
        }
        let dst = path.under(&root);
        // By components: ROOT, then exactly one normal component per name.
        let extra: Vec<Component> = dst.strip_prefix(&root).unwrap().components().collect();
        prop_assert_eq!(extra.len(), names.len());
        prop_assert!(extra.iter().all(|c| matches!(c, Component::Normal(_))));
        // Write it, then remove it and prune as a deletion does: only ROOT changes.
        let written = dst.parent().is_some_and(|p| std::fs::create_dir_all(p).is_ok())
            && std::fs::write(&dst, "x").is_ok();
        let inside = |s: &std::collections::BTreeMap<std::path::PathBuf, String>| -> Vec<String> {
            s.iter().filter(|(k, _)| !k.starts_with("webroot/ROOT/")).map(|(k, v)| format!("{} {v}", k.display())).collect()
        };
        prop_assert_eq!(inside(&before), inside(&support::tree_state(tmp.path())));
        if written {
            std::fs::remove_file(&dst).unwrap();
        }
        for dir in path.parents_under(&root) {
            prop_assert!(dir.starts_with(&root) && dir != root);
            let _ = std::fs::remove_dir(&dir);
        }
        prop_assert_eq!(before, support::tree_state(tmp.path()));
        prop_assert!(Path::new(&root).is_dir());
    }
}
