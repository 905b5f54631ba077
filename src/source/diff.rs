//! What changes between two trees of the deployed commit: a walk of both
//! trees side by side that skips every subtree whose id did not change, so a
//! one-file commit reads a handful of tree objects, not the whole tree.
//!
//! The result matches `git diff-tree -r` without type-change records: a path
//! that turns from a file into a symlink (or a directory) is a deletion plus
//! an addition. A submodule (gitlink) is walked as the tree of the commit it
//! records ([`super::submodules`]), or left out with a warning under
//! `source.submodules: false`.
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
use std::rc::Rc;

use anyhow::{Context, Result};
use git2::{ObjectType, Oid, Repository, Tree, TreeEntry};

use super::submodules::{self, Missing, MissingSubmodules, Scope, Side, SubmoduleChange, GITLINK};
use crate::repo_path::RepoPath;

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

/// One side of a diff: a tree, the repository it belongs to, and whether
/// submodules are deployed on that side (the old side: as ROOT has them).
pub(super) struct Top<'a, 'r> {
    pub(super) tree: &'a Tree<'r>,
    pub(super) scope: Rc<Scope>,
    pub(super) submodules: bool,
}

/// What a diff found.
pub(super) struct Changes {
    pub(super) deletes: Vec<Change>,
    pub(super) writes: Vec<Change>,
    pub(super) submodules: Vec<SubmoduleChange>,
}

/// Deletions and writes (additions, modifications) from `old` to `new`, in
/// path order. A [`BadName`](crate::repo_path::BadName) error (downcast it) when `new` has an entry
/// git refuses on the way to a change; [`MissingSubmodules`] when a changed
/// submodule's commit is not in the cache.
pub(super) fn changes<'r>(
    repo: &'r Repository,
    old: Option<Top<'_, 'r>>,
    new: Top<'_, 'r>,
) -> Result<Changes> {
    let mut d = Diff {
        repo,
        modes: (old.as_ref().is_some_and(|o| o.submodules), new.submodules),
        missing: Vec::new(),
        out: Changes {
            deletes: Vec::new(),
            writes: Vec::new(),
            submodules: Vec::new(),
        },
    };
    let side = |t: Top<'_, 'r>| Side {
        tree: t.tree.clone(),
        scope: t.scope,
    };
    let old = old.map(side);
    d.trees(&RepoPath::top(), old.as_ref(), Some(&side(new)))?;
    if !d.missing.is_empty() {
        return Err(MissingSubmodules(d.missing).into());
    }
    Ok(d.out)
}

struct Diff<'r> {
    repo: &'r Repository,
    /// Submodules deployed on the (old, new) side.
    modes: (bool, bool),
    missing: Vec<Missing>,
    out: Changes,
}

/// What an entry is to the walk.
enum Node<'r> {
    /// A directory, or a submodule's tree.
    Dir(Side<'r>),
    /// A file or symlink.
    File,
    /// Nothing to write: absent, or a submodule not deployed (or not fetched yet).
    Skip,
}

