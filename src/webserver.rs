//! The web server in front of the site: nginx, Apache, Caddy or
//! LiteSpeed, found on this machine from what runs (`/proc/*/comm`), the
//! configuration files each package installs, and the programs, with the
//! strongest evidence a configuration that names the site's webroot.
//!
//! `init` says which one it found and which `rootswap <server>` command
//! prints its configuration; `doctor` runs that server's checks. Paths are
//! read under `/`, or under [`SEARCH_ROOT_ENV`] (tests point it at a
//! directory of their own).

use std::fmt;
use std::path::{Path, PathBuf};

/// Environment variable: look under `<dir>/proc`, `<dir>/etc`, `<dir>/usr`
/// instead of `/proc`, `/etc`, `/usr`.
pub const SEARCH_ROOT_ENV: &str = "ROOTSWAP_WEBSERVER_SEARCH_ROOT";

/// A web server rootswap knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Server {
    /// nginx (`rootswap nginx`).
    Nginx,
    /// Apache httpd 2.4.
    Apache,
    /// Caddy 2 (`rootswap caddy`).
    Caddy,
    /// LiteSpeed Web Server or OpenLiteSpeed (set up by hand: docs/webservers.md).
    #[value(name = "litespeed")]
    LiteSpeed,
}

/// Every server, in the order they are reported.
pub const ALL: [Server; 4] = [
    Server::Nginx,
    Server::Apache,
    Server::Caddy,
    Server::LiteSpeed,
];

impl Server {
    /// Its name for people.
    pub fn name(self) -> &'static str {
        match self {
            Server::Nginx => "nginx",
            Server::Apache => "Apache",
            Server::Caddy => "Caddy",
            Server::LiteSpeed => "LiteSpeed/OpenLiteSpeed",
        }
    }

    /// The rootswap command that prints its configuration for the site
    /// (None: set up by hand, see docs/webservers.md).
    pub fn command(self) -> Option<&'static str> {
        match self {
            Server::Nginx => Some("rootswap nginx"),
            Server::Apache => Some("rootswap apache"),
            Server::Caddy => Some("rootswap caddy"),
            Server::LiteSpeed => None,
        }
    }

    /// Process names (`/proc/PID/comm`) of its daemon.
    fn processes(self) -> &'static [&'static str] {
        match self {
            Server::Nginx => &["nginx"],
            Server::Apache => &["apache2", "httpd"],
            Server::Caddy => &["caddy"],
            Server::LiteSpeed => &["litespeed", "lshttpd", "openlitespeed"],
        }
    }

    /// Its main configuration files, as its packages install them.
    fn configs(self) -> &'static [&'static str] {
        match self {
            Server::Nginx => &["etc/nginx/nginx.conf"],
            Server::Apache => &["etc/apache2/apache2.conf", "etc/httpd/conf/httpd.conf"],
            Server::Caddy => &["etc/caddy/Caddyfile"],
            Server::LiteSpeed => &["usr/local/lsws/conf/httpd_config.conf"],
        }
    }

    /// Directories holding its configuration (searched for the webroot).
    fn config_dirs(self) -> &'static [&'static str] {
        match self {
            Server::Nginx => &["etc/nginx"],
            Server::Apache => &["etc/apache2", "etc/httpd"],
            Server::Caddy => &["etc/caddy"],
            Server::LiteSpeed => &["usr/local/lsws/conf"],
        }
    }

    /// Its programs.
    fn programs(self) -> &'static [&'static str] {
        match self {
            Server::Nginx => &["usr/sbin/nginx", "usr/bin/nginx"],
            Server::Apache => &["usr/sbin/apache2", "usr/sbin/httpd"],
            Server::Caddy => &["usr/bin/caddy", "usr/local/bin/caddy"],
            Server::LiteSpeed => &[
                "usr/local/lsws/bin/lshttpd",
                "usr/local/lsws/bin/openlitespeed",
            ],
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a server is thought to be here, strongest first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Evidence {
    /// A file of its configuration names the webroot.
    NamesSite(PathBuf),
    /// A process of it runs (its name).
    Running(String),
    /// Its configuration file exists.
    Config(PathBuf),
    /// Its program is installed.
    Program(PathBuf),
}

impl Evidence {
    /// 3 for a configuration naming the site, down to 0 for a program.
    fn weight(&self) -> u8 {
        match self {
            Evidence::NamesSite(_) => 3,
            Evidence::Running(_) => 2,
            Evidence::Config(_) => 1,
            Evidence::Program(_) => 0,
        }
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Evidence::NamesSite(p) => write!(f, "{} names the webroot", p.display()),
            Evidence::Running(n) => write!(f, "`{n}` runs"),
            Evidence::Config(p) => write!(f, "{} exists", p.display()),
            Evidence::Program(p) => write!(f, "{} is installed", p.display()),
        }
    }
}

/// A server found, with every piece of evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Which server.
    pub server: Server,
    /// Why, strongest first.
    pub evidence: Vec<Evidence>,
}

impl Found {
    /// The weight of its strongest evidence.
    fn weight(&self) -> u8 {
        self.evidence
            .iter()
            .map(Evidence::weight)
            .max()
            .unwrap_or(0)
    }

    /// "Caddy (`caddy` runs, /etc/caddy/Caddyfile exists)".
    pub fn describe(&self) -> String {
        let why: Vec<String> = self.evidence.iter().map(ToString::to_string).collect();
        format!("{} ({})", self.server, why.join(", "))
    }
}

