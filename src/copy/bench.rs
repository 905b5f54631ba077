//! `rootswap bench-copy SRC`: measures the copy engine on the user's own tree.
//!
//! Copies SRC `runs` times into fresh directories of a scratch directory (on
//! the same filesystem as SRC by default, like a snapshot), then measures an
//! incremental snapshot (sync) after no change, after one file changed and
//! after 1 % of the files changed (the changes are made to the copy, which
//! costs the sync the same work as changes to SRC, and SRC is never written),
//! then the removal of each copy. SRC is only read.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::options::CopyOptions;
use super::remove::remove_tree;
use super::tree::{copy_tree, sync_tree};

/// How to benchmark.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Repetitions of each measurement (at least 1).
    pub runs: usize,
    /// Scratch directory (created, then removed); default: beside SRC.
    pub scratch: Option<PathBuf>,
    /// Engine options.
    pub copy: CopyOptions,
}

/// One measured operation.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub what: String,
    /// Wall times of the runs.
    pub times: Vec<Duration>,
    /// Entries the operation handled (for entries/s).
    pub entries: u64,
    /// Bytes copied (for MB/s).
    pub bytes: u64,
}

impl Row {
    /// Median wall time.
    pub fn median(&self) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        t.get(t.len() / 2).copied().unwrap_or_default()
    }
}

/// Results of [`run`].
#[derive(Debug, Clone)]
pub struct Report {
    /// Files, directories and symlinks in SRC.
    pub entries: u64,
    /// Bytes of file content in SRC.
    pub bytes: u64,
    /// The measurements.
    pub rows: Vec<Row>,
    /// Peak resident memory of this process, KiB.
    pub peak_rss_kib: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "tree: {} entries, {:.1} MiB",
            self.entries,
            self.bytes as f64 / (1 << 20) as f64
        )?;
        writeln!(
            f,
            "{:<34} {:>10} {:>10} {:>12} {:>9}",
            "operation", "median s", "min s", "entries/s", "MB/s"
        )?;
        let full = self
            .rows
            .first()
            .map(|r| r.median().as_secs_f64())
            .unwrap_or(0.0);
        for r in &self.rows {
            let med = r.median().as_secs_f64().max(1e-9);
            let min = r
                .times
                .iter()
                .min()
                .copied()
                .unwrap_or_default()
                .as_secs_f64();
            writeln!(
                f,
                "{:<34} {:>10.3} {:>10.3} {:>12.0} {:>9.1}{}",
                r.what,
                med,
                min,
                r.entries as f64 / med,
                r.bytes as f64 / 1e6 / med,
                if r.what.starts_with("incremental") && full > 0.0 {
                    format!("  ({:.0}x faster than full)", full / med)
                } else {
                    String::new()
                }
            )?;
        }
        writeln!(f, "peak RSS: {:.1} MiB", self.peak_rss_kib as f64 / 1024.0)
    }
}

/// Runs the benchmark on `src`.
pub fn run(src: &Path, opts: &BenchOptions) -> Result<Report> {
    let src = src
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", src.display()))?;
    if !src.is_dir() {
        bail!("{} is not a directory", src.display());
    }
    let scratch = match &opts.scratch {
        Some(s) => s.clone(),
        None => {
            let parent = src.parent().unwrap_or(Path::new("/"));
            parent.join(format!(".rootswap-bench-{}", std::process::id()))
        }
    };
    std::fs::create_dir(&scratch)
        .with_context(|| format!("cannot create scratch directory {}", scratch.display()))?;
    let res = measure(&src, &scratch, opts);
    let _ = remove_tree(&scratch, &opts.copy);
    res
}

fn measure(src: &Path, scratch: &Path, opts: &BenchOptions) -> Result<Report> {
    let runs = opts.runs.max(1);
    let (entries, bytes, files) = scan(src);
    let mut full = Row {
        what: "full copy".into(),
        times: Vec::new(),
        entries,
        bytes,
    };
    let mut copies = Vec::new();
    for i in 0..runs {
        let dst = scratch.join(format!("full-{i}"));
        let t = Instant::now();
        copy_tree(src, &dst, &opts.copy)?;
        full.times.push(t.elapsed());
        copies.push(dst);
    }
    let target = &copies[0];
    let mut none = Row {
        what: "incremental, nothing changed".into(),
        times: Vec::new(),
        entries,
        bytes: 0,
    };
    let mut one = Row {
        what: "incremental, 1 file changed".into(),
        times: Vec::new(),
        entries,
        bytes: 0,
    };
    let mut pct = Row {
        what: "incremental, 1% of files changed".into(),
        times: Vec::new(),
        entries,
        bytes: 0,
    };
    for _ in 0..runs {
        let t = Instant::now();
        sync_tree(src, target, &opts.copy)?;
        none.times.push(t.elapsed());
        for (row, n) in [(&mut one, 1usize), (&mut pct, (files.len() / 100).max(1))] {
            let step = (files.len() / n).max(1);
            let mut changed = 0;
            for rel in files.iter().step_by(step).take(n) {
                let p = target.join(rel);
                std::fs::write(&p, b"changed by rootswap bench-copy\n")
                    .with_context(|| format!("cannot write {}", p.display()))?;
                changed += std::fs::metadata(src.join(rel))
                    .map(|m| m.len())
                    .unwrap_or(0);
            }
            let t = Instant::now();
            sync_tree(src, target, &opts.copy)?;
            row.times.push(t.elapsed());
            row.bytes = changed;
        }
    }
    let mut removal = Row {
        what: "removal".into(),
        times: Vec::new(),
        entries,
        bytes: 0,
    };
    for dst in &copies {
        let t = Instant::now();
        let r = remove_tree(dst, &opts.copy)?;
        removal.times.push(t.elapsed());
        if let Some((p, why)) = r.failed.first() {
            bail!("cannot remove {}: {why}", p.display());
        }
    }
    Ok(Report {
        entries,
        bytes,
        rows: vec![full, none, one, pct, removal],
        peak_rss_kib: peak_rss_kib(),
    })
}

/// Entries, bytes and the relative paths of the regular files under `src`.
fn scan(src: &Path) -> (u64, u64, Vec<PathBuf>) {
    let (mut entries, mut bytes, mut files) = (0, 0, Vec::new());
    for e in walkdir::WalkDir::new(src)
        .min_depth(1)
        .into_iter()
        .filter_map(|e| e.ok())
    {
        entries += 1;
        if e.file_type().is_file() {
            if let Ok(m) = e.metadata() {
                bytes += m.len();
                if m.nlink() == 1 {
                    if let Ok(rel) = e.path().strip_prefix(src) {
                        files.push(rel.to_path_buf());
                    }
                }
            }
        }
    }
    (entries, bytes, files)
}

/// Peak resident set size of this process in KiB.
pub fn peak_rss_kib() -> u64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; on failure it stays zeroed.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    ru.ru_maxrss.max(0) as u64
}
