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

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::config::{Config, Drain};
use crate::opcache::{self, Endpoint};

/// Poll interval of `drain: auto`.
const POLL: Duration = Duration::from_millis(25);

/// Failures of the status page in a row before `auto` falls back to a fixed wait.
const MAX_STATUS_FAILURES: u32 = 8;

static FALLBACK_SAID: AtomicBool = AtomicBool::new(false);

/// One php-fpm worker as the status page shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct Proc {
    /// Worker pid.
    #[serde(default)]
    pub pid: u64,
    /// `Idle`, `Running`, `Reading headers`, `Finishing`, …
    #[serde(default)]
    pub state: String,
    /// Microseconds the current (or last) request has run.
    #[serde(rename = "request duration", default)]
    pub request_duration: u64,
    /// Request URI.
    #[serde(rename = "request uri", default)]
    pub request_uri: String,
    /// SCRIPT_FILENAME of the current (or last) request.
    #[serde(default)]
    pub script: String,
}

/// php-fpm's status page (`?full&json`), the parts the drain needs.
#[derive(Debug, Clone, Deserialize)]
pub struct FpmStatus {
    /// Pool name.
    #[serde(default)]
    pub pool: String,
    /// Requests waiting in the socket's backlog for a free worker.
    #[serde(rename = "listen queue", default)]
    pub listen_queue: u64,
    /// Workers.
    #[serde(default)]
    pub processes: Vec<Proc>,
}

impl FpmStatus {
    /// Workers busy with a request that may run on one of `trees`: a script
    /// under it, or a request whose script is not known yet. The status
    /// request itself (URI `status_path`) is not counted.
    pub fn busy_on<'a>(&'a self, trees: &[PathBuf], status_path: &str) -> Vec<&'a Proc> {
        self.processes
            .iter()
            .filter(|p| !p.state.eq_ignore_ascii_case("idle"))
            .filter(|p| p.request_uri.split('?').next() != Some(status_path))
            .filter(|p| {
                let script = p.script.trim();
                script.is_empty()
                    || script == "-"
                    || trees.iter().any(|t| Path::new(script).starts_with(t))
            })
            .collect()
    }
}

/// Asks php-fpm's status page over FastCGI.
pub fn fpm_status(ep: &Endpoint, status_path: &str, timeout: Duration) -> Result<FpmStatus> {
    let params = [
        ("REQUEST_METHOD", "GET".to_string()),
        ("SCRIPT_NAME", status_path.to_string()),
        ("SCRIPT_FILENAME", status_path.to_string()),
        ("REQUEST_URI", format!("{status_path}?full&json")),
        ("DOCUMENT_URI", status_path.to_string()),
        ("QUERY_STRING", "full&json".to_string()),
        ("SERVER_SOFTWARE", "rootswap".to_string()),
        ("REMOTE_ADDR", "127.0.0.1".to_string()),
        ("SERVER_NAME", "localhost".to_string()),
        ("CONTENT_LENGTH", "0".to_string()),
    ];
    let r = opcache::request(ep, &params, timeout)?;
    let body = String::from_utf8_lossy(&r.body);
    if r.status != 200 || !body.trim_start().starts_with('{') {
        bail!(
            "php-fpm at {ep} has no status page at {status_path} (HTTP {}): set `pm.status_path = {status_path}` in the pool, or fix `opcache.status_path`",
            r.status
        );
    }
    serde_json::from_str(body.trim())
        .with_context(|| format!("cannot read php-fpm's status page at {status_path}"))
}

/// Waits until no request runs on `tree` any more (see the module doc).
/// Returns a warning for the deploy's log and history when the wait could
/// not be what was asked: the first fallback to a fixed wait, or `drain_max`
/// reached with requests still running.
pub fn wait(cfg: &Config, tree: &Path) -> Option<String> {
    let mut idle = Meanwhile::new(|| Ok(()));
    wait_inner(cfg, tree, &mut idle)
}

