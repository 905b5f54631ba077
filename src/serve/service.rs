//! The service's shared state ([`Service`]) and its one gate for deploys.
//!
//! At most one deploy runs at a time. The gate is [`Service::try_begin`]:
//! a tick, a refs change or an HTTP request that finds a deploy running (the
//! service's own, or `rootswap deploy` holding the lock) is skipped and
//! logged, never queued. Every deploy asked of the service (trigger URL,
//! dashboard, and, on a fleet node, the fleet) goes through
//! [`Service::start`]; the poll claims the gate itself, to wait for its deploy.
//!
//! Failure policy: a deploy that fails after it started (a hook failed, the
//! health gate said no) marks its commit as failed; the service does not try
//! it again until the branch gets a new commit or someone asks by hand. A
//! failure before the pipeline starts (the repository is unreachable) is
//! retried with exponential backoff.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use tokio::sync::mpsc;

use super::check::Check;
use super::deliveries::Deliveries;
use super::metrics::Metrics;
use super::schedule::Backoff;
use super::settings;
use crate::config::Config;
use crate::deploy::{self, Outcome, Request};
use crate::deploy_lock::DeployLock;
use crate::site::Site;

/// Why a deploy cannot start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Busy {
    /// The service's own deploy with this id runs.
    Deploying(String),
    /// Another process (`rootswap deploy`) holds the deploy lock.
    Locked(u32),
    /// The service is stopping.
    ShuttingDown,
}

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Busy::Deploying(id) => write!(f, "a deploy is already running (deploy {id})"),
            Busy::Locked(pid) => write!(
                f,
                "a deploy is already running (pid {pid} holds the deploy lock)"
            ),
            Busy::ShuttingDown => write!(f, "the service is shutting down"),
        }
    }
}

/// What the service answers when a deploy is asked of it ([`Service::start`]).
pub enum Answer {
    /// Deploy `id` started on this machine.
    Accepted(String),
    /// Not started: a deploy runs, or the service stops.
    Busy(Busy),
    /// This is a fleet node: its agent and the fleet's answer.
    Fleet(Arc<crate::fleet::Agent>, crate::fleet::Answer),
}

/// The service's shared state.
pub struct Service {
    pub(super) config_path: PathBuf,
    /// The site in force, swapped whole by a reload.
    pub(super) site: RwLock<Arc<Site>>,
    pub(super) cfg_text: Mutex<Option<String>>,
    /// Id of the deploy this service runs, if any; the one gate for deploys.
    pub(super) running: tokio::sync::watch::Sender<Option<String>>,
    pub(super) shutting_down: AtomicBool,
    /// Commit whose deploy failed: not retried until a new commit.
    pub(super) failed: Mutex<Option<String>>,
    pub(super) backoff: Mutex<Backoff>,
    /// Last "skipping commit X" message, to say it once per commit.
    pub(super) skip_logged: Mutex<Option<String>>,
    /// The refs changed while a deploy ran.
    pub(super) recheck: AtomicBool,
    pub(super) checks: mpsc::Sender<Check>,
    pub(super) metrics: Metrics,
    /// This node's part in a fleet (`fleet:`), once joined.
    pub(super) fleet: std::sync::OnceLock<Arc<crate::fleet::Agent>>,
    /// Webhook deliveries handled lately (a repeat starts nothing).
    pub(super) deliveries: Mutex<Deliveries>,
}

