//! The deploy trigger URL (`trigger.listen`) and Git host webhooks.
//!
//! - `POST /deploy` with `Authorization: Bearer <trigger.token>`: 202 and the
//!   deploy id, or 409 when a deploy runs (an explicit deploy: it deploys now);
//! - `POST /webhook/github`: `X-Hub-Signature-256` is the HMAC-SHA256 of the
//!   raw body with `trigger.github_secret`; a push to the configured branch
//!   asks the service to look at the branch now ([`Check::Webhook`]), which
//!   decides as the schedule does (a head a rollback left, or one that failed,
//!   is not deployed); a delivery seen before is answered "already handled";
//! - `POST /webhook/gitlab`: `X-Gitlab-Token` must equal `trigger.gitlab_token`;
//! - `GET /status`: the JSON of `rootswap status --json`, and `GET /metrics`:
//!   Prometheus text, both with the token (or `trigger.metrics_token` for the
//!   metrics) unless `trigger.public_status` is true;
//! - `GET /health`: 200, or 503 while a fleet node has not caught up; public;
//! - `GET /` and `/dashboard/…`: the deploy dashboard ([`super::dashboard`]).
//!
//! Credentials are compared in constant time; a rejected request is logged
//! with its peer address, never with what it sent. Bodies over 1 MiB get 413.
//! An endpoint whose secret is not configured answers 404. A request whose
//! `Host` is neither an IP address, `localhost` nor in `trigger.allowed_hosts`
//! gets 421 (DNS rebinding), `/health` excepted. Connections are limited as
//! [`super::listener`] describes.

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use super::{lock, Busy, Check, Service};
use crate::config::Config;
use crate::deploy::Trigger;
use crate::lock::DeployLock;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// Checks `trigger.listen` (an address such as `127.0.0.1:9810`).
/// Checks `trigger.listen` (an address such as `127.0.0.1:9810`) and that no
/// secret is empty (an empty `${VAR}` would otherwise accept an empty token).
pub fn validate(cfg: &Config) -> Result<()> {
    let t = &cfg.trigger;
    for (key, v) in [
        ("trigger.token", &t.token),
        ("trigger.metrics_token", &t.metrics_token),
        ("trigger.github_secret", &t.github_secret),
        ("trigger.gitlab_token", &t.gitlab_token),
    ] {
        if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
            anyhow::bail!(
                "`{key}` is empty; set it to a long random value (e.g. from `openssl rand -hex 32`) or remove the key"
            );
        }
    }
    validate_limits(&cfg.trigger)?;
    listen_addr(cfg).map(|_| ())
}

