//! What a commit holds: its tracked files (those of its submodules too)
//! and its `.gitignore` files.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{Context, Result};
use git2::{ObjectType, Oid, Tree};

use super::repo::GitSource;
use super::submodules::{self, Missing, MissingSubmodules, Side, GITLINK};
use crate::repo_path::RepoPath;

/// A `.gitignore` file of a commit: its directory (relative to the repository root) and text.
#[derive(Debug, Clone)]
pub struct IgnoreFile {
    /// Directory holding the file, relative to the repository root ("" for the top).
    pub dir: PathBuf,
    /// File contents.
    pub text: String,
}

impl GitSource {
    /// The deployed tree of `commit`: the subdir's tree, or the whole tree.
    pub(super) fn deployed_tree(&self, commit: Oid) -> Result<Option<Tree<'_>>> {
        let c = self
            .repo
            .find_commit(commit)
            .with_context(|| format!("commit {commit} is not in the cache"))?;
        let tree = c.tree().context("cannot read commit tree")?;
        if self.subdir.as_os_str().is_empty() {
            return Ok(Some(tree));
        }
        match tree.get_path(&self.subdir) {
            Ok(entry) if entry.kind() == Some(ObjectType::Tree) => Ok(Some(
                self.repo
                    .find_tree(entry.id())
                    .context("cannot read subdir tree")?,
            )),
            _ => Ok(None),
        }
    }

    /// Files (and symlinks) tracked by `commit`, relative to the deployed subdir.
    pub fn tracked(&self, commit: Oid) -> Result<HashSet<PathBuf>> {
        Ok(self.tracked_and_ignores(commit)?.0)
    }

    /// The `.gitignore` files of `commit` that apply to the deployed tree
    /// (those inside the subdir and those in its ancestors), with directories
    /// relative to the repository root.
    pub fn ignore_files(&self, commit: Oid) -> Result<Vec<IgnoreFile>> {
        Ok(self.tracked_and_ignores(commit)?.1)
    }

    /// [`GitSource::tracked`] and [`GitSource::ignore_files`] in one walk of
    /// the commit's tree.
    /// Files of submodules count as tracked (when ROOT holds them): they
    /// are fetched first when the cache lacks them.
    pub fn tracked_and_ignores(&self, commit: Oid) -> Result<(HashSet<PathBuf>, Vec<IgnoreFile>)> {
        self.with_submodules(|| self.tracked_once(commit))
    }

    fn tracked_once(&self, commit: Oid) -> Result<(HashSet<PathBuf>, Vec<IgnoreFile>)> {
        let mut tracked = HashSet::new();
        let mut ignores = Vec::new();
        let mut found = Vec::new();
        // The subdir's ancestors (the repository root included) may hold .gitignore files too.
        let c = self
            .repo
            .find_commit(commit)
            .with_context(|| format!("commit {commit} is not in the cache"))?;
        let root = c.tree().context("cannot read commit tree")?;
        for dir in self.subdir.ancestors().skip(1) {
            if let Ok(e) = root.get_path(&dir.join(".gitignore")) {
                found.push((dir.to_path_buf(), e.id()));
            }
        }
        if let Some(tree) = self.deployed_tree(commit)? {
            let mut walk = Walk {
                submodules: self.submodules_in(commit),
                tracked: &mut tracked,
                found: &mut found,
                missing: Vec::new(),
            };
            let top = Side {
                tree,
                scope: self.top_scope(commit)?,
            };
            self.walk_tracked(&top, &RepoPath::top(), &mut walk)?;
            if !walk.missing.is_empty() {
                return Err(MissingSubmodules(walk.missing).into());
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        for (dir, id) in found {
            let blob = self
                .repo
                .find_blob(id)
                .context("cannot read .gitignore blob")?;
            ignores.push(IgnoreFile {
                dir,
                text: String::from_utf8_lossy(blob.content()).into_owned(),
            });
        }
        Ok((tracked, ignores))
    }

    /// Collects the files below `side` (at `dir`) and its `.gitignore`
    /// files, going into submodules as into directories. A name git refuses
    /// is no tracked path, and nothing below it is: the checkout refuses
    /// such a commit before writing anything.
    fn walk_tracked(&self, side: &Side<'_>, dir: &RepoPath, walk: &mut Walk<'_>) -> Result<()> {
        for e in side.tree.iter() {
            let Ok(path) = dir.child(e.name_bytes(), e.filemode() == 0o120000) else {
                continue;
            };
            match e.kind() {
                Some(ObjectType::Tree) => {
                    let tree = self.repo.find_tree(e.id()).with_context(|| {
                        format!("cannot read tree {} ({})", e.id(), path.display())
                    })?;
                    let sub = Side {
                        tree,
                        scope: side.scope.clone(),
                    };
                    self.walk_tracked(&sub, &path, walk)?;
                }
                Some(ObjectType::Blob) => {
                    if e.name_bytes() == b".gitignore" {
                        walk.found.push((self.subdir.join(dir.as_path()), e.id()));
                    }
                    walk.tracked.insert(path.to_path_buf());
                }
                _ if e.filemode() == GITLINK && walk.submodules => {
                    if let Some(sub) =
                        submodules::enter(&self.repo, &e, &path, &side.scope, &mut walk.missing)?
                    {
                        self.walk_tracked(&sub, &path, walk)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// What a walk of a commit's files collects.
struct Walk<'a> {
    /// Submodules are in ROOT for this commit.
    submodules: bool,
    tracked: &'a mut HashSet<PathBuf>,
    /// `.gitignore` files: directory (relative to the repository root) and blob.
    found: &'a mut Vec<(PathBuf, Oid)>,
    missing: Vec<Missing>,
}
