//! The deploy dashboard at `/` of the trigger listener (`trigger.listen`).
//!
//! - `GET /`: the page (server-rendered; the view is in it when the reader
//!   may see it without the token, i.e. `trigger.public_status: true`);
//! - `GET /dashboard/view`: the view alone (live version, chart, history,
//!   snapshots), which the page fetches with the token and after each deploy;
//! - `GET /dashboard/events`: the running deploy, live ([`super::events`]);
//! - `POST /dashboard/deploy` (`{"ref": …}` optional), `/dashboard/rollback`,
//!   `/dashboard/keep` (`{"snapshot": …, "label": …}`), `/dashboard/remove`
//!   (`{"snapshot": …}`): the actions.
//!
//! Reading needs the trigger token unless `trigger.public_status` is true;
//! actions always need it. The token travels in a header
//! (`Authorization: Bearer …` or `X-Rootswap-Token`), never in a cookie or a
//! form field, and is compared in constant time. A browser cannot send that
//! header cross-origin without a CORS preflight, which this server never
//! grants; on top of that a POST whose `Origin` (or `Sec-Fetch-Site`) says
//! it comes from another site is refused before anything else.

mod links;
pub mod render;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Busy, Service};
use crate::config::Config;
use crate::deploy::Request;
use crate::layout::Layout;
use crate::lock::DeployLock;

pub use render::first_render;

const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");

/// The dashboard's routes, to merge into the trigger listener's router.
pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/", get(page))
        .route("/dashboard/view", get(view))
        .route("/dashboard/events", get(events))
        .route("/dashboard/assets/dashboard.css", get(css))
        .route("/dashboard/assets/dashboard.js", get(js))
        .route("/dashboard/deploy", post(deploy))
        .route("/dashboard/rollback", post(rollback))
        .route("/dashboard/keep", post(keep))
        .route("/dashboard/remove", post(remove))
}

