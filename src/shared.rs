//! Step 4, for shared directories: user content that lives outside the trees.
//!
//! `user_content.shared: [storage/app, wp-content/uploads]` keeps each listed
//! directory once, under `user_content.shared_dir` (default `webroot/shared`),
//! and puts a relative symlink at its place in ROOT. A snapshot copies that
//! symlink as a symlink, so the tree served during a deploy and ROOT after it
//! write into the same directory: nothing there is copied back, and no upload
//! can fall between two copy-back passes. (Deployer calls these `shared_dirs`,
//! Capistrano `linked_dirs`.)
//!
//! [`Shared::link_into`] runs after every checkout, while ROOT is not served:
//! - ROOT/P is already the symlink: nothing to do;
//! - ROOT/P is missing: the shared directory is created (owned like ROOT) and linked;
//! - ROOT/P is a real directory (files the commit tracks there, or a site that
//!   had the directory before it was listed): its entries move into the shared
//!   directory where that lacks them (what is there already wins: it is the
//!   live data), then the directory is replaced by the symlink.
//!
//! Once a directory is linked the checkout leaves paths below it alone
//! ([`Shared::linked_in`]): the shared directory belongs to the site, not to Git.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::config::{normalize, Config};

/// The shared directories of one configuration.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Absolute directory that holds them (`shared_dir` resolved).
    dir: PathBuf,
    /// Directories, relative to ROOT.
    paths: Vec<PathBuf>,
    /// `shared_dir` relative to webroot, when it lies inside the webroot (the
    /// links are then relative, valid from ROOT and every snapshot alike).
    in_webroot: Option<PathBuf>,
}

impl Shared {
    /// Reads and checks `user_content.shared` and `shared_dir`.
    pub fn from_config(cfg: &Config) -> Result<Shared> {
        let uc = &cfg.user_content;
        let mut paths: Vec<PathBuf> = Vec::new();
        for p in &uc.shared {
            let path = Path::new(p.trim_end_matches('/'));
            let plain = !path.as_os_str().is_empty()
                && path.components().all(|c| matches!(c, Component::Normal(_)));
            if !plain {
                bail!(
                    "`shared: {p}` must be a directory inside ROOT, written relative and without '.' or '..' (e.g. storage/app or wp-content/uploads)"
                );
            }
            if let Some(other) = paths
                .iter()
                .find(|o| o.starts_with(path) || path.starts_with(o))
            {
                bail!(
                    "`shared` lists both {} and {}; one is inside the other: keep only the outer one",
                    other.display(),
                    path.display()
                );
            }
            paths.push(path.to_path_buf());
        }
        let dir = if uc.shared_dir.is_absolute() {
            normalize(&uc.shared_dir)
        } else {
            normalize(&cfg.webroot.join(&uc.shared_dir))
        };
        crate::config::check_shared_dir(cfg)?;
        let webroot = normalize(&cfg.webroot);
        let in_webroot = dir.strip_prefix(&webroot).ok().map(Path::to_path_buf);
        Ok(Shared {
            dir,
            paths,
            in_webroot,
        })
    }

    /// True when no directory is shared.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The directories, relative to ROOT.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Where shared directory `rel` lives.
    pub fn store(&self, rel: &Path) -> PathBuf {
        self.dir.join(rel)
    }

    /// The symlink target for `rel`: relative when the shared directory is in
    /// the webroot (so it resolves the same from ROOT and every snapshot).
    pub fn target(&self, rel: &Path) -> PathBuf {
        match &self.in_webroot {
            Some(inside) => {
                let mut t = PathBuf::new();
                for _ in rel.components() {
                    t.push("..");
                }
                t.join(inside).join(rel)
            }
            None => self.dir.join(rel),
        }
    }

    /// The shared directories that are already symlinks in `root`.
    pub fn linked_in(&self, root: &Path) -> Vec<PathBuf> {
        self.paths
            .iter()
            .filter(|p| {
                std::fs::symlink_metadata(root.join(p)).is_ok_and(|m| m.file_type().is_symlink())
            })
            .cloned()
            .collect()
    }

