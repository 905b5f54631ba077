//! `rootswap doctor`: checks what would cause downtime or stale code, each
//! with ✓ or ✗ and the fix. The exit code is non-zero when a ✗ would cause
//! downtime or stale code (other ✗ are worth fixing but do not).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::config::{Config, Drain};
use crate::layout::{Layout, LinkState};
use crate::{drain, nginx, opcache};

/// `rootswap doctor` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Check this nginx configuration file (its includes are followed) instead of `nginx -T`.
    #[arg(long, value_name = "FILE")]
    pub nginx_conf: Option<PathBuf>,
}

/// One check's result.
#[derive(Debug, Clone)]
pub struct Check {
    /// Passed.
    pub ok: bool,
    /// A failure here causes downtime or stale code (sets the exit code).
    pub fatal: bool,
    /// What was found.
    pub what: String,
    /// How to fix it (failures only).
    pub fix: Option<String>,
}

impl Check {
    fn pass(what: impl Into<String>) -> Check {
        Check {
            ok: true,
            fatal: false,
            what: what.into(),
            fix: None,
        }
    }
    fn fail(fatal: bool, what: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            ok: false,
            fatal,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Runs every check.
pub fn checks(cfg: &Config, args: &Args) -> Vec<Check> {
    let layout = Layout::from_config(cfg);
    let mut out = vec![check_link(&layout)];
    out.push(check_same_fs(&layout));
    out.push(check_space(&layout));
    out.extend(check_state_dir(&layout));
    out.extend(check_served_tree(cfg, &layout));
    out.extend(check_shared(cfg, &layout));
    out.extend(check_external_links(cfg, &layout));
    out.extend(check_php(cfg));
    out.extend(check_nginx(cfg, args));
    out.extend(check_cron(&layout));
    out
}

/// Cron jobs that run PHP from ROOT's path run half-written code while a
/// deploy rewrites ROOT (see [`crate::cron`]).
fn check_cron(layout: &Layout) -> Vec<Check> {
    let found = crate::cron::find(&layout.root());
    if found.is_empty() {
        return vec![Check::pass(format!(
            "no cron job runs PHP from {} directly",
            layout.root().display()
        ))];
    }
    let (root, link) = (layout.root(), layout.link());
    found
        .into_iter()
        .map(|f| {
            Check::fail(
                false,
                format!(
                    "{}: `{}` runs PHP from ROOT, which is half-written while a deploy runs",
                    f.source, f.line
                ),
                format!(
                    "address the site through the link, which always points at a complete version: \
                     replace {} with {} in that line",
                    root.display(),
                    link.display()
                ),
            )
        })
        .collect()
}

/// Runs `rootswap doctor`.
pub fn command(cfg: &Config, args: &Args) -> Result<ExitCode> {
    let all = checks(cfg, args);
    let mut fatal = 0;
    let mut other = 0;
    for c in &all {
        println!("{} {}", if c.ok { "✓" } else { "✗" }, c.what);
        if let Some(f) = &c.fix {
            for l in f.lines() {
                println!("    fix: {l}");
            }
        }
        if !c.ok {
            if c.fatal {
                fatal += 1;
            } else {
                other += 1;
            }
        }
    }
    println!();
    if fatal > 0 {
        println!("{fatal} problem(s) that cause downtime or stale code, {other} other");
        Ok(ExitCode::FAILURE)
    } else if other > 0 {
        println!("no problem that causes downtime or stale code; {other} other");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("all checks passed");
        Ok(ExitCode::SUCCESS)
    }
}

fn check_link(layout: &Layout) -> Check {
    let link = layout.link();
    match layout.link_state() {
        Ok(LinkState::Symlink(t)) => {
            let p = Path::new(&t);
            let bare = p.components().count() == 1 && !t.contains('/');
            let target = layout.webroot.join(p);
            // An absolute link to an entry of the webroot is what deploy
            // adopts (Layout::live_name) and rewrites by name at its switch.
            let adopted = (!bare)
                .then(|| layout.live_name().ok().flatten())
                .flatten()
                .filter(|n| !n.contains('/') && layout.webroot.join(n).is_dir());
            if let Ok(Some(foreign)) = layout.foreign_link() {
                Check::fail(
                    true,
                    format!("link {} -> {t}: a tree outside the webroot, which a deploy would stop serving", link.display()),
                    layout.foreign_link_advice(&foreign),
                )
            } else if let Some(name) = adopted {
                Check::pass(format!(
                    "link {} -> {t}: an absolute link to {name} in the webroot; deploys accept it and point the link at {name} by name at their next switch",
                    link.display()
                ))
            } else if !bare {
                Check::fail(
                    true,
                    format!("link {} -> {t}: not a name inside the webroot", link.display()),
                    format!("point it at ROOT by name: run `rootswap deploy`, or ln -s {} tmp && mv -T tmp {}", layout.root_name, link.display()),
                )
            } else if !target.is_dir() {
                Check::fail(true, format!("link {} -> {t}: the target does not exist (every request fails)", link.display()), "run `rootswap deploy` to check out the site into ROOT and point the link at it")
            } else {
                Check::pass(format!(
                    "link {} -> {t} is a symlink into the webroot",
                    link.display()
                ))
            }
        }
        Ok(LinkState::Missing) => Check::fail(
            true,
            format!("link {} does not exist yet", link.display()),
            "run `rootswap deploy`: the first deploy creates it",
        ),
        Ok(LinkState::NotALink) => Check::fail(
            true,
            format!(
                "{} is a real directory, not a symlink: it cannot be switched atomically",
                link.display()
            ),
            format!(
                "mv {} {} and run `rootswap deploy` (it creates the link)",
                link.display(),
                layout.root().display()
            ),
        ),
        Err(e) => Check::fail(
            true,
            format!("cannot read link {}: {e:#}", link.display()),
            "check the webroot's permissions",
        ),
    }
}

fn check_same_fs(layout: &Layout) -> Check {
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    let Some(web) = dev(&layout.webroot) else {
        return Check::fail(
            true,
            format!("webroot {} cannot be read", layout.webroot.display()),
            "create it or fix `webroot`",
        );
    };
    let mut others: Vec<String> = Vec::new();
    let mut dirs = vec![layout.root()];
    if let Ok(snaps) = layout.snapshots() {
        dirs.extend(snaps.into_iter().map(|s| s.path));
    }
    for d in &dirs {
        if let Some(x) = dev(d) {
            if x != web {
                others.push(d.display().to_string());
            }
        }
    }
    if others.is_empty() {
        Check::pass(format!(
            "ROOT and its {} snapshot(s) are on the webroot's filesystem",
            dirs.len().saturating_sub(1)
        ))
    } else {
        Check::fail(
            false,
            format!("on another filesystem than the webroot: {}", others.join(", ")),
            "keep ROOT and its snapshots as plain directories in the webroot (no mount points): renames and recycling need one filesystem",
        )
    }
}

/// The state dir holds the history, the Git cache and the lock: rootswap's
/// alone (0700). A deploy tightens a loose one; doctor says so beforehand.
fn check_state_dir(layout: &Layout) -> Option<Check> {
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::symlink_metadata(&layout.state).ok()?;
    let mode = m.permissions().mode() & 0o7777;
    Some(if mode & 0o077 == 0 {
        Check::pass(format!(
            "state dir {} is private ({mode:04o})",
            layout.state.display()
        ))
    } else {
        Check::fail(
            false,
            format!(
                "state dir {} is {mode:04o}: other local users can read the history and the Git cache",
                layout.state.display()
            ),
            format!(
                "run `chmod -R go-rwx {}` (the next deploy does it too)",
                layout.state.display()
            ),
        )
    })
}

fn tree_size(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

fn check_space(layout: &Layout) -> Check {
    let root = layout.root();
    if !root.is_dir() {
        return Check::pass("ROOT does not exist yet: no snapshot to make room for");
    }
    let need = tree_size(&root);
    let margin = (need / 10).max(64 << 20);
    match rustix::fs::statvfs(&layout.webroot) {
        Ok(st) => {
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            let mib = |b: u64| b / (1 << 20);
            if free >= need + margin {
                Check::pass(format!(
                    "{} MiB free, a snapshot of ROOT needs {} MiB (+{} MiB margin)",
                    mib(free),
                    mib(need),
                    mib(margin)
                ))
            } else {
                Check::fail(
                    false,
                    format!("only {} MiB free; a snapshot of ROOT needs {} MiB (+{} MiB margin): the next deploy fails (the site stays up)", mib(free), mib(need), mib(margin)),
                    "free space on the webroot's filesystem, or remove kept snapshots: rootswap snapshots list",
                )
            }
        }
        Err(e) => Check::fail(
            false,
            format!(
                "cannot read free space of {}: {e}",
                layout.webroot.display()
            ),
            "check the webroot",
        ),
    }
}

/// `user_content.shared`: each directory linked (or linkable by the next
/// deploy), and owned like ROOT so that php-fpm can write where it could before.
fn check_shared(cfg: &Config, layout: &Layout) -> Vec<Check> {
    let shared = match crate::shared::Shared::from_config(cfg) {
        Ok(s) => s,
        Err(e) => {
            return vec![Check::fail(
                true,
                format!("{e:#}"),
                "fix `user_content.shared` in the config",
            )]
        }
    };
    let root = layout.root();
    let root_owner = std::fs::metadata(&root).map(|m| (m.uid(), m.gid())).ok();
    let mut out = Vec::new();
    for p in shared.paths() {
        let at = root.join(p);
        let store = shared.store(p);
        let shown = p.display();
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&at).unwrap_or_default();
                if target != shared.target(p) {
                    out.push(Check::fail(
                        false,
                        format!("shared directory {shown}: ROOT's link points at {}, not {}", target.display(), store.display()),
                        "deploy again: the deploy repoints it",
                    ));
                    continue;
                }
                let owner = std::fs::metadata(&store).map(|m| (m.uid(), m.gid())).ok();
                match (owner, root_owner) {
                    (None, _) => out.push(Check::fail(
                        true,
                        format!("shared directory {shown}: {} is missing; requests writing there fail", store.display()),
                        format!("mkdir -p {} (owned by the user php-fpm runs as), or deploy again", store.display()),
                    )),
                    (Some(o), Some(r)) if o != r => out.push(Check::fail(
                        false,
                        format!("shared directory {shown}: {} is owned by {}:{}, ROOT by {}:{}", store.display(), o.0, o.1, r.0, r.1),
                        format!("if php-fpm writes uploads as ROOT's owner: chown -R {}:{} {}", r.0, r.1, store.display()),
                    )),
                    _ => out.push(Check::pass(format!("shared directory {shown} -> {}", store.display()))),
                }
            }
            Ok(m) if m.is_dir() => out.push(Check::pass(format!(
                "shared directory {shown} is still a directory in ROOT: the next deploy moves it to {} and links it",
                store.display()
            ))),
            Ok(_) => out.push(Check::fail(
                true,
                format!("shared directory {shown}: {} is a file; deploys refuse to start", at.display()),
                "move the file away or remove the path from `user_content.shared`",
            )),
            Err(_) => out.push(Check::pass(format!(
                "shared directory {shown}: the next deploy creates {} and links it",
                store.display()
            ))),
        }
    }
    out
}