/// Locks `m`, also when a panicking holder poisoned it.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Service {
    pub(super) fn new(config_path: &Path, site: Site, checks: mpsc::Sender<Check>) -> Service {
        let layout = &site.layout;
        // A commit that failed before the service (re)started is not retried
        // in a loop either: systemd restarts must not turn into deploy loops.
        let failed = crate::history::read_last(&layout.state, 1)
            .ok()
            .and_then(|h| h.into_iter().last())
            .filter(|r| r.result == "failed")
            .and_then(|r| r.commit);
        let text = std::fs::read_to_string(config_path).ok();
        Service {
            config_path: config_path.to_path_buf(),
            site: RwLock::new(Arc::new(site)),
            cfg_text: Mutex::new(text),
            running: tokio::sync::watch::Sender::new(None),
            shutting_down: AtomicBool::new(false),
            failed: Mutex::new(failed),
            backoff: Mutex::new(Backoff::default()),
            skip_logged: Mutex::new(None),
            recheck: AtomicBool::new(false),
            checks,
            metrics: Metrics::default(),
            fleet: std::sync::OnceLock::new(),
            deliveries: Mutex::new(Deliveries::default()),
        }
    }

    /// The site in force (it reads as its configuration).
    pub fn config(&self) -> Arc<Site> {
        self.site.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// This node's fleet agent, when the config has `fleet:`.
    pub fn fleet(&self) -> Option<&Arc<crate::fleet::Agent>> {
        self.fleet.get()
    }

    /// Id of the deploy this service runs, if any.
    pub fn running(&self) -> Option<String> {
        self.running.borrow().clone()
    }

    /// Claims the right to deploy: fails when a deploy runs (here or in
    /// another process) or the service is stopping. On success the caller
    /// must hand the id to [`Service::spawn_request`].
    pub fn try_begin(&self) -> Result<String, Busy> {
        let id = deploy::new_id();
        let mut busy = None;
        let claimed = self.running.send_if_modified(|cur| {
            if self.is_shutting_down() {
                busy = Some(Busy::ShuttingDown);
                return false;
            }
            if let Some(r) = cur {
                busy = Some(Busy::Deploying(r.clone()));
                return false;
            }
            *cur = Some(id.clone());
            true
        });
        if !claimed {
            return Err(busy.unwrap_or(Busy::ShuttingDown));
        }
        if let Some(pid) = DeployLock::holder(&self.config().state_path()) {
            self.running.send_replace(None);
            return Err(Busy::Locked(pid));
        }
        Ok(id)
    }

    /// Starts `req` (a deploy or a rollback, asked by the trigger URL, a
    /// webhook or the dashboard): claims the gate and runs it in the
    /// background with its id filled in; on a fleet node, asks the fleet.
    pub fn start(self: &Arc<Self>, mut req: Request) -> Answer {
        if let Some(agent) = self.fleet() {
            return Answer::Fleet(agent.clone(), agent.request(req));
        }
        match self.try_begin() {
            Ok(id) => {
                req.id = Some(id.clone());
                self.spawn_request(id.clone(), req, None);
                Answer::Accepted(id)
            }
            Err(busy) => Answer::Busy(busy),
        }
    }

    /// Runs the claimed deploy `id` as `req` asks (a ref, a rollback) in the background.
    pub fn spawn_request(
        self: &Arc<Self>,
        id: String,
        req: Request,
        expected: Option<String>,
    ) -> tokio::task::JoinHandle<()> {
        let svc = self.clone();
        tokio::spawn(async move { svc.run_deploy(id, req, expected).await })
    }

    async fn run_deploy(self: Arc<Self>, id: String, req: Request, expected: Option<String>) {
        let cfg = self.config();
        let span = tracing::info_span!("deploy", id = %id);
        tracing::info!(parent: &span, "deploy {id} started ({})", req.trigger.as_str());
        let started = Instant::now();
        let job_cfg = cfg.clone();
        let res = tokio::task::spawn_blocking(move || deploy::deploy(&job_cfg, &req))
            .await
            .unwrap_or_else(|e| Err(anyhow!("the deploy stopped unexpectedly: {e}")));
        {
            let _enter = span.enter();
            self.after_deploy(&cfg, &id, expected, res, started.elapsed());
        }
        self.running.send_replace(None);
        if self.recheck.swap(false, Ordering::SeqCst) {
            self.request_check(Check::AfterDeploy);
        }
    }

    fn after_deploy(
        &self,
        cfg: &Config,
        id: &str,
        expected: Option<String>,
        res: Result<Outcome>,
        took: Duration,
    ) {
        match res {
            Ok(Outcome::Deployed(s)) => {
                self.metrics.count("success");
                *lock(&self.failed) = None;
                lock(&self.backoff).reset();
                for w in &s.warnings {
                    tracing::warn!("deploy {id}: {w}");
                }
                tracing::info!("deploy {id}: {}", crate::report::summary_line(&s));
            }
            Ok(Outcome::UpToDate { commit }) => {
                self.metrics.count("up_to_date");
                lock(&self.backoff).reset();
                tracing::info!("deploy {id}: {} is already live", abbrev(&commit));
            }
            Ok(Outcome::DryRun(_)) => {}
            Err(e) => {
                let msg = crate::redact::text(&format!("{e:#}")).into_owned();
                if msg.contains("already running") {
                    self.metrics.count("skipped");
                    tracing::info!("deploy {id} did not start: {msg}");
                    return;
                }
                self.metrics.count("failed");
                let state = cfg.state_path();
                let record = crate::history::find_last(&state, |r| r.id == id)
                    .ok()
                    .flatten();
                match record {
                    Some(r) => {
                        // The pipeline ran and failed: the commit itself is at fault.
                        let commit = r.commit.or(expected);
                        tracing::error!(
                            "deploy {id} failed after {:.1}s: {msg}",
                            took.as_secs_f64()
                        );
                        if let Some(c) = &commit {
                            tracing::warn!(
                                "commit {} will not be deployed again until the branch gets a new commit or a deploy is asked for by hand (rootswap deploy, POST /deploy)",
                                abbrev(c)
                            );
                        }
                        *lock(&self.failed) = commit;
                        lock(&self.backoff).reset();
                    }
                    None => {
                        // It failed before it started (unreachable repository, disk): try again later.
                        let (delay, at) = lock(&self.backoff).fail();
                        tracing::error!(
                            "deploy {id} failed after {:.1}s: {msg}",
                            took.as_secs_f64()
                        );
                        tracing::warn!(
                            "next attempt at {} (in {}s)",
                            at.format("%Y-%m-%d %H:%M:%S"),
                            delay.as_secs()
                        );
                    }
                }
            }
        }
    }

    /// Asks the poller to look at the branch (skipped and logged while a deploy runs).
    pub fn request_check(&self, why: Check) {
        if self.is_shutting_down() {
            return;
        }
        if let Some(id) = self.running() {
            if why == Check::Tick {
                tracing::info!("{why} skipped: deploy {id} is running");
            } else {
                self.recheck.store(true, Ordering::SeqCst);
            }
            return;
        }
        let cfg = self.config();
        if let Some(pid) = DeployLock::holder(&cfg.state_path()) {
            tracing::info!("{why} skipped: a deploy is running (pid {pid} holds the deploy lock)");
            return;
        }
        if self.checks.try_send(why).is_err() {
            tracing::debug!("{why}: a check is already pending");
        }
    }

    /// Re-reads the config file; an invalid one is rejected and the old one kept.
    /// Returns the old and new configuration when it changed.
    pub(super) fn reload(&self, why: &str) -> Option<(Arc<Site>, Arc<Site>)> {
        let text = match std::fs::read_to_string(&self.config_path) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(
                    "configuration reload ({why}) rejected: cannot read {}: {e}; keeping the previous configuration",
                    self.config_path.display()
                );
                return None;
            }
        };
        if lock(&self.cfg_text).as_deref() == Some(text.as_str()) {
            if why == "SIGHUP" {
                tracing::info!(
                    "configuration reload (SIGHUP): {} is unchanged",
                    self.config_path.display()
                );
            }
            return None;
        }
        let parsed = Config::parse(&text, &self.config_path).and_then(|c| {
            settings::validate(&c)?;
            Site::open(&c)
        });
        // Remember the text either way, so that the same broken file is reported once.
        *lock(&self.cfg_text) = Some(text);
        match parsed {
            Err(e) => {
                tracing::error!("configuration reload ({why}) rejected, keeping the previous configuration: {e:#}");
                None
            }
            Ok(new) => {
                let new = Arc::new(new);
                let old = std::mem::replace(
                    &mut *self.site.write().unwrap_or_else(|e| e.into_inner()),
                    new.clone(),
                );
                tracing::info!(
                    "configuration reloaded ({why}) from {}",
                    self.config_path.display()
                );
                Some((old, new))
            }
        }
    }
}

/// Seven-character form of a commit id, for messages.
pub(super) fn abbrev(c: &str) -> &str {
    crate::commit::short(c)
}