/// The token a request carries: `Authorization: Bearer …` or `X-Rootswap-Token`.
pub(super) fn given_token(h: &HeaderMap) -> Option<&str> {
    let bearer = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    bearer
        .or_else(|| h.get("x-rootswap-token").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

/// The request carries the trigger token (constant-time compare).
fn has_token(cfg: &Config, h: &HeaderMap) -> bool {
    match (cfg.trigger.token.as_deref(), given_token(h)) {
        (Some(t), Some(g)) => super::trigger::secret_eq(g.as_bytes(), t.as_bytes()),
        _ => false,
    }
}

/// The reader may see the status: the token, or `trigger.public_status`.
pub(super) fn may_read(cfg: &Config, h: &HeaderMap) -> bool {
    cfg.trigger.public_status || has_token(cfg, h)
}

/// A browser says the request comes from another site: its `Origin` is not
/// this listener (as the client addressed it), or `Sec-Fetch-Site` says so.
/// Requests without those headers (curl, scripts) are not browsers' cross-site ones.
fn cross_origin(h: &HeaderMap) -> bool {
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    if matches!(text("sec-fetch-site"), Some("cross-site" | "same-site")) {
        return true;
    }
    let Some(origin) = text("origin") else {
        return false;
    };
    let Ok(url) = url::Url::parse(origin) else {
        return true; // "null" (a sandboxed frame, a file) or garbage
    };
    let Some(host) = url.host_str() else {
        return true;
    };
    let origin_host = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    // Behind a reverse proxy the client addressed the proxy's host.
    let addressed = text("x-forwarded-host")
        .and_then(|f| f.split(',').next())
        .or_else(|| text("host"))
        .map(str::trim);
    addressed.map_or(true, |a| !a.eq_ignore_ascii_case(&origin_host))
}

fn reply(status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    no_store(&mut r);
    r
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    reply(status, json!({ "error": msg.into() }))
}

fn no_store(r: &mut Response) {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn unauthorized(peer: SocketAddr, what: &str) -> Response {
    tracing::warn!("dashboard: {what} from {peer} rejected (401): no or wrong trigger token");
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "the trigger token is missing or wrong: give the value of trigger.token",
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

fn html(body: String) -> Response {
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

async fn page(State(svc): State<Arc<Service>>, headers: HeaderMap) -> Response {
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

async fn view(
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

async fn events(
    State(svc): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !may_read(&svc.config(), &headers) {
        return unauthorized(peer, "GET /dashboard/events");
    }
    let mut r = super::events::stream(svc).into_response();
    no_store(&mut r);
    r
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}

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

/// Claims the deploy gate and runs `req` (its id filled in): 202 with the id.
fn start(svc: &Arc<Service>, mut req: Request, who: &str) -> Response {
    if let Some(agent) = svc.fleet() {
        return crate::fleet::http::request(agent, req, who);
    }
    match svc.try_begin() {
        Ok(id) => {
            tracing::info!("dashboard: {who}: deploy {id} accepted");
            req.id = Some(id.clone());
            let trigger = req.trigger.as_str();
            svc.spawn_request(id.clone(), req, None);
            reply(
                StatusCode::ACCEPTED,
                json!({ "id": id, "status": "started", "trigger": trigger }),
            )
        }
        Err(busy) => busy_reply(busy),
    }
}

async fn deploy(
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

async fn rollback(
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
    let req = tokio::task::spawn_blocking(move || {
        crate::rollback::request(&crate::site::Site::open(&cfg)?, Some(&job_name), None)
    })
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
        let layout = Layout::from_config(&cfg);
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

async fn keep(
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
    if let Some(Err(e)) = label.as_deref().map(crate::snapshot::validate_label) {
        return error(StatusCode::BAD_REQUEST, format!("{e:#}"));
    }
    with_lock(&svc, move |_, layout| {
        let kept = crate::snapshot::keep(layout, &name, label.as_deref())?;
        tracing::info!("dashboard: {name} kept as {kept} (asked by {peer})");
        Ok(json!({ "kept": kept, "message": format!("{name} is kept as {kept}") }))
    })
    .await
}

async fn remove(
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
        crate::snapshot::remove_by_name(layout, cfg, &name)?;
        tracing::info!("dashboard: {name} removed (asked by {peer})");
        Ok(json!({ "removed": name, "message": format!("{name} is removed") }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn origins_are_compared_with_the_host_the_client_addressed() {
        assert!(!cross_origin(&headers(&[("host", "127.0.0.1:9810")])));
        assert!(!cross_origin(&headers(&[
            ("host", "127.0.0.1:9810"),
            ("origin", "http://127.0.0.1:9810")
        ])));
        assert!(cross_origin(&headers(&[
            ("host", "127.0.0.1:9810"),
            ("origin", "http://evil.example")
        ])));
        assert!(cross_origin(&headers(&[
            ("host", "127.0.0.1:9810"),
            ("origin", "null")
        ])));
        assert!(!cross_origin(&headers(&[
            ("host", "127.0.0.1:9810"),
            ("x-forwarded-host", "deploy.example.com"),
            ("origin", "https://deploy.example.com")
        ])));
        assert!(cross_origin(&headers(&[
            ("host", "127.0.0.1:9810"),
            ("sec-fetch-site", "cross-site")
        ])));
    }

    #[test]
    fn the_token_comes_from_either_header() {
        let cfg = Config::parse(
            "webroot: /w\nsource: {repo: x}\ntrigger:\n  token: s3cret\n",
            std::path::Path::new("/etc/rootswap/t.yaml"),
        )
        .unwrap();
        assert!(has_token(
            &cfg,
            &headers(&[("authorization", "Bearer s3cret")])
        ));
        assert!(has_token(&cfg, &headers(&[("x-rootswap-token", "s3cret")])));
        assert!(!has_token(
            &cfg,
            &headers(&[("authorization", "Bearer s3cre")])
        ));
        assert!(!has_token(&cfg, &headers(&[("cookie", "token=s3cret")])));
        assert!(!may_read(&cfg, &HeaderMap::new()));
    }
}
