//! Finding what a hook left behind, wherever it went.
//!
//! A hook runs in a process group of its own, but a child can leave the group
//! (`setsid`, a double-forking daemon). Two things still tie it to the hook:
//! the variable `ROOTSWAP_HOOK_RUN`, set to a value unique to the hook run and
//! inherited by every descendant, and the hook's stdout/stderr pipes, if it
//! kept them. Both are read from `/proc` (the processes run as rootswap's
//! user, so their `environ` and `fd` entries are readable). A process that
//! clears its environment and closes the pipes escapes this: it no longer
//! holds anything rootswap waits for either.

use std::path::Path;

/// The variable that marks a hook run's processes.
pub(super) const MARK_VAR: &str = "ROOTSWAP_HOOK_RUN";

/// A process that belongs to a hook run.
#[derive(Debug, Clone)]
pub(super) struct Proc {
    /// Its pid.
    pub(super) pid: i32,
    /// Whether it holds the hook's stdout or stderr.
    pub(super) holds_output: bool,
    /// Its command line, for messages.
    pub(super) cmd: String,
}

impl std::fmt::Display for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} `{}`", self.pid, self.cmd)
    }
}

/// A value of [`MARK_VAR`] no other hook run has.
pub(super) fn new_mark() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}.{n}", std::process::id())
}

/// Every process but rootswap itself that carries `mark` in its environment
/// or holds one of the pipes `pipes` (inode numbers).
pub(super) fn find(mark: &str, pipes: &[u64]) -> Vec<Proc> {
    let me = std::process::id() as i32;
    let needle = format!("{MARK_VAR}={mark}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let dir = e.path();
        let marked = has_env(&dir, &needle);
        let holds_output = holds_pipe(&dir, pipes);
        if marked || holds_output {
            out.push(Proc {
                pid,
                holds_output,
                cmd: cmdline(&dir),
            });
        }
    }
    out
}

/// Sends `sig` to each of `procs`.
pub(super) fn signal(procs: &[Proc], sig: i32) {
    for p in procs {
        // SAFETY: kill(2) on a pid; no memory is involved.
        unsafe {
            libc::kill(p.pid, sig);
        }
    }
}

fn has_env(dir: &Path, needle: &str) -> bool {
    std::fs::read(dir.join("environ"))
        .map(|env| env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()))
        .unwrap_or(false)
}

fn holds_pipe(dir: &Path, pipes: &[u64]) -> bool {
    if pipes.is_empty() {
        return false;
    }
    let wanted: Vec<String> = pipes.iter().map(|i| format!("pipe:[{i}]")).collect();
    let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .map(|t| wanted.iter().any(|w| t.as_os_str() == w.as_str()))
            .unwrap_or(false)
    })
}

fn cmdline(dir: &Path) -> String {
    let raw = std::fs::read(dir.join("cmdline")).unwrap_or_default();
    let words: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let text = words.join(" ");
    if text.chars().count() > 120 {
        format!("{}…", text.chars().take(120).collect::<String>())
    } else {
        text
    }
}
