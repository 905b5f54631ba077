//! The etcd client as the fleet uses it: connection from the `fleet:`
//! section, JSON values, and the few transactions the protocol needs.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue,
    PutOptions, TlsOptions, Txn, TxnOp, WatchOptions, WatchStream,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::endpoints::{attempt_for, Endpoints};
use super::keys::Keys;
use crate::config::FleetConfig;

/// A connected client plus the site's keys.
#[derive(Clone)]
pub struct Etcd {
    ends: Arc<Endpoints>,
    /// The site's key layout.
    pub keys: Keys,
    endpoints: String,
}

/// One key's value, decoded, with its revisions and lease.
#[derive(Debug, Clone)]
pub struct Entry<T> {
    /// Decoded value.
    pub value: T,
    /// Revision that created the key.
    pub create_revision: i64,
    /// Lease the key is attached to (0: none).
    pub lease: i64,
}

fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<Entry<T>> {
    let key = String::from_utf8_lossy(kv.key());
    let value = serde_json::from_slice(kv.value())
        .with_context(|| format!("etcd key {key} does not hold what rootswap wrote there"))?;
    Ok(Entry {
        value,
        create_revision: kv.create_revision(),
        lease: kv.lease(),
    })
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Our own plain structs: serialization cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// `key` exists (compare for a transaction).
pub fn exists(key: &str) -> Compare {
    Compare::create_revision(key, CompareOp::Greater, 0)
}

/// `key` does not exist (compare for a transaction).
pub fn absent(key: &str) -> Compare {
    Compare::create_revision(key, CompareOp::Equal, 0)
}

/// `key` was created at `revision` (the fencing check of the lock).
pub fn created_at(key: &str, revision: i64) -> Compare {
    Compare::create_revision(key, CompareOp::Equal, revision)
}

/// Put `value` as JSON (transaction operation).
pub fn put_op<T: Serialize>(key: &str, value: &T, lease: Option<i64>) -> TxnOp {
    TxnOp::put(
        key,
        encode(value),
        lease.map(|l| PutOptions::new().with_lease(l)),
    )
}

/// The options every endpoint's client is connected with.
fn connect_options(f: &FleetConfig) -> Result<ConnectOptions> {
    // HTTP/2 pings find a dead connection; `require_leader` makes a member
    // cut off from its cluster refuse at once (and end its watches) instead
    // of holding requests it cannot serve.
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(3))
        .with_require_leader(true);
    if let (Some(u), Some(p)) = (&f.user, &f.password) {
        opts = opts.with_user(u.clone(), p.clone());
    }
    if let Some(ca) = &f.ca_file {
        let read = |p: &std::path::Path| {
            std::fs::read(p).with_context(|| format!("fleet: cannot read {}", p.display()))
        };
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca)?));
        if let (Some(c), Some(k)) = (&f.cert_file, &f.key_file) {
            tls = tls.identity(Identity::from_pem(read(c)?, read(k)?));
        }
        opts = opts.with_tls(tls);
    }
    Ok(opts)
}

impl Etcd {
    /// Connects to the configured endpoints and checks that one answers.
    pub async fn connect(f: &FleetConfig) -> Result<Etcd> {
        let endpoints = f.etcd.join(", ");
        if f.etcd.is_empty() {
            bail!("fleet: `fleet.etcd` lists no endpoint");
        }
        let ends = Endpoints::new(&f.etcd, connect_options(f)?, attempt_for(f.lease));
        let etcd = Etcd {
            ends: Arc::new(ends),
            keys: Keys::new(&f.site),
            endpoints,
        };
        // Connecting is lazy: ask something to be sure one endpoint answers.
        etcd.get_raw(&etcd.keys.last()).await.with_context(|| {
            format!(
                "fleet: etcd at {} does not answer; check `fleet.etcd`, that etcd runs \
                 (and user/password or TLS files)",
                etcd.endpoints
            )
        })?;
        Ok(etcd)
    }

    /// How long etcd takes to answer this node lately (see
    /// [`Endpoints::round_trip`]).
    pub fn round_trip(&self) -> Duration {
        self.ends.round_trip()
    }

    /// A client of the endpoint that answers now, for streams (watches,
    /// keep-alives, elections); a stream stays on its endpoint.
    pub async fn client(&self) -> Result<Client> {
        self.ends.call("connect", |c| async move { Ok(c) }).await
    }

    async fn get_raw(&self, key: &str) -> Result<Option<KeyValue>> {
        let mut r = self
            .ends
            .call("get", |mut c| async move { c.get(key, None).await })
            .await?;
        Ok(r.take_kvs().into_iter().next())
    }

