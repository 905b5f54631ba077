//! Step `switch-to-root`: ROOT serves again, with the new version.
//!
//! ROOT is complete and nothing runs on it: php-fpm's OPcache is cleared
//! while traffic is still on the snapshot, and once more right after the
//! switch (ROOT's path serves new code, so bytecode compiled for it before
//! the deploy is stale: see `docs/zero-downtime.md`). From the journal entry
//! on, a crash rolls forward: what the last passes would have copied,
//! recovery copies. Copy-back passes repeat until one finds nothing, so the
//! switch follows a quiet pass; after the switch, one pass at once (the
//! uploads that landed while the link moved) and one after the drain
//! (requests that started on the snapshot have finished by then).

use std::time::Instant;

use anyhow::Result;

use super::state::{Deploy, OnUnhealthy};
use super::types::Trigger;
use crate::journal::Phase;

/// The pass that waits for the fleet's switch instant (not work: the
/// fleet's timing leaves it out of a node's own deploy time).
pub const WAIT_PASS: &str = "wait for the fleet's switch instant";

impl Deploy {
    /// Points the link back at ROOT (with the passes and resets around it);
    /// not before `at`, when given (the fleet's switch instant).
    pub(super) fn switch_to_root(
        &mut self,
        at: Option<Instant>,
        unhealthy: OnUnhealthy,
    ) -> Result<()> {
        if self.first_deploy() {
            return self.guard(|d| d.step("switch-to-root", |d| d.first_switch(at)));
        }
        self.step("switch-to-root", |d| {
            let (opcache, note) = d.before_switch_back()?;
            d.wait_for_switch_instant(at);
            let switched_back = d.rename_to_root()?;
            if opcache {
                d.opcache_reset("after switching back to ROOT");
            }
            d.health_gate(unhealthy)?;
            d.mark_live()?;
            d.journal.enter(&d.site.layout.state, Phase::Finish)?;
            d.late_passes(switched_back);
            let note = if note.is_empty() {
                note
            } else {
                format!("; {note}")
            };
            Ok(format!(
                "ROOT serves {}{note}",
                crate::source::short(d.commit)
            ))
        })
    }

    /// Clears php-fpm's OPcache now, before the fleet's commit point, so
    /// that the switch back does not wait for a busy php-fpm pool (nothing
    /// compiles ROOT's files until the link points there again).
    pub(super) fn clear_opcache_early(&mut self) {
        if self.first_deploy() || self.opcache_early.is_some() {
            return;
        }
        self.opcache_early = Some(self.opcache_before("before the commit point"));
    }

    /// The reset before the switch back (when there is a php-fpm): whether
    /// one was found, and the reset's note.
    fn opcache_before(&mut self, when: &str) -> (bool, String) {
        let found = self.php_fpm_found();
        let note = match found {
            true => self.opcache_reset(when),
            false => String::new(),
        };
        (found, note)
    }

    /// Everything up to the rename: the OPcache reset (unless done before
    /// the commit point), the journal (a crash from here rolls forward), the
    /// last look at ROOT, the quiet copy-back pass. Returns whether there is
    /// a php-fpm to reset after the rename, and the reset's note.
    fn before_switch_back(&mut self) -> Result<(bool, String)> {
        let (opcache, note) = match self.opcache_early.take() {
            Some(early) => early,
            None => self.opcache_before("before switching back to ROOT"),
        };
        self.journal
            .enter(&self.site.layout.state, Phase::SwitchToRoot)?;
        self.last_look_at_root()?;
        self.quiet_pass();
        Ok((opcache, note))
    }

    /// Sleeps until `at` (uploads that land meanwhile are taken by the late passes).
    pub(super) fn wait_for_switch_instant(&mut self, at: Option<Instant>) {
        let Some(at) = at else { return };
        let _ = self.run.pass(WAIT_PASS, || {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            Ok(())
        });
    }

    /// THE switch back: the link points at ROOT again. Returns its instant.
    fn rename_to_root(&mut self) -> Result<u64> {
        let switched_back = crate::fsutil::fs_now_ns(&self.site.layout.state);
        if let Some(s) = self.served.as_mut() {
            s.switched_back = Some(switched_back);
        }
        let (link, root_name) = (self.site.layout.link(), self.site.layout.root_name.clone());
        self.run
            .pass("switch", || crate::link::point_link(&link, &root_name))?;
        Ok(switched_back)
    }

