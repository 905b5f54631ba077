//! The coordinator of a fleet deploy: lock, record, wait for every member
//! to prepare, the commit point (one transaction), then wait for the switches.
//!
//! It runs in the leader's `rootswap serve` (a poll or the trigger URL found
//! a new commit) or in `rootswap deploy` on any node; the nodes' own `serve`
//! do the work ([`super::Agent`]).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Result};

use super::deploy_lock::Lock;
use super::etcd::{absent, created_at, exists, put_op, Etcd};
use super::records::{
    now_ms, switch_delay_for, Committed, DeployRecord, Member, NodeReport, NodeState,
};
use super::settle::{self, Verdict};
use super::view::{alive, View, Waker};
use crate::config::FleetConfig;
use crate::site::Site;
use crate::source::GitSource;

/// What to deploy.
#[derive(Debug, Clone, Default)]
pub struct Coordinate {
    /// Branch, tag or commit (default: the configured branch head).
    pub reference: Option<String>,
    /// Deploy even when every member already serves the commit.
    pub force: bool,
    /// Who coordinates, for messages (`web1`, `rootswap deploy on web1`).
    pub coordinator: String,
    /// Fleet deploy id (generated when None).
    pub id: Option<String>,
    /// Who asked (`manual`, `schedule`, `trigger`, `webhook`).
    pub trigger: String,
}

/// Progress of a fleet deploy, for the person or log watching.
#[derive(Debug, Clone)]
pub enum Event {
    /// The record is written: every member now prepares.
    Started(DeployRecord),
    /// A node reported a new state.
    Node(String, NodeReport),
    /// The commit point passed: every member switches now.
    CommitPoint,
    /// The deploy is being aborted.
    Aborting(String),
    /// A member is down after the commit point: it switches when it comes back.
    Behind(String),
    /// Every member prepared; this node runs `hooks.once`.
    Once(String),
    /// A switch failed after the commit point: the fleet rolls back.
    RollingBack(String),
}

/// How a fleet deploy ended (an abort is an `Err` of type [`Aborted`]).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // returned once per deploy
pub enum FleetOutcome {
    /// Every member serves the commit already.
    UpToDate {
        /// The commit.
        commit: String,
    },
    /// The commit point passed.
    Committed {
        /// The record.
        record: DeployRecord,
        /// Each member's last report.
        nodes: BTreeMap<String, NodeReport>,
        /// First to last rename instant among the nodes that switched, ns.
        window_ns: Option<i128>,
    },
}

/// The fleet deploy was aborted: every node serves the old version.
#[derive(Debug, Clone)]
pub struct Aborted {
    /// Fleet deploy id.
    pub id: String,
    /// Commit that was not deployed.
    pub commit: String,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fleet deploy {} of {} aborted: {}; every node serves the old version",
            self.id,
            crate::commit::short(&self.commit),
            self.reason
        )
    }
}

impl std::error::Error for Aborted {}

/// A fleet id: `f` plus the usual deploy id.
pub fn new_id() -> String {
    format!("f{}", crate::deploy::new_id())
}

/// Runs one fleet deploy to its end; `on` sees its progress.
pub async fn coordinate(
    etcd: &Etcd,
    cfg: &Site,
    req: Coordinate,
    on: &(dyn Fn(Event) + Send + Sync),
) -> Result<FleetOutcome> {
    let fleet = cfg
        .fleet
        .as_ref()
        .ok_or_else(|| anyhow!("this configuration has no `fleet:` section"))?;
    let members = alive(etcd).await?;
    if members.is_empty() {
        anyhow::bail!(
            "no node of fleet site {} is alive: start `rootswap serve` on the nodes first",
            fleet.site
        );
    }
    let (commit, described) = resolve(cfg, req.reference.clone()).await?;
    if !req.force
        && members
            .values()
            .all(|m| m.live.as_deref() == Some(commit.as_str()) && m.caught_up)
    {
        return Ok(FleetOutcome::UpToDate { commit });
    }
    let id = req.id.clone().unwrap_or_else(new_id);
    let previous = etcd
        .get::<Committed>(&etcd.keys.committed())
        .await?
        .map(|c| c.value.commit);
    let lock = Lock::take(etcd, fleet.lease, &id, &req.coordinator, &fleet.node).await?;
    let plan = Plan {
        id,
        commit,
        described,
        members: members.into_keys().collect(),
        previous,
    };
    let result = run(etcd, cfg, fleet, &req, &lock, plan, on).await;
    lock.release(etcd).await;
    result
}

