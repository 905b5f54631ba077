//! Property test of the incremental snapshot: over random trees (files,
//! directories, symlinks, hard links, modes, nanosecond mtimes) and random
//! changes, `sync_tree` of an old copy must give exactly what a fresh
//! `copy_tree` gives: same types, contents, modes, mtimes, link targets and
//! hard-link structure.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use rootswap::copy::{copy_tree, sync_tree, CopyOptions};

const NAMES: [&str; 4] = ["a", "b", "c.php", "d"];
const FILE_MODES: [u32; 6] = [0o644, 0o600, 0o755, 0o700, 0o444, 0o640];
const DIR_MODES: [u32; 5] = [0o755, 0o700, 0o775, 0o2775, 0o750];

#[derive(Debug, Clone)]
enum Spec {
    File {
        content: Vec<u8>,
        mode: u32,
        mtime: (i64, u32),
    },
    Dir {
        mode: u32,
        mtime: (i64, u32),
    },
    Link {
        target: String,
        mtime: (i64, u32),
    },
}

#[derive(Debug, Clone)]
enum Change {
    Rewrite { content: Vec<u8>, mtime: (i64, u32) },
    Chmod(u32),
    Touch((i64, u32)),
    Delete,
    Replace(Spec),
    AddChild(usize, Spec),
    HardLink(usize),
}

fn mtime() -> impl Strategy<Value = (i64, u32)> {
    (1_500_000_000i64..1_700_000_000, 0u32..1_000_000_000)
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        4 => (proptest::collection::vec(any::<u8>(), 0..300), 0..FILE_MODES.len(), mtime())
            .prop_map(|(content, m, mtime)| Spec::File { content, mode: FILE_MODES[m], mtime }),
        2 => (0..DIR_MODES.len(), mtime()).prop_map(|(m, mtime)| Spec::Dir { mode: DIR_MODES[m], mtime }),
        1 => ("[a-d./]{1,8}", mtime()).prop_map(|(target, mtime)| Spec::Link { target, mtime }),
    ]
}

fn path() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0..NAMES.len(), 1..4)
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => (proptest::collection::vec(any::<u8>(), 0..300), mtime()).prop_map(|(content, mtime)| Change::Rewrite { content, mtime }),
        1 => (0..FILE_MODES.len()).prop_map(|m| Change::Chmod(FILE_MODES[m])),
        1 => mtime().prop_map(Change::Touch),
        2 => Just(Change::Delete),
        1 => spec().prop_map(Change::Replace),
        2 => (0..NAMES.len(), spec()).prop_map(|(n, s)| Change::AddChild(n, s)),
        1 => any::<usize>().prop_map(Change::HardLink),
    ]
}

fn set_mtime(p: &Path, (s, ns): (i64, u32)) {
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: s,
            tv_nsec: ns as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: s,
            tv_nsec: ns as _,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &ts,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Creates `spec` at `p` (whose parent exists); false if something is in the way.
fn create(p: &Path, spec: &Spec) -> bool {
    if std::fs::symlink_metadata(p).is_ok() {
        return false;
    }
    match spec {
        Spec::File {
            content,
            mode,
            mtime,
        } => {
            std::fs::write(p, content).unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(*mode)).unwrap();
            set_mtime(p, *mtime);
        }
        Spec::Dir { mode, mtime } => {
            std::fs::create_dir(p).unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(*mode)).unwrap();
            set_mtime(p, *mtime);
        }
        Spec::Link { target, mtime } => {
            std::os::unix::fs::symlink(target, p).unwrap();
            set_mtime(p, *mtime);
        }
    }
    true
}

fn build(root: &Path, entries: &[(Vec<usize>, Spec)]) {
    for (path, spec) in entries {
        let mut p = root.to_path_buf();
        let mut ok = true;
        for &i in &path[..path.len() - 1] {
            p.push(NAMES[i]);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    ok = false;
                    break;
                }
                Err(_) => std::fs::create_dir(&p).unwrap(),
            }
        }
        if ok {
            create(&p.join(NAMES[path[path.len() - 1]]), spec);
        }
    }
}

/// Every path below `root` (not `root` itself), sorted.
fn all_paths(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap().path().to_path_buf())
        .collect();
    out.sort();
    out
}

