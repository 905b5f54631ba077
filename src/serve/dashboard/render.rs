//! The dashboard's HTML, rendered on the server: the page shell and the
//! view (live version, history, chart, snapshots) that the page fetches again
//! whenever a deploy ends or an action succeeds.

use std::fmt::Write;

use anyhow::Result;
use chrono::{DateTime, FixedOffset, Local};

use super::links::RepoWeb;
use crate::config::Config;
use crate::history::Record;
use crate::site::Site;
use crate::snapshots::Listing;
use crate::status::Status;

/// Deploys listed in the history.
pub const HISTORY_ROWS: usize = 100;
/// Deploys drawn in the chart.
pub const CHART_DEPLOYS: usize = 50;

/// Everything the view shows.
pub struct View {
    /// What `rootswap status` knows.
    pub status: Status,
    /// The source repository (as configured).
    pub repo: String,
    /// Author of the live commit.
    pub author: Option<String>,
    /// When the live commit was made.
    pub committed: Option<DateTime<FixedOffset>>,
    /// The last [`HISTORY_ROWS`] deploys, oldest first.
    pub history: Vec<Record>,
    /// The repository's web pages, when it is on a known host.
    pub web: Option<RepoWeb>,
    /// The deploy the service runs now.
    pub running: Option<String>,
    /// When the view was gathered.
    pub now: DateTime<Local>,
    /// Every node of the fleet, when this node is one (`fleet:` set).
    pub fleet: Option<crate::fleet::status::FleetStatus>,
}

/// Gathers the view: the status, the end of the history, the live commit's author.
pub fn gather(cfg: &Site, running: Option<String>) -> Result<View> {
    let status = crate::status::gather(cfg)?;
    let history = crate::history::read_last(&cfg.state_path(), HISTORY_ROWS)?;
    let (author, committed) = status
        .deployed_commit
        .as_deref()
        .and_then(|c| commit_author(cfg, c))
        .map_or((None, None), |(a, t)| (Some(a), t));
    Ok(View {
        status,
        repo: crate::redact::text(&cfg.source.repo).into_owned(),
        author,
        committed,
        history,
        web: RepoWeb::from_remote(&cfg.source.repo),
        running,
        now: Local::now(),
        fleet: None,
    })
}

fn commit_author(cfg: &Config, sha: &str) -> Option<(String, Option<DateTime<FixedOffset>>)> {
    let repo = git2::Repository::open_bare(cfg.state_path().join("repo.git")).ok()?;
    let commit = repo.find_commit(git2::Oid::from_str(sha).ok()?).ok()?;
    let author = commit.author();
    let time = author.when();
    let offset = FixedOffset::east_opt(time.offset_minutes() * 60)?;
    let at = DateTime::from_timestamp(time.seconds(), 0).map(|t| t.with_timezone(&offset));
    Some((author.name().unwrap_or("?").to_string(), at))
}

/// Escapes text for HTML (element content and quoted attributes).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn short(c: &str) -> &str {
    c.get(..7).unwrap_or(c)
}

