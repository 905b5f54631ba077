//! A node of the fleet, inside `rootswap serve`: membership on a lease,
//! the leader election, and the node's half of every fleet deploy
//! (prepare, report, wait for the decision, commit or abort), plus the
//! catch-up of a node that missed a commit point.

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use super::coordinator::{self, Coordinate, View, Waker};
use super::etcd::{absent, put_op, Etcd};
use super::settle::Verdict;
use super::{now_ms, Committed, DeployRecord, Member, NodeReport, NodeState};
use crate::config::Config;
use crate::deploy::{Prepare, Request, Switched, Trigger};
use crate::layout::Layout;
use crate::lock::DeployLock;
use crate::state::State;

/// Gives the agent the configuration in force (the service reloads it).
pub type ConfigFn = Box<dyn Fn() -> Arc<Config> + Send + Sync>;

/// Called when this node becomes the leader (the service then polls).
pub type LeaderFn = Box<dyn Fn() + Send + Sync>;

/// This node's part in the fleet, shared by the service's tasks.
pub struct Agent {
    etcd: Etcd,
    node: String,
    ttl: Duration,
    /// `fleet.switch_delay`: the most this node waits for a named instant.
    switch_delay: Duration,
    config: ConfigFn,
    on_leader: LeaderFn,
    lease: Mutex<i64>,
    member: Mutex<Member>,
    leader: AtomicBool,
    /// Name and trigger address of the leader, as last seen.
    leader_seen: Mutex<Option<(String, Option<String>)>>,
    caught_up: AtomicBool,
    /// Held by a deploy or catch-up in progress on this node.
    busy: tokio::sync::Mutex<()>,
    stopping: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Agent {
    /// Joins the fleet: connects (an unreachable etcd or a node id already
    /// alive elsewhere is an error), recovers an interrupted deploy, takes a
    /// lease, registers, campaigns, and starts following deploy records.
    pub async fn start(cfg: &Config, config: ConfigFn, on_leader: LeaderFn) -> Result<Arc<Agent>> {
        let fleet = cfg
            .fleet
            .as_ref()
            .ok_or_else(|| anyhow!("no `fleet:` section"))?;
        let etcd = Etcd::connect(fleet).await?;
        let key = etcd.keys.member(&fleet.node);
        if let Some(old) = etcd.get::<Member>(&key).await? {
            let ours = old.value.host == crate::fsutil::host_name() && !pid_alive(old.value.pid);
            if !ours {
                anyhow::bail!(
                    "fleet: node id `{}` is already alive in site {} (pid {} on {}); give each node its own `fleet.node`",
                    fleet.node,
                    fleet.site,
                    old.value.pid,
                    old.value.host
                );
            }
            // Our own predecessor, killed: its key waits for its lease to expire.
            etcd.delete(&key).await?;
        }
        recover_interrupted(cfg).await?;
        let member = Member {
            node: fleet.node.clone(),
            host: crate::fsutil::host_name(),
            pid: std::process::id(),
            since: chrono::Local::now().to_rfc3339(),
            trigger: cfg.trigger.listen.clone(),
            live: State::load(&Layout::from_config(cfg).state)
                .ok()
                .and_then(|s| s.deployed),
            caught_up: false,
        };
        let agent = Arc::new(Agent {
            etcd,
            node: fleet.node.clone(),
            ttl: fleet.lease,
            switch_delay: fleet.switch_delay,
            config,
            on_leader,
            lease: Mutex::new(0),
            member: Mutex::new(member),
            leader: AtomicBool::new(false),
            leader_seen: Mutex::new(None),
            caught_up: AtomicBool::new(false),
            busy: tokio::sync::Mutex::new(()),
            stopping: AtomicBool::new(false),
        });
        agent.register().await?;
        tracing::info!(
            "fleet: node {} joined site {} (etcd {})",
            agent.node,
            fleet.site,
            fleet.etcd.join(", ")
        );
        tokio::spawn(agent.clone().membership());
        tokio::spawn(agent.clone().follow());
        tokio::spawn(agent.clone().watch_leader());
        Ok(agent)
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether this node leads the fleet (polls the branch, answers the trigger).
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// The leader's node id and trigger address, as last seen.
    pub fn leader(&self) -> Option<(String, Option<String>)> {
        lock(&self.leader_seen).clone()
    }

    /// False while the fleet committed a version this node does not serve yet.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::SeqCst)
    }

    /// Whether a deploy or catch-up runs on this node.
    pub fn deploying(&self) -> bool {
        self.busy.try_lock().is_err()
    }

    /// The etcd client.
    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// Coordinates a fleet deploy from this node (the leader's poll or trigger).
    pub async fn coordinate(
        &self,
        trigger: Trigger,
        reference: Option<String>,
        force: bool,
        id: Option<String>,
    ) -> Result<coordinator::FleetOutcome> {
        let cfg = (self.config)();
        let req = Coordinate {
            reference,
            force,
            coordinator: self.node.clone(),
            id,
            trigger: trigger.as_str().to_string(),
        };
        let log =
            |e: coordinator::Event| tracing::info!("fleet: {}", super::status::event_line(&e));
        coordinator::coordinate(&self.etcd, &cfg, req, &log).await
    }

    /// Leaves the fleet: the membership key and the leadership go at once.
    /// A deploy in flight here is then aborted by its coordinator; this waits
    /// (at most two leases) for this node's part of it to end.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let lease = *lock(&self.lease);
        let _ = self.etcd.revoke(lease).await;
        let _ = tokio::time::timeout(self.ttl * 2, self.busy.lock()).await;
    }

