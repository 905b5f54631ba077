//! Machine-readable (`--json`) forms of what commands report.

use serde_json::{json, Value};

use crate::deploy::Outcome;

/// `rootswap deploy --json`: the deploy's summary, the dry run's file lists,
/// or `up-to-date`. Always an object with a `result` field.
pub fn outcome(o: &Outcome) -> Value {
    let paths = |v: &[std::path::PathBuf]| {
        v.iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    match o {
        Outcome::UpToDate { commit } => json!({ "result": "up-to-date", "commit": commit }),
        Outcome::Deployed(s) => json!({
            "result": "deployed",
            "id": s.id,
            "commit": s.commit,
            "described": s.described,
            "previous_commit": s.previous,
            "snapshot": s.snapshot,
            "recycled": s.recycled,
            "files": { "added": s.files.0, "modified": s.files.1, "deleted": s.files.2 },
            "user_files_copied": s.user_files_copied,
            "user_files_removed": s.user_files_removed,
            "evicted": s.evicted,
            "duration_ms": s.duration.as_millis() as u64,
            "steps": s.steps,
            "warnings": s.warnings,
        }),
        Outcome::DryRun(d) => json!({
            "result": "dry-run",
            "from": d.from,
            "to": d.to,
            "described": d.described,
            "added": paths(&d.added),
            "modified": paths(&d.modified),
            "deleted": paths(&d.deleted),
            "user_files": paths(&d.user_files),
        }),
    }
}
