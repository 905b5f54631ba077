//! Real framework applications (fixtures/laravel-app, fixtures/symfony-app)
//! deployed under load: each version's controller and template print their
//! version (`C7 T7`), so a response is *failed* (not a 200 with both),
//! *mixed* (`C6 T7`: old code, new template) or *stale* (older than a deploy
//! that has returned).

use super::{find_php_fpm, find_program, require, start_fpm, start_nginx, Http, Proc};
use crate::common::{read, World};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    _fpm: Proc,
    _nginx: Proc,
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
    /// served by nginx + php-fpm; `None` when a tool is missing (outside CI).
    pub fn serve(&'static self, extra_yaml: &str) -> Option<Site> {
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
        let w = World::new(&[], "");
        let app = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(self.fixture);
        let out = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", app.display()))
            .arg(&w.repo)
            .output()
            .expect("cp runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.write_version(&w, 0);
        w.commit(&format!("the {} app", self.fixture));
        let srv = w.tmp.path().join("srv");
        std::fs::create_dir_all(&srv).expect("srv dir");
        let sock = srv.join("php-fpm.sock");
        std::fs::write(
            &w.config,
            format!(
                "webroot: {}\nsource:\n  repo: {}\n  branch: main\nopcache:\n  fastcgi: unix:{}\n{}{extra_yaml}",
                w.webroot.display(),
                w.repo.display(),
                sock.display(),
                self.yaml,
            ),
        )
        .expect("config");
        w.ok(&["deploy"]);
        let fpm = start_fpm(&fpm, &srv.join("fpm"), &sock, self.fpm_ini, 4);
        let (nginx, port) = start_nginx(&nginx, &srv, &w.config, &sock);
        let (status, body) = Http::new(port).get("/").expect("GET /");
        assert_eq!((status, body.trim()), (200, "C0 T0"), "the app answers");
        Some(Site {
            w,
            port,
            app: self,
            _fpm: fpm,
            _nginx: nginx,
        })
    }
}

impl Site {
    /// Deploys versions 1..=n under three visitors; returns what they saw.
    pub fn deploy_under_load(&self, n: u64) -> Seen {
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
        std::thread::sleep(Duration::from_millis(200));
        for v in 1..=n {
            self.app.write_version(&self.w, v);
            self.w.commit(&format!("version {v}"));
            let out = self.w.run(&["deploy"]);
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
        Arc::try_unwrap(seen)
            .expect("visitors are done")
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
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
