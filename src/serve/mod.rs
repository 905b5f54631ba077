//! `rootswap serve`: the unattended service.
//!
//! It polls the branch on the `auto_deploy` schedule ([`schedule`]), watches
//! the refs of a local repository ([`watch`]), answers the deploy trigger URL
//! and Git host webhooks ([`trigger`]), and runs every deploy through
//! [`crate::deploy::deploy`]: one code path deploys, whoever asked.
//!
//! At most one deploy runs at a time. The gate is [`Service::try_begin`]:
//! a tick, a refs change or an HTTP request that finds a deploy running (the
//! service's own, or `rootswap deploy` holding the lock) is skipped and
//! logged, never queued.
//!
//! Failure policy: a deploy that fails after it started (a hook failed, the
//! health gate said no) marks its commit as failed; the service does not try
//! it again until the branch gets a new commit or someone asks by hand. A
//! failure before the pipeline starts (the repository is unreachable) is
//! retried with exponential backoff.
//!
//! SIGTERM/SIGINT let a running deploy finish, then the service exits 0;
//! SIGHUP and edits of the config file reload it (an invalid one is rejected
//! and the old one kept).

pub mod dashboard;
pub mod events;
mod listener;
mod metrics;
mod schedule;
mod trigger;
mod watch;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::deploy::{self, Outcome, Request, Trigger};
use crate::layout::Layout;
use crate::lock::DeployLock;
use crate::source::GitSource;
use crate::state::State;

pub use schedule::Backoff;

/// Runs the service in the foreground until SIGTERM or SIGINT.
///
/// `config_path` is re-read on SIGHUP and when the file changes; `cfg` is
/// its content as already loaded.
pub fn run(config_path: &Path, cfg: Config) -> Result<()> {
    schedule::validate(&cfg)?;
    trigger::validate(&cfg)?;
    // Listener connections must never take the deploys' file descriptors.
    listener::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("rootswap-serve")
        .enable_all()
        .build()
        .context("cannot start the service's async runtime")?;
    let result = rt.block_on(serve(config_path, cfg));
    // A check stuck on an unreachable network must not hold up the exit;
    // deploys have finished by now (the main loop waited for them).
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}

/// Why the service looks at the branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The service just started.
    Startup,
    /// An `auto_deploy` tick.
    Tick,
    /// The local repository's refs changed.
    RefsChanged,
    /// The refs changed while a deploy ran: look again now it is over.
    AfterDeploy,
    /// A reloaded configuration follows another repository or branch, or turned polling on.
    Reload,
    /// A Git host's push webhook: "look now", decided like a tick.
    Webhook,
}

impl Check {
    /// What a deploy this check starts is recorded as.
    pub fn trigger(self) -> Trigger {
        match self {
            Check::Webhook => Trigger::Webhook,
            _ => Trigger::Schedule,
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::Startup => "startup check",
            Check::Tick => "auto-deploy tick",
            Check::RefsChanged => "refs change",
            Check::AfterDeploy => "re-check after deploy",
            Check::Reload => "check after reload",
            Check::Webhook => "webhook push",
        })
    }
}

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