    /// Reads one JSON value.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Entry<T>>> {
        match self.get_raw(key).await? {
            Some(kv) => decode(&kv).map(Some),
            None => Ok(None),
        }
    }

    /// Whether `key` exists.
    pub async fn has(&self, key: &str) -> Result<bool> {
        Ok(self.get_raw(key).await?.is_some())
    }

    /// Reads every key under `prefix`: (key, value bytes, create revision).
    pub async fn list(&self, prefix: &str) -> Result<(Vec<(String, Vec<u8>)>, i64)> {
        let mut r = self
            .ends
            .call("get", |mut c| async move {
                c.get(prefix, Some(GetOptions::new().with_prefix())).await
            })
            .await?;
        let rev = r.take_header().map(|h| h.revision()).unwrap_or(0);
        let kvs = r
            .take_kvs()
            .into_iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                )
            })
            .collect();
        Ok((kvs, rev))
    }

    /// Reads every JSON value under `prefix`, keyed by the rest of the key.
    pub async fn list_json<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<(String, T)>> {
        let (kvs, _) = self.list(prefix).await?;
        Ok(kvs
            .into_iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix(prefix)?.to_string();
                serde_json::from_slice(&v).ok().map(|v| (name, v))
            })
            .collect())
    }

    /// Writes one JSON value, optionally on a lease.
    pub async fn put<T: Serialize>(&self, key: &str, value: &T, lease: Option<i64>) -> Result<()> {
        let bytes = encode(value);
        self.ends
            .call("put", |mut c| {
                let opts = lease.map(|l| PutOptions::new().with_lease(l));
                let bytes = bytes.clone();
                async move { c.put(key, bytes, opts).await }
            })
            .await?;
        Ok(())
    }

    /// Deletes one key.
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.ends
            .call("delete", |mut c| async move { c.delete(key, None).await })
            .await?;
        Ok(())
    }

    /// Runs `ops` if every compare holds; returns whether it did and the
    /// revision. An attempt that got no answer is tried again on another
    /// endpoint, so a transaction may be applied and then evaluated once
    /// more: every transaction of the protocol compares what it writes
    /// (see [`super::deploy_lock`] for the lock's own case).
    pub async fn txn(&self, when: Vec<Compare>, ops: Vec<TxnOp>) -> Result<(bool, i64)> {
        let mut r = self
            .ends
            .call("transaction", |mut c| {
                let t = Txn::new().when(when.clone()).and_then(ops.clone());
                async move { c.txn(t).await }
            })
            .await?;
        let rev = r.take_header().map(|h| h.revision()).unwrap_or(0);
        Ok((r.succeeded(), rev))
    }

    /// A new lease of `ttl`; returns its id.
    pub async fn grant(&self, ttl: Duration) -> Result<i64> {
        let secs = ttl.as_secs().max(1) as i64;
        let r = self
            .ends
            .call("lease grant", |mut c| async move {
                c.lease_grant(secs, None).await
            })
            .await?;
        Ok(r.id())
    }

    /// Revokes a lease (its keys disappear at once).
    pub async fn revoke(&self, lease: i64) -> Result<()> {
        self.ends
            .call("lease revoke", |mut c| async move {
                c.lease_revoke(lease).await
            })
            .await?;
        Ok(())
    }

    /// The value the leader of election `name` campaigned with (its node id).
    pub async fn leader(&self, name: &str) -> Result<Option<String>> {
        let r = self
            .ends
            .call(
                "election leader",
                |mut c| async move { c.leader(name).await },
            )
            .await;
        match r {
            Ok(r) => Ok(r
                .kv()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())),
            // etcd answers "election: no leader" as an error.
            Err(e) if format!("{e:#}").contains("no leader") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Watches everything under `prefix` from `revision` on (0: from now).
    /// The stream stays on the endpoint that answered: a reader that must
    /// not miss a change also reads now and then.
    pub async fn watch_prefix(&self, prefix: &str, revision: i64) -> Result<WatchStream> {
        self.ends
            .call("watch", |mut c| async move {
                let mut opts = WatchOptions::new().with_prefix();
                if revision > 0 {
                    opts = opts.with_start_revision(revision);
                }
                c.watch(prefix, Some(opts)).await
            })
            .await
    }

    /// Keeps `lease` alive until the returned task is aborted or the lease is
    /// lost; `lost` is notified when etcd says the lease expired, or when no
    /// endpoint renewed it for longer than the lease (see [`super::keep_alive`]).
    pub fn keep_alive(
        &self,
        lease: i64,
        ttl: Duration,
        lost: tokio::sync::watch::Sender<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let ends = self.ends.clone();
        tokio::spawn(super::keep_alive::run(ends, lease, ttl, lost))
    }
}