/// Symlinks in ROOT whose target leaves ROOT (deployed as Git has them, see
/// `source.external_symlinks`), and which of them nginx serves (under `public`).
fn check_external_links(cfg: &Config, layout: &Layout) -> Vec<Check> {
    let root = layout.root();
    if !root.is_dir() {
        return Vec::new();
    }
    let shared: Vec<PathBuf> = cfg
        .user_content
        .shared
        .iter()
        .map(|p| PathBuf::from(p.trim_end_matches('/')))
        .collect();
    let public = Path::new(cfg.public.trim_matches('/'));
    let all_public = public.as_os_str().is_empty() || public == Path::new(".");
    let (mut served, mut other) = (Vec::new(), Vec::new());
    for e in walkdir::WalkDir::new(&root)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.path_is_symlink())
    {
        let Ok(rel) = e.path().strip_prefix(&root) else {
            continue;
        };
        if shared.iter().any(|s| s == rel) {
            continue;
        }
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        if crate::source::link_stays_inside(rel, &target) {
            continue;
        }
        let dangling = if e.path().exists() { "" } else { " (dangling)" };
        let text = format!("{} -> {}{dangling}", rel.display(), target.display());
        if all_public || rel.starts_with(public) {
            served.push(text);
        } else {
            other.push(text);
        }
    }
    let mut out = Vec::new();
    if !other.is_empty() {
        out.push(Check::pass(format!(
            "{} symlink(s) in ROOT point outside it, not under the public directory `{}`: {}",
            other.len(),
            cfg.public,
            some(&other)
        )));
    }
    if !served.is_empty() {
        out.push(Check::fail(
            false,
            format!(
                "{} symlink(s) under the public directory `{}` point outside ROOT, so nginx serves what they point at: {}",
                served.len(),
                cfg.public,
                some(&served)
            ),
            "check that each target may be downloaded (nginx follows symlinks unless `disable_symlinks` is set), or move the link out of the public directory; `source.external_symlinks: refuse` makes deploys refuse such links",
        ));
    }
    out
}

