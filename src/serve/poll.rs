//! The poll: one check of the branch at a time (a tick, a refs change, a
//! webhook push, start-up, a reload), decided the same way whoever asked,
//! and the deploy it calls for (on a fleet node: a fleet deploy, by the leader).

use std::sync::Arc;

use anyhow::{anyhow, Result};
use tokio::sync::mpsc;

use super::check::Check;
use super::service::{abbrev, lock, Service};
use crate::config::Config;
use crate::deploy::Request;
use crate::fleet::Agent;
use crate::site::Site;
use crate::source::GitSource;
use crate::state::State;

/// What a check of the branch found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    /// The branch head is live.
    UpToDate,
    /// The remote has no such branch.
    NoBranch,
    /// The head is the one a rollback moved away from.
    Pinned(String),
    /// The head already failed to deploy.
    FailedBefore(String),
    /// The head is new: deploy it.
    Deploy(String),
}

impl Service {
    /// Serves the check queue: one check at a time, deploys awaited.
    pub(super) async fn poller(self: Arc<Self>, mut rx: mpsc::Receiver<Check>) {
        while let Some(why) = rx.recv().await {
            if self.is_shutting_down() {
                break;
            }
            self.check_once(why).await;
        }
    }

    async fn check_once(self: &Arc<Self>, why: Check) {
        if let Some((cfg, decision)) = self.look(why).await {
            self.act(why, &cfg, decision).await;
        }
    }

    /// Looks at the branch (off the async threads): None when this node
    /// does not poll now, or the look failed (then the backoff grows).
    async fn look(&self, why: Check) -> Option<(Arc<Site>, Decision)> {
        // In a fleet only the leader polls.
        if self.fleet().is_some_and(|f| !f.is_leader()) {
            return None;
        }
        if let Some(id) = self.running() {
            tracing::info!("{why} skipped: deploy {id} is running");
            return None;
        }
        if let Some(at) = lock(&self.backoff).waiting() {
            tracing::debug!("{why} skipped: backing off until {}", at.format("%H:%M:%S"));
            return None;
        }
        let cfg = self.config();
        let failed = lock(&self.failed).clone();
        let job_cfg = cfg.clone();
        let decision = tokio::task::spawn_blocking(move || check(&job_cfg, failed.as_deref()))
            .await
            .unwrap_or_else(|e| Err(anyhow!("the check stopped unexpectedly: {e}")));
        let decision = match decision {
            Ok(d) => d,
            Err(e) => {
                let (delay, at) = lock(&self.backoff).fail();
                tracing::error!(
                    "{why}: cannot check {} for new commits: {e:#}; next attempt at {} (in {}s)",
                    crate::redact::text(&cfg.source.repo),
                    at.format("%Y-%m-%d %H:%M:%S"),
                    delay.as_secs()
                );
                return None;
            }
        };
        lock(&self.backoff).reset();
        Some((cfg, decision))
    }

    /// Does what `decision` calls for: says why not (once per commit), or deploys.
    async fn act(self: &Arc<Self>, why: Check, cfg: &Config, decision: Decision) {
        let once = |key: String, msg: String| {
            let mut last = lock(&self.skip_logged);
            if last.as_deref() != Some(key.as_str()) {
                tracing::info!("{msg}");
                *last = Some(key);
            }
        };
        match decision {
            Decision::UpToDate => tracing::debug!("{why}: up to date"),
            Decision::NoBranch => once(
                format!("no-branch:{}", cfg.source.branch),
                format!(
                    "branch {} does not exist in {}; waiting for it (check `source.branch`)",
                    cfg.source.branch,
                    crate::redact::text(&cfg.source.repo)
                ),
            ),
            Decision::Pinned(h) => once(
                format!("pinned:{h}"),
                format!(
                    "{} is the head a rollback moved away from; not deploying it again until the branch gets a new commit",
                    abbrev(&h)
                ),
            ),
            Decision::FailedBefore(h) => once(
                format!("failed:{h}"),
                format!(
                    "{} failed to deploy; waiting for a new commit or a deploy asked for by hand",
                    abbrev(&h)
                ),
            ),
            Decision::Deploy(h) if self.fleet().is_some() => {
                let failed = poll_fleet(self.fleet(), why, &h).await;
                *lock(&self.failed) = failed;
            }
            Decision::Deploy(h) => match self.try_begin() {
                Ok(id) => {
                    tracing::info!("{why}: {} moved to {}, deploying", cfg.source.branch, abbrev(&h));
                    let req = Request {
                        trigger: why.trigger(),
                        id: Some(id.clone()),
                        ..Request::manual()
                    };
                    let handle = self.spawn_request(id, req, Some(h));
                    let _ = handle.await;
                }
                Err(busy) => tracing::info!("{why} skipped: {busy}"),
            },
        }
    }
}

/// Asks the remote for the branch head (no object download) and decides.
fn check(cfg: &Site, failed: Option<&str>) -> Result<Decision> {
    let layout = &cfg.layout;
    layout.preflight()?;
    crate::fsutil::ensure_private_dir(&layout.state)?;
    let source = GitSource::open(&layout.state, &cfg.source)?;
    let remote = source.remote_head();
    // `rootswap status` derives the next poll from this.
    let _ = crate::fsutil::write_private(
        &layout.state.join("last-poll"),
        chrono::Local::now().to_rfc3339().as_bytes(),
    );
    let Some(head) = remote? else {
        return Ok(Decision::NoBranch);
    };
    let head = head.to_string();
    let state = State::load(&layout.state)?;
    let root_missing = !layout.root().exists();
    if state.deployed.as_deref() == Some(head.as_str()) && !root_missing {
        return Ok(Decision::UpToDate);
    }
    if state.pinned_from.as_deref() == Some(head.as_str()) {
        return Ok(Decision::Pinned(head));
    }
    if failed == Some(head.as_str()) {
        return Ok(Decision::FailedBefore(head));
    }
    Ok(Decision::Deploy(head))
}

/// The leader's poll found `head`: a fleet deploy of it. Returns the commit
/// not to try again (the fleet aborted it), as the single-node service does.
async fn poll_fleet(agent: Option<&Arc<Agent>>, why: Check, head: &str) -> Option<String> {
    let agent = agent?;
    tracing::info!(
        "{why}: the branch moved to {}, starting a fleet deploy",
        abbrev(head)
    );
    match agent
        .coordinate(why.trigger(), Some(head.to_string()), false, None)
        .await
    {
        Ok(_) => None,
        Err(e) if e.downcast_ref::<crate::fleet::Busy>().is_some() => {
            tracing::info!("{why} skipped: {e}");
            None
        }
        Err(e) if e.downcast_ref::<crate::fleet::Aborted>().is_some() => {
            tracing::error!("{e}");
            tracing::warn!(
                "commit {} will not be deployed again until the branch gets a new commit or a deploy is asked for by hand",
                abbrev(head)
            );
            Some(head.to_string())
        }
        Err(e) => {
            tracing::error!("fleet deploy of {}: {e:#}", abbrev(head));
            None
        }
    }
}
