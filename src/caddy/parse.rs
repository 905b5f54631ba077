//! Caddy's configuration as Caddy itself reads it: the JSON that `caddy
//! adapt` makes of a Caddyfile (imports, snippets and environment variables
//! resolved by Caddy, not by a second parser here), and the handlers in it
//! that pass requests to php-fpm, each with the root it hands PHP.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The Caddyfile Debian's package runs.
pub const DEFAULT_CADDYFILE: &str = "/etc/caddy/Caddyfile";

/// A Caddy configuration as read.
pub struct Conf {
    /// Where it came from (the file, and whether `caddy adapt` read it).
    pub source: String,
    /// Caddy's JSON configuration.
    pub json: Value,
}

/// One handler that passes requests to php-fpm (`php_fastcgi`, or
/// `reverse_proxy` with `transport fastcgi`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhpHandler {
    /// The site: its host names and listen addresses.
    pub site: String,
    /// The root PHP is given (the transport's own, else the `root` set
    /// before it), placeholders left as they are; None when none is set.
    pub root: Option<String>,
    /// `resolve_root_symlink` is on.
    pub resolve_root_symlink: bool,
    /// Where it sends requests (`unix//run/php/…`, `127.0.0.1:9000`).
    pub upstreams: Vec<String>,
}

/// Loads `file` (default [`DEFAULT_CADDYFILE`]): a JSON configuration (what
/// `caddy adapt` prints) as it is, a Caddyfile through `caddy adapt`.
pub fn load(file: Option<&Path>) -> Result<Conf> {
    let file = file.unwrap_or(Path::new(DEFAULT_CADDYFILE));
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if text.trim_start().starts_with('{') {
        if let Ok(json) = serde_json::from_str::<Value>(&text) {
            return Ok(Conf {
                source: file.display().to_string(),
                json,
            });
        }
    }
    let out = Command::new("caddy")
        .args(["adapt", "--adapter", "caddyfile", "--config"])
        .arg(file)
        .output()
        .with_context(|| {
            format!(
                "cannot run `caddy adapt` to read the Caddyfile {} (run doctor where Caddy is installed, \
                 or pass the output of `caddy adapt --config {}` as the file)",
                file.display(),
                file.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "`caddy adapt --config {}` failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let json = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "`caddy adapt --config {}` printed no JSON configuration",
            file.display()
        )
    })?;
    Ok(Conf {
        source: format!("{} (read by caddy adapt)", file.display()),
        json,
    })
}

/// Every handler of every HTTP server that passes requests to php-fpm.
pub fn php_handlers(json: &Value) -> Vec<PhpHandler> {
    let mut out = Vec::new();
    let Some(servers) = json
        .pointer("/apps/http/servers")
        .and_then(Value::as_object)
    else {
        return out;
    };
    for server in servers.values() {
        let listen = strings(server.get("listen"));
        let routes = server.get("routes").and_then(Value::as_array);
        walk(
            routes.map_or(&[][..], Vec::as_slice),
            None,
            &listen.join(" "),
            &mut out,
        );
    }
    out
}

/// The strings of a JSON array (nothing for anything else).
fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Walks `routes` in order: a `vars` handler's `root` holds for what comes
/// after it (as in Caddy, where it lasts for the rest of the request);
/// returns the root in force at the end.
fn walk(
    routes: &[Value],
    mut root: Option<String>,
    site: &str,
    out: &mut Vec<PhpHandler>,
) -> Option<String> {
    for route in routes {
        let hosts: Vec<String> = route
            .get("match")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|m| strings(m.get("host")))
            .collect();
        let site_here = if hosts.is_empty() {
            site.to_string()
        } else {
            format!("{} {site}", hosts.join(" "))
        };
        let handlers = route.get("handle").and_then(Value::as_array);
        for h in handlers.into_iter().flatten() {
            match h.get("handler").and_then(Value::as_str) {
                Some("vars") => {
                    if let Some(r) = h.get("root").and_then(Value::as_str) {
                        root = Some(r.to_string());
                    }
                }
                Some("subroute") => {
                    let inner = h.get("routes").and_then(Value::as_array);
                    root = walk(inner.map_or(&[][..], Vec::as_slice), root, &site_here, out);
                }
                Some("reverse_proxy") => {
                    if let Some(p) = fastcgi(h, root.as_deref(), &site_here) {
                        out.push(p);
                    }
                }
                _ => {}
            }
        }
    }
    root
}

