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
pub use crate::redact::MASK;

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
            if let Some(m) = crate::redact::url(s) {
                *s = m;
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(mask_urls),
        Value::Mapping(m) => m.iter_mut().for_each(|(_, v)| mask_urls(v)),
        Value::Tagged(t) => mask_urls(&mut t.value),
        _ => {}
    }
}
