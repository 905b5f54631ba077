//! What the commands print for people: summary lines, tables, log format.

use std::fmt::Write as _;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::deploy::Summary;
use crate::snapshots::Listing;
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
    if s.warnings.iter().any(|w| w.starts_with("OPcache ")) {
        line.push_str(
            "; WARNING: php-fpm's OPcache was not cleared, old code may be served (see the warning above)",
        );
    }
    line
}

/// A byte count for people in binary units (`512 B`, `2.0 KiB`): the one
/// formatter of sizes (status, `snapshots list`, the dashboard).
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
    // A directory renamed by hand may hold control characters (a newline, a
    // terminal escape): they are shown escaped, never sent to the terminal.
    let names: Vec<String> = rows.iter().map(|r| printable(&r.name)).collect();
    let w = names.iter().map(|n| n.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:<w$}  {:<25}  {:<7}  {:>10}  {}\n",
        "NAME", "CREATED", "COMMIT", "SIZE", "STATE"
    );
    for (r, name) in rows.iter().zip(&names) {
        let state = match (r.live, r.kept) {
            (true, _) => "live",
            (false, true) => "kept",
            (false, false) => "evictable",
        };
        let commit = r.commit.as_deref().map(crate::commit::short).unwrap_or("-");
        let _ = writeln!(
            out,
            "{:<w$}  {:<25}  {:<7}  {:>10}  {state}",
            name,
            r.created.as_deref().unwrap_or("-"),
            commit,
            size(r.size)
        );
    }
    out
}

/// `name` with control characters escaped (`\n`, `\u{1b}`), for a terminal.
pub fn printable(name: &str) -> String {
    if name.chars().any(char::is_control) {
        name.chars().flat_map(char::escape_debug).collect()
    } else {
        name.to_string()
    }
}

/// The `history` table, oldest first.
pub fn history_table(records: &[crate::history::Record]) -> String {
    if records.is_empty() {
        return "no deploys yet\n".into();
    }
    let mut out = format!(
        "{:<25}  {:<9}  {:<7}  {:<11}  {:>9}  {}\n",
        "WHEN", "WHO", "COMMIT", "RESULT", "DURATION", "STEPS"
    );
    for r in records {
        let commit = r.commit.as_deref().map(crate::commit::short).unwrap_or("-");
        let steps: Vec<String> = r
            .steps
            .iter()
            .map(|s| format!("{} {}ms", s.step, s.ms))
            .collect();
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

/// The `status` summary, without colour.
pub fn status_text(s: &Status) -> String {
    status_text_styled(s, false)
}

/// How long ago an RFC 3339 time was, e.g. `3m ago`.
pub fn age(rfc3339: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    Some(match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86_399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    })
}

/// The `status` summary: one aligned line per fact, coloured when `color`
/// (green: fine, yellow: needs a look, red: failed).
pub fn status_text_styled(s: &Status, color: bool) -> String {
    let p = Paint(color);
    let mut out = Lines {
        out: String::new(),
        p,
    };
    out.line("webroot", s.webroot.clone());
    out.line("live", live_value(s, p));
    out.line("commit", commit_value(s, p));
    out.line("branch", branch_value(s, p));
    out.line(
        "deploying",
        s.deploy_running
            .map(|pid| p.yellow(&format!("yes (pid {pid})")))
            .unwrap_or_else(|| "no".into()),
    );
    last_deploy_lines(&mut out, s);
    for d in &s.shared {
        let state = if d.linked {
            p.dim("(linked)")
        } else {
            p.yellow("(not linked yet: the next deploy moves it there)")
        };
        out.line("shared", format!("{} -> {} {state}", d.path, d.store));
    }
    match &s.opcache_warning {
        Some(w) => out.line("opcache", p.red(&format!("WARNING: {w}"))),
        None => out.line("opcache", s.opcache.clone()),
    }
    if let Some(j) = &s.interrupted {
        out.line(
            "interrupted",
            p.yellow(&format!(
                "deploy {} of {} during {}: the next deploy (or serve) recovers it",
                j.id,
                crate::commit::short(&j.commit),
                crate::journal::phase_name(j.phase)
            )),
        );
    }
    out.line("auto", auto_value(s, p));
    snapshot_lines(&mut out, s);
    out.out
}

/// ANSI colours, or none.
#[derive(Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn paint(self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn green(self, t: &str) -> String {
        self.paint("32", t)
    }
    fn yellow(self, t: &str) -> String {
        self.paint("33", t)
    }
    fn red(self, t: &str) -> String {
        self.paint("31", t)
    }
    fn dim(self, t: &str) -> String {
        self.paint("2", t)
    }
}

