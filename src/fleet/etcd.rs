//! The etcd client as the fleet uses it: connection from the `fleet:`
//! section, JSON values, and the few transactions the protocol needs.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue,
    PutOptions, TlsOptions, Txn, TxnOp, WatchOptions, WatchStream,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::keys::Keys;
use crate::config::FleetConfig;

/// Upper bound of one etcd request (a watch is not a request).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A connected client plus the site's keys.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
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

async fn bounded<T, F>(what: &str, fut: F) -> Result<T>
where
    F: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(r) => r.map_err(|e| anyhow!("etcd {what}: {e}")),
        Err(_) => bail!(
            "etcd {what}: no answer within {}s",
            REQUEST_TIMEOUT.as_secs()
        ),
    }
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

impl Etcd {
    /// Connects to the configured endpoints and checks that one answers.
    pub async fn connect(f: &FleetConfig) -> Result<Etcd> {
        let endpoints = f.etcd.join(", ");
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(3));
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
        let client = tokio::time::timeout(REQUEST_TIMEOUT, Client::connect(&f.etcd, Some(opts)))
            .await
            .map_err(|_| anyhow!("no answer within {}s", REQUEST_TIMEOUT.as_secs()))
            .and_then(|r| r.map_err(|e| anyhow!("{e}")))
            .with_context(|| {
                format!("fleet: cannot reach etcd at {endpoints}; check `fleet.etcd` and that etcd runs")
            })?;
        let etcd = Etcd {
            client,
            keys: Keys::new(&f.site),
            endpoints,
        };
        // Connecting is lazy: ask something to be sure one endpoint answers.
        etcd.get_raw(&etcd.keys.last()).await.with_context(|| {
            format!(
                "fleet: etcd at {} does not answer; check `fleet.etcd` (and user/password or TLS files)",
                etcd.endpoints
            )
        })?;
        Ok(etcd)
    }

    /// The raw client, for streams (watches, keep-alives, elections).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    async fn get_raw(&self, key: &str) -> Result<Option<KeyValue>> {
        let mut c = self.client.clone();
        let mut r = bounded("get", c.get(key, None)).await?;
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
        let mut c = self.client.clone();
        let mut r = bounded("get", c.get(prefix, Some(GetOptions::new().with_prefix()))).await?;
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
        let mut c = self.client.clone();
        let opts = lease.map(|l| PutOptions::new().with_lease(l));
        bounded("put", c.put(key, encode(value), opts)).await?;
        Ok(())
    }

    /// Deletes one key.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let mut c = self.client.clone();
        bounded("delete", c.delete(key, None)).await?;
        Ok(())
    }

    /// Runs `ops` if every compare holds; returns whether it did and the revision.
    pub async fn txn(&self, when: Vec<Compare>, ops: Vec<TxnOp>) -> Result<(bool, i64)> {
        let mut c = self.client.clone();
        let mut r = bounded("transaction", c.txn(Txn::new().when(when).and_then(ops))).await?;
        let rev = r.take_header().map(|h| h.revision()).unwrap_or(0);
        Ok((r.succeeded(), rev))
    }

    /// A new lease of `ttl`; returns its id.
    pub async fn grant(&self, ttl: Duration) -> Result<i64> {
        let mut c = self.client.clone();
        let secs = ttl.as_secs().max(1) as i64;
        Ok(bounded("lease grant", c.lease_grant(secs, None))
            .await?
            .id())
    }

    /// Revokes a lease (its keys disappear at once).
    pub async fn revoke(&self, lease: i64) -> Result<()> {
        let mut c = self.client.clone();
        bounded("lease revoke", c.lease_revoke(lease)).await?;
        Ok(())
    }

    /// Watches everything under `prefix` from `revision` on (0: from now).
    pub async fn watch_prefix(&self, prefix: &str, revision: i64) -> Result<WatchStream> {
        let mut c = self.client.clone();
        let mut opts = WatchOptions::new().with_prefix();
        if revision > 0 {
            opts = opts.with_start_revision(revision);
        }
        bounded("watch", c.watch(prefix, Some(opts))).await
    }

    /// Keeps `lease` alive until the returned task is aborted or the lease is
    /// lost; `lost` is notified when etcd says the lease expired (or cannot be
    /// reached for longer than the lease).
    pub fn keep_alive(
        &self,
        lease: i64,
        ttl: Duration,
        lost: tokio::sync::watch::Sender<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let client = self.client.clone();
        tokio::spawn(async move {
            let every = (ttl / 3).max(Duration::from_millis(300));
            let mut last_ok = std::time::Instant::now();
            let mut stream: Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)> =
                None;
            loop {
                if stream.is_none() {
                    let mut c = client.clone();
                    stream = tokio::time::timeout(every, c.lease_keep_alive(lease))
                        .await
                        .ok()
                        .and_then(|r| r.ok());
                }
                let mut alive = None;
                if let Some((keeper, responses)) = stream.as_mut() {
                    let sent = keeper.keep_alive().await.is_ok();
                    let got = if sent {
                        tokio::time::timeout(every, responses.message()).await
                    } else {
                        Ok(Err(etcd_client::Error::WatchError("send".into())))
                    };
                    match got {
                        Ok(Ok(Some(r))) => alive = Some(r.ttl() > 0),
                        _ => stream = None,
                    }
                }
                match alive {
                    Some(true) => last_ok = std::time::Instant::now(),
                    Some(false) => {
                        let _ = lost.send(true);
                        return;
                    }
                    None if last_ok.elapsed() > ttl => {
                        let _ = lost.send(true);
                        return;
                    }
                    None => {}
                }
                tokio::time::sleep(every).await;
            }
        })
    }
}
