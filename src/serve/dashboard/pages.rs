//! The dashboard's pages: `GET /` (the page, with the view when the reader
//! may see it without the token), `GET /dashboard/view` (the view alone),
//! `GET /dashboard/events` (the running deploy, live) and the assets.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::render;
use super::reply::{error, html, no_store, unauthorized};
use crate::serve::auth::may_read;
use crate::serve::service::Service;

const CSS: &str = include_str!("../assets/dashboard.css");
const JS: &str = include_str!("../assets/dashboard.js");

/// Gathers and renders the view off the async threads (it reads the disk).
async fn render_view(svc: &Arc<Service>) -> Result<String, Response> {
    let cfg = svc.config();
    let running = svc.running();
    // On a fleet node, every node's state (one etcd read; the view renders without it on error).
    let fleet = match (svc.fleet(), cfg.fleet.as_ref()) {
        (Some(agent), Some(f)) => crate::fleet::status::gather(agent.etcd(), &f.site)
            .await
            .map_err(|e| tracing::debug!("dashboard: fleet status: {e:#}"))
            .ok(),
        _ => None,
    };
    let job = tokio::task::spawn_blocking(move || {
        render::gather(&cfg, running).map(|mut v| {
            v.fleet = fleet;
            render::view_html(&v)
        })
    });
    match job.await {
        Ok(Ok(html)) => Ok(html),
        Ok(Err(e)) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            crate::redact::text(&format!("cannot read the site's status: {e:#}")).into_owned(),
        )),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// `GET /`.
pub(in crate::serve) async fn page(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
) -> Response {
    let cfg = svc.config();
    let view = if may_read(&cfg, &headers) {
        match render_view(&svc).await {
            Ok(v) => Some(v),
            Err(r) => return r,
        }
    } else {
        None
    };
    html(render::page_html(&render::Shell {
        view: view.as_deref(),
        public: cfg.trigger.public_status,
        actions: cfg.trigger.token.is_some(),
    }))
}

/// `GET /dashboard/view`.
pub(in crate::serve) async fn view(
    State(svc): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !may_read(&svc.config(), &headers) {
        return unauthorized(peer, "GET /dashboard/view");
    }
    match render_view(&svc).await {
        Ok(v) => html(v),
        Err(r) => r,
    }
}

/// `GET /dashboard/events`.
pub(in crate::serve) async fn events(
    State(svc): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !may_read(&svc.config(), &headers) {
        return unauthorized(peer, "GET /dashboard/events");
    }
    let mut r = crate::serve::events::stream(svc).into_response();
    no_store(&mut r);
    r
}

/// The stylesheet.
pub(in crate::serve) async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

/// The script.
pub(in crate::serve) async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}
