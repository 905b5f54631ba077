//! What a commit holds: its tracked files and its `.gitignore` files.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{Context, Result};
use git2::{ObjectType, Oid, Tree};

use super::repo::GitSource;
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
    pub fn tracked_and_ignores(&self, commit: Oid) -> Result<(HashSet<PathBuf>, Vec<IgnoreFile>)> {
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
            self.walk_tracked(&tree, &RepoPath::top(), &mut tracked, &mut found)?;
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

    /// Collects the files below `tree` (at `dir`) and its `.gitignore`
    /// files. A name git refuses is no tracked path, and nothing below it
    /// is: the checkout refuses such a commit before writing anything.
    pub(super) fn walk_tracked(
        &self,
        tree: &Tree<'_>,
        dir: &RepoPath,
        tracked: &mut HashSet<PathBuf>,
        found: &mut Vec<(PathBuf, Oid)>,
    ) -> Result<()> {
        for e in tree.iter() {
            let Ok(path) = dir.child(e.name_bytes(), e.filemode() == 0o120000) else {
                continue;
            };
            match e.kind() {
                Some(ObjectType::Tree) => {
                    let sub = self.repo.find_tree(e.id()).with_context(|| {
                        format!("cannot read tree {} ({})", e.id(), path.display())
                    })?;
                    self.walk_tracked(&sub, &path, tracked, found)?;
                }
                Some(ObjectType::Blob) => {
                    if e.name_bytes() == b".gitignore" {
                        found.push((self.subdir.join(dir.as_path()), e.id()));
                    }
                    tracked.insert(path.to_path_buf());
                }
                _ => {}
            }
        }
        Ok(())
    }
}
