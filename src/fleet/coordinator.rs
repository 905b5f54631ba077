//! The coordinator of a fleet deploy: lock, record, wait for every member
//! to prepare, the commit point (one transaction), then wait for the switches.
//!
//! It runs in the leader's `rootswap serve` (a poll or the trigger URL found
//! a new commit) or in `rootswap deploy` on any node; the nodes' own `serve`
//! do the work ([`super::node`]).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use super::etcd::{absent, created_at, exists, put_op, Etcd};
use super::settle::{self, Verdict};
use super::{now_ms, Committed, DeployRecord, Member, NodeReport, NodeState, Revert};
use crate::config::Config;
use crate::layout::Layout;
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

/// A fleet deploy is already in progress (the lock is held).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Busy {
    /// Deploy id of the holder.
    pub id: String,
    /// Who holds the lock.
    pub coordinator: String,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a fleet deploy is already in progress (deploy {}, coordinated by {}); wait for it to finish",
            self.id, self.coordinator
        )
    }
}

impl std::error::Error for Busy {}

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
    cfg: &Config,
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
    let result = run(
        etcd, cfg, &req, &lock, id, commit, described, members, previous, on,
    )
    .await;
    lock.release(etcd).await;
    result
}

async fn resolve(cfg: &Config, reference: Option<String>) -> Result<(String, String)> {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || {
        let layout = Layout::from_config(&cfg);
        crate::fsutil::ensure_private_dir(&layout.state)?;
        let source = GitSource::open(&layout.state, &cfg.source)?;
        source.fetch(reference.is_some())?;
        let oid = source.resolve(reference.as_deref())?;
        Ok((oid.to_string(), source.describe(oid)))
    })
    .await
    .map_err(|e| anyhow!("resolving the commit stopped unexpectedly: {e}"))?
}

/// The members alive now, by node id.
pub async fn alive(etcd: &Etcd) -> Result<BTreeMap<String, Member>> {
    Ok(etcd
        .list_json::<Member>(&etcd.keys.members())
        .await?
        .into_iter()
        .collect())
}

/// The fleet's deploy lock: a key on a lease of its own, created only if
/// absent; its create revision is the fencing token.
struct Lock {
    lease: i64,
    ttl: Duration,
    node: String,
    revision: i64,
    keeper: tokio::task::JoinHandle<()>,
    lost: tokio::sync::watch::Receiver<bool>,
}

impl Lock {
    async fn take(
        etcd: &Etcd,
        ttl: Duration,
        id: &str,
        coordinator: &str,
        node: &str,
    ) -> Result<Lock> {
        let key = etcd.keys.lock();
        let lease = etcd.grant(ttl).await?;
        let holder = Busy {
            id: id.to_string(),
            coordinator: coordinator.to_string(),
        };
        let (ok, revision) = etcd
            .txn(vec![absent(&key)], vec![put_op(&key, &holder, Some(lease))])
            .await?;
        if !ok {
            let _ = etcd.revoke(lease).await;
            let held = etcd.get::<Busy>(&key).await.ok().flatten();
            return Err(held
                .map(|h| h.value)
                .unwrap_or(Busy {
                    id: "?".into(),
                    coordinator: "another node".into(),
                })
                .into());
        }
        let (tx, lost) = tokio::sync::watch::channel(false);
        let keeper = etcd.keep_alive(lease, ttl, tx);
        Ok(Lock {
            lease,
            ttl,
            node: node.to_string(),
            revision,
            keeper,
            lost,
        })
    }

    fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    async fn release(self, etcd: &Etcd) {
        self.keeper.abort();
        let key = etcd.keys.lock();
        let _ = etcd
            .txn(
                vec![created_at(&key, self.revision)],
                vec![etcd_client::TxnOp::delete(key.as_str(), None)],
            )
            .await;
        let _ = etcd.revoke(self.lease).await;
    }
}

/// What etcd says about one deploy right now.
#[derive(Debug, Default)]
pub struct View {
    /// Each node's report.
    pub nodes: BTreeMap<String, NodeReport>,
    /// Nodes whose `prepared` key exists.
    pub prepared: Vec<String>,
    /// The commit point passed.
    pub committed: bool,
    /// Abort reason, once aborted.
    pub aborted: Option<String>,
    /// Node chosen to run `hooks.once`.
    pub once: Option<String>,
    /// `hooks.once` succeeded.
    pub once_done: bool,
    /// `hooks.once` failed: the error.
    pub once_failed: Option<String>,
    /// The instant (Unix ms) every node renames its link, once committed.
    pub switch_at_ms: Option<i64>,
    /// Every node is healthy on the new version: the deploy is over.
    pub settled: bool,
    /// The fleet goes back to the old version (after the commit point).
    pub revert: Option<Revert>,
}

