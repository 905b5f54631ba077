//! `rootswap config [--effective] [--json]`: check the configuration, or
//! print it as rootswap uses it (secrets masked).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

/// Runs `rootswap config`.
pub fn run(config: &Path, effective: bool, json: bool) -> Result<ExitCode> {
    let site = super::open(config)?;
    let cfg = &site.config;
    if json {
        println!("{}", rootswap::effective_config::json(cfg)?);
    } else if effective {
        print!("{}", rootswap::effective_config::yaml(cfg, config)?);
    } else {
        let preset = cfg
            .preset
            .map(|p| format!(", preset {p}"))
            .unwrap_or_default();
        println!(
            "{}: OK (webroot {}{preset}); `--effective` prints it in full",
            config.display(),
            cfg.webroot.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
