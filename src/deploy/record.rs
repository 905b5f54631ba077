//! Step `record`: one line in the history (`<state>/history.jsonl`), the
//! notification webhook, and the summary the CLI prints.

use chrono::Local;

use super::state::Deploy;
use super::types::{Outcome, Summary};
use crate::history::{self, Record};

impl Deploy {
    /// Appends the history record (and sends the notification) for `result`.
    pub(super) fn record(&self, result: &str, error: Option<String>) {
        let rec = Record {
            id: self.run.id.clone(),
            started: self.run.started.to_rfc3339(),
            finished: Local::now().to_rfc3339(),
            trigger: self.run.trigger.as_str().to_string(),
            result: result.to_string(),
            commit: Some(self.commit_hex.clone()),
            previous_commit: self.previous.clone(),
            snapshot: self.snapshot_name().map(str::to_string),
            evicted: self.evicted.clone(),
            error,
            warnings: self.run.warnings.clone(),
            steps: self.run.steps.clone(),
            duration_ms: self.run.clock.elapsed().as_millis() as u64,
            fleet_id: self.run.fleet_id.clone(),
        };
        if let Err(e) = history::append(&self.site.layout.state, &rec) {
            tracing::warn!("cannot record the deploy in the history: {e:#}");
        }
        if let Some(cfg) = &self.run.notify {
            self.notify(cfg, &rec);
        }
    }

    fn notify(&self, cfg: &crate::config::Config, rec: &Record) {
        let short = crate::commit::short(&self.commit_hex);
        let webroot = self.site.layout.webroot.display();
        let after_switch = rec
            .warnings
            .iter()
            .find(|w| w.starts_with("hooks.after_switch failed"));
        let text = match rec.result.as_str() {
            "success" => match after_switch {
                Some(w) => format!("rootswap: deployed {short} to {webroot}, but {w}"),
                None => format!("rootswap: deployed {short} to {webroot}"),
            },
            "rolled-back"
                if rec
                    .error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("hooks.after_switch failed")) =>
            {
                format!(
                    "rootswap: deploy of {short} to {webroot} failed its after_switch hooks and was rolled back"
                )
            }
            "rolled-back" => format!(
                "rootswap: deploy of {short} to {webroot} failed its health check and was rolled back"
            ),
            _ => format!(
                "rootswap: deploy of {short} to {webroot} failed; the previous version stays live"
            ),
        };
        crate::notify::send(
            cfg,
            &crate::notify::Notification {
                text,
                result: rec.result.clone(),
                id: rec.id.clone(),
                commit: rec.commit.clone(),
                previous_commit: rec.previous_commit.clone(),
                webroot: webroot.to_string(),
                error: rec.error.clone(),
            },
        );
    }

    /// After the switch back: evict (unless nothing was live before), record.
    pub(super) fn finish(mut self: Box<Self>) -> anyhow::Result<Outcome> {
        if !self.first_deploy() {
            if let Err(e) = self.evict() {
                self.journal.keep_error(&self.site.layout.state, &e);
                return Err(e);
            }
        }
        Ok(self.record_success())
    }

    /// Records the success and returns what the deploy did.
    pub(super) fn record_success(self) -> Outcome {
        self.record("success", None);
        let served = self.served.as_ref();
        Outcome::Deployed(Summary {
            id: self.run.id.clone(),
            commit: self.commit_hex.clone(),
            described: self.source.describe(self.commit),
            previous: self.previous.clone(),
            snapshot: self.snapshot_name().map(str::to_string),
            recycled: served.and_then(|s| s.taken.recycled.clone()),
            files: self.plan.counts(),
            user_files_copied: served.map_or(0, |s| s.copied),
            user_files_removed: served.map_or(0, |s| s.removed),
            evicted: self.evicted.clone(),
            duration: self.run.clock.elapsed(),
            steps: self.run.steps.clone(),
            warnings: self.run.warnings.clone(),
        })
    }
}