/// Checks the listener's limits and `trigger.allowed_hosts`.
fn validate_limits(t: &crate::config::TriggerConfig) -> Result<()> {
    if !(1..=65_536).contains(&t.max_connections) {
        anyhow::bail!(
            "`trigger.max_connections: {}` must be between 1 and 65536 (default 256)",
            t.max_connections
        );
    }
    for (key, d) in [
        ("trigger.header_timeout", t.header_timeout),
        ("trigger.idle_timeout", t.idle_timeout),
        ("trigger.request_timeout", t.request_timeout),
    ] {
        if d < std::time::Duration::from_millis(100) || d > std::time::Duration::from_secs(3600) {
            anyhow::bail!(
                "`{key}: {}` must be between 100ms and 1h",
                humantime::format_duration(d)
            );
        }
    }
    for h in &t.allowed_hosts {
        let bad = h.trim().is_empty()
            || h.contains(|c: char| c.is_whitespace() || c == '/' || c == '@' || c.is_control());
        if bad {
            anyhow::bail!(
                "`trigger.allowed_hosts` entry {h:?} is not a host name: write it as the client \
                 sends it in the Host header, e.g. deploy.example.com or deploy.example.com:8443"
            );
        }
    }
    Ok(())
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

/// Serves HTTP until `stop` turns true.
pub async fn serve(
    svc: Arc<Service>,
    listener: TcpListener,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let cfg = svc.config();
    let limits = super::listener::Limits::from_config(&cfg.trigger);
    tracing::info!(
        "trigger URL limits: {} connections, headers within {}, idle {}, requests within {}",
        limits.max_connections,
        humantime::format_duration(cfg.trigger.header_timeout),
        humantime::format_duration(cfg.trigger.idle_timeout),
        humantime::format_duration(cfg.trigger.request_timeout)
    );
    let app = Router::new()
        .route("/deploy", post(deploy))
        .route("/webhook/github", post(github))
        .route("/webhook/gitlab", post(gitlab))
        .route("/status", get(status))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(super::dashboard::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(from_fn_with_state(
            cfg.trigger.request_timeout,
            super::listener::deadline,
        ))
        .layer(from_fn_with_state(svc.clone(), host_guard))
        .with_state(svc);
    super::listener::serve(app, listener, limits, stop).await;
}

/// The host name part of a `Host` header (`[::1]:80` -> `::1`, `a.b:80` -> `a.b`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// A client may address the listener by `host`: an IP address (which no
/// DNS rebinding can produce), `localhost`, or a `trigger.allowed_hosts`
/// entry (with its port, or any port when the entry has none).
pub fn host_allowed(allowed: &[String], host: &str) -> bool {
    let host = host.trim();
    let name = host_name(host);
    if name.parse::<IpAddr>().is_ok() || name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    allowed
        .iter()
        .map(|a| a.trim())
        .any(|a| a.eq_ignore_ascii_case(host) || (!a.contains(':') && a.eq_ignore_ascii_case(name)))
}

/// Refuses (421) a request addressed to a host name this listener does not
/// answer to, before any handler runs; `/health` is exempt (load balancers).
async fn host_guard(
    State(svc): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let host = header_str(req.headers(), header::HOST.as_str())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    // A request without `Host` (HTTP/1.0 scripts) is no browser's.
    let allowed = host.as_deref().map_or(true, |h| {
        host_allowed(&svc.config().trigger.allowed_hosts, h)
    });
    if allowed {
        return next.run(req).await;
    }
    let host = host.unwrap_or_default();
    tracing::warn!(
        "{} {} from {peer} refused (421): Host {host:?} is not this listener's (trigger.allowed_hosts)",
        req.method(),
        req.uri().path()
    );
    reply(
        StatusCode::MISDIRECTED_REQUEST,
        json!({ "error": format!(
            "this listener does not answer to the host {host:?}: address it by IP address or localhost, \
             or add the name to trigger.allowed_hosts (a guard against DNS rebinding)"
        ) }),
    )
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

/// Webhook deliveries remembered, to answer a repeated one "already handled".
pub const DELIVERIES_KEPT: usize = 1000;

/// The last [`DELIVERIES_KEPT`] webhook deliveries handled: their ids
/// (`X-GitHub-Delivery`, `X-Gitlab-Event-UUID`) and their pushes' `before`/`after` pairs.
#[derive(Debug, Default)]
pub struct Deliveries {
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl Deliveries {
    /// The first of `keys` seen before; when none was, remembers them all
    /// (forgetting the oldest beyond [`DELIVERIES_KEPT`]) and returns None.
    pub fn repeat(&mut self, keys: &[String]) -> Option<String> {
        if let Some(k) = keys.iter().find(|k| self.seen.contains(*k)) {
            return Some(k.clone());
        }
        for k in keys {
            if self.seen.insert(k.clone()) {
                self.order.push_back(k.clone());
            }
        }
        while self.order.len() > DELIVERIES_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        None
    }
}

/// What identifies a delivery: its id header, and the push's `before`/`after`
/// pair (the same push redelivered under another id has the same pair).
fn delivery_keys(id: Option<&str>, payload: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(id) = id.map(str::trim).filter(|i| !i.is_empty()) {
        keys.push(format!("id:{id}"));
    }
    let field = |k: &str| payload.get(k).and_then(Value::as_str).unwrap_or("");
    let (before, after) = (field("before"), field("after"));
    if !after.is_empty() {
        keys.push(format!("push:{}:{before}..{after}", field("ref")));
    }
    keys
}

/// 409 when another process (`rootswap deploy`) holds the deploy lock: the
/// check would skip the push, so it is refused before the delivery counts as
/// handled, and the Git host's retry is looked at. (While the service's own
/// deploy runs, the check is made again after it.)
fn locked_elsewhere(svc: &Service, who: &str) -> Option<Response> {
    if svc.running().is_some() {
        return None;
    }
    let pid = DeployLock::holder(&svc.config().state_path())?;
    tracing::info!("{who}: refused (409): {}", Busy::Locked(pid));
    Some(reply(
        StatusCode::CONFLICT,
        json!({ "error": Busy::Locked(pid).to_string(), "running": { "pid": pid } }),
    ))
}

/// A push to the configured branch asks the service to look at the branch
/// now, through the same decision as the schedule; says why not otherwise.
fn on_push(svc: &Arc<Service>, payload: &Value, delivery: Option<&str>, who: &str) -> Response {
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
    if let Some(agent) = svc.fleet().filter(|a| !a.is_leader()) {
        return crate::fleet::http::not_leader(agent, who);
    }
    if let Some(r) = locked_elsewhere(svc, who) {
        return r;
    }
    if let Some(key) = lock(&svc.deliveries).repeat(&delivery_keys(delivery, payload)) {
        tracing::info!("{who}: delivery already handled ({key}); nothing to do");
        return reply(
            StatusCode::OK,
            json!({ "status": "already handled", "delivery": key }),
        );
    }
    tracing::info!("{who}: push to {want}: looking at the branch now");
    svc.request_check(Check::Webhook);
    reply(
        StatusCode::ACCEPTED,
        json!({
            "status": "check requested",
            "trigger": Trigger::Webhook.as_str(),
            "note": "the service looks at the branch now and deploys its head unless it is live, \
                     is the head a rollback moved away from, or failed to deploy before",
        }),
    )
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
            Ok(payload) => on_push(
                &svc,
                &payload,
                header_str(&headers, "x-github-delivery"),
                &who,
            ),
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
        "push" => on_push(
            &svc,
            &payload,
            header_str(&headers, "x-gitlab-event-uuid"),
            &who,
        ),
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

/// Reading `what` needs the token unless `trigger.public_status` (or, for
/// the metrics, `trigger.metrics_token`): 401 otherwise.
fn read_refused(
    cfg: &Config,
    peer: SocketAddr,
    headers: &HeaderMap,
    what: &str,
    metrics_token: bool,
) -> Option<Response> {
    if super::dashboard::may_read(cfg, headers) {
        return None;
    }
    let metrics_ok = metrics_token
        && match (
            cfg.trigger.metrics_token.as_deref(),
            super::dashboard::given_token(headers),
        ) {
            (Some(t), Some(g)) => secret_eq(g.as_bytes(), t.as_bytes()),
            _ => false,
        };
    if metrics_ok {
        return None;
    }
    Some(unauthorized(
        peer,
        what,
        "no or wrong token (trigger.token, or set trigger.public_status: true to publish it)",
    ))
}

async fn status(
    State(svc): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let cfg = svc.config();
    if let Some(r) = read_refused(&cfg, peer, &headers, "GET /status", false) {
        return r;
    }
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

async fn metrics(
    State(svc): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let cfg = svc.config();
    if let Some(r) = read_refused(&cfg, peer, &headers, "GET /metrics", true) {
        return r;
    }
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
    fn hosts() {
        let allowed = vec![
            "deploy.example.com".to_string(),
            "b.example:8443".to_string(),
        ];
        for ok in [
            "127.0.0.1",
            "127.0.0.1:9810",
            "10.1.2.3:80",
            "[::1]:9810",
            "localhost:9810",
            "LOCALHOST",
            "deploy.example.com",
            "Deploy.Example.com:443",
            "b.example:8443",
        ] {
            assert!(host_allowed(&allowed, ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9810",
            "b.example",
            "b.example:80",
            "deploy.example.com.evil",
            "127.0.0.1.nip.io",
            "localhost.evil",
            "",
        ] {
            assert!(!host_allowed(&allowed, bad), "{bad}");
        }
    }

    #[test]
    fn deliveries_are_remembered_and_bounded() {
        let mut d = Deliveries::default();
        let keys = |i: usize| vec![format!("id:{i}"), format!("push:r:a..{i}")];
        assert_eq!(d.repeat(&keys(0)), None);
        assert_eq!(d.repeat(&keys(0)), Some("id:0".to_string()));
        // The same push under another id is a repeat too.
        assert_eq!(
            d.repeat(&["id:new".to_string(), "push:r:a..0".to_string()]),
            Some("push:r:a..0".to_string())
        );
        for i in 1..=DELIVERIES_KEPT {
            assert_eq!(d.repeat(&keys(i)), None);
        }
        assert!(d.order.len() <= DELIVERIES_KEPT && d.seen.len() == d.order.len());
        assert_eq!(
            d.repeat(&["id:0".to_string()]),
            None,
            "the oldest is forgotten"
        );
        let payload = json!({ "ref": "refs/heads/main", "before": "a", "after": "b" });
        assert_eq!(
            delivery_keys(Some(" x "), &payload),
            vec!["id:x".to_string(), "push:refs/heads/main:a..b".to_string()]
        );
        assert!(delivery_keys(None, &json!({ "ref": "r" })).is_empty());
    }

    #[test]
    fn limits_are_validated() {
        let cfg = |extra: &str| {
            Config::parse(
                &format!("webroot: /w\nsource: {{repo: x}}\ntrigger:\n{extra}"),
                std::path::Path::new("/etc/rootswap/t.yaml"),
            )
            .unwrap()
        };
        for (bad, key) in [
            ("  max_connections: 0\n", "trigger.max_connections"),
            ("  header_timeout: 0s\n", "trigger.header_timeout"),
            ("  request_timeout: 2h\n", "trigger.request_timeout"),
            ("  allowed_hosts: ['a b']\n", "trigger.allowed_hosts"),
            ("  metrics_token: ''\n", "trigger.metrics_token"),
        ] {
            let msg = format!("{:#}", validate(&cfg(bad)).unwrap_err());
            assert!(msg.contains(key), "{bad}: {msg}");
        }
        assert!(validate(&cfg("  max_connections: 10\n  idle_timeout: 5s\n")).is_ok());
    }

    #[test]
    fn secrets_compare() {
        assert!(secret_eq(b"abc", b"abc"));
        assert!(!secret_eq(b"abc", b"abd"));
        assert!(!secret_eq(b"ab", b"abc"));
        assert!(!secret_eq(b"", b"abc"));
    }
}
