//! The listener's HTTP server (`trigger.listen`) and its one router.
//!
//! - `POST /deploy`, `GET /status`, `GET /metrics`, `GET /health`: the
//!   deploy API ([`super::deploy_api`]);
//! - `POST /webhook/github`, `POST /webhook/gitlab`: push webhooks
//!   ([`super::webhook`]);
//! - `GET /` and `/dashboard/…`: the deploy dashboard ([`super::dashboard`]).
//!
//! Credentials are compared in constant time; a rejected request is logged
//! with its peer address, never with what it sent. Bodies over 1 MiB get 413.
//! An endpoint whose secret is not configured answers 404. A request whose
//! `Host` is neither an IP address, `localhost` nor in `trigger.allowed_hosts`
//! gets 421 (DNS rebinding), `/health` excepted ([`super::auth`]).
//! Connections are limited as [`super::listener`] describes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use super::auth::host_guard;
use super::dashboard;
use super::deploy_api;
use super::listener;
use super::service::Service;
use super::settings::listen_addr;
use super::webhook;
use crate::config::Config;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// Binds `trigger.listen` (None when it is not set).
pub async fn bind(cfg: &Config) -> Result<Option<TcpListener>> {
    let Some(addr) = listen_addr(cfg)? else {
        return Ok(None);
    };
    let t = &cfg.trigger;
    if t.token.is_none() && t.github_secret.is_none() && t.gitlab_token.is_none() {
        tracing::warn!(
            "trigger.listen is set but none of trigger.token, trigger.github_secret, trigger.gitlab_token: \
             only GET /health (and /status, /metrics with trigger.public_status or trigger.metrics_token) are served"
        );
    }
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "the trigger URL listens on {addr}, beyond this machine; it speaks plain HTTP, so put it behind a TLS reverse proxy"
        );
    }
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (trigger.listen): another process may use the port; pick another or stop that process")
    })?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!("trigger URL: http://{local}/deploy (also /webhook/github, /webhook/gitlab, /status, /metrics); dashboard: http://{local}/");
    Ok(Some(listener))
}

/// Every route the listener answers.
fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/deploy", post(deploy_api::deploy))
        .route("/webhook/github", post(webhook::github))
        .route("/webhook/gitlab", post(webhook::gitlab))
        .route("/status", get(deploy_api::status))
        .route("/health", get(deploy_api::health))
        .route("/metrics", get(deploy_api::metrics))
        .route("/", get(dashboard::page))
        .route("/dashboard/view", get(dashboard::view))
        .route("/dashboard/events", get(dashboard::events))
        .route("/dashboard/assets/dashboard.css", get(dashboard::css))
        .route("/dashboard/assets/dashboard.js", get(dashboard::js))
        .route("/dashboard/deploy", post(dashboard::deploy))
        .route("/dashboard/rollback", post(dashboard::rollback))
        .route("/dashboard/keep", post(dashboard::keep))
        .route("/dashboard/remove", post(dashboard::remove))
}

/// Serves HTTP until `stop` turns true.
pub async fn serve(
    svc: Arc<Service>,
    listener: TcpListener,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let cfg = svc.config();
    let limits = listener::Limits::from_config(&cfg.trigger);
    tracing::info!(
        "trigger URL limits: {} connections, headers within {}, idle {}, requests within {}",
        limits.max_connections,
        humantime::format_duration(cfg.trigger.header_timeout),
        humantime::format_duration(cfg.trigger.idle_timeout),
        humantime::format_duration(cfg.trigger.request_timeout)
    );
    let app = Router::new()
        .merge(routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(from_fn_with_state(
            cfg.trigger.request_timeout,
            listener::deadline,
        ))
        .layer(from_fn_with_state(svc.clone(), host_guard))
        .with_state(svc);
    listener::serve(app, listener, limits, stop).await;
}

/// The HTTP server, with its own stop switch (a reload that changes
/// `trigger.listen` replaces it).
pub(super) struct Http {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Http {
    /// Serves `listener` in the background.
    pub(super) fn spawn(svc: &Arc<Service>, listener: TcpListener) -> Http {
        let (stop, rx) = tokio::sync::watch::channel(false);
        Http {
            stop,
            task: tokio::spawn(serve(svc.clone(), listener, rx)),
        }
    }

    /// Stops accepting, lets running requests finish (at most 5 s).
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}
