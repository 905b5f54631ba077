//! The deploy API of the listener: `POST /deploy` (the trigger URL, with
//! `Authorization: Bearer <trigger.token>`: 202 and the deploy id, or 409
//! when a deploy runs), `GET /status` (the JSON of `rootswap status --json`,
//! plus a `fleet` object on a fleet node), `GET /metrics` (Prometheus text;
//! both need the token, or `trigger.metrics_token` for the metrics, unless
//! `trigger.public_status`), and `GET /health` (public: 200, or 503 while a
//! fleet node has not caught up).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::auth::{given_token, header_str, may_read, secret_eq};
use super::replies::{fleet_answer, not_configured, reply, unauthorized};
use super::service::{Answer, Busy, Service};
use crate::config::Config;
use crate::deploy::{Request, Trigger};
use crate::fleet::Agent;

/// Starts a deploy of the branch head: 202 with its id, 409 when one runs.
fn start(svc: &Arc<Service>, trigger: Trigger, who: &str) -> Response {
    let req = Request {
        trigger,
        ..Request::manual()
    };
    match svc.start(req) {
        Answer::Fleet(agent, answer) => fleet_answer(&agent, answer, trigger, who),
        Answer::Accepted(id) => {
            tracing::info!("{who}: deploy {id} accepted");
            reply(
                StatusCode::ACCEPTED,
                json!({ "id": id, "status": "started", "trigger": trigger.as_str() }),
            )
        }
        Answer::Busy(Busy::ShuttingDown) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": Busy::ShuttingDown.to_string() }),
        ),
        Answer::Busy(busy) => {
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

/// `POST /deploy`: the trigger URL.
pub(super) async fn deploy(
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

/// `GET /health`: 200 when this node serves what the fleet committed (or
/// is no fleet node), 503 while it has not caught up or cannot reach etcd.
pub(super) async fn health(State(svc): State<Arc<Service>>) -> Response {
    match svc.fleet() {
        None => reply(StatusCode::OK, json!({ "ok": true })),
        Some(a) if !a.in_touch() => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "ok": false,
                "node": a.node(),
                "caught_up": a.caught_up(),
                "error": "this node lost its lease in etcd (etcd unreachable): it cannot know what the fleet committed",
            }),
        ),
        Some(a) if a.caught_up() => reply(
            StatusCode::OK,
            json!({ "ok": true, "node": a.node(), "caught_up": true }),
        ),
        Some(a) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "ok": false,
                "node": a.node(),
                "caught_up": false,
                "error": "this node does not serve the fleet's committed version yet",
            }),
        ),
    }
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
    if may_read(cfg, headers) {
        return None;
    }
    let metrics_ok = metrics_token
        && match (cfg.trigger.metrics_token.as_deref(), given_token(headers)) {
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

/// `GET /status`.
pub(super) async fn status(
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
            Some(agent) => (StatusCode::OK, Json(with_fleet(&s, agent))).into_response(),
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

/// `GET /metrics`.
pub(super) async fn metrics(
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

/// `GET /status` of a fleet node: the node's status plus a `fleet` object
/// (node id, leader, whether it serves the fleet's committed version).
fn with_fleet<T: serde::Serialize>(status: &T, agent: &Agent) -> Value {
    let mut v = serde_json::to_value(status).unwrap_or(Value::Null);
    let fleet = json!({
        "node": agent.node(),
        "leader": agent.is_leader(),
        "leader_node": agent.leader().map(|l| l.0),
        "caught_up": agent.caught_up(),
        "deploying": agent.deploying(),
    });
    match v.as_object_mut() {
        Some(o) => {
            o.insert("fleet".into(), fleet);
            v
        }
        None => json!({ "status": v, "fleet": fleet }),
    }
}
