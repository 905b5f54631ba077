//! Progress on a terminal (`indicatif`): a spinner naming the running deploy
//! step and its elapsed time, and for the long steps a progress bar
//! (position/total, rate, ETA) or, when the total is not known, a counter.
//!
//! The deploy announces each step with [`step_started`], a `debug` event of
//! target [`STEP_TARGET`] with a `step` field and, for a long step, a `unit`
//! and maybe a `total` field; [`step_finished`] ends it. [`Layer`] turns these
//! into what is drawn. The work itself (the copy engine's threads, the
//! checkout) calls [`advance`] per entry: one relaxed atomic load when no bar
//! counts, one relaxed add more when one does, never a lock. A thread started
//! by [`start`] moves the count into the bar ten times a second.
//!
//! Log lines go through [`writer`], which lifts the bar while a line is
//! written so the two never interleave. Nothing is drawn and nothing is
//! counted unless [`start`] was called (the CLI does so only when stderr is a
//! terminal, the log format is human and `--json` is not given).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;

/// Target of the "step started" and "step finished" events.
pub const STEP_TARGET: &str = "rootswap::step";

/// How often the count is moved into the bar.
const PUMP_INTERVAL: Duration = Duration::from_millis(100);

/// What a long step counts: the unit shown after the number and, when known
/// beforehand, the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// Shown after the number, e.g. "entries", "changes".
    pub unit: &'static str,
    /// Expected end position; `None` (or 0): a counter without a total.
    pub total: Option<u64>,
}

/// A step counter shared by every thread working on the step: a flag that
/// says whether anyone shows the count, and the count.
///
/// [`Counter::advance_by`] costs one relaxed load while the flag is down, so
/// the hot paths call it unconditionally.
#[derive(Debug, Default)]
pub struct Counter {
    counting: AtomicBool,
    position: AtomicU64,
}

impl Counter {
    /// A counter that does not count.
    pub const fn new() -> Counter {
        Counter {
            counting: AtomicBool::new(false),
            position: AtomicU64::new(0),
        }
    }

    /// Starts counting from zero.
    pub fn begin(&self) {
        self.position.store(0, Ordering::Relaxed);
        self.counting.store(true, Ordering::Relaxed);
    }

    /// Stops counting; returns the count reached.
    pub fn end(&self) -> u64 {
        self.counting.store(false, Ordering::Relaxed);
        self.position.load(Ordering::Relaxed)
    }

    /// Whether the count is being shown (between [`begin`](Self::begin) and [`end`](Self::end)).
    #[inline]
    pub fn is_counting(&self) -> bool {
        self.counting.load(Ordering::Relaxed)
    }

