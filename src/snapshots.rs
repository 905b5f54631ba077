//! Snapshots of ROOT: take, list, evict, keep (rename to a label), remove;
//! what the `snapshots` commands do.
//!
//! A snapshot is built under a hidden `.partial-ROOT_…` name and renamed to
//! `ROOT_<timestamp>` only when complete, so nothing ever mistakes a half
//! copy for a whole one. With `snapshots.incremental` (the default) the
//! snapshot this deploy would evict anyway is recycled: renamed and brought
//! up to date with ROOT instead of copying ROOT from scratch. A snapshot being
//! removed is first renamed to `.evicting-ROOT_…`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Local};
use serde::Serialize;

use crate::config::Config;
use crate::copy::{self, CopyOptions, CopyStats};
use crate::layout::{Layout, Snapshot, EVICTING_PREFIX, PARTIAL_PREFIX};
use crate::state::State;

/// A snapshot just taken.
#[derive(Debug, Clone)]
pub struct Taken {
    /// Directory name.
    pub name: String,
    /// Full path.
    pub path: PathBuf,
    /// The old snapshot recycled into this one, if any.
    pub recycled: Option<String>,
    /// What the copy did.
    pub stats: CopyStats,
}

/// The copy options of a configuration.
pub fn copy_options(cfg: &Config) -> CopyOptions {
    CopyOptions {
        threads: cfg.copy_threads(),
        nice: cfg.copy.nice,
    }
}

/// The snapshot this deploy may recycle: the oldest timestamped one that
/// eviction would remove after the deploy, never the live one nor a renamed one.
pub fn recycle_candidate(layout: &Layout, cfg: &Config) -> Result<Option<Snapshot>> {
    if !cfg.snapshots.incremental {
        return Ok(None);
    }
    let live = layout.live_name()?;
    let stamped: Vec<Snapshot> = layout
        .timestamped()?
        .into_iter()
        .filter(|s| Some(&s.name) != live.as_ref())
        .collect();
    let keep = cfg.snapshots.keep.max(1);
    if stamped.len() + 1 > keep {
        Ok(stamped.into_iter().next())
    } else {
        Ok(None)
    }
}

/// Copies ROOT into a new timestamped snapshot (recycling one when allowed).
pub fn take(layout: &Layout, cfg: &Config, now: DateTime<Local>) -> Result<Taken> {
    take_as(layout, cfg, &layout.new_snapshot_name(now)?)
}

/// Copies ROOT into the snapshot `name` (recycling one when allowed).
pub fn take_as(layout: &Layout, cfg: &Config, name: &str) -> Result<Taken> {
    let name = name.to_string();
    if layout.entry(&name).exists() {
        anyhow::bail!(
            "cannot take snapshot {name}: {} already exists; remove it or pick another name",
            layout.entry(&name).display()
        );
    }
    let partial = layout.entry(&format!("{PARTIAL_PREFIX}{name}"));
    let root = layout.root();
    let opts = copy_options(cfg);
    let candidate = recycle_candidate(layout, cfg)?;
    let (stats, recycled) = match candidate {
        Some(old) => {
            std::fs::rename(&old.path, &partial).with_context(|| {
                format!(
                    "cannot rename snapshot {} to {}",
                    old.path.display(),
                    partial.display()
                )
            })?;
            match copy::sync_tree(&root, &partial, &opts) {
                Ok(s) => (s, Some(old.name)),
                Err(e) => {
                    let _ = copy::remove_tree(&partial, &opts);
                    return Err(e).with_context(|| {
                        format!("cannot bring snapshot {} up to date with ROOT", old.name)
                    });
                }
            }
        }
        None => (
            copy::copy_tree(&root, &partial, &opts)
                .with_context(|| format!("cannot copy ROOT to snapshot {name}"))?,
            None,
        ),
    };
    let path = layout.entry(&name);
    std::fs::rename(&partial, &path)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), path.display()))?;
    crate::fsutil::fsync_dir(&layout.webroot)?;
    Ok(Taken {
        name,
        path,
        recycled,
        stats,
    })
}

