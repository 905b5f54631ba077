//! The JSON answers the API endpoints share: a status with a body, 404 for
//! an endpoint whose secret is not configured, 401, and what a fleet node
//! answers when a deploy is asked of it ([`crate::fleet::Answer`]).

use std::net::SocketAddr;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::deploy::Trigger;
use crate::fleet::{Agent, Answer};

/// `body` as JSON with `status`.
pub fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// 404: `what` is off until `key` is set.
pub fn not_configured(what: &str, key: &str) -> Response {
    reply(
        StatusCode::NOT_FOUND,
        json!({ "error": format!("{what} is off: set {key} in the configuration") }),
    )
}

/// 401 (logged with the peer, never with what it sent).
pub fn unauthorized(peer: SocketAddr, what: &str, why: &str) -> Response {
    tracing::warn!("{what} from {peer} rejected (401): {why}");
    let mut r = reply(StatusCode::UNAUTHORIZED, json!({ "error": "unauthorized" }));
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

/// 421 from a follower: the leader's node id and trigger address.
pub fn not_leader(agent: &Agent, who: &str) -> Response {
    fleet_answer(agent, agent.not_leader(), Trigger::Manual, who)
}

/// A fleet node's answer to a deploy asked by `who`: 202 with the fleet
/// deploy's id from the leader, 409 when one runs here, 421 from a follower
/// with the leader's node id and trigger address.
pub fn fleet_answer(agent: &Agent, answer: Answer, trigger: Trigger, who: &str) -> Response {
    match answer {
        Answer::Accepted(id) => {
            tracing::info!("{who}: fleet deploy {id} accepted");
            reply(
                StatusCode::ACCEPTED,
                json!({ "id": id, "status": "started", "fleet": true, "trigger": trigger.as_str() }),
            )
        }
        Answer::Busy => reply(
            StatusCode::CONFLICT,
            json!({ "error": "a fleet deploy is already in progress on this node" }),
        ),
        Answer::NotLeader { leader, trigger } => {
            tracing::info!(
                "{who}: refused (421): node {} is not the fleet's leader ({leader} is)",
                agent.node()
            );
            reply(
                StatusCode::MISDIRECTED_REQUEST,
                json!({
                    "error": format!("node {} is a follower; ask the fleet's leader, node {leader}", agent.node()),
                    "leader": leader,
                    "leader_trigger": trigger,
                }),
            )
        }
    }
}
