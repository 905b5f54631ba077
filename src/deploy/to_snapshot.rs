//! Step `switch-to-snapshot`: the snapshot serves while ROOT is rewritten.
//!
//! Uploads ROOT receives while the snapshot is being copied belong in the
//! served tree. They are carried over (`catch-up`) until a pass finds
//! nothing new, so that the switch happens right after a pass and the two
//! trees differ for as short a time as possible; then once more at once
//! after the switch, and once more after the drain, when no request still
//! runs on ROOT. Each catch-up looks only at what ROOT's watch reports.
//!
//! The switch itself is one rename(2) of a temporary link over the serving
//! link ([`crate::link::point_link`]): there is no instant without a link.

use std::collections::HashSet;

use anyhow::{Context, Result};

use super::state::Served;
use super::state::{Deploy, COPIED};
use crate::journal::Phase;
use crate::user_content::{self, Classifier};

impl Deploy {
    /// Carries uploads over, points the link at the snapshot, lets requests on ROOT finish.
    pub(super) fn switch_to_snapshot(&mut self) -> Result<()> {
        self.step("switch-to-snapshot", |d| {
            for _ in 0..3 {
                if d.catch_up(None)? == 0 {
                    break;
                }
            }
            d.journal
                .enter(&d.site.layout.state, Phase::SwitchToSnapshot)?;
            let (link, name) = (d.site.layout.link(), d.served_ref()?.taken.name.clone());
            d.run
                .pass("switch", || crate::link::point_link(&link, &name))?;
            d.journal.switched_at = Some(crate::fsutil::fs_now_ns(&d.site.layout.state));
            d.journal.enter(&d.site.layout.state, Phase::Rewrite)?;
            let cutoff = d.journal.switched_at;
            d.catch_up(cutoff)?;
            // A write on ROOT by a request still running there is carried
            // into the snapshot as it lands: the next request sees it.
            let root = d.site.layout.root();
            d.drain_carrying(&root, |s, c, _| s.catch_up(c, cutoff))?;
            d.catch_up(cutoff)?;
            let n = d.served_ref()?.caught_up;
            Ok(match n {
                0 => format!("{name} serves"),
                n => format!("{name} serves; {n} uploads carried over from ROOT"),
            })
        })
    }

    /// One catch-up pass; returns how many files it copied or removed.
    fn catch_up(&mut self, cutoff: Option<u64>) -> Result<usize> {
        let Deploy {
            run,
            served,
            classifier,
            ..
        } = self;
        let s = served.as_mut().context("no snapshot serves")?;
        run.counted("catch-up", COPIED, || s.catch_up(classifier, cutoff))
    }
}

impl Served {
    /// Copies into the snapshot what ROOT got since the last look.
    fn catch_up(&mut self, c: &Classifier, cutoff: Option<u64>) -> Result<usize> {
        let watch = self.root.as_mut().context("ROOT is no longer watched")?;
        let scanned = watch.manifest(&self.root_last, c)?;
        self.root_last = scanned.clone();
        let mut root_now = scanned;
        let before = self.before.as_mut().context("the copy-back has begun")?;
        // A file the snapshot had and lost since was deleted by a request there: not brought back.
        let r = user_content::carry(
            &self.root_path,
            &self.taken.path,
            &self.root_base,
            &mut root_now,
            &HashSet::new(),
            Some(before),
            cutoff,
        )?;
        for p in &r.copied {
            if let Some(sig) = root_now.get(p) {
                before.insert(p.clone(), *sig);
            }
        }
        for p in &r.removed {
            before.remove(p);
        }
        // Changed on both sides and the snapshot's change (a newer version, or
        // a deletion) won: ROOT's version is superseded. Record it as the base
        // that the snapshot's state replaces, so the copy-back applies it.
        for p in &r.superseded {
            if let Some(sig) = root_now.get(p) {
                before.insert(p.clone(), *sig);
            }
        }
        self.root_base = root_now;
        self.caught_up += r.copied.len();
        Ok(r.copied.len() + r.removed.len())
    }
}
