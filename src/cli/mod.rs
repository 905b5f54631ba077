//! The commands, one file each: a command parses its arguments, opens the
//! site, calls one operation of the library and prints its result through
//! `report` (for people) or `json` (for programs).

pub mod bench_copy;
pub mod caddy;
pub mod config;
pub mod deploy;
pub mod history;
pub mod init;
pub mod logging;
pub mod rollback;
pub mod snapshots;
pub mod status;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use rootswap::config::Config;
use rootswap::site::Site;

/// Reads the configuration file and opens the site it describes.
pub fn open(config: &Path) -> Result<Site> {
    Site::open(&Config::load(config)?)
}

/// Prints `value` as pretty JSON.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(ExitCode::SUCCESS)
}
