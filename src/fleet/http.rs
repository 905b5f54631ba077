//! The fleet's answers on a node's HTTP port: `GET /health` and the
//! trigger URL of a fleet node (the leader coordinates, a follower says
//! where the leader is).

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::Agent;
use crate::deploy::Trigger;

/// `GET /health`: 200 when this node serves what the fleet committed (or
/// is no fleet node), 503 while it has not caught up.
pub fn health(agent: Option<&Arc<Agent>>) -> Response {
    match agent {
        None => (StatusCode::OK, Json(json!({ "ok": true }))).into_response(),
        Some(a) if a.caught_up() => (
            StatusCode::OK,
            Json(json!({ "ok": true, "node": a.node(), "caught_up": true })),
        )
            .into_response(),
        Some(a) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "ok": false,
                "node": a.node(),
                "caught_up": false,
                "error": "this node does not serve the fleet's committed version yet",
            })),
        )
            .into_response(),
    }
}

/// A deploy asked of a fleet node over HTTP: the leader starts a fleet
/// deploy (202 with its id, 409 when one runs); a follower answers 421
/// with the leader's node id and trigger address.
pub fn trigger(agent: &Arc<Agent>, trigger: Trigger, who: &str) -> Response {
    let mut req = crate::deploy::Request::manual();
    req.trigger = trigger;
    request(agent, req, who)
}

/// 421 from a follower: the leader's node id and trigger address.
pub fn not_leader(agent: &Arc<Agent>, who: &str) -> Response {
    let (leader, addr) = agent.leader().unwrap_or_else(|| ("unknown".into(), None));
    tracing::info!(
        "{who}: refused (421): node {} is not the fleet's leader ({leader} is)",
        agent.node()
    );
    (
        StatusCode::MISDIRECTED_REQUEST,
        Json(json!({
            "error": format!("node {} is a follower; ask the fleet's leader, node {leader}", agent.node()),
            "leader": leader,
            "leader_trigger": addr,
        })),
    )
        .into_response()
}

/// A deploy (or rollback) asked of a fleet node by the trigger URL, a
/// webhook or the dashboard: as [`trigger`], for `req`'s ref, force and trigger.
pub fn request(agent: &Arc<Agent>, req: crate::deploy::Request, who: &str) -> Response {
    let trigger = req.trigger;
    if !agent.is_leader() {
        return not_leader(agent, who);
    }
    if agent.deploying() {
        return (
            StatusCode::CONFLICT,
            Json(json!({ "error": "a fleet deploy is already in progress on this node" })),
        )
            .into_response();
    }
    let id = super::coordinator::new_id();
    tracing::info!("{who}: fleet deploy {id} accepted");
    let a = agent.clone();
    let fid = id.clone();
    tokio::spawn(async move {
        match a
            .coordinate(trigger, req.reference, req.force, Some(fid.clone()))
            .await
        {
            Ok(_) => {}
            Err(e) => tracing::error!("fleet deploy {fid}: {e:#}"),
        }
    });
    (
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "status": "started", "fleet": true, "trigger": trigger.as_str() })),
    )
        .into_response()
}

/// `GET /status` of a fleet node: the node's status plus a `fleet` object
/// (node id, leader, whether it serves the fleet's committed version).
pub fn with_fleet<T: serde::Serialize>(status: &T, agent: &Arc<Agent>) -> serde_json::Value {
    let mut v = serde_json::to_value(status).unwrap_or(serde_json::Value::Null);
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
