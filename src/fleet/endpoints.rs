//! The etcd endpoints as the fleet talks to them: one client per endpoint,
//! a preferred endpoint (the last that answered), and [`Endpoints::call`],
//! which gives each attempt a deadline shorter than the lease and moves on
//! to the next endpoint when one fails or does not answer.
//!
//! One client over all endpoints (etcd-client's balanced channel) keeps
//! routing requests to a member that hangs (paused, overloaded, cut off
//! without a reset) until HTTP/2 keepalive gives up on it, which takes
//! longer than a lease of a few seconds: every request routed there waits,
//! and so does the lease renewal. With one client per endpoint, the caller
//! chooses, and a hung member costs one attempt, not a lease.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use etcd_client::{Client, ConnectOptions};

/// Upper bound of one etcd request over all its attempts (a watch is not a request).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request's round trip is remembered ([`Endpoints::round_trip`]).
pub const ROUND_TRIP_PERIOD: Duration = Duration::from_secs(15);

/// One client per endpoint, each connected when first needed.
pub struct Endpoints {
    urls: Vec<String>,
    opts: ConnectOptions,
    clients: Vec<tokio::sync::Mutex<Option<Client>>>,
    preferred: AtomicUsize,
    /// The longest answered request of this period and of the one before
    /// ([`ROUND_TRIP_PERIOD`]), and when this period began.
    slowest: Mutex<(Instant, Duration, Duration)>,
    /// Deadline of one attempt on one endpoint.
    pub attempt: Duration,
}

/// Whether `e` says something about this endpoint (try another) rather
/// than about the request (every endpoint would answer the same).
fn endpoint_trouble(e: &etcd_client::Error) -> bool {
    match e {
        // gRPC codes (tonic::Code, not re-exported by etcd-client): Cancelled 1,
        // Unknown 2, DeadlineExceeded 4, ResourceExhausted 8, Aborted 10,
        // Internal 13, Unavailable 14 (etcd's "no leader", "leader changed").
        etcd_client::Error::GRpcStatus(s) => {
            matches!(s.code() as i32, 1 | 2 | 4 | 8 | 10 | 13 | 14)
        }
        _ => true,
    }
}

/// The deadline of one attempt for a lease of `ttl`: a third of it, so a
/// renewal that hangs on one endpoint still has time on another, within
/// 250 ms..2 s.
pub fn attempt_for(ttl: Duration) -> Duration {
    (ttl / 3).clamp(Duration::from_millis(250), Duration::from_secs(2))
}

impl Endpoints {
    /// The endpoints `urls`, connected with `opts`, attempts of `attempt`.
    pub fn new(urls: &[String], opts: ConnectOptions, attempt: Duration) -> Endpoints {
        Endpoints {
            urls: urls.to_vec(),
            opts,
            clients: urls.iter().map(|_| tokio::sync::Mutex::new(None)).collect(),
            preferred: AtomicUsize::new(0),
            slowest: Mutex::new((Instant::now(), Duration::ZERO, Duration::ZERO)),
            attempt,
        }
    }

