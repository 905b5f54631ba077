//! The log: human lines (through the progress writer) or JSON lines.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

/// Log format: human (default) or json (for log shippers).
#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Sets up the log. `spans`: `serve` (log lines carry the deploy's id, and
/// the dashboard gets the running deploy's live feed); `verbose`: the passes
/// inside each step too.
pub fn init(format: LogFormat, spans: bool, verbose: bool) {
    let default = if verbose {
        "info,rootswap=debug,rootswap::step=info,tokio_cron_scheduler=warn"
    } else {
        "info,tokio_cron_scheduler=warn"
    };
    let filter =
        EnvFilter::try_from_env("ROOTSWAP_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // Log lines go through the progress writer (it lifts the deploy's spinner or
    // bar while writing); the progress layer sees only the deploy's step events.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(rootswap::progress::writer);
    let fmt = match format {
        LogFormat::Human => fmt
            .event_format(rootswap::report::HumanFormat { spans })
            .boxed(),
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