/// "3 min ago", "in 20 s".
fn relative(now: DateTime<Local>, t: DateTime<FixedOffset>) -> String {
    let secs = now.signed_duration_since(t).num_seconds();
    let (n, future) = (secs.unsigned_abs(), secs < 0);
    let amount = match n {
        0..=59 => format!("{n} s"),
        60..=3599 => format!("{} min", n / 60),
        3600..=86_399 => format!("{} h", n / 3600),
        _ => format!("{} days", n / 86_400),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// A `<time>` element: the exact time as its tooltip, relative time as text.
fn time_el(now: DateTime<Local>, rfc3339: &str) -> String {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => format!(
            r#"<time datetime="{}" title="{}">{}</time>"#,
            esc(rfc3339),
            t.format("%Y-%m-%d %H:%M:%S %:z"),
            relative(now, t)
        ),
        Err(_) => esc(rfc3339),
    }
}

/// Milliseconds for people.
pub fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// A result in words, with a symbol that says the same (never colour alone).
fn result_badge(result: &str) -> String {
    let (sym, words) = match result {
        "success" => ("✓", "success"),
        "failed" => ("✗", "failed"),
        "rolled-back" => ("↩", "rolled back (health check failed)"),
        "interrupted" => ("!", "interrupted"),
        other => ("•", other),
    };
    format!(
        r#"<span class="badge result-{}"><span aria-hidden="true">{sym}</span> {}</span>"#,
        esc(result),
        esc(words)
    )
}

fn commit_link(web: Option<&RepoWeb>, sha: &str) -> String {
    match web {
        Some(w) => format!(
            r#"<a href="{}"><code>{}</code></a>"#,
            esc(&w.commit(sha)),
            esc(short(sha))
        ),
        None => format!(r#"<code title="{}">{}</code>"#, esc(sha), esc(short(sha))),
    }
}

fn commit_range(web: Option<&RepoWeb>, from: Option<&str>, to: Option<&str>) -> String {
    match (from, to) {
        (Some(f), Some(t)) if f != t => {
            let compare = web.map(|w| {
                format!(
                    r#" <a class="compare" href="{}">changes</a>"#,
                    esc(&w.compare(f, t))
                )
            });
            format!(
                "{} → {}{}",
                commit_link(web, f),
                commit_link(web, t),
                compare.unwrap_or_default()
            )
        }
        (_, Some(t)) => commit_link(web, t),
        _ => "no commit".to_string(),
    }
}

/// The view: live version, chart, history, snapshots.
pub fn view_html(v: &View) -> String {
    let mut out = String::with_capacity(64 * 1024);
    live_section(&mut out, v);
    fleet_section(&mut out, v);
    chart_section(&mut out, v);
    history_section(&mut out, v);
    snapshots_section(&mut out, v);
    out
}

fn row(out: &mut String, key: &str, value: &str) {
    let _ = write!(out, "<dt>{key}</dt><dd>{value}</dd>");
}

fn live_section(out: &mut String, v: &View) {
    let s = &v.status;
    out.push_str(
        r#"<section id="live" aria-labelledby="live-h"><h2 id="live-h">Live version</h2>"#,
    );
    let _ = write!(
        out,
        r#"<p class="site">{} · branch <code>{}</code> of <code>{}</code></p><dl class="facts">"#,
        esc(&s.webroot),
        esc(&s.branch),
        esc(&v.repo)
    );
    version_rows(out, v);
    state_rows(out, v);
    out.push_str("</dl></section>");
}

/// The live commit: its id, subject, author, when it was deployed.
fn version_rows(out: &mut String, v: &View) {
    let s = &v.status;
    let web = v.web.as_ref();
    match s.deployed_commit.as_deref() {
        Some(c) => row(
            out,
            "Commit",
            &format!(
                r#"<span id="live-commit" data-commit="{}">{}</span>"#,
                esc(c),
                commit_link(web, c)
            ),
        ),
        None => row(out, "Commit", "nothing deployed yet"),
    }
    if let Some(subject) = &s.deployed_subject {
        row(out, "Subject", &esc(subject));
    }
    if let Some(a) = &v.author {
        let when = v
            .committed
            .map(|t| format!(", committed {}", time_el(v.now, &t.to_rfc3339())))
            .unwrap_or_default();
        row(out, "Author", &format!("{}{when}", esc(a)));
    }
    if let Some(at) = &s.deployed_at {
        row(out, "Deployed", &time_el(v.now, at));
    }
}

/// The site's state: the served tree, the last deploy, the branch head,
/// the next poll, the service, an interrupted deploy.
fn state_rows(out: &mut String, v: &View) {
    let s = &v.status;
    let web = v.web.as_ref();
    let served = match (s.live.as_deref(), s.link.as_str()) {
        (Some("ROOT"), _) => "ROOT (the deployed tree)".to_string(),
        (Some(name), _) => format!(
            "snapshot <code>{}</code> (a deploy or rollback is under way, or was interrupted)",
            esc(name)
        ),
        (None, "missing") => "nothing: the link is missing".to_string(),
        (None, _) => "the link is not a symlink".to_string(),
    };
    row(out, "Served tree", &served);
    match &s.last_deploy {
        Some(r) => row(
            out,
            "Last deploy",
            &format!(
                "{} {}, {}",
                result_badge(&r.result),
                time_el(v.now, &r.finished),
                esc(&r.trigger)
            ),
        ),
        None => row(out, "Last deploy", "none yet"),
    }
    if let (Some(head), Some(live)) = (s.branch_head.as_deref(), s.deployed_commit.as_deref()) {
        if head != live {
            row(
                out,
                "Branch head",
                &format!("{} (not live)", commit_link(web, head)),
            );
        }
    }
    let next = match &s.next_poll {
        Some(t) => format!("{}, {}", esc(&s.auto_deploy), time_el(v.now, t)),
        None => esc(&s.auto_deploy),
    };
    row(out, "Next poll", &next);
    let running = match (&v.running, s.deploy_running) {
        (Some(id), _) => format!("deploy <code>{}</code> is running", esc(id)),
        (None, Some(pid)) => format!("a deploy is running (pid {pid}, outside this service)"),
        (None, None) => "idle".to_string(),
    };
    row(out, "Service", &running);
    if let Some(j) = &s.interrupted {
        row(
            out,
            "Interrupted",
            &format!(
                "deploy <code>{}</code> was interrupted; the next deploy recovers it",
                esc(&j.id)
            ),
        );
    }
}

/// Colours of the chart's steps (the legend says which is which).
const PALETTE: [&str; 20] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1f77b4", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#c5b0d5",
    "#8c564b", "#e377c2", "#7f7f7f", "#17becf",
];

fn chart_section(out: &mut String, v: &View) {
    let deploys: Vec<&Record> = v
        .history
        .iter()
        .skip(v.history.len().saturating_sub(CHART_DEPLOYS))
        .collect();
    out.push_str(r#"<section id="chart" aria-labelledby="chart-h"><h2 id="chart-h">Durations of the last deploys</h2>"#);
    if deploys.is_empty() {
        out.push_str("<p>No deploys yet.</p></section>");
        return;
    }
    // Steps in order of first appearance, each with its colour.
    let mut steps: Vec<&str> = Vec::new();
    for r in &deploys {
        for s in &r.steps {
            if !steps.contains(&s.step.as_str()) {
                steps.push(&s.step);
            }
        }
    }
    let colour = |step: &str| {
        let i = steps.iter().position(|s| *s == step).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    let total = |r: &Record| r.steps.iter().map(|s| s.ms).sum::<u64>().max(1);
    let max = deploys.iter().map(|r| total(r)).max().unwrap_or(1) as f64;
    let (w, h) = (500.0, 160.0);
    let slot = w / deploys.len() as f64;
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {w} {h}" preserveAspectRatio="none" role="img" aria-labelledby="chart-desc"><desc id="chart-desc">Bars, oldest deploy left: each bar is one deploy, its height the time it took (tallest {}), split by step.</desc>"#,
        duration(max as u64)
    );
    for (i, r) in deploys.iter().enumerate() {
        let x = i as f64 * slot + slot * 0.1;
        let bw = slot * 0.8;
        let _ = write!(
            out,
            r#"<g class="bar result-{}"><title>{} ({}): {}</title>"#,
            esc(&r.result),
            esc(&r.id),
            esc(&r.result),
            duration(r.duration_ms)
        );
        let mut y = h;
        for s in &r.steps {
            let sh = s.ms as f64 / max * h;
            y -= sh;
            let _ = write!(
                out,
                r#"<rect x="{x:.2}" y="{y:.2}" width="{bw:.2}" height="{sh:.2}" fill="{}"><title>{}: {} {}</title></rect>"#,
                colour(&s.step),
                esc(&r.id),
                esc(&s.step),
                duration(s.ms)
            );
        }
        out.push_str("</g>");
    }
    out.push_str(r#"</svg><ul class="legend">"#);
    for s in &steps {
        let _ = write!(
            out,
            r#"<li><span class="swatch" style="background:{}" aria-hidden="true"></span>{}</li>"#,
            colour(s),
            esc(s)
        );
    }
    out.push_str("</ul></section>");
}

fn history_section(out: &mut String, v: &View) {
    let _ = write!(
        out,
        r#"<section id="history" aria-labelledby="history-h"><h2 id="history-h">History</h2><p class="hint">The last {} deploys, newest first; open one for its steps.</p><ol class="history">"#,
        v.history.len()
    );
    for r in v.history.iter().rev() {
        history_row(out, v, r);
    }
    out.push_str("</ol></section>");
}

fn history_row(out: &mut String, v: &View, r: &Record) {
    let _ = write!(
        out,
        r#"<li class="deploy" data-id="{}" data-result="{}"><details><summary><span class="id"><code>{}</code></span> <span class="trigger">{}</span> <span class="range">{}</span> {} <span class="took">{}</span> {}</summary>"#,
        esc(&r.id),
        esc(&r.result),
        esc(&r.id),
        esc(&r.trigger),
        commit_range(
            v.web.as_ref(),
            r.previous_commit.as_deref(),
            r.commit.as_deref()
        ),
        result_badge(&r.result),
        duration(r.duration_ms),
        time_el(v.now, &r.started)
    );
    if let Some(e) = &r.error {
        let _ = write!(
            out,
            r#"<p class="error"><strong>Error:</strong> {}</p>"#,
            esc(e)
        );
    }
    for w in &r.warnings {
        let _ = write!(
            out,
            r#"<p class="warning"><strong>Warning:</strong> {}</p>"#,
            esc(w)
        );
    }
    if let Some(s) = &r.snapshot {
        let _ = write!(
            out,
            "<p>Served snapshot <code>{}</code> meanwhile.</p>",
            esc(s)
        );
    }
    if !r.evicted.is_empty() {
        let names: Vec<String> = r
            .evicted
            .iter()
            .map(|e| format!("<code>{}</code>", esc(e)))
            .collect();
        let _ = write!(out, "<p>Evicted {}.</p>", names.join(", "));
    }
    out.push_str(r#"<table class="steps"><thead><tr><th scope="col">Step</th><th scope="col">Took</th></tr></thead><tbody>"#);
    for s in &r.steps {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(&s.step),
            duration(s.ms)
        );
    }
    out.push_str("</tbody></table>");
    if let Some(events) = crate::serve::events::events_of(&r.id) {
        out.push_str(r#"<pre class="log">"#);
        for e in events.iter().filter(|e| e.kind == "log") {
            let _ = writeln!(
                out,
                "{} {}",
                e.level.as_deref().unwrap_or(""),
                esc(e.message.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</pre>");
    }
    out.push_str("</details></li>");
}

/// The fleet's nodes: alive, leader, live commit, caught up, their state in
/// the last fleet deploy (every value in words, not colours only).
fn fleet_section(out: &mut String, v: &View) {
    let Some(f) = &v.fleet else { return };
    let _ = write!(
        out,
        r#"<section id="fleet" aria-labelledby="fleet-h"><h2 id="fleet-h">Fleet {}</h2><p>Leader: {}. Last fleet deploy: {}.{}</p>"#,
        esc(&f.site),
        esc(f.leader.as_deref().unwrap_or("none")),
        esc(f.last_result.as_deref().unwrap_or("none yet")),
        f.window_ms
            .map(|w| format!(" Nodes switched within {w:.1} ms of each other."))
            .unwrap_or_default()
    );
    out.push_str(r#"<table class="fleet"><thead><tr><th>node</th><th>member</th><th>live commit</th><th>serves the committed version</th><th>last deploy</th></tr></thead><tbody>"#);
    for n in &f.nodes {
        let state = n
            .last_deploy
            .as_ref()
            .map(|r| match &r.error {
                Some(e) => format!("{}: {}", r.state.as_str(), esc(e)),
                None => r.state.as_str().to_string(),
            })
            .unwrap_or_else(|| "-".into());
        let _ = write!(
            out,
            r#"<tr data-node="{node}"><td>{node}{lead}</td><td>{alive}</td><td>{live}</td><td>{caught}</td><td>{state}</td></tr>"#,
            node = esc(&n.node),
            lead = if n.leader { " (leader)" } else { "" },
            alive = if n.alive {
                "alive"
            } else {
                "gone (lease expired)"
            },
            live = commit_link(v.web.as_ref(), n.live.as_deref().unwrap_or("")),
            caught = if n.caught_up {
                "yes"
            } else {
                "no, catching up"
            },
        );
    }
    out.push_str("</tbody></table></section>");
}

fn snapshots_section(out: &mut String, v: &View) {
    out.push_str(r#"<section id="snapshots" aria-labelledby="snapshots-h"><h2 id="snapshots-h">Snapshots</h2>"#);
    if v.status.snapshots.is_empty() {
        out.push_str("<p>No snapshots yet (the first deploy takes none).</p></section>");
        return;
    }
    out.push_str(r#"<ul class="snapshots">"#);
    for s in v.status.snapshots.iter().rev() {
        snapshot_row(out, v, s);
    }
    out.push_str("</ul></section>");
}

fn snapshot_row(out: &mut String, v: &View, s: &Listing) {
    let name = esc(&s.name);
    let state = if s.live {
        "live (being served)"
    } else if s.kept {
        "kept forever"
    } else {
        "evictable"
    };
    let _ = write!(
        out,
        r#"<li class="snapshot" data-snapshot="{name}"><h3><code>{name}</code></h3><dl class="facts">"#
    );
    if let Some(c) = &s.created {
        row(out, "Created", &time_el(v.now, c));
    }
    match s.commit.as_deref() {
        Some(c) => row(out, "Commit", &commit_link(v.web.as_ref(), c)),
        None => row(out, "Commit", "unknown"),
    }
    row(out, "Size", &human_size(s.size));
    row(out, "State", state);
    out.push_str("</dl>");
    if !s.live {
        out.push_str(r#"<div class="actions">"#);
        if s.commit.is_some() {
            let _ = write!(
                out,
                r#"<form class="action" data-action="rollback" data-snapshot="{name}"><button type="submit">Roll back to this</button></form>"#
            );
        }
        if !s.kept {
            let _ = write!(
                out,
                r#"<form class="action" data-action="keep" data-snapshot="{name}"><label>Label <input name="label" placeholder="e.g. before-upgrade" pattern="[^/.][^/]*"></label> <button type="submit">Keep</button></form>"#
            );
        }
        let _ = write!(
            out,
            r#"<form class="action" data-action="remove" data-snapshot="{name}"><button type="submit" class="danger">Remove</button></form>"#
        );
        out.push_str("</div>");
    }
    out.push_str("</li>");
}

/// A byte count for people: [`crate::report::size`], the one formatter.
fn human_size(b: u64) -> String {
    crate::report::size(b)
}

/// What the page shell needs to know.
pub struct Shell<'a> {
    /// The view, when the reader may see it without the token.
    pub view: Option<&'a str>,
    /// `trigger.public_status`.
    pub public: bool,
    /// `trigger.token` is set (actions exist).
    pub actions: bool,
}

/// The whole page: the shell around the view (or a request for the token).
pub fn page_html(shell: &Shell<'_>) -> String {
    let view = shell
        .view
        .unwrap_or(r#"<p class="hint">Give the trigger token to see this site's status.</p>"#);
    let controls = if shell.actions {
        r#"<section id="controls" aria-labelledby="controls-h"><h2 id="controls-h">Deploy</h2><form id="deploy-form" class="action" data-action="deploy"><label for="deploy-ref">Branch, tag or commit (empty: the branch head)</label> <input id="deploy-ref" name="ref" autocomplete="off"> <button type="submit" id="deploy-now">Deploy now</button></form></section>"#
    } else {
        r#"<p class="hint">Actions are off: set <code>trigger.token</code> to deploy, roll back and keep snapshots from here.</p>"#
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="color-scheme" content="light dark"><title>rootswap dashboard</title><link rel="stylesheet" href="/dashboard/assets/dashboard.css"></head>
<body data-public="{public}" data-actions="{actions}">
<header><h1>rootswap</h1><form id="token-form"><label for="token">Trigger token</label> <input id="token" type="password" autocomplete="off" required> <button type="submit">Use token</button></form><p id="token-set" hidden>Token given for this tab. <button type="button" id="forget-token">Forget it</button></p></header>
<main>
<div id="message" role="status" aria-live="polite"></div>
{controls}
<section id="running" aria-labelledby="running-h"><h2 id="running-h">Running deploy</h2><p id="run-status">No deploy is running.</p><ol id="steps"></ol><details id="run-log-box"><summary>Log</summary><pre id="run-log"></pre></details></section>
<div id="view" aria-live="off">{view}</div>
</main>
<script src="/dashboard/assets/dashboard.js" defer></script>
</body></html>
"#,
        public = shell.public,
        actions = shell.actions,
    )
}

/// The page's first render as a reader with access sees it: the status
/// gathered, the end of the history read, the HTML written.
pub fn first_render(cfg: &Site) -> Result<String> {
    let view = view_html(&gather(cfg, None)?);
    Ok(page_html(&Shell {
        view: Some(&view),
        public: cfg.trigger.public_status,
        actions: cfg.trigger.token.is_some(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_durations_read_well() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(duration(12), "12 ms");
        assert_eq!(duration(1500), "1.5 s");
        assert_eq!(duration(125_000), "2 min 5 s");
        assert_eq!(human_size(10), "10 B");
        assert_eq!(human_size(2048), "2.0 KiB");
    }

    #[test]
    fn a_github_site_links_its_commits_and_the_changes_of_each_deploy() {
        let dir = tempfile::tempdir().unwrap();
        let webroot = dir.path().join("webroot");
        std::fs::create_dir_all(webroot.join("ROOT")).unwrap();
        std::fs::create_dir_all(webroot.join("ROOT_2026.01.01-10.00.00")).unwrap();
        std::os::unix::fs::symlink("ROOT", webroot.join("current")).unwrap();
        let cfg = Config::parse(
            &format!(
                "webroot: {}\nsource: {{repo: 'git@github.com:acme/site.git'}}\n",
                webroot.display()
            ),
            &dir.path().join("c.yaml"),
        )
        .unwrap();
        let state = cfg.state_path();
        std::fs::create_dir_all(&state).unwrap();
        let (a, b) = ("a".repeat(40), "b".repeat(40));
        for (i, (prev, commit, result)) in [(None, &a, "success"), (Some(&a), &b, "failed")]
            .into_iter()
            .enumerate()
        {
            let rec = Record {
                id: format!("d{i}"),
                started: "2026-01-01T10:00:00+00:00".into(),
                finished: "2026-01-01T10:00:01+00:00".into(),
                trigger: "webhook".into(),
                result: result.into(),
                commit: Some(commit.clone()),
                previous_commit: prev.cloned(),
                snapshot: None,
                evicted: Vec::new(),
                error: (result == "failed").then(|| "hook <build> failed".into()),
                warnings: Vec::new(),
                steps: vec![crate::history::StepTiming {
                    step: "fetch".into(),
                    ms: 12,
                    passes: Vec::new(),
                }],
                duration_ms: 12,
                fleet_id: None,
            };
            crate::history::append(&state, &rec).unwrap();
        }
        let site = Site::open(&cfg).unwrap();
        let html = view_html(&gather(&site, None).unwrap());
        assert!(
            html.contains(&format!("https://github.com/acme/site/compare/{a}...{b}")),
            "{html}"
        );
        assert!(html.contains(&format!("https://github.com/acme/site/commit/{b}")));
        assert!(html.contains("hook &lt;build&gt; failed"), "escaped error");
        assert!(html.contains("✗</span> failed"), "the result in words");
        let newest = html.find(r#"data-id="d1""#).unwrap();
        assert!(
            newest < html.find(r#"data-id="d0""#).unwrap(),
            "newest first"
        );
        assert!(html.contains("ROOT_2026.01.01-10.00.00") && html.contains("evictable"));
        assert!(html.contains("<rect"), "the chart has bars");
    }

    #[test]
    fn results_are_said_in_words() {
        assert!(result_badge("success").contains("success"));
        assert!(result_badge("failed").contains("failed"));
        assert!(result_badge("rolled-back").contains("rolled back"));
        assert!(result_badge("<x>").contains("&lt;x&gt;"));
    }
}
