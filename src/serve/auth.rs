//! Request guards shared by every endpoint of the listener: secrets
//! compared in constant time, the GitHub signature, the token a request
//! carries and whether it may read, the `Host` guard against DNS rebinding
//! and the cross-origin check of the dashboard's actions.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::service::Service;
use crate::config::Config;

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

/// A header's value as text, when it is.
pub fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The token a request carries: `Authorization: Bearer …` or `X-Rootswap-Token`.
pub fn given_token(h: &HeaderMap) -> Option<&str> {
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
pub fn has_token(cfg: &Config, h: &HeaderMap) -> bool {
    match (cfg.trigger.token.as_deref(), given_token(h)) {
        (Some(t), Some(g)) => secret_eq(g.as_bytes(), t.as_bytes()),
        _ => false,
    }
}

/// The reader may see the status: the token, or `trigger.public_status`.
pub fn may_read(cfg: &Config, h: &HeaderMap) -> bool {
    cfg.trigger.public_status || has_token(cfg, h)
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
pub(super) async fn host_guard(
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
    (
        StatusCode::MISDIRECTED_REQUEST,
        Json(
        json!({ "error": format!(
            "this listener does not answer to the host {host:?}: address it by IP address or localhost, \
             or add the name to trigger.allowed_hosts (a guard against DNS rebinding)"
        ) })),
    )
        .into_response()
}

/// A browser says the request comes from another site: its `Origin` is not
/// this listener (as the client addressed it), or `Sec-Fetch-Site` says so.
/// Requests without those headers (curl, scripts) are not browsers' cross-site ones.
pub fn cross_origin(h: &HeaderMap) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
    fn secrets_compare() {
        assert!(secret_eq(b"abc", b"abc"));
        assert!(!secret_eq(b"abc", b"abd"));
        assert!(!secret_eq(b"ab", b"abc"));
        assert!(!secret_eq(b"", b"abc"));
    }

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
