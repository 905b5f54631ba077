//! SHIM: replaced at merge.
//!
//! Stand-in for the prepare/commit halves the lead is building in
//! `src/deploy/` (issue 10), with the same signatures as the contract
//! (`deploy::prepare`, `Prepare`, `Prepared`), so that the fleet compiles and
//! runs before that split lands. It is not the real split: `prepare` fetches,
//! resolves, takes the single-node deploy lock and runs the hooks in a
//! scratch checkout of the commit (so a hook that fails fails the prepare,
//! and a slow hook makes a slow prepare) without touching ROOT or the link;
//! `commit` then runs today's whole `deploy::deploy` of that commit (hooks
//! again, this time in ROOT). So before the merge the mixed-version window is
//! a whole single-node deploy wide; after it, only the second half.
//!
//! At merge: delete this file and `pub mod shim;`, and in
//! [`super::node::prepare_local`] call `crate::deploy::prepare` with
//! `snapshot_name` and `fleet_id` set in the `Request`.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::config::Config;
use crate::deploy::{self, Outcome, Request};
use crate::hooks::{self, HookEnv};
use crate::layout::Layout;
use crate::lock::DeployLock;
use crate::source::GitSource;
use crate::state::State;

/// SHIM: what `deploy::prepare` returns.
#[allow(clippy::large_enum_variant)] // the contract's shape; returned once per deploy
pub enum Prepare {
    /// The commit is already live (nothing was touched).
    UpToDate {
        /// The live commit.
        commit: String,
    },
    /// Ready to switch.
    Ready(Prepared),
}

/// SHIM: a prepared deploy, waiting for the fleet's decision.
pub struct Prepared {
    cfg: Config,
    req: Request,
    commit: String,
    snapshot: Option<String>,
    lock: Option<DeployLock>,
}

/// SHIM: first half of a deploy (see the module docs for what it really does).
pub fn prepare(cfg: &Config, req: &Request, snapshot_name: Option<String>) -> Result<Prepare> {
    let layout = Layout::from_config(cfg);
    layout.preflight()?;
    std::fs::create_dir_all(&layout.state)
        .with_context(|| format!("cannot create state directory {}", layout.state.display()))?;
    let lock = DeployLock::acquire(&layout.state)?;
    let source = GitSource::open(&layout.state, &cfg.source)?;
    source.clear_stale_locks()?;
    source.fetch(req.reference.is_some())?;
    let commit = source.resolve(req.reference.as_deref())?;
    let state = State::load(&layout.state)?;
    if state.deployed.as_deref() == Some(commit.to_string().as_str())
        && !req.force
        && !layout.root_is_empty()?
    {
        return Ok(Prepare::UpToDate {
            commit: commit.to_string(),
        });
    }
    let scratch = scratch_dir(&layout);
    let _ = std::fs::remove_dir_all(&scratch);
    let plan = source.plan(None, commit)?;
    source.checkout(&plan, &scratch, |_| {})?;
    let env = HookEnv {
        commit: commit.to_string(),
        previous_commit: state.deployed.clone().unwrap_or_default(),
        snapshot: String::new(),
        root: scratch.display().to_string(),
        extra: cfg
            .hooks
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    let ran = hooks::run_all(
        "after_checkout",
        &cfg.hooks.after_checkout,
        &scratch,
        &env,
        cfg.hooks.timeout,
    )
    .and_then(|_| {
        hooks::run_all(
            "before_switch",
            &cfg.hooks.before_switch,
            &scratch,
            &env,
            cfg.hooks.timeout,
        )
    });
    let _ = std::fs::remove_dir_all(&scratch);
    ran?;
    let mut req = req.clone();
    req.reference = Some(commit.to_string());
    Ok(Prepare::Ready(Prepared {
        cfg: cfg.clone(),
        req,
        commit: commit.to_string(),
        snapshot: snapshot_name,
        lock: Some(lock),
    }))
}

fn scratch_dir(layout: &Layout) -> PathBuf {
    layout.state.join("fleet-prepare")
}

impl Prepared {
    /// Full hex commit being deployed.
    pub fn commit_id(&self) -> &str {
        &self.commit
    }

    /// Snapshot name serving now (None on a first deploy).
    pub fn snapshot(&self) -> Option<&str> {
        self.snapshot.as_deref()
    }

    /// SHIM: second half: here, today's whole deploy of the commit.
    pub fn commit(mut self) -> Result<Outcome> {
        drop(self.lock.take());
        deploy::deploy(&self.cfg, &self.req)
    }

    /// SHIM: nothing was touched, so nothing to restore.
    pub fn abort(self, reason: &str) -> Result<()> {
        tracing::info!("deploy of {} aborted: {reason}", &self.commit[..7]);
        Ok(())
    }
}
