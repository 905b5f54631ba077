//! Reading the file: YAML with the preset's values laid under it, then
//! `${VAR}` expansion, then the checks.

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};

use super::Config;

/// Where a configuration error was found, for messages.
pub(super) struct Source<'a>(pub(super) &'a Path);

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}", self.0.display())
    }
}

impl Config {
    /// Reads, parses and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read {}; create it from config.example.yaml or pass another file with -c",
                Source(path)
            )
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates configuration text; `path` is used in messages and
    /// to resolve a relative `webroot`.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let mut cfg: Config = serde_yaml_ng::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}: {}", Source(path), yaml_message(&e)))?;
        if let Some(preset) = cfg.preset {
            // The file alone parsed (so its errors came with line numbers); now
            // parse it again with the preset's values laid under it.
            let doc = crate::preset::apply(text, preset)
                .with_context(|| format!("{}: with `preset: {preset}`", Source(path)))?;
            cfg = serde_yaml_ng::from_value(doc)
                .with_context(|| format!("{}: with `preset: {preset}`", Source(path)))?;
        }
        cfg.expand_env(path)?;
        if cfg.webroot.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            let base = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base
            };
            cfg.webroot = base.join(&cfg.webroot);
        }
        cfg.validate(path)?;
        cfg.path = path.to_path_buf();
        Ok(cfg)
    }
}

/// Rewrites serde_yaml_ng's message into a shorter one that names the line.
fn yaml_message(e: &serde_yaml_ng::Error) -> String {
    let msg = e.to_string();
    match e.location() {
        Some(loc) if !msg.contains("line") => format!("line {}: {msg}", loc.line()),
        _ => msg,
    }
}
