//! `rootswap serve` from start to stop: the runtime, the signals, the
//! fleet agent, the listener, the schedule and the watches; a reload
//! applied to them; and the orderly stop (a running deploy finishes first).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify::RecommendedWatcher;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio_cron_scheduler::JobScheduler;

use super::check::Check;
use super::http::{self, Http};
use super::listener;
use super::schedule;
use super::service::{abbrev, lock, Service};
use super::settings;
use super::watch;
use crate::config::{AutoDeployConfig, Config};
use crate::fleet::Agent;
use crate::site::Site;

/// Runs the service in the foreground until SIGTERM or SIGINT.
///
/// `config_path` is re-read on SIGHUP and when the file changes; `cfg` is
/// its content as already loaded.
pub fn run(config_path: &Path, cfg: Site) -> Result<()> {
    settings::validate(&cfg)?;
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

/// The signals the service answers.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    /// Installs the handlers: first thing, so that a SIGTERM during start-up
    /// does not kill the service half-way.
    fn install() -> Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?,
        })
    }
}

/// What the running service holds besides its state: the listener, the
/// schedule, the watches and their channels.
struct Running {
    http: Option<Http>,
    sched: Option<JobScheduler>,
    repo_watch: Option<RecommendedWatcher>,
    refs_tx: mpsc::Sender<()>,
    refs_rx: mpsc::Receiver<()>,
    conf_rx: mpsc::Receiver<()>,
    _conf_watch: Option<RecommendedWatcher>,
}

/// The service proper, inside the runtime.
async fn serve(config_path: &Path, cfg: Site) -> Result<()> {
    let mut signals = Signals::install()?;
    let (check_tx, check_rx) = mpsc::channel(1);
    let svc = Arc::new(Service::new(config_path, cfg, check_tx));
    if let Some(c) = lock(&svc.failed).as_deref() {
        tracing::info!(
            "the last deploy of {} failed; it will not be retried until the branch gets a new commit or a deploy is asked for by hand",
            abbrev(c)
        );
    }
    let mut running = start(&svc, config_path).await?;
    tokio::spawn(svc.clone().poller(check_rx));
    let cfg = svc.config();
    if cfg.auto_deploy.enabled {
        svc.request_check(Check::Startup);
    }
    tracing::info!(
        "rootswap serve: following {} of {} into {}; {}{}",
        cfg.source.branch,
        crate::redact::text(&cfg.source.repo),
        cfg.webroot.display(),
        schedule::describe(&cfg.auto_deploy),
        if running.repo_watch.is_some() {
            ", watching the repository's refs"
        } else {
            ""
        }
    );
    let stop_signal = until_stopped(&svc, &mut running, &mut signals).await;
    stop(&svc, running, &mut signals, stop_signal).await;
    Ok(())
}

/// Joins the fleet (with `fleet:`), binds the listener, starts the
/// schedule and the watches.
async fn start(svc: &Arc<Service>, config_path: &Path) -> Result<Running> {
    let cfg = svc.config();
    if cfg.fleet.is_some() {
        let agent = join_fleet(svc, &cfg).await?;
        let _ = svc.fleet.set(agent);
    }
    let http = http::bind(&cfg).await?.map(|l| Http::spawn(svc, l));
    let sched = start_schedule(svc, &cfg.auto_deploy).await?;
    let (refs_tx, refs_rx) = mpsc::channel::<()>(16);
    let repo_watch = if cfg.auto_deploy.enabled {
        watch::repo(&cfg.source.repo, refs_tx.clone())
    } else {
        None
    };
    let (conf_tx, conf_rx) = mpsc::channel::<()>(16);
    let conf_watch = watch::config_file(config_path, conf_tx);
    Ok(Running {
        http,
        sched,
        repo_watch,
        refs_tx,
        refs_rx,
        conf_rx,
        _conf_watch: conf_watch,
    })
}

/// The auto-deploy schedule: each tick asks for a check.
async fn start_schedule(svc: &Arc<Service>, a: &AutoDeployConfig) -> Result<Option<JobScheduler>> {
    let svc = svc.clone();
    schedule::start(a, move || svc.request_check(Check::Tick)).await
}

