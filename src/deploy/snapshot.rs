//! Step `snapshot`: copy ROOT into `ROOT_<timestamp>`, and start knowing
//! what changes in both trees from now on.
//!
//! ROOT is walked once, before the copy, with a change watch set on each of
//! its directories (uploads that ROOT receives while the copy runs are then
//! known without walking it again); the snapshot likewise right after the
//! copy. These two walks are the only full walks of user content in a
//! deploy: every later look at either tree re-reads only what the watches
//! report (see [`crate::user_content::Watched`]).

use std::path::PathBuf;

use anyhow::Result;
use chrono::Local;

use super::state::{Deploy, Served};
use crate::journal::Phase;
use crate::progress::Count;
use crate::snapshots;
use crate::user_content::Classifier;
use crate::user_content::Manifest;
use crate::user_content::{Changes, Watched};

impl Deploy {
    /// Copies ROOT into a new snapshot (recycling the oldest one when allowed).
    pub(super) fn snapshot(&mut self) -> Result<()> {
        self.step("snapshot", |d| {
            d.journal.enter(&d.site.layout.state, Phase::Snapshot)?;
            let root = d.site.layout.root();
            let c = &d.classifier;
            let mut repair = crate::user_content::Repair::new(&root, c);
            let (mut root_watch, root_last) = d.run.pass("scan ROOT", || {
                Watched::scan_visiting(&root, c, &mut |rel| repair.visit(rel))
            })?;
            d.run.warn(repaired_warning(&repair.repaired));
            let name = match &d.req.snapshot_name {
                Some(n) => n.clone(),
                None => d.site.layout.new_snapshot_name(Local::now())?,
            };
            // Counted by the copy engine; the total is ROOT's entry count at the last snapshot.
            let entries = Some(Count {
                unit: "entries",
                total: d.state.root_entries,
            });
            let (layout, cfg) = (&d.site.layout, &d.site.config);
            let taken = d.run.counted("snapshot", entries, || {
                snapshots::take_as(layout, cfg, &name)
            })?;
            d.journal.snapshot = Some(taken.name.clone());
            d.state.set_snapshot(&taken.path, d.previous.clone())?;
            d.state.root_entries = Some(taken.stats.entries);
            d.state.save(&d.site.layout.state)?;
            let (snap, snap_last) = d.run.pass("scan snapshot", || {
                snapshot_manifest(&taken.path, &mut root_watch, &root_last, c)
            })?;
            let what = format!(
                "{} ({}{} files copied, {} unchanged)",
                taken.name,
                taken
                    .recycled
                    .as_ref()
                    .map(|r| format!("recycled {r}, "))
                    .unwrap_or_default(),
                taken.stats.files,
                taken.stats.unchanged
            );
            d.served = Some(Served {
                taken,
                root_path: root,
                root: Some(root_watch),
                root_base: snap_last.clone(),
                root_last,
                before: Some(snap_last.clone()),
                snap,
                snap_last,
                root_seen: None,
                switched_back: None,
                copied: 0,
                removed: 0,
                caught_up: 0,
            });
            Ok(what)
        })
    }
}

/// The deploy's warning when ROOT's scan repaired owners (each one is logged).
fn repaired_warning(repaired: &[PathBuf]) -> Option<String> {
    let (what, whose) = match repaired.len() {
        0 => return None,
        1 => ("directory", "its parent"),
        _ => ("directories", "their parents"),
    };
    Some(format!(
        "gave {} root-owned {what} in user content back to the owner of {whose} \
         (made by an earlier rootswap; see the log)",
        repaired.len()
    ))
}

/// The snapshot's user files right after the copy, and its watch. The copy
/// holds ROOT's files as ROOT's scan saw them, except where ROOT changed
/// since (its watch says where): only those paths are read in the snapshot,
/// and its directories are watched without walking it. When ROOT's events
/// cannot be trusted, the snapshot is scanned whole.
fn snapshot_manifest(
    snap: &std::path::Path,
    root: &mut Watched,
    root_at_scan: &Manifest,
    c: &Classifier,
) -> Result<(Watched, Manifest)> {
    match (root.peek(), Watched::follow(snap, root)) {
        (Changes::Paths(changed), Some(mut watched)) => {
            let m = watched.rescan(root_at_scan, &changed, c);
            Ok((watched, m))
        }
        (Changes::Everything(why), _) => {
            tracing::info!("full scan of {}: {why}", snap.display());
            Watched::scan(snap, c)
        }
        (_, None) => Watched::scan(snap, c),
    }
}
