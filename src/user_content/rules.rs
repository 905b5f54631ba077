//! Which files are user content: the rules compiled from the configuration
//! and the classifier of one commit.
//!
//! A path in the served tree is *user content* when the previously deployed
//! commit does not track it, the repository's `.gitignore` files do not
//! ignore it (full gitignore semantics, through the `ignore` crate), or a
//! `preserve` glob matches it — and no `exclude` glob matches it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::config::UserContentConfig;
use crate::source::IgnoreFile;

/// The `preserve` and `exclude` globs, compiled.
#[derive(Debug, Clone)]
pub struct Rules {
    gitignore: bool,
    preserve: GlobSet,
    /// Literal directory prefixes of the preserve globs; `None` when one has no prefix.
    preserve_prefixes: Option<Vec<PathBuf>>,
    exclude: GlobSet,
}

fn compile(kind: &str, patterns: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g: Glob = GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map_err(|e| anyhow!("{kind} pattern '{p}' is not a valid glob: {}", e.kind()))?;
        b.add(g);
    }
    b.build()
        .map_err(|e| anyhow!("{kind} patterns cannot be compiled: {e}"))
}

/// The part of a glob before its first wildcard, cut back to a whole directory.
pub(super) fn literal_dir_prefix(glob: &str) -> PathBuf {
    let end = glob.find(['*', '?', '[', '{', '\\']).unwrap_or(glob.len());
    let lit = &glob[..end];
    match lit.rfind('/') {
        Some(i) => PathBuf::from(&lit[..i]),
        None => PathBuf::new(),
    }
}

impl Rules {
    /// Compiles the configured globs; an invalid one is named in the error.
    pub fn new(cfg: &UserContentConfig) -> Result<Rules> {
        let prefixes: Vec<PathBuf> = cfg.preserve.iter().map(|g| literal_dir_prefix(g)).collect();
        Ok(Rules {
            gitignore: cfg.gitignore,
            preserve: compile("preserve", &cfg.preserve)?,
            preserve_prefixes: if prefixes.iter().any(|p| p.as_os_str().is_empty()) {
                None
            } else {
                Some(prefixes)
            },
            exclude: compile("exclude", &cfg.exclude)?,
        })
    }

    /// Could a preserve glob match something below directory `dir`?
    pub(super) fn preserve_may_match_below(&self, dir: &Path) -> bool {
        if self.preserve.is_empty() {
            return false;
        }
        match &self.preserve_prefixes {
            None => true,
            Some(prefixes) => prefixes
                .iter()
                .any(|p| p.starts_with(dir) || dir.starts_with(p)),
        }
    }
}

/// Decides, path by path, what is user content for one deployed commit.
pub struct Classifier {
    pub(super) rules: Rules,
    tracked: HashSet<PathBuf>,
    /// Deepest directory first: (ROOT-relative directory depth key, matcher).
    ignores: Vec<Gitignore>,
    /// Virtual prefix under which ROOT-relative paths are matched.
    base: PathBuf,
}

impl Classifier {
    /// Builds a classifier from the rules, the files the commit tracks and its
    /// `.gitignore` files (directories relative to the repository root;
    /// `subdir` is where ROOT sits in the repository).
    pub fn new(
        rules: Rules,
        tracked: HashSet<PathBuf>,
        ignore_files: &[IgnoreFile],
        subdir: &Path,
    ) -> Classifier {
        let repo = PathBuf::from("/rootswap-repo");
        let mut ignores: Vec<(usize, Gitignore)> = Vec::new();
        if rules.gitignore {
            for f in ignore_files {
                let dir = repo.join(&f.dir);
                let mut b = GitignoreBuilder::new(&dir);
                for line in f.text.lines() {
                    if let Err(e) = b.add_line(None, line) {
                        tracing::warn!(
                            "ignoring .gitignore line '{line}' in {}: {e}",
                            f.dir.join(".gitignore").display()
                        );
                    }
                }
                match b.build() {
                    Ok(g) => ignores.push((f.dir.components().count(), g)),
                    Err(e) => {
                        tracing::warn!("cannot use {}: {e}", f.dir.join(".gitignore").display())
                    }
                }
            }
        }
        ignores.sort_by_key(|g| std::cmp::Reverse(g.0));
        Classifier {
            rules,
            tracked,
            ignores: ignores.into_iter().map(|(_, g)| g).collect(),
            base: repo.join(subdir),
        }
    }

    /// Is `rel` (relative to ROOT) ignored by the .gitignore files (this entry only, not its parents)?
    pub(super) fn ignored_here(&self, rel: &Path, is_dir: bool) -> bool {
        let full = self.base.join(rel);
        for g in &self.ignores {
            if !full.starts_with(g.path()) {
                continue;
            }
            let m = g.matched(&full, is_dir);
            if m.is_ignore() {
                return true;
            }
            if m.is_whitelist() {
                return false;
            }
        }
        false
    }

    /// Is directory `dir` (or one of its parents) ignored?
    pub(super) fn dir_ignored(&self, dir: &Path) -> bool {
        dir.ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .any(|a| self.ignored_here(a, true))
    }

    /// The files the commit tracks (relative to ROOT).
    pub fn tracked(&self) -> &HashSet<PathBuf> {
        &self.tracked
    }

    /// True when the file `rel` is user content (given whether a parent directory is ignored).
    pub fn is_user_file(&self, rel: &Path, parent_ignored: bool) -> bool {
        if self.tracked.contains(rel) || is_own_temp(rel) {
            return false;
        }
        let ignored = parent_ignored || self.ignored_here(rel, false);
        let wanted = !ignored || self.rules.preserve.is_match(rel);
        wanted && !self.rules.exclude.is_match(rel)
    }
}

pub(super) fn is_own_temp(rel: &Path) -> bool {
    rel.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(".rootswap-tmp-"))
}

/// The user-content classifier of `commit`: its tracked files and
/// `.gitignore` files, with the configured rules. Built once per deploy.
pub fn classifier(
    rules: &Rules,
    source: &crate::source::GitSource,
    commit: git2::Oid,
) -> Result<Classifier> {
    let (tracked, ignores) = source.tracked_and_ignores(commit)?;
    Ok(Classifier::new(
        rules.clone(),
        tracked,
        &ignores,
        source.subdir(),
    ))
}
