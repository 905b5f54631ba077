//! Real framework applications (fixtures/laravel-app, fixtures/symfony-app)
//! deployed under load: each version's controller and template print their
//! version (`C7 T7`), so a response is *failed* (not a 200 with both),
//! *mixed* (`C6 T7`: old code, new template) or *stale* (older than a deploy
//! that has returned). A writer (`app_writer`) creates, appends to and
//! deletes user files through the app meanwhile.
//!
//! Who runs what ([`RunAs`]): php-fpm's pool runs as www-data whenever the
//! test runs as root; rootswap (and so the hooks) runs as root or as the
//! site user www-data.

use super::app_writer::{self, Verdict, Writes};
use super::fpm::{Fpm, Pool};
use super::net::Http;
use super::nginx::Nginx;
use super::tools::{
    as_user, find_php_fpm, find_program, gid_of, require, require_root, require_tool, uid_of,
};
use super::world::{bin, read, succeeded, World};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One application of the fixtures: where its version lives and how it runs.
pub struct App {
    /// Directory under `fixtures/`.
    pub fixture: &'static str,
    /// The file holding `const VERSION = 'C0';`.
    pub controller: &'static str,
    /// The template, rewritten as `template_line` with the version.
    pub template: &'static str,
    /// The template's text for a version: `{{ $controller }} T7`.
    pub template_line: fn(u64) -> String,
    /// The framework's files this app needs (a Debian package's autoloader).
    pub framework: &'static str,
    /// The Debian packages that provide it (the install hint).
    pub packages: &'static str,
    /// php-fpm's whole ini (no conf.d is read).
    pub fpm_ini: &'static str,
    /// The site's rootswap.yaml after webroot, source and opcache.
    pub yaml: &'static str,
    /// Where the writer writes: (the `/write` action's place, its
    /// directory under ROOT).
    pub places: &'static [(&'static str, &'static str)],
    /// The directories under ROOT the framework's docs say the web server
    /// must be able to write, given to php-fpm's user after the first
    /// deploy (when the test runs as root, rootswap as root).
    pub given: &'static [&'static str],
    /// The directories under ROOT the app writes at run time (user content,
    /// logs, sessions): every entry must still belong to php-fpm's user at
    /// the end.
    pub writable: &'static [&'static str],
}

/// Who runs rootswap (and so its hooks).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RunAs {
    /// The test's own user (root under CI, as `sudo rootswap deploy`).
    TestUser,
    /// The site user www-data, as the packaged systemd unit runs it; needs
    /// root to switch to it.
    SiteUser,
}

/// The site user when the test runs as root.
const SITE_USER: &str = "www-data";

/// What one run under load saw: the visitors and the writer.
#[derive(Debug)]
pub struct Run {
    pub seen: Seen,
    pub writes: Writes,
    /// When each deploy ran (ms since the load started), for the stories
    /// of the writes a check finds wrong.
    pub deploys: Vec<String>,
}

/// What the visitors saw.
#[derive(Default, Debug)]
pub struct Seen {
    pub requests: u64,
    pub failed: Vec<String>,
    pub mixed: Vec<String>,
    pub stale: Vec<String>,
}

impl Seen {
    /// Prints the figures and asserts 0 failed, 0 mixed, 0 stale.
    pub fn assert_clean(&self, what: &str) {
        self.print(what);
        assert!(
            self.requests > 200,
            "the visitors did little: {}",
            self.requests
        );
        let first = |v: &Vec<String>| v[..v.len().min(10)].to_vec();
        assert!(self.failed.is_empty(), "failed: {:?}", first(&self.failed));
        assert!(self.mixed.is_empty(), "mixed: {:?}", first(&self.mixed));
        assert!(self.stale.is_empty(), "stale: {:?}", first(&self.stale));
    }

    /// Prints the figures.
    pub fn print(&self, what: &str) {
        eprintln!(
            "{what}: {} requests, {} failed, {} mixed, {} stale; first failed {:?}, first mixed {:?}",
            self.requests,
            self.failed.len(),
            self.mixed.len(),
            self.stale.len(),
            self.failed.first(),
            self.mixed.first()
        );
    }
}