impl View {
    /// Reads deploy `id`'s keys.
    pub async fn read(etcd: &Etcd, id: &str) -> Result<View> {
        let under = etcd.keys.under(id);
        let (kvs, _) = etcd.list(&under).await?;
        let mut v = View::default();
        for (key, value) in kvs {
            let Some(rest) = key.strip_prefix(&under) else {
                continue;
            };
            if rest == "commit" {
                v.committed = true;
                v.switch_at_ms = serde_json::from_slice(&value).ok();
            } else if rest == "settled" {
                v.settled = true;
            } else if rest == "revert" {
                v.revert = serde_json::from_slice(&value).ok();
            } else if rest == "abort" {
                v.aborted = Some(
                    serde_json::from_slice::<String>(&value)
                        .unwrap_or_else(|_| String::from_utf8_lossy(&value).into_owned()),
                );
            } else if rest == "once" {
                v.once = serde_json::from_slice(&value).ok();
            } else if rest == "once-done" {
                v.once_done = true;
            } else if rest == "once-failed" {
                v.once_failed = Some(serde_json::from_slice(&value).unwrap_or_default());
            } else if let Some(n) = rest.strip_prefix("prepared/") {
                v.prepared.push(n.to_string());
            } else if let Some(n) = rest.strip_prefix("nodes/") {
                if let Ok(r) = serde_json::from_slice(&value) {
                    v.nodes.insert(n.to_string(), r);
                }
            }
        }
        Ok(v)
    }
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

/// Waits for the next change under the site's prefix, at most `max`.
pub struct Waker {
    stream: Option<etcd_client::WatchStream>,
    prefix: String,
}

impl Waker {
    /// A waker watching `prefix` from now.
    pub async fn new(etcd: &Etcd, prefix: &str) -> Waker {
        Waker {
            stream: etcd.watch_prefix(prefix, 0).await.ok(),
            prefix: prefix.to_string(),
        }
    }