/// The status text being written: one bold, aligned label per line.
struct Lines {
    out: String,
    p: Paint,
}

impl Lines {
    fn line(&mut self, label: &str, value: String) {
        let pad = " ".repeat(10usize.saturating_sub(label.len()));
        let _ = writeln!(self.out, "{}{pad} {value}", self.p.paint("1", label));
    }
}

/// A commit's short id, or `-`.
fn short_or_dash(c: &Option<String>) -> String {
    c.as_deref()
        .map(|c| crate::commit::short(c).to_string())
        .unwrap_or_else(|| "-".into())
}

/// What the link serves.
fn live_value(s: &Status, p: Paint) -> String {
    match (s.link.as_str(), &s.live) {
        ("ok", Some(t)) if s.snapshots.iter().any(|r| r.live) => p.yellow(&format!(
            "{t} (a snapshot: a deploy is running, or was interrupted)"
        )),
        ("ok", Some(t)) => p.green(t),
        ("missing", _) => p.dim("nothing (never deployed)"),
        _ => p.red("the link is not a symlink: run rootswap deploy for how to migrate"),
    }
}

/// The deployed commit, its subject and how long it has been live.
fn commit_value(s: &Status, p: Paint) -> String {
    let mut commit = short_or_dash(&s.deployed_commit);
    if let Some(subject) = &s.deployed_subject {
        commit = format!("{commit} {subject}");
    }
    if let Some(age) = s.deployed_at.as_deref().and_then(age) {
        commit = format!("{commit} {}", p.dim(&format!("(live {age})")));
    }
    commit
}

/// The branch and whether its head is deployed.
fn branch_value(s: &Status, p: Paint) -> String {
    let head = match (&s.branch_head, &s.deployed_commit) {
        (Some(h), Some(d)) if h == d => {
            format!(
                "head {} {}",
                short_or_dash(&s.branch_head),
                p.dim("(deployed)")
            )
        }
        (Some(_), _) => p.yellow(&format!(
            "head {} (not deployed yet)",
            short_or_dash(&s.branch_head)
        )),
        (None, _) => p.dim("head unknown (not fetched yet)"),
    };
    format!("{}, {head}", s.branch)
}

/// The last deploy, and the after_switch warnings it left.
fn last_deploy_lines(out: &mut Lines, s: &Status) {
    let p = out.p;
    let Some(d) = &s.last_deploy else { return };
    let result = match d.result.as_str() {
        "success" => p.green(&d.result),
        _ => p.red(&d.result),
    };
    let when = age(&d.finished).unwrap_or_else(|| d.finished.clone());
    let mut text = format!(
        "{result} {} {when}, took {:.1}s ({})",
        short_or_dash(&d.commit),
        d.duration_ms as f64 / 1000.0,
        d.trigger
    );
    if let Some(e) = &d.error {
        text = format!("{text}: {}", p.red(e.lines().next().unwrap_or("")));
    }
    out.line("last", text);
    for w in d
        .warnings
        .iter()
        .filter(|w| w.starts_with("hooks.after_switch failed"))
    {
        out.line("warning", p.yellow(w.lines().next().unwrap_or("")));
    }
}

