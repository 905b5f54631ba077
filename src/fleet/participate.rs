//! A node's half of a fleet deploy: prepare (the deploy pipeline up to the
//! switch), report `prepared` or `failed`, wait for the decision (running
//! `hooks.once` when chosen), switch at the named instant or abort, then
//! wait for the fleet's verdict and keep the new version or go back.

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};

use super::agent::{lock, Agent};
use super::coordinator;
use super::deploy_lock::Busy;
use super::etcd::{absent, put_op};
use super::records::{local_instant, max_switch_wait, now_ms, DeployRecord, NodeReport, NodeState};
use super::settle::{self, Verdict};
use super::view::{alive, View, Waker};
use crate::deploy::{Prepare, Request, Switched, Trigger};
use crate::layout::Layout;
use crate::site::Site;

impl Agent {
    /// This node's part of deploy `rec`.
    pub(super) async fn take_part(self: Arc<Self>, rec: DeployRecord) {
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
        // Watching for the commit point from now on: on a slow link the
        // watch is ready long before the commit is written.
        let (tx, heard) = tokio::sync::watch::channel(None::<i64>);
        let key = k.commit(&rec.id);
        let _watcher = AbortOnDrop(tokio::spawn(watch_commit(
            self.etcd.clone(),
            key,
            rec.lock_revision,
            tx,
        )));
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
        let wrote = self.report_prepared(&rec, up_to_date).await;
        let decision = match wrote {
            Some(false) => Decision::Abort("aborted while this node prepared".into()),
            _ => self.decision(&rec, heard).await,
        };
        self.finish(&cfg, &rec, prepared, decision).await;
    }

