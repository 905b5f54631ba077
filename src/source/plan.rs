//! What differs between the live commit and the new one ([`Plan`]), and
//! the trees refused before anything is written ([`RefusedTree`]).

use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use git2::Oid;

use super::diff::Top;
use super::diff::{self, Change, ChangeKind};
use super::repo::{short, GitSource};
use super::submodules::{MissingSubmodules, SubmoduleChange};
use crate::config::ExternalSymlinks;
use crate::repo_path::BadName;

/// A symlink of a commit whose target leaves the deployed tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalLink {
    /// Where the link is, relative to ROOT.
    pub path: PathBuf,
    /// What it points at, as Git has it.
    pub target: PathBuf,
}

impl std::fmt::Display for ExternalLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "symlink {} -> {} points outside the deployed tree; deployed as Git has it (`source.external_symlinks: refuse` refuses such commits)",
            self.path.display(),
            self.target.display()
        )
    }
}

/// What a checkout will do: the changes from one commit to another.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Commit live now (None: first deploy or adopted site).
    pub from: Option<Oid>,
    /// Commit to deploy.
    pub to: Oid,
    /// Deletions first, then additions and modifications.
    pub changes: Vec<Change>,
    /// Symlinks this plan writes whose target leaves the deployed tree
    /// (allowed by `source.external_symlinks`; each is worth one warning).
    pub external_links: Vec<ExternalLink>,
    /// Submodules whose commit changes (their files are in `changes`).
    pub submodules: Vec<SubmoduleChange>,
}

impl Plan {
    /// Counts of (added, modified, deleted).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for ch in &self.changes {
            match ch.kind {
                ChangeKind::Added { .. } => c.0 += 1,
                ChangeKind::Modified { .. } => c.1 += 1,
                ChangeKind::Deleted => c.2 += 1,
            }
        }
        c
    }
}

/// A commit refused because its tree has an entry git refuses (checked
/// before anything is written; [`crate::repo_path`]).
#[derive(Debug)]
pub struct RefusedTree {
    /// Short id of the commit.
    pub commit: String,
    /// The entry and why.
    pub bad: BadName,
}

impl std::fmt::Display for RefusedTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "commit {} has a tree entry git refuses: {}; fix the commit (git would refuse to check it out)",
            self.commit, self.bad
        )
    }
}

impl std::error::Error for RefusedTree {}

/// The error for a commit whose tree has an entry git refuses (a
/// [`BadName`] from the walk): a [`RefusedTree`] naming the entry and the
/// commit; other errors of the walk as they are.
pub(super) fn refused_entry(e: anyhow::Error, commit: Oid) -> anyhow::Error {
    if e.is::<MissingSubmodules>() {
        return e;
    }
    match e.downcast::<BadName>() {
        Ok(bad) => anyhow::Error::new(RefusedTree {
            commit: short(commit),
            bad,
        }),
        Err(e) => e.context("cannot compare commits"),
    }
}

/// True when a symlink at `link` (relative to ROOT) with `target` resolves inside ROOT.
pub fn link_stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = link.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

impl GitSource {
    /// Lists the changes from `from` (None: nothing deployed) to `to`,
    /// fetching the submodule commits the walk needs.
    pub fn plan(&self, from: Option<Oid>, to: Oid) -> Result<Plan> {
        self.with_submodules(|| self.plan_once(from, to))
    }

    fn plan_once(&self, from: Option<Oid>, to: Oid) -> Result<Plan> {
        let new_tree = self.deployed_tree(to)?.ok_or_else(|| {
            anyhow!(
                "`source.subdir: {}` does not exist in commit {}; fix the subdir or the branch",
                self.subdir.display(),
                short(to)
            )
        })?;
        let old_tree = match from {
            Some(f) if self.repo.find_commit(f).is_ok() => self.deployed_tree(f)?,
            _ => None,
        };
        let old = match (from, old_tree.as_ref()) {
            (Some(f), Some(tree)) => Some(Top {
                tree,
                scope: self.top_scope(f)?,
                submodules: self.submodules_in(f),
            }),
            _ => None,
        };
        let new = Top {
            tree: &new_tree,
            scope: self.top_scope(to)?,
            submodules: self.submodules,
        };
        let found = diff::changes(&self.repo, old, new).map_err(|e| refused_entry(e, to))?;
        let mut changes = found.deletes;
        changes.extend(found.writes);
        let mut plan = Plan {
            from,
            to,
            changes,
            external_links: Vec::new(),
            submodules: found.submodules,
        };
        plan.external_links = self.external_links(&plan)?;
        Ok(plan)
    }

    /// The symlinks `plan` writes that point outside ROOT; with
    /// `source.external_symlinks: refuse`, an error naming the first one
    /// (checked before anything is written).
    pub(super) fn external_links(&self, plan: &Plan) -> Result<Vec<ExternalLink>> {
        let mut out = Vec::new();
        for ch in &plan.changes {
            let (ChangeKind::Added { blob, mode } | ChangeKind::Modified { blob, mode }) = ch.kind
            else {
                continue;
            };
            if mode != 0o120000 {
                continue;
            }
            let target = self
                .repo
                .find_blob(blob)
                .context("cannot read symlink blob")?;
            let target = PathBuf::from(String::from_utf8_lossy(target.content()).into_owned());
            if link_stays_inside(&ch.path, &target) {
                continue;
            }
            if self.external == ExternalSymlinks::Refuse {
                bail!(
                    "commit {} has a symlink {} -> {} that points outside the deployed tree, and `source.external_symlinks: refuse` is set; \
                     make the link relative and inside the repository, or set `source.external_symlinks: allow` to deploy it as Git has it",
                    short(plan.to),
                    ch.path.display(),
                    target.display()
                );
            }
            out.push(ExternalLink {
                path: ch.path.to_path_buf(),
                target,
            });
        }
        Ok(out)
    }
}