/// A deployed app behind nginx + php-fpm.
pub struct Site {
    pub w: World,
    pub port: u16,
    app: &'static App,
    /// `Some((uid, gid))` when rootswap and the repository's commits run as
    /// the site user.
    site_user: Option<(u32, u32)>,
    /// The uid every entry of `app.writable` must belong to at the end.
    pub owner: u32,
    /// HOME for rootswap as the site user.
    home: PathBuf,
    _fpm: Option<Fpm>,
    _nginx: Option<Nginx>,
}

impl App {
    fn write_version(&self, w: &World, v: u64) {
        let controller = read(&w.repo.join(self.controller));
        let start = controller
            .find("VERSION = '")
            .expect("the VERSION constant")
            + 11;
        let end = start + controller[start..].find('\'').expect("its closing quote");
        let text = format!("{}C{v}{}", &controller[..start], &controller[end..]);
        w.write_files(&[
            (self.controller, &text),
            (self.template, &(self.template_line)(v)),
        ]);
    }

    /// The app committed, deployed once with `self.yaml` and `extra_yaml`,
    /// served by nginx + php-fpm, rootswap run as the test's user; `None`
    /// when a tool is missing (outside CI).
    pub fn serve(&'static self, extra_yaml: &str) -> Option<Site> {
        self.serve_as(extra_yaml, RunAs::TestUser)
    }

    /// `serve` with rootswap run as `run_as`. As root, php-fpm's pool runs
    /// as www-data; with [`RunAs::TestUser`] the app's writable directories
    /// are given to it after the first deploy (as an administrator sets a
    /// site up); with [`RunAs::SiteUser`] the repository, webroot and config
    /// belong to www-data and rootswap runs as www-data from the start.
    pub fn serve_as(&'static self, extra_yaml: &str, run_as: RunAs) -> Option<Site> {
        let (fpm_bin, nginx_bin) = self.tools()?;
        let as_root = unsafe { libc::geteuid() } == 0;
        if run_as == RunAs::SiteUser
            && (!require_root("running rootswap as the site user")
                || require_tool("setpriv").is_none())
        {
            return None;
        }
        let w = World::new(&[], "");
        self.commit_app(&w);
        let srv = w.tmp.path().join("srv");
        let home = w.tmp.path().join("home");
        for d in [&srv, &home] {
            std::fs::create_dir_all(d).expect("srv and home dirs");
        }
        let sock = srv.join("php-fpm.sock");
        std::fs::write(
            &w.config,
            format!(
                "webroot: {}\nsource:\n  repo: {}\n  branch: main\nopcache:\n  fastcgi: unix:{}\n  status_path: /fpm-status\n{}{extra_yaml}",
                w.webroot.display(),
                w.repo.display(),
                sock.display(),
                self.yaml,
            ),
        )
        .expect("config");
        let site_user = (run_as == RunAs::SiteUser).then(|| (uid_of(SITE_USER), gid_of(SITE_USER)));
        if as_root {
            // php-fpm's user (and rootswap as the site user) must reach the
            // trees inside the test's 0700 directory.
            sh(Command::new("chmod").arg("755").arg(w.tmp.path()));
        }
        if site_user.is_some() {
            sh(Command::new("chown")
                .args(["-R", &format!("{SITE_USER}:{SITE_USER}")])
                .args([&w.repo, &w.webroot, &w.config, &home]));
        }
        let mut site = Site {
            owner: if as_root {
                uid_of(SITE_USER)
            } else {
                unsafe { libc::geteuid() }
            },
            w,
            port: 0,
            app: self,
            site_user,
            home,
            _fpm: None,
            _nginx: None,
        };
        site.ok(&["deploy"]);
        if as_root && site_user.is_none() {
            site.give_writable_dirs();
        }
        let fpm_dir = srv.join("fpm");
        site._fpm = Some(Fpm::start(Pool {
            pool_user: as_root.then(|| SITE_USER.to_string()),
            listen_user: site_user.map(|_| SITE_USER.to_string()),
            status_path: Some("/fpm-status".into()),
            ..Pool::new(&fpm_bin, &fpm_dir, &sock, self.fpm_ini, 4)
        }));
        let nginx = Nginx::for_app(&nginx_bin, &srv, &site.w.config, &sock);
        let port = nginx.port();
        (site._nginx, site.port) = (Some(nginx), port);
        let (status, body) = Http::new(port).get("/").expect("GET /");
        assert_eq!((status, body.trim()), (200, "C0 T0"), "the app answers");
        Some(site)
    }

