//! `rootswap bench-copy SRC`: the copy engine measured on the user's own tree.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

/// Measure the copy engine on your own tree: full copy, incremental snapshot, removal (SRC is only read).
#[derive(Args)]
pub struct BenchCopyArgs {
    /// Directory to measure, e.g. the webroot's ROOT.
    src: PathBuf,
    /// Runs of each measurement.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Scratch directory for the copies (default: beside SRC, on its filesystem); needs room for RUNS copies.
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Copy threads (default: the number of cores).
    #[arg(long)]
    threads: Option<usize>,
}

/// Runs `rootswap bench-copy`.
pub fn run(args: BenchCopyArgs) -> Result<ExitCode> {
    let mut copy = rootswap::copy::CopyOptions::default();
    copy.threads = args.threads.unwrap_or(copy.threads);
    let opts = rootswap::copy::bench::BenchOptions {
        runs: args.runs,
        scratch: args.scratch,
        copy,
    };
    print!("{}", rootswap::copy::bench::run(&args.src, &opts)?);
    Ok(ExitCode::SUCCESS)
}