    fn first_switch(&mut self, at: Option<Instant>) -> Result<String> {
        self.journal
            .enter(&self.site.layout.state, Phase::SwitchToRoot)?;
        self.wait_for_switch_instant(at);
        if crate::crashpoint::fails("first-switch") {
            anyhow::bail!(
                "cannot create the link {} (injected: ROOTSWAP_FAULT=first-switch)",
                self.site.layout.link().display()
            );
        }
        crate::link::point_link(&self.site.layout.link(), &self.site.layout.root_name)?;
        self.mark_live()?;
        crate::journal::Journal::finish(&self.site.layout.state)?;
        Ok(format!("ROOT serves {}", crate::source::short(self.commit)))
    }

    /// Whether there is a php-fpm to clear the OPcache of; when there is
    /// none, one warning for the deploy (and its summary line) says so.
    fn php_fpm_found(&mut self) -> bool {
        // PHP inside the web server (mod_php): the reset goes through it.
        if self.site.config.opcache.http.is_some() {
            return true;
        }
        match self.site.php_fpm().map(|l| l.warning()) {
            Ok(Some(w)) => {
                self.run.warn([w]);
                false
            }
            // A bad address is reported by the reset itself.
            Ok(None) | Err(_) => true,
        }
    }

    /// Clears php-fpm's OPcache; returns what happened, for the step's line.
    fn opcache_reset(&mut self, when: &str) -> String {
        let (cfg, root, plan) = (&self.site.config, self.site.layout.root(), &self.plan);
        let r = self.run.pass("opcache-reset", || {
            Ok(crate::opcache::clear(
                self.site.php_fpm(),
                cfg,
                &root,
                plan.changes.iter().map(|c| c.path.as_path()),
                when,
            ))
        });
        match r {
            Ok(Ok(note)) => {
                tracing::debug!("{note}");
                note
            }
            Ok(Err(w)) => {
                self.run.warn([w]);
                String::new()
            }
            Err(_) => String::new(),
        }
    }

    /// ROOT's user files before the switch back: a file that disappears from
    /// ROOT after the switch was deleted by a request there, and must not be
    /// resurrected by a late pass. From ROOT's watch; the watch stops here.
    fn last_look_at_root(&mut self) -> Result<()> {
        let Some(s) = self.served.as_mut() else {
            return Ok(());
        };
        let c = &self.classifier;
        let seen = self.run.pass("scan ROOT", || match s.root.as_mut() {
            Some(w) => w.manifest(&s.root_last, c),
            None => crate::user_content::scan(&s.root_path, c),
        })?;
        s.root_seen = Some(seen);
        s.root = None;
        Ok(())
    }

    /// Uploads that reached the snapshot during the first copy-back pass:
    /// repeat until a pass finds nothing (at most three times).
    fn quiet_pass(&mut self) {
        let cutoff = self.journal.switched_at;
        for _ in 0..3 {
            match self.copy_back_pass("copy-back", cutoff, false) {
                Ok(r) if r.copied.is_empty() && r.removed.is_empty() => break,
                Ok(_) => {}
                Err(e) => {
                    self.run
                        .warn([format!("copy-back: {e:#} (retried after the switch)")]);
                    break;
                }
            }
        }
    }

    /// The two passes after the switch back, the drain between them.
    fn late_passes(&mut self, switched_back: u64) {
        for (i, name) in ["copy-back (late)", "copy-back (after drain)"]
            .into_iter()
            .enumerate()
        {
            if i == 1 {
                let snap = self.served.as_ref().map(|s| s.taken.path.clone());
                if let Some(snap) = snap {
                    // A write on the snapshot by a request still running
                    // there reaches ROOT as it lands, not after the drain.
                    let carried = self.drain_carrying(&snap, |s, c, tracked| {
                        s.pass(c, tracked, Some(switched_back), true)
                            .map(|r| r.copied.len() + r.removed.len())
                    });
                    if let Err(e) = carried {
                        self.run
                            .warn([format!("copy-back during the drain: {e:#}")]);
                    }
                }
            }
            if let Err(e) = self.copy_back_pass(name, Some(switched_back), true) {
                self.run.warn([format!("late copy-back: {e:#}")]);
            }
        }
    }

    /// The commit is live: recorded in the state (and the branch head pinned
    /// when a deploy of another ref moved away from it).
    fn mark_live(&mut self) -> Result<()> {
        self.state.deployed = Some(self.commit_hex.clone());
        self.state.submodules = self.site.config.source.submodules;
        let off_branch = self.req.reference.is_some() || self.req.trigger == Trigger::Rollback;
        // `rootswap serve` does not redeploy a head a rollback moved away from, only a newer commit.
        self.state.pinned_from = if off_branch {
            self.source
                .branch_head()
                .filter(|h| *h != self.commit)
                .map(|h| h.to_string())
        } else {
            None
        };
        self.state.save(&self.site.layout.state)
    }
}
