//! The fleet's deploy lock: a key on a lease of its own, created only if
//! absent; its create revision is the fencing token every later write of
//! the deploy compares. [`Busy`] is its value (who holds it).

use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::etcd::{absent, created_at, put_op, Etcd};

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

/// The fleet's deploy lock: a key on a lease of its own, created only if
/// absent; its create revision is the fencing token.
pub(super) struct Lock {
    lease: i64,
    /// The lock's lease time.
    pub(super) ttl: Duration,
    /// The node that coordinates.
    pub(super) node: String,
    /// The fencing token.
    pub(super) revision: i64,
    keeper: tokio::task::JoinHandle<()>,
    lost: tokio::sync::watch::Receiver<bool>,
}

impl Lock {
    pub(super) async fn take(
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
        let held = match ok {
            true => None,
            false => etcd.get::<Busy>(&key).await.ok().flatten(),
        };
        let revision = match held {
            None if ok => revision,
            // Our own lock: the transaction was applied, its answer lost,
            // and the retry on another endpoint found the key.
            Some(h) if h.lease == lease && h.value.id == id => h.create_revision,
            held => {
                let _ = etcd.revoke(lease).await;
                return Err(held
                    .map(|h| h.value)
                    .unwrap_or(Busy {
                        id: "?".into(),
                        coordinator: "another node".into(),
                    })
                    .into());
            }
        };
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

    pub(super) fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    pub(super) async fn release(self, etcd: &Etcd) {
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
