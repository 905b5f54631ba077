//! Outside programs and privileges a test needs, and the one place that
//! decides whether their absence skips the test (locally) or fails it
//! (under `CI=true`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::world::bin;

/// True when the tests run under CI (`CI=true`): there a missing tool or
/// privilege is a failure, never a skip.
pub fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The one place that decides "skip or fail": under `CI=true` it panics
/// with `why` (CI must run every test; `.ci/run` installs what they need),
/// elsewhere it prints one `skipped:` line and the test returns.
#[track_caller]
pub fn skip_or_fail(why: &str) {
    if on_ci() {
        panic!("CI=true, so this test must run, but {why}; install it in .ci/run");
    }
    eprintln!("skipped: {why} (under CI=true this fails)");
}

/// Finds an outside program on PATH or in the sbin directories (nginx and
/// php-fpm live there). `None` after [`skip_or_fail`] when it is missing.
#[track_caller]
pub fn require_tool(name: &str) -> Option<PathBuf> {
    match find_tool(name) {
        Some(p) => Some(p),
        None => {
            skip_or_fail(&format!("`{name}` is not installed"));
            None
        }
    }
}

/// Finds a program on PATH, then in /usr/sbin and /sbin (without asking a shell).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// True when the tests run as root; otherwise [`skip_or_fail`] (CI runs as root).
#[track_caller]
pub fn require_root(what: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    skip_or_fail(&format!("{what} needs root"));
    false
}

/// A command running the rootswap binary without the capabilities that let
/// root ignore file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), as a
/// deploy user would run it: through `setpriv` when the tests run as root
/// (CI does), the binary itself otherwise. `None` after [`skip_or_fail`] when
/// root has no `setpriv` (util-linux).
#[track_caller]
pub fn bin_without_dac_override() -> Option<Command> {
    if !rustix::process::geteuid().is_root() {
        return Some(Command::new(bin()));
    }
    let setpriv = require_tool("setpriv")?;
    let mut c = Command::new(setpriv);
    c.args(["--bounding-set", "-dac_override,-dac_read_search"])
        .arg(bin());
    Some(c)
}

/// The first of `names` that [`find_tool`] finds.
pub fn find_program(names: &[&str]) -> Option<PathBuf> {
    names.iter().find_map(|n| find_tool(n))
}

/// php-fpm: `php-fpm` on PATH or in sbin, else the newest `/usr/sbin/php-fpm*`
/// (Debian names it after the version: php-fpm8.2).
pub fn find_php_fpm() -> Option<PathBuf> {
    if let Some(p) = find_tool("php-fpm") {
        return Some(p);
    }
    newest_in(Path::new("/usr/sbin"), |n| n.starts_with("php-fpm"))
}

/// The last by name (the newest version) of the files in `dir` whose
/// name `matches`.
pub fn newest_in(dir: &Path, matches: impl Fn(&str) -> bool) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&matches))
        .collect();
    found.sort();
    found.pop()
}

/// `found`, or `None` after [`skip_or_fail`] naming `what` and how to
/// `install` it.
#[track_caller]
pub fn require(what: &str, found: Option<PathBuf>, install: &str) -> Option<PathBuf> {
    if found.is_some() {
        return found;
    }
    skip_or_fail(&format!("{what} is not installed; install with: {install}"));
    None
}

/// What installs the web servers of [`web_servers`] on Debian.
pub const WEB_SERVERS_INSTALL: &str =
    "apt-get update && apt-get install -y --no-install-recommends nginx-light php-fpm";

/// nginx and php-fpm, or `None` after one [`skip_or_fail`] naming the
/// missing ones; `who` names the tests that need them.
#[track_caller]
pub fn web_servers(who: &str) -> Option<(PathBuf, PathBuf)> {
    with_php_fpm(who, "nginx", find_program(&["nginx"]), WEB_SERVERS_INSTALL)
}

/// The web server `server` (`found`) and php-fpm, or `None` after one
/// [`skip_or_fail`] naming the missing ones and how to `install` them;
/// `who` names the tests that need them.
#[track_caller]
pub fn with_php_fpm(
    who: &str,
    server: &str,
    found: Option<PathBuf>,
    install: &str,
) -> Option<(PathBuf, PathBuf)> {
    match (found, find_php_fpm()) {
        (Some(s), Some(f)) => Some((s, f)),
        (s, f) => {
            let missing = [
                s.is_none().then_some(server),
                f.is_none().then_some("php-fpm"),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" and ");
            skip_or_fail(&format!(
                "{who}: {missing} not installed; install with: {install}"
            ));
            None
        }
    }
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

/// The uid of `user` (`id -u`).
pub fn uid_of(user: &str) -> u32 {
    id_of("-u", user)
}

/// The gid of `user`'s group (`id -g`).
pub fn gid_of(user: &str) -> u32 {
    id_of("-g", user)
}

fn id_of(flag: &str, user: &str) -> u32 {
    let out = Command::new("id")
        .arg(flag)
        .arg(user)
        .output()
        .expect("id runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no user {user}"))
}

/// The test's user and group names, and whether it is root (servers run
/// as it, or drop to it when started as root).
pub fn whoami() -> (String, String, bool) {
    let root = rustix::process::geteuid().is_root();
    let name = |flag: &str| {
        Command::new("id")
            .arg(flag)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    (name("-un"), name("-gn"), root)
}