/// The directory searched: `/`, or [`SEARCH_ROOT_ENV`].
pub fn search_root() -> PathBuf {
    std::env::var_os(SEARCH_ROOT_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Every server found under `root` for the site in `webroot`, the most
/// likely first.
pub fn detect(root: &Path, webroot: &Path) -> Vec<Found> {
    let running = process_names(root);
    let mut out: Vec<Found> = ALL
        .into_iter()
        .filter_map(|server| {
            let mut evidence = Vec::new();
            evidence.extend(names_site(root, server, webroot).map(Evidence::NamesSite));
            evidence.extend(
                running
                    .iter()
                    .filter(|n| server.processes().contains(&n.as_str()))
                    .take(1)
                    .map(|n| Evidence::Running(n.clone())),
            );
            let existing = |rels: &'static [&'static str]| {
                rels.iter()
                    .filter(|r| root.join(r).is_file())
                    .map(|r| Path::new("/").join(r))
            };
            evidence.extend(existing(server.configs()).map(Evidence::Config));
            evidence.extend(existing(server.programs()).map(Evidence::Program));
            (!evidence.is_empty()).then_some(Found { server, evidence })
        })
        .collect();
    out.sort_by_key(|f| std::cmp::Reverse(f.weight()));
    out
}

/// The one server that serves the site: the only one found, or the only one
/// with the strongest evidence. None when nothing was found or it is a tie.
pub fn serving(found: &[Found]) -> Option<Server> {
    let top = found.first()?;
    let tie = found.get(1).is_some_and(|f| f.weight() == top.weight());
    (!tie).then_some(top.server)
}

/// The names of the running processes (`root/proc/*/comm`).
fn process_names(root: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(root.join("proc")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The first file (as seen from `/`) of `server`'s configuration under
/// `root` that names `webroot`: at most 4 levels deep, 2,000 files of at
/// most 1 MiB each (symlinks followed, as in `sites-enabled/`).
fn names_site(root: &Path, server: Server, webroot: &Path) -> Option<PathBuf> {
    let mut needles = vec![webroot.to_string_lossy().into_owned()];
    if let Ok(real) = webroot.canonicalize() {
        needles.push(real.to_string_lossy().into_owned());
    }
    needles.retain(|n| n.len() > 1);
    server.config_dirs().iter().find_map(|d| {
        walkdir::WalkDir::new(root.join(d))
            .follow_links(true)
            .max_depth(4)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file() && e.metadata().is_ok_and(|m| m.len() <= 1 << 20))
            .take(2000)
            .find(|e| {
                std::fs::read_to_string(e.path())
                    .is_ok_and(|t| needles.iter().any(|n| mentions(&t, n)))
            })
            .map(|e| Path::new("/").join(e.path().strip_prefix(root).unwrap_or(e.path())))
    })
}

/// `text` names `path` as a whole path (not `/srv/site2` for `/srv/site`).
fn mentions(text: &str, path: &str) -> bool {
    text.match_indices(path).any(|(i, _)| {
        text[i + path.len()..].chars().next().map_or(true, |c| {
            !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.')
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn nothing_found_in_an_empty_root() {
        let dir = tempfile::tempdir().unwrap();
        assert!(detect(dir.path(), Path::new("/srv/site")).is_empty());
        assert_eq!(serving(&[]), None);
    }

    #[test]
    fn installed_servers_tie_and_a_running_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "usr/sbin/nginx", "");
        put(r, "etc/nginx/nginx.conf", "http {}");
        put(r, "usr/bin/caddy", "");
        put(r, "etc/caddy/Caddyfile", ":80 {\n}\n");
        let found = detect(r, Path::new("/srv/site"));
        assert_eq!(found.len(), 2);
        assert_eq!(serving(&found), None, "{found:?}");
        put(r, "proc/412/comm", "caddy\n");
        put(r, "proc/self/comm", "nginx\n");
        let found = detect(r, Path::new("/srv/site"));
        assert_eq!(serving(&found), Some(Server::Caddy), "{found:?}");
        assert!(
            found[0].describe().contains("`caddy` runs"),
            "{}",
            found[0].describe()
        );
    }

    #[test]
    fn a_configuration_naming_the_webroot_beats_a_running_server() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "proc/1/comm", "nginx\n");
        put(r, "etc/nginx/nginx.conf", "root /srv/site2/current;");
        put(r, "proc/2/comm", "apache2\n");
        put(
            r,
            "etc/apache2/sites-available/site.conf",
            "DocumentRoot /srv/site/current/public\n",
        );
        let found = detect(r, Path::new("/srv/site"));
        assert_eq!(serving(&found), Some(Server::Apache), "{found:?}");
        assert_eq!(
            found[0].evidence[0],
            Evidence::NamesSite("/etc/apache2/sites-available/site.conf".into())
        );
        // /srv/site2 is not /srv/site: nginx has no such evidence.
        assert!(!found[1]
            .evidence
            .iter()
            .any(|e| matches!(e, Evidence::NamesSite(_))));
    }

    #[test]
    fn litespeed_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        put(dir.path(), "usr/local/lsws/bin/openlitespeed", "");
        put(dir.path(), "usr/local/lsws/conf/httpd_config.conf", "");
        let found = detect(dir.path(), Path::new("/srv/site"));
        assert_eq!(serving(&found), Some(Server::LiteSpeed));
        assert_eq!(Server::LiteSpeed.command(), None);
    }
}