/// Removes one snapshot: renamed to `.evicting-NAME` first, then removed in
/// parallel. Paths that could not be removed are returned in the error.
pub fn remove(layout: &Layout, cfg: &Config, snap: &Snapshot) -> Result<()> {
    let hidden = layout.entry(&format!("{EVICTING_PREFIX}{}", snap.name));
    std::fs::rename(&snap.path, &hidden).with_context(|| {
        format!(
            "cannot rename {} to {} before removing it",
            snap.path.display(),
            hidden.display()
        )
    })?;
    remove_hidden(&hidden, cfg)
}

fn remove_hidden(hidden: &Path, cfg: &Config) -> Result<()> {
    let report = copy::remove_tree(hidden, &copy_options(cfg))?;
    if !report.failed.is_empty() {
        let mut msg = format!(
            "could not remove {} path(s) of {} (left under that hidden name):",
            report.failed.len(),
            hidden.display()
        );
        for (p, why) in report.failed.iter().take(10) {
            msg.push_str(&format!("\n  {}: {why}", p.display()));
        }
        msg.push_str("\n  fix the ownership or permissions (the web server's user may own them) and remove it by hand");
        bail!(msg);
    }
    Ok(())
}

/// The snapshots [`evict`] would remove now, oldest first: the oldest
/// timestamped ones beyond `snapshots.keep`, never `just_served` nor the live
/// target nor a renamed snapshot.
pub fn evictable(
    layout: &Layout,
    cfg: &Config,
    just_served: Option<&str>,
) -> Result<Vec<Snapshot>> {
    let live = layout.live_name()?;
    let stamped = layout.timestamped()?;
    let total = stamped.len();
    let keep = cfg.snapshots.keep;
    let mut removable: Vec<Snapshot> = stamped
        .into_iter()
        .filter(|s| Some(s.name.as_str()) != just_served && Some(&s.name) != live.as_ref())
        .collect();
    let protected = total - removable.len();
    let excess = total.saturating_sub(keep.max(protected));
    removable.truncate(excess);
    Ok(removable)
}

/// Removes the oldest timestamped snapshots beyond `snapshots.keep`, never
/// `just_served` nor the live target nor a renamed snapshot. Returns the
/// names removed and warnings for those that failed.
pub fn evict(
    layout: &Layout,
    cfg: &Config,
    just_served: Option<&str>,
) -> Result<(Vec<String>, Vec<String>)> {
    let removable = evictable(layout, cfg, just_served)?;
    let mut removed = Vec::new();
    let mut warnings = Vec::new();
    for s in &removable {
        match remove(layout, cfg, s) {
            Ok(()) => removed.push(s.name.clone()),
            Err(e) => {
                tracing::warn!("evicting {}: {e:#}", s.name);
                warnings.push(format!("evicting {}: {e:#}", s.name));
            }
        }
    }
    Ok((removed, warnings))
}

/// Removes leftovers of interrupted runs: `.partial-*` and `.evicting-*` directories.
pub fn clean_leftovers(layout: &Layout, cfg: &Config) -> Result<Vec<String>> {
    let mut cleaned = Vec::new();
    let rd = std::fs::read_dir(&layout.webroot)
        .with_context(|| format!("cannot list {}", layout.webroot.display()))?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with(PARTIAL_PREFIX) || name.starts_with(EVICTING_PREFIX);
        if ours && name.contains(&format!("{}_", layout.root_name)) {
            remove_hidden(&e.path(), cfg)?;
            cleaned.push(name);
        }
    }
    Ok(cleaned)
}

/// One row of `rootswap snapshots list`.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// Directory name.
    pub name: String,
    /// When it was taken (from its name, or recorded).
    pub created: Option<String>,
    /// Commit it holds, when known.
    pub commit: Option<String>,
    /// Total size of its files in bytes.
    pub size: u64,
    /// The link points at it.
    pub live: bool,
    /// Renamed by the user: kept forever.
    pub kept: bool,
}

