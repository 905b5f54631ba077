//! A node's membership: its key on a lease, kept alive (and renewed when
//! lost), the leader election, and the leader as last seen.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::agent::{lock, Agent};
use super::records::Member;

impl Agent {
    /// Takes a new lease and writes the membership key on it.
    pub(super) async fn register(&self) -> Result<()> {
        let lease = self.etcd.grant(self.ttl).await?;
        *lock(&self.lease) = lease;
        self.publish().await
    }

    /// Writes this node's membership value (on its lease).
    pub(super) async fn publish(&self) -> Result<()> {
        let lease = *lock(&self.lease);
        let mut m = lock(&self.member).clone();
        m.caught_up = self.caught_up();
        self.etcd
            .put(&self.etcd.keys.member(&self.node), &m, Some(lease))
            .await
    }

    /// Records whether this node serves the committed version (and which
    /// commit is live), and publishes it in the membership key.
    pub(super) fn set_caught_up(self: &Arc<Self>, yes: bool, live: Option<String>) {
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
    pub(super) async fn membership(self: Arc<Self>) {
        loop {
            let lease = *lock(&self.lease);
            let (tx, mut lost) = tokio::sync::watch::channel(false);
            let keeper = self.etcd.keep_alive(lease, self.ttl, tx);
            let campaign = tokio::spawn(self.clone().campaign(lease));
            let _ = lost.wait_for(|l| *l).await;
            keeper.abort();
            campaign.abort();
            self.in_touch.store(false, Ordering::SeqCst);
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
            // Joined again: what was committed meanwhile is caught up with
            // before /health answers 200 (a deploy running here finishes first).
            self.caught_up.store(false, Ordering::SeqCst);
            self.in_touch.store(true, Ordering::SeqCst);
            tracing::info!("fleet: node {} joined again", self.node);
            if !self.deploying() {
                tokio::spawn(self.clone().catch_up());
            }
        }
    }

    async fn campaign(self: Arc<Self>, lease: i64) {
        let name = self.etcd.keys.election();
        loop {
            // A campaign waits as long as another node leads: it is a stream
            // on one endpoint, taken again from the one that answers now
            // when that endpoint fails.
            let campaign = async {
                let mut c = self.etcd.client().await?;
                c.campaign(name.as_str(), self.node.as_str(), lease)
                    .await
                    .map_err(anyhow::Error::from)
            };
            match campaign.await {
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
    pub(super) async fn watch_leader(self: Arc<Self>) {
        let name = self.etcd.keys.election();
        while !self.stopping.load(Ordering::SeqCst) {
            if let Ok(node) = self.etcd.leader(&name).await {
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
}