    /// Checks, before anything changes, that every shared directory can be
    /// linked in `root` for a commit tracking `tracked`.
    pub fn check(&self, root: &Path, tracked: &HashSet<PathBuf>) -> Result<()> {
        for p in &self.paths {
            for a in p.ancestors().filter(|a| !a.as_os_str().is_empty()) {
                if tracked.contains(a) {
                    bail!(
                        "`user_content.shared: {}`: the commit tracks {} as a file, not a directory; \
                         remove it from the repository or from `shared`",
                        p.display(),
                        a.display()
                    );
                }
            }
            let at = root.join(p);
            if let Ok(m) = std::fs::symlink_metadata(&at) {
                if !m.is_dir() && !m.file_type().is_symlink() {
                    bail!(
                        "`user_content.shared: {}`: {} is a file; shared entries are directories. Move the file away or remove it from `shared`",
                        p.display(),
                        at.display()
                    );
                }
            }
            let store = self.store(p);
            if let Ok(m) = std::fs::symlink_metadata(&store) {
                if !m.is_dir() {
                    bail!(
                        "`user_content.shared: {}`: {} exists and is not a directory; move it away",
                        p.display(),
                        store.display()
                    );
                }
            }
        }
        Ok(())
    }

    /// Puts the symlink of every shared directory in place in `root` (see
    /// the module documentation). Returns what it did, for the log.
    pub fn link_into(&self, root: &Path) -> Result<Vec<String>> {
        let mut done = Vec::new();
        for p in &self.paths {
            let at = root.join(p);
            let store = self.store(p);
            let want = self.target(p);
            let meta = match std::fs::symlink_metadata(&at) {
                Ok(m) => Some(m),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot inspect {}", at.display()))
                }
            };
            match meta {
                Some(m) if m.file_type().is_symlink() => {
                    if std::fs::read_link(&at).ok().as_deref() == Some(want.as_path()) {
                        create_store(&store, root)?;
                        continue;
                    }
                    create_store(&store, root)?;
                    place_link(&at, &want)?;
                    done.push(format!(
                        "{}: link repointed to {}",
                        p.display(),
                        store.display()
                    ));
                }
                Some(m) if m.is_dir() => {
                    let moved = move_into(&at, &store)?;
                    crate::crashpoint::hit("shared-link");
                    place_link(&at, &want)?;
                    done.push(format!(
                        "{}: {moved} entries moved to {}, linked",
                        p.display(),
                        store.display()
                    ));
                }
                Some(_) => bail!(
                    "`user_content.shared: {}`: {} is a file; shared entries are directories",
                    p.display(),
                    at.display()
                ),
                None => {
                    create_store(&store, root)?;
                    if let Some(parent) = at.parent() {
                        std::fs::create_dir_all(parent)
                            .with_context(|| format!("cannot create {}", parent.display()))?;
                    }
                    place_link(&at, &want)?;
                    done.push(format!("{}: linked to {}", p.display(), store.display()));
                }
            }
        }
        Ok(done)
    }
}

/// True when `rel` is one of `linked` or below one of them.
pub fn covers(linked: &[PathBuf], rel: &Path) -> bool {
    linked.iter().any(|l| rel.starts_with(l))
}

/// Creates the shared directory `store` if missing, owned like `root`.
fn create_store(store: &Path, root: &Path) -> Result<()> {
    if store.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(store)
        .with_context(|| format!("cannot create shared directory {}", store.display()))?;
    if let Ok(m) = std::fs::metadata(root) {
        // Best effort: as root, hand the directory to ROOT's owner (php-fpm writes there).
        let _ = std::os::unix::fs::chown(store, Some(m.uid()), Some(m.gid()));
    }
    Ok(())
}

/// Creates the symlink `at -> target`, replacing whatever link is there, with one rename.
fn place_link(at: &Path, target: &Path) -> Result<()> {
    let name = at
        .file_name()
        .ok_or_else(|| anyhow!("{} has no file name", at.display()))?;
    let tmp = at.with_file_name(format!(
        ".rootswap-tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).with_context(|| {
        format!(
            "cannot create symlink {} -> {}",
            tmp.display(),
            target.display()
        )
    })?;
    std::fs::rename(&tmp, at).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot rename {} to {}", tmp.display(), at.display())
    })
}