/// [`wait`], calling `meanwhile` every [`POLL`] while it waits: a request
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
    let fixed = match cfg.drain {
        Drain::Fixed(d) => Some(d),
        Drain::Auto => None,
    };
    if let Some(d) = fixed {
        if !d.is_zero() {
            m.sleep(d);
        }
        return None;
    }
    let started = Instant::now();
    let deadline = started + cfg.drain_max;
    let source = match (opcache::endpoint(cfg), cfg.opcache.status_path.as_deref()) {
        (Ok(Some(ep)), Some(path)) if !path.trim().is_empty() => Ok((ep, path.trim().to_string())),
        (Err(e), _) => Err(format!("{e:#}")),
        _ => Err("`opcache.fastcgi` and `opcache.status_path` are not both set".to_string()),
    };
    let (ep, status_path) = match source {
        Ok(s) => s,
        Err(why) => return fallback(cfg, deadline, &why, m),
    };
    let mut trees = vec![tree.to_path_buf()];
    if let Ok(real) = tree.canonicalize() {
        if real != tree {
            trees.push(real);
        }
    }
    let mut last_busy: Vec<String> = Vec::new();
    // php-fpm's status page fails now and then under load (HTTP 500/503 while
    // the scoreboard is busy): only several failures in a row mean there is none.
    let mut failures = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match fpm_status(
            &ep,
            &status_path,
            left.clamp(Duration::from_millis(200), opcache::TIMEOUT),
        ) {
            Ok(st) => {
                failures = 0;
                let busy = st.busy_on(&trees, &status_path);
                if busy.is_empty() && st.listen_queue == 0 {
                    tracing::debug!(
                        "drain: {} idle after {:?}",
                        tree.display(),
                        started.elapsed()
                    );
                    return None;
                }
                last_busy = busy
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
                    last_busy.push(format!("{} queued", st.listen_queue));
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

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"pool":"www","process manager":"static","start time":1700000000,"start since":10,
      "accepted conn":12,"listen queue":0,"max listen queue":0,"listen queue len":4096,"idle processes":1,
      "active processes":3,"total processes":4,"max active processes":3,"max children reached":0,"slow requests":0,
      "processes":[
        {"pid":10,"state":"Idle","start time":1,"start since":1,"requests":3,"request duration":300000,"request method":"GET","request uri":"/slow.php","content length":0,"user":"-","script":"/w/ROOT/public/slow.php","last request cpu":0,"last request memory":0},
        {"pid":11,"state":"Running","start time":1,"start since":1,"requests":3,"request duration":120,"request method":"GET","request uri":"/fpm-status?full&json","content length":0,"user":"-","script":"-","last request cpu":0,"last request memory":0},
        {"pid":12,"state":"Running","start time":1,"start since":1,"requests":3,"request duration":200000,"request method":"GET","request uri":"/slow.php","content length":0,"user":"-","script":"/w/ROOT_2026.11.22-10.15.03/public/slow.php","last request cpu":0,"last request memory":0},
        {"pid":13,"state":"Running","start time":1,"start since":1,"requests":3,"request duration":200000,"request method":"GET","request uri":"/slow.php","content length":0,"user":"-","script":"/w/ROOT/public/slow.php","last request cpu":0,"last request memory":0}
      ]}"#;

    #[test]
    fn finds_requests_running_on_a_tree() {
        let st: FpmStatus = serde_json::from_str(SAMPLE).unwrap();
        let busy = st.busy_on(&[PathBuf::from("/w/ROOT")], "/fpm-status");
        assert_eq!(busy.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![13]);
        let busy = st.busy_on(
            &[PathBuf::from("/w/ROOT_2026.11.22-10.15.03")],
            "/fpm-status",
        );
        assert_eq!(busy.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![12]);
        // A path prefix that is not a path component does not match.
        assert!(st
            .busy_on(&[PathBuf::from("/w/ROO")], "/fpm-status")
            .is_empty());
    }

    #[test]
    fn a_request_whose_script_is_not_known_yet_counts() {
        let mut st: FpmStatus = serde_json::from_str(SAMPLE).unwrap();
        st.processes[0].state = "Reading headers".into();
        st.processes[0].script = "-".into();
        st.processes[0].request_uri = "-".into();
        let busy = st.busy_on(&[PathBuf::from("/elsewhere")], "/fpm-status");
        assert_eq!(busy.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![10]);
    }
}
