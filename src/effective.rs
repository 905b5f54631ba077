//! `rootswap config --effective`: the configuration as rootswap uses it —
//! the file, with its preset's values laid under it, every default filled in
//! and `${VAR}`s expanded — with secrets masked.
//!
//! Masked: `fleet.password`, `trigger.token`, `trigger.metrics_token`, `trigger.github_secret`, `trigger.gitlab_token`,
//! every value of `hooks.env`,
//! the password (or lone token) in any `scheme://user:password@host` URL, and
//! the value of URL query parameters named like a secret (`token=`, `key=`,
//! `secret=`, `password=`, `sig=`…).

use anyhow::{Context, Result};
use serde_yaml_ng::Value;

use crate::config::Config;

/// What a masked secret is shown as.
pub const MASK: &str = "********";

const SECRET_KEYS: [(&str, &str); 5] = [
    ("fleet", "password"),
    ("trigger", "token"),
    ("trigger", "metrics_token"),
    ("trigger", "github_secret"),
    ("trigger", "gitlab_token"),
];

/// The effective configuration as a YAML value, secrets masked.
pub fn value(cfg: &Config) -> Result<Value> {
    let mut v = serde_yaml_ng::to_value(cfg).context("cannot render the configuration")?;
    for (section, key) in SECRET_KEYS {
        if let Some(slot) = v.get_mut(section).and_then(|s| s.get_mut(key)) {
            if !slot.is_null() {
                *slot = Value::String(MASK.into());
            }
        }
    }
    // Hook environment values are credentials more often than not.
    if let Some(Value::Mapping(env)) = v.get_mut("hooks").and_then(|h| h.get_mut("env")) {
        env.iter_mut()
            .for_each(|(_, val)| *val = Value::String(MASK.into()));
    }
    mask_urls(&mut v);
    drop_nulls(&mut v);
    Ok(v)
}

/// The effective configuration as commented YAML.
pub fn yaml(cfg: &Config, file: &std::path::Path) -> Result<String> {
    let body = serde_yaml_ng::to_string(&value(cfg)?).context("cannot render the configuration")?;
    let preset = match cfg.preset {
        Some(p) => format!("preset {p} laid under the file, "),
        None => String::new(),
    };
    Ok(format!(
        "# Effective configuration of {}: {preset}defaults filled in, ${{VAR}}s expanded, secrets masked.\n{body}",
        file.display()
    ))
}

/// The effective configuration as JSON.
pub fn json(cfg: &Config) -> Result<String> {
    serde_json::to_string_pretty(&value(cfg)?).context("cannot render the configuration as JSON")
}

/// Unset optional keys are left out, so the output loads as a config file.
fn drop_nulls(v: &mut Value) {
    if let Value::Mapping(m) = v {
        m.retain(|_, v| !v.is_null());
        m.iter_mut().for_each(|(_, v)| drop_nulls(v));
    }
}

fn mask_urls(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Some(m) = mask_url(s) {
                *s = m;
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(mask_urls),
        Value::Mapping(m) => m.iter_mut().for_each(|(_, v)| mask_urls(v)),
        Value::Tagged(t) => mask_urls(&mut t.value),
        _ => {}
    }
}

/// Masks the credentials of a URL (the password, a token given as the user
/// name of an http(s) URL, secret-looking query parameters); None when there
/// are none. Only text written as a URL (`scheme://...`) is considered: an
/// scp-style `git@host:path` or a path is left alone.
pub fn mask_url(text: &str) -> Option<String> {
    if !text.contains("://") {
        return None;
    }
    let mut url = url::Url::parse(text).ok()?;
    let mut changed = false;
    if url.password().is_some_and(|p| !p.is_empty()) {
        url.set_password(Some(MASK)).ok()?;
        changed = true;
    } else if !url.username().is_empty() && url.scheme().starts_with("http") {
        // A lone user name is a token for http(s) (https://TOKEN@host);
        // for ssh://git@host it is just the account.
        url.set_username(MASK).ok()?;
        changed = true;
    }
    if let Some(query) = url.query() {
        // Rebuilt from the raw parts, so the rest stays encoded as written.
        let mut masked_any = false;
        let parts: Vec<String> = query
            .split('&')
            .map(|kv| {
                let name = url::form_urlencoded::parse(kv.as_bytes())
                    .next()
                    .map(|(k, v)| (k.into_owned(), !v.is_empty()));
                match (name, kv.split_once('=')) {
                    (Some((k, true)), Some((raw, _))) if secret_param(&k) => {
                        masked_any = true;
                        format!("{raw}={MASK}")
                    }
                    _ => kv.to_string(),
                }
            })
            .collect();
        if masked_any {
            url.set_query(Some(&parts.join("&")));
            changed = true;
        }
    }
    changed.then(|| url.to_string())
}

fn secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "token",
        "key",
        "secret",
        "password",
        "passwd",
        "pass",
        "sig",
        "signature",
        "auth",
    ]
    .iter()
    .any(|s| n == *s || n.ends_with(&format!("_{s}")) || n.ends_with(&format!("-{s}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_url_credentials() {
        assert_eq!(
            mask_url("https://bob:hunter2@git.example.com/a.git").as_deref(),
            Some("https://bob:********@git.example.com/a.git")
        );
        assert_eq!(
            mask_url("https://ghp_abc@github.com/a/b.git").as_deref(),
            Some("https://********@github.com/a/b.git")
        );
        assert_eq!(mask_url("ssh://git@github.com/a/b.git"), None);
        assert_eq!(mask_url("git@github.com:a/b.git"), None);
        assert_eq!(
            mask_url("https://example.com/hook?x=1&token=abc#f").as_deref(),
            Some("https://example.com/hook?x=1&token=********#f")
        );
        assert_eq!(mask_url("https://example.com/path@x"), None);
        // The rest of the URL stays as written (encoding, order, other parameters).
        assert_eq!(
            mask_url("https://example.com/h?next=%2Fa%20b&api_key=k1&x").as_deref(),
            Some("https://example.com/h?next=%2Fa%20b&api_key=********&x")
        );
        assert_eq!(
            mask_url("https://example.com/h?token="),
            None,
            "empty: nothing to hide"
        );
        assert_eq!(mask_url("not a url://"), None);
        assert_eq!(mask_url("/srv/repo.git"), None);
    }
}
