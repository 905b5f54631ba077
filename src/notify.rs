//! Deploy notifications: a JSON POST to `notify.webhook` on success, failure
//! and automatic rollback. Slack-compatible (`text`), with structured fields
//! beside it. Bounded retries; a notification failure is logged, never fails
//! a deploy.

use std::time::Duration;

use serde::Serialize;

use crate::config::Config;

/// The body sent to the webhook.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// One line for chat tools.
    pub text: String,
    /// `success`, `failed` or `rolled-back`.
    pub result: String,
    /// Deploy id.
    pub id: String,
    /// Commit deployed or attempted.
    pub commit: Option<String>,
    /// Commit live before.
    pub previous_commit: Option<String>,
    /// Webroot deployed to.
    pub webroot: String,
    /// Error, when the deploy failed.
    pub error: Option<String>,
}

/// Sends `n` to the configured webhook (if any): 3 attempts, 5 s timeout each.
pub fn send(cfg: &Config, n: &Notification) {
    let Some(url) = cfg.notify.webhook.as_deref() else {
        return;
    };
    let agent = match crate::health::agent(Duration::from_secs(5)) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("notification not sent: {e:#}");
            return;
        }
    };
    let n = &Notification {
        text: crate::redact::text(&n.text).into_owned(),
        error: n
            .error
            .as_deref()
            .map(|e| crate::redact::text(e).into_owned()),
        ..n.clone()
    };
    for attempt in 1..=3u64 {
        match agent.post(url).send_json(n) {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => tracing::warn!(
                "notification attempt {attempt}: the webhook answered {}",
                r.status()
            ),
            Err(e) => tracing::warn!("notification attempt {attempt} to the webhook failed: {e}"),
        }
        if attempt < 3 {
            std::thread::sleep(Duration::from_millis(500 * attempt));
        }
    }
    tracing::warn!("notification dropped after 3 attempts; the deploy itself is unaffected");
}