async fn resolve(cfg: &Site, reference: Option<String>) -> Result<(String, String)> {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || {
        let layout = cfg.layout.clone();
        crate::fsutil::ensure_private_dir(&layout.state)?;
        let mut source = GitSource::open(&layout.state, &cfg.source)?;
        let oid = source.fetch_and_resolve(reference.as_deref())?;
        Ok((oid.to_string(), source.describe(oid)))
    })
    .await
    .map_err(|e| anyhow!("resolving the commit stopped unexpectedly: {e}"))?
}

/// Who runs `hooks.once`: the coordinating node when it is a member, else the first member.
fn once_runner(record: &DeployRecord, coordinator_node: &str) -> String {
    if record.members.iter().any(|m| m == coordinator_node) {
        coordinator_node.to_string()
    } else {
        record.members.first().cloned().unwrap_or_default()
    }
}

/// Writes `abort` unless the commit point passed; true when it is aborted.
pub async fn abort(etcd: &Etcd, id: &str, reason: &str) -> Result<bool> {
    let k = &etcd.keys;
    let (ok, _) = etcd
        .txn(
            vec![absent(&k.commit(id)), absent(&k.abort(id))],
            vec![put_op(&k.abort(id), &reason.to_string(), None)],
        )
        .await?;
    Ok(ok || etcd.has(&k.abort(id)).await?)
}

