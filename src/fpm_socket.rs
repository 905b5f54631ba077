//! Finding php-fpm when `opcache.fastcgi` is not set.
//!
//! Debian and Ubuntu put each php-fpm pool's socket at
//! `/run/php/phpX.Y-fpm.sock`, and every pool config under
//! `/etc/php/X.Y/fpm/pool.d/*.conf` says where it listens (`listen = ...`).
//! rootswap looks at both; when they name exactly one live address, that is
//! php-fpm, and rootswap clears its OPcache there (saying which); none or
//! several: a warning that asks for `opcache.fastcgi`.
//!
//! The search starts at `/`, or at the directory in the environment variable
//! [`SEARCH_ROOT_ENV`] (tests point it at a directory of their own).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::opcache::Endpoint;

/// Environment variable: search `<dir>/run/php` and `<dir>/etc/php` instead of `/run/php` and `/etc/php`.
pub const SEARCH_ROOT_ENV: &str = "ROOTSWAP_FPM_SEARCH_ROOT";

/// What the search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Exactly one php-fpm address; the text says where it was seen.
    One(Endpoint, String),
    /// Nothing; the text says where rootswap looked.
    None(String),
    /// Several addresses (each with where it was seen): rootswap cannot choose.
    Many(Vec<(Endpoint, String)>),
}

/// Searches from `/` (or [`SEARCH_ROOT_ENV`]).
pub fn discover() -> Found {
    let root = std::env::var_os(SEARCH_ROOT_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    discover_in(&root)
}

/// Searches `<root>/run/php/php*-fpm.sock` and the `listen` of
/// `<root>/etc/php/*/fpm/pool.d/*.conf`. A unix socket counts when it
/// exists, a TCP address when it accepts a connection.
pub fn discover_in(root: &Path) -> Found {
    let run = root.join("run/php");
    let etc = root.join("etc/php");
    let mut found: Vec<(Endpoint, String)> = Vec::new();
    let mut add = |ep: Endpoint, how: String| {
        let same = |a: &Endpoint| match (a, &ep) {
            (Endpoint::Unix(x), Endpoint::Unix(y)) => {
                x == y
                    || (x.canonicalize().ok().is_some()
                        && x.canonicalize().ok() == y.canonicalize().ok())
            }
            _ => *a == ep,
        };
        if !found.iter().any(|(e, _)| same(e)) {
            found.push((ep, how));
        }
    };
    for p in sorted_dir(&run) {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("php") && name.ends_with("-fpm.sock") && is_socket(&p) {
            add(Endpoint::Unix(p.clone()), format!("socket {}", p.display()));
        }
    }
    for ver in sorted_dir(&etc) {
        for conf in sorted_dir(&ver.join("fpm/pool.d")) {
            if conf.extension().is_some_and(|e| e == "conf") {
                let text = std::fs::read_to_string(&conf).unwrap_or_default();
                for (pool, listen) in listens(&text) {
                    let Some(ep) = listen_endpoint(&listen) else {
                        continue;
                    };
                    if live(&ep) {
                        add(
                            ep,
                            format!("pool [{pool}] of {} (listen = {listen})", conf.display()),
                        );
                    }
                }
            }
        }
    }
    match found.len() {
        0 => Found::None(format!(
            "no php-fpm socket {}/php*-fpm.sock and no live `listen` in {}/*/fpm/pool.d/*.conf",
            run.display(),
            etc.display()
        )),
        1 => {
            let (ep, how) = found.remove(0);
            Found::One(ep, how)
        }
        _ => Found::Many(found),
    }
}

fn sorted_dir(d: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(d)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

fn is_socket(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

fn live(ep: &Endpoint) -> bool {
    match ep {
        Endpoint::Unix(p) => is_socket(p),
        Endpoint::Tcp(addr) => {
            use std::net::ToSocketAddrs;
            addr.to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .is_some_and(|a| {
                    std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok()
                })
        }
    }
}

/// `(pool, listen value)` of a php-fpm pool config, `$pool` expanded.
pub fn listens(text: &str) -> Vec<(String, String)> {
    let mut pool = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with(';') || l.starts_with('#') || l.is_empty() {
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            pool = name.trim().to_string();
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        if k.trim() != "listen" || pool == "global" {
            continue;
        }
        let v = v
            .trim()
            .trim_matches('"')
            .trim_matches('\'')
            .replace("$pool", &pool);
        out.push((pool.clone(), v));
    }
    out
}

/// The address a `listen` value means: a path, `port`, `host:port`, `[::]:port`.
pub fn listen_endpoint(v: &str) -> Option<Endpoint> {
    if v.starts_with('/') {
        return Some(Endpoint::Unix(PathBuf::from(v)));
    }
    if let Ok(port) = v.parse::<u16>() {
        return Some(Endpoint::Tcp(format!("127.0.0.1:{port}")));
    }
    let (host, port) = v.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = match host.trim_matches(['[', ']']) {
        "" | "*" | "0.0.0.0" => "127.0.0.1".to_string(),
        "::" => "[::1]".to_string(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_string(),
    };
    Some(Endpoint::Tcp(format!("{host}:{port}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pool_listens() {
        let text = "[global]\nlisten = /nope\n[www]\n; listen = 9000\nuser = www-data\nlisten = /run/php/php8.2-fpm-$pool.sock\nlisten.owner = www-data\n[api]\nlisten = \"127.0.0.1:9001\"\n";
        assert_eq!(
            listens(text),
            vec![
                (
                    "www".to_string(),
                    "/run/php/php8.2-fpm-www.sock".to_string()
                ),
                ("api".to_string(), "127.0.0.1:9001".to_string())
            ]
        );
        assert_eq!(
            listen_endpoint("9000"),
            Some(Endpoint::Tcp("127.0.0.1:9000".into()))
        );
        assert_eq!(
            listen_endpoint("[::]:9000"),
            Some(Endpoint::Tcp("[::1]:9000".into()))
        );
        assert_eq!(
            listen_endpoint("/a.sock"),
            Some(Endpoint::Unix("/a.sock".into()))
        );
    }

    #[test]
    fn nothing_found_in_an_empty_tree() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(discover_in(d.path()), Found::None(_)));
    }
}
