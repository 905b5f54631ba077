//! Progress on a terminal: a spinner naming the running deploy step and its
//! elapsed time, above the log lines (`indicatif`).
//!
//! The deploy announces each step with a `debug` event of target
//! [`STEP_TARGET`] and a `step` field; [`Layer`] turns that into the
//! spinner's message. Log lines go through [`writer`], which lifts the spinner
//! while a line is written so the two never interleave. Nothing is drawn unless
//! [`start`] was called (the CLI does so only when stderr is a terminal and the
//! log format is human).

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;

/// Target of the "step started" events.
pub const STEP_TARGET: &str = "rootswap::step";

static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn bar() -> Option<ProgressBar> {
    BAR.lock().ok().and_then(|b| b.clone())
}

/// Shows the spinner on stderr until [`finish`].
pub fn start() {
    let pb = ProgressBar::new_spinner();
    let style = ProgressStyle::with_template("{spinner} {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    pb.set_style(style);
    pb.set_message("starting");
    pb.enable_steady_tick(Duration::from_millis(100));
    if let Ok(mut b) = BAR.lock() {
        *b = Some(pb);
    }
}

/// Removes the spinner.
pub fn finish() {
    if let Some(pb) = BAR.lock().ok().and_then(|mut b| b.take()) {
        pb.finish_and_clear();
    }
}

/// Feeds step names to the spinner.
pub struct Layer;

struct StepName(Option<String>);

impl Visit for StepName {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "step" {
            self.0 = Some(value.to_string());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "step" {
            self.0 = Some(format!("{value:?}").trim_matches('"').to_string());
        }
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for Layer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != STEP_TARGET {
            return;
        }
        let mut name = StepName(None);
        event.record(&mut name);
        if let (Some(pb), Some(step)) = (bar(), name.0) {
            pb.set_message(step);
            pb.reset_elapsed();
        }
    }
}

/// A log line on its way to stderr; written (with the spinner lifted) when dropped.
pub struct Writer(Vec<u8>);

/// The log writer: stderr, politely sharing it with the spinner.
pub fn writer() -> Writer {
    Writer(Vec::new())
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let out = |buf: &[u8]| {
            let _ = std::io::stderr().lock().write_all(buf);
        };
        match bar() {
            Some(pb) => pb.suspend(|| out(&self.0)),
            None => out(&self.0),
        }
    }
}

/// Should output to stdout be coloured? A terminal, and `NO_COLOR` unset or empty
/// (<https://no-color.org>), and `TERM` not `dumb`.
pub fn color_stdout() -> bool {
    use std::io::IsTerminal;
    let no_color = matches!(std::env::var_os("NO_COLOR"), Some(v) if !v.is_empty());
    !no_color
        && std::env::var("TERM").map(|t| t != "dumb").unwrap_or(true)
        && std::io::stdout().is_terminal()
}
