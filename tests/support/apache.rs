//! Apache 2.4 started by a test: its own main configuration (modules loaded
//! by absolute path from Debian's module directory), pid file, logs and
//! mutexes in a directory of the test's own, serving the `<VirtualHost>`
//! `rootswap apache` prints on a 127.0.0.1 port, with mpm_event (PHP in
//! php-fpm) or mpm_prefork (mod_php, reading only the php.ini the test gives).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::fpm::tails;
use super::net::SITE_HOST;
use super::proc::{wait_listening, Proc};
use super::tools::{find_program, newest_in, skip_or_fail, whoami};
use super::world::{fastcgi_unix, printed_config};

/// Where Debian installs Apache's modules.
pub const MODULES: &str = "/usr/lib/apache2/modules";

/// What installs Apache and mod_php on Debian.
pub const APACHE_INSTALL: &str =
    "apt-get update && apt-get install -y --no-install-recommends apache2 libapache2-mod-php";

/// How PHP runs behind the Apache of a test.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mpm {
    /// mpm_event, PHP in php-fpm through mod_proxy_fcgi.
    EventFpm,
    /// mpm_prefork, PHP inside Apache (mod_php).
    PreforkModPhp,
}

/// A running Apache parent (stopped with its children when dropped).
pub struct Apache {
    /// The parent process.
    pub proc: Proc,
    /// Where its configuration and logs are.
    pub dir: PathBuf,
    /// The port it listens on.
    pub port: u16,
}

/// The apache2 program, or `None` after [`skip_or_fail`]; with `mod_php`,
/// also Debian's mod_php (`libphp*.so`).
#[track_caller]
pub fn require_apache(who: &str, mod_php: bool) -> Option<PathBuf> {
    let bin = find_program(&["apache2", "httpd"]);
    let php = !mod_php || mod_php_so().is_some();
    match bin {
        Some(b) if php && Path::new(MODULES).join("mod_mpm_event.so").exists() => Some(b),
        _ => {
            skip_or_fail(&format!(
                "{who}: Apache 2.4{} is not installed; install with: {APACHE_INSTALL}",
                if mod_php { " with mod_php" } else { "" }
            ));
            None
        }
    }
}

/// Debian's mod_php (`/usr/lib/apache2/modules/libphp8.2.so`).
pub fn mod_php_so() -> Option<PathBuf> {
    newest_in(Path::new(MODULES), |n| {
        n.starts_with("libphp") && n.ends_with(".so")
    })
}

/// The main configuration around `vhost`.
fn main_conf(dir: &Path, port: u16, mpm: Mpm, vhost: &str) -> String {
    let (user, group, root) = whoami();
    let load = |name: &str, file: &str| format!("LoadModule {name} {MODULES}/{file}\n");
    let mut c = format!(
        "ServerRoot {d}\nPidFile {d}/apache.pid\nErrorLog {d}/apache-error.log\nLogLevel warn\nDefaultRuntimeDir {d}\nMutex file:{d} default\n\
         Listen 127.0.0.1:{port}\nServerName {SITE_HOST}\nKeepAlive On\nMaxKeepAliveRequests 0\nKeepAliveTimeout 30\nTimeout 60\n",
        d = dir.display()
    );
    if root {
        // Apache refuses to serve as root; the site's files are readable by others.
        let (u, g) = if user == "root" {
            ("www-data".to_string(), "www-data".to_string())
        } else {
            (user, group)
        };
        c.push_str(&format!("User {u}\nGroup {g}\n"));
    }
    for (name, file) in [
        ("authz_core_module", "mod_authz_core.so"),
        ("authz_host_module", "mod_authz_host.so"),
        ("alias_module", "mod_alias.so"),
        ("dir_module", "mod_dir.so"),
    ] {
        c.push_str(&load(name, file));
    }
    match mpm {
        Mpm::EventFpm => {
            c.push_str(&load("mpm_event_module", "mod_mpm_event.so"));
            c.push_str(&load("proxy_module", "mod_proxy.so"));
            c.push_str(&load("proxy_fcgi_module", "mod_proxy_fcgi.so"));
            c.push_str(
                "StartServers 2\nServerLimit 4\nThreadsPerChild 25\nMaxRequestWorkers 100\n",
            );
        }
        Mpm::PreforkModPhp => {
            c.push_str(&load("mpm_prefork_module", "mod_mpm_prefork.so"));
            let so = mod_php_so().expect("mod_php (require_apache checked)");
            c.push_str(&format!(
                "LoadModule php_module {}\nPHPIniDir {}/apache-php\n",
                so.display(),
                dir.display()
            ));
            c.push_str(
                "StartServers 12\nMinSpareServers 12\nMaxSpareServers 20\nMaxRequestWorkers 20\n",
            );
        }
    }
    c.push_str("<Directory />\n    AllowOverride None\n    Require all denied\n</Directory>\n\n");
    c.push_str(vhost);
    c
}

