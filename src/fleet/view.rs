//! What etcd says about one fleet deploy right now ([`View`]), who is
//! alive ([`alive`]), and a [`Waker`] that sleeps until the next change:
//! what the coordinator, the nodes and `fleet status` all read.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;

use super::etcd::Etcd;
use super::records::{Member, NodeReport, Revert};

/// The members alive now, by node id.
pub async fn alive(etcd: &Etcd) -> Result<BTreeMap<String, Member>> {
    Ok(etcd
        .list_json::<Member>(&etcd.keys.members())
        .await?
        .into_iter()
        .collect())
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
