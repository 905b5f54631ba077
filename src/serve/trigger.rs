//! The deploy trigger URL (`trigger.listen`) and Git host webhooks.
//!
//! - `POST /deploy` with `Authorization: Bearer <trigger.token>`: 202 and the
//!   deploy id, or 409 when a deploy runs;
//! - `POST /webhook/github`: `X-Hub-Signature-256` is the HMAC-SHA256 of the
//!   raw body with `trigger.github_secret`; pushes to the configured branch deploy;
//! - `POST /webhook/gitlab`: `X-Gitlab-Token` must equal `trigger.gitlab_token`;
//! - `GET /status`: the JSON of `rootswap status --json`;
//! - `GET /health`: 200, or 503 while a fleet node has not caught up;
//! - `GET /metrics`: Prometheus text;
//! - `GET /` and `/dashboard/…`: the deploy dashboard ([`super::dashboard`]).
//!
//! Credentials are compared in constant time; a rejected request is logged
//! with its peer address, never with what it sent. Bodies over 1 MiB get 413.
//! An endpoint whose secret is not configured answers 404.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use super::{Busy, Service};
use crate::config::Config;
use crate::deploy::Trigger;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// Checks `trigger.listen` (an address such as `127.0.0.1:9810`).
/// Checks `trigger.listen` (an address such as `127.0.0.1:9810`) and that no
/// secret is empty (an empty `${VAR}` would otherwise accept an empty token).
pub fn validate(cfg: &Config) -> Result<()> {
    let t = &cfg.trigger;
    for (key, v) in [
        ("trigger.token", &t.token),
        ("trigger.github_secret", &t.github_secret),
        ("trigger.gitlab_token", &t.gitlab_token),
    ] {
        if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
            anyhow::bail!(
                "`{key}` is empty; set it to a long random value (e.g. from `openssl rand -hex 32`) or remove the key"
            );
        }
    }
    listen_addr(cfg).map(|_| ())
}

fn listen_addr(cfg: &Config) -> Result<Option<SocketAddr>> {
    let Some(text) = cfg.trigger.listen.as_deref() else {
        return Ok(None);
    };
    let addr: SocketAddr = text.trim().parse().map_err(|_| {
        anyhow!("`trigger.listen: {text}` is not an address with a port, e.g. 127.0.0.1:9810 (or [::1]:9810)")
    })?;
    Ok(Some(addr))
}

