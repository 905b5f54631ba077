//! `rootswap caddy`: the Caddy site block for this layout, each line explained.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

/// Prints the site block (`--listen` and `--fastcgi` are checked first).
pub fn run(config: &Path, args: &rootswap::caddy::Args) -> Result<ExitCode> {
    let site = super::open(config)?;
    print!("{}", rootswap::caddy::site_block(&site.config, args)?);
    Ok(ExitCode::SUCCESS)
}
