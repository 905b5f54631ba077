//! What the commands print for people: summary lines, tables, log format.

use std::fmt::Write as _;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::deploy::Summary;
use crate::snapshot::Listing;
use crate::status::Status;

/// One line that says what a deploy did.
pub fn summary_line(s: &Summary) -> String {
    let (a, m, d) = s.files;
    let mut line = format!(
        "deployed {} in {:.2}s: {} files changed (+{a} ~{m} -{d})",
        s.described,
        s.duration.as_secs_f64(),
        a + m + d
    );
    if let Some(snap) = &s.snapshot {
        let _ = write!(line, ", {} user files copied back", s.user_files_copied);
        if s.user_files_removed > 0 {
            let _ = write!(line, " ({} removed)", s.user_files_removed);
        }
        let _ = write!(line, ", snapshot {snap}");
        if let Some(r) = &s.recycled {
            let _ = write!(line, " (recycled {r})");
        }
    }
    if !s.evicted.is_empty() {
        let _ = write!(line, ", evicted {}", s.evicted.join(", "));
    }
    line
}

/// Human-readable size.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The `snapshots list` table.
pub fn snapshot_table(rows: &[Listing]) -> String {
    if rows.is_empty() {
        return "no snapshots\n".into();
    }
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!("{:<w$}  {:<25}  {:<7}  {:>10}  {}\n", "NAME", "CREATED", "COMMIT", "SIZE", "STATE");
    for r in rows {
        let state = match (r.live, r.kept) {
            (true, _) => "live",
            (false, true) => "kept",
            (false, false) => "evictable",
        };
        let commit = r.commit.as_deref().map(|c| &c[..7.min(c.len())]).unwrap_or("-");
        let _ = writeln!(
            out,
            "{:<w$}  {:<25}  {:<7}  {:>10}  {state}",
            r.name,
            r.created.as_deref().unwrap_or("-"),
            commit,
            size(r.size)
        );
    }
    out
}

/// The `history` table, oldest first.
pub fn history_table(records: &[crate::history::Record]) -> String {
    if records.is_empty() {
        return "no deploys yet\n".into();
    }
    let mut out = format!("{:<25}  {:<9}  {:<7}  {:<11}  {:>9}  {}\n", "WHEN", "WHO", "COMMIT", "RESULT", "DURATION", "STEPS");
    for r in records {
        let commit = r.commit.as_deref().map(|c| &c[..7.min(c.len())]).unwrap_or("-");
        let steps: Vec<String> = r.steps.iter().map(|s| format!("{} {}ms", s.step, s.ms)).collect();
        let _ = writeln!(
            out,
            "{:<25}  {:<9}  {:<7}  {:<11}  {:>7}ms  {}",
            r.started.get(..25).unwrap_or(&r.started),
            r.trigger,
            commit,
            r.result,
            r.duration_ms,
            steps.join(", ")
        );
        if let Some(e) = &r.error {
            let _ = writeln!(out, "    {}", e.lines().next().unwrap_or(""));
        }
    }
    out
}

/// The `status` summary.
pub fn status_text(s: &Status) -> String {
    let mut out = String::new();
    let short = |c: &Option<String>| c.as_deref().map(|c| c[..7.min(c.len())].to_string()).unwrap_or_else(|| "-".into());
    let _ = writeln!(out, "webroot   {}", s.webroot);
    let live = match (s.link.as_str(), &s.live) {
        ("ok", Some(t)) => t.clone(),
        ("missing", _) => "nothing (never deployed)".into(),
        _ => "the link is not a symlink: run rootswap deploy for how to migrate".into(),
    };
    let _ = writeln!(out, "live      {live}");
    let _ = writeln!(out, "deployed  {}", short(&s.deployed_commit));
    let _ = writeln!(out, "branch    {} (head {})", s.branch, short(&s.branch_head));
    let running = s.deploy_running.map(|p| format!("yes (pid {p})")).unwrap_or_else(|| "no".into());
    let _ = writeln!(out, "deploying {running}");
    if let Some(d) = &s.last_deploy {
        let _ = writeln!(out, "last      {} {} at {} ({} ms)", d.result, short(&d.commit), d.finished, d.duration_ms);
    }
    if let Some(j) = &s.interrupted {
        let _ = writeln!(
            out,
            "interrupted deploy {} of {} during {}: the next deploy (or serve) recovers it",
            j.id,
            &j.commit[..7.min(j.commit.len())],
            crate::journal::phase_name(j.phase)
        );
    }
    let _ = writeln!(out, "snapshots {}", s.snapshots.len());
    for r in &s.snapshots {
        let tag = if r.live { " live" } else if r.kept { " kept" } else { "" };
        let _ = writeln!(out, "  {}  {}  {}{tag}", r.name, short(&r.commit), size(r.size));
    }
    out
}

/// Log format for people: the message, prefixed by `warning:`/`error:` when it is one.
pub struct HumanFormat;

impl<S, N> FormatEvent<S, N> for HumanFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let prefix = match *event.metadata().level() {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            _ => "  ",
        };
        write!(writer, "{prefix}")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
