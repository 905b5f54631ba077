//! Criterion benchmarks of the copy engine on a PHP-shaped tree
//! (fixtures/php-tree.py: 30,000 files, 2,000+ directories, vendor/bin links):
//! full copy, incremental snapshot after one changed file and after 1 % of
//! the files changed, removal.
//!
//! `cargo bench --bench copy` (a few minutes). The tree and the copies live
//! under `$ROOTSWAP_BENCH_DIR` (default: the temp dir); point it at a journaled
//! ext4 (see benches/compare.sh, which makes a loop-mounted one) because on an
//! ext4 without journal creating files soon after deleting a big tree is ~9x
//! slower and that is what would be measured. `ROOTSWAP_BENCH_FILES` sets the
//! tree size (default 30000).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use rootswap::copy::{copy_tree, remove_tree, sync_tree, CopyOptions};

fn bench_dir() -> PathBuf {
    let base = std::env::var_os("ROOTSWAP_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    base.join("rootswap-copy-bench")
}

/// The source tree, generated once and reused by later runs.
fn tree() -> PathBuf {
    let files: usize = std::env::var("ROOTSWAP_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let dir = bench_dir();
    let src = dir.join(format!("src-{files}"));
    if !src.join("public/index.php").exists() {
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir_all(&dir).expect("create the bench directory");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/php-tree.py");
        let status = Command::new("python3")
            .arg(&script)
            .arg(&src)
            .args(["--files", &files.to_string()])
            .status()
            .expect("python3 runs fixtures/php-tree.py");
        assert!(status.success(), "fixtures/php-tree.py failed");
    }
    src
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn fresh(dir: &Path, what: &str) -> PathBuf {
    dir.join(format!(
        "{what}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Rewrites `n` PHP files of `src` (new content and mtime).
fn change(src: &Path, files: &[PathBuf], n: usize, round: usize) {
    let step = (files.len() / n.max(1)).max(1);
    for (i, rel) in files
        .iter()
        .skip(round % step)
        .step_by(step)
        .take(n)
        .enumerate()
    {
        std::fs::write(src.join(rel), format!("<?php // changed {round} {i}\n"))
            .expect("rewrite a file");
    }
}

fn php_files(src: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(src)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "php"))
        .filter_map(|e| e.path().strip_prefix(src).ok().map(Path::to_path_buf))
        .collect();
    v.sort();
    v
}

fn benches(c: &mut Criterion) {
    let src = tree();
    let dir = bench_dir();
    let opts = CopyOptions::default();
    let files = php_files(&src);
    let mut g = c.benchmark_group("copy");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(10));

    g.bench_function("full copy", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dst = fresh(&dir, "full");
                let t = Instant::now();
                copy_tree(&src, &dst, &opts).expect("copy");
                total += t.elapsed();
                remove_tree(&dst, &opts).expect("remove");
            }
            total
        })
    });

    let inc = fresh(&dir, "inc");
    copy_tree(&src, &inc, &opts).expect("copy");
    let mut round = 0;
    for (name, n) in [
        ("incremental, 1 file changed", 1),
        (
            "incremental, 1% of files changed",
            (files.len() / 100).max(1),
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    change(&src, &files, n, round);
                    let t = Instant::now();
                    sync_tree(&src, &inc, &opts).expect("sync");
                    total += t.elapsed();
                }
                total
            })
        });
    }
    remove_tree(&inc, &opts).expect("remove");

    g.bench_function("removal", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dst = fresh(&dir, "rm");
                copy_tree(&src, &dst, &opts).expect("copy");
                let t = Instant::now();
                let r = remove_tree(&dst, &opts).expect("remove");
                total += t.elapsed();
                assert!(r.failed.is_empty(), "{:?}", r.failed);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(copy, benches);
criterion_main!(copy);