/// The auto-deploy mode and when it polls.
fn auto_value(s: &Status, p: Paint) -> String {
    let when = match (&s.next_poll, &s.last_poll) {
        (Some(next), _) => match chrono::DateTime::parse_from_rfc3339(next) {
            Ok(t) => {
                let secs = (t - chrono::Local::now().fixed_offset())
                    .num_seconds()
                    .max(0);
                format!(", next poll in {secs}s")
            }
            Err(_) => String::new(),
        },
        (None, Some(last)) if s.auto_deploy != "off" => format!(", last poll {last}"),
        (None, None) if s.auto_deploy != "off" => {
            ", not polling (is `rootswap serve` running?)".to_string()
        }
        _ => String::new(),
    };
    if when.is_empty() {
        format!("{} {}", s.auto_deploy, p.dim("(rootswap serve)"))
    } else {
        format!("{}{when}", s.auto_deploy)
    }
}

/// How many snapshots and their total size, then one row per snapshot.
fn snapshot_lines(out: &mut Lines, s: &Status) {
    let p = out.p;
    let total: u64 = s.snapshots.iter().map(|r| r.size).sum();
    out.line(
        "snapshots",
        if s.snapshots.is_empty() {
            "none".into()
        } else {
            format!("{}, {}", s.snapshots.len(), size(total))
        },
    );
    let w = s.snapshots.iter().map(|r| r.name.len()).max().unwrap_or(0);
    for r in &s.snapshots {
        let tag = if r.live {
            p.green("live")
        } else if r.kept {
            "kept".into()
        } else {
            p.dim("evictable")
        };
        let _ = writeln!(
            out.out,
            "{:<10} {:<w$}  {:<7}  {:>10}  {tag}",
            "",
            r.name,
            short_or_dash(&r.commit),
            size(r.size)
        );
    }
}

/// Log format for people: the message, prefixed by `warning:`/`error:` when
/// it is one. With `spans` (the service, where deploys interleave with other
/// lines), each line also names the spans it belongs to, e.g.
/// `deploy{id=20261122-101503-3f2a}`, so every line of a deploy carries its id.
pub struct HumanFormat {
    /// Print the enclosing spans and their fields before the message.
    pub spans: bool,
}

impl<S, N> FormatEvent<S, N> for HumanFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let prefix = match *event.metadata().level() {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            _ => "  ",
        };
        write!(writer, "{prefix}")?;
        if self.spans {
            if let Some(scope) = ctx.event_scope() {
                for span in scope.from_root() {
                    let ext = span.extensions();
                    match ext.get::<tracing_subscriber::fmt::FormattedFields<N>>() {
                        Some(fields) if !fields.is_empty() => {
                            write!(writer, "{}{{{}}} ", span.name(), fields)?
                        }
                        _ => write!(writer, "{} ", span.name())?,
                    }
                }
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// `rootswap deploy --dry-run` for people: what would change, file by file.
pub fn dry_run_text(d: &crate::deploy::DryRun) -> String {
    let mut out = String::new();
    let from = d
        .from
        .as_deref()
        .map(crate::commit::short)
        .unwrap_or("nothing");
    let _ = writeln!(out, "would deploy {} (live: {from})", d.described);
    for n in &d.notes {
        let _ = writeln!(out, "{n}");
    }
    for (label, list) in [
        ("add", &d.added),
        ("change", &d.modified),
        ("remove", &d.deleted),
    ] {
        for p in list {
            let _ = writeln!(out, "  {label:<6} {}", p.display());
        }
    }
    let _ = writeln!(
        out,
        "{} added, {} changed, {} removed; {} user files would be carried over",
        d.added.len(),
        d.modified.len(),
        d.deleted.len(),
        d.user_files.len()
    );
    for p in &d.user_files {
        let _ = writeln!(out, "  keep   {}", p.display());
    }
    out
}
