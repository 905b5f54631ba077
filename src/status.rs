//! `rootswap status`: what is live, what is deployed, what is running.

use anyhow::Result;
use serde::Serialize;

use crate::config::Config;
use crate::deploy_lock::DeployLock;
use crate::layout::{Layout, LinkState};
use crate::site::Site;
use crate::snapshots::{self, Listing};
use crate::state::State;

/// Everything `status` reports (also `GET /status` of the service).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Webroot directory.
    pub webroot: String,
    /// What the link points at (`ROOT`, a snapshot name), or null.
    pub live: Option<String>,
    /// `ok`, `missing` (never deployed) or `not-a-symlink`.
    pub link: String,
    /// Commit ROOT holds.
    pub deployed_commit: Option<String>,
    /// Branch followed.
    pub branch: String,
    /// Head of the branch in the cache (as of the last fetch), if known.
    pub branch_head: Option<String>,
    /// pid of a running deploy, if any.
    pub deploy_running: Option<u32>,
    /// Snapshots.
    pub snapshots: Vec<Listing>,
    /// The last deploy recorded in the history.
    pub last_deploy: Option<crate::history::Record>,
    /// A deploy that was interrupted (crash, kill) and will be recovered by the next deploy.
    pub interrupted: Option<crate::journal::Journal>,
    /// Subject line of the deployed commit (from the cache repository), if known.
    pub deployed_subject: Option<String>,
    /// When the deployed commit went live (end of its last successful deploy, RFC 3339), if recorded.
    pub deployed_at: Option<String>,
    /// The service's polling schedule, e.g. `every 1m`, `cron 0 */5 * * * *`, `off`.
    pub auto_deploy: String,
    /// When `rootswap serve` last asked the remote for the branch head.
    pub last_poll: Option<String>,
    /// When it will ask next (`every` schedules, while the service polls).
    pub next_poll: Option<String>,
    /// `user_content.shared` directories and whether ROOT links them yet.
    pub shared: Vec<SharedDir>,
    /// Where deploys clear php-fpm's OPcache (`opcache.fastcgi`, or the socket found).
    pub opcache: String,
    /// Set when deploys cannot clear php-fpm's OPcache (php-fpm not found).
    pub opcache_warning: Option<String>,
}

/// One shared directory, as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SharedDir {
    /// Path relative to ROOT.
    pub path: String,
    /// Where it lives.
    pub store: String,
    /// ROOT holds the symlink to `store` (else the next deploy puts it there).
    pub linked: bool,
}

/// Gathers the status (reads only; takes no lock).
pub fn gather(site: &Site) -> Result<Status> {
    let (cfg, layout) = (&site.config, &site.layout);
    let state = site.state()?;
    let (live, link) = match layout.link_state()? {
        LinkState::Missing => (None, "missing"),
        LinkState::NotALink => (None, "not-a-symlink"),
        LinkState::Symlink(t) => (Some(t), "ok"),
    };
    let snapshots = if layout.webroot.is_dir() {
        snapshots::list(layout, &state)?
    } else {
        Vec::new()
    };
    let deployed_at = deployed_at(layout, &state)?;
    let last_poll = crate::fsutil::read_optional(&layout.state.join("last-poll"))
        .ok()
        .flatten()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t.trim()).ok());
    let (opcache, opcache_warning) = opcache_facts(site);
    // A running deploy's journal is not an interrupted one.
    let deploy_running = DeployLock::holder(&layout.state);
    Ok(Status {
        webroot: layout.webroot.display().to_string(),
        live,
        link: link.to_string(),
        deployed_commit: state.deployed.clone(),
        branch: cfg.source.branch.clone(),
        branch_head: branch_head(layout, &cfg.source.branch),
        deploy_running,
        snapshots,
        last_deploy: crate::history::read_last(&layout.state, 1)?.pop(),
        interrupted: if deploy_running.is_some() {
            None
        } else {
            crate::recover::pending(&layout.state)
        },
        deployed_subject: deployed_subject(layout, &state),
        deployed_at,
        auto_deploy: auto_deploy_text(cfg),
        last_poll: last_poll.map(|t| t.to_rfc3339()),
        next_poll: next_poll(cfg, last_poll),
        shared: shared_dirs(site),
        opcache,
        opcache_warning,
    })
}

/// The head of `branch` in the cache repository, as of the last fetch.
fn branch_head(layout: &Layout, branch: &str) -> Option<String> {
    git2::Repository::open_bare(layout.state.join("repo.git"))
        .ok()
        .and_then(|r| {
            r.refname_to_id(&format!("refs/remotes/origin/{branch}"))
                .ok()
        })
        .map(|o| o.to_string())
}

/// When the deployed commit went live: the end of its last successful deploy.
fn deployed_at(layout: &Layout, state: &State) -> Result<Option<String>> {
    // Read from history.jsonl's end, so a long history costs nothing here.
    Ok(match &state.deployed {
        Some(live) => crate::history::find_last(&layout.state, |r| {
            r.result == "success" && r.commit.as_ref() == Some(live)
        })?
        .map(|r| r.finished),
        None => None,
    })
}

/// The deployed commit's subject line, from the cache repository.
fn deployed_subject(layout: &Layout, state: &State) -> Option<String> {
    let c = state.deployed.as_deref()?;
    let repo = git2::Repository::open_bare(layout.state.join("repo.git")).ok()?;
    let commit = repo.find_commit(git2::Oid::from_str(c).ok()?).ok()?;
    commit.summary().map(str::to_owned)
}

/// The polling schedule in words: `off`, `cron …`, `every …`.
fn auto_deploy_text(cfg: &Config) -> String {
    let a = &cfg.auto_deploy;
    match (a.enabled, &a.every, &a.cron) {
        (false, _, _) => "off".to_string(),
        (true, _, Some(c)) => format!("cron {c}"),
        (true, Some(d), None) => format!("every {}", humantime::format_duration(*d)),
        (true, None, None) => "every 1m".to_string(),
    }
}

/// `user_content.shared` and whether ROOT links each yet.
fn shared_dirs(site: &Site) -> Vec<SharedDir> {
    let sh = &site.shared;
    sh.paths()
        .iter()
        .map(|p| SharedDir {
            path: p.display().to_string(),
            store: sh.store(p).display().to_string(),
            linked: std::fs::read_link(site.layout.root().join(p)).ok() == Some(sh.target(p)),
        })
        .collect()
}

/// Where deploys clear php-fpm's OPcache, and the warning when they cannot.
fn opcache_facts(site: &Site) -> (String, Option<String>) {
    match site.php_fpm() {
        Ok(l) => (l.describe(), l.warning()),
        Err(e) => (
            format!("{e:#}"),
            Some(format!("OPcache not cleared by deploys: {e:#}")),
        ),
    }
}

/// The next poll of an `every` schedule: the last poll plus the interval,
/// when the last poll is recent enough that the service is evidently polling.
fn next_poll(cfg: &Config, last: Option<chrono::DateTime<chrono::FixedOffset>>) -> Option<String> {
    let a = &cfg.auto_deploy;
    if !a.enabled || a.cron.is_some() {
        return None;
    }
    let every =
        chrono::Duration::from_std(a.every.unwrap_or(std::time::Duration::from_secs(60))).ok()?;
    let next = last? + every;
    let now = chrono::Local::now().fixed_offset();
    // Two intervals without a poll: the service is not running (or cannot reach the remote).
    (next + every > now).then(|| next.max(now).to_rfc3339())
}