impl Apache {
    /// Starts `bin` in the foreground serving `vhost` on `port` with `mpm`;
    /// mod_php reads `php_ini` as its whole php.ini. Returns once the port
    /// accepts connections (fails the test with Apache's output when it
    /// exits first or takes over 15 s).
    pub fn start(
        bin: &Path,
        dir: &Path,
        mpm: Mpm,
        vhost: &str,
        port: u16,
        php_ini: &str,
    ) -> Apache {
        std::fs::create_dir_all(dir.join("apache-php")).expect("Apache's directory");
        std::fs::write(dir.join("apache-php/php.ini"), php_ini).expect("php.ini");
        let conf = dir.join("apache.conf");
        std::fs::write(&conf, main_conf(dir, port, mpm, vhost)).expect("apache.conf");
        let out = dir.join("apache.out");
        let mut cmd = Command::new(bin);
        cmd.arg("-d")
            .arg(dir)
            .arg("-f")
            .arg(&conf)
            .arg("-DFOREGROUND")
            .env("PHP_INI_SCAN_DIR", "")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&out).expect("apache.out"));
        let mut proc = Proc::spawn("apache2", &mut cmd);
        wait_listening(&mut proc, SocketAddr::from(([127, 0, 0, 1], port)), &out);
        Apache {
            proc,
            dir: dir.to_path_buf(),
            port,
        }
    }

    /// Apache on `port` (see `free_port`) serving the `<VirtualHost>` `rootswap apache`
    /// prints for config `cfg` (php-fpm at `socket`, or mod_php), passed
    /// through `edit` (the identity for the product; the control strips the fix).
    #[allow(clippy::too_many_arguments)]
    pub fn for_site(
        bin: &Path,
        dir: &Path,
        cfg: &Path,
        mpm: Mpm,
        socket: &Path,
        port: u16,
        php_ini: &str,
        edit: impl Fn(String) -> String,
    ) -> Apache {
        let vhost = edit(virtual_host(cfg, port, mpm, socket));
        Apache::start(bin, dir, mpm, &vhost, port, php_ini)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True while the parent runs.
    pub fn alive(&mut self) -> bool {
        self.proc.alive()
    }

    /// The last lines of Apache's error log and output.
    pub fn logs(&self) -> String {
        tails(&self.dir, &["apache-error.log", "apache.out"])
    }
}

/// The `<VirtualHost>` `rootswap apache` prints for config `cfg`, on
/// 127.0.0.1:`port` as [`SITE_HOST`].
pub fn virtual_host(cfg: &Path, port: u16, mpm: Mpm, socket: &Path) -> String {
    let php = match mpm {
        Mpm::EventFpm => fastcgi_unix(socket),
        Mpm::PreforkModPhp => vec!["--mod-php".to_string()],
    };
    printed_config(cfg, "apache", port, &php)
}
