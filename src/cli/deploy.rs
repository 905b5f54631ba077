//! `rootswap deploy`: the branch head (or `--ref`) now.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use rootswap::deploy::{self, Outcome, Request};
use rootswap::report;

/// Deploy the branch head now (snapshot, serve the snapshot, rewrite ROOT, switch back).
#[derive(Args)]
pub struct DeployArgs {
    /// Optional word `now`, as in Enscale's "deploy now".
    #[arg(value_parser = ["now"], hide_possible_values = true)]
    now: Option<String>,
    /// Deploy this branch, tag or commit instead of the configured branch head
    /// (git revision syntax relative to the branch: main~1, v2.3^, a short id).
    #[arg(long = "ref", value_name = "REF")]
    reference: Option<String>,
    /// Deploy even if the commit is already live.
    #[arg(long)]
    force: bool,
    /// Show what would change without touching anything.
    #[arg(long)]
    pub dry_run: bool,
    /// The serving link points at a tree outside the webroot (left by an
    /// earlier tool): copy that tree into the empty ROOT first, so its
    /// uploads stay served, then deploy (the commit's files win).
    #[arg(long)]
    adopt_current: bool,
    /// Print JSON: the deploy's summary, or with --dry-run what would change.
    #[arg(long)]
    pub json: bool,
}

/// Runs `rootswap deploy`.
pub fn run(config: &Path, args: DeployArgs) -> Result<ExitCode> {
    let site = super::open(config)?;
    if site.config.fleet.is_some() && args.adopt_current {
        bail!(
            "`--adopt-current` works on one node at a time: run it on each node with a config without `fleet:`, then deploy the fleet"
        );
    }
    if site.config.fleet.is_some() && !args.dry_run {
        // On a fleet node this process coordinates; every node's serve deploys.
        return rootswap::fleet::cli::deploy(&site, args.reference, args.force, args.json);
    }
    let req = Request {
        reference: args.reference,
        force: args.force,
        dry_run: args.dry_run,
        adopt_current: args.adopt_current,
        ..Request::manual()
    };
    let outcome = deploy::deploy(&site, &req)?;
    // The bar goes before the summary is printed (both may be the terminal).
    rootswap::progress::finish();
    if args.json {
        return super::print_json(&rootswap::json::outcome(&outcome));
    }
    print_outcome(&outcome, "");
    Ok(ExitCode::SUCCESS)
}

/// A deploy's (or rollback's, with `prefix`) outcome for people: warnings
/// on stderr, the summary on stdout.
pub fn print_outcome(outcome: &Outcome, prefix: &str) {
    match outcome {
        Outcome::UpToDate { commit } => {
            let word = if prefix.is_empty() {
                "up to date"
            } else {
                "already live"
            };
            println!("{word} ({})", rootswap::commit::short(commit))
        }
        Outcome::Deployed(s) => {
            for w in &s.warnings {
                eprintln!("warning: {w}");
            }
            println!("{prefix}{}", report::summary_line(s));
        }
        Outcome::DryRun(d) => print!("{}", report::dry_run_text(d)),
    }
}
