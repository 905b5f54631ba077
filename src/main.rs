//! The `rootswap` command line: global options and one file per command
//! under `cli/`.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

use cli::logging::LogFormat;

/// Zero-downtime deploys of PHP sites from Git, the Enscale way.
#[derive(Parser)]
#[command(name = "rootswap", version, about, propagate_version = true)]
struct Cli {
    /// Configuration file.
    #[arg(
        short,
        long,
        global = true,
        default_value = "rootswap.yaml",
        env = "ROOTSWAP_CONFIG"
    )]
    config: PathBuf,
    /// Show the passes inside each deploy step (catch-up, copy-back passes,
    /// drains, OPcache resets), not only one line per step.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Log format: human (default) or json (for log shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploy the branch head now (snapshot, serve the snapshot, rewrite ROOT, switch back).
    Deploy(cli::deploy::DeployArgs),
    /// List, keep or remove snapshots.
    Snapshots {
        #[command(subcommand)]
        action: cli::snapshots::SnapshotsCmd,
    },
    /// Show what is live, what is deployed and whether a deploy runs.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a snapshot's version live again, with the same zero-downtime steps as a deploy.
    Rollback(cli::rollback::RollbackArgs),
    /// Past deploys: when, who asked, commit, result, per-step durations.
    History {
        /// Print JSON (one object per deploy).
        #[arg(long)]
        json: bool,
        /// Show only the last N deploys.
        #[arg(short = 'n', long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Clear php-fpm's OPcache over FastCGI (never reloads php-fpm).
    Opcache {
        #[command(subcommand)]
        action: rootswap::opcache::Cmd,
    },
    /// Print an nginx server block for this layout, each line explained.
    Nginx(rootswap::nginx::Args),
    /// Print an Apache 2.4 <VirtualHost> for this layout (php-fpm or mod_php), each line explained.
    Apache(rootswap::apache::Args),
    /// Print a Caddy site block for this layout, each line explained.
    Caddy(rootswap::caddy::Args),
    /// Check the layout, php-fpm, OPcache and the web server (nginx, Apache, Caddy) for what would cause downtime or stale code.
    Doctor(rootswap::doctor::Args),
    /// Write a commented rootswap.yaml (-c) for an existing site: detects the framework, picks the preset.
    Init(cli::init::InitArgs),
    /// Check the configuration; with --effective print it as rootswap uses it (secrets masked).
    Config {
        /// Print the merged configuration: preset values and defaults filled in.
        #[arg(long)]
        effective: bool,
        /// Print JSON (implies --effective).
        #[arg(long)]
        json: bool,
    },
    /// Print shell completions: bash, zsh, fish, elvish or powershell.
    #[command(hide = true)]
    Completions {
        /// Shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    #[command(hide = true)]
    Man,
    /// Run as a service: auto-deploy when the branch moves, the deploy trigger URL, until SIGTERM.
    Serve,
    /// Several web nodes deploying together through etcd (`fleet:` in the config).
    Fleet {
        #[command(subcommand)]
        action: FleetCmd,
    },
    /// Run the whole flow against an embedded sample site in a scratch directory.
    Demo {
        /// Directory to use (new or empty); default: a new one under the temp dir.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Measure the copy engine on your own tree: full copy, incremental snapshot, removal (SRC is only read).
    BenchCopy(cli::bench_copy::BenchCopyArgs),
}

#[derive(Subcommand)]
enum FleetCmd {
    /// Each member (alive or not), the leader, live commits, the last fleet deploy per node.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serve = matches!(cli.command, Command::Serve);
    cli::logging::init(cli.log_format, serve, cli.verbose);
    // The spinner and progress bars: only for a person watching a deploy
    // (not `--json`, `--dry-run`, `--log-format json`, `serve`, nor a pipe);
    // otherwise nothing is counted either.
    let watched = match &cli.command {
        Command::Deploy(a) => !a.dry_run && !a.json,
        Command::Rollback(_) => true,
        _ => false,
    };
    if watched
        && matches!(cli.log_format, LogFormat::Human)
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
    {
        rootswap::progress::start();
    }
    let result = run(cli.command, &cli.config);
    rootswap::progress::finish();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", rootswap::redact::text(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// One command, by its file under `cli/` (or one line here).
fn run(command: Command, config: &std::path::Path) -> Result<ExitCode> {
    match command {
        Command::Deploy(a) => cli::deploy::run(config, a),
        Command::Snapshots { action } => cli::snapshots::run(config, action),
        Command::Status { json } => cli::status::run(config, json),
        Command::Rollback(a) => cli::rollback::run(config, a),
        Command::History { json, limit } => cli::history::run(config, json, limit),
        Command::Opcache { action } => {
            let site = cli::open(config)?;
            rootswap::opcache::command(site.php_fpm(), &site.config, &action)
        }
        Command::Nginx(a) => rootswap::nginx::command(&cli::open(config)?.config, &a),
        Command::Apache(a) => rootswap::apache::command(&cli::open(config)?.config, &a),
        Command::Caddy(a) => cli::caddy::run(config, &a),
        Command::Doctor(a) => rootswap::doctor::command(&cli::open(config)?, &a),
        Command::Init(a) => cli::init::run(config, a),
        Command::Config { effective, json } => cli::config::run(config, effective, json),
        Command::Completions { shell } => {
            let out = &mut std::io::stdout();
            clap_complete::generate(shell, &mut Cli::command(), "rootswap", out);
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => {
            rootswap::serve::run(config, cli::open(config)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Fleet {
            action: FleetCmd::Status { json },
        } => rootswap::fleet::cli::status(&cli::open(config)?, json),
        Command::Demo { dir } => rootswap::demo::run(dir).map(|_| ExitCode::SUCCESS),
        Command::BenchCopy(a) => cli::bench_copy::run(a),
    }
}
