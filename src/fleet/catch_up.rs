//! A node following the fleet: new deploy records (it takes part in those
//! that name it), a deploy interrupted by its own restart, and the catch-up
//! of a node that missed a commit point (a normal deploy of the committed
//! version; `/health` answers 503 until it is done).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;

use super::agent::Agent;
use super::participate::rename_instant;
use super::records::{Committed, DeployRecord, NodeReport, NodeState};
use super::view::View;
use crate::deploy::{Request, Trigger};
use crate::state::State;

impl Agent {
    /// Catches up, then follows new deploy records and commit points.
    pub(super) async fn follow(self: Arc<Self>) {
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
            // A watch stays on one etcd endpoint, which may hang without
            // ending it: look at the records every lease as well.
            let mut look = tokio::time::interval(self.ttl);
            look.tick().await;
            loop {
                tokio::select! {
                    _ = look.tick() => {
                        if !self.deploying() {
                            tokio::spawn(self.clone().resume());
                        }
                    },
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
    pub(super) async fn catch_up(self: Arc<Self>) {
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
        let layout = cfg.layout.clone();
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
                .map(crate::commit::short)
                .unwrap_or("nothing")
        );
        let req = Request {
            reference: Some(c.commit.clone()),
            trigger: Trigger::Schedule,
            fleet_id: Some(c.id.clone()),
            ..Request::manual()
        };
        let job = cfg.clone();
        let res = tokio::task::spawn_blocking(move || crate::deploy::deploy(&job, &req))
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
}
