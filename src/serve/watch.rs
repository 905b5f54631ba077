//! File watches (notify): the refs of a local repository, so that a commit
//! deploys within a second instead of at the next tick; and the config file,
//! so that an edit reloads it.
//!
//! Watch failures are logged and leave the service running on its schedule.

use std::path::{Path, PathBuf};

use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Watches the refs of `repo` when it is a local repository (None otherwise).
pub fn repo(repo: &str, tx: mpsc::Sender<()>) -> Option<RecommendedWatcher> {
    // Only plain paths: a `file://` URL is treated like any remote (polled).
    let path = repo;
    if !crate::source::is_local_path(path) || !Path::new(path).is_dir() {
        return None;
    }
    match watch_refs(Path::new(path), tx) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("cannot watch the refs of {path} ({e:#}); new commits are picked up at the next auto-deploy tick");
            None
        }
    }
}

fn watch_refs(path: &Path, tx: mpsc::Sender<()>) -> anyhow::Result<RecommendedWatcher> {
    let repo = git2::Repository::open(path)?;
    // Branch refs live in the common dir (the same as the git dir, except for linked work trees).
    let gitdir = repo.commondir().to_path_buf();
    let refs = gitdir.join("refs");
    let base = gitdir.clone();
    let mut w = notify::recommended_watcher(move |res: notify::Result<Event>| {
        if let Ok(ev) = res {
            if is_ref_change(&ev, &base) {
                let _ = tx.try_send(());
            }
        }
    })?;
    w.watch(&gitdir, RecursiveMode::NonRecursive)?;
    w.watch(&refs, RecursiveMode::Recursive)?;
    Ok(w)
}

fn is_ref_change(ev: &Event, gitdir: &Path) -> bool {
    if matches!(ev.kind, EventKind::Access(_)) {
        return false;
    }
    ev.paths.iter().any(|p| match p.strip_prefix(gitdir) {
        Ok(rel) => rel.starts_with("refs/heads") || rel == Path::new("packed-refs"),
        Err(_) => false,
    })
}

/// Watches the config file (through its directory: editors replace files by renaming).
pub fn config_file(path: &Path, tx: mpsc::Sender<()>) -> Option<RecommendedWatcher> {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = abs.file_name()?.to_os_string();
    let result = (|| -> notify::Result<RecommendedWatcher> {
        let mut w = notify::recommended_watcher(move |res: notify::Result<Event>| {
            if let Ok(ev) = res {
                let relevant = !matches!(ev.kind, EventKind::Access(_))
                    && ev
                        .paths
                        .iter()
                        .any(|p| p.file_name() == Some(name.as_os_str()));
                if relevant {
                    let _ = tx.try_send(());
                }
            }
        })?;
        w.watch(&dir, RecursiveMode::NonRecursive)?;
        Ok(w)
    })();
    match result {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                "cannot watch {} for changes ({e}); reload it with SIGHUP",
                abs.display()
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, EventKind};

    #[test]
    fn only_branch_refs_count() {
        let g = Path::new("/r/.git");
        let ev =
            |p: &str| Event::new(EventKind::Create(CreateKind::File)).add_path(PathBuf::from(p));
        assert!(is_ref_change(&ev("/r/.git/refs/heads/main"), g));
        assert!(is_ref_change(&ev("/r/.git/refs/heads/main.lock"), g));
        assert!(is_ref_change(&ev("/r/.git/packed-refs"), g));
        assert!(!is_ref_change(&ev("/r/.git/objects/ab/cdef"), g));
        assert!(!is_ref_change(&ev("/r/.git/index.lock"), g));
    }
}
