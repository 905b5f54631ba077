//! The copy engine as a command, for benches/compare.sh and for measuring by hand:
//!
//! ```text
//! cargo run --release --example engine -- copy SRC DST     # copy_tree (DST must not exist)
//! cargo run --release --example engine -- sync SRC DST     # sync_tree (incremental snapshot)
//! cargo run --release --example engine -- remove DIR       # remove_tree
//! cargo run --release --example engine -- floor SRC DST    # the floor: same dirs, empty files, links
//! ```
//! `floor` creates the directories, empty files and symlinks of SRC in DST
//! (no contents, no metadata) with the same threads: what any copier must at
//! least do on this filesystem.
//! `ROOTSWAP_COPY_THREADS` sets the thread count (default: the number of cores).
use std::path::Path;
use std::process::ExitCode;

use rootswap::copy::{self, CopyOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = CopyOptions::default();
    if let Some(n) = std::env::var("ROOTSWAP_COPY_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.threads = n;
    }
    let res = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["copy", src, dst] => {
            copy::copy_tree(Path::new(src), Path::new(dst), &opts).map(|s| format!("{s:?}"))
        }
        ["sync", src, dst] => {
            copy::sync_tree(Path::new(src), Path::new(dst), &opts).map(|s| format!("{s:?}"))
        }
        ["floor", src, dst] => {
            floor(Path::new(src), Path::new(dst), opts.threads).map(|n| format!("created {n}"))
        }
        ["remove", dir] => {
            copy::remove_tree(Path::new(dir), &opts).and_then(|r| match r.failed.first() {
                Some((p, why)) => Err(anyhow::anyhow!("{}: {why}", p.display())),
                None => Ok(format!("removed {}", r.removed)),
            })
        }
        _ => {
            eprintln!("usage: engine copy SRC DST | sync SRC DST | remove DIR | floor SRC DST");
            return ExitCode::from(2);
        }
    };
    match res {
        Ok(s) => {
            if std::env::var_os("ROOTSWAP_QUIET").is_none() {
                eprintln!("{s}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn floor(src: &Path, dst: &Path, threads: usize) -> anyhow::Result<u64> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    std::fs::create_dir(dst)?;
    Ok(pool.install(|| floor_dir(src, dst))?)
}

fn floor_dir(src: &Path, dst: &Path) -> std::io::Result<u64> {
    use rayon::prelude::*;
    let entries = std::fs::read_dir(src)?.collect::<Result<Vec<_>, _>>()?;
    entries
        .par_iter()
        .map(|e| {
            let d = dst.join(e.file_name());
            let ft = e.file_type()?;
            if ft.is_dir() {
                std::fs::create_dir(&d)?;
                Ok(1 + floor_dir(&e.path(), &d)?)
            } else if ft.is_symlink() {
                std::os::unix::fs::symlink("x", &d)?;
                Ok(1)
            } else {
                std::fs::File::create_new(&d)?;
                Ok(1)
            }
        })
        .sum()
}
