//! Step `evict`: remove the oldest timestamped snapshots beyond
//! `snapshots.keep`. A snapshot renamed by the user (`rootswap snapshots
//! keep`) is never evicted, nor the one that just served.

use anyhow::Result;

use super::state::Deploy;
use crate::journal::Journal;
use crate::progress::Count;
use crate::snapshots;

impl Deploy {
    /// Evicts old snapshots, then closes the journal: the deploy is done.
    pub(super) fn evict(&mut self) -> Result<()> {
        self.step("evict", |d| {
            let keep = d.snapshot_name().map(str::to_string);
            let (layout, cfg) = (&d.site.layout, &d.site.config);
            // Counted as entries removed; each evicted snapshot holds about as many as this one.
            let evicting =
                snapshots::evictable(layout, cfg, keep.as_deref()).map_or(0, |v| v.len() as u64);
            let per = d.served.as_ref().map_or(0, |s| s.taken.stats.entries + 1);
            let removing = Some(Count {
                unit: "entries removed",
                total: Some(evicting * per).filter(|t| *t > 0),
            });
            let (evicted, warns) = d.run.counted("evict", removing, || {
                snapshots::evict(layout, cfg, keep.as_deref())
            })?;
            d.run.warn(warns);
            d.state
                .retain_snapshots(&snapshots::inodes(&d.site.layout)?);
            d.state.save(&d.site.layout.state)?;
            Journal::finish(&d.site.layout.state)?;
            let what = match evicted.as_slice() {
                [] => "nothing to remove".to_string(),
                names => format!("removed {}", names.join(", ")),
            };
            d.evicted = evicted;
            Ok(what)
        })
    }
}
