//! Processes a test starts (servers, daemons) and bounded waits for them.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server in its own process group: on drop, SIGTERM by PID, up to 5 s
/// for it to exit, then SIGKILL to the whole group (nginx's and php-fpm's
/// workers too: masters leave them only when killed hard).
pub struct Proc {
    /// What it is, for messages.
    pub name: &'static str,
    /// The process.
    pub child: Child,
}

impl Proc {
    /// Starts `cmd` in a process group of its own, stdin from /dev/null.
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        cmd.process_group(0).stdin(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { name, child }
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) && self.alive() {
            // Polling interval of a bounded wait.
            std::thread::sleep(Duration::from_millis(20));
        }
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 20 ms until it holds (true) or `timeout` has passed
/// (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `cond` every 50 ms for at most `max`; fails the test naming `what`
/// when it never holds.
#[track_caller]
pub fn wait_for(what: &str, max: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < max,
            "timed out after {max:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (at most 15 s) until `addr` accepts connections; fails the test
/// with `log` when `p` exits first.
#[track_caller]
pub fn wait_listening(p: &mut Proc, addr: SocketAddr, log: &Path) {
    wait_ready(p, &format!("listen on {addr}"), log, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    });
}

/// Waits (at most 15 s) until `path` exists; fails the test with `log` when
/// `p` exits first.
#[track_caller]
pub fn wait_exists(p: &mut Proc, path: &Path, log: &Path) {
    wait_ready(p, &format!("create {}", path.display()), log, || {
        path.exists()
    });
}

/// Polls `ready` every 20 ms for at most 15 s while `p` runs; fails the
/// test saying that `p` did not `what`, or exited (with `log`).
#[track_caller]
fn wait_ready(p: &mut Proc, what: &str, log: &Path, mut ready: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ready() {
        assert!(
            p.alive(),
            "{} exited: {}",
            p.name,
            std::fs::read_to_string(log).unwrap_or_default()
        );
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{} did not {what}",
            p.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