/// At most 20 items, comma-separated, then how many more.
fn some(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(20)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > 20 {
        text.push_str(&format!(" and {} more", items.len() - 20));
    }
    text
}

fn check_served_tree(cfg: &Config, layout: &Layout) -> Vec<Check> {
    let mut out = Vec::new();
    let public = cfg.public.trim_matches('/');
    let served = if public.is_empty() || public == "." {
        layout.root()
    } else {
        layout.root().join(public)
    };
    let served_real = served.canonicalize().unwrap_or(served.clone());
    let state_real = layout.state.canonicalize().unwrap_or(layout.state.clone());
    let script_real = opcache::script_dir(cfg)
        .canonicalize()
        .unwrap_or_else(|_| opcache::script_dir(cfg));
    if state_real.starts_with(&served_real) || script_real.starts_with(&served_real) {
        out.push(Check::fail(
            false,
            format!("the state dir {} or the OPcache script dir {} is inside the served tree {}", state_real.display(), script_real.display(), served_real.display()),
            "set `state_dir` (and `opcache.script_dir`) to a directory outside ROOT, e.g. the default .rootswap in the webroot",
        ));
    } else {
        out.push(Check::pass(format!(
            "the state dir {} is outside the served tree {}",
            state_real.display(),
            served.display()
        )));
    }
    for w in crate::hooks::exposed_credentials(&layout.root(), &cfg.public) {
        out.push(Check::fail(
            false,
            w,
            "rm it; set `hooks.env: {COMPOSER_AUTH: ${COMPOSER_AUTH}}` and export COMPOSER_AUTH for the service",
        ));
    }
    if served.is_dir() {
        let git = walkdir::WalkDir::new(&served)
            .into_iter()
            .filter_entry(|e| e.file_type().is_dir() || e.file_name() == ".git")
            .filter_map(|e| e.ok())
            .find(|e| e.file_name() == ".git");
        match git {
            Some(g) => out.push(Check::fail(
                false,
                format!("{} is in the served tree: the source and its history can be downloaded", g.path().display()),
                format!("remove it (rootswap never needs it: its repository is in the state dir), and deny dot files in nginx (`rootswap nginx` does): rm -rf {}", g.path().display()),
            )),
            None => out.push(Check::pass("no .git in the served tree")),
        }
    }
    out
}

