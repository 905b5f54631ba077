//! The `rootswap` command line: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

use rootswap::config::Config;
use rootswap::deploy::{self, Outcome, Request};
use rootswap::{report, snapshot, status};

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

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Deploy the branch head now (snapshot, serve the snapshot, rewrite ROOT, switch back).
    Deploy {
        /// Optional word `now`, as in Enscale's "deploy now".
        #[arg(value_parser = ["now"], hide_possible_values = true)]
        now: Option<String>,
        /// Deploy this branch, tag or commit instead of the configured branch head.
        #[arg(long = "ref", value_name = "REF")]
        reference: Option<String>,
        /// Deploy even if the commit is already live.
        #[arg(long)]
        force: bool,
        /// Show what would change without touching anything.
        #[arg(long)]
        dry_run: bool,
        /// The serving link points at a tree outside the webroot (left by an
        /// earlier tool): copy that tree into the empty ROOT first, so its
        /// uploads stay served, then deploy (the commit's files win).
        #[arg(long)]
        adopt_current: bool,
        /// Print JSON: the deploy's summary, or with --dry-run what would change.
        #[arg(long)]
        json: bool,
    },
    /// List, keep or remove snapshots.
    Snapshots {
        #[command(subcommand)]
        action: SnapshotsCmd,
    },
    /// Show what is live, what is deployed and whether a deploy runs.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a snapshot's version live again, with the same zero-downtime steps as a deploy.
    Rollback {
        /// Snapshot to roll back to (default: the newest timestamped snapshot).
        snapshot: Option<String>,
    },
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
    /// Check the layout, php-fpm, OPcache and nginx for what would cause downtime or stale code.
    Doctor(rootswap::doctor::Args),
    /// Write a commented rootswap.yaml (-c) for an existing site: detects the framework, picks the preset.
    Init {
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
    },
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
    BenchCopy {
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
    },
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