    /// How many endpoints there are.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// Whether no endpoint is configured.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// The endpoint that answered last.
    pub fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed)
    }

    /// How long etcd takes to answer this node lately: the longest request
    /// answered in the last one or two [`ROUND_TRIP_PERIOD`]s, so that a slow
    /// link counts for as long as it lasts and one slow answer not forever.
    pub fn round_trip(&self) -> Duration {
        let s = self.slowest.lock().unwrap_or_else(|e| e.into_inner());
        match s.0.elapsed() < ROUND_TRIP_PERIOD * 2 {
            true => s.1.max(s.2),
            false => Duration::ZERO,
        }
    }

    /// Counts one answered request that took `took`.
    fn heard_after(&self, took: Duration) {
        let mut s = self.slowest.lock().unwrap_or_else(|e| e.into_inner());
        if s.0.elapsed() >= ROUND_TRIP_PERIOD {
            let previous = if s.0.elapsed() < ROUND_TRIP_PERIOD * 2 {
                s.1
            } else {
                Duration::ZERO
            };
            *s = (Instant::now(), Duration::ZERO, previous);
        }
        s.1 = s.1.max(took);
    }

    /// Marks endpoint `i` as the one to try first.
    pub fn prefer(&self, i: usize) {
        self.preferred
            .store(i % self.urls.len().max(1), Ordering::Relaxed);
    }

    /// The client of endpoint `i` (connected now if it was not yet; with a
    /// user this asks the endpoint for a token, so it can fail).
    pub async fn client(&self, i: usize) -> Result<Client, etcd_client::Error> {
        if self.urls.is_empty() {
            return Err(etcd_client::Error::InvalidArgs("no etcd endpoint".into()));
        }
        let i = i % self.urls.len();
        let mut slot = self.clients[i].lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = Client::connect([self.urls[i].as_str()], Some(self.opts.clone())).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs `f` on one endpoint after another, from the preferred one, each
    /// attempt within [`Endpoints::attempt`], until one answers or
    /// [`REQUEST_TIMEOUT`] passed. An error about the request itself (not
    /// the endpoint) is returned at once.
    pub async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        if self.urls.is_empty() {
            bail!("etcd {what}: `fleet.etcd` lists no endpoint");
        }
        let until = Instant::now() + REQUEST_TIMEOUT;
        let first = self.preferred();
        let mut last = String::new();
        for k in 0.. {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let i = (first + k) % self.urls.len();
            let per = self.attempt.min(left);
            let began = Instant::now();
            let tried = tokio::time::timeout(per, async { f(self.client(i).await?).await }).await;
            match tried {
                Ok(Ok(v)) => {
                    self.prefer(i);
                    self.heard_after(began.elapsed());
                    return Ok(v);
                }
                Ok(Err(e)) if !endpoint_trouble(&e) => bail!("etcd {what}: {e}"),
                Ok(Err(e)) => last = format!("{}: {e}", self.urls[i]),
                Err(_) => last = format!("{}: no answer within {per:?}", self.urls[i]),
            }
            // Every endpoint refused at once (all down): do not spin.
            if (k + 1) % self.urls.len() == 0 {
                tokio::time::sleep(Duration::from_millis(100).min(left)).await;
            }
        }
        bail!(
            "etcd {what}: no answer within {}s from any endpoint (last: {last})",
            REQUEST_TIMEOUT.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_round_trip_is_the_slowest_recent_answer() {
        let e = Endpoints::new(
            &["http://127.0.0.1:1".into()],
            ConnectOptions::new(),
            Duration::from_secs(1),
        );
        assert_eq!(e.round_trip(), Duration::ZERO);
        e.heard_after(Duration::from_millis(240));
        e.heard_after(Duration::from_micros(5));
        assert_eq!(e.round_trip(), Duration::from_millis(240));
        // Two periods later a slow answer is forgotten.
        e.slowest.lock().unwrap().0 -= ROUND_TRIP_PERIOD * 2;
        assert_eq!(e.round_trip(), Duration::ZERO);
        e.heard_after(Duration::from_millis(3));
        assert_eq!(e.round_trip(), Duration::from_millis(3));
    }

    #[test]
    fn an_attempt_is_a_third_of_the_lease_within_bounds() {
        assert_eq!(attempt_for(Duration::from_secs(3)), Duration::from_secs(1));
        assert_eq!(
            attempt_for(Duration::from_millis(600)),
            Duration::from_millis(250)
        );
        assert_eq!(attempt_for(Duration::from_secs(60)), Duration::from_secs(2));
    }

    #[test]
    fn only_trouble_with_the_endpoint_moves_to_the_next() {
        let status = |code: i32| {
            etcd_client::Error::GRpcStatus(tonic::Status::new(tonic::Code::from(code), "x"))
        };
        // Unavailable (etcd's "no leader"), DeadlineExceeded: another endpoint may answer.
        assert!(endpoint_trouble(&status(14)));
        assert!(endpoint_trouble(&status(4)));
        // InvalidArgument, PermissionDenied, Unauthenticated: every endpoint says the same.
        assert!(!endpoint_trouble(&status(3)));
        assert!(!endpoint_trouble(&status(7)));
        assert!(!endpoint_trouble(&status(16)));
        assert!(endpoint_trouble(&etcd_client::Error::IoError(
            std::io::Error::other("reset")
        )));
    }
}