fn check_php(cfg: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    let ep = match opcache::locate(cfg) {
        Ok(opcache::Located::Configured(ep)) => ep,
        Ok(opcache::Located::Found(ep, how)) => {
            out.push(Check::pass(format!(
                "opcache.fastcgi is not set; php-fpm found at {ep} ({how}): deploys clear its OPcache there"
            )));
            ep
        }
        Ok(opcache::Located::NotFound(why)) => {
            out.push(Check::fail(
                true,
                format!("opcache.fastcgi is not set and {why}: rootswap cannot clear php-fpm's OPcache, and ROOT's old code stays cached after a deploy"),
                "set opcache.fastcgi to php-fpm's address in rootswap.yaml, e.g. unix:/run/php/php8.2-fpm.sock (the fastcgi_pass of your nginx site)",
            ));
            return out;
        }
        Err(e) => {
            out.push(Check::fail(
                true,
                format!("opcache.fastcgi: {e:#}"),
                "write unix:/path/to/php-fpm.sock or tcp:127.0.0.1:9000",
            ));
            return out;
        }
    };
    let a = match opcache::run(&ep, &opcache::script_dir(cfg), &[], false) {
        Ok(a) => a,
        Err(e) => {
            out.push(Check::fail(true, format!("php-fpm at {ep} did not run rootswap's OPcache script: {e:#}"), "check that php-fpm runs and listens there, and that its pool user can read opcache.script_dir (default: the webroot)"));
            return out;
        }
    };
    out.push(Check::pass(format!(
        "php-fpm at {ep} answers FastCGI (PHP {}, {}{}) and can read rootswap's script in {}",
        a.php,
        a.sapi,
        a.user
            .as_deref()
            .map(|u| format!(", user {u}"))
            .unwrap_or_default(),
        opcache::script_dir(cfg).display()
    )));
    let vt = a.ini("opcache.validate_timestamps");
    let freq = a.ini("opcache.revalidate_freq");
    let settings = format!(
        "opcache.enable={} validate_timestamps={vt} revalidate_freq={freq}",
        a.ini("opcache.enable")
    );
    if !a.cache_on() {
        out.push(Check::pass(format!("OPcache is off in php-fpm ({settings}): nothing can be served stale, but PHP compiles every file on every request")));
    } else if opcache::ini_true(vt) {
        out.push(Check::pass(format!(
            "OPcache: {settings}: php-fpm re-checks each file at most every {freq} s, which alone serves old code and mixes versions for that long; rootswap's reset before and after the switch back covers it (validate_timestamps=0 is faster and safe with rootswap)"
        )));
    } else {
        out.push(Check::pass(format!("OPcache: {settings}: opcache.validate_timestamps is 0, so php-fpm serves stale code until its cache is reset (guaranteed without a reset); rootswap resets it over FastCGI at {ep} before and after the switch back")));
    }
    let restrict = a.ini("opcache.restrict_api");
    if a.cache_on() && !restrict.is_empty() && !opcache::script_dir(cfg).starts_with(restrict) {
        out.push(Check::fail(
            true,
            format!("opcache.restrict_api={restrict}: rootswap's script in {} may not call opcache_reset()", opcache::script_dir(cfg).display()),
            format!("set opcache.script_dir to a directory under {restrict} that is not web-reachable"),
        ));
    }
    if cfg.drain == Drain::Auto {
        match cfg.opcache.status_path.as_deref() {
            Some(p) => match drain::fpm_status(&ep, p, opcache::TIMEOUT) {
                Ok(st) => out.push(Check::pass(format!("drain: auto reads php-fpm's status page {p} (pool {}, {} workers)", st.pool, st.processes.len()))),
                Err(e) => out.push(Check::fail(false, format!("drain: auto cannot read the status page: {e:#}; it waits drain_max instead"), format!("set `pm.status_path = {p}` in the php-fpm pool"))),
            },
            None => out.push(Check::fail(false, "drain: auto without opcache.status_path: it waits drain_max every time", "set `pm.status_path = /fpm-status` in the pool and `opcache.status_path: /fpm-status` in rootswap.yaml")),
        }
    }
    out
}