#[derive(Subcommand)]
enum SnapshotsCmd {
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

fn init_logging(format: LogFormat, spans: bool, verbose: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose {
        "info,rootswap=debug,rootswap::step=info,tokio_cron_scheduler=warn"
    } else {
        "info,tokio_cron_scheduler=warn"
    };
    let filter =
        EnvFilter::try_from_env("ROOTSWAP_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    use tracing_subscriber::prelude::*;
    // Log lines go through the progress writer (it lifts the deploy's spinner or
    // bar while writing); the progress layer sees only the deploy's step events.
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(rootswap::progress::writer);
    let fmt = match format {
        LogFormat::Human => fmt.event_format(report::HumanFormat { spans }).boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    let steps = tracing_subscriber::filter::Targets::new()
        .with_target(rootswap::progress::STEP_TARGET, tracing::Level::DEBUG);
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(rootswap::progress::Layer.with_filter(steps))
        // `serve`: the dashboard's live feed of the running deploy.
        .with(
            spans.then(|| {
                rootswap::serve::events::Layer.with_filter(rootswap::serve::events::filter())
            }),
        )
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(
        cli.log_format,
        matches!(cli.command, Command::Serve),
        cli.verbose,
    );
    // The spinner and progress bars: only for a person watching a deploy
    // (not `--json`, `--dry-run`, `--log-format json`, `serve`, nor a pipe);
    // otherwise nothing is counted either.
    if matches!(
        cli.command,
        Command::Deploy {
            dry_run: false,
            json: false,
            ..
        } | Command::Rollback { .. }
    ) && matches!(cli.log_format, LogFormat::Human)
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
    {
        rootswap::progress::start();
    }
    let result = run(cli);
    rootswap::progress::finish();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", rootswap::redact::text(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Demo { dir } = cli.command {
        rootswap::demo::run(dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::BenchCopy {
        src,
        runs,
        scratch,
        threads,
    } = &cli.command
    {
        let mut copy = rootswap::copy::CopyOptions::default();
        copy.threads = threads.unwrap_or(copy.threads);
        let opts = rootswap::copy::bench::BenchOptions {
            runs: *runs,
            scratch: scratch.clone(),
            copy,
        };
        print!("{}", rootswap::copy::bench::run(src, &opts)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(done) = standalone(&cli) {
        return done;
    }
    let cfg = Config::load(&cli.config)?;
    let site = rootswap::site::Site::open(&cfg)?;
    let layout = &site.layout;
    match cli.command {
        Command::Deploy {
            now: _,
            reference,
            force,
            dry_run,
            adopt_current,
            json: as_json,
        } => {
            if cfg.fleet.is_some() && adopt_current {
                anyhow::bail!(
                    "`--adopt-current` works on one node at a time: run it on each node with a config without `fleet:`, then deploy the fleet"
                );
            }
            if cfg.fleet.is_some() && !dry_run {
                // On a fleet node this process coordinates; every node's serve deploys.
                return rootswap::fleet::cli::deploy(&cfg, reference, force, as_json);
            }
            let req = Request {
                reference,
                force,
                dry_run,
                adopt_current,
                ..Request::manual()
            };
            let outcome = deploy::deploy(&site, &req)?;
            // The bar goes before the summary is printed (both may be the terminal).
            rootswap::progress::finish();
            if as_json {
                json(&rootswap::machine::outcome(&outcome))?;
                return Ok(ExitCode::SUCCESS);
            }
            match outcome {
                Outcome::UpToDate { commit } => {
                    println!("up to date ({})", rootswap::commit::short(&commit))
                }
                Outcome::Deployed(s) => {
                    for w in &s.warnings {
                        eprintln!("warning: {w}");
                    }
                    println!("{}", report::summary_line(&s));
                }
                Outcome::DryRun(d) => {
                    let from = d
                        .from
                        .as_deref()
                        .map(rootswap::commit::short)
                        .unwrap_or("nothing");
                    println!("would deploy {} (live: {from})", d.described);
                    for n in &d.notes {
                        println!("{n}");
                    }
                    for (label, list) in [
                        ("add", &d.added),
                        ("change", &d.modified),
                        ("remove", &d.deleted),
                    ] {
                        for p in list {
                            println!("  {label:<6} {}", p.display());
                        }
                    }
                    println!(
                        "{} added, {} changed, {} removed; {} user files would be carried over",
                        d.added.len(),
                        d.modified.len(),
                        d.deleted.len(),
                        d.user_files.len()
                    );
                    for p in &d.user_files {
                        println!("  keep   {}", p.display());
                    }
                }
            }
        }
        Command::Snapshots { action } => match action {
            SnapshotsCmd::List { json: as_json } => {
                let rows = snapshot::list(layout, &site.state()?)?;
                if as_json {
                    json(&rows)?;
                } else {
                    print!("{}", report::snapshot_table(&rows));
                }
            }
            SnapshotsCmd::Keep { name, label } => {
                let new_name = snapshot::keep(layout, &name, label.as_deref())?;
                println!("{name} is now {new_name}: kept forever (never evicted)");
            }
            SnapshotsCmd::Remove { name } => {
                snapshot::remove_by_name(layout, &cfg, &name)?;
                println!("removed {name}");
            }
        },
        Command::Status { json: as_json } => {
            let s = status::gather(&cfg)?;
            if as_json {
                json(&s)?;
            } else {
                print!(
                    "{}",
                    report::status_text_styled(&s, rootswap::progress::color_stdout())
                );
            }
        }
        Command::Rollback { snapshot } if cfg.fleet.is_some() => {
            return rootswap::fleet::cli::rollback(&cfg, snapshot.as_deref());
        }
        Command::Rollback { snapshot } => {
            let outcome = rootswap::rollback::rollback(&site, snapshot.as_deref())?;
            rootswap::progress::finish();
            match outcome {
                Outcome::Deployed(s) => {
                    for w in &s.warnings {
                        eprintln!("warning: {w}");
                    }
                    println!("rolled back: {}", report::summary_line(&s));
                }
                Outcome::UpToDate { commit } => {
                    println!("already live ({})", rootswap::commit::short(&commit))
                }
                Outcome::DryRun(_) => {}
            }
        }
        Command::History {
            json: as_json,
            limit,
        } => {
            let mut records = rootswap::history::read(&layout.state)?;
            if let Some(n) = limit {
                let skip = records.len().saturating_sub(n);
                records.drain(..skip);
            }
            if as_json {
                json(&records)?;
            } else {
                print!("{}", report::history_table(&records));
            }
        }
        Command::Opcache { action } => return rootswap::opcache::command(&cfg, &action),
        Command::Nginx(a) => return rootswap::nginx::command(&cfg, &a),
        Command::Doctor(a) => return rootswap::doctor::command(&cfg, &a),
        Command::Config {
            effective,
            json: as_json,
        } => {
            if as_json {
                println!("{}", rootswap::effective::json(&cfg)?);
            } else if effective {
                print!("{}", rootswap::effective::yaml(&cfg, &cli.config)?);
            } else {
                let preset = cfg
                    .preset
                    .map(|p| format!(", preset {p}"))
                    .unwrap_or_default();
                println!(
                    "{}: OK (webroot {}{preset}); `--effective` prints it in full",
                    cli.config.display(),
                    cfg.webroot.display()
                );
            }
        }
        Command::Init { .. } | Command::Completions { .. } | Command::Man => {
            unreachable!("handled above")
        }
        Command::Serve => rootswap::serve::run(&cli.config, cfg)?,
        Command::Fleet {
            action: FleetCmd::Status { json: as_json },
        } => return rootswap::fleet::cli::status(&cfg, as_json),
        Command::Demo { .. } => unreachable!("handled above"),
        Command::BenchCopy { .. } => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Commands that need no configuration file: `init`, `completions`, `man`.
fn standalone(cli: &Cli) -> Option<Result<ExitCode>> {
    use clap::CommandFactory;
    use std::io::IsTerminal;
    match &cli.command {
        Command::Init {
            webroot,
            repo,
            branch,
            preset,
            force,
        } => Some((|| {
            let opts = rootswap::init::Options {
                config_path: cli.config.clone(),
                webroot: webroot.clone(),
                repo: repo.clone(),
                branch: branch.clone(),
                preset: *preset,
                force: *force,
            };
            let stdin = std::io::stdin();
            let mut lock = stdin.lock();
            let mut stderr = std::io::stderr();
            let input: Option<&mut dyn std::io::BufRead> = if std::io::stdin().is_terminal() {
                Some(&mut lock)
            } else {
                None
            };
            let mut asker = rootswap::init::Asker {
                input,
                prompt: &mut stderr,
            };
            let outcome = rootswap::init::run(&opts, &mut asker)?;
            print!("{}", rootswap::init::report(&outcome));
            Ok(ExitCode::SUCCESS)
        })()),
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "rootswap",
                &mut std::io::stdout(),
            );
            Some(Ok(ExitCode::SUCCESS))
        }
        Command::Man => Some(
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map(|_| ExitCode::SUCCESS)
                .map_err(Into::into),
        ),
        _ => None,
    }
}