    /// Adds `n` while counting; otherwise does nothing.
    #[inline]
    pub fn advance_by(&self, n: u64) {
        if self.counting.load(Ordering::Relaxed) {
            self.position.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The count so far.
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }
}

/// The running step's count.
static COUNTER: Counter = Counter::new();

/// One more entry done in the running step (a no-op unless a bar shows it).
#[inline]
pub fn advance() {
    COUNTER.advance_by(1);
}

/// `n` more entries done in the running step (a no-op unless a bar shows it).
#[inline]
pub fn advance_by(n: u64) {
    COUNTER.advance_by(n);
}

/// Whether a bar is counting the running step (work that is costly to count
/// can skip it when not).
#[inline]
pub fn counting() -> bool {
    COUNTER.is_counting()
}

/// Announces that step `name` starts: the spinner names it, or with `count` a
/// progress bar (or counter) counts it until [`step_finished`].
pub fn step_started(name: &str, count: Option<Count>) {
    match count {
        None => tracing::debug!(target: STEP_TARGET, step = name, "started"),
        Some(Count { unit, total: None }) => {
            tracing::debug!(target: STEP_TARGET, step = name, unit, "started")
        }
        Some(Count {
            unit,
            total: Some(total),
        }) => tracing::debug!(target: STEP_TARGET, step = name, unit, total, "started"),
    }
}

/// Announces that pass `name` of the running step starts (a catch-up, a
/// copy-back pass, the copy itself): drawn like a step, but a `pass` field
/// instead of `step`, so that listeners that follow the steps of the flow
/// (the dashboard's live view) can tell the two apart.
pub fn pass_started(name: &str, count: Option<Count>) {
    match count {
        None => tracing::debug!(target: STEP_TARGET, pass = name, "started"),
        Some(Count { unit, total: None }) => {
            tracing::debug!(target: STEP_TARGET, pass = name, unit, "started")
        }
        Some(Count {
            unit,
            total: Some(total),
        }) => tracing::debug!(target: STEP_TARGET, pass = name, unit, total, "started"),
    }
}

/// Announces that step `name` ended: a bar shows its final count.
pub fn step_finished(name: &str) {
    tracing::debug!(target: STEP_TARGET, finished = name, "finished");
}

/// The bar and the thread that feeds it the count.
struct Shown {
    pb: ProgressBar,
    /// Dropped to stop the pump.
    stop: mpsc::Sender<()>,
    /// None when the thread could not start: each step still shows its final count.
    pump: Option<JoinHandle<()>>,
}

static SHOWN: Mutex<Option<Shown>> = Mutex::new(None);

fn bar() -> Option<ProgressBar> {
    SHOWN
        .lock()
        .ok()
        .and_then(|s| s.as_ref().map(|s| s.pb.clone()))
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// The template for a counted step: a bar with position/total, rate and ETA
/// when the total is known, else the count, rate and elapsed time.
fn count_template(unit: &str, total: Option<u64>) -> String {
    // The unit is ours ("entries", ...), but braces would break the template.
    let unit: String = unit.chars().filter(|c| !matches!(c, '{' | '}')).collect();
    match total {
        Some(t) if t > 0 => format!(
            "{{spinner}} {{msg}} [{{wide_bar}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec:0}}, ETA {{eta}})"
        ),
        _ => format!("{{spinner}} {{msg}} {{human_pos}} {unit} ({{per_sec:0}}) {{elapsed}}"),
    }
}

fn count_style(unit: &str, total: Option<u64>) -> ProgressStyle {
    match ProgressStyle::with_template(&count_template(unit, total)) {
        Ok(s) => s.progress_chars("=> "),
        Err(_) => spinner_style(),
    }
}

/// The length the bar needs to show `pos`: the total was an estimate (the
/// entry count of the last deploy) and the tree may have grown since.
fn grown_length(len: Option<u64>, pos: u64) -> Option<u64> {
    match len {
        Some(l) if pos > l => Some(pos),
        _ => None,
    }
}

/// Moves `pos` into the bar.
fn show(pb: &ProgressBar, pos: u64) {
    if let Some(len) = grown_length(pb.length(), pos) {
        pb.set_length(len);
    }
    pb.set_position(pos);
}

/// Shows the spinner on stderr until [`finish`].
pub fn start() {
    let pb = ProgressBar::new_spinner();
    pb.set_style(spinner_style());
    pb.set_message("starting");
    pb.enable_steady_tick(Duration::from_millis(100));
    let (stop, stopped) = mpsc::channel::<()>();
    let pump = std::thread::Builder::new()
        .name("rootswap-progress".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(PUMP_INTERVAL) {
                // Under the lock, so that a step change never sees a stale count.
                if let Ok(shown) = SHOWN.lock() {
                    if let Some(s) = shown.as_ref() {
                        if COUNTER.is_counting() {
                            show(&s.pb, COUNTER.position());
                        }
                    }
                }
            }
        })
        .ok();
    if let Ok(mut s) = SHOWN.lock() {
        *s = Some(Shown { pb, stop, pump });
    }
}

/// Removes the spinner (or bar) and stops counting.
pub fn finish() {
    COUNTER.end();
    if let Some(s) = SHOWN.lock().ok().and_then(|mut s| s.take()) {
        drop(s.stop);
        if let Some(pump) = s.pump {
            let _ = pump.join();
        }
        s.pb.finish_and_clear();
    }
}

/// Feeds step announcements to the spinner and bars.
pub struct Layer;

/// A step event, as [`step_started`] and [`step_finished`] write it.
#[derive(Debug, Default, PartialEq, Eq)]
struct StepEvent {
    step: Option<String>,
    unit: Option<String>,
    total: Option<u64>,
    finished: Option<String>,
}

impl Visit for StepEvent {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "step" | "pass" => self.step = Some(value.to_string()),
            "unit" => self.unit = Some(value.to_string()),
            "finished" => self.finished = Some(value.to_string()),
            _ => {}
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "total" {
            self.total = Some(value);
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "total" {
            self.total = u64::try_from(value).ok();
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = || format!("{value:?}").trim_matches('"').to_string();
        match field.name() {
            "step" | "pass" => self.step = Some(text()),
            "unit" => self.unit = Some(text()),
            "finished" => self.finished = Some(text()),
            "total" => self.total = text().parse().ok(),
            _ => {}
        }
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for Layer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != STEP_TARGET {
            return;
        }
        let mut ev = StepEvent::default();
        event.record(&mut ev);
        let Ok(shown) = SHOWN.lock() else {
            return;
        };
        let Some(pb) = shown.as_ref().map(|s| &s.pb) else {
            return; // nothing drawn: nothing counted either
        };
        if ev.finished.is_some() {
            if COUNTER.is_counting() {
                show(pb, COUNTER.end());
                pb.force_draw();
            }
            return;
        }
        let Some(step) = ev.step else {
            return;
        };
        COUNTER.end();
        // Each call may draw: go through the spinner, so that no frame shows
        // one step's name with another step's count.
        pb.set_style(spinner_style());
        pb.set_message(step);
        let total = ev.total.filter(|t| *t > 0);
        match total {
            Some(t) => pb.set_length(t),
            None => pb.unset_length(),
        }
        pb.reset();
        if let Some(unit) = ev.unit {
            pb.set_style(count_style(&unit, total));
            COUNTER.begin();
            pb.force_draw();
        }
    }
}

/// A log line on its way to stderr; written (with the bar lifted) when dropped.
pub struct Writer(Vec<u8>);

/// The log writer: stderr, politely sharing it with the spinner and bars.
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
        // Every log line passes here: credentials in URLs are masked.
        let line = String::from_utf8_lossy(&self.0);
        let line = crate::redact::text(&line);
        let out = |buf: &[u8]| {
            let _ = std::io::stderr().lock().write_all(buf);
        };
        match bar() {
            Some(pb) => pb.suspend(|| out(line.as_bytes())),
            None => out(line.as_bytes()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_counts_only_between_begin_and_end() {
        let c = Counter::new();
        c.advance_by(5);
        assert_eq!(c.position(), 0, "not counting: nothing added");
        assert!(!c.is_counting());
        c.begin();
        assert!(c.is_counting());
        c.advance_by(2);
        c.advance_by(1);
        assert_eq!(c.position(), 3);
        assert_eq!(c.end(), 3);
        c.advance_by(10);
        assert_eq!(c.position(), 3, "after end: nothing added");
        c.begin();
        assert_eq!(c.position(), 0, "a new step counts from zero");
    }

    #[test]
    fn counter_is_exact_across_threads() {
        let c = Counter::new();
        c.begin();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        c.advance_by(1);
                    }
                });
            }
        });
        assert_eq!(c.end(), 40_000);
    }

    #[test]
    fn an_estimated_total_grows_to_the_position() {
        assert_eq!(grown_length(Some(100), 50), None);
        assert_eq!(grown_length(Some(100), 100), None);
        assert_eq!(grown_length(Some(100), 130), Some(130));
        assert_eq!(grown_length(None, 130), None, "a counter has no length");
    }

    #[test]
    fn templates_parse_with_and_without_total() {
        for total in [Some(150), None, Some(0)] {
            let t = count_template("entries", total);
            assert!(ProgressStyle::with_template(&t).is_ok(), "{t}");
            assert!(t.contains(" entries"), "{t}");
            assert_eq!(
                t.contains("{human_len}"),
                total.is_some_and(|t| t > 0),
                "{t}"
            );
        }
        let t = count_template("bad {unit}", Some(3));
        assert!(ProgressStyle::with_template(&t).is_ok(), "{t}");
    }

    #[test]
    fn step_events_carry_name_unit_and_total() {
        use tracing_subscriber::prelude::*;
        #[derive(Clone, Default)]
        struct Seen(std::sync::Arc<Mutex<Vec<StepEvent>>>);
        impl<S: Subscriber> tracing_subscriber::Layer<S> for Seen {
            fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
                let mut ev = StepEvent::default();
                event.record(&mut ev);
                if let Ok(mut v) = self.0.lock() {
                    v.push(ev);
                }
            }
        }
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry().with(seen.clone());
        tracing::subscriber::with_default(subscriber, || {
            step_started("fetch", None);
            step_started(
                "snapshot",
                Some(Count {
                    unit: "entries",
                    total: Some(150),
                }),
            );
            step_finished("snapshot");
            step_started(
                "copy-back",
                Some(Count {
                    unit: "files",
                    total: None,
                }),
            );
        });
        let v = seen.0.lock().unwrap();
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            *v,
            vec![
                StepEvent {
                    step: s("fetch"),
                    ..Default::default()
                },
                StepEvent {
                    step: s("snapshot"),
                    unit: s("entries"),
                    total: Some(150),
                    finished: None,
                },
                StepEvent {
                    finished: s("snapshot"),
                    ..Default::default()
                },
                StepEvent {
                    step: s("copy-back"),
                    unit: s("files"),
                    ..Default::default()
                },
            ]
        );
    }
}