// ---------------------------------------------------------------- nginx

/// One nginx directive, with its block if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Name, e.g. `fastcgi_param`.
    pub name: String,
    /// Arguments, unquoted.
    pub args: Vec<String>,
    /// Contents of `{ … }`.
    pub block: Option<Vec<Directive>>,
}

fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    let flush = |cur: &mut String, out: &mut Vec<String>| {
        if !cur.is_empty() {
            out.push(std::mem::take(cur));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' if cur.is_empty() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' if cur.is_empty() => {
                let q = c;
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        if let Some(n) = chars.next() {
                            s.push(n);
                        }
                    } else if c == q {
                        break;
                    } else {
                        s.push(c);
                    }
                }
                // Mark quoted tokens so `;` or `{` inside quotes stay words.
                out.push(format!("\u{0}{s}"));
            }
            '{' | '}' | ';' => {
                flush(&mut cur, &mut out);
                out.push(c.to_string());
            }
            c if c.is_whitespace() => flush(&mut cur, &mut out),
            c => cur.push(c),
        }
    }
    flush(&mut cur, &mut out);
    out
}

fn parse_tokens(tokens: &[String], i: &mut usize) -> Result<Vec<Directive>> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    while *i < tokens.len() {
        let t = &tokens[*i];
        *i += 1;
        match t.as_str() {
            ";" => {
                if !words.is_empty() {
                    let name = words.remove(0);
                    out.push(Directive {
                        name,
                        args: std::mem::take(&mut words),
                        block: None,
                    });
                }
            }
            "{" => {
                let block = parse_tokens(tokens, i)?;
                let name = if words.is_empty() {
                    String::new()
                } else {
                    words.remove(0)
                };
                out.push(Directive {
                    name,
                    args: std::mem::take(&mut words),
                    block: Some(block),
                });
            }
            "}" => return Ok(out),
            w => words.push(w.trim_start_matches('\u{0}').to_string()),
        }
    }
    Ok(out)
}

/// Parses nginx configuration text (includes are not followed).
pub fn parse(text: &str) -> Result<Vec<Directive>> {
    let tokens = tokenize(text);
    let mut i = 0;
    parse_tokens(&tokens, &mut i)
}

/// Where included files come from: the disk, or the files of an `nginx -T` dump.
enum Files {
    Disk,
    Dump(HashMap<PathBuf, String>),
}

impl Files {
    /// The text of an included file, or why it cannot be had.
    fn read(&self, p: &Path) -> Result<String, String> {
        match self {
            Files::Disk => std::fs::read_to_string(p).map_err(|e| e.to_string()),
            Files::Dump(m) => m
                .get(p)
                .cloned()
                .ok_or_else(|| "it is not in the output of `nginx -T`".to_string()),
        }
    }

    fn glob(&self, pattern: &Path) -> Vec<PathBuf> {
        let s = pattern.to_string_lossy();
        if !s.contains(['*', '?', '[']) {
            return vec![pattern.to_path_buf()];
        }
        let Ok(g) = globset::Glob::new(&s).map(|g| g.compile_matcher()) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = match self {
            Files::Disk => pattern
                .parent()
                .and_then(|d| std::fs::read_dir(d).ok())
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| g.is_match(p))
                        .collect()
                })
                .unwrap_or_default(),
            Files::Dump(m) => m.keys().filter(|p| g.is_match(p)).cloned().collect(),
        };
        out.sort();
        out
    }
}

