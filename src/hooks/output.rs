//! A hook's stdout and stderr, read with a deadline.
//!
//! Both pipes are non-blocking and read from the calling thread with
//! `poll(2)`: nothing here waits longer than it is told to, whoever keeps the
//! other end of a pipe open. Complete lines go to the log as they arrive.

use std::os::fd::{AsFd, OwnedFd};
use std::process::{ChildStderr, ChildStdout};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{fcntl_getfl, fcntl_setfl, fstat, OFlags};

/// A line longer than this is logged in pieces (a hook printing megabytes
/// without a newline must not grow the buffer without bound).
const MAX_LINE: usize = 64 * 1024;

/// One of the two pipes.
struct Stream {
    fd: OwnedFd,
    is_err: bool,
    pending: Vec<u8>,
    open: bool,
}

/// The read ends of a hook's stdout and stderr.
pub(super) struct Output {
    streams: Vec<Stream>,
}

impl Output {
    /// Takes the child's pipes and makes them non-blocking.
    pub(super) fn new(stdout: Option<ChildStdout>, stderr: Option<ChildStderr>) -> Result<Output> {
        let mut streams = Vec::new();
        let fds = [
            stdout.map(|s| (OwnedFd::from(s), false)),
            stderr.map(|s| (OwnedFd::from(s), true)),
        ];
        for (fd, is_err) in fds.into_iter().flatten() {
            let flags = fcntl_getfl(&fd).context("cannot read the flags of a hook's pipe")?;
            fcntl_setfl(&fd, flags | OFlags::NONBLOCK)
                .context("cannot make a hook's pipe non-blocking")?;
            streams.push(Stream {
                fd,
                is_err,
                pending: Vec::new(),
                open: true,
            });
        }
        Ok(Output { streams })
    }

    /// True while some process still holds a write end of either pipe.
    pub(super) fn is_open(&self) -> bool {
        self.streams.iter().any(|s| s.open)
    }

    /// Inode numbers of the pipes (`pipe:[N]` in `/proc/PID/fd`), to find
    /// the processes that hold them.
    pub(super) fn inodes(&self) -> Vec<u64> {
        self.streams
            .iter()
            .filter_map(|s| fstat(&s.fd).ok())
            .map(|st| st.st_ino)
            .collect()
    }

    /// Waits at most `wait` for output and logs what arrived (returns at once
    /// when something did; sleeps `wait` when both pipes are closed).
    pub(super) fn read_for(&mut self, wait: Duration) {
        let open: Vec<usize> = (0..self.streams.len())
            .filter(|&i| self.streams[i].open)
            .collect();
        let timeout = Timespec::try_from(wait).unwrap_or(Timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        });
        if open.is_empty() {
            std::thread::sleep(wait);
            return;
        }
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = open
                .iter()
                .map(|&i| PollFd::new(&self.streams[i].fd, PollFlags::IN))
                .collect();
            if poll(&mut fds, Some(&timeout)).is_err() {
                // EINTR and the like: the caller loops.
                return;
            }
            fds.iter().map(|f| !f.revents().is_empty()).collect()
        };
        for (k, &i) in open.iter().enumerate() {
            if ready[k] {
                self.streams[i].drain();
            }
        }
    }

    /// Reads until both pipes are closed or `deadline` passes; true when closed.
    pub(super) fn read_until(&mut self, deadline: Instant) -> bool {
        while self.is_open() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.read_for((deadline - now).min(Duration::from_millis(100)));
        }
        true
    }

    /// Logs any last partial line and closes the read ends: a process still
    /// writing gets EPIPE (or SIGPIPE) instead of holding rootswap up.
    pub(super) fn close(mut self) {
        for s in &mut self.streams {
            s.flush_partial();
        }
    }
}

impl Stream {
    /// Reads everything available now; marks the stream closed at EOF.
    fn drain(&mut self) {
        let mut buf = [0u8; 8192];
        loop {
            match rustix::io::read(self.fd.as_fd(), &mut buf) {
                Ok(0) => {
                    self.open = false;
                    self.flush_partial();
                    return;
                }
                Ok(n) => self.take(&buf[..n]),
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => return,
                Err(_) => {
                    self.open = false;
                    return;
                }
            }
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            self.emit(&line);
        }
        if self.pending.len() > MAX_LINE {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }

    fn flush_partial(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }

    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        if self.is_err {
            tracing::warn!(target: "hook", "| {text}");
        } else {
            tracing::info!(target: "hook", "| {text}");
        }
    }
}
