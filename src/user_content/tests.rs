use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::UserContentConfig;
use crate::source::IgnoreFile;
use rules::literal_dir_prefix;

fn rules(preserve: &[&str], exclude: &[&str]) -> Rules {
    Rules::new(&UserContentConfig {
        gitignore: true,
        preserve: preserve.iter().map(|s| s.to_string()).collect(),
        exclude: exclude.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .unwrap()
}

fn ig(dir: &str, text: &str) -> IgnoreFile {
    IgnoreFile {
        dir: PathBuf::from(dir),
        text: text.into(),
    }
}

fn classifier(
    preserve: &[&str],
    exclude: &[&str],
    files: &[IgnoreFile],
    subdir: &str,
) -> Classifier {
    let tracked: HashSet<PathBuf> = ["index.php", "public/index.php"]
        .iter()
        .map(PathBuf::from)
        .collect();
    Classifier::new(rules(preserve, exclude), tracked, files, Path::new(subdir))
}

#[test]
fn tracked_ignored_preserved_excluded() {
    let c = classifier(
        &[".env", "storage/**"],
        &["cache/**", "storage/framework/cache/**"],
        &[ig("", ".env\nstorage/\ncache/\n*.log\n!keep.log\n")],
        "",
    );
    assert!(!c.is_user_file(Path::new("index.php"), false), "tracked");
    assert!(
        c.is_user_file(Path::new("uploads/a.jpg"), false),
        "untracked, not ignored"
    );
    assert!(!c.is_user_file(Path::new("debug.log"), false), "ignored");
    assert!(
        c.is_user_file(Path::new("keep.log"), false),
        "negation re-includes"
    );
    assert!(
        c.is_user_file(Path::new(".env"), false),
        "preserve wins over ignore"
    );
    assert!(
        c.is_user_file(Path::new("storage/app/x"), true),
        "preserve inside an ignored dir"
    );
    assert!(
        !c.is_user_file(Path::new("storage/framework/cache/x"), true),
        "exclude wins over preserve"
    );
    assert!(!c.is_user_file(Path::new("cache/x"), true), "ignored dir");
    assert!(
        !c.is_user_file(Path::new(".rootswap-tmp-x"), false),
        "own temp files"
    );
}

#[test]
fn nested_gitignore_overrides_parent_and_subdir_maps() {
    let c = classifier(
        &[],
        &[],
        &[ig("", "*.txt\n"), ig("app/docs", "!*.txt\n")],
        "app",
    );
    assert!(!c.is_user_file(Path::new("a.txt"), false));
    assert!(c.is_user_file(Path::new("docs/a.txt"), false));
    // Anchored pattern in the repository root .gitignore applies to the subdir.
    let c = classifier(&[], &[], &[ig("", "/app/tmp/\n")], "app");
    assert!(c.ignored_here(Path::new("tmp"), true));
    assert!(
        !c.ignored_here(Path::new("tmp"), false),
        "directory pattern only matches directories"
    );
}

#[test]
fn prefixes() {
    assert_eq!(literal_dir_prefix("storage/**"), PathBuf::from("storage"));
    assert_eq!(
        literal_dir_prefix("storage/app/*.jpg"),
        PathBuf::from("storage/app")
    );
    assert_eq!(literal_dir_prefix("**/*.env"), PathBuf::new());
    assert_eq!(literal_dir_prefix(".env"), PathBuf::new());
    let r = rules(&["storage/**"], &[]);
    assert!(r.preserve_may_match_below(Path::new("storage")));
    assert!(r.preserve_may_match_below(Path::new("storage/app")));
    assert!(!r.preserve_may_match_below(Path::new("vendor")));
}

#[test]
fn copy_back_applies_creations_changes_and_deletions() {
    let t = tempfile::tempdir().unwrap();
    let (snap, root) = (t.path().join("snap"), t.path().join("root"));
    for d in [&snap, &root] {
        std::fs::create_dir_all(d.join("uploads")).unwrap();
        std::fs::write(d.join("uploads/keep"), "k").unwrap();
        std::fs::write(d.join("uploads/gone"), "g").unwrap();
        std::fs::write(d.join("uploads/edit"), "1").unwrap();
    }
    let c = classifier(&[], &[], &[], "");
    // The copies share mtimes in a real snapshot; make them equal here.
    for f in ["keep", "gone", "edit"] {
        let m = std::fs::metadata(snap.join("uploads").join(f)).unwrap();
        let ft = std::fs::FileTimes::new().set_modified(m.modified().unwrap());
        std::fs::File::options()
            .write(true)
            .open(root.join("uploads").join(f))
            .unwrap()
            .set_times(ft)
            .unwrap();
    }
    let before = scan(&snap, &c).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(10));
    std::fs::write(snap.join("uploads/new"), "n").unwrap();
    std::fs::write(snap.join("uploads/edit"), "22").unwrap();
    std::fs::remove_file(snap.join("uploads/gone")).unwrap();
    std::fs::write(snap.join("index.php"), "user edit of a tracked file").unwrap();
    let mut now = scan(&snap, &c).unwrap();
    let tracked: HashSet<PathBuf> = [PathBuf::from("index.php")].into_iter().collect();
    let r = carry(&snap, &root, &before, &mut now, &tracked, None, None).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("uploads/new")).unwrap(),
        "n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("uploads/edit")).unwrap(),
        "22"
    );
    assert!(!root.join("uploads/gone").exists());
    assert!(
        !root.join("index.php").exists(),
        "tracked files are not user content"
    );
    assert_eq!(r.copied.len(), 2);
    assert_eq!(r.removed, vec![PathBuf::from("uploads/gone")]);
}