/// Directives with their `include`s replaced by the included files' own.
/// An include that cannot be read or parsed is left out and said in `problems`
/// (the checks then cannot see what it holds).
fn expand(
    dirs: Vec<Directive>,
    base: &Path,
    files: &Files,
    depth: usize,
    problems: &mut Vec<String>,
) -> Vec<Directive> {
    let mut out = Vec::new();
    for mut d in dirs {
        if d.name == "include" && d.block.is_none() {
            let Some(arg) = d.args.first() else { continue };
            if depth >= 16 {
                problems.push(format!(
                    "include {arg} not followed: includes nest more than 16 deep"
                ));
                continue;
            }
            let p = Path::new(arg);
            let p = if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            };
            for f in files.glob(&p) {
                match files.read(&f).map(|text| parse(&text)) {
                    Ok(Ok(parsed)) => out.extend(expand(parsed, base, files, depth + 1, problems)),
                    Ok(Err(e)) => {
                        problems.push(format!("cannot parse included file {}: {e:#}", f.display()))
                    }
                    Err(e) => {
                        problems.push(format!("cannot read included file {}: {e}", f.display()))
                    }
                }
            }
            continue;
        }
        if let Some(b) = d.block.take() {
            d.block = Some(expand(b, base, files, depth, problems));
        }
        out.push(d);
    }
    out
}

/// Splits `nginx -T` output into (file, text), the main file first.
pub fn split_dump(dump: &str) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = Vec::new();
    for line in dump.lines() {
        if let Some(rest) = line.strip_prefix("# configuration file ") {
            out.push((
                PathBuf::from(rest.trim_end_matches(':').trim()),
                String::new(),
            ));
        } else if let Some((_, text)) = out.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

/// What nginx sends php-fpm for one PHP location of a server that serves through the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhpLocation {
    /// The server's `listen` values.
    pub listen: Vec<String>,
    /// The location's pattern.
    pub location: String,
    /// The effective root.
    pub root: String,
    /// Last SCRIPT_FILENAME value sent (None: not sent).
    pub script_filename: Option<String>,
    /// Last DOCUMENT_ROOT value sent.
    pub document_root: Option<String>,
}

fn last_param(params: &[Directive], key: &str) -> Option<String> {
    params
        .iter()
        .filter(|d| d.args.first().map(String::as_str) == Some(key))
        .filter_map(|d| d.args.get(1).cloned())
        .next_back()
}

fn walk_locations(
    block: &[Directive],
    inherited_params: &[Directive],
    root: &str,
    listen: &[String],
    label: &str,
    out: &mut Vec<PhpLocation>,
) {
    let own: Vec<Directive> = block
        .iter()
        .filter(|d| d.name == "fastcgi_param")
        .cloned()
        .collect();
    // nginx: a level inherits fastcgi_param only when it defines none itself.
    let params = if own.is_empty() {
        inherited_params.to_vec()
    } else {
        own
    };
    let root = block
        .iter()
        .filter(|d| d.name == "root")
        .filter_map(|d| d.args.first())
        .next_back()
        .map(String::as_str)
        .unwrap_or(root);
    if block.iter().any(|d| d.name == "fastcgi_pass") {
        out.push(PhpLocation {
            listen: listen.to_vec(),
            location: label.to_string(),
            root: root.to_string(),
            script_filename: last_param(&params, "SCRIPT_FILENAME"),
            document_root: last_param(&params, "DOCUMENT_ROOT"),
        });
    }
    for d in block {
        if let (Some(b), true) = (&d.block, d.name == "location" || d.name == "if") {
            walk_locations(
                b,
                &params,
                root,
                listen,
                &format!("{} {}", d.name, d.args.join(" ")),
                out,
            );
        }
    }
}

/// Every PHP location (one with `fastcgi_pass`) of every server, with its effective root and parameters.
pub fn php_locations(conf: &[Directive]) -> Vec<PhpLocation> {
    let mut out = Vec::new();
    for http in conf.iter().filter(|d| d.name == "http") {
        let Some(hb) = &http.block else { continue };
        let http_params: Vec<Directive> = hb
            .iter()
            .filter(|d| d.name == "fastcgi_param")
            .cloned()
            .collect();
        let http_root = hb
            .iter()
            .filter(|d| d.name == "root")
            .filter_map(|d| d.args.first())
            .next_back()
            .cloned()
            .unwrap_or_default();
        for server in hb.iter().filter(|d| d.name == "server") {
            let Some(sb) = &server.block else { continue };
            let listen: Vec<String> = sb
                .iter()
                .filter(|d| d.name == "listen")
                .filter_map(|d| d.args.first().cloned())
                .collect();
            walk_locations(sb, &http_params, &http_root, &listen, "server", &mut out);
        }
    }
    out
}

/// The nginx configuration as doctor read it.
struct NginxConf {
    /// Where it came from (the file, or `nginx -T`).
    source: String,
    /// Its directives, includes followed.
    directives: Vec<Directive>,
    /// Includes that could not be followed, and why.
    problems: Vec<String>,
}

