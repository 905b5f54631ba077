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
    let rec = &redacted(rec);
    let mut line = serde_json::to_vec(rec).context("cannot encode history record")?;
    line.push(b'\n');
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.write_all(&line)
        .with_context(|| format!("cannot append to {}", path.display()))?;
    f.sync_data()
        .with_context(|| format!("cannot fsync {}", path.display()))?;
    Ok(())
}

/// `rec` with credentials in URLs masked in its error and warnings (on
/// writing, and again on reading for records older than the masking).
fn redacted(rec: &Record) -> Record {
    let mask = |s: &String| crate::redact::text(s).into_owned();
    Record {
        error: rec.error.as_ref().map(mask),
        warnings: rec.warnings.iter().map(mask).collect(),
        ..rec.clone()
    }
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
        .map(|r| redacted(&r))
        .collect())
}

/// Size of the blocks [`read_last`] reads, from the end of the file backwards.
const TAIL_BLOCK: u64 = 64 * 1024;

/// Reads the last `n` records, oldest first, reading `history.jsonl` from its
/// end backwards in blocks: the cost follows `n`, not the history's length.
/// Unreadable lines are skipped, as in [`read`].
pub fn read_last(state: &Path, n: usize) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    if n == 0 {
        return Ok(out);
    }
    for_each_from_end(state, |r| {
        out.push(r);
        out.len() < n
    })?;
    out.reverse();
    Ok(out)
}

/// The newest record for which `pred` holds, looking back from the end of the
/// history (stops at the first match).
pub fn find_last(state: &Path, mut pred: impl FnMut(&Record) -> bool) -> Result<Option<Record>> {
    let mut found = None;
    for_each_from_end(state, |r| {
        if pred(&r) {
            found = Some(r);
            return false;
        }
        true
    })?;
    Ok(found)
}

/// Calls `f` with each record, newest first, until it returns false.
fn for_each_from_end(state: &Path, mut f: impl FnMut(Record) -> bool) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let path = state.join("history.jsonl");
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let mut end = file
        .seek(SeekFrom::End(0))
        .with_context(|| format!("cannot seek in {}", path.display()))?;
    // Bytes after the last newline seen so far (the start of a line whose
    // beginning is in an earlier block).
    let mut carry: Vec<u8> = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(TAIL_BLOCK);
        let mut block = vec![0; (end - start) as usize];
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(&mut block))
            .with_context(|| format!("cannot read {}", path.display()))?;
        block.extend_from_slice(&carry);
        // Every complete line of the block, last first; the part before the
        // first newline may continue in the previous block.
        let whole_from = if start == 0 {
            0
        } else {
            match block.iter().position(|b| *b == b'\n') {
                Some(i) => i + 1,
                None => {
                    // One line longer than the block: keep reading backwards.
                    carry = block;
                    end = start;
                    continue;
                }
            }
        };
        for line in block[whole_from..].rsplit(|b| *b == b'\n') {
            if let Ok(r) = serde_json::from_slice::<Record>(line) {
                // A history written before masking existed may hold secrets.
                if !f(redacted(&r)) {
                    return Ok(());
                }
            }
        }
        block.truncate(whole_from.saturating_sub(1));
        carry = block;
        end = start;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize, pad: usize) -> Record {
        Record {
            id: format!("d{i}"),
            started: "2026-01-01T00:00:00+00:00".into(),
            finished: "2026-01-01T00:00:01+00:00".into(),
            trigger: "manual".into(),
            result: if i % 3 == 0 { "failed" } else { "success" }.into(),
            commit: Some(format!("{i:040}")),
            previous_commit: None,
            snapshot: None,
            evicted: Vec::new(),
            error: Some("x".repeat(pad)),
            warnings: Vec::new(),
            steps: Vec::new(),
            duration_ms: i as u64,
            fleet_id: None,
        }
    }

    #[test]
    fn the_tail_matches_the_whole_file_across_block_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_last(dir.path(), 5).unwrap().is_empty(), "no file");
        // Lines of varying length, some longer than a block.
        for i in 0..300 {
            let pad = if i % 50 == 7 { 70_000 } else { (i * 37) % 900 };
            append(dir.path(), &rec(i, pad)).unwrap();
        }
        // A torn last line (a crash mid-append) is skipped.
        let p = dir.path().join("history.jsonl");
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"id\":\"torn").unwrap();
        let all = read(dir.path()).unwrap();
        assert_eq!(all.len(), 300);
        for n in [0, 1, 2, 49, 50, 299, 300, 1000] {
            let tail = read_last(dir.path(), n).unwrap();
            let want: Vec<_> = all[all.len() - n.min(300)..]
                .iter()
                .map(|r| &r.id)
                .collect();
            let got: Vec<_> = tail.iter().map(|r| &r.id).collect();
            assert_eq!(got, want, "n = {n}");
        }
        let failed = find_last(dir.path(), |r| r.result == "failed")
            .unwrap()
            .unwrap();
        assert_eq!(failed.id, "d297");
        let first = find_last(dir.path(), |r| r.id == "d0").unwrap().unwrap();
        assert_eq!(first.duration_ms, 0);
        assert!(find_last(dir.path(), |r| r.id == "nope").unwrap().is_none());
    }
}
