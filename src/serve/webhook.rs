//! Git host push webhooks.
//!
//! - `POST /webhook/github`: `X-Hub-Signature-256` is the HMAC-SHA256 of the
//!   raw body with `trigger.github_secret`;
//! - `POST /webhook/gitlab`: `X-Gitlab-Token` must equal `trigger.gitlab_token`.
//!
//! A push to the configured branch asks the service to look at the branch
//! now ([`Check::Webhook`]), which decides as the schedule does (a head a
//! rollback left, or one that failed, is not deployed); a delivery seen
//! before is answered "already handled" ([`super::deliveries`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::auth::{github_signature_ok, header_str, secret_eq};
use super::check::Check;
use super::deliveries::delivery_keys;
use super::replies::{not_configured, not_leader, reply, unauthorized};
use super::service::{lock, Busy, Service};
use crate::deploy::Trigger;
use crate::deploy_lock::DeployLock;

/// What a push webhook asks for.
fn push_ref(body: &[u8]) -> Result<Value, Box<Response>> {
    serde_json::from_slice::<Value>(body).map_err(|e| {
        Box::new(reply(
            StatusCode::BAD_REQUEST,
            json!({ "error": format!("the body is not JSON ({e}); set the webhook's content type to application/json") }),
        ))
    })
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
        return not_leader(agent, who);
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

/// `POST /webhook/github`.
pub(super) async fn github(
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

/// `POST /webhook/gitlab`.
pub(super) async fn gitlab(
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
