//! What changes between two trees of the deployed commit: a walk of both
//! trees side by side that skips every subtree whose id did not change, so a
//! one-file commit reads a handful of tree objects, not the whole tree.
//!
//! The result matches `git diff-tree -r` without type-change records: a path
//! that turns from a file into a symlink (or a directory) is a deletion plus
//! an addition; submodules are left out with a warning.
//!
//! Every name the walk reads is checked on the way ([`RepoPath::child`]):
//! a name git refuses in the new tree stops the walk with a [`BadName`](crate::repo_path::BadName)
//! before anything is written, so every path of the result is a
//! [`RepoPath`]. The walk reaches every entry the checkout will write or
//! delete (an unchanged subtree yields no change at all). A refused name
//! that exists only in the old tree (live since before this check) is never
//! deleted: it is skipped with a warning, since no such path can be inside
//! ROOT.

use std::collections::HashMap;

use anyhow::{Context, Result};
use git2::{ObjectType, Oid, Repository, Tree, TreeEntry};

use crate::repo_path::RepoPath;

const SUBMODULE: i32 = 0o160000;
const SYMLINK: i32 = 0o120000;

/// One file-level change between two commits (paths relative to the deployed subdir).
#[derive(Debug, Clone)]
pub struct Change {
    /// Path relative to ROOT, every name checked ([`crate::repo_path`]).
    pub path: RepoPath,
    /// What happens to it.
    pub kind: ChangeKind,
}

/// Kind of a [`Change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// New in the target commit.
    Added {
        /// Blob id of the new content.
        blob: Oid,
        /// Git file mode (0o100644, 0o100755, 0o120000).
        mode: i32,
    },
    /// Content or mode changed.
    Modified {
        /// Blob id of the new content.
        blob: Oid,
        /// Git file mode.
        mode: i32,
    },
    /// Gone from the target commit.
    Deleted,
}

/// Deletions and writes (additions, modifications) from `old` to `new`, in
/// path order. A [`BadName`](crate::repo_path::BadName) error (downcast it) when `new` has an entry
/// git refuses on the way to a change.
pub(super) fn changes(
    repo: &Repository,
    old: Option<&Tree>,
    new: &Tree,
) -> Result<(Vec<Change>, Vec<Change>)> {
    let mut d = Diff {
        repo,
        deletes: Vec::new(),
        writes: Vec::new(),
    };
    d.trees(&RepoPath::top(), old, Some(new))?;
    Ok((d.deletes, d.writes))
}

struct Diff<'r> {
    repo: &'r Repository,
    deletes: Vec<Change>,
    writes: Vec<Change>,
}

impl Diff<'_> {
    fn trees(&mut self, dir: &RepoPath, old: Option<&Tree>, new: Option<&Tree>) -> Result<()> {
        let mut old_entries: HashMap<Vec<u8>, TreeEntry> = old
            .map(|t| t.iter().map(|e| (e.name_bytes().to_vec(), e)).collect())
            .unwrap_or_default();
        if let Some(new) = new {
            for e in new.iter() {
                let before = old_entries.remove(e.name_bytes());
                if before
                    .as_ref()
                    .is_some_and(|o| o.id() == e.id() && o.filemode() == e.filemode())
                {
                    continue; // unchanged, and so is everything below it
                }
                let path = dir.child(e.name_bytes(), e.filemode() == SYMLINK)?;
                self.entry(&path, before.as_ref(), Some(&e))?;
            }
        }
        // What is left of the old tree is gone from the new one (in path order).
        let mut gone: Vec<(Vec<u8>, TreeEntry)> = old_entries.into_iter().collect();
        gone.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, e) in gone {
            match dir.child(&name, e.filemode() == SYMLINK) {
                Ok(path) => self.entry(&path, Some(&e), None)?,
                Err(bad) => tracing::warn!(
                    "not deleting {bad}: an entry of the live commit that git refuses (the path it names may be outside ROOT)"
                ),
            }
        }
        Ok(())
    }

    fn entry(
        &mut self,
        path: &RepoPath,
        old: Option<&TreeEntry>,
        new: Option<&TreeEntry>,
    ) -> Result<()> {
        if let (Some(o), Some(n)) = (old, new) {
            if o.id() == n.id() && o.filemode() == n.filemode() {
                return Ok(()); // unchanged, and so is everything below it
            }
        }
        let repo = self.repo;
        let old_tree = old
            .filter(|e| is_tree(e))
            .map(|e| tree(repo, e))
            .transpose()?;
        let new_tree = new
            .filter(|e| is_tree(e))
            .map(|e| tree(repo, e))
            .transpose()?;
        if old_tree.is_some() || new_tree.is_some() {
            self.trees(path, old_tree.as_ref(), new_tree.as_ref())?;
        }
        let old_blob = old.filter(|e| !is_tree(e));
        let new_blob = new.filter(|e| !is_tree(e));
        let same_kind = match (old_blob, new_blob) {
            (Some(o), Some(n)) => {
                (o.filemode() == SYMLINK) == (n.filemode() == SYMLINK)
                    && o.filemode() != SUBMODULE
                    && n.filemode() != SUBMODULE
            }
            _ => false,
        };
        if old_blob.is_some_and(|o| !same_kind && o.filemode() != SUBMODULE) {
            self.deletes.push(Change {
                path: path.clone(),
                kind: ChangeKind::Deleted,
            });
        }
        if let Some(n) = new_blob {
            if n.filemode() == SUBMODULE {
                tracing::warn!(
                    "submodule {} is not deployed (rootswap deploys files, not submodules)",
                    path.display()
                );
                return Ok(());
            }
            let (blob, mode) = (n.id(), n.filemode());
            let kind = if same_kind {
                ChangeKind::Modified { blob, mode }
            } else {
                ChangeKind::Added { blob, mode }
            };
            self.writes.push(Change {
                path: path.clone(),
                kind,
            });
        }
        Ok(())
    }
}