/// The service's shared state.
pub struct Service {
    config_path: PathBuf,
    cfg: RwLock<Arc<Config>>,
    cfg_text: Mutex<Option<String>>,
    /// Id of the deploy this service runs, if any; the one gate for deploys.
    running: tokio::sync::watch::Sender<Option<String>>,
    shutting_down: AtomicBool,
    /// Commit whose deploy failed: not retried until a new commit.
    failed: Mutex<Option<String>>,
    backoff: Mutex<Backoff>,
    /// Last "skipping commit X" message, to say it once per commit.
    skip_logged: Mutex<Option<String>>,
    /// The refs changed while a deploy ran.
    recheck: AtomicBool,
    checks: mpsc::Sender<Check>,
    metrics: metrics::Metrics,
    /// This node's part in a fleet (`fleet:`), once joined.
    fleet: std::sync::OnceLock<Arc<crate::fleet::Agent>>,
    /// Webhook deliveries handled lately (a repeat starts nothing).
    deliveries: Mutex<trigger::Deliveries>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Service {
    fn new(config_path: &Path, cfg: Config, checks: mpsc::Sender<Check>) -> Service {
        let layout = Layout::from_config(&cfg);
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
            cfg: RwLock::new(Arc::new(cfg)),
            cfg_text: Mutex::new(text),
            running: tokio::sync::watch::Sender::new(None),
            shutting_down: AtomicBool::new(false),
            failed: Mutex::new(failed),
            backoff: Mutex::new(Backoff::default()),
            skip_logged: Mutex::new(None),
            recheck: AtomicBool::new(false),
            checks,
            metrics: metrics::Metrics::default(),
            fleet: std::sync::OnceLock::new(),
            deliveries: Mutex::new(trigger::Deliveries::default()),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.cfg.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn is_shutting_down(&self) -> bool {
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
    /// must hand the id to [`Service::spawn_deploy`].
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

    /// Runs the claimed deploy `id` in the background; the handle ends with it.
    pub fn spawn_deploy(
        self: &Arc<Self>,
        id: String,
        trigger: Trigger,
        expected: Option<String>,
    ) -> tokio::task::JoinHandle<()> {
        let req = Request {
            trigger,
            id: Some(id.clone()),
            ..Request::manual()
        };
        self.spawn_request(id, req, expected)
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
        let res = tokio::task::spawn_blocking(move || {
            deploy::deploy(&crate::site::Site::open(&job_cfg)?, &req)
        })
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

    /// Serves the check queue: one check at a time, deploys awaited.
    async fn poller(self: Arc<Self>, mut rx: mpsc::Receiver<Check>) {
        while let Some(why) = rx.recv().await {
            if self.is_shutting_down() {
                break;
            }
            self.check_once(why).await;
        }
    }

    async fn check_once(self: &Arc<Self>, why: Check) {
        // In a fleet only the leader polls.
        if self.fleet().is_some_and(|f| !f.is_leader()) {
            return;
        }
        if let Some(id) = self.running() {
            tracing::info!("{why} skipped: deploy {id} is running");
            return;
        }
        if let Some(at) = lock(&self.backoff).waiting() {
            tracing::debug!("{why} skipped: backing off until {}", at.format("%H:%M:%S"));
            return;
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
                return;
            }
        };
        lock(&self.backoff).reset();
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
                let failed = crate::fleet::node::poll_deploy(self.fleet(), why, &h).await;
                *lock(&self.failed) = failed;
            }
            Decision::Deploy(h) => match self.try_begin() {
                Ok(id) => {
                    tracing::info!("{why}: {} moved to {}, deploying", cfg.source.branch, abbrev(&h));
                    let handle = self.spawn_deploy(id, why.trigger(), Some(h));
                    let _ = handle.await;
                }
                Err(busy) => tracing::info!("{why} skipped: {busy}"),
            },
        }
    }

    /// Re-reads the config file; an invalid one is rejected and the old one kept.
    /// Returns the old and new configuration when it changed.
    fn reload(&self, why: &str) -> Option<(Arc<Config>, Arc<Config>)> {
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
            schedule::validate(&c)?;
            trigger::validate(&c)?;
            Ok(c)
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
                    &mut *self.cfg.write().unwrap_or_else(|e| e.into_inner()),
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

/// Asks the remote for the branch head (no object download) and decides.
fn check(cfg: &Config, failed: Option<&str>) -> Result<Decision> {
    let layout = Layout::from_config(cfg);
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

/// The service proper, inside the runtime.
async fn serve(config_path: &Path, cfg: Config) -> Result<()> {
    // Signals first: a SIGTERM during start-up must not kill us half-way.
    let mut sigterm =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut sigint =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;

    let (check_tx, check_rx) = mpsc::channel(1);
    let svc = Arc::new(Service::new(config_path, cfg, check_tx));
    let cfg = svc.config();
    if let Some(c) = lock(&svc.failed).as_deref() {
        tracing::info!(
            "the last deploy of {} failed; it will not be retried until the branch gets a new commit or a deploy is asked for by hand",
            abbrev(c)
        );
    }

    if cfg.fleet.is_some() {
        let agent = crate::fleet::node::join(&svc, &cfg).await?;
        let _ = svc.fleet.set(agent);
    }
    let mut http = trigger::bind(&cfg)
        .await?
        .map(|listener| Http::spawn(&svc, listener));
    let mut sched = schedule::start(svc.clone(), &cfg.auto_deploy).await?;
    let (refs_tx, mut refs_rx) = mpsc::channel::<()>(16);
    let mut repo_watch = if cfg.auto_deploy.enabled {
        watch::repo(&cfg.source.repo, refs_tx.clone())
    } else {
        None
    };
    let (conf_tx, mut conf_rx) = mpsc::channel::<()>(16);
    let _conf_watch = watch::config_file(config_path, conf_tx);

    tokio::spawn(svc.clone().poller(check_rx));
    if cfg.auto_deploy.enabled {
        svc.request_check(Check::Startup);
    }
    tracing::info!(
        "rootswap serve: following {} of {} into {}; {}{}",
        cfg.source.branch,
        crate::redact::text(&cfg.source.repo),
        cfg.webroot.display(),
        schedule::describe(&cfg.auto_deploy),
        if repo_watch.is_some() {
            ", watching the repository's refs"
        } else {
            ""
        }
    );

    let stop_signal = loop {
        tokio::select! {
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            _ = sighup.recv() => {
                if let Some((old, new)) = svc.reload("SIGHUP") {
                    apply(&svc, &old, &new, &mut sched, &mut repo_watch, &refs_tx, &mut http).await;
                }
            }
            Some(()) = conf_rx.recv() => {
                // Editors write in several steps: let them finish.
                tokio::time::sleep(Duration::from_millis(200)).await;
                while conf_rx.try_recv().is_ok() {}
                if let Some((old, new)) = svc.reload("config file changed") {
                    apply(&svc, &old, &new, &mut sched, &mut repo_watch, &refs_tx, &mut http).await;
                }
            }
            Some(()) = refs_rx.recv() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                while refs_rx.try_recv().is_ok() {}
                svc.request_check(Check::RefsChanged);
            }
        }
    };

    svc.shutting_down.store(true, Ordering::SeqCst);
    if let Some(s) = sched.as_mut() {
        let _ = s.shutdown().await;
    }
    drop(repo_watch);
    let mut running = svc.running.subscribe();
    let current = running.borrow_and_update().clone();
    if let Some(id) = current {
        tracing::info!("{stop_signal}: waiting for deploy {id} to finish before exiting");
        loop {
            tokio::select! {
                r = running.wait_for(|r| r.is_none()) => { let _ = r; break; }
                _ = sigterm.recv() => tracing::warn!("SIGTERM ignored: deploy {id} is still running; the service exits once the site is consistent"),
                _ = sigint.recv() => tracing::warn!("SIGINT ignored: deploy {id} is still running; the service exits once the site is consistent"),
            }
        }
    }
    if let Some(agent) = svc.fleet() {
        agent.stop().await;
    }
    if let Some(h) = http {
        h.stop().await;
    }
    tracing::info!("{stop_signal}: rootswap serve stopped");
    Ok(())
}

/// The trigger URL's HTTP server, with its own stop switch (a reload that
/// changes `trigger.listen` replaces it).
struct Http {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Http {
    fn spawn(svc: &Arc<Service>, listener: tokio::net::TcpListener) -> Http {
        let (stop, rx) = tokio::sync::watch::channel(false);
        Http {
            stop,
            task: tokio::spawn(trigger::serve(svc.clone(), listener, rx)),
        }
    }

    /// Stops accepting, lets running requests finish (at most 5 s).
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Moves the trigger URL to `new`'s `trigger.listen` (or stops it). The new
/// address is bound before the old one is let go; when that fails because the
/// old listener holds the port (127.0.0.1:P -> 0.0.0.0:P), the old one is
/// stopped and the bind retried; when it still fails, the old address is
/// bound again, so a bad reload never leaves the service without its URL.
async fn rebind(svc: &Arc<Service>, old: &Config, new: &Config, http: &mut Option<Http>) {
    if old.trigger.listen == new.trigger.listen {
        return;
    }
    let shown = new.trigger.listen.as_deref().unwrap_or("off");
    match trigger::bind(new).await {
        Ok(listener) => {
            if let Some(h) = http.take() {
                h.stop().await;
            }
            *http = listener.map(|l| Http::spawn(svc, l));
            tracing::info!("trigger URL moved to {shown}");
        }
        Err(first) => {
            let Some(h) = http.take() else {
                tracing::error!("cannot apply trigger.listen: {first:#}");
                return;
            };
            h.stop().await;
            match trigger::bind(new).await {
                Ok(listener) => {
                    *http = listener.map(|l| Http::spawn(svc, l));
                    tracing::info!("trigger URL moved to {shown}");
                }
                Err(e) => {
                    tracing::error!(
                        "cannot apply trigger.listen: {e:#}; the trigger URL stays on {}",
                        old.trigger.listen.as_deref().unwrap_or("off")
                    );
                    match trigger::bind(old).await {
                        Ok(l) => *http = l.map(|l| Http::spawn(svc, l)),
                        Err(e) => {
                            tracing::error!("cannot listen on the old address again either: {e:#}")
                        }
                    }
                }
            }
        }
    }
}

/// Applies a reloaded configuration: reschedule, re-watch, re-listen.
async fn apply(
    svc: &Arc<Service>,
    old: &Config,
    new: &Config,
    sched: &mut Option<tokio_cron_scheduler::JobScheduler>,
    repo_watch: &mut Option<notify::RecommendedWatcher>,
    refs_tx: &mpsc::Sender<()>,
    http: &mut Option<Http>,
) {
    rebind(svc, old, new, http).await;
    let (a, b) = (&old.auto_deploy, &new.auto_deploy);
    if a.enabled != b.enabled || a.every != b.every || a.cron != b.cron {
        if let Some(s) = sched.as_mut() {
            let _ = s.shutdown().await;
        }
        *sched = match schedule::start(svc.clone(), b).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot apply the new auto_deploy schedule: {e:#}");
                None
            }
        };
        tracing::info!("schedule: {}", schedule::describe(b));
    }
    if old.source.repo != new.source.repo || a.enabled != b.enabled {
        *repo_watch = if b.enabled {
            watch::repo(&new.source.repo, refs_tx.clone())
        } else {
            None
        };
    }
    let moved = old.source.repo != new.source.repo || old.source.branch != new.source.branch;
    if b.enabled && (!a.enabled || moved) {
        svc.request_check(Check::Reload);
    }
}

/// Seven-character form of a commit id, for messages.
fn abbrev(c: &str) -> &str {
    crate::commit::short(c)
}