/// Loads the nginx configuration (a file and its includes, or `nginx -T`).
fn load_nginx(args: &Args) -> Result<NginxConf> {
    let mut problems = Vec::new();
    match &args.nginx_conf {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            let base = f.parent().map(Path::to_path_buf).unwrap_or_default();
            let directives = expand(parse(&text)?, &base, &Files::Disk, 0, &mut problems);
            Ok(NginxConf {
                source: f.display().to_string(),
                directives,
                problems,
            })
        }
        None => {
            let out = std::process::Command::new("nginx")
                .arg("-T")
                .output()
                .context("cannot run `nginx -T` (pass --nginx-conf FILE instead)")?;
            if !out.status.success() {
                bail!(
                    "`nginx -T` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let files = split_dump(&String::from_utf8_lossy(&out.stdout));
            let Some((main, text)) = files.first().cloned() else {
                bail!("`nginx -T` printed no configuration")
            };
            let base = main.parent().map(Path::to_path_buf).unwrap_or_default();
            let map = Files::Dump(files.into_iter().collect());
            let directives = expand(parse(&text)?, &base, &map, 0, &mut problems);
            Ok(NginxConf {
                source: "nginx -T".to_string(),
                directives,
                problems,
            })
        }
    }
}

fn check_nginx(cfg: &Config, args: &Args) -> Vec<Check> {
    let NginxConf {
        source,
        directives: conf,
        problems,
    } = match load_nginx(args) {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::fail(
                false,
                format!("nginx configuration not checked: {e:#}"),
                "run doctor where nginx runs (as root for nginx -T), or pass --nginx-conf FILE",
            )]
        }
    };
    let mut out: Vec<Check> = problems
        .iter()
        .map(|p| {
            Check::fail(
                false,
                format!("{source}: {p}; the checks below cannot see what it holds"),
                "make it readable for the user running doctor (run it as root), or pass --nginx-conf FILE",
            )
        })
        .collect();
    out.extend(check_locations(cfg, &source, &conf));
    out
}