/// Writes `abort`, retrying while etcd does not answer (at most `max`):
/// Ok(true) aborted, Ok(false) the commit point passed first.
async fn abort_until_known(etcd: &Etcd, id: &str, reason: &str, max: Duration) -> Result<bool> {
    let until = std::time::Instant::now() + max;
    loop {
        match abort(etcd, id, reason).await {
            Ok(aborted) => return Ok(aborted),
            Err(e) if std::time::Instant::now() > until => {
                return Err(e.context(format!(
                    "fleet deploy {id}: cannot write its abort; the nodes abort by themselves once the lock expires \
                     (see `rootswap fleet status`)"
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// What [`coordinate`] decided before it took the lock.
struct Plan {
    id: String,
    commit: String,
    described: String,
    members: Vec<String>,
    previous: Option<String>,
}

/// The record every member prepares from.
fn new_record(
    cfg: &Site,
    fleet: &FleetConfig,
    req: &Coordinate,
    lock: &Lock,
    plan: Plan,
) -> Result<DeployRecord> {
    let layout = cfg.layout.clone();
    Ok(DeployRecord {
        id: plan.id,
        commit: plan.commit,
        described: plan.described,
        members: plan.members,
        snapshot: layout.new_snapshot_name(chrono::Local::now())?,
        deadline_ms: now_ms() + fleet.prepare_timeout.as_millis() as i64,
        coordinator: req.coordinator.clone(),
        lock_revision: lock.revision,
        created: chrono::Local::now().to_rfc3339(),
        trigger: req.trigger.clone(),
        once: !cfg.hooks.once.is_empty(),
        previous: plan.previous,
    })
}

/// Writes the record (and `last`) while the lock is still ours.
async fn publish(etcd: &Etcd, lock: &Lock, record: &DeployRecord) -> Result<()> {
    let k = &etcd.keys;
    let id = &record.id;
    let (ok, _) = etcd
        .txn(
            vec![created_at(&k.lock(), lock.revision)],
            vec![
                put_op(&k.record(id), record, None),
                put_op(&k.last(), id, None),
            ],
        )
        .await?;
    if !ok {
        anyhow::bail!("fleet deploy {id}: the deploy lock was lost before the record was written; nothing was started");
    }
    Ok(())
}

async fn run(
    etcd: &Etcd,
    cfg: &Site,
    fleet: &FleetConfig,
    req: &Coordinate,
    lock: &Lock,
    plan: Plan,
    on: &(dyn Fn(Event) + Send + Sync),
) -> Result<FleetOutcome> {
    let record = new_record(cfg, fleet, req, lock, plan)?;
    let waker = Waker::new(etcd, etcd.keys.prefix()).await;
    publish(etcd, lock, &record).await?;
    on(Event::Started(record.clone()));
    let mut run = Run {
        etcd,
        fleet,
        record,
        lock,
        waker,
        seen: BTreeMap::new(),
        on,
    };
    let reason = match run.prepare_phase().await {
        Ok(None) => None,
        Ok(Some(reason)) => Some(reason),
        Err(e) => Some(format!("the coordinator lost etcd: {e:#}")),
    };
    if let Some(reason) = reason {
        run.abort(reason).await?;
        // The abort lost the race against the commit point: it is committed.
    }
    on(Event::CommitPoint);
    let nodes = run.after_commit().await?;
    let window_ns = rename_window(&nodes);
    Ok(FleetOutcome::Committed {
        record: run.record,
        nodes,
        window_ns,
    })
}

/// First to last rename instant among the nodes that switched, ns.
fn rename_window(nodes: &BTreeMap<String, NodeReport>) -> Option<i128> {
    let renames: Vec<i128> = nodes
        .values()
        .filter(|r| r.state == NodeState::Switched && !r.up_to_date)
        .filter_map(|r| r.rename_ns)
        .collect();
    match (renames.iter().min(), renames.iter().max()) {
        (Some(a), Some(b)) if renames.len() > 1 => Some(b - a),
        _ => None,
    }
}

/// One fleet deploy under way, as its coordinator follows it.
struct Run<'a> {
    etcd: &'a Etcd,
    fleet: &'a FleetConfig,
    record: DeployRecord,
    lock: &'a Lock,
    waker: Waker,
    /// The last state reported of each node.
    seen: BTreeMap<String, NodeReport>,
    on: &'a (dyn Fn(Event) + Send + Sync),
}

impl Run<'_> {
    async fn wait(&mut self, ms: u64) {
        self.waker.wait(self.etcd, Duration::from_millis(ms)).await;
    }

    fn report_changes(&mut self, view: &View) {
        for (n, r) in &view.nodes {
            if self.seen.get(n).map(|s| s.state) != Some(r.state) {
                self.seen.insert(n.clone(), r.clone());
                (self.on)(Event::Node(n.clone(), r.clone()));
            }
        }
    }

    /// Aborts the deploy for `reason`: an `Err` of type [`Aborted`] once
    /// every node went back, Ok when the commit point passed first.
    async fn abort(&mut self, reason: String) -> Result<()> {
        (self.on)(Event::Aborting(reason.clone()));
        let id = self.record.id.clone();
        if !abort_until_known(self.etcd, &id, &reason, self.fleet.lease * 3).await? {
            return Ok(());
        }
        let back = |r: &NodeReport| matches!(r.state, NodeState::Aborted | NodeState::Failed);
        self.settle(self.fleet.lease * 2, back).await;
        Err(Aborted {
            id,
            commit: self.record.commit.clone(),
            reason,
        }
        .into())
    }

    /// Until the commit point: Ok(None) once committed, Ok(Some(reason)) to abort.
    async fn prepare_phase(&mut self) -> Result<Option<String>> {
        let mut last_ok = std::time::Instant::now();
        let patience = self.lock.ttl;
        loop {
            let view = match View::read(self.etcd, &self.record.id).await {
                Ok(v) => v,
                // One member of etcd going away: the client moves to another.
                Err(e) if last_ok.elapsed() > patience => return Err(e),
                Err(_) => {
                    self.wait(250).await;
                    continue;
                }
            };
            last_ok = std::time::Instant::now();
            self.report_changes(&view);
            if let Some(r) = view.aborted {
                return Ok(Some(r));
            }
            if view.committed {
                return Ok(None);
            }
            if let Some(reason) = failure(&view) {
                return Ok(Some(reason));
            }
            let Ok(live) = alive(self.etcd).await else {
                continue;
            };
            if let Some(reason) = self.stalled(&view, &live) {
                return Ok(Some(reason));
            }
            if self
                .record
                .members
                .iter()
                .all(|m| view.prepared.contains(m))
            {
                if self.commit_point(&view).await {
                    return Ok(None);
                }
                continue;
            }
            self.wait(250).await;
        }
    }

    /// Why the deploy cannot reach its commit point any more: a member is
    /// gone, the lock is lost, or the deadline passed.
    fn stalled(&self, view: &View, live: &BTreeMap<String, Member>) -> Option<String> {
        let record = &self.record;
        if let Some(gone) = record.members.iter().find(|m| !live.contains_key(*m)) {
            return Some(format!(
                "node {gone} stopped renewing its lease (down, paused or cut off)"
            ));
        }
        if self.lock.is_lost() {
            return Some("the coordinator lost the fleet deploy lock".into());
        }
        if now_ms() > record.deadline_ms {
            let late: Vec<&str> = record
                .members
                .iter()
                .filter(|m| !view.prepared.contains(m))
                .map(|s| s.as_str())
                .collect();
            return Some(format!(
                "prepare_timeout passed before {} prepared",
                late.join(", ")
            ));
        }
        None
    }

    /// Every member prepared: runs `hooks.once` first when the record asks
    /// for it, then tries THE commit point, one transaction. True once committed.
    async fn commit_point(&mut self, view: &View) -> bool {
        let (etcd, record) = (self.etcd, &self.record);
        let k = &etcd.keys;
        let mut when = vec![
            created_at(&k.lock(), self.lock.revision),
            absent(&k.abort(&record.id)),
        ];
        if record.once {
            if view.once.is_none() {
                let runner = once_runner(record, &self.lock.node);
                let put = put_op(&k.once(&record.id), &runner, None);
                if let Ok((true, _)) = etcd.txn(when.clone(), vec![put]).await {
                    (self.on)(Event::Once(runner));
                }
                return false;
            }
            if !view.once_done {
                self.wait(250).await;
                return false;
            }
            when.push(exists(&k.once_done(&record.id)));
        }
        for m in &record.members {
            when.push(exists(&k.prepared(&record.id, m)));
            when.push(exists(&k.member(m)));
        }
        let committed = Committed {
            id: record.id.clone(),
            commit: record.commit.clone(),
        };
        // Every node renames its link at this instant, not each as soon as it
        // hears: late enough for the slowest node to hear of it.
        let delay = switch_delay_for(
            self.fleet.switch_delay,
            self.fleet.lease,
            view.nodes.values().filter_map(|r| r.etcd_ms),
        );
        let switch_at = now_ms() + delay.as_millis() as i64;
        let done = etcd
            .txn(
                when,
                vec![
                    put_op(&k.commit(&record.id), &switch_at, None),
                    put_op(&k.committed(), &committed, None),
                ],
            )
            .await;
        if matches!(done, Ok((true, _))) {
            return true;
        }
        // Not applied, or no answer (then the next read tells).
        self.wait(50).await;
        false
    }

    /// After the commit point: waits for every live member's switch, writes
    /// the verdict (see [`settle`]), and, on a revert, waits for the nodes to
    /// go back; the revert is an `Err` naming its reason.
    async fn after_commit(&mut self) -> Result<BTreeMap<String, NodeReport>> {
        let switched = |r: &NodeReport| settle::switched(r.state);
        let nodes = self.settle(self.fleet.prepare_timeout, switched).await;
        let live = alive(self.etcd).await.unwrap_or_default();
        let verdict = settle::verdict(&self.record, &nodes, &live, true).unwrap_or(Verdict::Settle);
        let Verdict::Revert(reason) = self.write_verdict(&verdict).await? else {
            // Each node evicts and records its deploy, then says so.
            let finished = |r: &NodeReport| r.finished || r.state != NodeState::Switched;
            return Ok(self.settle(self.fleet.lease * 2, finished).await);
        };
        (self.on)(Event::RollingBack(reason.clone()));
        let back =
            |r: &NodeReport| matches!(r.state, NodeState::RolledBack | NodeState::SwitchFailed);
        self.settle(self.fleet.lease * 3, back).await;
        let record = &self.record;
        Err(anyhow!(
            "fleet deploy {} of {}: {reason}; every node went back to {}",
            record.id,
            record.described,
            record
                .previous
                .as_deref()
                .map(crate::commit::short)
                .unwrap_or("the version it served before")
        ))
    }

    /// Writes `verdict` (unless one exists) and returns the one written.
    async fn write_verdict(&mut self, verdict: &Verdict) -> Result<Verdict> {
        let until = std::time::Instant::now() + self.fleet.lease * 3;
        loop {
            let (etcd, record) = (self.etcd, &self.record);
            let fence = Some(self.lock.revision);
            let _ = settle::write(etcd, record, verdict, self.fleet.switch_delay, fence).await;
            match View::read(etcd, &record.id)
                .await
                .map(|v| settle::written(&v))
            {
                Ok(Some(v)) => return Ok(v),
                _ if std::time::Instant::now() > until => {
                    anyhow::bail!(
                        "fleet deploy {}: the commit point passed, but its verdict cannot be written; \
                         the nodes write it themselves once this coordinator's lock expires (see `rootswap fleet status`)",
                        record.id
                    )
                }
                _ => self.wait(250).await,
            }
        }
    }

    /// Waits (at most `max`) until every member's state satisfies `done`, or it
    /// is no longer alive; returns the last reports.
    async fn settle(
        &mut self,
        max: Duration,
        done: impl Fn(&NodeReport) -> bool,
    ) -> BTreeMap<String, NodeReport> {
        let until = std::time::Instant::now() + max;
        let mut behind = Vec::new();
        while std::time::Instant::now() < until {
            let Ok(view) = View::read(self.etcd, &self.record.id).await else {
                self.wait(250).await;
                continue;
            };
            self.report_changes(&view);
            let Ok(live) = alive(self.etcd).await else {
                self.wait(250).await;
                continue;
            };
            let pending: Vec<&String> = self
                .record
                .members
                .iter()
                .filter(|m| !view.nodes.get(*m).is_some_and(&done))
                .collect();
            for m in &pending {
                if !live.contains_key(*m) && !behind.contains(*m) {
                    behind.push((*m).clone());
                    (self.on)(Event::Behind((*m).clone()));
                }
            }
            if pending.iter().all(|m| !live.contains_key(*m)) {
                return view.nodes;
            }
            self.wait(250).await;
        }
        self.seen.clone()
    }
}

/// A member's failure to prepare, or `hooks.once`'s: the deploy aborts.
fn failure(view: &View) -> Option<String> {
    if let Some((n, r)) = view
        .nodes
        .iter()
        .find(|(_, r)| r.state == NodeState::Failed)
    {
        let e = r.error.as_deref().unwrap_or("no reason given");
        return Some(format!("node {n} failed to prepare: {e}"));
    }
    let e = view.once_failed.as_ref()?;
    let n = view.once.as_deref().unwrap_or("?");
    Some(format!("hooks.once failed on node {n}: {e}"))
}
