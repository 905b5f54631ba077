//! The state of one deploy as it goes through the steps, and its timings.
//!
//! A [`Deploy`] carries everything the steps share; each step is a method in
//! a file of its own. [`Run`] times the steps: a step of the flow is one
//! line of output (`snapshot (80ms): …`); the passes inside it (a catch-up,
//! a copy-back pass, a drain) are timed as its parts, logged at debug level
//! (`-v`) and kept in the history's JSON.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::Local;
use git2::Oid;

use super::snapshot::Served;
use super::types::{Request, Trigger};
use crate::config::Config;
use crate::history::StepTiming;
use crate::journal::Journal;
use crate::lock::DeployLock;
use crate::progress::Count;
use crate::site::Site;
use crate::source::{GitSource, Plan};
use crate::state::State;
use crate::user_content::Classifier;

/// One deploy between its steps.
pub(super) struct Deploy {
    /// The site, as opened by the front-end.
    pub(super) site: Site,
    pub(super) req: Request,
    /// Held until the deploy is dropped.
    pub(super) _lock: DeployLock,
    pub(super) run: Run,
    pub(super) state: State,
    pub(super) source: GitSource,
    pub(super) commit: Oid,
    pub(super) commit_hex: String,
    pub(super) previous: Option<String>,
    pub(super) plan: Plan,
    /// Files the new commit tracks.
    pub(super) new_tracked: HashSet<PathBuf>,
    /// User content as the live (old) commit defines it, for every pass.
    pub(super) classifier: Classifier,
    pub(super) journal: Journal,
    /// Nothing was live before this deploy (decided once, at the fetch: the
    /// journal's phase moves on at the first switch).
    pub(super) first: bool,
    /// The snapshot and what is known of both trees (None on a first deploy).
    pub(super) served: Option<Served>,
    pub(super) evicted: Vec<String>,
    /// The OPcache was cleared before the fleet's commit point: whether a
    /// php-fpm was found, and the reset's note.
    pub(super) opcache_early: Option<(bool, String)>,
    /// The health check failed after the switch back, in a fleet (which
    /// decides whether every node rolls back).
    pub(super) unhealthy: Option<String>,
}

impl Deploy {
    /// Nothing was live before: no snapshot, the checkout goes into an empty ROOT.
    pub(super) fn first_deploy(&self) -> bool {
        self.first
    }

    pub(super) fn commit_hex(&self) -> &str {
        &self.commit_hex
    }

    pub(super) fn snapshot_name(&self) -> Option<&str> {
        self.served.as_ref().map(|s| s.taken.name.as_str())
    }

    /// Runs step `name` of the flow: `body` does the work and says what it
    /// did, in a few words, for the step's line of output.
    pub(super) fn step(
        &mut self,
        name: &str,
        body: impl FnOnce(&mut Deploy) -> Result<String>,
    ) -> Result<()> {
        self.run.begin(name);
        match body(self) {
            Ok(what) => {
                self.run.end(&what);
                Ok(())
            }
            Err(e) => {
                self.run.abandon();
                Err(e)
            }
        }
    }

    /// The drain of `tree`, the tree traffic just left: requests that
    /// resolved it before the switch may still write there (a save, an
    /// upload). `carry` (one catch-up or copy-back pass, returning how many
    /// files it carried) runs every 25 ms while the drain waits, so such a
    /// write reaches the tree that serves now within milliseconds, not once
    /// the drain is over. Returns how many files were carried.
    pub(super) fn drain_carrying(
        &mut self,
        tree: &std::path::Path,
        mut carry: impl FnMut(&mut Served, &Classifier, &HashSet<PathBuf>) -> Result<usize>,
    ) -> Result<usize> {
        let Deploy {
            run,
            served,
            classifier,
            new_tracked,
            site,
            ..
        } = self;
        let s = served.as_mut().context("no snapshot serves")?;
        let mut carried = 0;
        let drained = run.pass("drain", || {
            crate::drain::wait_while(&site.config, tree, || {
                carried += carry(s, classifier, new_tracked)?;
                Ok(())
            })
        })?;
        run.warn(drained);
        Ok(carried)
    }

