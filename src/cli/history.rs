//! `rootswap history`: past deploys.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

/// Runs `rootswap history`: the last `limit` deploys (all when None).
pub fn run(config: &Path, json: bool, limit: Option<usize>) -> Result<ExitCode> {
    let site = super::open(config)?;
    let mut records = rootswap::history::read(&site.layout.state)?;
    if let Some(n) = limit {
        let skip = records.len().saturating_sub(n);
        records.drain(..skip);
    }
    if json {
        return super::print_json(&records);
    }
    print!("{}", rootswap::report::history_table(&records));
    Ok(ExitCode::SUCCESS)
}
