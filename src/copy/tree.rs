//! Copying a tree into a new directory, and bringing an existing copy up to
//! date.

use std::path::Path;
use std::sync::atomic::Ordering;

use anyhow::{anyhow, Context, Result};

use super::options::{pool, CopyOptions};
use super::remove::remove_tree_in_pool;
use super::stats::CopyStats;
use super::walk::Walk;

/// Copies the tree at `src` into `dst`, which must not exist. On failure the
/// partial `dst` is removed and the error names the path and the operation.
pub fn copy_tree(src: &Path, dst: &Path, opts: &CopyOptions) -> Result<CopyStats> {
    let meta = std::fs::symlink_metadata(src)
        .with_context(|| format!("copy: cannot stat {}", src.display()))?;
    if !meta.is_dir() {
        return Err(anyhow!("copy: {} is not a directory", src.display()));
    }
    let pool = pool(opts)?;
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dst)
            .with_context(|| format!("copy: cannot create directory {}", dst.display()))?;
    }
    let res = Walk::new(src, dst, "copy").and_then(|w| {
        w.counters.dirs.fetch_add(1, Ordering::Relaxed);
        pool.install(|| w.run(false))?;
        Ok(w.counters.stats())
    });
    if res.is_err() {
        let _ = pool.install(|| remove_tree_in_pool(dst));
    }
    res
}

/// Makes `dst` identical to `src` (types, contents, modes, mtimes, owners,
/// link targets), touching only what differs. `dst` must be a directory.
pub fn sync_tree(src: &Path, dst: &Path, opts: &CopyOptions) -> Result<CopyStats> {
    let meta = std::fs::symlink_metadata(src)
        .with_context(|| format!("sync: cannot stat {}", src.display()))?;
    if !meta.is_dir() {
        return Err(anyhow!("sync: {} is not a directory", src.display()));
    }
    let pool = pool(opts)?;
    let w = Walk::new(src, dst, "sync")?;
    pool.install(|| w.run(true))?;
    Ok(w.counters.stats())
}
