//! `rootswap init`: a commented rootswap.yaml for an existing site.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

/// Write a commented rootswap.yaml (-c) for an existing site: detects the framework, picks the preset.
#[derive(Args)]
pub struct InitArgs {
    /// Directory that holds (or will hold) ROOT, its snapshots and the link.
    #[arg(long, value_name = "DIR")]
    webroot: Option<PathBuf>,
    /// Repository to deploy (default: the site's own `origin` remote).
    #[arg(long, value_name = "URL")]
    repo: Option<String>,
    /// Branch to deploy (default: the site's checked-out branch, else main).
    #[arg(long, value_name = "BRANCH")]
    branch: Option<String>,
    /// Use this preset instead of detecting one.
    #[arg(long, value_enum)]
    preset: Option<rootswap::preset::Preset>,
    /// Replace an existing config file.
    #[arg(long)]
    force: bool,
    /// The web server in front of the site (default: the one found on this machine).
    #[arg(long, value_enum)]
    server: Option<rootswap::webserver::Server>,
}

/// Runs `rootswap init` (asks on a terminal, never on a pipe).
pub fn run(config: &Path, args: InitArgs) -> Result<ExitCode> {
    let opts = rootswap::init::Options {
        config_path: config.to_path_buf(),
        webroot: args.webroot,
        repo: args.repo,
        branch: args.branch,
        preset: args.preset,
        force: args.force,
        server: args.server,
    };
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    let mut stderr = std::io::stderr();
    let input: Option<&mut dyn std::io::BufRead> = match std::io::stdin().is_terminal() {
        true => Some(&mut lock),
        false => None,
    };
    let mut asker = rootswap::init::Asker {
        input,
        prompt: &mut stderr,
    };
    let outcome = rootswap::init::run(&opts, &mut asker)?;
    print!("{}", rootswap::init::report(&outcome));
    Ok(ExitCode::SUCCESS)
}