    /// php-fpm and nginx (after checking the framework and php).
    fn tools(&self) -> Option<(PathBuf, PathBuf)> {
        let install = format!(
            "apt-get install -y --no-install-recommends {} php-cli php-fpm nginx-light",
            self.packages
        );
        let fw = Path::new(self.framework);
        let fw = require("the framework", fw.is_file().then(|| fw.into()), &install);
        let php = require("php", find_program(&["php"]), &install);
        let nginx = require("nginx", find_program(&["nginx"]), &install);
        let fpm = require("php-fpm", find_php_fpm(), &install);
        let (Some(_), Some(_), Some(nginx), Some(fpm)) = (fw, php, nginx, fpm) else {
            return None;
        };
        Some((fpm, nginx))
    }

    /// The fixture copied into the world's repository and committed as version 0.
    fn commit_app(&self, w: &World) {
        let app = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(self.fixture);
        sh(Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", app.display()))
            .arg(&w.repo));
        self.write_version(w, 0);
        w.commit(&format!("the {} app", self.fixture));
    }
}

/// Runs `cmd` and asserts it succeeded.
fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Site {
    /// A command running `rootswap -c <config>` as this site's rootswap user.
    fn rootswap(&self) -> Command {
        let mut cmd = match self.site_user {
            Some((uid, gid)) => as_user(uid, gid, SITE_USER, &self.home, &bin()),
            None => Command::new(bin()),
        };
        cmd.arg("-c").arg(&self.w.config);
        cmd
    }

    /// Runs rootswap with `args` as this site's rootswap user.
    pub fn run(&self, args: &[&str]) -> Output {
        self.rootswap().args(args).output().expect("rootswap runs")
    }

    /// `run`, asserting success.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, &self.run(args))
    }

    /// Commits the repository's work tree, as the user who owns it.
    fn commit(&self, msg: &str) {
        let Some((uid, gid)) = self.site_user else {
            self.w.commit(msg);
            return;
        };
        for args in [vec!["add", "-A"], vec!["commit", "-q", "-m", msg]] {
            sh(as_user(uid, gid, SITE_USER, &self.home, Path::new("git"))
                .args(["-c", "gc.auto=0", "-c", "maintenance.auto=false"])
                .args(&args)
                .current_dir(&self.w.repo)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1"));
        }
    }

    /// Gives the app's writable directories in ROOT (and the shared
    /// directories) to www-data, as an administrator sets a site up.
    fn give_writable_dirs(&self) {
        let root = self.w.root();
        let mut dirs: Vec<PathBuf> = self.app.given.iter().map(|d| root.join(d)).collect();
        let shared = self.w.webroot.join("shared");
        if shared.exists() {
            dirs.push(shared);
        }
        for d in &dirs {
            std::fs::create_dir_all(d).expect("a writable dir");
        }
        sh(Command::new("chown")
            .args(["-R", &format!("{SITE_USER}:{SITE_USER}")])
            .args(&dirs));
    }

    /// Entries under the app's writable directories in ROOT and in the live
    /// tree (shared directories followed) not owned by `self.owner`.
    pub fn foreign_owned(&self) -> Vec<String> {
        let mut out = Vec::new();
        for tree in [self.w.root(), self.w.link()] {
            for d in self
                .app
                .writable
                .iter()
                .chain(self.app.places.iter().map(|(_, d)| d))
            {
                out.extend(app_writer::foreign_owned(&tree.join(d), self.owner));
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Prints the run's figures and asserts the bar: 0 failed,
    /// mixed or stale responses; every write answered and visible to the
    /// next request; 0 lost, resurrected or differing files; every entry of
    /// the writable directories still owned by php-fpm's user.
    pub fn assert_clean(&self, run: &Run, what: &str) {
        let (s, w) = (&run.seen, &run.writes);
        let v = self.compare(w);
        let foreign = self.foreign_owned();
        eprintln!(
            "{what}: {} writes ({} creates, {} appends, {} deletes), {} failed, {} unseen by the next request; \
             {} files live: {} lost, {} resurrected, {} differing; {} entries not owned by uid {}",
            w.done, w.creates, w.appends, w.deletes, w.failed.len(), w.unseen.len(), v.live,
            v.lost.len(), v.resurrected.len(), v.differing.len(), foreign.len(), self.owner
        );
        if !(w.unseen.is_empty()
            && v.resurrected.is_empty()
            && v.lost.is_empty()
            && v.differing.is_empty())
        {
            let longest = match w.longest_unseen {
                Duration::MAX => "not within 5 s".to_string(),
                d => format!("{d:?}"),
            };
            eprintln!(
                "{what}: longest delay before a write was visible: {longest}; deploys: {:?}",
                run.deploys
            );
            for bad in v.lost.iter().chain(&v.resurrected).chain(&v.differing) {
                let name = bad.split(':').next().unwrap_or("");
                let story = w
                    .log
                    .iter()
                    .find(|((_, n), _)| name.ends_with(&format!("/{n}")));
                eprintln!("  {bad}: {story:?}");
            }
        }
        s.assert_clean(what);
        let first = |v: &[String]| v[..v.len().min(10)].to_vec();
        assert!(w.done > 50, "the writer did little: {}", w.done);
        assert!(w.failed.is_empty(), "writes failed: {:?}", first(&w.failed));
        assert!(
            w.unseen.is_empty(),
            "writes not seen by the next request: {:?}",
            first(&w.unseen)
        );
        assert!(v.lost.is_empty(), "lost: {:?}", first(&v.lost));
        assert!(
            v.resurrected.is_empty(),
            "resurrected: {:?}",
            first(&v.resurrected)
        );
        assert!(
            v.differing.is_empty(),
            "differing: {:?}",
            first(&v.differing)
        );
        assert!(
            foreign.is_empty(),
            "not owned by uid {}: {:?}",
            self.owner,
            first(&foreign)
        );
    }

    /// The served tree against what the writer was told.
    pub fn compare(&self, writes: &Writes) -> Verdict {
        app_writer::compare(&self.w.link(), self.app.places, &writes.model)
    }

    /// Deploys versions 1..=n under three visitors and a writer; returns
    /// what they saw.
    pub fn deploy_under_load(&self, n: u64) -> Run {
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let visitors: Vec<_> = (0..3)
            .map(|_| {
                let (stop, live, seen) = (stop.clone(), live.clone(), seen.clone());
                let port = self.port;
                std::thread::spawn(move || visitor(port, stop, live, seen))
            })
            .collect();
        let start = Instant::now();
        let writer = {
            let (stop, port, places) = (stop.clone(), self.port, self.app.places);
            std::thread::spawn(move || app_writer::writer(port, places, stop, start))
        };
        let mut deploys = Vec::new();
        std::thread::sleep(Duration::from_millis(200));
        for v in 1..=n {
            self.app.write_version(&self.w, v);
            self.commit(&format!("version {v}"));
            let began = start.elapsed().as_millis();
            let out = self.run(&["deploy"]);
            deploys.push(format!("{v}: {began}-{} ms", start.elapsed().as_millis()));
            assert!(
                out.status.success(),
                "deploy {v} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            live.store(v, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        for v in visitors {
            v.join().expect("visitor thread");
        }
        let writes = writer.join().expect("writer thread");
        let seen = Arc::try_unwrap(seen)
            .expect("visitors are done")
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        Run {
            seen,
            writes,
            deploys,
        }
    }
}

/// Requests `/` until `stop`; `live` is the version every response must at
/// least show (set once a deploy has returned).
fn visitor(port: u16, stop: Arc<AtomicBool>, live: Arc<AtomicU64>, seen: Arc<Mutex<Seen>>) {
    let mut http = Http::new(port);
    while !stop.load(Ordering::Relaxed) {
        let floor = live.load(Ordering::SeqCst);
        let r = http.get("/");
        let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
        s.requests += 1;
        let body = match r {
            Ok((200, body)) => body,
            other => {
                s.failed.push(format!("{other:?}"));
                continue;
            }
        };
        let parts: Vec<&str> = body.split_whitespace().collect();
        let version = |i: usize, prefix: char| {
            parts
                .get(i)
                .and_then(|p| p.strip_prefix(prefix)?.parse::<u64>().ok())
        };
        let (Some(c), Some(t)) = (version(0, 'C'), version(1, 'T')) else {
            s.failed.push(format!("200 {body:?}"));
            continue;
        };
        if c != t {
            s.mixed.push(body.trim().to_string());
        } else if c < floor {
            s.stale
                .push(format!("{} after version {floor} went live", body.trim()));
        }
    }
}
