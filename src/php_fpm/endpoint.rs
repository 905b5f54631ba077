//! Where php-fpm listens: the [`Endpoint`] type, the configured address
//! (`opcache.fastcgi`), and the search for php-fpm when none is configured.
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

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::config::Config;

/// Environment variable: search `<dir>/run/php` and `<dir>/etc/php` instead of `/run/php` and `/etc/php`.
pub const SEARCH_ROOT_ENV: &str = "ROOTSWAP_FPM_SEARCH_ROOT";

/// Where php-fpm listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket path.
    Unix(PathBuf),
    /// `host:port`.
    Tcp(String),
}

impl Endpoint {
    /// Parses `unix:/run/php/php8.2-fpm.sock`, `tcp:127.0.0.1:9000`, a bare
    /// absolute path or a bare `host:port`.
    pub fn parse(text: &str) -> Result<Endpoint> {
        let t = text.trim();
        if let Some(p) = t.strip_prefix("unix:") {
            if p.is_empty() {
                bail!("`{text}`: the socket path is missing after `unix:`");
            }
            return Ok(Endpoint::Unix(PathBuf::from(p)));
        }
        let hostport = t.strip_prefix("tcp:").unwrap_or(t);
        if t.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(t)));
        }
        match hostport.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok(Endpoint::Tcp(hostport.to_string())),
            _ => bail!("`{text}` is not a php-fpm address; write unix:/run/php/php8.2-fpm.sock or tcp:127.0.0.1:9000"),
        }
    }

    /// The address as nginx's `fastcgi_pass` wants it.
    pub fn nginx(&self) -> String {
        match self {
            Endpoint::Unix(p) => format!("unix:{}", p.display()),
            Endpoint::Tcp(h) => h.clone(),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(h) => write!(f, "tcp:{h}"),
        }
    }
}

/// The configured php-fpm address (`opcache.fastcgi`), if any.
pub fn configured(cfg: &Config) -> Result<Option<Endpoint>> {
    cfg.opcache
        .fastcgi
        .as_deref()
        .map(Endpoint::parse)
        .transpose()
}

/// Where rootswap reaches php-fpm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// `opcache.fastcgi`.
    Configured(Endpoint),
    /// Not configured; found by [`discover`] (the text says where).
    Found(Endpoint, String),
    /// Not configured and not found (the text says why).
    NotFound(String),
}

impl Located {
    /// The address to use, if any.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match self {
            Located::Configured(e) | Located::Found(e, _) => Some(e),
            Located::NotFound(_) => None,
        }
    }

    /// One line for people: which address and why.
    pub fn describe(&self) -> String {
        match self {
            Located::Configured(e) => format!("{e} (opcache.fastcgi)"),
            Located::Found(e, how) => format!("{e} (found: {how}; opcache.fastcgi is not set)"),
            Located::NotFound(why) => {
                format!("php-fpm not found: opcache.fastcgi is not set and {why}")
            }
        }
    }

    /// The warning when php-fpm is not found: old code may be served.
    pub fn warning(&self) -> Option<String> {
        match self {
            Located::NotFound(why) => Some(format!(
                "OPcache not cleared: `opcache.fastcgi` is not set and {why}; php-fpm may keep serving the old code \
                 (with opcache.validate_timestamps=0, until it restarts). Set `opcache.fastcgi` to php-fpm's address, \
                 e.g. unix:/run/php/php8.2-fpm.sock (the fastcgi_pass of your nginx site)"
            )),
            _ => None,
        }
    }
}

/// `opcache.fastcgi`, or else the one php-fpm found on this machine.
pub fn locate(cfg: &Config) -> Result<Located> {
    if let Some(ep) = configured(cfg)? {
        return Ok(Located::Configured(ep));
    }
    Ok(match discover() {
        Found::One(ep, how) => Located::Found(ep, how),
        Found::None(why) => Located::NotFound(why),
        Found::Many(all) => Located::NotFound(format!(
            "several php-fpm addresses were found ({}), so rootswap cannot tell which serves this site",
            all.iter()
                .map(|(e, how)| format!("{e} from {how}"))
                .collect::<Vec<_>>()
                .join("; ")
        )),
    })
}

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
    for (ep, how) in sockets_in(&run).into_iter().chain(pool_listens_in(&etc)) {
        if !found.iter().any(|(e, _)| same(e, &ep)) {
            found.push((ep, how));
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

/// Two addresses name the same php-fpm (a socket also by its real path).
fn same(a: &Endpoint, b: &Endpoint) -> bool {
    match (a, b) {
        (Endpoint::Unix(x), Endpoint::Unix(y)) => {
            x == y
                || (x.canonicalize().ok().is_some()
                    && x.canonicalize().ok() == y.canonicalize().ok())
        }
        _ => a == b,
    }
}

/// The sockets `<run>/php*-fpm.sock`.
fn sockets_in(run: &Path) -> Vec<(Endpoint, String)> {
    let mut out = Vec::new();
    for p in sorted_dir(run) {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("php") && name.ends_with("-fpm.sock") && is_socket(&p) {
            out.push((Endpoint::Unix(p.clone()), format!("socket {}", p.display())));
        }
    }
    out
}

/// The live `listen` addresses of `<etc>/*/fpm/pool.d/*.conf`.
fn pool_listens_in(etc: &Path) -> Vec<(Endpoint, String)> {
    let mut out = Vec::new();
    for ver in sorted_dir(etc) {
        for conf in sorted_dir(&ver.join("fpm/pool.d")) {
            if !conf.extension().is_some_and(|e| e == "conf") {
                continue;
            }
            let text = std::fs::read_to_string(&conf).unwrap_or_default();
            for (pool, listen) in listens(&text) {
                let Some(ep) = listen_endpoint(&listen) else {
                    continue;
                };
                if live(&ep) {
                    let how = format!("pool [{pool}] of {} (listen = {listen})", conf.display());
                    out.push((ep, how));
                }
            }
        }
    }
    out
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
    fn parses_endpoints() {
        assert_eq!(
            Endpoint::parse("unix:/run/php/x.sock").unwrap(),
            Endpoint::Unix("/run/php/x.sock".into())
        );
        assert_eq!(
            Endpoint::parse("/run/php/x.sock").unwrap(),
            Endpoint::Unix("/run/php/x.sock".into())
        );
        assert_eq!(
            Endpoint::parse("tcp:127.0.0.1:9000").unwrap(),
            Endpoint::Tcp("127.0.0.1:9000".into())
        );
        assert_eq!(
            Endpoint::parse("localhost:9000").unwrap(),
            Endpoint::Tcp("localhost:9000".into())
        );
        assert!(Endpoint::parse("tcp:nowhere").is_err());
        assert!(Endpoint::parse("unix:").is_err());
        assert_eq!(
            Endpoint::parse("unix:/a.sock").unwrap().nginx(),
            "unix:/a.sock"
        );
        assert_eq!(
            Endpoint::parse("tcp:127.0.0.1:9000").unwrap().nginx(),
            "127.0.0.1:9000"
        );
    }

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