/// The `$realpath_root` checks of every PHP location served through the link.
fn check_locations(cfg: &Config, source: &str, conf: &[Directive]) -> Vec<Check> {
    let mut links = vec![cfg.webroot.join(&cfg.link)];
    if let Ok(w) = cfg.webroot.canonicalize() {
        links.push(w.join(&cfg.link));
    }
    let through_link = |root: &str| {
        links
            .iter()
            .any(|l| Path::new(root.trim_end_matches('/')).starts_with(l))
    };
    let locs: Vec<PhpLocation> = php_locations(conf)
        .into_iter()
        .filter(|l| through_link(&l.root))
        .collect();
    let fix_lines =
        "in the PHP location, after `include fastcgi_params;` (or snippets/fastcgi-php.conf):\n\
                     fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;\n\
                     fastcgi_param DOCUMENT_ROOT $realpath_root;\n\
                     (`rootswap nginx` prints a complete server block)";
    if locs.is_empty() {
        return vec![Check::fail(
            true,
            format!("{source}: no server passes PHP to php-fpm with its root under the link {} (nginx must serve {})", links[0].display(), nginx::document_root(cfg).display()),
            format!("set `root {};` in the site's server block; `rootswap nginx` prints one", nginx::document_root(cfg).display()),
        )];
    }
    let mut out = Vec::new();
    for l in locs {
        let place = format!(
            "{source}: server {} {} (root {})",
            l.listen.join(" "),
            l.location,
            l.root
        );
        let sf_ok = l
            .script_filename
            .as_deref()
            .is_some_and(|v| v.starts_with("$realpath_root"));
        let dr_ok = l
            .document_root
            .as_deref()
            .is_some_and(|v| v == "$realpath_root");
        if sf_ok && dr_ok {
            out.push(Check::pass(format!(
                "{place}: SCRIPT_FILENAME and DOCUMENT_ROOT use $realpath_root"
            )));
        } else {
            out.push(Check::fail(
                true,
                format!(
                    "{place}: SCRIPT_FILENAME is {}, DOCUMENT_ROOT is {}: PHP sees the link's path, so OPcache and each worker's realpath cache serve the old tree after a switch, and one request can mix both",
                    l.script_filename.as_deref().unwrap_or("not set"),
                    l.document_root.as_deref().unwrap_or("not set")
                ),
                fix_lines,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
http {
    include mime.types;
    server {
        listen 127.0.0.1:8080;
        root /srv/web/current/public;   # through the link
        location / { try_files $uri $uri/ /index.php$is_args$args; }
        location ~ \.php$ {
            include fastcgi.conf;
            fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;
            fastcgi_param DOCUMENT_ROOT "$realpath_root";
            fastcgi_pass unix:/run/php/php8.2-fpm.sock;
        }
    }
}
"#;

    #[test]
    fn finds_the_last_parameter_sent() {
        let conf = parse(GOOD).unwrap();
        let locs = php_locations(&conf);
        assert_eq!(locs.len(), 1);
        assert_eq!(locs[0].root, "/srv/web/current/public");
        assert_eq!(
            locs[0].script_filename.as_deref(),
            Some("$realpath_root$fastcgi_script_name")
        );
        assert_eq!(locs[0].document_root.as_deref(), Some("$realpath_root"));
        assert_eq!(locs[0].listen, vec!["127.0.0.1:8080"]);
    }

    #[test]
    fn an_include_after_the_realpath_lines_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fastcgi.conf"), "fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\nfastcgi_param DOCUMENT_ROOT $document_root;\n").unwrap();
        let bad = GOOD
            .replace("include fastcgi.conf;\n", "")
            .replace("fastcgi_pass", "include fastcgi.conf;\n fastcgi_pass");
        let conf = expand(
            parse(&bad).unwrap(),
            dir.path(),
            &Files::Disk,
            0,
            &mut Vec::new(),
        );
        let locs = php_locations(&conf);
        assert_eq!(
            locs[0].script_filename.as_deref(),
            Some("$document_root$fastcgi_script_name")
        );
        // And in the right order, the include is overridden.
        let conf = expand(
            parse(GOOD).unwrap(),
            dir.path(),
            &Files::Disk,
            0,
            &mut Vec::new(),
        );
        assert_eq!(
            php_locations(&conf)[0].script_filename.as_deref(),
            Some("$realpath_root$fastcgi_script_name")
        );
    }

    #[test]
    fn params_are_inherited_only_when_the_location_has_none() {
        let text = "http { fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name; server { root /w/current; location ~ \\.php$ { fastcgi_pass x; } } }";
        let locs = php_locations(&parse(text).unwrap());
        assert_eq!(
            locs[0].script_filename.as_deref(),
            Some("$realpath_root$fastcgi_script_name")
        );
        let text = "http { fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name; server { root /w/current; location ~ \\.php$ { fastcgi_param A b; fastcgi_pass x; } } }";
        let locs = php_locations(&parse(text).unwrap());
        assert_eq!(locs[0].script_filename, None);
    }

    #[test]
    fn splits_an_nginx_dump() {
        let dump = "nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\n# configuration file /etc/nginx/nginx.conf:\nhttp { include /etc/nginx/sites-enabled/*; }\n\n# configuration file /etc/nginx/sites-enabled/a:\nserver { root /w/current; location ~ \\.php$ { fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name; fastcgi_param DOCUMENT_ROOT $realpath_root; fastcgi_pass x; } }\n";
        let files = split_dump(dump);
        assert_eq!(files.len(), 2);
        let (main, text) = files[0].clone();
        let map = Files::Dump(files.into_iter().collect());
        let conf = expand(
            parse(&text).unwrap(),
            main.parent().unwrap(),
            &map,
            0,
            &mut Vec::new(),
        );
        let locs = php_locations(&conf);
        assert_eq!(locs.len(), 1);
        assert_eq!(locs[0].document_root.as_deref(), Some("$realpath_root"));
    }

    #[test]
    fn an_include_that_cannot_be_read_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            "http { include missing.conf; include sites/*.conf; server { root /w/current; } }";
        std::fs::create_dir(dir.path().join("sites")).unwrap();
        // A directory where a file is expected: found by the glob, unreadable as a file.
        std::fs::create_dir(dir.path().join("sites/a.conf")).unwrap();
        std::fs::write(dir.path().join("sites/b.conf"), "server { root /w/b; }").unwrap();
        let mut problems = Vec::new();
        let conf = expand(
            parse(text).unwrap(),
            dir.path(),
            &Files::Disk,
            0,
            &mut problems,
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("cannot read included file")
                && problems[0].contains("missing.conf"),
            "{problems:?}"
        );
        assert!(problems[1].contains("sites/a.conf"), "{problems:?}");
        // What could be read is still there.
        let http = conf[0].block.as_ref().unwrap();
        assert_eq!(http.iter().filter(|d| d.name == "server").count(), 2);
        // From an `nginx -T` dump: a file the dump lacks.
        let mut problems = Vec::new();
        let map = Files::Dump(HashMap::new());
        expand(
            parse("include /etc/nginx/x.conf;").unwrap(),
            Path::new("/etc/nginx"),
            &map,
            0,
            &mut problems,
        );
        assert!(
            problems[0].contains("not in the output of `nginx -T`"),
            "{problems:?}"
        );
    }

    #[test]
    fn quoted_words_and_comments() {
        let d = parse("a \"b;c\" 'd e'; # x { ; \n f { g; }").unwrap();
        assert_eq!(d[0].args, vec!["b;c", "d e"]);
        assert_eq!(d[1].name, "f");
        assert_eq!(d[1].block.as_ref().unwrap()[0].name, "g");
    }
}