/// Moves the entries of directory `from` into `store` where `store` lacks
/// them, then removes `from`. Returns the number of entries moved.
fn move_into(from: &Path, store: &Path) -> Result<usize> {
    if !store.exists() {
        if let Some(parent) = store.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        // The whole directory at once, owner and modes included.
        move_path(from, store, true)?;
        if from.exists() {
            remove(from)?; // copied across filesystems
        }
        return Ok(1);
    }
    let mut moved = 0;
    let mut it = walkdir::WalkDir::new(from).min_depth(1).into_iter();
    while let Some(entry) = it.next() {
        let entry = entry.with_context(|| format!("cannot list {}", from.display()))?;
        let rel = entry
            .path()
            .strip_prefix(from)
            .map_err(|e| anyhow!("{e}"))?;
        crate::crashpoint::hit("shared-entry");
        let dst = store.join(rel);
        if std::fs::symlink_metadata(&dst).is_ok() {
            // A file there is the live one; a directory there is merged into.
            continue;
        }
        let is_dir = entry.file_type().is_dir();
        move_path(entry.path(), &dst, is_dir)?;
        moved += 1;
        if is_dir {
            it.skip_current_dir();
        }
    }
    remove(from)?;
    Ok(moved)
}

/// Renames `from` to `to`; across filesystems, copies it instead (the
/// caller removes what stays at `from`).
fn move_path(from: &Path, to: &Path, is_dir: bool) -> Result<()> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
            if is_dir {
                crate::copy::copy_tree(from, to, &Default::default()).map(|_| ())
            } else {
                crate::copy::copy_file_atomic(from, to)
            }
        }
        Err(e) => {
            Err(e).with_context(|| format!("cannot move {} to {}", from.display(), to.display()))
        }
    }
}

fn remove(dir: &Path) -> Result<()> {
    let report = crate::copy::remove_tree(dir, &Default::default())?;
    if let Some((path, err)) = report.failed.first() {
        bail!("cannot remove {}: {err}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(webroot: &Path, dirs: &[&str], shared_dir: &str) -> Result<Shared> {
        let yaml = format!(
            "webroot: {}\nsource: {{repo: x}}\nuser_content:\n  shared: [{}]\n  shared_dir: {shared_dir}\n",
            webroot.display(),
            dirs.iter()
                .map(|d| format!("'{d}'"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let cfg: Config = serde_yaml_ng::from_str(&yaml)?;
        Shared::from_config(&cfg)
    }

    #[test]
    fn targets_are_relative_inside_the_webroot() {
        let s = shared(Path::new("/w"), &["storage/app", "uploads"], "shared").unwrap();
        assert_eq!(
            s.target(Path::new("storage/app")),
            Path::new("../../shared/storage/app")
        );
        assert_eq!(
            s.target(Path::new("uploads")),
            Path::new("../shared/uploads")
        );
        let s = shared(Path::new("/w"), &["uploads"], "/srv/data").unwrap();
        assert_eq!(
            s.target(Path::new("uploads")),
            Path::new("/srv/data/uploads")
        );
    }

    #[test]
    fn bad_paths_are_refused_with_the_key() {
        for (dirs, dir, want) in [
            (&["../x"][..], "shared", "without '.' or '..'"),
            (&["/abs"][..], "shared", "relative"),
            (&["a", "a/b"][..], "shared", "one is inside the other"),
            (&["a"][..], "ROOT/shared", "not inside ROOT"),
            (&["a"][..], "current", "not the link"),
            (&["a"][..], "ROOT_keep", "snapshot name"),
            (&["a"][..], ".", "not webroot"),
        ] {
            let err = shared(Path::new("/w"), dirs, dir).unwrap_err().to_string();
            assert!(err.contains(want), "{dirs:?} {dir}: {err}");
        }
    }

    #[test]
    fn a_real_directory_is_merged_and_linked() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("ROOT");
        std::fs::create_dir_all(root.join("up/sub")).unwrap();
        std::fs::write(root.join("up/a.jpg"), "root a").unwrap();
        std::fs::write(root.join("up/sub/b.jpg"), "root b").unwrap();
        std::fs::create_dir_all(t.path().join("shared/up")).unwrap();
        std::fs::write(t.path().join("shared/up/a.jpg"), "live a").unwrap();
        let s = shared(t.path(), &["up"], "shared").unwrap();
        s.link_into(&root).unwrap();
        assert_eq!(
            std::fs::read_link(root.join("up")).unwrap(),
            Path::new("../shared/up")
        );
        assert_eq!(
            std::fs::read_to_string(root.join("up/a.jpg")).unwrap(),
            "live a"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("up/sub/b.jpg")).unwrap(),
            "root b"
        );
        // Linking again changes nothing.
        assert!(s.link_into(&root).unwrap().is_empty());
        assert_eq!(s.linked_in(&root), vec![PathBuf::from("up")]);
        assert!(covers(&s.linked_in(&root), Path::new("up/x/y")));
        assert!(!covers(&s.linked_in(&root), Path::new("upx")));
    }
}