    /// Runs steps that change ROOT; when one fails, the old version is put
    /// back ([`Deploy::fail`]) and the error says so.
    pub(super) fn guard(&mut self, steps: impl FnOnce(&mut Deploy) -> Result<()>) -> Result<()> {
        match steps(self) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }
}

/// Timings and identity of one run.
pub(super) struct Run {
    pub(super) id: String,
    pub(super) started: chrono::DateTime<Local>,
    pub(super) clock: Instant,
    pub(super) steps: Vec<StepTiming>,
    pub(super) warnings: Vec<String>,
    /// The configuration, when a notification webhook is set.
    pub(super) notify: Option<Config>,
    pub(super) trigger: Trigger,
    pub(super) fleet_id: Option<String>,
    /// Every log line of the deploy carries its id.
    pub(super) span: tracing::Span,
    /// The step of the flow running now: its name, start and passes so far.
    open: Option<(String, Instant, Vec<StepTiming>)>,
}

impl Run {
    pub(super) fn new(cfg: &Config, req: &Request) -> Run {
        let id = req.id.clone().unwrap_or_else(new_id);
        Run {
            span: tracing::info_span!("deploy", id = %id),
            id,
            started: Local::now(),
            clock: Instant::now(),
            steps: Vec::new(),
            warnings: Vec::new(),
            notify: cfg.notify.webhook.as_ref().map(|_| cfg.clone()),
            trigger: req.trigger,
            fleet_id: req.fleet_id.clone(),
            open: None,
        }
    }

    /// Starts step `name` of the flow (a step still open is closed first).
    pub(super) fn begin(&mut self, name: &str) {
        if self.open.is_some() {
            self.end("");
        }
        crate::progress::step_started(name, None);
        self.open = Some((name.to_string(), Instant::now(), Vec::new()));
    }

    /// Ends the open step: one line for people, `what` saying what it did.
    pub(super) fn end(&mut self, what: &str) {
        let Some((step, t, passes)) = self.open.take() else {
            return;
        };
        let ms = t.elapsed().as_millis() as u64;
        let sep = if what.is_empty() { "" } else { ": " };
        tracing::info!("{step} ({}){sep}{what}", fmt_ms(ms));
        self.steps.push(StepTiming { step, ms, passes });
    }

    /// Ends the open step because it failed (no line of its own: the error says it).
    pub(super) fn abandon(&mut self) {
        if let Some((step, t, passes)) = self.open.take() {
            let ms = t.elapsed().as_millis() as u64;
            tracing::debug!("{step} failed after {}", fmt_ms(ms));
            self.steps.push(StepTiming { step, ms, passes });
        }
    }

    /// Times one pass of the open step (logged at debug level).
    pub(super) fn pass<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.counted(name, None, f)
    }

    /// A pass whose work is counted: on a terminal, a progress bar (or a
    /// counter, without a total) instead of the spinner.
    pub(super) fn counted<T>(
        &mut self,
        name: &str,
        count: Option<Count>,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        crate::progress::pass_started(name, count);
        let t = Instant::now();
        let r = f();
        if count.is_some() {
            crate::progress::step_finished(name);
        }
        let ms = t.elapsed().as_millis() as u64;
        match &r {
            Ok(_) => tracing::debug!("  {name} ({})", fmt_ms(ms)),
            Err(_) => tracing::debug!("  {name} failed after {}", fmt_ms(ms)),
        }
        let timing = StepTiming {
            step: name.to_string(),
            ms,
            passes: Vec::new(),
        };
        match &mut self.open {
            Some((_, _, passes)) => passes.push(timing),
            None => self.steps.push(timing),
        }
        r
    }

    /// Adds warnings for the summary and the history.
    pub(super) fn warn(&mut self, w: impl IntoIterator<Item = String>) {
        self.warnings.extend(w);
    }
}

/// `12ms`, `1.25s`.
pub(super) fn fmt_ms(ms: u64) -> String {
    if ms >= 1000 {
        format!("{:.2}s", ms as f64 / 1000.0)
    } else {
        format!("{ms}ms")
    }
}

/// A fresh deploy id: local time plus a few random-ish hex digits.
pub(super) fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{:04x}",
        Local::now().format("%Y%m%d-%H%M%S"),
        (nanos ^ std::process::id()) & 0xffff
    )
}
