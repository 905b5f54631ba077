//! `rootswap rollback [SNAPSHOT]`: a snapshot's version live again.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

/// Make a snapshot's version live again, with the same zero-downtime steps as a deploy.
#[derive(Args)]
pub struct RollbackArgs {
    /// Snapshot to roll back to (default: the newest timestamped snapshot).
    snapshot: Option<String>,
}

/// Runs `rootswap rollback`.
pub fn run(config: &Path, args: RollbackArgs) -> Result<ExitCode> {
    let site = super::open(config)?;
    if site.config.fleet.is_some() {
        return rootswap::fleet::cli::rollback(&site, args.snapshot.as_deref());
    }
    let outcome = rootswap::rollback::rollback(&site, args.snapshot.as_deref())?;
    rootswap::progress::finish();
    super::deploy::print_outcome(&outcome, "rolled back: ");
    Ok(ExitCode::SUCCESS)
}
