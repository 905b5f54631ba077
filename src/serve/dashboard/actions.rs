//! The dashboard's actions: `POST /dashboard/deploy` (`{"ref": …}`
//! optional), `/dashboard/rollback`, `/dashboard/keep` (`{"snapshot": …,
//! "label": …}`) and `/dashboard/remove` (`{"snapshot": …}`). Each passes
//! [`admit`] before anything is read from the disk or changed.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::reply::{error, reply, unauthorized};
use crate::config::Config;
use crate::deploy::Request;
use crate::deploy_lock::DeployLock;
use crate::layout::Layout;
use crate::serve::auth::{cross_origin, has_token};
use crate::serve::replies::fleet_answer;
use crate::serve::service::{Answer, Busy, Service};

/// The body of an action.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default, rename = "ref")]
    reference: Option<String>,
    #[serde(default)]
    snapshot: Option<String>,
    #[serde(default)]
    label: Option<String>,
}

/// The checks every action passes first: actions on, same origin, the token,
/// a JSON body. Nothing is read from the disk or changed before they pass.
fn admit(
    cfg: &Config,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<ActionBody, Refusal> {
    if cfg.trigger.token.is_none() {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            format!("{what} is off: set trigger.token in the configuration"),
        )));
    }
    if cross_origin(headers) {
        tracing::warn!(
            "dashboard: {what} from {peer} refused (403): sent by a page of another origin"
        );
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "refused: the request comes from a page of another origin",
        )));
    }
    if !has_token(cfg, headers) {
        return Err(Box::new(unauthorized(peer, what)));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ActionBody::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("the body is not the JSON {what} expects: {e}"),
        ))
    })
}

/// A snapshot name from the body (a plain directory name).
fn snapshot_name(b: &ActionBody) -> Result<String, Refusal> {
    match b.snapshot.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() && !n.contains('/') && !n.starts_with('.') => Ok(n.to_string()),
        Some(n) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("{n:?} is not a snapshot name"),
        ))),
        None => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "say which snapshot: {\"snapshot\": \"ROOT_…\"}",
        ))),
    }
}

/// Why an action is refused (boxed: a response is large).
type Refusal = Box<Response>;

fn busy_reply(busy: Busy) -> Response {
    let status = match busy {
        Busy::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::CONFLICT,
    };
    error(status, format!("{busy}; try again when it has finished"))
}

/// Starts `req` ([`Service::start`]): 202 with the id.
fn start(svc: &Arc<Service>, req: Request, who: &str) -> Response {
    let trigger = req.trigger;
    match svc.start(req) {
        Answer::Fleet(agent, answer) => fleet_answer(&agent, answer, trigger, who),
        Answer::Accepted(id) => {
            tracing::info!("dashboard: {who}: deploy {id} accepted");
            reply(
                StatusCode::ACCEPTED,
                json!({ "id": id, "status": "started", "trigger": trigger.as_str() }),
            )
        }
        Answer::Busy(busy) => busy_reply(busy),
    }
}

/// `POST /dashboard/deploy`.
pub(in crate::serve) async fn deploy(
    State(svc): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let b = match admit(
        &svc.config(),
        peer,
        &headers,
        &body,
        "POST /dashboard/deploy",
    ) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let reference = b
        .reference
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    let who = match &reference {
        Some(r) => format!("deploy {r} asked by {peer}"),
        None => format!("deploy asked by {peer}"),
    };
    let req = Request {
        reference,
        ..Request::manual()
    };
    start(&svc, req, &who)
}

/// `POST /dashboard/rollback`.
pub(in crate::serve) async fn rollback(
    State(svc): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let cfg = svc.config();
    let name = match admit(&cfg, peer, &headers, &body, "POST /dashboard/rollback")
        .and_then(|b| snapshot_name(&b))
    {
        Ok(n) => n,
        Err(r) => return *r,
    };
    if let Some(id) = svc.running() {
        return busy_reply(Busy::Deploying(id));
    }
    let job_name = name.clone();
    let req =
        tokio::task::spawn_blocking(move || crate::rollback::request(&cfg, Some(&job_name), None))
            .await;
    match req {
        Ok(Ok(req)) => start(&svc, req, &format!("rollback to {name} asked by {peer}")),
        Ok(Err(e)) => error(
            StatusCode::BAD_REQUEST,
            crate::redact::text(&format!("{e:#}")).into_owned(),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Runs a snapshot operation under the deploy lock (never during a deploy).
async fn with_lock(
    svc: &Arc<Service>,
    f: impl FnOnce(&Config, &Layout) -> anyhow::Result<Value> + Send + 'static,
) -> Response {
    if let Some(id) = svc.running() {
        return busy_reply(Busy::Deploying(id));
    }
    let cfg = svc.config();
    let job = tokio::task::spawn_blocking(move || {
        let layout = cfg.layout.clone();
        layout.preflight()?;
        let _lock = DeployLock::acquire(&layout.state)?;
        f(&cfg, &layout)
    });
    match job.await {
        Ok(Ok(v)) => reply(StatusCode::OK, v),
        Ok(Err(e)) => {
            let msg = crate::redact::text(&format!("{e:#}")).into_owned();
            let status = if msg.contains("already running") {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            };
            error(status, msg)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /dashboard/keep`.
pub(in crate::serve) async fn keep(
    State(svc): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let b = match admit(&svc.config(), peer, &headers, &body, "POST /dashboard/keep") {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let name = match snapshot_name(&b) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let label = b
        .label
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty());
    if let Some(Err(e)) = label.as_deref().map(crate::snapshots::validate_label) {
        return error(StatusCode::BAD_REQUEST, format!("{e:#}"));
    }
    with_lock(&svc, move |_, layout| {
        let kept = crate::snapshots::keep(layout, &name, label.as_deref())?;
        tracing::info!("dashboard: {name} kept as {kept} (asked by {peer})");
        Ok(json!({ "kept": kept, "message": format!("{name} is kept as {kept}") }))
    })
    .await
}

/// `POST /dashboard/remove`.
pub(in crate::serve) async fn remove(
    State(svc): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let b = match admit(
        &svc.config(),
        peer,
        &headers,
        &body,
        "POST /dashboard/remove",
    ) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let name = match snapshot_name(&b) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    with_lock(&svc, move |cfg, layout| {
        crate::snapshots::remove_by_name(layout, cfg, &name)?;
        tracing::info!("dashboard: {name} removed (asked by {peer})");
        Ok(json!({ "removed": name, "message": format!("{name} is removed") }))
    })
    .await
}