/// Lists the snapshots with what is known about them.
pub fn list(layout: &Layout, state: &State) -> Result<Vec<Listing>> {
    let live = layout.live_name()?;
    let mut out = Vec::new();
    for s in layout.snapshots()? {
        let info = state.snapshot(&s.path);
        let created = Layout::snapshot_time(&s)
            .map(|t| t.to_rfc3339())
            .or_else(|| info.map(|i| i.created.clone()));
        out.push(Listing {
            created,
            commit: info.and_then(|i| i.commit.clone()),
            size: tree_size(&s.path),
            live: live.as_deref() == Some(s.name.as_str()),
            kept: s.is_kept(),
            name: s.name,
        });
    }
    Ok(out)
}

/// Sum of the file sizes under `path` (best effort).
pub fn tree_size(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| !m.is_dir())
        .map(|m| m.len())
        .sum()
}

/// Longest snapshot label.
pub const LABEL_MAX: usize = 64;

/// Checks a snapshot label (`snapshots keep --as`, the dashboard's Keep):
/// 1 to [`LABEL_MAX`] ASCII letters, digits, `.`, `_` or `-`, not starting
/// with `.` or `-`. A label ends up in a directory name, log lines and
/// terminal tables, so nothing else (no `/`, newline or escape) gets in.
pub fn validate_label(label: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let ok = (1..=LABEL_MAX).contains(&label.len())
        && label.chars().all(ok_char)
        && !label.starts_with(['.', '-']);
    if !ok {
        bail!(
            "snapshot label {label:?} is refused: use 1 to {LABEL_MAX} letters, digits, '.', '_' or '-', \
             not starting with '.' or '-' (e.g. --as before-migration)"
        );
    }
    Ok(())
}

/// Renames a timestamped snapshot so it is kept forever (`ROOT_<label>`,
/// default label `kept-<timestamp>`); the label must pass [`validate_label`].
pub fn keep(layout: &Layout, name: &str, label: Option<&str>) -> Result<String> {
    if let Some(l) = label {
        validate_label(l)?;
    }
    let snap = find(layout, name)?;
    let Some(stamp) = snap.stamp else {
        bail!("snapshot {name} is already kept (its name is not a timestamp)");
    };
    let label = label
        .map(str::to_owned)
        .unwrap_or_else(|| format!("kept-{}", stamp.render()));
    validate_label(&label)?;
    let new_name = format!("{}_{label}", layout.root_name);
    if crate::layout::SnapshotName::parse(&label).is_some() {
        bail!("label '{label}' looks like a timestamp, so the snapshot would still be evicted; pick another label");
    }
    let new_path = layout.entry(&new_name);
    if std::fs::symlink_metadata(&new_path).is_ok() {
        bail!(
            "{} already exists; pick another label with --as",
            new_path.display()
        );
    }
    let was_live = layout.live_name()?.as_deref() == Some(name);
    if was_live {
        bail!("{name} is live right now (a deploy is using it); keep it after the deploy finishes");
    }
    std::fs::rename(&snap.path, &new_path).with_context(|| {
        format!(
            "cannot rename {} to {}",
            snap.path.display(),
            new_path.display()
        )
    })?;
    Ok(new_name)
}

/// Finds a snapshot by name.
pub fn find(layout: &Layout, name: &str) -> Result<Snapshot> {
    let all = layout.snapshots()?;
    match all.iter().find(|s| s.name == name) {
        Some(s) => Ok(s.clone()),
        None => {
            let names: Vec<_> = all.iter().map(|s| s.name.as_str()).collect();
            if names.is_empty() {
                bail!(
                    "no snapshot named {name}: there are no snapshots in {}",
                    layout.webroot.display()
                )
            }
            bail!("no snapshot named {name}; snapshots: {}", names.join(", "))
        }
    }
}

/// Removes a snapshot by hand (refusing the live one).
pub fn remove_by_name(layout: &Layout, cfg: &Config, name: &str) -> Result<()> {
    let snap = find(layout, name)?;
    if layout.live_name()?.as_deref() == Some(name) {
        bail!(
            "{name} is live (the link {} points at it); it cannot be removed",
            layout.link().display()
        );
    }
    remove(layout, cfg, &snap)
}

/// Inode numbers of the snapshot directories (for pruning the state).
pub fn inodes(layout: &Layout) -> Result<Vec<u64>> {
    Ok(layout
        .snapshots()?
        .iter()
        .filter_map(|s| std::fs::metadata(&s.path).ok())
        .map(|m| m.ino())
        .collect())
}
