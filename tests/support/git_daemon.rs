//! A real `git daemon` serving the bare repositories of a directory over
//! `git://127.0.0.1:<port>/`, the test's own process, stopped by its PID.

use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, git, skip_or_fail, wait_for};

/// A `git daemon` serving `base` on a free loopback port; killed on drop.
pub struct GitDaemon {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl GitDaemon {
    /// Starts it (None, after [`skip_or_fail`], when git-daemon is not installed).
    pub fn start(base: &Path) -> Option<GitDaemon> {
        let exec_path = git(base, &["--exec-path"]);
        if !Path::new(&exec_path).join("git-daemon").exists() {
            skip_or_fail("`git daemon` is not installed (git-daemon-run / git-daemon-sysvinit)");
            return None;
        }
        let port = free_port();
        // git-daemon itself, not `git daemon`: git runs it as a child, which
        // killing `git` would leave behind.
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .arg("--export-all")
            .arg("--reuseaddr")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon starts");
        let d = GitDaemon { child, port };
        wait_for(
            &format!("git daemon to listen on {port}"),
            Duration::from_secs(15),
            || TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok(),
        );
        Some(d)
    }

    /// `git://127.0.0.1:<port>/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        // Our own child, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
