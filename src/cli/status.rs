//! `rootswap status`: what is live, what is deployed, whether a deploy runs.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

/// Runs `rootswap status`.
pub fn run(config: &Path, json: bool) -> Result<ExitCode> {
    let site = super::open(config)?;
    let s = rootswap::status::gather(&site)?;
    if json {
        return super::print_json(&s);
    }
    let color = rootswap::progress::color_stdout();
    print!("{}", rootswap::report::status_text_styled(&s, color));
    Ok(ExitCode::SUCCESS)
}
