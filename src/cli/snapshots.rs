//! `rootswap snapshots list|keep|remove`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use rootswap::{report, snapshots};

/// List, keep or remove snapshots.
#[derive(Subcommand)]
pub enum SnapshotsCmd {
    /// List snapshots: name, created, commit, size, live, kept or evictable.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rename a snapshot so that it is kept forever (ROOT_<timestamp> becomes ROOT_<label>).
    Keep {
        /// Snapshot directory name, e.g. ROOT_2026.11.22-10.15.03.
        name: String,
        /// Label for the new name (default: kept-<timestamp>).
        #[arg(long = "as", value_name = "LABEL")]
        label: Option<String>,
    },
    /// Remove a snapshot (the live one is refused).
    Remove {
        /// Snapshot directory name.
        name: String,
    },
}

/// Runs `rootswap snapshots …`.
pub fn run(config: &Path, action: SnapshotsCmd) -> Result<ExitCode> {
    let site = super::open(config)?;
    match action {
        SnapshotsCmd::List { json } => {
            let rows = snapshots::list(&site.layout, &site.state()?)?;
            if json {
                return super::print_json(&rows);
            }
            print!("{}", report::snapshot_table(&rows));
        }
        SnapshotsCmd::Keep { name, label } => {
            let new_name = snapshots::keep(&site.layout, &name, label.as_deref())?;
            println!("{name} is now {new_name}: kept forever (never evicted)");
        }
        SnapshotsCmd::Remove { name } => {
            snapshots::remove_by_name(&site.layout, &site.config, &name)?;
            println!("removed {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
