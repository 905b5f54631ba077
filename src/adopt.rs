//! Adopting an existing site that is a `git clone` in ROOT.
//!
//! The usual starting point is a docroot someone `git pull`s into. Its
//! `.git` directory is web-reachable (the whole source history, and often
//! credentials in `.git/config`) unless nginx denies dot-files, and a deploy
//! would treat it as user content and copy it into every snapshot. The first
//! deploy rootswap makes of such a site moves `ROOT/.git` into the state
//! directory (`<state>/adopted.git`, where it stays for reference; rootswap
//! never reads it) before the first snapshot, and says so. It also lists the
//! files the repository does not track (a `phpinfo.php` left by hand, the
//! uploads): rootswap keeps them as user content, and the operator should
//! know what that is. `--dry-run` shows both without changing anything.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::Config;
use crate::layout::Layout;

/// At most this many untracked entries are named in the deploy's log
/// (`--dry-run` names all of them).
const LOG_LIMIT: usize = 30;

/// What adopting ROOT did (or, in a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct Adopted {
    /// `ROOT/.git` and where it went (or would go).
    pub git_dir: Option<(PathBuf, PathBuf)>,
    /// Untracked entries kept as user content, relative to ROOT: files, or
    /// directories holding nothing the repository tracks (with their file count).
    pub untracked: Vec<(PathBuf, Option<usize>)>,
    /// Nothing was changed (`--dry-run`).
    pub dry_run: bool,
}

impl Adopted {
    /// True when there is nothing to say.
    pub fn is_empty(&self) -> bool {
        self.git_dir.is_none() && self.untracked.is_empty()
    }

    /// Lines for people: what happened to `.git`, then the untracked entries
    /// (at most `limit` of them named).
    pub fn lines(&self, limit: Option<usize>) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((from, to)) = &self.git_dir {
            out.push(format!(
                "{} {} out of the served tree to {} (a web-reachable .git exposes the whole source history); rootswap deploys from its own cache",
                if self.dry_run { "would move" } else { "moved" },
                from.display(),
                to.display()
            ));
        }
        if !self.untracked.is_empty() {
            out.push(format!(
                "{} {} entr{} in ROOT that the repository does not track, kept as user content (remove what should not be served):",
                if self.dry_run { "would keep" } else { "keeping" },
                self.untracked.len(),
                if self.untracked.len() == 1 { "y" } else { "ies" }
            ));
            let shown = limit.unwrap_or(usize::MAX);
            for (p, n) in self.untracked.iter().take(shown) {
                out.push(match n {
                    Some(n) => format!("  {}/ ({n} files)", p.display()),
                    None => format!("  {}", p.display()),
                });
            }
            if self.untracked.len() > shown {
                out.push(format!(
                    "  ... and {} more (rootswap deploy --dry-run lists them all)",
                    self.untracked.len() - shown
                ));
            }
        }
        out
    }

    /// The lines a deploy logs.
    pub fn log_lines(&self) -> Vec<String> {
        self.lines(Some(LOG_LIMIT))
    }
}

/// What the deploy calls before its first snapshot: on the first deploy
/// rootswap makes of a site (`first`), adopts ROOT; on any later deploy, a
/// `ROOT/.git` that appeared since (a `git clone` over the site) is still
/// moved out of the served tree, without the list of untracked entries.
/// Returns the lines to log.
pub fn before_snapshot(
    layout: &Layout,
    cfg: &Config,
    tracked: &HashSet<PathBuf>,
    first: bool,
) -> Result<Vec<String>> {
    if !first && std::fs::symlink_metadata(layout.root().join(".git")).is_err() {
        return Ok(Vec::new());
    }
    let mut adopted = adopt_git_clone(layout, cfg, tracked, false)?;
    if !first {
        adopted.untracked.clear();
    }
    Ok(adopted.log_lines())
}

/// Where `ROOT/.git` goes: `<state>/adopted.git`, or `adopted-N.git` when taken.
fn destination(state: &Path) -> PathBuf {
    let first = state.join("adopted.git");
    if std::fs::symlink_metadata(&first).is_err() {
        return first;
    }
    (2..)
        .map(|n| state.join(format!("adopted-{n}.git")))
        .find(|p| std::fs::symlink_metadata(p).is_err())
        .unwrap_or(first)
}

/// Adopts ROOT when it is a Git clone: moves `ROOT/.git` into the state
/// directory (unless `dry_run`) and lists the entries `tracked` (the paths the
/// commit to deploy tracks, relative to ROOT) does not cover. Shared
/// directories are left out of the list: they have their own lines.
pub fn adopt_git_clone(
    layout: &Layout,
    cfg: &Config,
    tracked: &HashSet<PathBuf>,
    dry_run: bool,
) -> Result<Adopted> {
    let root = layout.root();
    let mut out = Adopted {
        dry_run,
        ..Default::default()
    };
    if !root.is_dir() {
        return Ok(out);
    }
    let dot_git = root.join(".git");
    if std::fs::symlink_metadata(&dot_git).is_ok() {
        let to = destination(&layout.state);
        if !dry_run {
            crate::fsutil::ensure_private_dir(&layout.state)?;
            std::fs::rename(&dot_git, &to).with_context(|| {
                format!(
                    "cannot move {} to {} (the state dir must be on ROOT's filesystem for this); \
                     move it out of ROOT yourself (mv {} /somewhere/safe) and deploy again",
                    dot_git.display(),
                    to.display(),
                    dot_git.display()
                )
            })?;
        }
        out.git_dir = Some((dot_git, to));
    }
    out.untracked = untracked(&root, cfg, tracked);
    Ok(out)
}

/// Entries of `root` not tracked: a file next to tracked ones by name, a
/// directory holding nothing tracked as one entry with its file count.
fn untracked(
    root: &Path,
    cfg: &Config,
    tracked: &HashSet<PathBuf>,
) -> Vec<(PathBuf, Option<usize>)> {
    let mut tracked_dirs: HashSet<&Path> = HashSet::new();
    for t in tracked {
        for a in t.ancestors().skip(1) {
            tracked_dirs.insert(a);
        }
    }
    let shared: Vec<PathBuf> = cfg
        .user_content
        .shared
        .iter()
        .map(|s| PathBuf::from(s.trim_end_matches('/')))
        .collect();
    let mut out = Vec::new();
    let mut it = walkdir::WalkDir::new(root)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter();
    while let Some(Ok(e)) = it.next() {
        let Ok(rel) = e.path().strip_prefix(root) else {
            continue;
        };
        let rel = rel.to_path_buf();
        if rel == Path::new(".git") || shared.iter().any(|s| rel.starts_with(s)) {
            if e.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        if e.file_type().is_dir() {
            if !tracked_dirs.contains(rel.as_path()) {
                let n = walkdir::WalkDir::new(e.path())
                    .into_iter()
                    .filter_map(|x| x.ok())
                    .filter(|x| !x.file_type().is_dir())
                    .count();
                out.push((rel, Some(n)));
                it.skip_current_dir();
            }
        } else if !tracked.contains(&rel) {
            out.push((rel, None));
        }
    }
    out
}