fn tree<'r>(repo: &'r Repository, e: &TreeEntry) -> Result<Tree<'r>> {
    repo.find_tree(e.id())
        .with_context(|| format!("cannot read tree {}", e.id()))
}

fn is_tree(e: &TreeEntry) -> bool {
    e.kind() == Some(ObjectType::Tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let st = Command::new("git")
            .args(["-c", "gc.auto=0"])
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .status()
            .expect("git runs");
        assert!(st.success(), "git {args:?}");
    }

    /// libgit2's own tree diff (without type changes), as the oracle.
    fn oracle(repo: &Repository, old: &Tree, new: &Tree) -> Vec<(String, String)> {
        let mut opts = git2::DiffOptions::new();
        opts.include_typechange(false);
        let diff = repo
            .diff_tree_to_tree(Some(old), Some(new), Some(&mut opts))
            .unwrap();
        let mut out: Vec<(String, String)> = diff
            .deltas()
            .map(|d| {
                let (f, kind) = match d.status() {
                    git2::Delta::Deleted => (d.old_file(), "D"),
                    git2::Delta::Added => (d.new_file(), "A"),
                    _ => (d.new_file(), "M"),
                };
                (f.path().unwrap().display().to_string(), kind.to_string())
            })
            .collect();
        out.sort();
        out
    }

    fn ours(repo: &Repository, old: &Tree, new: &Tree) -> Vec<(String, String)> {
        let (del, wr) = changes(repo, Some(old), new).unwrap();
        let mut out: Vec<(String, String)> = del
            .iter()
            .chain(wr.iter())
            .map(|c| {
                let k = match c.kind {
                    ChangeKind::Deleted => "D",
                    ChangeKind::Added { .. } => "A",
                    ChangeKind::Modified { .. } => "M",
                };
                (c.path.display().to_string(), k.to_string())
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn matches_libgit2_on_adds_deletes_modes_links_and_dir_file_swaps() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        git(d, &["init", "-q", "-b", "main"]);
        let w = |p: &str, s: &str| {
            let p = d.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        w("a.php", "a");
        w("keep/deep/x.php", "x");
        w("gone/y.php", "y");
        w("mode.sh", "m");
        w("tolink", "t");
        w("todir", "f");
        w("fromdir/z", "z");
        std::os::unix::fs::symlink("a.php", d.join("link")).unwrap();
        git(d, &["add", "-A"]);
        git(d, &["commit", "-qm", "one"]);
        w("a.php", "a2");
        w("new/sub/n.php", "n");
        std::fs::remove_dir_all(d.join("gone")).unwrap();
        let x = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(d.join("mode.sh"), x).unwrap();
        std::fs::remove_file(d.join("tolink")).unwrap();
        std::os::unix::fs::symlink("a.php", d.join("tolink")).unwrap();
        std::fs::remove_file(d.join("todir")).unwrap();
        w("todir/inner", "i");
        std::fs::remove_dir_all(d.join("fromdir")).unwrap();
        w("fromdir", "now a file");
        std::fs::remove_file(d.join("link")).unwrap();
        std::os::unix::fs::symlink("keep", d.join("link")).unwrap();
        git(d, &["add", "-A"]);
        git(d, &["commit", "-qm", "two"]);
        let repo = Repository::open(d).unwrap();
        let head = repo.head().unwrap().peel_to_commit().unwrap();
        let new = head.tree().unwrap();
        let old = head.parent(0).unwrap().tree().unwrap();
        let expected = oracle(&repo, &old, &new);
        assert_eq!(ours(&repo, &old, &new), expected);
        assert!(expected.len() >= 10, "{expected:?}");
        // Nothing changed: nothing to do.
        assert!(ours(&repo, &new, &new).is_empty());
        // From nothing: every file is added.
        let (del, wr) = changes(&repo, None, &new).unwrap();
        assert!(del.is_empty());
        assert_eq!(wr.len(), 8, "{wr:?}");
    }
}
