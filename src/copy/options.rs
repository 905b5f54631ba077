//! How a copy runs: its threads and their priority.

use anyhow::{Context, Result};

/// How a copy runs.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Nice value (CPU and best-effort I/O priority) for the worker threads.
    pub nice: Option<i32>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            nice: None,
        }
    }
}

pub(super) fn pool(opts: &CopyOptions) -> Result<rayon::ThreadPool> {
    let nice = opts.nice;
    rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.max(1))
        .thread_name(|i| format!("rootswap-copy-{i}"))
        .start_handler(move |_| {
            if let Some(n) = nice {
                lower_priority(n);
            }
        })
        .build()
        .context("cannot start copy threads")
}

/// Lowers the calling thread's CPU priority and moves its I/O to best-effort, lowest level.
fn lower_priority(nice: i32) {
    // SAFETY: setpriority/ioprio_set act on the calling thread (who = 0); no memory is passed.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, nice);
        const IOPRIO_WHO_PROCESS: libc::c_long = 1;
        const IOPRIO_CLASS_BE: libc::c_long = 2;
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0,
            (IOPRIO_CLASS_BE << 13) | 7,
        );
    }
}
