//! How long each step and pass of one deploy took, and the deploy's id.
//!
//! [`Run`] times the steps: a step of the flow is one line of output
//! (`snapshot (80ms): …`); the passes inside it (a catch-up, a copy-back
//! pass, a drain) are timed as its parts, logged at debug level (`-v`) and
//! kept in the history's JSON.

use std::time::Instant;

use anyhow::Result;
use chrono::Local;

use super::types::Request;
use super::types::Trigger;
use crate::config::Config;
use crate::history::StepTiming;
use crate::progress::Count;

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