/// Binds `trigger.listen` (None when it is not set).
pub async fn bind(cfg: &Config) -> Result<Option<TcpListener>> {
    let Some(addr) = listen_addr(cfg)? else {
        return Ok(None);
    };
    let t = &cfg.trigger;
    if t.token.is_none() && t.github_secret.is_none() && t.gitlab_token.is_none() {
        tracing::warn!(
            "trigger.listen is set but none of trigger.token, trigger.github_secret, trigger.gitlab_token: \
             only GET /status and GET /metrics are served"
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

/// Serves HTTP until `stop` turns true.
pub async fn serve(
    svc: Arc<Service>,
    listener: TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/deploy", post(deploy))
        .route("/webhook/github", post(github))
        .route("/webhook/gitlab", post(gitlab))
        .route("/status", get(status))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(super::dashboard::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(svc);
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let result = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    if let Err(e) = result {
        tracing::error!("the trigger URL stopped: {e}");
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// Constant-time equality of two secrets (hashed first, so lengths do not leak either).
pub fn secret_eq(given: &[u8], expected: &[u8]) -> bool {
    Sha256::digest(given)
        .ct_eq(&Sha256::digest(expected))
        .into()
}

/// Verifies a GitHub `X-Hub-Signature-256` header (`sha256=<hex>`) over `body`.
pub fn github_signature_ok(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(sig) = hex::decode(sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    expected.as_slice().ct_eq(&sig).into()
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn not_configured(what: &str, key: &str) -> Response {
    reply(
        StatusCode::NOT_FOUND,
        json!({ "error": format!("{what} is off: set {key} in the configuration") }),
    )
}

fn unauthorized(peer: SocketAddr, what: &str, why: &str) -> Response {
    tracing::warn!("{what} from {peer} rejected (401): {why}");
    let mut r = reply(StatusCode::UNAUTHORIZED, json!({ "error": "unauthorized" }));
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

/// Starts a deploy of the branch head: 202 with its id, 409 when one runs.
fn start(svc: &Arc<Service>, trigger: Trigger, who: &str) -> Response {
    if let Some(agent) = svc.fleet() {
        return crate::fleet::http::trigger(agent, trigger, who);
    }
    match svc.try_begin() {
        Ok(id) => {
            tracing::info!("{who}: deploy {id} accepted");
            svc.spawn_deploy(id.clone(), trigger, None);
            reply(
                StatusCode::ACCEPTED,
                json!({ "id": id, "status": "started", "trigger": trigger.as_str() }),
            )
        }
        Err(Busy::ShuttingDown) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": Busy::ShuttingDown.to_string() }),
        ),
        Err(busy) => {
            tracing::info!("{who}: refused (409): {busy}");
            let running = match &busy {
                Busy::Deploying(id) => json!({ "id": id }),
                Busy::Locked(pid) => json!({ "pid": pid }),
                Busy::ShuttingDown => Value::Null,
            };
            reply(
                StatusCode::CONFLICT,
                json!({ "error": busy.to_string(), "running": running }),
            )
        }
    }
}

async fn deploy(
    State(svc): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    _body: Bytes,
) -> Response {
    let cfg = svc.config();
    let Some(token) = cfg.trigger.token.as_deref() else {
        return not_configured("POST /deploy", "trigger.token");
    };
    let given = header_str(&headers, header::AUTHORIZATION.as_str())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match given {
        None => unauthorized(peer, "POST /deploy", "no `Authorization: Bearer` header"),
        Some(g) if !secret_eq(g.as_bytes(), token.as_bytes()) => unauthorized(
            peer,
            "POST /deploy",
            "wrong bearer token (see trigger.token)",
        ),
        Some(_) => start(
            &svc,
            Trigger::TriggerUrl,
            &format!("POST /deploy from {peer}"),
        ),
    }
}

/// What a push webhook asks for.
fn push_ref(body: &[u8]) -> Result<Value, Box<Response>> {
    serde_json::from_slice::<Value>(body).map_err(|e| {
        Box::new(reply(
            StatusCode::BAD_REQUEST,
            json!({ "error": format!("the body is not JSON ({e}); set the webhook's content type to application/json") }),
        ))
    })
}

/// Deploys when a push went to the configured branch; says why not otherwise.
fn on_push(svc: &Arc<Service>, payload: &Value, who: &str) -> Response {
    let branch = svc.config().source.branch.clone();
    let want = format!("refs/heads/{branch}");
    let got = payload.get("ref").and_then(Value::as_str).unwrap_or("");
    if got != want {
        tracing::info!("{who}: push to {got:?} ignored (following {want})");
        return reply(
            StatusCode::OK,
            json!({ "ignored": format!("push to {got:?}; this service follows {want}") }),
        );
    }
    if payload.get("deleted").and_then(Value::as_bool) == Some(true) {
        return reply(
            StatusCode::OK,
            json!({ "ignored": format!("{want} was deleted") }),
        );
    }
    start(svc, Trigger::Webhook, who)
}

async fn github(
    State(svc): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let cfg = svc.config();
    let Some(secret) = cfg.trigger.github_secret.as_deref() else {
        return not_configured("POST /webhook/github", "trigger.github_secret");
    };
    let who = format!("POST /webhook/github from {peer}");
    match header_str(&headers, "x-hub-signature-256") {
        None => return unauthorized(peer, "POST /webhook/github", "no X-Hub-Signature-256 header"),
        Some(sig) if !github_signature_ok(secret, &body, Some(sig)) => {
            return unauthorized(
                peer,
                "POST /webhook/github",
                "X-Hub-Signature-256 does not match the body (is the webhook's secret trigger.github_secret?)",
            )
        }
        Some(_) => {}
    }
    match header_str(&headers, "x-github-event").unwrap_or("") {
        "ping" => reply(StatusCode::OK, json!({ "ok": true, "event": "ping" })),
        "push" => match push_ref(&body) {
            Ok(payload) => on_push(&svc, &payload, &who),
            Err(r) => *r,
        },
        other => reply(
            StatusCode::OK,
            json!({ "ignored": format!("event {other:?}; only push deploys") }),
        ),
    }
}

async fn gitlab(
    State(svc): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let cfg = svc.config();
    let Some(token) = cfg.trigger.gitlab_token.as_deref() else {
        return not_configured("POST /webhook/gitlab", "trigger.gitlab_token");
    };
    let who = format!("POST /webhook/gitlab from {peer}");
    match header_str(&headers, "x-gitlab-token") {
        None => return unauthorized(peer, "POST /webhook/gitlab", "no X-Gitlab-Token header"),
        Some(t) if !secret_eq(t.as_bytes(), token.as_bytes()) => {
            return unauthorized(
                peer,
                "POST /webhook/gitlab",
                "wrong X-Gitlab-Token (see trigger.gitlab_token)",
            )
        }
        Some(_) => {}
    }
    let payload = match push_ref(&body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match payload
        .get("object_kind")
        .and_then(Value::as_str)
        .unwrap_or("")
    {
        "push" => on_push(&svc, &payload, &who),
        other => reply(
            StatusCode::OK,
            json!({ "ignored": format!("event {other:?}; only push deploys") }),
        ),
    }
}

/// `GET /health`: 503 while a fleet node has not caught up (see [`crate::fleet::http::health`]).
async fn health(State(svc): State<Arc<Service>>) -> Response {
    crate::fleet::http::health(svc.fleet())
}

async fn status(State(svc): State<Arc<Service>>) -> Response {
    let cfg = svc.config();
    match tokio::task::spawn_blocking(move || crate::status::gather(&cfg)).await {
        Ok(Ok(s)) => match svc.fleet() {
            Some(agent) => (
                StatusCode::OK,
                Json(crate::fleet::http::with_fleet(&s, agent)),
            )
                .into_response(),
            None => (StatusCode::OK, Json(s)).into_response(),
        },
        Ok(Err(e)) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": crate::redact::text(&format!("{e:#}")) }),
        ),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": e.to_string() }),
        ),
    }
}

async fn metrics(State(svc): State<Arc<Service>>) -> Response {
    let cfg = svc.config();
    let running = svc.running().is_some();
    let job = svc.clone();
    match tokio::task::spawn_blocking(move || job.metrics.render(&cfg, running)).await {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            crate::redact::text(&format!("# error: {e:#}\n")).into_owned(),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("# error: {e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn github_signature() {
        // The example from GitHub's documentation on validating webhook deliveries.
        assert!(github_signature_ok(
            "It's a Secret to Everybody",
            b"Hello, World!",
            Some("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
        ));
        let body = br#"{"ref":"refs/heads/main"}"#;
        let sig = sign("s", body);
        assert!(github_signature_ok("s", body, Some(&sig)));
        assert!(!github_signature_ok(
            "s",
            br#"{"ref":"refs/heads/evil"}"#,
            Some(&sig)
        ));
        assert!(!github_signature_ok("other", body, Some(&sig)));
        assert!(!github_signature_ok("s", body, None));
        assert!(!github_signature_ok("s", body, Some("sha1=abc")));
        assert!(!github_signature_ok("s", body, Some("sha256=zz")));
        assert!(!github_signature_ok("s", body, Some("sha256=")));
    }

    #[test]
    fn empty_secrets_are_refused() {
        let cfg = |extra: &str| {
            Config::parse(
                &format!("webroot: /w\nsource: {{repo: x}}\ntrigger:\n{extra}"),
                std::path::Path::new("/etc/rootswap/t.yaml"),
            )
            .unwrap()
        };
        let msg = format!("{:#}", validate(&cfg("  token: ''\n")).unwrap_err());
        assert!(
            msg.contains("trigger.token") && msg.contains("empty"),
            "{msg}"
        );
        assert!(validate(&cfg("  gitlab_token: ' '\n")).is_err());
        assert!(validate(&cfg("  token: t\n  listen: 127.0.0.1:9810\n")).is_ok());
        let msg = format!("{:#}", validate(&cfg("  listen: localhost\n")).unwrap_err());
        assert!(msg.contains("trigger.listen"), "{msg}");
    }

    #[test]
    fn secrets_compare() {
        assert!(secret_eq(b"abc", b"abc"));
        assert!(!secret_eq(b"abc", b"abd"));
        assert!(!secret_eq(b"ab", b"abc"));
        assert!(!secret_eq(b"", b"abc"));
    }
}
