//! The checks of the `trigger:` and `auto_deploy:` settings that the
//! config file alone cannot decide: the listen address parses, no secret is
//! empty, the listener's limits are in range, the schedule parses. Run at
//! start and on every reload (a reload that fails them is rejected).

use std::net::SocketAddr;

use anyhow::{anyhow, Result};

use crate::config::Config;

/// Checks everything `rootswap serve` needs of `cfg` beyond the file's own checks.
pub fn validate(cfg: &Config) -> Result<()> {
    super::schedule::validate(cfg)?;
    validate_trigger(cfg)
}

/// Checks `trigger.listen` (an address such as `127.0.0.1:9810`) and that no
/// secret is empty (an empty `${VAR}` would otherwise accept an empty token).
pub fn validate_trigger(cfg: &Config) -> Result<()> {
    let t = &cfg.trigger;
    for (key, v) in [
        ("trigger.token", &t.token),
        ("trigger.metrics_token", &t.metrics_token),
        ("trigger.github_secret", &t.github_secret),
        ("trigger.gitlab_token", &t.gitlab_token),
    ] {
        if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
            anyhow::bail!(
                "`{key}` is empty; set it to a long random value (e.g. from `openssl rand -hex 32`) or remove the key"
            );
        }
    }
    validate_limits(&cfg.trigger)?;
    listen_addr(cfg).map(|_| ())
}

/// Checks the listener's limits and `trigger.allowed_hosts`.
fn validate_limits(t: &crate::config::TriggerConfig) -> Result<()> {
    if !(1..=65_536).contains(&t.max_connections) {
        anyhow::bail!(
            "`trigger.max_connections: {}` must be between 1 and 65536 (default 256)",
            t.max_connections
        );
    }
    for (key, d) in [
        ("trigger.header_timeout", t.header_timeout),
        ("trigger.idle_timeout", t.idle_timeout),
        ("trigger.request_timeout", t.request_timeout),
    ] {
        if d < std::time::Duration::from_millis(100) || d > std::time::Duration::from_secs(3600) {
            anyhow::bail!(
                "`{key}: {}` must be between 100ms and 1h",
                humantime::format_duration(d)
            );
        }
    }
    for h in &t.allowed_hosts {
        let bad = h.trim().is_empty()
            || h.contains(|c: char| c.is_whitespace() || c == '/' || c == '@' || c.is_control());
        if bad {
            anyhow::bail!(
                "`trigger.allowed_hosts` entry {h:?} is not a host name: write it as the client \
                 sends it in the Host header, e.g. deploy.example.com or deploy.example.com:8443"
            );
        }
    }
    Ok(())
}

/// The `trigger.listen` address, when set.
pub(super) fn listen_addr(cfg: &Config) -> Result<Option<SocketAddr>> {
    let Some(text) = cfg.trigger.listen.as_deref() else {
        return Ok(None);
    };
    let addr: SocketAddr = text.trim().parse().map_err(|_| {
        anyhow!("`trigger.listen: {text}` is not an address with a port, e.g. 127.0.0.1:9810 (or [::1]:9810)")
    })?;
    Ok(Some(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_secrets_are_refused() {
        let cfg = |extra: &str| {
            Config::parse(
                &format!("webroot: /w\nsource: {{repo: x}}\ntrigger:\n{extra}"),
                std::path::Path::new("/etc/rootswap/t.yaml"),
            )
            .unwrap()
        };
        let msg = format!("{:#}", validate_trigger(&cfg("  token: ''\n")).unwrap_err());
        assert!(
            msg.contains("trigger.token") && msg.contains("empty"),
            "{msg}"
        );
        assert!(validate_trigger(&cfg("  gitlab_token: ' '\n")).is_err());
        assert!(validate_trigger(&cfg("  token: t\n  listen: 127.0.0.1:9810\n")).is_ok());
        let msg = format!(
            "{:#}",
            validate_trigger(&cfg("  listen: localhost\n")).unwrap_err()
        );
        assert!(msg.contains("trigger.listen"), "{msg}");
    }

    #[test]
    fn limits_are_validated() {
        let cfg = |extra: &str| {
            Config::parse(
                &format!("webroot: /w\nsource: {{repo: x}}\ntrigger:\n{extra}"),
                std::path::Path::new("/etc/rootswap/t.yaml"),
            )
            .unwrap()
        };
        for (bad, key) in [
            ("  max_connections: 0\n", "trigger.max_connections"),
            ("  header_timeout: 0s\n", "trigger.header_timeout"),
            ("  request_timeout: 2h\n", "trigger.request_timeout"),
            ("  allowed_hosts: ['a b']\n", "trigger.allowed_hosts"),
            ("  metrics_token: ''\n", "trigger.metrics_token"),
        ] {
            let msg = format!("{:#}", validate_trigger(&cfg(bad)).unwrap_err());
            assert!(msg.contains(key), "{bad}: {msg}");
        }
        assert!(validate_trigger(&cfg("  max_connections: 10\n  idle_timeout: 5s\n")).is_ok());
    }
}