impl<'r> Diff<'r> {
    fn trees(&mut self, dir: &RepoPath, old: Option<&Side>, new: Option<&Side>) -> Result<()> {
        let mut old_entries: HashMap<Vec<u8>, TreeEntry> = old
            .map(|t| {
                t.tree
                    .iter()
                    .map(|e| (e.name_bytes().to_vec(), e))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(new) = new {
            for e in new.tree.iter() {
                let before = old_entries.remove(e.name_bytes());
                if before.as_ref().is_some_and(|o| self.unchanged(o, &e)) {
                    continue; // unchanged, and so is everything below it
                }
                let path = dir.child(e.name_bytes(), e.filemode() == SYMLINK)?;
                let before = before.as_ref().zip(old.map(|s| &s.scope));
                self.entry(&path, before, Some((&e, &new.scope)))?;
            }
        }
        // What is left of the old tree is gone from the new one (in path order).
        let mut gone: Vec<(Vec<u8>, TreeEntry)> = old_entries.into_iter().collect();
        gone.sort_by(|a, b| a.0.cmp(&b.0));
        let Some(old) = old else { return Ok(()) };
        for (name, e) in gone {
            match dir.child(&name, e.filemode() == SYMLINK) {
                Ok(path) => self.entry(&path, Some((&e, &old.scope)), None)?,
                Err(bad) => tracing::warn!(
                    "not deleting {bad}: an entry of the live commit that git refuses (the path it names may be outside ROOT)"
                ),
            }
        }
        Ok(())
    }

    /// Same entry on both sides, and so is everything below it (a gitlink
    /// is not when submodules were deployed on one side only).
    fn unchanged(&self, o: &TreeEntry, n: &TreeEntry) -> bool {
        o.id() == n.id()
            && o.filemode() == n.filemode()
            && (n.filemode() != GITLINK || self.modes.0 == self.modes.1)
    }

    fn entry(
        &mut self,
        path: &RepoPath,
        old: Option<(&TreeEntry, &Rc<Scope>)>,
        new: Option<(&TreeEntry, &Rc<Scope>)>,
    ) -> Result<()> {
        if let (Some((o, _)), Some((n, _))) = (old, new) {
            if self.unchanged(o, n) {
                return Ok(());
            }
        }
        self.note_submodule(path, old.map(|x| x.0), new.map(|x| x.0));
        let before = self.node(path, old, self.modes.0, false)?;
        let after = self.node(path, new, self.modes.1, true)?;
        match (&before, &after) {
            (Node::Dir(o), Node::Dir(n)) => self.trees(path, Some(o), Some(n))?,
            (Node::Dir(o), _) => self.trees(path, Some(o), None)?,
            (_, Node::Dir(n)) => self.trees(path, None, Some(n))?,
            _ => {}
        }
        let old_file = old.map(|x| x.0).filter(|_| matches!(before, Node::File));
        let new_file = new.map(|x| x.0).filter(|_| matches!(after, Node::File));
        let same_kind = match (old_file, new_file) {
            (Some(o), Some(n)) => (o.filemode() == SYMLINK) == (n.filemode() == SYMLINK),
            _ => false,
        };
        if old_file.is_some() && !same_kind {
            self.out.deletes.push(Change {
                path: path.clone(),
                kind: ChangeKind::Deleted,
            });
        }
        if let Some(n) = new_file {
            let (blob, mode) = (n.id(), n.filemode());
            let kind = if same_kind {
                ChangeKind::Modified { blob, mode }
            } else {
                ChangeKind::Added { blob, mode }
            };
            self.out.writes.push(Change {
                path: path.clone(),
                kind,
            });
        }
        Ok(())
    }

    /// What `e` is: a directory (a submodule's tree when submodules are
    /// deployed on this side and its commit is in the cache), a file, or
    /// nothing to write.
    fn node(
        &mut self,
        path: &RepoPath,
        e: Option<(&TreeEntry, &Rc<Scope>)>,
        submodules: bool,
        new_side: bool,
    ) -> Result<Node<'r>> {
        let Some((e, scope)) = e else {
            return Ok(Node::Skip);
        };
        if is_tree(e) {
            let tree = tree(self.repo, e)?;
            return Ok(Node::Dir(Side {
                tree,
                scope: scope.clone(),
            }));
        }
        if e.filemode() != GITLINK {
            return Ok(Node::File);
        }
        if !submodules {
            if new_side {
                tracing::warn!(
                    "submodule {} is not deployed (`source.submodules: false`)",
                    path.display()
                );
            }
            return Ok(Node::Skip);
        }
        Ok(
            match submodules::enter(self.repo, e, path, scope, &mut self.missing)? {
                Some(side) => Node::Dir(side),
                None => Node::Skip,
            },
        )
    }

    /// Records a submodule whose commit changes (deployed on either side).
    fn note_submodule(
        &mut self,
        path: &RepoPath,
        old: Option<&TreeEntry>,
        new: Option<&TreeEntry>,
    ) {
        let link = |e: Option<&TreeEntry>, on: bool| {
            e.filter(|e| on && e.filemode() == GITLINK).map(|e| e.id())
        };
        let (from, to) = (link(old, self.modes.0), link(new, self.modes.1));
        if (from.is_some() || to.is_some()) && from != to {
            self.out.submodules.push(SubmoduleChange {
                path: path.to_path_buf(),
                from,
                to,
            });
        }
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

    fn top<'a, 'r>(tree: &'a Tree<'r>) -> Top<'a, 'r> {
        Top {
            tree,
            scope: Scope::top(tree.id(), Path::new("")),
            submodules: true,
        }
    }

    fn ours(repo: &Repository, old: &Tree, new: &Tree) -> Vec<(String, String)> {
        let Changes {
            deletes: del,
            writes: wr,
            ..
        } = changes(repo, Some(top(old)), top(new)).unwrap();
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
        let Changes {
            deletes: del,
            writes: wr,
            ..
        } = changes(&repo, None, top(&new)).unwrap();
        assert!(del.is_empty());
        assert_eq!(wr.len(), 8, "{wr:?}");
    }
}