    /// Writes `prepared` (unless `abort` exists): Some(written), None when
    /// etcd did not answer before the deadline. Retried while etcd does not
    /// answer: the write may have been applied without our hearing it, so
    /// only the decision (reading commit/abort) decides.
    async fn report_prepared(&self, rec: &DeployRecord, up_to_date: bool) -> Option<bool> {
        let k = &self.etcd.keys;
        let mut ready = NodeReport::now(NodeState::Prepared);
        ready.up_to_date = up_to_date;
        ready.etcd_ms = Some(self.etcd.round_trip().as_millis() as u64);
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
                Ok((ok, _)) => return Some(ok),
                Err(e) => {
                    tracing::warn!(
                        "fleet: deploy {}: cannot report prepared yet: {e:#}",
                        rec.id
                    );
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        None
    }

    /// Waits for `commit` or `abort`; aborts itself when the coordinator's
    /// lock is gone or the deadline passed (an abort never wins over a commit).
    /// The commit is taken from `heard` (a watch of its key) as soon as it
    /// arrives, even while a read is on its way: on a slow link a read costs
    /// a round trip, and the switch instant is only `switch_delay` away.
    async fn decision(
        &self,
        rec: &DeployRecord,
        mut heard: tokio::sync::watch::Receiver<Option<i64>>,
    ) -> Decision {
        let k = &self.etcd.keys;
        let mut waker = Waker::new(&self.etcd, &k.under(&rec.id)).await;
        let mut ran_once = false;
        loop {
            tokio::select! {
                biased;
                _ = heard.wait_for(|at| at.is_some()) => {}
                d = self.decision_step(rec, &mut ran_once) => if let Some(d) = d { return d },
            }
            tokio::select! {
                biased;
                _ = heard.wait_for(|at| at.is_some()) => {}
                _ = waker.wait(&self.etcd, Duration::from_millis(250)) => {}
            }
            if let Some(at) = *heard.borrow() {
                return Decision::Commit(at);
            }
        }
    }

    /// One look at deploy `rec`: its decision if there is one; runs
    /// `hooks.once` when this node is chosen; writes `abort` when the
    /// coordinator went away or the deadline passed.
    async fn decision_step(&self, rec: &DeployRecord, ran_once: &mut bool) -> Option<Decision> {
        let k = &self.etcd.keys;
        let view = View::read(&self.etcd, &rec.id).await.ok()?;
        if view.committed {
            return Some(Decision::Commit(view.switch_at_ms.unwrap_or_else(now_ms)));
        }
        if let Some(r) = view.aborted {
            return Some(Decision::Abort(r));
        }
        if view.once.as_deref() == Some(self.node.as_str()) && !*ran_once {
            *ran_once = true;
            self.run_once(rec).await;
            return None;
        }
        let lock = self.etcd.get::<Busy>(&k.lock()).await;
        let reason = match lock {
            Ok(Some(l)) if l.create_revision == rec.lock_revision => None,
            Ok(_) => Some(format!(
                "the coordinator ({}) went away before the commit point",
                rec.coordinator
            )),
            Err(_) => None,
        };
        let grace = self.ttl.as_millis() as i64;
        let reason = reason.or_else(|| {
            (now_ms() > rec.deadline_ms + grace)
                .then(|| "prepare_timeout passed before the commit point".to_string())
        });
        if let Some(reason) = reason {
            let _ = coordinator::abort(&self.etcd, &rec.id, &reason).await;
        }
        None
    }

    /// Runs `hooks.once` in this node's ROOT (the new version, not served
    /// yet) and reports the result.
    async fn run_once(&self, rec: &DeployRecord) {
        let cfg = (self.config)();
        let layout = cfg.layout.clone();
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
            let root = job.layout.clone().root();
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
        cfg: &Arc<Site>,
        rec: &DeployRecord,
        prepared: Prepare,
        decision: Decision,
    ) {
        let layout = cfg.layout.clone();
        let report = match (decision, prepared) {
            (Decision::Commit(_), Prepare::UpToDate { commit }) => {
                self.set_caught_up(true, Some(commit));
                let mut r = NodeReport::now(NodeState::Switched);
                r.up_to_date = true;
                r
            }
            (Decision::Commit(at_ms), Prepare::Ready(p)) => {
                self.caught_up.store(false, Ordering::SeqCst);
                let at = local_instant(at_ms, max_switch_wait(self.switch_delay, self.ttl));
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
                let at = local_instant(at_ms, max_switch_wait(self.switch_delay, self.ttl));
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
                if let Some(v) = settle::written(&view) {
                    let at_ms = view.revert.map_or_else(now_ms, |r| r.switch_at_ms);
                    return (v, at_ms);
                }
                let lock = self.etcd.get::<Busy>(&k.lock()).await;
                let coordinator_gone = matches!(&lock, Ok(l) if l.as_ref().map(|l| l.create_revision) != Some(rec.lock_revision));
                if coordinator_gone {
                    if let Ok(live) = alive(&self.etcd).await {
                        if let Some(v) = settle::verdict(rec, &view.nodes, &live, false) {
                            let delay = self.switch_delay;
                            let _ = settle::write(&self.etcd, rec, &v, delay, None).await;
                            continue;
                        }
                    }
                }
            }
            waker.wait(&self.etcd, Duration::from_millis(250)).await;
        }
    }
}

/// Ends a task when dropped (whichever way its owner returns).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Tells `heard` the switch instant once `key` (a deploy's `commit`) is
/// written at or after revision `from`, as a watch sees it (watched again
/// when the watch breaks).
async fn watch_commit(
    etcd: super::etcd::Etcd,
    key: String,
    from: i64,
    heard: tokio::sync::watch::Sender<Option<i64>>,
) {
    loop {
        let Ok(mut stream) = etcd.watch_prefix(&key, from).await else {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        while let Ok(Some(r)) = stream.message().await {
            for ev in r.events() {
                let Some(kv) = ev.kv() else { continue };
                if ev.event_type() == etcd_client::EventType::Put && kv.key() == key.as_bytes() {
                    if let Ok(at) = serde_json::from_slice::<i64>(kv.value()) {
                        let _ = heard.send(Some(at));
                        return;
                    }
                }
            }
        }
    }
}

enum Decision {
    /// Committed: switch at this instant (Unix ms).
    Commit(i64),
    Abort(String),
}

/// The node's prepare of `rec`: the one call into the deploy pipeline.
pub fn prepare_local(cfg: &Site, rec: &DeployRecord) -> Result<Prepare> {
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
    let mut prepared = crate::deploy::prepare(cfg, &req)?;
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
