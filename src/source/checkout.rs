//! Applying a plan to ROOT: changed files written to a temporary name and
//! renamed over the old one, deleted files removed, no `.git` ever written.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::Oid;

use super::diff::ChangeKind;
use super::plan::Plan;
use super::repo::GitSource;
use crate::repo_path::RepoPath;

/// Makes every directory above `path` (below `root`) a real directory,
/// replacing any file or symlink in the way, so that writing `path` never
/// follows a link out of ROOT. `known`: directories already made so.
pub(super) fn ensure_dir(root: &Path, path: &RepoPath, known: &mut HashSet<PathBuf>) -> Result<()> {
    for cur in path.parents_under(root).into_iter().rev() {
        if known.contains(&cur) {
            continue;
        }
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                std::fs::remove_file(&cur).with_context(|| {
                    format!("cannot replace {} with a directory", cur.display())
                })?;
                std::fs::create_dir(&cur)
                    .with_context(|| format!("cannot create {}", cur.display()))?;
            }
            Err(_) => std::fs::create_dir(&cur)
                .with_context(|| format!("cannot create {}", cur.display()))?,
        }
        known.insert(cur);
    }
    Ok(())
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

impl GitSource {
    /// Applies `plan` to `root`. Restartable: applying it twice gives the same tree.
    pub fn checkout(
        &self,
        plan: &Plan,
        root: &Path,
        mut progress: impl FnMut(&Path),
    ) -> Result<()> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        // Directories below ROOT known to be real directories (not symlinks)
        // during this checkout: each is checked once.
        let mut real_dirs = HashSet::new();
        for ch in &plan.changes {
            let dst = ch.path.under(root);
            progress(&ch.path);
            crate::crashpoint::hit("checkout-entry");
            match ch.kind {
                ChangeKind::Deleted => {
                    if !parents_are_dirs(root, &ch.path) {
                        continue; // a symlink or file took a parent's place: not ours to follow
                    }
                    match std::fs::symlink_metadata(&dst) {
                        Ok(m) if m.is_dir() => {} // a user directory took its place: leave it
                        Ok(_) => std::fs::remove_file(&dst)
                            .with_context(|| format!("cannot remove {}", dst.display()))?,
                        Err(_) => continue,
                    }
                    prune_empty_parents(root, &ch.path);
                }
                ChangeKind::Added { blob, mode } | ChangeKind::Modified { blob, mode } => {
                    ensure_dir(root, &ch.path, &mut real_dirs)?;
                    self.write_entry(root, &ch.path, blob, mode)?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn write_entry(
        &self,
        root: &Path,
        rel: &RepoPath,
        blob: Oid,
        mode: i32,
    ) -> Result<()> {
        let dst = rel.under(root);
        let parent = dst.parent().unwrap_or(root);
        let name = dst
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".rootswap-tmp-{name}"));
        let _ = std::fs::remove_file(&tmp);
        let content = self
            .repo
            .find_blob(blob)
            .with_context(|| format!("cannot read blob for {}", rel.display()))?;
        if mode == 0o120000 {
            let target = PathBuf::from(String::from_utf8_lossy(content.content()).into_owned());
            std::os::unix::fs::symlink(&target, &tmp)
                .with_context(|| format!("cannot create symlink {}", tmp.display()))?;
        } else {
            use std::os::unix::fs::OpenOptionsExt;
            let perm = if mode == 0o100755 { 0o755 } else { 0o644 };
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(perm)
                .open(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            f.write_all(content.content())
                .with_context(|| format!("cannot write {}", tmp.display()))?;
        }
        if let Ok(m) = std::fs::symlink_metadata(&dst) {
            if m.is_dir() {
                // The commit now has a file where a directory was: the commit wins.
                std::fs::remove_dir_all(&dst)
                    .with_context(|| format!("cannot replace directory {}", dst.display()))?;
            }
        }
        std::fs::rename(&tmp, &dst)
            .with_context(|| format!("cannot rename {} over {}", tmp.display(), dst.display()))?;
        Ok(())
    }
}
