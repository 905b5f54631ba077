//! Applying a plan to ROOT: changed files written to a temporary name and
//! renamed over the old one (in place in directories the checkout created),
//! deleted files removed, no `.git` ever written. Files are written by
//! several workers when there are many.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result};
use git2::{Oid, Repository};

use super::diff::ChangeKind;
use super::plan::Plan;
use super::repo::GitSource;
use crate::repo_path::RepoPath;

/// The directories below ROOT a checkout has made sure of: real
/// directories (not symlinks), and whether the checkout created them.
/// Nothing but this checkout writes into a directory it created, so a
/// file there is written in place, without a temporary name.
struct Dirs {
    /// ROOT was created by this checkout or was empty.
    root_fresh: bool,
    known: HashMap<PathBuf, bool>,
}

impl Dirs {
    /// Creates `root` when it is missing.
    fn open(root: &Path) -> Result<Dirs> {
        let existed = root.exists();
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let empty = std::fs::read_dir(root)
            .with_context(|| format!("cannot read {}", root.display()))?
            .next()
            .is_none();
        Ok(Dirs {
            root_fresh: !existed || empty,
            known: HashMap::new(),
        })
    }

    /// Makes every directory above `path` (below `root`) a real directory,
    /// replacing any file or symlink in the way, so that writing `path`
    /// never follows a link out of ROOT. Returns whether `path`'s own
    /// directory was created by this checkout.
    fn ensure(&mut self, root: &Path, path: &RepoPath) -> Result<bool> {
        let mut fresh = self.root_fresh;
        for cur in path.parents_under(root).into_iter().rev() {
            if let Some(&known) = self.known.get(&cur) {
                fresh = known;
                continue;
            }
            // Below a directory this checkout created, nothing can be in the way.
            let existing = match fresh {
                true => None,
                false => std::fs::symlink_metadata(&cur).ok(),
            };
            fresh = match existing {
                Some(m) if m.is_dir() => false,
                Some(_) => {
                    std::fs::remove_file(&cur).with_context(|| {
                        format!("cannot replace {} with a directory", cur.display())
                    })?;
                    create_dir(&cur)?;
                    true
                }
                None => {
                    create_dir(&cur)?;
                    true
                }
            };
            self.known.insert(cur, fresh);
        }
        Ok(fresh)
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// True when every directory above `path` (below `root`) is a real
/// directory: a deletion never follows a symlink out of ROOT.
pub(super) fn parents_are_dirs(root: &Path, path: &RepoPath) -> bool {
    path.parents_under(root)
        .iter()
        .all(|d| std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()))
}

/// Removes now-empty directories above `path`, up to (not including)
/// `root`: only the directories named by `path` itself, below `root`.
pub(super) fn prune_empty_parents(root: &Path, path: &RepoPath) {
    for dir in path.parents_under(root) {
        if std::fs::remove_dir(&dir).is_err() {
            break;
        }
    }
}

/// Below this many files a checkout writes them on the calling thread
/// (opening a repository handle per worker costs more than it saves).
const PARALLEL_FROM: usize = 64;

/// Workers that write files: reading a blob (inflating it, resolving its
/// deltas) and writing it keep a core busy each, and a worker waiting on
/// the disk leaves room for another.
fn writers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// One file (or symlink) the checkout writes.
struct Entry<'a> {
    path: &'a RepoPath,
    blob: Oid,
    mode: i32,
    /// Its directory was created by this checkout: nothing is in the way.
    fresh: bool,
}

impl GitSource {
    /// Applies `plan` to `root`. Restartable: applying it twice gives the same tree.
    ///
    /// Deletions and directories go first, in the plan's order, on this
    /// thread; then the files are written by several workers, each reading
    /// blobs through its own handle on the cache repository. On a first
    /// deploy of a large tree that roughly halves the checkout on two cores.
    pub fn checkout(
        &self,
        plan: &Plan,
        root: &Path,
        progress: impl Fn(&Path) + Sync,
    ) -> Result<()> {
        let mut dirs = Dirs::open(root)?;
        let mut writes = Vec::new();
        for ch in &plan.changes {
            match ch.kind {
                ChangeKind::Deleted => {
                    progress(&ch.path);
                    crate::crashpoint::hit("checkout-entry");
                    delete_entry(root, &ch.path)?;
                }
                ChangeKind::Added { blob, mode } | ChangeKind::Modified { blob, mode } => {
                    let fresh = dirs.ensure(root, &ch.path)?;
                    writes.push(Entry {
                        path: &ch.path,
                        blob,
                        mode,
                        fresh,
                    });
                }
            }
        }
        if writes.len() < PARALLEL_FROM {
            return writes
                .iter()
                .try_for_each(|w| write_counted(&self.repo, root, w, &progress));
        }
        self.write_parallel(root, &writes, &progress)
    }

    /// Writes `writes` into `root` with [`writers`] workers; the first
    /// error stops them all and is returned.
    fn write_parallel(
        &self,
        root: &Path,
        writes: &[Entry<'_>],
        progress: &(impl Fn(&Path) + Sync),
    ) -> Result<()> {
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let cache = self.repo.path();
        let worker = || -> Result<()> {
            let repo = Repository::open_bare(cache)
                .with_context(|| format!("cannot open the cache repository {}", cache.display()))?;
            while !stop.load(Ordering::Relaxed) {
                let Some(w) = writes.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                if let Err(e) = write_counted(&repo, root, w, progress) {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
            Ok(())
        };
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..writers()).map(|_| s.spawn(worker)).collect();
            let mut result = Ok(());
            for w in workers {
                let r = w.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                if result.is_ok() {
                    result = r;
                }
            }
            result
        })
    }
}