fn remove_any(p: &Path) {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).unwrap(),
        Ok(_) => std::fs::remove_file(p).unwrap(),
        Err(_) => {}
    }
}

fn apply(root: &Path, changes: &[(usize, Change)]) {
    for (sel, change) in changes {
        let paths = all_paths(root);
        if paths.is_empty() {
            if let Change::AddChild(n, s) = change {
                create(&root.join(NAMES[*n]), s);
            }
            continue;
        }
        let p = &paths[sel % paths.len()];
        let m = std::fs::symlink_metadata(p).unwrap();
        match change {
            Change::Rewrite { content, mtime } if m.is_file() => {
                std::fs::write(p, content).unwrap();
                set_mtime(p, *mtime);
            }
            Change::Chmod(mode) if m.is_file() => {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(*mode)).unwrap()
            }
            Change::Touch(t) => set_mtime(p, *t),
            Change::Delete => remove_any(p),
            Change::Replace(s) => {
                remove_any(p);
                create(p, s);
            }
            Change::AddChild(n, s) if m.is_dir() => {
                create(&p.join(NAMES[*n]), s);
            }
            Change::HardLink(other) if m.is_file() => {
                let q = &paths[other % paths.len()];
                if q != p && !q.starts_with(p) && !p.starts_with(q) {
                    remove_any(q);
                    std::fs::hard_link(p, q).unwrap();
                }
            }
            _ => {}
        }
    }
}

/// What must be equal between two copies, for every entry.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    File {
        content: Vec<u8>,
        mode: u32,
        mtime: (i64, i64),
        nlink: u64,
    },
    Dir {
        mode: u32,
        mtime: (i64, i64),
    },
    Link {
        target: PathBuf,
        mtime: (i64, i64),
    },
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    let mut all = all_paths(root);
    all.push(root.to_path_buf());
    for p in all {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        let mtime = (m.mtime(), m.mtime_nsec());
        let seen = if m.is_dir() {
            Seen::Dir {
                mode: m.mode() & 0o7777,
                mtime,
            }
        } else if m.file_type().is_symlink() {
            Seen::Link {
                target: std::fs::read_link(&p).unwrap(),
                mtime,
            }
        } else {
            Seen::File {
                content: std::fs::read(&p).unwrap(),
                mode: m.mode() & 0o7777,
                mtime,
                nlink: m.nlink(),
            }
        };
        out.insert(rel, seen);
    }
    out
}

/// Directory mtimes of `root` set from a fixed value (changes bumped them to "now").
fn settle_dir_times(root: &Path) {
    let mut dirs: Vec<PathBuf> = all_paths(root)
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(p).unwrap().is_dir())
        .collect();
    dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, d) in dirs.iter().enumerate() {
        set_mtime(d, (1_600_000_000 + i as i64, 123_456_789));
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        // Regressions beside this file (NAME.proptest-regressions), where they
        // always were: with tests/lib.rs present, proptest's default would
        // look for them in proptest-regressions/NAME.txt instead.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn sync_equals_fresh_copy(
        entries in proptest::collection::vec((path(), spec()), 0..40),
        changes in proptest::collection::vec((any::<usize>(), change()), 0..25),
        settle in any::<bool>(),
    ) {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        build(&src, &entries);
        let opts = CopyOptions { threads: 2, nice: None };
        let old = t.path().join("old");
        copy_tree(&src, &old, &opts).unwrap();
        prop_assert_eq!(snapshot(&src), snapshot(&old));

        apply(&src, &changes);
        if settle {
            // Also cover directories whose mtime did not change.
            settle_dir_times(&src);
        }
        let stats = sync_tree(&src, &old, &opts).unwrap();
        let fresh = t.path().join("fresh");
        copy_tree(&src, &fresh, &opts).unwrap();
        let want = snapshot(&src);
        prop_assert_eq!(&snapshot(&fresh), &want);
        prop_assert_eq!(&snapshot(&old), &want, "sync stats: {:?}", stats);

        // A second sync finds nothing to do.
        let again = sync_tree(&src, &old, &opts).unwrap();
        prop_assert_eq!(again.files + again.dirs + again.symlinks + again.hardlinks + again.removed, 0, "{:?}", again);
    }
}