    async fn register(&self) -> Result<()> {
        let lease = self.etcd.grant(self.ttl).await?;
        *lock(&self.lease) = lease;
        self.publish().await
    }

    /// Writes this node's membership value (on its lease).
    async fn publish(&self) -> Result<()> {
        let lease = *lock(&self.lease);
        let mut m = lock(&self.member).clone();
        m.caught_up = self.caught_up();
        self.etcd
            .put(&self.etcd.keys.member(&self.node), &m, Some(lease))
            .await
    }

    fn set_caught_up(self: &Arc<Self>, yes: bool, live: Option<String>) {
        self.caught_up.store(yes, Ordering::SeqCst);
        if live.is_some() {
            lock(&self.member).live = live;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let _ = me.publish().await;
        });
    }

    /// Keeps the lease alive and campaigns; a lost lease (etcd unreachable
    /// or this process paused longer than the lease) means a new lease, a
    /// new membership key and a new campaign.
    async fn membership(self: Arc<Self>) {
        loop {
            let lease = *lock(&self.lease);
            let (tx, mut lost) = tokio::sync::watch::channel(false);
            let keeper = self.etcd.keep_alive(lease, self.ttl, tx);
            let campaign = tokio::spawn(self.clone().campaign(lease));
            let _ = lost.wait_for(|l| *l).await;
            keeper.abort();
            campaign.abort();
            self.leader.store(false, Ordering::SeqCst);
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            tracing::warn!(
                "fleet: node {} lost its lease (etcd unreachable, or this process was paused); joining again",
                self.node
            );
            loop {
                if self.register().await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    async fn campaign(self: Arc<Self>, lease: i64) {
        let mut c = self.etcd.client();
        let name = self.etcd.keys.election();
        loop {
            match c.campaign(name.as_str(), self.node.as_str(), lease).await {
                Ok(_) => {
                    self.leader.store(true, Ordering::SeqCst);
                    tracing::info!("fleet: node {} is the leader", self.node);
                    (self.on_leader)();
                    return;
                }
                Err(e) => {
                    tracing::debug!("fleet: campaign: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Keeps [`Agent::leader`] fresh.
    async fn watch_leader(self: Arc<Self>) {
        let name = self.etcd.keys.election();
        while !self.stopping.load(Ordering::SeqCst) {
            let mut c = self.etcd.client();
            if let Ok(Ok(r)) =
                tokio::time::timeout(Duration::from_secs(3), c.leader(name.as_str())).await
            {
                let node = r
                    .kv()
                    .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
                let seen = match node {
                    Some(n) => {
                        let addr = self
                            .etcd
                            .get::<Member>(&self.etcd.keys.member(&n))
                            .await
                            .ok()
                            .flatten()
                            .and_then(|m| m.value.trigger);
                        Some((n, addr))
                    }
                    None => None,
                };
                *lock(&self.leader_seen) = seen;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Catches up, then follows new deploy records and commit points.
    async fn follow(self: Arc<Self>) {
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            // Where we are now: everything after this revision is watched.
            let rev = match self.etcd.list(&self.etcd.keys.last()).await {
                Ok((_, rev)) => rev,
                Err(e) => {
                    tracing::warn!("fleet: {e:#}; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            self.clone().resume().await;
            let Ok(mut stream) = self
                .etcd
                .watch_prefix(&self.etcd.keys.deploys(), rev + 1)
                .await
            else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            // A committed record arriving while we run a deploy is handled by
            // that deploy; the watch of `committed` is the catch-up's.
            let mut committed = self
                .etcd
                .watch_prefix(&self.etcd.keys.committed(), rev + 1)
                .await
                .ok();
            loop {
                tokio::select! {
                    m = stream.message() => match m {
                        Ok(Some(r)) if !r.canceled() => {
                            for ev in r.events() {
                                if ev.event_type() != etcd_client::EventType::Put {
                                    continue;
                                }
                                let Some(kv) = ev.kv() else { continue };
                                let key = String::from_utf8_lossy(kv.key()).into_owned();
                                let is_record = self
                                    .etcd
                                    .keys
                                    .split_deploy_key(&key)
                                    .is_some_and(|(_, rest)| rest.is_empty());
                                if is_record && kv.version() == 1 {
                                    if let Ok(rec) = serde_json::from_slice::<DeployRecord>(kv.value()) {
                                        tokio::spawn(self.clone().take_part(rec));
                                    }
                                }
                            }
                        }
                        // Broken or compacted: read the state again and re-watch.
                        _ => break,
                    },
                    m = async { match committed.as_mut() { Some(c) => c.message().await, None => std::future::pending().await } } => match m {
                        Ok(Some(r)) if !r.canceled() => {
                            if !r.events().is_empty() {
                                tokio::spawn(self.clone().catch_up());
                            }
                        }
                        _ => break,
                    },
                }
            }
        }
    }

    /// At start (or after a broken watch): a deploy in flight that names this
    /// node, and the committed version.
    async fn resume(self: Arc<Self>) {
        if let Ok(Some(last)) = self.etcd.get::<String>(&self.etcd.keys.last()).await {
            let id = last.value;
            let rec = self
                .etcd
                .get::<DeployRecord>(&self.etcd.keys.record(&id))
                .await;
            if let Ok(Some(rec)) = rec {
                let rec = rec.value;
                let view = View::read(&self.etcd, &id).await.unwrap_or_default();
                let open = !view.committed && view.aborted.is_none();
                if open && rec.members.contains(&self.node) && !self.deploying() {
                    match view.nodes.get(&self.node).map(|r| r.state) {
                        Some(NodeState::Preparing) => {
                            // We died while preparing it: what we prepared is gone.
                            let r = NodeReport::now(NodeState::Failed)
                                .with_error("the node restarted while preparing");
                            let _ = self.write_state(&id, &r).await;
                        }
                        None => {
                            tokio::spawn(self.clone().take_part(rec));
                            return;
                        }
                        _ => {}
                    }
                }
            }
        }
        self.catch_up().await;
    }

    /// Brings this node to the fleet's committed version with a normal deploy.
    async fn catch_up(self: Arc<Self>) {
        let _busy = self.busy.lock().await;
        let cfg = (self.config)();
        let committed = match self
            .etcd
            .get::<Committed>(&self.etcd.keys.committed())
            .await
        {
            Ok(c) => c.map(|c| c.value),
            Err(e) => {
                tracing::warn!("fleet: cannot read the committed version: {e:#}");
                return;
            }
        };
        let layout = Layout::from_config(&cfg);
        let live = State::load(&layout.state).ok().and_then(|s| s.deployed);
        let Some(c) = committed else {
            self.set_caught_up(true, live);
            return;
        };
        if live.as_deref() == Some(c.commit.as_str()) {
            self.set_caught_up(true, live);
            return;
        }
        // This node's switch to it already failed: the fleet reverts (and
        // `committed` goes back); trying again meanwhile would fail again.
        let mine = self
            .etcd
            .get::<NodeReport>(&self.etcd.keys.node_state(&c.id, &self.node))
            .await;
        if matches!(&mine, Ok(Some(r)) if r.value.state == NodeState::SwitchFailed) {
            self.set_caught_up(false, live);
            return;
        }
        self.set_caught_up(false, None);
        tracing::info!(
            "fleet: the fleet committed {} (deploy {}), this node serves {}: catching up",
            crate::commit::short(&c.commit),
            c.id,
            live.as_deref()
                .map(|l| crate::commit::short(&l))
                .unwrap_or("nothing")
        );
        let req = Request {
            reference: Some(c.commit.clone()),
            trigger: Trigger::Schedule,
            fleet_id: Some(c.id.clone()),
            ..Request::manual()
        };
        let job = cfg.clone();
        let res = tokio::task::spawn_blocking(move || {
            crate::deploy::deploy(&crate::site::Site::open(&job)?, &req)
        })
        .await
        .unwrap_or_else(|e| Err(anyhow!("the deploy stopped unexpectedly: {e}")));
        match res {
            Ok(_) => {
                let mut r = NodeReport::now(NodeState::Switched);
                r.rename_ns = rename_instant(&layout);
                let _ = self.write_state(&c.id, &r).await;
                self.set_caught_up(true, Some(c.commit.clone()));
                tracing::info!("fleet: caught up with deploy {}", c.id);
            }
            Err(e) => {
                tracing::error!(
                    "fleet: cannot catch up with deploy {}: {e:#}; this node answers 503 on /health until it has",
                    c.id
                );
            }
        }
    }

    /// Writes this node's report, retrying for a while when etcd does not answer.
    async fn write_state(&self, id: &str, r: &NodeReport) -> Result<()> {
        let key = self.etcd.keys.node_state(id, &self.node);
        let mut tries = 0;
        loop {
            match self.etcd.put(&key, r, None).await {
                Ok(()) => return Ok(()),
                Err(e) if tries >= 20 => return Err(e),
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }

    /// This node's part of deploy `rec`.
    async fn take_part(self: Arc<Self>, rec: DeployRecord) {
        if !rec.members.contains(&self.node) {
            return;
        }
        let _busy = self.busy.lock().await;
        let k = self.etcd.keys.clone();
        let preparing = NodeReport::now(NodeState::Preparing);
        let started = self
            .etcd
            .txn(
                vec![absent(&k.abort(&rec.id)), absent(&k.commit(&rec.id))],
                vec![put_op(&k.node_state(&rec.id, &self.node), &preparing, None)],
            )
            .await;
        if !matches!(started, Ok((true, _))) {
            return;
        }
        tracing::info!(
            "fleet: deploy {} of {}: preparing (coordinator {})",
            rec.id,
            rec.described,
            rec.coordinator
        );
        let cfg = (self.config)();
        let job = (cfg.clone(), rec.clone());
        let prepared = tokio::task::spawn_blocking(move || prepare_local(&job.0, &job.1))
            .await
            .unwrap_or_else(|e| Err(anyhow!("the prepare stopped unexpectedly: {e}")));
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("{e:#}");
                tracing::error!("fleet: deploy {}: prepare failed: {msg}", rec.id);
                let r = NodeReport::now(NodeState::Failed).with_error(msg);
                let _ = self.write_state(&rec.id, &r).await;
                return;
            }
        };
        let up_to_date = matches!(prepared, Prepare::UpToDate { .. });
        let mut ready = NodeReport::now(NodeState::Prepared);
        ready.up_to_date = up_to_date;
        // Retried while etcd does not answer: the write may have been applied
        // without our hearing it, so only `decision` (reading commit/abort) decides.
        let mut wrote = None;
        while now_ms() < rec.deadline_ms {
            let r = self
                .etcd
                .txn(
                    vec![absent(&k.abort(&rec.id))],
                    vec![
                        put_op(&k.prepared(&rec.id, &self.node), &now_ms(), None),
                        put_op(&k.node_state(&rec.id, &self.node), &ready, None),
                    ],
                )
                .await;
            match r {
                Ok((ok, _)) => {
                    wrote = Some(ok);
                    break;
                }
                Err(e) => {
                    tracing::warn!(
                        "fleet: deploy {}: cannot report prepared yet: {e:#}",
                        rec.id
                    );
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        let decision = match wrote {
            Some(false) => Decision::Abort("aborted while this node prepared".into()),
            _ => self.decision(&rec).await,
        };
        self.finish(&cfg, &rec, prepared, decision).await;
    }

    /// Waits for `commit` or `abort`; aborts itself when the coordinator's
    /// lock is gone or the deadline passed (an abort never wins over a commit).
    async fn decision(&self, rec: &DeployRecord) -> Decision {
        let k = &self.etcd.keys;
        let mut waker = Waker::new(&self.etcd, &k.under(&rec.id)).await;
        let grace = self.ttl.as_millis() as i64;
        let mut ran_once = false;
        loop {
            if let Ok(view) = View::read(&self.etcd, &rec.id).await {
                if view.committed {
                    return Decision::Commit(view.switch_at_ms.unwrap_or_else(now_ms));
                }
                if let Some(r) = view.aborted {
                    return Decision::Abort(r);
                }
                if view.once.as_deref() == Some(self.node.as_str()) && !ran_once {
                    ran_once = true;
                    self.run_once(rec).await;
                    continue;
                }
                let lock = self.etcd.get::<coordinator::Busy>(&k.lock()).await;
                let reason = match lock {
                    Ok(Some(l)) if l.create_revision == rec.lock_revision => None,
                    Ok(_) => Some(format!(
                        "the coordinator ({}) went away before the commit point",
                        rec.coordinator
                    )),
                    Err(_) => None,
                };
                let reason = reason.or_else(|| {
                    (now_ms() > rec.deadline_ms + grace)
                        .then(|| "prepare_timeout passed before the commit point".to_string())
                });
                if let Some(reason) = reason {
                    let _ = coordinator::abort(&self.etcd, &rec.id, &reason).await;
                    continue;
                }
            }
            waker.wait(&self.etcd, Duration::from_millis(250)).await;
        }
    }

    /// Runs `hooks.once` in this node's ROOT (the new version, not served
    /// yet) and reports the result.
    async fn run_once(&self, rec: &DeployRecord) {
        let cfg = (self.config)();
        let layout = Layout::from_config(&cfg);
        let env = crate::hooks::HookEnv {
            commit: rec.commit.clone(),
            previous_commit: lock(&self.member).live.clone().unwrap_or_default(),
            snapshot: layout.entry(&rec.snapshot).to_string_lossy().into_owned(),
            root: layout.root().to_string_lossy().into_owned(),
            extra: cfg.hooks.env.clone().into_iter().collect(),
        };
        tracing::info!("fleet: deploy {}: running hooks.once on this node", rec.id);
        let job = cfg.clone();
        let res = tokio::task::spawn_blocking(move || {
            let root = Layout::from_config(&job).root();
            crate::hooks::run_all("once", &job.hooks.once, &root, &env, job.hooks.timeout)
        })
        .await
        .unwrap_or_else(|e| Err(anyhow!("hooks.once stopped unexpectedly: {e}")));
        let k = &self.etcd.keys;
        let wrote = match res {
            Ok(()) => self.etcd.put(&k.once_done(&rec.id), &now_ms(), None).await,
            Err(e) => {
                let msg = format!("{e:#}");
                tracing::error!("fleet: deploy {}: hooks.once failed: {msg}", rec.id);
                self.etcd.put(&k.once_failed(&rec.id), &msg, None).await
            }
        };
        if let Err(e) = wrote {
            tracing::error!("fleet: deploy {}: cannot report hooks.once: {e:#}", rec.id);
        }
    }

    async fn finish(
        self: &Arc<Self>,
        cfg: &Arc<Config>,
        rec: &DeployRecord,
        prepared: Prepare,
        decision: Decision,
    ) {
        let layout = Layout::from_config(cfg);
        let report = match (decision, prepared) {
            (Decision::Commit(_), Prepare::UpToDate { commit }) => {
                self.set_caught_up(true, Some(commit));
                let mut r = NodeReport::now(NodeState::Switched);
                r.up_to_date = true;
                r
            }
            (Decision::Commit(at_ms), Prepare::Ready(p)) => {
                self.caught_up.store(false, Ordering::SeqCst);
                let at = super::local_instant(at_ms, self.switch_delay);
                let res = tokio::task::spawn_blocking(move || p.switch(Some(at)))
                    .await
                    .unwrap_or_else(|e| Err(anyhow!("the switch stopped unexpectedly: {e}")));
                match res {
                    Ok(sw) => {
                        let mut r = match sw.unhealthy() {
                            Some(e) => NodeReport::now(NodeState::Unhealthy).with_error(e),
                            None => NodeReport::now(NodeState::Switched),
                        };
                        r.rename_ns = rename_instant(&layout);
                        self.set_caught_up(true, Some(rec.commit.clone()));
                        tracing::info!("fleet: deploy {}: switched", rec.id);
                        let _ = self.write_state(&rec.id, &r).await;
                        return self.settle(rec, sw, r).await;
                    }
                    Err(e) => {
                        let msg = format!("{e:#}");
                        tracing::error!(
                            "fleet: deploy {}: the switch failed after the commit point: {msg}; this node answers 503 on /health",
                            rec.id
                        );
                        self.set_caught_up(false, None);
                        NodeReport::now(NodeState::SwitchFailed).with_error(msg)
                    }
                }
            }
            (Decision::Abort(reason), prepared) => {
                tracing::warn!("fleet: deploy {} aborted: {reason}", rec.id);
                if let Prepare::Ready(p) = prepared {
                    let why = reason.clone();
                    let res = tokio::task::spawn_blocking(move || p.abort(&why)).await;
                    if let Ok(Err(e)) = res {
                        tracing::error!("fleet: deploy {}: restoring ROOT: {e:#}", rec.id);
                    }
                }
                NodeReport::now(NodeState::Aborted).with_error(reason)
            }
        };
        let _ = self.write_state(&rec.id, &report).await;
    }
}

impl Agent {
    /// After this node's switch: waits for the fleet's verdict (written by
    /// the coordinator, or by this node once the coordinator is gone), then
    /// evicts and records, or goes back to the snapshot with every node.
    async fn settle(self: &Arc<Self>, rec: &DeployRecord, sw: Switched, mut switched: NodeReport) {
        let (verdict, at_ms) = self.verdict(rec).await;
        let report = match verdict {
            Verdict::Settle => {
                let res = tokio::task::spawn_blocking(move || sw.finish()).await;
                if let Ok(Err(e)) = res {
                    tracing::warn!("fleet: deploy {}: after the switch: {e:#}", rec.id);
                }
                switched.finished = true;
                switched
            }
            Verdict::Revert(reason) => {
                tracing::warn!("fleet: deploy {}: the fleet rolls back: {reason}", rec.id);
                let at = super::local_instant(at_ms, self.switch_delay);
                let why = reason.clone();
                let res = tokio::task::spawn_blocking(move || sw.revert(Some(at), &why))
                    .await
                    .unwrap_or_else(|e| Err(anyhow!("the rollback stopped unexpectedly: {e}")));
                match res {
                    Ok(back) => {
                        self.set_caught_up(true, rec.previous.clone());
                        let mut r = NodeReport::now(NodeState::RolledBack).with_error(reason);
                        r.rename_ns = Some(back as i128);
                        r
                    }
                    Err(e) => {
                        let msg = format!("{e:#}");
                        tracing::error!("fleet: deploy {}: rolling back: {msg}", rec.id);
                        self.set_caught_up(false, None);
                        NodeReport::now(NodeState::SwitchFailed).with_error(msg)
                    }
                }
            }
        };
        let _ = self.write_state(&rec.id, &report).await;
    }

    /// The verdict on `rec` once written, with a revert's instant (Unix
    /// ms); written by this node when the coordinator's lock is gone and
    /// every live member has reported.
    async fn verdict(&self, rec: &DeployRecord) -> (Verdict, i64) {
        let k = &self.etcd.keys;
        let mut waker = Waker::new(&self.etcd, &k.under(&rec.id)).await;
        loop {
            if let Ok(view) = View::read(&self.etcd, &rec.id).await {
                if let Some(v) = super::settle::written(&view) {
                    let at_ms = view.revert.map_or_else(now_ms, |r| r.switch_at_ms);
                    return (v, at_ms);
                }
                let lock = self.etcd.get::<coordinator::Busy>(&k.lock()).await;
                let coordinator_gone = matches!(&lock, Ok(l) if l.as_ref().map(|l| l.create_revision) != Some(rec.lock_revision));
                if coordinator_gone {
                    if let Ok(live) = coordinator::alive(&self.etcd).await {
                        if let Some(v) = super::settle::verdict(rec, &view.nodes, &live, false) {
                            let delay = self.switch_delay;
                            let _ = super::settle::write(&self.etcd, rec, &v, delay, None).await;
                            continue;
                        }
                    }
                }
            }
            waker.wait(&self.etcd, Duration::from_millis(250)).await;
        }
    }
}

enum Decision {
    /// Committed: switch at this instant (Unix ms).
    Commit(i64),
    Abort(String),
}

/// The node's prepare of `rec`: the one call into the deploy pipeline.
pub fn prepare_local(cfg: &Config, rec: &DeployRecord) -> Result<Prepare> {
    let req = Request {
        reference: Some(rec.commit.clone()),
        force: false,
        dry_run: false,
        trigger: match rec.trigger.as_str() {
            "manual" => Trigger::Manual,
            "trigger" => Trigger::TriggerUrl,
            "webhook" => Trigger::Webhook,
            "rollback" => Trigger::Rollback,
            _ => Trigger::Schedule,
        },
        id: None,
        snapshot_name: Some(rec.snapshot.clone()),
        fleet_id: Some(rec.id.clone()),
        adopt_current: false,
    };
    let mut prepared = crate::deploy::prepare(&crate::site::Site::open(cfg)?, &req)?;
    // Done before the commit point: no node's switch waits for php-fpm.
    if let Prepare::Ready(p) = &mut prepared {
        p.clear_opcache();
    }
    Ok(prepared)
}

/// The instant the link last changed (its ctime: the rename), ns since the epoch.
pub fn rename_instant(layout: &Layout) -> Option<i128> {
    let m = std::fs::symlink_metadata(layout.link()).ok()?;
    Some(m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128)
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Recovers a deploy a kill interrupted (ROOT restored from the snapshot).
async fn recover_interrupted(cfg: &Config) -> Result<()> {
    let layout = Layout::from_config(cfg);
    if crate::recover::pending(&layout.state).is_none() {
        return Ok(());
    }
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || {
        let layout = Layout::from_config(&cfg);
        let _lock = DeployLock::acquire(&layout.state)?;
        crate::recover::recover(&crate::site::Site::open(&cfg)?).map(|_| ())
    })
    .await
    .map_err(|e| anyhow!("recovery stopped unexpectedly: {e}"))?
    .context("fleet: cannot recover the interrupted deploy")
}

/// Joins the fleet from `rootswap serve`: the agent reads the service's
/// configuration in force and asks it to poll once it leads.
pub async fn join(svc: &Arc<crate::serve::Service>, cfg: &Config) -> Result<Arc<Agent>> {
    let for_config = Arc::downgrade(svc);
    let for_leader = for_config.clone();
    let fallback = Arc::new(cfg.clone());
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
                    s.request_check(crate::serve::Check::Startup);
                }
            }
        }),
    )
    .await
}

/// The leader's poll found `head`: a fleet deploy of it. Returns the commit
/// not to try again (the fleet aborted it), as the single-node service does.
pub async fn poll_deploy(
    agent: Option<&Arc<Agent>>,
    why: crate::serve::Check,
    head: &str,
) -> Option<String> {
    let agent = agent?;
    tracing::info!(
        "{why}: the branch moved to {}, starting a fleet deploy",
        crate::commit::short(&head)
    );
    match agent
        .coordinate(why.trigger(), Some(head.to_string()), false, None)
        .await
    {
        Ok(_) => None,
        Err(e) if e.downcast_ref::<coordinator::Busy>().is_some() => {
            tracing::info!("{why} skipped: {e}");
            None
        }
        Err(e) if e.downcast_ref::<coordinator::Aborted>().is_some() => {
            tracing::error!("{e}");
            tracing::warn!(
                "commit {} will not be deployed again until the branch gets a new commit or a deploy is asked for by hand",
                crate::commit::short(&head)
            );
            Some(head.to_string())
        }
        Err(e) => {
            tracing::error!("fleet deploy of {}: {e:#}", crate::commit::short(&head));
            None
        }
    }
}
