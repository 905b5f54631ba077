//! `rootswap doctor` (being written).
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::config::Config;

/// `rootswap doctor` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Check this nginx configuration file instead of `nginx -T`.
    #[arg(long, value_name = "FILE")]
    pub nginx_conf: Option<PathBuf>,
}

/// Runs `rootswap doctor`.
pub fn command(_cfg: &Config, _args: &Args) -> Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}
