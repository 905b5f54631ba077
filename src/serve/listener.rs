//! How the trigger listener takes connections, so that no client can starve
//! the deployer.
//!
//! - At most `trigger.max_connections` connections are served at once; a
//!   connection beyond that is closed as soon as it is accepted. The cap is
//!   also held below the process's file descriptor limit minus
//!   [`FD_RESERVE`], which stay for the deploys' Git work, copies and hooks.
//! - A client has `trigger.header_timeout` to send a request's headers
//!   (hyper's header-read timeout; it also bounds how long a kept-alive
//!   connection waits for its next request).
//! - A connection on which no byte moves in either direction for
//!   `trigger.idle_timeout`, while no request is being answered, is closed
//!   (a client that stops reading a response, a stalled body).
//! - A request has `trigger.request_timeout` from its headers to its answer,
//!   body included ([`deadline`], a middleware of the router).
//!
//! [`raise_fd_limit`] lifts the soft `RLIMIT_NOFILE` to the hard limit when
//! the service starts.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::config::TriggerConfig;

/// File descriptors kept free for the deployer beyond the listener's connections.
pub const FD_RESERVE: u64 = 512;

/// How long a stopping listener lets running requests finish.
const DRAIN: Duration = Duration::from_secs(5);

/// The listener's limits, from `trigger:`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time to send a request's headers.
    pub header_timeout: Duration,
    /// Time without traffic before an idle connection is closed.
    pub idle_timeout: Duration,
}

impl Limits {
    /// The limits `t` asks for, the connection cap lowered (with a warning)
    /// when the file descriptor limit would not leave [`FD_RESERVE`] free.
    pub fn from_config(t: &TriggerConfig) -> Limits {
        let mut max = t.max_connections;
        if let Some(soft) = fd_limit() {
            let room = usize::try_from(soft.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
            let room = room.max(16);
            if max > room {
                tracing::warn!(
                    "trigger.max_connections is {max}, but the file descriptor limit is {soft} and \
                     {FD_RESERVE} stay free for deploys: serving at most {room} connections \
                     (raise LimitNOFILE= in the unit, or lower trigger.max_connections)"
                );
                max = room;
            }
        }
        Limits {
            max_connections: max,
            header_timeout: t.header_timeout,
            idle_timeout: t.idle_timeout,
        }
    }
}

/// The soft `RLIMIT_NOFILE` (None when unlimited).
fn fd_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, saying so when it changed.
pub fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let (Some(soft), Some(hard)) = (limit.current, limit.maximum) else {
        return;
    };
    if soft >= hard {
        return;
    }
    limit.current = Some(hard);
    match setrlimit(Resource::Nofile, limit) {
        Ok(()) => tracing::info!("open file limit raised from {soft} to {hard} (the hard limit)"),
        Err(e) => tracing::warn!("cannot raise the open file limit from {soft} to {hard}: {e}"),
    }
}

/// `trigger.request_timeout`: a request not answered in time gets 408.
pub async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            Json(json!({ "error": format!(
                "the request was not complete and answered within {} (trigger.request_timeout)",
                humantime::format_duration(limit)
            ) })),
        )
            .into_response(),
    }
}

/// Logs a repeated event at most once every 10 s, with how often it happened.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    count: u64,
}

impl Throttle {
    fn hit(&mut self, log: impl FnOnce(u64)) {
        self.count += 1;
        if self
            .last
            .map_or(true, |t| t.elapsed() >= Duration::from_secs(10))
        {
            log(self.count);
            self.count = 0;
            self.last = Some(Instant::now());
        }
    }
}

/// Accepts connections on `listener` and serves `app` on them within
/// `limits` until `stop` turns true; then lets running requests finish.
pub async fn serve(
    app: Router,
    listener: TcpListener,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (mut full, mut failing) = (Throttle::default(), Throttle::default());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and the like: wait a little instead of spinning.
                failing.hit(|n| {
                    tracing::warn!("the trigger URL cannot accept connections ({n}×): {e}")
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            full.hit(|n| {
                tracing::warn!(
                    "{n} connection(s) closed at once (the last from {peer}): {} are open \
                     (trigger.max_connections)",
                    limits.max_connections
                )
            });
            continue;
        };
        let (app, stop) = (app.clone(), stop.clone());
        tokio::spawn(async move {
            connection(app, stream, peer, limits, stop).await;
            drop(slot);
        });
    }
    drop(listener);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN, slots.acquire_many(all)).await;
}

/// Returns once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves one connection until it ends, times out, idles or the listener stops.
async fn connection(
    app: Router,
    stream: TcpStream,
    peer: SocketAddr,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let traffic = Arc::new(Traffic::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        traffic: traffic.clone(),
    });
    let busy = traffic.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let guard = InFlight::new(busy.clone());
            let app = app.clone();
            async move {
                let r = app.oneshot(req).await;
                drop(guard);
                r
            }
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!("trigger URL: connection from {peer}: {e}");
            }
        }
        _ = traffic.idle(limits.idle_timeout) => {
            tracing::debug!("trigger URL: connection from {peer} closed: idle for {:?}", limits.idle_timeout);
        }
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN, conn.as_mut()).await;
        }
    }
}

/// When a connection last moved a byte, and how many of its requests are being answered.
struct Traffic {
    start: Instant,
    /// Milliseconds after `start` of the last byte read or written.
    last: AtomicU64,
    in_flight: AtomicUsize,
}

impl Traffic {
    fn new() -> Traffic {
        Traffic {
            start: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Returns once nothing has moved for `limit` while no request was answered.
    async fn idle(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            let quiet = self.start.elapsed().saturating_sub(last);
            if quiet >= limit && self.in_flight.load(Ordering::Relaxed) == 0 {
                return;
            }
            tokio::time::sleep(limit.saturating_sub(quiet).max(Duration::from_millis(100))).await;
        }
    }
}

/// Counts a request as being answered while it lives.
struct InFlight(Arc<Traffic>);

impl InFlight {
    fn new(t: Arc<Traffic>) -> InFlight {
        t.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(t)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that notes in [`Traffic`] when bytes move.
struct Watched {
    inner: TcpStream,
    traffic: Arc<Traffic>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.traffic.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.traffic.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.traffic.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn idle_means_no_traffic_and_no_request_being_answered() {
        let t = Arc::new(Traffic::new());
        let limit = Duration::from_millis(200);
        // Quiet and nothing in flight: idle after the limit, not before.
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), t.idle(limit))
            .await
            .expect("idle after 200 ms");
        assert!(started.elapsed() >= limit);
        // A request being answered keeps the connection, however quiet.
        let guard = InFlight::new(t.clone());
        let busy = tokio::time::timeout(Duration::from_millis(800), t.idle(limit)).await;
        assert!(busy.is_err(), "closed while a request was being answered");
        // Traffic counts from its last byte.
        drop(guard);
        t.touch();
        let since = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), t.idle(limit))
            .await
            .expect("idle again once answered");
        assert!(since.elapsed() >= Duration::from_millis(150));
    }
}
