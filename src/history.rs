//! The deploy history: one JSON line per deploy in `<state>/history.jsonl`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One step of a deploy and how long it took.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepTiming {
    /// Step name (`fetch`, `snapshot`, `switch-to-snapshot`, …).
    pub step: String,
    /// Duration in milliseconds.
    pub ms: u64,
    /// The passes the step is made of (a catch-up, a copy-back pass, a
    /// drain…), with their own durations; `history --json` shows them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passes: Vec<StepTiming>,
}

/// One deploy, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Deploy id (also in every log line of the deploy).
    pub id: String,
    /// Start time, RFC 3339.
    pub started: String,
    /// End time, RFC 3339.
    pub finished: String,
    /// Who asked: `manual`, `schedule`, `trigger`, `webhook`, `recovery`.
    pub trigger: String,
    /// `success`, `failed`, `rolled-back`, `aborted`, `interrupted`.
    pub result: String,
    /// Commit deployed (or attempted).
    pub commit: Option<String>,
    /// Commit that was live before.
    pub previous_commit: Option<String>,
    /// Snapshot that served during the deploy.
    pub snapshot: Option<String>,
    /// Snapshots removed by this deploy.
    #[serde(default)]
    pub evicted: Vec<String>,
    /// Error message when the deploy failed.
    pub error: Option<String>,
    /// Warnings (e.g. an opcache reset that did not happen).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Per-step durations, in order.
    pub steps: Vec<StepTiming>,
    /// Total duration in milliseconds.
    pub duration_ms: u64,
    /// The fleet deploy this node's deploy was part of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_id: Option<String>,
}

/// Appends one record (one line, fsynced).
pub fn append(state: &Path, rec: &Record) -> Result<()> {
    let path = state.join("history.jsonl");
    let mut line = serde_json::to_vec(rec).context("cannot encode history record")?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.write_all(&line)
        .with_context(|| format!("cannot append to {}", path.display()))?;
    f.sync_data()
        .with_context(|| format!("cannot fsync {}", path.display()))?;
    Ok(())
}

/// Reads all records, oldest first; unreadable lines (a torn last line after a crash) are skipped.
pub fn read(state: &Path) -> Result<Vec<Record>> {
    let path = state.join("history.jsonl");
    let Some(text) = crate::fsutil::read_optional(&path)? else {
        return Ok(Vec::new());
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}
