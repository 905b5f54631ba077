//! php-fpm started by a test: one master with one static pool on a unix
//! socket of the test's own, reading only the php.ini the test gives it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::proc::{wait_exists, Proc};
use super::tools::whoami;

/// The pool a test asks for: [`Pool::new`] with what every pool needs,
/// then the options (`Pool { status_path: …, ..Pool::new(…) }`).
pub struct Pool<'a> {
    /// The php-fpm program (see `find_php_fpm`).
    pub bin: &'a Path,
    /// Where its files go: php-fpm.conf, php.ini, php-fpm.pid, php-fpm.log,
    /// php-fpm.out (its stderr), php-errors.log.
    pub dir: &'a Path,
    /// The pool's unix socket.
    pub socket: &'a Path,
    /// The whole php.ini (PHP's `error_log` is added).
    pub ini: &'a str,
    /// `pm.max_children` of the static pool.
    pub children: u32,
    /// The pool's user (its group of the same name) when the test runs as
    /// root, as a packaged php-fpm runs (`www-data`); `dir` is given to it
    /// for PHP's error log. None: the test's own user.
    pub pool_user: Option<String>,
    /// `pm.status_path` (for `drain: auto`).
    pub status_path: Option<String>,
    /// The socket's owner and group when the test runs as root (default: the
    /// test's user): the user rootswap runs as must reach the socket to reset
    /// OPcache and read the pool's status.
    pub listen_user: Option<String>,
}

impl<'a> Pool<'a> {
    /// `bin` (see `find_php_fpm`) with `children` static workers on
    /// `socket`, its files (php-fpm.conf, php.ini, php-fpm.pid, php-fpm.log,
    /// php-errors.log) in `dir`, and `ini` as its whole php.ini.
    pub fn new(
        bin: &'a Path,
        dir: &'a Path,
        socket: &'a Path,
        ini: &'a str,
        children: u32,
    ) -> Self {
        Pool {
            bin,
            dir,
            socket,
            ini,
            children,
            pool_user: None,
            status_path: None,
            listen_user: None,
        }
    }

    /// The `[global]` and pool sections of php-fpm.conf.
    fn conf(&self) -> String {
        let (user, group, root) = whoami();
        let mut pool = format!(
            "[global]\npid = {d}/php-fpm.pid\nerror_log = {d}/php-fpm.log\ndaemonize = no\n\n[site]\n\
             listen = {sock}\nlisten.mode = 0660\npm = static\npm.max_children = {children}\n\
             catch_workers_output = yes\nrequest_terminate_timeout = 60s\n",
            d = self.dir.display(),
            sock = self.socket.display(),
            children = self.children,
        );
        if let Some(path) = &self.status_path {
            pool.push_str(&format!("pm.status_path = {path}\n"));
        }
        if root {
            let pool_user = self.pool_user.clone().unwrap_or(user.clone());
            let pool_group = self.pool_user.clone().unwrap_or(group.clone());
            let listen_user = self.listen_user.clone().unwrap_or(user);
            let listen_group = self.listen_user.clone().unwrap_or(group);
            pool.push_str(&format!(
                "user = {pool_user}\ngroup = {pool_group}\nlisten.owner = {listen_user}\nlisten.group = {listen_group}\n"
            ));
        }
        pool
    }
}

/// A running php-fpm master (stopped with its workers when dropped).
pub struct Fpm {
    /// The master process.
    pub proc: Proc,
    /// Where its configuration, pid file and logs are.
    pub dir: PathBuf,
    /// The pool's socket.
    pub socket: PathBuf,
}

impl Fpm {
    /// Writes the pool's files and starts php-fpm in the foreground; returns
    /// once the socket exists (fails the test with php-fpm's output when it
    /// exits first or takes over 15 s).
    pub fn start(pool: Pool) -> Fpm {
        let (dir, socket) = (pool.dir, pool.socket);
        std::fs::create_dir_all(dir).expect("php-fpm's directory");
        std::fs::create_dir_all(socket.parent().expect("the socket's directory"))
            .expect("the socket's directory");
        let ini = format!(
            "{}\nerror_log={}\n",
            pool.ini,
            dir.join("php-errors.log").display()
        );
        std::fs::write(dir.join("php.ini"), ini).expect("php.ini");
        let root = rustix::process::geteuid().is_root();
        if let (true, Some(u)) = (root, &pool.pool_user) {
            let out = Command::new("chown")
                .arg(format!("{u}:{u}"))
                .arg(dir)
                .output()
                .expect("chown runs");
            assert!(out.status.success(), "chown {u} {}", dir.display());
        }
        std::fs::write(dir.join("php-fpm.conf"), pool.conf()).expect("php-fpm.conf");
        let mut cmd = Command::new(pool.bin);
        cmd.arg("-F")
            .arg("-y")
            .arg(dir.join("php-fpm.conf"))
            .arg("-c")
            .arg(dir.join("php.ini"));
        if root {
            cmd.arg("-R");
        }
        let out = dir.join("php-fpm.out");
        cmd.env("PHP_INI_SCAN_DIR", "")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&out).expect("php-fpm.out"));
        let mut proc = Proc::spawn("php-fpm", &mut cmd);
        wait_exists(&mut proc, socket, &out);
        Fpm {
            proc,
            dir: dir.to_path_buf(),
            socket: socket.to_path_buf(),
        }
    }

    /// True while the master runs.
    pub fn alive(&mut self) -> bool {
        self.proc.alive()
    }

    /// The last lines of php-fpm's log and of PHP's error log.
    pub fn logs(&self) -> String {
        tails(&self.dir, &["php-fpm.log", "php-errors.log"])
    }
}

/// The last 15 lines of each of `files` in `dir`, each under a header.
pub fn tails(dir: &Path, files: &[&str]) -> String {
    let mut out = String::new();
    for f in files {
        let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        out.push_str(&format!("--- {f} (last lines)\n"));
        for l in tail.into_iter().rev() {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}
