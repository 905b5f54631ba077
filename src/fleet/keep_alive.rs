//! Keeping a lease alive across etcd's endpoints: a renewal every third of
//! the lease, each on a keep-alive stream to one endpoint; a renewal that
//! fails or gets no answer within one attempt moves to the next endpoint at
//! once, so one hung member costs one attempt, not the lease.
//!
//! The lease is lost when etcd answers that it expired, or when no endpoint
//! renewed it for longer than the lease plus one attempt (the holder then
//! cannot know whether etcd still counts it in). A leader change in between
//! is harmless: etcd's new leader extends every lease by its full time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper};

use super::endpoints::Endpoints;

/// A keep-alive stream open on one endpoint.
struct Stream {
    endpoint: usize,
    keeper: LeaseKeeper,
    responses: LeaseKeepAliveStream,
}

/// One renewal on `endpoint` (opening a stream there if needed): Some(ttl
/// left > 0) when etcd answered, None when it did not within `per`.
async fn renew(
    ends: &Endpoints,
    lease: i64,
    endpoint: usize,
    stream: &mut Option<Stream>,
    per: Duration,
) -> Option<bool> {
    let attempt = async {
        if !matches!(stream, Some(s) if s.endpoint == endpoint) {
            let mut c = ends.client(endpoint).await.ok()?;
            let (keeper, responses) = c.lease_keep_alive(lease).await.ok()?;
            *stream = Some(Stream {
                endpoint,
                keeper,
                responses,
            });
        }
        let s = stream.as_mut()?;
        s.keeper.keep_alive().await.ok()?;
        let r = s.responses.message().await.ok()??;
        Some(r.ttl() > 0)
    };
    let got = tokio::time::timeout(per, attempt).await.ok().flatten();
    if got.is_none() {
        *stream = None;
    }
    got
}

/// Renews `lease` until the task is aborted or the lease is lost (then
/// `lost` is told).
pub(super) async fn run(
    ends: Arc<Endpoints>,
    lease: i64,
    ttl: Duration,
    lost: tokio::sync::watch::Sender<bool>,
) {
    let every = (ttl / 3).max(Duration::from_millis(300));
    let per = ends.attempt.min(every);
    let patience = ttl + per;
    let mut last_ok = Instant::now();
    let mut stream: Option<Stream> = None;
    let mut endpoint = ends.preferred();
    loop {
        // Every endpoint once, or until etcd answered.
        let mut alive = None;
        for _ in 0..ends.len() {
            alive = renew(&ends, lease, endpoint, &mut stream, per).await;
            if alive.is_some() {
                break;
            }
            endpoint = (endpoint + 1) % ends.len();
        }
        match alive {
            Some(true) => last_ok = Instant::now(),
            Some(false) => {
                tracing::warn!("fleet: etcd says lease {lease:x} expired");
                let _ = lost.send(true);
                return;
            }
            None if last_ok.elapsed() > patience => {
                tracing::warn!(
                    "fleet: no etcd endpoint renewed lease {lease:x} for {:?}",
                    last_ok.elapsed()
                );
                let _ = lost.send(true);
                return;
            }
            None => {}
        }
        // Sooner after a round without an answer: the lease runs out.
        let pause = if alive.is_some() {
            every
        } else {
            Duration::from_millis(100)
        };
        tokio::time::sleep(pause).await;
    }
}