/// A `reverse_proxy` handler with the FastCGI transport, as a [`PhpHandler`].
fn fastcgi(h: &Value, root: Option<&str>, site: &str) -> Option<PhpHandler> {
    let t = h.get("transport")?;
    if t.get("protocol").and_then(Value::as_str) != Some("fastcgi") {
        return None;
    }
    // The transport's root defaults to `{http.vars.root}`.
    let own = t.get("root").and_then(Value::as_str);
    let root = match (own, root) {
        (Some(o), Some(r)) => Some(o.replace("{http.vars.root}", r)),
        (Some(o), None) => Some(o.to_string()),
        (None, r) => r.map(str::to_owned),
    };
    let upstreams = h
        .get("upstreams")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|u| u.get("dial").and_then(Value::as_str).map(str::to_owned))
        .collect();
    Some(PhpHandler {
        site: site.trim().to_string(),
        root,
        resolve_root_symlink: t.get("resolve_root_symlink").and_then(Value::as_bool) == Some(true),
        upstreams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape `caddy adapt` (2.6) gives `root * /srv/web/current/public`
    /// and `php_fastcgi … { resolve_root_symlink }` inside a site block.
    const ADAPTED: &str = r#"{"apps":{"http":{"servers":{"srv0":{"listen":[":8080"],"routes":[
      {"match":[{"host":["site.test"]}],"handle":[{"handler":"subroute","routes":[
        {"handle":[{"handler":"vars","root":"/srv/web/current/public"}]},
        {"handle":[{"handler":"static_response","status_code":403}],"match":[{"path":["*/.*"]}]},
        {"handle":[{"handler":"reverse_proxy","transport":{"protocol":"fastcgi","resolve_root_symlink":true,"split_path":[".php"]},
          "upstreams":[{"dial":"unix//run/php/php-fpm.sock"}]}],"match":[{"path":["*.php"]}]},
        {"handle":[{"handler":"file_server"}]}]}],"terminal":true}]}}}}}"#;

    #[test]
    fn finds_the_root_set_before_php_fastcgi() {
        let json: Value = serde_json::from_str(ADAPTED).unwrap();
        let found = php_handlers(&json);
        assert_eq!(
            found,
            vec![PhpHandler {
                site: "site.test :8080".into(),
                root: Some("/srv/web/current/public".into()),
                resolve_root_symlink: true,
                upstreams: vec!["unix//run/php/php-fpm.sock".into()],
            }]
        );
        let naive: Value =
            serde_json::from_str(&ADAPTED.replace("\"resolve_root_symlink\":true,", "")).unwrap();
        assert!(!php_handlers(&naive)[0].resolve_root_symlink);
    }

    #[test]
    fn the_transport_root_wins_and_other_proxies_are_not_php() {
        let json: Value = serde_json::from_str(
            &ADAPTED
                .replace(
                    "\"protocol\":\"fastcgi\"",
                    "\"protocol\":\"fastcgi\",\"root\":\"/srv/other\"",
                )
                .replace(
                    "{\"handler\":\"file_server\"}",
                    "{\"handler\":\"reverse_proxy\",\"upstreams\":[{\"dial\":\"app:80\"}]}",
                ),
        )
        .unwrap();
        let found = php_handlers(&json);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].root.as_deref(), Some("/srv/other"));
    }

    #[test]
    fn a_json_file_is_read_as_it_is_and_a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("caddy.json");
        std::fs::write(&f, ADAPTED).unwrap();
        let conf = load(Some(&f)).unwrap();
        assert_eq!(php_handlers(&conf.json).len(), 1);
        let e = load(Some(&dir.path().join("nope"))).err().unwrap();
        assert!(format!("{e:#}").contains("nope"), "{e:#}");
    }
}