/// Serves reloads and refs changes until SIGTERM or SIGINT; returns which.
async fn until_stopped(svc: &Arc<Service>, r: &mut Running, signals: &mut Signals) -> &'static str {
    loop {
        tokio::select! {
            _ = signals.term.recv() => return "SIGTERM",
            _ = signals.int.recv() => return "SIGINT",
            _ = signals.hup.recv() => {
                if let Some((old, new)) = svc.reload("SIGHUP") {
                    apply(svc, &old, &new, r).await;
                }
            }
            Some(()) = r.conf_rx.recv() => {
                // Editors write in several steps: let them finish.
                tokio::time::sleep(Duration::from_millis(200)).await;
                while r.conf_rx.try_recv().is_ok() {}
                if let Some((old, new)) = svc.reload("config file changed") {
                    apply(svc, &old, &new, r).await;
                }
            }
            Some(()) = r.refs_rx.recv() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                while r.refs_rx.try_recv().is_ok() {}
                svc.request_check(Check::RefsChanged);
            }
        }
    }
}

/// Stops: no new deploys, a running one finishes (further signals are
/// ignored meanwhile), the node leaves the fleet, the listener closes.
async fn stop(svc: &Arc<Service>, mut r: Running, signals: &mut Signals, stop_signal: &str) {
    svc.shutting_down.store(true, Ordering::SeqCst);
    if let Some(s) = r.sched.as_mut() {
        let _ = s.shutdown().await;
    }
    drop(r.repo_watch.take());
    let mut running = svc.running.subscribe();
    let current = running.borrow_and_update().clone();
    if let Some(id) = current {
        tracing::info!("{stop_signal}: waiting for deploy {id} to finish before exiting");
        loop {
            tokio::select! {
                r = running.wait_for(|r| r.is_none()) => { let _ = r; break; }
                _ = signals.term.recv() => tracing::warn!("SIGTERM ignored: deploy {id} is still running; the service exits once the site is consistent"),
                _ = signals.int.recv() => tracing::warn!("SIGINT ignored: deploy {id} is still running; the service exits once the site is consistent"),
            }
        }
    }
    if let Some(agent) = svc.fleet() {
        agent.stop().await;
    }
    if let Some(h) = r.http.take() {
        h.stop().await;
    }
    tracing::info!("{stop_signal}: rootswap serve stopped");
}

/// Joins the fleet: the agent reads the service's configuration in force
/// and asks it to poll once it leads.
async fn join_fleet(svc: &Arc<Service>, cfg: &Config) -> Result<Arc<Agent>> {
    let for_config = Arc::downgrade(svc);
    let for_leader = for_config.clone();
    let fallback = svc.config();
    Agent::start(
        cfg,
        Box::new(move || {
            for_config
                .upgrade()
                .map(|s| s.config())
                .unwrap_or_else(|| fallback.clone())
        }),
        Box::new(move || {
            if let Some(s) = for_leader.upgrade() {
                if s.config().auto_deploy.enabled {
                    s.request_check(Check::Startup);
                }
            }
        }),
    )
    .await
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
    match http::bind(new).await {
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
            match http::bind(new).await {
                Ok(listener) => {
                    *http = listener.map(|l| Http::spawn(svc, l));
                    tracing::info!("trigger URL moved to {shown}");
                }
                Err(e) => {
                    tracing::error!(
                        "cannot apply trigger.listen: {e:#}; the trigger URL stays on {}",
                        old.trigger.listen.as_deref().unwrap_or("off")
                    );
                    match http::bind(old).await {
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
async fn apply(svc: &Arc<Service>, old: &Config, new: &Config, r: &mut Running) {
    rebind(svc, old, new, &mut r.http).await;
    let (sched, repo_watch, refs_tx) = (&mut r.sched, &mut r.repo_watch, &r.refs_tx);
    let (a, b) = (&old.auto_deploy, &new.auto_deploy);
    if a.enabled != b.enabled || a.every != b.every || a.cron != b.cron {
        if let Some(s) = sched.as_mut() {
            let _ = s.shutdown().await;
        }
        *sched = match start_schedule(svc, b).await {
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