/// [`write_entry`], counted for the progress bar and the crash tests.
fn write_counted(
    repo: &Repository,
    root: &Path,
    w: &Entry<'_>,
    progress: &impl Fn(&Path),
) -> Result<()> {
    progress(w.path);
    crate::crashpoint::hit("checkout-entry");
    write_entry(repo, root, w)
}

/// Removes the file `path` from `root`, and the directories it leaves
/// empty. A parent that is no longer a real directory, or a directory
/// that took the file's place, is left alone: not ours to follow.
fn delete_entry(root: &Path, path: &RepoPath) -> Result<()> {
    if !parents_are_dirs(root, path) {
        return Ok(());
    }
    let dst = path.under(root);
    match std::fs::symlink_metadata(&dst) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => std::fs::remove_file(&dst)
            .with_context(|| format!("cannot remove {}", dst.display()))?,
        Err(_) => return Ok(()),
    }
    prune_empty_parents(root, path);
    Ok(())
}

/// Writes one file (or symlink): in place in a directory this checkout
/// created, else under a temporary name beside it, renamed over the old
/// one (a directory in its place is replaced).
fn write_entry(repo: &Repository, root: &Path, w: &Entry<'_>) -> Result<()> {
    let dst = w.path.under(root);
    let content = repo
        .find_blob(w.blob)
        .with_context(|| format!("cannot read blob for {}", w.path.display()))?;
    if w.fresh {
        return write_file(&dst, w.mode, content.content());
    }
    let parent = dst.parent().unwrap_or(root);
    let name = dst
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".rootswap-tmp-{name}"));
    let _ = std::fs::remove_file(&tmp);
    write_file(&tmp, w.mode, content.content())?;
    if let Ok(m) = std::fs::symlink_metadata(&dst) {
        if m.is_dir() {
            // The commit now has a file where a directory was: the commit wins.
            std::fs::remove_dir_all(&dst)
                .with_context(|| format!("cannot replace directory {}", dst.display()))?;
        }
    }
    std::fs::rename(&tmp, &dst)
        .with_context(|| format!("cannot rename {} over {}", tmp.display(), dst.display()))
}

/// Creates `path` (which must not exist) as Git's `mode` says: a symlink
/// to `content`, or a file holding it, executable or not.
fn write_file(path: &Path, mode: i32, content: &[u8]) -> Result<()> {
    if mode == 0o120000 {
        let target = PathBuf::from(String::from_utf8_lossy(content).into_owned());
        return std::os::unix::fs::symlink(&target, path)
            .with_context(|| format!("cannot create symlink {}", path.display()));
    }
    use std::os::unix::fs::OpenOptionsExt;
    let perm = if mode == 0o100755 { 0o755 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(perm)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(content)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let st = Command::new("git")
            .args([
                "-c",
                "gc.auto=0",
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
            ])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .status()
            .expect("git runs");
        assert!(st.success(), "git {args:?}");
    }

    /// Every entry below `dir` (not `.git`): path, kind and mode, contents.
    fn listing(dir: &Path) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            if rel == ".git" || rel.starts_with(".git/") {
                continue;
            }
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let body = if m.file_type().is_symlink() {
                std::fs::read_link(e.path())
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if m.is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            out.push((rel, m.permissions().mode(), body));
        }
        out
    }

    /// The parallel writers give the tree git's own checkout gives, on a
    /// first checkout and on a change that turns a file into a directory
    /// and a directory into a file.
    #[test]
    fn a_parallel_checkout_writes_what_git_checks_out() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        for i in 0..(PARALLEL_FROM * 3) {
            let dir = repo.join(format!("d{}/e{}", i % 7, i % 3));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("f{i}.php")), format!("<?php // {i}\n")).unwrap();
        }
        std::fs::write(repo.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(repo.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("d0/e0/f0.php", repo.join("link.php")).unwrap();
        std::fs::write(repo.join("becomes-dir"), "file\n").unwrap();
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "one"]);

        let cfg: crate::config::SourceConfig =
            serde_yaml_ng::from_str(&format!("repo: {}", repo.display())).unwrap();
        let state = tmp.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let mut source = GitSource::open(&state, &cfg).unwrap();
        let root = tmp.path().join("ROOT");
        let one = source.fetch_and_resolve(None).unwrap();
        let plan = source.plan(None, one).unwrap();
        source.checkout(&plan, &root, |_| {}).unwrap();
        assert_eq!(listing(&root), listing(&repo));

        std::fs::remove_file(repo.join("becomes-dir")).unwrap();
        std::fs::create_dir(repo.join("becomes-dir")).unwrap();
        std::fs::write(repo.join("becomes-dir/inside.php"), "x\n").unwrap();
        std::fs::remove_dir_all(repo.join("d3")).unwrap();
        std::fs::write(repo.join("d3"), "now a file\n").unwrap();
        for i in 0..PARALLEL_FROM {
            let f = repo.join(format!("d{}/e{}/f{i}.php", i % 7, i % 3));
            if f.exists() {
                std::fs::write(f, format!("<?php // {i} changed\n")).unwrap();
            }
        }
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "two"]);
        let two = source.fetch_and_resolve(None).unwrap();
        let plan = source.plan(Some(one), two).unwrap();
        source.checkout(&plan, &root, |_| {}).unwrap();
        assert_eq!(listing(&root), listing(&repo));
    }
}
