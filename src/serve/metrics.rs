//! `GET /metrics`: Prometheus text exposition.
//!
//! Deploy counts are this service's since it started; the last deploy comes
//! from the history (so it includes `rootswap deploy` run by hand); snapshot
//! count and bytes are read from the webroot (sizes cached per snapshot name
//! until the history changes).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;

use anyhow::Result;

use crate::layout::Layout;
use crate::site::Site;

/// Results counted in `rootswap_deploys_total`.
const RESULTS: [&str; 4] = ["success", "failed", "up_to_date", "skipped"];

/// Counters kept by the service.
#[derive(Default)]
pub struct Metrics {
    counts: Mutex<BTreeMap<&'static str, u64>>,
    /// Snapshot sizes by name, valid while the history's last id is `sizes_key`.
    sizes: Mutex<(Option<String>, HashMap<String, u64>)>,
}

impl Metrics {
    /// Counts one deploy with `result` (one of [`RESULTS`]).
    pub fn count(&self, result: &'static str) {
        *lock(&self.counts).entry(result).or_default() += 1;
    }

    /// Renders the exposition (reads the disk: call it off the async threads).
    pub fn render(&self, cfg: &Site, running: bool) -> Result<String> {
        let layout = &cfg.layout;
        let mut out = String::new();
        self.render_counts(&mut out, running);
        let history = crate::history::read(&layout.state)?;
        let last = history.last();
        if let Some(r) = last {
            render_last(&mut out, r);
        }
        self.render_snapshots(&mut out, layout, last.map(|r| r.id.clone()))?;
        Ok(out)
    }

    /// `rootswap_deploys_total` by result and `rootswap_deploy_running`.
    fn render_counts(&self, out: &mut String, running: bool) {
        let counts = lock(&self.counts).clone();
        header(
            out,
            "rootswap_deploys_total",
            "counter",
            "Deploys run by this service since it started, by result.",
        );
        for r in RESULTS {
            let _ = writeln!(
                out,
                "rootswap_deploys_total{{result=\"{r}\"}} {}",
                counts.get(r).copied().unwrap_or(0)
            );
        }
        header(
            out,
            "rootswap_deploy_running",
            "gauge",
            "1 while this service runs a deploy.",
        );
        let _ = writeln!(out, "rootswap_deploy_running {}", u8::from(running));
    }

    /// `rootswap_snapshots` and `rootswap_snapshot_bytes` (sizes cached
    /// while the history's last id is `key`).
    fn render_snapshots(
        &self,
        out: &mut String,
        layout: &Layout,
        key: Option<String>,
    ) -> Result<()> {
        let snaps = if layout.webroot.is_dir() {
            layout.snapshots()?
        } else {
            Vec::new()
        };
        let mut bytes = 0u64;
        {
            let mut cache = lock(&self.sizes);
            if cache.0 != key {
                *cache = (key, HashMap::new());
            }
            for s in &snaps {
                let size = *cache
                    .1
                    .entry(s.name.clone())
                    .or_insert_with(|| crate::snapshots::tree_size(&s.path));
                bytes += size;
            }
        }
        header(
            out,
            "rootswap_snapshots",
            "gauge",
            "Snapshots of ROOT in the webroot (timestamped and kept).",
        );
        let _ = writeln!(out, "rootswap_snapshots {}", snaps.len());
        header(
            out,
            "rootswap_snapshot_bytes",
            "gauge",
            "Total size of the snapshots' files in bytes.",
        );
        let _ = writeln!(out, "rootswap_snapshot_bytes {bytes}");
        Ok(())
    }
}

/// The last deploy's duration, finish time and result (any trigger).
fn render_last(out: &mut String, r: &crate::history::Record) {
    header(
        out,
        "rootswap_last_deploy_duration_seconds",
        "gauge",
        "Duration of the last deploy (any trigger).",
    );
    let _ = writeln!(
        out,
        "rootswap_last_deploy_duration_seconds {:.3}",
        r.duration_ms as f64 / 1000.0
    );
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&r.finished) {
        header(
            out,
            "rootswap_last_deploy_timestamp_seconds",
            "gauge",
            "Unix time the last deploy finished.",
        );
        let _ = writeln!(
            out,
            "rootswap_last_deploy_timestamp_seconds {}",
            t.timestamp()
        );
    }
    header(
        out,
        "rootswap_last_deploy_success",
        "gauge",
        "1 if the last deploy succeeded, 0 if not.",
    );
    let _ = writeln!(
        out,
        "rootswap_last_deploy_success {}",
        u8::from(r.result == "success")
    );
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Locks `m`, also when a panicking holder poisoned it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
