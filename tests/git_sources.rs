//! Repositories as people have them (issue 22): revisions given to `--ref`
//! relative to the fetched branch, a repository on this machine read in
//! place instead of copied, and a shallow cache (`source.depth`) that
//! deepens when an older commit is asked for. Real repositories, the real
//! binary, and a real `git daemon` for the network transport.

use std::path::{Path, PathBuf};

use crate::support::*;

/// `index.php` of the live tree.
fn served(w: &World) -> String {
    read(&w.root().join("index.php"))
}

/// Object files the cache holds itself (loose objects and packs).
fn own_objects(w: &World) -> usize {
    let objects = w.webroot.join(".rootswap/repo.git/objects");
    walkdir::WalkDir::new(&objects)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && !e.path().starts_with(objects.join("info")))
        .count()
}

/// The cache's git directory.
fn cache(w: &World) -> PathBuf {
    w.webroot.join(".rootswap/repo.git")
}

/// `git` on a bare repository (the cache, a served copy).
fn git_dir(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["--git-dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    git(dir, &all)
}

/// Three commits (`v1`, `v2` tagged `v2` with an annotated tag, `v3`).
fn three_versions() -> (World, Vec<String>) {
    let w = World::new(&[("index.php", "v1")], "");
    let mut ids = vec![git(&w.repo, &["rev-parse", "HEAD"])];
    for v in ["v2", "v3"] {
        w.write_files(&[("index.php", v)]);
        ids.push(w.commit(v));
        if v == "v2" {
            git(&w.repo, &["tag", "-a", "v2", "-m", "release 2"]);
        }
    }
    (w, ids)
}

#[test]
fn revisions_relative_to_the_branch_tags_and_ids_deploy() {
    let (w, ids) = three_versions();
    for (rev, want) in [
        ("main~1", "v2"),
        ("main~2", "v1"),
        ("main", "v3"),
        ("HEAD^", "v2"),
        ("v2^{commit}", "v2"),
        ("v2", "v2"),
        ("v2~1", "v1"),
        (&ids[0][..8], "v1"),
        (ids[2].as_str(), "v3"),
    ] {
        w.ok(&["deploy", "--ref", rev]);
        assert_eq!(served(&w), want, "--ref {rev}");
    }
}

#[test]
fn a_bad_revision_lists_what_exists_and_changes_nothing() {
    let (w, _) = three_versions();
    w.ok(&["deploy"]);
    assert_untouched(
        &w,
        &["deploy", "--ref", "mian~1"],
        &["'mian~1'", "branches fetched: main", "tags: v2", "main~1"],
    );
    assert_untouched(&w, &["deploy", "--ref", "main~9"], &["'main~9'", "main"]);
    assert_untouched(&w, &["deploy", "--ref", "main@{1}"], &["reflog", "main~1"]);
    assert_eq!(served(&w), "v3");
}

#[test]
fn a_local_repository_is_read_in_place_not_copied() {
    let (w, _) = three_versions();
    w.ok(&["deploy"]);
    let alternates = read(&cache(&w).join("objects/info/alternates"));
    assert_eq!(
        alternates.trim(),
        w.repo
            .join(".git/objects")
            .canonicalize()
            .unwrap()
            .to_str()
            .unwrap()
    );
    assert_eq!(own_objects(&w), 0, "no object was copied into the cache");
    w.write_files(&[("index.php", "v4"), ("lib/new.php", "n")]);
    w.commit("v4");
    w.ok(&["deploy"]);
    assert_eq!(served(&w), "v4");
    assert_eq!(read(&w.root().join("lib/new.php")), "n");
    assert_eq!(
        own_objects(&w),
        0,
        "a one-file deploy copies no object either"
    );
}

#[test]
fn a_local_repository_that_pruned_the_live_commit_gets_the_whole_tree() {
    let w = World::new(&[("index.php", "v1"), ("keep.php", "k")], "");
    w.ok(&["deploy"]);
    // Rewrite the live commit away and prune it: the cache relied on those objects.
    w.write_files(&[("index.php", "v2")]);
    git(&w.repo, &["add", "-A"]);
    git(&w.repo, &["commit", "-q", "--amend", "-m", "rewritten"]);
    git(&w.repo, &["reflog", "expire", "--expire=now", "--all"]);
    git(&w.repo, &["gc", "-q", "--prune=now"]);
    let out = w.ok(&["deploy"]);
    assert_eq!(served(&w), "v2", "{out}");
    assert_eq!(read(&w.root().join("keep.php")), "k");
    w.write_files(&[("index.php", "v3")]);
    w.commit("v3");
    w.ok(&["deploy"]);
    assert_eq!(served(&w), "v3");
}

/// A bare copy of `w.repo` served by a real `git daemon`.
fn served_by_daemon(w: &World) -> Option<(GitDaemon, String)> {
    let base = w.tmp.path().join("served");
    std::fs::create_dir_all(&base).unwrap();
    let bare = base.join("site.git");
    git(&base, &["init", "-q", "--bare", "-b", "main", "site.git"]);
    let daemon = GitDaemon::start(&base)?;
    git(
        &w.repo,
        &["push", "-q", "-f", bare.to_str().unwrap(), "main", "--tags"],
    );
    let url = format!("git://127.0.0.1:{}/site.git", daemon.port);
    Some((daemon, url))
}

/// The site's repository's config, pointing at `url` with `extra` source keys.
fn use_url(w: &World, url: &str, extra: &str) {
    let text = format!(
        "webroot: {}\nsource:\n  repo: {url}\n  branch: main\n{extra}drain: 0s\n",
        w.webroot.display()
    );
    std::fs::write(&w.config, text).unwrap();
}

#[test]
fn a_shallow_cache_fetches_the_tip_and_deepens_for_an_older_revision() {
    let w = World::new(&[("index.php", "v1")], "");
    // A large file in the past, deleted since: a full fetch carries it.
    let big: String = (0..200_000).map(|i| format!("{i:08}")).collect();
    w.write_files(&[("media/big.bin", &big)]);
    w.commit("big");
    let big_blob = git(&w.repo, &["rev-parse", "HEAD:media/big.bin"]);
    std::fs::remove_dir_all(w.repo.join("media")).unwrap();
    w.commit("drop big");
    for v in ["v2", "v3"] {
        w.write_files(&[("index.php", v)]);
        w.commit(v);
    }
    let Some((daemon, url)) = served_by_daemon(&w) else {
        return;
    };
    use_url(&w, &url, "  depth: 1\n");
    w.ok(&["deploy"]);
    assert_eq!(served(&w), "v3");
    let count = |w: &World| {
        git_dir(
            &cache(w),
            &["rev-list", "--count", "refs/remotes/origin/main"],
        )
    };
    assert_eq!(count(&w), "1", "one commit fetched");
    assert!(cache(&w).join("shallow").exists());
    let has_big = |w: &World| {
        std::process::Command::new("git")
            .args([
                "--git-dir",
                cache(w).to_str().unwrap(),
                "cat-file",
                "-e",
                &big_blob,
            ])
            .status()
            .unwrap()
            .success()
    };
    assert!(!has_big(&w), "the deleted large file is not fetched");
    // An older revision: the whole history comes in once, then it deploys.
    let out = w.ok(&["deploy", "--ref", "main~4"]);
    assert_eq!(served(&w), "v1", "{out}");
    assert_eq!(count(&w), "5");
    // A typo does not fetch the history: it fails naming what exists.
    let w2 = World::new(&[("index.php", "x")], "");
    use_url(&w2, &url, "  depth: 1\n");
    w2.ok(&["deploy"]);
    assert_untouched(&w2, &["deploy", "--ref", "nosuch"], &["'nosuch'", "main"]);
    assert_eq!(count(&w2), "1");
    drop(daemon);
}

#[test]
fn leaving_a_local_repository_for_a_url_stops_reading_it_in_place() {
    let (w, _) = three_versions();
    w.ok(&["deploy", "--ref", "main~1"]);
    let Some((daemon, url)) = served_by_daemon(&w) else {
        return;
    };
    use_url(&w, &url, "");
    w.ok(&["deploy"]);
    assert_eq!(served(&w), "v3");
    assert!(!cache(&w).join("objects/info/alternates").exists());
    assert!(own_objects(&w) > 0, "the objects now live in the cache");
    // The local repository may go away now.
    std::fs::remove_dir_all(&w.repo).unwrap();
    w.ok(&["status"]);
    drop(daemon);
}
