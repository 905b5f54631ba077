//! What the served tree could hand out: the state dir, credentials, a
//! `.git`, symlinks that leave ROOT.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::layout::Layout;
use crate::opcache;

use super::check::Check;

/// The served tree holds neither the state dir, nor credentials, nor a `.git`.
pub(super) fn check_served_tree(cfg: &Config, layout: &Layout) -> Vec<Check> {
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

/// Symlinks in ROOT whose target leaves ROOT (deployed as Git has them, see
/// `source.external_symlinks`), and which of them nginx serves (under `public`).
pub(super) fn check_external_links(cfg: &Config, layout: &Layout) -> Vec<Check> {
    let root = layout.root();
    if !root.is_dir() {
        return Vec::new();
    }
    let (served, other) = links_leaving(cfg, &root);
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

/// The symlinks in `root` (shared directories aside) whose target leaves
/// it, as `link -> target` lines: (under the public directory, elsewhere).
fn links_leaving(cfg: &Config, root: &Path) -> (Vec<String>, Vec<String>) {
    let shared: Vec<PathBuf> = cfg
        .user_content
        .shared
        .iter()
        .map(|p| PathBuf::from(p.trim_end_matches('/')))
        .collect();
    let public = Path::new(cfg.public.trim_matches('/'));
    let all_public = public.as_os_str().is_empty() || public == Path::new(".");
    let (mut served, mut other) = (Vec::new(), Vec::new());
    for e in walkdir::WalkDir::new(root)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.path_is_symlink())
    {
        let Ok(rel) = e.path().strip_prefix(root) else {
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
    (served, other)
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
