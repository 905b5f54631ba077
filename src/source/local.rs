//! A `source.repo` on this machine, read in place: its object directory is
//! an alternate object database of the cache (`objects/info/alternates`,
//! as `git clone --shared` does), so nothing is copied.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use git2::Repository;

/// True when the repository is given as a local path rather than a URL.
pub fn is_local_path(repo: &str) -> bool {
    !(repo.contains("://") || (repo.contains('@') && repo.contains(':')))
}

/// The directory of a repository on this machine: a path, or a `file://` URL.
pub(super) fn local_path(url: &str) -> Option<PathBuf> {
    match url.strip_prefix("file://") {
        Some(p) => Some(PathBuf::from(p)),
        None => is_local_path(url).then(|| PathBuf::from(url)),
    }
}

/// The names of `repo`'s references that match `glob`.
pub(super) fn names(repo: &Repository, glob: &str) -> Vec<String> {
    let Ok(refs) = repo.references_glob(glob) else {
        return Vec::new();
    };
    refs.flatten()
        .filter_map(|r| r.name().map(str::to_string))
        .collect()
}

/// Opens the repository `source.repo` names on this machine.
pub(super) fn open_local(path: &Path) -> Result<Repository> {
    Repository::open(path).map_err(|e| {
        anyhow!(
            "source.repo {} is not a Git repository ({}); set `source.repo` to a repository's directory or a URL",
            path.display(),
            e.message()
        )
    })
}

/// The object directory of the repository at `path` (its common directory
/// for a linked worktree).
pub(super) fn objects_dir(path: &Path) -> Result<PathBuf> {
    let local = open_local(path)?;
    Ok(local.commondir().join("objects"))
}

/// Makes the cache read the objects of `local` in place (`Some`), or stops
/// (`None`). Stopping also drops the refs that may name objects only that
/// repository had, so the next fetch starts afresh instead of failing on
/// objects it believes it has.
pub(super) fn set_alternate(cache: &Path, local: Option<&Path>) -> Result<()> {
    let file = cache.join("objects/info/alternates");
    let want = local.map(|p| format!("{}\n", p.display()));
    let have = std::fs::read_to_string(&file).ok();
    if have == want {
        return Ok(());
    }
    match want {
        Some(line) => {
            std::fs::create_dir_all(cache.join("objects/info"))
                .and_then(|_| std::fs::write(&file, line))
                .with_context(|| format!("cannot write {}", file.display()))?;
        }
        None => {
            std::fs::remove_file(&file)
                .with_context(|| format!("cannot remove {}", file.display()))?;
            let repo = Repository::open_bare(cache)
                .with_context(|| format!("cannot open the cache repository {}", cache.display()))?;
            for name in names(&repo, "refs/remotes/*")
                .into_iter()
                .chain(names(&repo, "refs/tags/*"))
            {
                if let Ok(mut r) = repo.find_reference(&name) {
                    let _ = r.delete();
                }
            }
            tracing::info!(
                "source.repo is no longer a local repository: the cache stops reading {} in place",
                have.unwrap_or_default().trim()
            );
        }
    }
    Ok(())
}
