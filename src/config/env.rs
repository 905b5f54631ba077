//! `${VAR}` in every string value (hook commands excepted: the shell expands
//! those), and `~/` in key paths.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::load::Source;
use super::Config;

impl Config {
    /// Replaces `${VAR}` in every string value of the configuration (found by
    /// walking its YAML form, so a new key needs nothing here). Hook commands
    /// are the exception: the shell that runs them expands their variables,
    /// including the `ROOTSWAP_*` ones only a hook sees.
    pub(super) fn expand_env(&mut self, path: &Path) -> Result<()> {
        let mut value = serde_yaml_ng::to_value(&*self)
            .with_context(|| format!("{}: cannot expand ${{VAR}}s", Source(path)))?;
        expand_strings(&mut value, &mut Vec::new())
            .map_err(|(key, e)| anyhow::anyhow!("{}: key `{key}`: {e:#}", Source(path)))?;
        *self = serde_yaml_ng::from_value(value)
            .map_err(|e| anyhow::anyhow!("{}: after expanding ${{VAR}}s: {e}", Source(path)))?;
        if let Some(k) = self.source.ssh_key.as_mut() {
            *k = home_path(&k.to_string_lossy());
        }
        if let Some(k) = self.source.known_hosts.as_mut() {
            if k != "accept-new" {
                *k = home_path(k).to_string_lossy().into_owned();
            }
        }
        Ok(())
    }
}

/// `~/x` → `$HOME/x`; anything else as written.
fn home_path(text: &str) -> PathBuf {
    match (text.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(text),
    }
}

/// Keys whose strings are shell commands, left for the shell to expand.
const SHELL_KEYS: [&str; 5] = [
    "hooks.after_checkout",
    "hooks.before_switch",
    "hooks.in_snapshot",
    "hooks.after_switch",
    "hooks.once",
];

/// Expands `${VAR}` in every string below `v`; on error, the dotted key.
fn expand_strings(
    v: &mut serde_yaml_ng::Value,
    key: &mut Vec<String>,
) -> Result<(), (String, anyhow::Error)> {
    use serde_yaml_ng::Value;
    match v {
        Value::String(text) => {
            *text = expand(text).map_err(|e| (key.join("."), e))?;
        }
        Value::Sequence(items) => {
            if SHELL_KEYS.contains(&key.join(".").as_str()) {
                return Ok(());
            }
            for item in items {
                expand_strings(item, key)?;
            }
        }
        Value::Mapping(m) => {
            // Unset optional keys: left out, so that they read back as unset.
            m.retain(|_, item| !item.is_null());
            for (k, item) in m.iter_mut() {
                key.push(k.as_str().map_or_else(|| format!("{k:?}"), str::to_owned));
                let r = expand_strings(item, key);
                key.pop();
                r?;
            }
        }
        Value::Tagged(t) => expand_strings(&mut t.value, key)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// Replaces `${VAR}` with the environment's value.
fn expand(text: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            bail!("`${{` without a closing `}}` in '{text}'");
        };
        let name = &after[..end];
        match std::env::var(name) {
            Ok(v) => out.push_str(&v),
            Err(_) => bail!("uses ${{{name}}}, but the environment variable {name} is not set"),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
