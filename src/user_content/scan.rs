//! The user files of a tree, with what identifies each version ([`Sig`]):
//! a [`Manifest`], made by walking the tree once ([`scan`]) or by re-reading
//! only the paths a watch reported ([`rescan`]).

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::rules::{is_own_temp, Classifier};

/// Identity of a user file's version: what changes when it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sig {
    /// True for a symlink.
    pub symlink: bool,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_ns: i64,
    /// Permission bits.
    pub mode: u32,
}

impl Sig {
    pub(super) fn of(m: &std::fs::Metadata) -> Sig {
        Sig {
            symlink: m.file_type().is_symlink(),
            size: m.len(),
            mtime: m.mtime(),
            mtime_ns: m.mtime_nsec(),
            mode: m.mode() & 0o7777,
        }
    }

    /// Modification time in nanoseconds since the epoch.
    pub fn ns(&self) -> u64 {
        (self.mtime.max(0) as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(self.mtime_ns.max(0) as u64)
    }

    pub(super) fn newer_than(&self, other: &Sig) -> bool {
        (self.mtime, self.mtime_ns) > (other.mtime, other.mtime_ns)
    }
}

/// The user files of a tree: ROOT-relative path → version.
pub type Manifest = BTreeMap<PathBuf, Sig>;

/// Lists the user files under `tree`.
pub fn scan(tree: &Path, c: &Classifier) -> Result<Manifest> {
    scan_with(tree, c, &mut |_| {})
}

/// Lists the user files under `tree`, calling `on_dir` with each directory
/// (relative to the tree) before it is read (the change watch's hook).
pub fn scan_with(tree: &Path, c: &Classifier, on_dir: &mut dyn FnMut(&Path)) -> Result<Manifest> {
    let mut out = Manifest::new();
    scan_dir(tree, Path::new(""), false, c, &mut out, on_dir)?;
    Ok(out)
}

fn scan_dir(
    tree: &Path,
    rel: &Path,
    ignored: bool,
    c: &Classifier,
    out: &mut Manifest,
    on_dir: &mut dyn FnMut(&Path),
) -> Result<()> {
    let dir = tree.join(rel);
    on_dir(rel);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        // Removed (or replaced by a file) since its parent was read: nothing to list.
        Err(e)
            if (e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ENOTDIR))
                && !rel.as_os_str().is_empty() =>
        {
            return Ok(())
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read directory {}", dir.display()))
        }
    };
    for e in rd {
        let e = e.with_context(|| format!("cannot read directory {}", dir.display()))?;
        let ft = match e.file_type() {
            Ok(t) => t,
            Err(_) => continue, // vanished meanwhile
        };
        let r = rel.join(e.file_name());
        if ft.is_dir() {
            let dir_ignored = ignored || c.ignored_here(&r, true);
            if dir_ignored && !c.rules.preserve_may_match_below(&r) {
                continue;
            }
            scan_dir(tree, &r, dir_ignored, c, out, on_dir)?;
        } else if c.is_user_file(&r, ignored) {
            match e.metadata() {
                Ok(m) => {
                    out.insert(r, Sig::of(&m));
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(err)
                        .with_context(|| format!("cannot stat {}", tree.join(&r).display()))
                }
            }
        }
    }
    Ok(())
}

/// Updates the manifest `last` of `tree` for the paths in `changed` (relative
/// to the tree): each is looked at again, a directory with its whole subtree;
/// a path that is gone is dropped with everything recorded below it.
pub fn rescan(
    tree: &Path,
    c: &Classifier,
    last: &Manifest,
    changed: &HashSet<PathBuf>,
) -> Manifest {
    rescan_with(tree, c, last, changed, &mut |_| {})
}

/// [`rescan`], calling `on_dir` with each directory it reads (see [`scan_with`]).
pub fn rescan_with(
    tree: &Path,
    c: &Classifier,
    last: &Manifest,
    changed: &HashSet<PathBuf>,
    on_dir: &mut dyn FnMut(&Path),
) -> Manifest {
    let mut out = last.clone();
    for rel in changed {
        if rel.as_os_str().is_empty() || is_own_temp(rel) {
            continue;
        }
        let under: Vec<PathBuf> = out
            .range(rel.clone()..)
            .take_while(|(k, _)| k.starts_with(rel))
            .map(|(k, _)| k.clone())
            .collect();
        for k in under {
            out.remove(&k);
        }
        let parent_ignored = rel.parent().is_some_and(|p| c.dir_ignored(p));
        match std::fs::symlink_metadata(tree.join(rel)) {
            Err(_) => {}
            Ok(m) if m.is_dir() => {
                let ignored = parent_ignored || c.ignored_here(rel, true);
                if !ignored || c.rules.preserve_may_match_below(rel) {
                    if let Err(e) = scan_dir(tree, rel, ignored, c, &mut out, on_dir) {
                        tracing::debug!("rescan of {}: {e:#}", rel.display());
                    }
                }
            }
            Ok(m) => {
                if c.is_user_file(rel, parent_ignored) {
                    out.insert(rel.clone(), Sig::of(&m));
                }
            }
        }
    }
    out
}
