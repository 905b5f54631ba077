//! Carrying user files from one tree to the other: what changed in `from`
//! between two manifests is applied to `to`.
//!
//! The deploy carries in both directions: ROOT → snapshot before the
//! snapshot serves (the catch-up), snapshot → ROOT before and after the
//! link returns to ROOT (the copy-back). Files created or changed in `from`
//! are copied in, files deleted from it are removed from `to` (if `to` still
//! holds the same version), and a path the new commit tracks is left to the
//! commit (a logged conflict). A write `to` got meanwhile always wins: each
//! copy lands only if the destination is still what was looked at.

use std::collections::HashSet;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::scan::{Manifest, Sig};
use crate::copy::{Expect, Placed, Version};

/// What one carry pass did.
#[derive(Debug, Default, Clone)]
pub struct Carried {
    /// User files copied from `from` into `to`.
    pub copied: Vec<PathBuf>,
    /// User files removed from `to` because they were deleted from `from`.
    pub removed: Vec<PathBuf>,
    /// Paths the new commit tracks: the commit's version was kept.
    pub conflicts: Vec<PathBuf>,
    /// Paths whose change was superseded by the destination: it holds a newer
    /// version of its own, or deleted the file since `to_seen`.
    pub superseded: Vec<PathBuf>,
}

/// Applies to `to` what changed in `from` between the manifests `before`
/// and `now`. `new_tracked` is the set of files the new commit tracks;
/// where `to`'s file is newer than `from`'s, `to`'s is kept. `to_seen`,
/// when given, lists `to`'s user files at the time `before` was taken: a
/// path `to` had then and lacks now was deleted there since, and is not
/// brought back. A file deleted from `from` is removed from `to` when `to`
/// still holds the version `before` recorded, or any version written before
/// `cutoff_ns` (the switch that made `from` the served tree: what `to` got
/// earlier is superseded by what the served tree did).
pub fn carry(
    from: &Path,
    to: &Path,
    before: &Manifest,
    now: &mut Manifest,
    new_tracked: &HashSet<PathBuf>,
    to_seen: Option<&Manifest>,
    cutoff_ns: Option<u64>,
) -> Result<Carried> {
    let pass = Pass {
        from,
        to,
        before,
        new_tracked,
        to_seen,
        cutoff_ns,
    };
    let mut report = Carried::default();
    let changed: Vec<(PathBuf, Sig)> = now
        .iter()
        .filter(|(p, sig)| before.get(*p) != Some(*sig))
        .map(|(p, s)| (p.clone(), *s))
        .collect();
    for (p, sig) in &changed {
        pass.changed(p, sig, now, &mut report)?;
    }
    for (p, sig) in before {
        if !now.contains_key(p) {
            pass.deleted(p, sig, &mut report)?;
        }
    }
    Ok(report)
}

/// One carry pass: the two trees and what is known of them.
struct Pass<'a> {
    from: &'a Path,
    to: &'a Path,
    before: &'a Manifest,
    new_tracked: &'a HashSet<PathBuf>,
    to_seen: Option<&'a Manifest>,
    cutoff_ns: Option<u64>,
}

impl Pass<'_> {
    /// `p` or a directory above it is a file the new commit tracks.
    fn tracked(&self, p: &Path) -> bool {
        p.ancestors()
            .any(|a| !a.as_os_str().is_empty() && self.new_tracked.contains(a))
    }

    /// `p` was created or changed in `from`: copy it into `to`, unless the
    /// commit tracks it or `to` has a newer version of its own.
    fn changed(&self, p: &Path, sig: &Sig, now: &mut Manifest, report: &mut Carried) -> Result<()> {
        if self.tracked(p) {
            tracing::warn!(
                "user file {} is now tracked by the repository: the commit's version wins",
                p.display()
            );
            report.conflicts.push(p.to_path_buf());
            return Ok(());
        }
        let dst = self.to.join(p);
        let in_to = std::fs::symlink_metadata(&dst);
        if in_to.is_err() && self.to_seen.is_some_and(|seen| seen.contains_key(p)) {
            report.superseded.push(p.to_path_buf());
            return Ok(()); // deleted in `to` after the switch: the deletion is newer
        }
        crate::crashpoint::hit("copy-back-entry");
        if let Ok(m) = &in_to {
            if !m.is_dir() {
                let cur = Sig::of(m);
                if &cur == sig {
                    return Ok(());
                }
                if self.before.get(p) != Some(&cur) && cur.newer_than(sig) {
                    // `to` got a newer version of its own (a hook, or a request after the switch).
                    report.superseded.push(p.to_path_buf());
                    return Ok(());
                }
            }
        }
        self.copy(p, &dst, expect(&in_to), now, report)
    }

    /// Copies `p` over `dst` if `dst` is still as `expect` says.
    fn copy(
        &self,
        p: &Path,
        dst: &Path,
        expect: Expect,
        now: &mut Manifest,
        report: &mut Carried,
    ) -> Result<()> {
        let src = self.from.join(p);
        match crate::copy::copy_file_if(&src, dst, expect) {
            Ok(Placed::Skipped) => {
                // Changed in `to` while the copy was in flight: that change is newer.
                report.superseded.push(p.to_path_buf());
            }
            Ok(Placed::Done) => {
                // The file may have changed since it was scanned: remember what was really copied.
                if let Ok(m) = std::fs::symlink_metadata(dst) {
                    now.insert(p.to_path_buf(), Sig::of(&m));
                }
                report.copied.push(p.to_path_buf())
            }
            Err(e) if !src.exists() => {
                // Deleted (or renamed) since the scan; the next pass sees the
                // deletion. The version scanned never reached `to`: record the
                // one that did, so that the deletion removes it from `to`.
                tracing::debug!("{} vanished during copy-back: {e:#}", p.display());
                match self.before.get(p) {
                    Some(applied) => now.insert(p.to_path_buf(), *applied),
                    None => now.remove(p),
                };
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot copy user file {} back into ROOT", p.display())
                })
            }
        }
        Ok(())
    }

    /// `p` was deleted from `from`: remove it from `to` if `to` still holds
    /// the version `from` had (or one older than the switch).
    fn deleted(&self, p: &Path, sig: &Sig, report: &mut Carried) -> Result<()> {
        if self.tracked(p) {
            return Ok(());
        }
        let dst = self.to.join(p);
        let Ok(m) = std::fs::symlink_metadata(&dst) else {
            return Ok(());
        };
        let cur = Sig::of(&m);
        let older_than_cutoff = self.cutoff_ns.is_some_and(|c| cur.ns() < c);
        if m.is_dir() || (&cur != sig && !older_than_cutoff) {
            return Ok(()); // `to` holds a version written since: not the file the user deleted
        }
        match std::fs::remove_file(&dst) {
            Ok(()) => report.removed.push(p.to_path_buf()),
            // Removed meanwhile (by a request, or with its directory): the same result.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot remove deleted user file {}", dst.display()))
            }
        }
        Ok(())
    }
}

/// The copy lands only if the destination is still what was looked at
/// here: a request that deletes, creates or rewrites it meanwhile wins.
fn expect(in_to: &std::io::Result<Metadata>) -> Expect {
    match in_to {
        Ok(m) if !m.is_dir() => Expect::Present(Some(Version {
            size: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
        })),
        Ok(_) => Expect::Any,
        Err(_) => Expect::Absent,
    }
}
