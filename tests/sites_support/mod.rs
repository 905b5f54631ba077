//! Servers for the "real sites" tests (tests/sites.rs, tests/ssh.rs,
//! tests/wordpress.rs, tests/laravel.rs, tests/symfony.rs): php-fpm, nginx and sshd started by the test as its
//! own processes, on 127.0.0.1 ports and unix sockets of their own, stopped
//! by PID when dropped.
#![allow(dead_code)]

pub mod app_writer;
pub mod apps;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Finds a program on PATH or in the sbin directories.
pub fn find_program(names: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in ["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"] {
        dirs.push(PathBuf::from(d));
    }
    for n in names {
        for d in &dirs {
            let p = d.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// php-fpm (Debian names it php-fpm8.2).
pub fn find_php_fpm() -> Option<PathBuf> {
    if let Some(p) = find_program(&["php-fpm"]) {
        return Some(p);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/sbin")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("php-fpm"))
        })
        .collect();
    found.sort();
    found.pop()
}

/// `tool` or None after one line on stderr; under CI=true a missing tool fails the test.
pub fn require(what: &str, found: Option<PathBuf>, install: &str) -> Option<PathBuf> {
    if found.is_some() {
        return found;
    }
    crate::common::skip_or_fail(&format!("{what} is not installed; install with: {install}"));
    None
}

/// A server in its own process group: SIGTERM by PID on drop, then SIGKILL to the group.
pub struct Proc {
    pub name: &'static str,
    pub child: Child,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        cmd.process_group(0).stdin(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { name, child }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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
            std::thread::sleep(Duration::from_millis(20));
        }
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Waits (bounded) until `addr` accepts connections.
pub fn wait_listening(p: &mut Proc, addr: SocketAddr, log: &Path) {
    let t = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            p.alive(),
            "{} exited: {}",
            p.name,
            std::fs::read_to_string(log).unwrap_or_default()
        );
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{} did not listen on {addr}",
            p.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn whoami() -> (String, String, bool) {
    let uid = unsafe { libc::geteuid() };
    let name = |cmd: &str| {
        Command::new("id")
            .arg(cmd)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    (name("-un"), name("-gn"), uid == 0)
}

/// A php-fpm master with one static pool on `socket`, reading only `ini`.
pub fn start_fpm(fpm_bin: &Path, dir: &Path, socket: &Path, ini: &str, children: u32) -> Proc {
    start_fpm_with(fpm_bin, dir, socket, ini, children, &FpmOptions::default())
}

/// `program` run as `uid:gid` (through `setpriv`, no supplementary groups)
/// with `home` as HOME: rootswap and git as the site user, as the packaged
/// unit runs rootswap. The caller must be root.
pub fn as_user(uid: u32, gid: u32, name: &str, home: &Path, program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={uid}"),
        &format!("--regid={gid}"),
        "--clear-groups",
    ])
    .arg(program)
    .env("HOME", home)
    .env("USER", name)
    .env("LOGNAME", name);
    c
}

/// What `start_fpm_with` sets beyond the ini.
#[derive(Default)]
pub struct FpmOptions {
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

/// `start_fpm` with a pool user and a status page.
pub fn start_fpm_with(
    fpm_bin: &Path,
    dir: &Path,
    socket: &Path,
    ini: &str,
    children: u32,
    opts: &FpmOptions,
) -> Proc {
    let (user, group, root) = whoami();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    std::fs::write(
        dir.join("php.ini"),
        format!(
            "{ini}\nerror_log={}\n",
            dir.join("php-errors.log").display()
        ),
    )
    .unwrap();
    let mut pool = format!(
        "[global]\npid = {d}/php-fpm.pid\nerror_log = {d}/php-fpm.log\ndaemonize = no\n\n[site]\n\
         listen = {sock}\nlisten.mode = 0660\npm = static\npm.max_children = {children}\n\
         catch_workers_output = yes\nrequest_terminate_timeout = 60s\n",
        d = dir.display(),
        sock = socket.display()
    );
    if let Some(path) = &opts.status_path {
        pool.push_str(&format!("pm.status_path = {path}\n"));
    }
    if root {
        let (pool_user, pool_group) = match &opts.pool_user {
            Some(u) => {
                let out = Command::new("chown")
                    .arg(format!("{u}:{u}"))
                    .arg(dir)
                    .output()
                    .expect("chown runs");
                assert!(out.status.success(), "chown {u} {}", dir.display());
                (u.clone(), u.clone())
            }
            None => (user.clone(), group.clone()),
        };
        let (listen_user, listen_group) = match &opts.listen_user {
            Some(u) => (u.clone(), u.clone()),
            None => (user.clone(), group.clone()),
        };
        pool.push_str(&format!(
            "user = {pool_user}\ngroup = {pool_group}\nlisten.owner = {listen_user}\nlisten.group = {listen_group}\n"
        ));
    }
    std::fs::write(dir.join("php-fpm.conf"), pool).unwrap();
    let mut cmd = Command::new(fpm_bin);
    cmd.arg("-F")
        .arg("-y")
        .arg(dir.join("php-fpm.conf"))
        .arg("-c")
        .arg(dir.join("php.ini"));
    if root {
        cmd.arg("-R");
    }
    cmd.env("PHP_INI_SCAN_DIR", "")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("php-fpm.out")).unwrap());
    let mut fpm = Proc::spawn("php-fpm", &mut cmd);
    let t = Instant::now();
    while !socket.exists() {
        assert!(
            fpm.alive(),
            "php-fpm exited: {}",
            std::fs::read_to_string(dir.join("php-fpm.out")).unwrap_or_default()
        );
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "php-fpm did not create {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    fpm
}

/// nginx serving `rootswap nginx`'s server block for `cfg`, passing PHP to `socket`.
pub fn start_nginx(nginx_bin: &Path, dir: &Path, cfg: &Path, socket: &Path) -> (Proc, u16) {
    let (user, group, root) = whoami();
    let port = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_rootswap"))
        .arg("-c")
        .arg(cfg)
        .args([
            "nginx",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--server-name",
            "site.test",
            "--fastcgi",
        ])
        .arg(format!("unix:{}", socket.display()))
        .output()
        .expect("rootswap nginx runs");
    assert!(
        out.status.success(),
        "rootswap nginx failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server_block = String::from_utf8_lossy(&out.stdout).into_owned();
    let params = std::fs::read_to_string("/etc/nginx/fastcgi_params")
        .expect("/etc/nginx/fastcgi_params (Debian's nginx)");
    std::fs::write(dir.join("fastcgi_params"), params).unwrap();
    let tmp = dir.join("nginx-tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log warn;\n{user_line}\
         events {{ worker_connections 256; }}\n\
         http {{\n    access_log off;\n    client_body_temp_path {t}/body;\n    fastcgi_temp_path {t}/fastcgi;\n\
         proxy_temp_path {t}/proxy;\n    uwsgi_temp_path {t}/uwsgi;\n    scgi_temp_path {t}/scgi;\n\n{server_block}}}\n",
        d = dir.display(),
        t = tmp.display(),
        user_line = if root { format!("user {user} {group};\n") } else { String::new() },
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut cmd = Command::new(nginx_bin);
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("nginx-error.log"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("nginx.out")).unwrap());
    let mut nginx = Proc::spawn("nginx", &mut cmd);
    wait_listening(
        &mut nginx,
        SocketAddr::from(([127, 0, 0, 1], port)),
        &dir.join("nginx.out"),
    );
    (nginx, port)
}

/// A keep-alive HTTP/1.1 GET client (Content-Length and chunked bodies).
pub struct Http {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Http {
    pub fn new(port: u16) -> Http {
        Http {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            conn: None,
        }
    }

    pub fn get(&mut self, path: &str) -> Result<(u16, String), String> {
        let r = self.get_inner(path);
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    fn get_inner(&mut self, path: &str) -> Result<(u16, String), String> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
                .map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(20)))
                .map_err(|e| e.to_string())?;
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut().ok_or("no connection")?;
        conn.get_mut()
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: site.test\r\n\r\n").as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let mut line = String::new();
        conn.read_line(&mut line)
            .map_err(|e| format!("read status: {e}"))?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let (mut len, mut chunked, mut close) = (None, false, false);
        loop {
            line.clear();
            conn.read_line(&mut line)
                .map_err(|e| format!("read header: {e}"))?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
                match k.as_str() {
                    "content-length" => len = v.parse::<usize>().ok(),
                    "transfer-encoding" => chunked = v.contains("chunked"),
                    "connection" => close = v.contains("close"),
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                conn.read_line(&mut line)
                    .map_err(|e| format!("read chunk size: {e}"))?;
                let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| format!("bad chunk size {line:?}"))?;
                let mut chunk = vec![0; n + 2];
                conn.read_exact(&mut chunk)
                    .map_err(|e| format!("read chunk: {e}"))?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = len {
            body.resize(n, 0);
            conn.read_exact(&mut body)
                .map_err(|e| format!("read body: {e}"))?;
        } else {
            conn.read_to_end(&mut body)
                .map_err(|e| format!("read body: {e}"))?;
            close = true;
        }
        if close {
            self.conn = None;
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}
