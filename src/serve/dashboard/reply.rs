//! The dashboard's answers: JSON errors and HTML pages, never cached, the
//! page with its security headers.

use std::net::SocketAddr;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// `body` as JSON with `status`, not to be cached.
pub(super) fn reply(status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    no_store(&mut r);
    r
}

/// `{"error": msg}` with `status`.
pub(super) fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    reply(status, json!({ "error": msg.into() }))
}

/// `Cache-Control: no-store`.
pub(super) fn no_store(r: &mut Response) {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// 401: the trigger token is missing or wrong (logged with the peer).
pub(super) fn unauthorized(peer: SocketAddr, what: &str) -> Response {
    tracing::warn!("dashboard: {what} from {peer} rejected (401): no or wrong trigger token");
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "the trigger token is missing or wrong: give the value of trigger.token",
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// An HTML page with its security headers (CSP, nosniff, no referrer).
pub(super) fn html(body: String) -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    no_store(&mut r);
    r
}