    /// Returns after a change (or `max`, or at once when the watch broke and was renewed).
    pub async fn wait(&mut self, etcd: &Etcd, max: Duration) {
        match self.stream.as_mut() {
            Some(s) => match tokio::time::timeout(max, s.message()).await {
                Ok(Ok(Some(r))) if !r.canceled() => {}
                Ok(_) => self.stream = etcd.watch_prefix(&self.prefix, 0).await.ok(),
                Err(_) => {}
            },
            None => {
                tokio::time::sleep(max).await;
                self.stream = etcd.watch_prefix(&self.prefix, 0).await.ok();
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    etcd: &Etcd,
    cfg: &Config,
    req: &Coordinate,
    lock: &Lock,
    id: String,
    commit: String,
    described: String,
    members: BTreeMap<String, Member>,
    previous: Option<String>,
    on: &(dyn Fn(Event) + Send + Sync),
) -> Result<FleetOutcome> {
    let fleet = cfg.fleet.as_ref().expect("checked by coordinate");
    let layout = Layout::from_config(cfg);
    let record = DeployRecord {
        id: id.clone(),
        commit,
        described,
        members: members.keys().cloned().collect(),
        snapshot: layout.new_snapshot_name(chrono::Local::now())?,
        deadline_ms: now_ms() + fleet.prepare_timeout.as_millis() as i64,
        coordinator: req.coordinator.clone(),
        lock_revision: lock.revision,
        created: chrono::Local::now().to_rfc3339(),
        trigger: req.trigger.clone(),
        once: !cfg.hooks.once.is_empty(),
        previous,
    };
    let k = &etcd.keys;
    let mut waker = Waker::new(etcd, k.prefix()).await;
    let (ok, _) = etcd
        .txn(
            vec![created_at(&k.lock(), lock.revision)],
            vec![
                put_op(&k.record(&id), &record, None),
                put_op(&k.last(), &id, None),
            ],
        )
        .await?;
    if !ok {
        anyhow::bail!("fleet deploy {id}: the deploy lock was lost before the record was written; nothing was started");
    }
    on(Event::Started(record.clone()));
    let mut seen = BTreeMap::new();
    let decided = prepare_phase(
        etcd,
        &record,
        lock,
        fleet.switch_delay,
        &mut waker,
        &mut seen,
        on,
    )
    .await;
    let reason = match decided {
        Ok(None) => None,
        Ok(Some(reason)) => Some(reason),
        Err(e) => Some(format!("the coordinator lost etcd: {e:#}")),
    };
    if let Some(reason) = reason {
        on(Event::Aborting(reason.clone()));
        if abort_until_known(etcd, &id, &reason, fleet.lease * 3).await? {
            settle(
                etcd,
                &record,
                fleet.lease * 2,
                &mut waker,
                &mut seen,
                on,
                |r| matches!(r.state, NodeState::Aborted | NodeState::Failed),
            )
            .await;
            return Err(Aborted {
                id,
                commit: record.commit,
                reason,
            }
            .into());
        }
        // The abort lost the race against the commit point: it is committed.
    }
    on(Event::CommitPoint);
    let nodes = after_commit(etcd, fleet, &record, lock, &mut waker, &mut seen, on).await?;
    let renames: Vec<i128> = nodes
        .values()
        .filter(|r| r.state == NodeState::Switched && !r.up_to_date)
        .filter_map(|r| r.rename_ns)
        .collect();
    let window_ns = match (renames.iter().min(), renames.iter().max()) {
        (Some(a), Some(b)) if renames.len() > 1 => Some(b - a),
        _ => None,
    };
    Ok(FleetOutcome::Committed {
        record,
        nodes,
        window_ns,
    })
}

/// After the commit point: waits for every live member's switch, writes
/// the verdict (see [`settle`]), and, on a revert, waits for the nodes to
/// go back; the revert is an `Err` naming its reason.
async fn after_commit(
    etcd: &Etcd,
    fleet: &crate::config::FleetConfig,
    record: &DeployRecord,
    lock: &Lock,
    waker: &mut Waker,
    seen: &mut BTreeMap<String, NodeReport>,
    on: &(dyn Fn(Event) + Send + Sync),
) -> Result<BTreeMap<String, NodeReport>> {
    let nodes = settle(
        etcd,
        record,
        fleet.prepare_timeout,
        waker,
        seen,
        on,
        |r: &NodeReport| settle::switched(r.state),
    )
    .await;
    let live = alive(etcd).await.unwrap_or_default();
    let verdict = settle::verdict(record, &nodes, &live, true).unwrap_or(Verdict::Settle);
    let until = std::time::Instant::now() + fleet.lease * 3;
    let written = loop {
        let _ = settle::write(
            etcd,
            record,
            &verdict,
            fleet.switch_delay,
            Some(lock.revision),
        )
        .await;
        match View::read(etcd, &record.id)
            .await
            .map(|v| settle::written(&v))
        {
            Ok(Some(v)) => break v,
            _ if std::time::Instant::now() > until => {
                anyhow::bail!(
                    "fleet deploy {}: the commit point passed, but its verdict cannot be written; \
                     the nodes write it themselves once this coordinator's lock expires (see `rootswap fleet status`)",
                    record.id
                )
            }
            _ => waker.wait(etcd, Duration::from_millis(250)).await,
        }
    };
    let Verdict::Revert(reason) = written else {
        // Each node evicts and records its deploy, then says so.
        let finished = |r: &NodeReport| r.finished || r.state != NodeState::Switched;
        let nodes = settle(etcd, record, fleet.lease * 2, waker, seen, on, finished).await;
        return Ok(nodes);
    };
    on(Event::RollingBack(reason.clone()));
    let back = |r: &NodeReport| matches!(r.state, NodeState::RolledBack | NodeState::SwitchFailed);
    settle(etcd, record, fleet.lease * 3, waker, seen, on, back).await;
    Err(anyhow!(
        "fleet deploy {} of {}: {reason}; every node went back to {}",
        record.id,
        record.described,
        record
            .previous
            .as_deref()
            .map(|p| crate::commit::short(&p))
            .unwrap_or("the version it served before")
    ))
}

fn report_changes(
    view: &View,
    seen: &mut BTreeMap<String, NodeReport>,
    on: &(dyn Fn(Event) + Send + Sync),
) {
    for (n, r) in &view.nodes {
        if seen.get(n).map(|s| s.state) != Some(r.state) {
            seen.insert(n.clone(), r.clone());
            on(Event::Node(n.clone(), r.clone()));
        }
    }
}

/// Until the commit point: Ok(None) once committed, Ok(Some(reason)) to abort.
async fn prepare_phase(
    etcd: &Etcd,
    record: &DeployRecord,
    lock: &Lock,
    switch_delay: Duration,
    waker: &mut Waker,
    seen: &mut BTreeMap<String, NodeReport>,
    on: &(dyn Fn(Event) + Send + Sync),
) -> Result<Option<String>> {
    let k = &etcd.keys;
    let mut last_ok = std::time::Instant::now();
    let patience = lock.ttl;
    loop {
        let view = match View::read(etcd, &record.id).await {
            Ok(v) => v,
            // One member of etcd going away: the client moves to another.
            Err(e) if last_ok.elapsed() > patience => return Err(e),
            Err(_) => {
                waker.wait(etcd, Duration::from_millis(250)).await;
                continue;
            }
        };
        last_ok = std::time::Instant::now();
        report_changes(&view, seen, on);
        if let Some(r) = view.aborted {
            return Ok(Some(r));
        }
        if view.committed {
            return Ok(None);
        }
        if let Some((n, r)) = view
            .nodes
            .iter()
            .find(|(_, r)| r.state == NodeState::Failed)
        {
            let e = r.error.as_deref().unwrap_or("no reason given");
            return Ok(Some(format!("node {n} failed to prepare: {e}")));
        }
        if let Some(e) = &view.once_failed {
            let n = view.once.as_deref().unwrap_or("?");
            return Ok(Some(format!("hooks.once failed on node {n}: {e}")));
        }
        let Ok(live) = alive(etcd).await else {
            continue;
        };
        if let Some(gone) = record.members.iter().find(|m| !live.contains_key(*m)) {
            return Ok(Some(format!(
                "node {gone} stopped renewing its lease (down, paused or cut off)"
            )));
        }
        if lock.is_lost() {
            return Ok(Some("the coordinator lost the fleet deploy lock".into()));
        }
        if now_ms() > record.deadline_ms {
            let late: Vec<&str> = record
                .members
                .iter()
                .filter(|m| !view.prepared.contains(m))
                .map(|s| s.as_str())
                .collect();
            return Ok(Some(format!(
                "prepare_timeout passed before {} prepared",
                late.join(", ")
            )));
        }
        if record.members.iter().all(|m| view.prepared.contains(m)) {
            let mut when = vec![
                created_at(&k.lock(), lock.revision),
                absent(&k.abort(&record.id)),
            ];
            if record.once {
                if view.once.is_none() {
                    let runner = once_runner(record, &lock.node);
                    let put = put_op(&k.once(&record.id), &runner, None);
                    if let Ok((true, _)) = etcd.txn(when.clone(), vec![put]).await {
                        on(Event::Once(runner));
                    }
                    continue;
                }
                if !view.once_done {
                    waker.wait(etcd, Duration::from_millis(250)).await;
                    continue;
                }
                when.push(exists(&k.once_done(&record.id)));
            }
            // THE commit point: one transaction.
            for m in &record.members {
                when.push(exists(&k.prepared(&record.id, m)));
                when.push(exists(&k.member(m)));
            }
            let committed = Committed {
                id: record.id.clone(),
                commit: record.commit.clone(),
            };
            // Every node renames its link at this instant, not each as soon as it hears.
            let switch_at = now_ms() + switch_delay.as_millis() as i64;
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
                return Ok(None);
            }
            // Not applied, or no answer (then the next read tells).
            waker.wait(etcd, Duration::from_millis(50)).await;
            continue;
        }
        waker.wait(etcd, Duration::from_millis(250)).await;
    }
}

/// Waits (at most `max`) until every member's state satisfies `done`, or it
/// is no longer alive; returns the last reports.
async fn settle(
    etcd: &Etcd,
    record: &DeployRecord,
    max: Duration,
    waker: &mut Waker,
    seen: &mut BTreeMap<String, NodeReport>,
    on: &(dyn Fn(Event) + Send + Sync),
    done: impl Fn(&NodeReport) -> bool,
) -> BTreeMap<String, NodeReport> {
    let until = std::time::Instant::now() + max;
    let mut behind = Vec::new();
    while std::time::Instant::now() < until {
        let Ok(view) = View::read(etcd, &record.id).await else {
            waker.wait(etcd, Duration::from_millis(250)).await;
            continue;
        };
        report_changes(&view, seen, on);
        let Ok(live) = alive(etcd).await else {
            waker.wait(etcd, Duration::from_millis(250)).await;
            continue;
        };
        let pending: Vec<&String> = record
            .members
            .iter()
            .filter(|m| !view.nodes.get(*m).is_some_and(&done))
            .collect();
        for m in &pending {
            if !live.contains_key(*m) && !behind.contains(*m) {
                behind.push((*m).clone());
                on(Event::Behind((*m).clone()));
            }
        }
        if pending.iter().all(|m| !live.contains_key(*m)) {
            return view.nodes;
        }
        waker.wait(etcd, Duration::from_millis(250)).await;
    }
    seen.clone()
}
