//! Caddy started by a test: the site block `rootswap caddy` prints under a
//! global options block (admin endpoint off, no automatic HTTPS), run in
//! the foreground with HOME and the XDG directories in a directory of the
//! test's own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::fpm::tails;
use super::net::free_port;
use super::proc::{wait_listening, Proc};
use super::tools::{find_tool, with_php_fpm};
use super::world::{fastcgi_unix, printed_config};

/// What installs Caddy and php-fpm on Debian.
pub const CADDY_INSTALL: &str =
    "apt-get update && apt-get install -y --no-install-recommends caddy php-fpm";

/// A running Caddy (stopped when dropped).
pub struct Caddy {
    /// The process.
    pub proc: Proc,
    /// Where its Caddyfile, home and log are.
    pub dir: PathBuf,
    /// The port the site listens on.
    pub port: u16,
}

impl Caddy {
    /// Starts `bin` with `Caddyfile` (site blocks only; the global options
    /// are added) in `dir`; returns once `port` accepts connections (fails
    /// the test with Caddy's log when it exits first or takes over 15 s).
    pub fn start(bin: &Path, dir: &Path, site_blocks: &str, port: u16) -> Caddy {
        std::fs::create_dir_all(dir.join("caddy-home")).expect("Caddy's directory");
        let conf = dir.join("Caddyfile");
        std::fs::write(
            &conf,
            format!("{{\n\tadmin off\n\tauto_https off\n}}\n\n{site_blocks}"),
        )
        .expect("Caddyfile");
        let log = dir.join("caddy.log");
        let home = dir.join("caddy-home");
        let mut cmd = Command::new(bin);
        cmd.args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&conf)
            .current_dir(dir)
            .env("HOME", &home)
            .env("XDG_DATA_HOME", home.join("data"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("caddy.log"));
        let mut proc = Proc::spawn("caddy", &mut cmd);
        wait_listening(&mut proc, SocketAddr::from(([127, 0, 0, 1], port)), &log);
        Caddy {
            proc,
            dir: dir.to_path_buf(),
            port,
        }
    }

    /// Caddy on a free port serving the site block `rootswap caddy` prints
    /// for the site of config `cfg`, passing PHP to php-fpm at `socket`;
    /// `edit` may change the block first (a control's naive configuration).
    pub fn for_site(
        bin: &Path,
        dir: &Path,
        cfg: &Path,
        socket: &Path,
        edit: impl FnOnce(String) -> String,
    ) -> Caddy {
        let port = free_port();
        Caddy::start(bin, dir, &edit(site_block(cfg, port, socket)), port)
    }

    /// True while it runs.
    pub fn alive(&mut self) -> bool {
        self.proc.alive()
    }

    /// The last lines of its log.
    pub fn logs(&self) -> String {
        tails(&self.dir, &["caddy.log"])
    }
}

/// The site block `rootswap caddy` prints for config `cfg`, listening on
/// 127.0.0.1:`port` as [`SITE_HOST`](super::net::SITE_HOST), passing PHP to `socket`.
pub fn site_block(cfg: &Path, port: u16, socket: &Path) -> String {
    printed_config(cfg, "caddy", port, &fastcgi_unix(socket))
}

/// Caddy and php-fpm, or `None` after one [`skip_or_fail`](super::tools::skip_or_fail)
/// naming the missing ones; `who` names the tests that need them.
#[track_caller]
pub fn caddy_servers(who: &str) -> Option<(PathBuf, PathBuf)> {
    with_php_fpm(who, "caddy", find_tool("caddy"), CADDY_INSTALL)
}
