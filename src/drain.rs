//! The drain: after the link stops pointing at a tree, wait until requests
//! that resolved the old target have finished before that tree is changed
//! or removed.
//!
//! nginx resolves the link once per request (`$realpath_root`), so a request
//! that started on a tree finishes on it; the wait must outlast the slowest
//! such request (docs/zero-downtime.md#draining-requests: without it, 190 torn
//! responses in 50 deploys).
//!
//! `drain: <duration>` waits that long. `drain: auto` asks php-fpm's status
//! page (`pm.status_path`, set as `opcache.status_path`) over FastCGI with
//! `?full&json` which requests run, and returns as soon as no worker runs a
//! script under the tree and php-fpm's listen queue is empty, bounded by
//! `drain_max`. The queue matters: when every worker is busy, a request nginx
//! resolved to the old tree before the switch waits in the socket's backlog
//! and only shows up as running later; an empty queue seen after the switch
//! means every such request has been accepted, and then an idle tree means
//! they have all finished. Without a status page, `auto` falls back to a fixed
//! wait of `drain_max` and says so once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::config::{Config, Drain};
use crate::php_fpm::{self, Endpoint, FpmStatus};

/// Poll interval of `drain: auto`.
const POLL: Duration = Duration::from_millis(25);

/// Failures of the status page in a row before `auto` falls back to a fixed wait.
const MAX_STATUS_FAILURES: u32 = 8;

static FALLBACK_SAID: AtomicBool = AtomicBool::new(false);

/// Waits until no request runs on `tree` any more (see the module doc).
/// Returns a warning for the deploy's log and history when the wait could
/// not be what was asked: the first fallback to a fixed wait, or `drain_max`
/// reached with requests still running.
pub fn wait(cfg: &Config, tree: &Path) -> Option<String> {
    let mut idle = Meanwhile::new(|| Ok(()));
    wait_inner(cfg, tree, &mut idle)
}

/// [`wait`], calling `meanwhile` every `POLL` (25 ms) while it waits: a request
/// still running on the tree traffic just left may write there (a save, an
/// upload), and the deploy carries that write into the tree that serves now
/// as soon as it lands, not once after the drain, so the visitor's next
/// request sees it. The wait always runs to its end: after `meanwhile`
/// fails, it is not called again, and its first error is returned then.
pub fn wait_while(
    cfg: &Config,
    tree: &Path,
    meanwhile: impl FnMut() -> Result<()>,
) -> Result<Option<String>> {
    let mut m = Meanwhile::new(meanwhile);
    let warning = wait_inner(cfg, tree, &mut m);
    m.call();
    match m.error {
        Some(e) => Err(e),
        None => Ok(warning),
    }
}

/// The work done while a drain waits, and its first error.
struct Meanwhile<F> {
    f: F,
    error: Option<anyhow::Error>,
}

impl<F: FnMut() -> Result<()>> Meanwhile<F> {
    fn new(f: F) -> Meanwhile<F> {
        Meanwhile { f, error: None }
    }

    fn call(&mut self) {
        if self.error.is_none() {
            if let Err(e) = (self.f)() {
                self.error = Some(e);
            }
        }
    }

    /// Sleeps `d`, doing the work every [`POLL`] meanwhile.
    fn sleep(&mut self, d: Duration) {
        let end = Instant::now() + d;
        loop {
            self.call();
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(POLL));
        }
    }
}

fn wait_inner<F: FnMut() -> Result<()>>(
    cfg: &Config,
    tree: &Path,
    m: &mut Meanwhile<F>,
) -> Option<String> {
    if let Drain::Fixed(d) = cfg.drain {
        if !d.is_zero() {
            m.sleep(d);
        }
        return None;
    }
    let started = Instant::now();
    let deadline = started + cfg.drain_max;
    let (ep, status_path) = match status_source(cfg) {
        Ok(s) => s,
        Err(why) => return fallback(cfg, deadline, &why, m),
    };
    let trees = tree_names(tree);
    let mut last_busy: Vec<String> = Vec::new();
    // php-fpm's status page fails now and then under load (HTTP 500/503 while
    // the scoreboard is busy): only several failures in a row mean there is none.
    let mut failures = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = left.clamp(Duration::from_millis(200), php_fpm::TIMEOUT);
        match php_fpm::fpm_status(&ep, &status_path, timeout) {
            Ok(st) => {
                failures = 0;
                match still_busy(&st, &trees, &status_path) {
                    None => {
                        tracing::debug!(
                            "drain: {} idle after {:?}",
                            tree.display(),
                            started.elapsed()
                        );
                        return None;
                    }
                    Some(busy) => last_busy = busy,
                }
            }
            Err(e) => {
                failures += 1;
                tracing::debug!("drain: php-fpm's status page failed ({failures} in a row): {e:#}");
                if failures >= MAX_STATUS_FAILURES {
                    return fallback(cfg, deadline, &format!("{e:#}"), m);
                }
            }
        }
        if Instant::now() + POLL >= deadline {
            return Some(format!(
                "drain: requests still ran on {} after drain_max ({}): {}; raise drain_max if requests take longer",
                tree.display(),
                humantime::format_duration(cfg.drain_max),
                last_busy.join(", ")
            ));
        }
        m.sleep(POLL);
    }
}

/// php-fpm's address and status page path for `drain: auto`, or why there
/// are none.
fn status_source(cfg: &Config) -> std::result::Result<(Endpoint, String), String> {
    match (php_fpm::configured(cfg), cfg.opcache.status_path.as_deref()) {
        (Ok(Some(ep)), Some(path)) if !path.trim().is_empty() => Ok((ep, path.trim().to_string())),
        (Err(e), _) => Err(format!("{e:#}")),
        _ => Err("`opcache.fastcgi` and `opcache.status_path` are not both set".to_string()),
    }
}

/// `tree` as PHP may see it: as given, and by its real path.
fn tree_names(tree: &Path) -> Vec<PathBuf> {
    let mut trees = vec![tree.to_path_buf()];
    if let Ok(real) = tree.canonicalize() {
        if real != tree {
            trees.push(real);
        }
    }
    trees
}

/// `None` when no worker runs on `trees` and nothing is queued; else what
/// still runs (and how many wait), for the warning at `drain_max`.
fn still_busy(st: &FpmStatus, trees: &[PathBuf], status_path: &str) -> Option<Vec<String>> {
    let busy = st.busy_on(trees, status_path);
    if busy.is_empty() && st.listen_queue == 0 {
        return None;
    }
    let mut out: Vec<String> = busy
        .iter()
        .map(|p| {
            format!(
                "pid {} {} ({} ms)",
                p.pid,
                p.script,
                p.request_duration / 1000
            )
        })
        .collect();
    if st.listen_queue > 0 {
        out.push(format!("{} queued", st.listen_queue));
    }
    Some(out)
}

fn fallback<F: FnMut() -> Result<()>>(
    cfg: &Config,
    deadline: Instant,
    why: &str,
    m: &mut Meanwhile<F>,
) -> Option<String> {
    let first = !FALLBACK_SAID.swap(true, Ordering::Relaxed);
    let msg = format!(
        "drain: auto cannot ask php-fpm which requests run ({why}); waiting drain_max ({}) instead",
        humantime::format_duration(cfg.drain_max)
    );
    if first {
        tracing::warn!("{msg}");
    }
    m.sleep(deadline.saturating_duration_since(Instant::now()));
    first.then_some(msg)
}
