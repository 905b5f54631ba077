//! A real Laravel 8 application (Debian's `php-laravel-framework`, the app in
//! `fixtures/laravel-app`) deployed 20 times under load through real nginx +
//! php-fpm (OPcache on, `validate_timestamps=0`) with the `laravel` preset's
//! production caches (`config:cache`, `route:cache`, `view:cache`).
//!
//! Every version's controller and template print their version (`C7 T7`).
//! `config:cache` bakes absolute paths into `bootstrap/cache/config.php`; a
//! snapshot that still named ROOT's templates would render the new template
//! from the old controller (`C6 T7`: mixed) while the checkout rewrites ROOT,
//! and old and new code would write one compiled-view file (empty pages). The
//! assertions: 0 failed, 0 mixed, 0 stale responses, and the snapshot's caches
//! name the snapshot. The control turns the snapshot hooks off and shows the
//! test sees the damage.

mod common;
mod sites_support;

use common::*;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// php-fpm reads only this ini (no conf.d): the extensions Laravel needs,
/// Debian's include_path for the framework, OPcache as production runs it.
const FPM_INI: &str =
    "extension=mbstring\nextension=ctype\nextension=tokenizer\nextension=fileinfo\n\
                       zend_extension=opcache.so\nopcache.enable=1\nopcache.validate_timestamps=0\n\
                       display_errors=Off\nlog_errors=On\ninclude_path=\".:/usr/share/php\"\n";

const CONTROLLER: &str = "app/Http/Controllers/VersionController.php";
const TEMPLATE: &str = "resources/views/version.blade.php";

/// What the visitors saw.
#[derive(Default, Debug)]
struct Seen {
    requests: u64,
    failed: Vec<String>,
    mixed: Vec<String>,
    stale: Vec<String>,
}

/// Requests `/` until `stop`; `live` is the version every response must at
/// least show (set once a deploy has returned).
fn visitor(port: u16, stop: Arc<AtomicBool>, live: Arc<AtomicU64>, seen: Arc<Mutex<Seen>>) {
    let mut http = sites_support::Http::new(port);
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
        let (Some(c), Some(t)) = (
            parts
                .first()
                .and_then(|p| p.strip_prefix('C')?.parse::<u64>().ok()),
            parts
                .get(1)
                .and_then(|p| p.strip_prefix('T')?.parse::<u64>().ok()),
        ) else {
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

fn write_version(w: &World, v: u64) {
    let controller = read(&w.repo.join(CONTROLLER));
    let start = controller
        .find("VERSION = '")
        .expect("the VERSION constant")
        + 11;
    let end = start + controller[start..].find('\'').expect("its closing quote");
    let text = format!("{}C{v}{}", &controller[..start], &controller[end..]);
    w.write_files(&[
        (CONTROLLER, &text),
        (TEMPLATE, &format!("{{{{ $controller }}}} T{v}\n")),
    ]);
}

struct Site {
    w: World,
    port: u16,
    _fpm: sites_support::Proc,
    _nginx: sites_support::Proc,
}

/// The app committed, deployed once, served by nginx + php-fpm; `None` when a
/// tool is missing (outside CI).
fn laravel_site(extra_yaml: &str) -> Option<Site> {
    let install = "apt-get install -y --no-install-recommends php-laravel-framework php-cli php-fpm nginx-light";
    let framework = Path::new("/usr/share/php/Illuminate/autoload.php");
    let fw = sites_support::require(
        "Debian's php-laravel-framework",
        framework.is_file().then(|| framework.into()),
        install,
    );
    let php = sites_support::require("php", sites_support::find_program(&["php"]), install);
    let nginx = sites_support::require("nginx", sites_support::find_program(&["nginx"]), install);
    let fpm = sites_support::require("php-fpm", sites_support::find_php_fpm(), install);
    let (Some(_), Some(_), Some(nginx), Some(fpm)) = (fw, php, nginx, fpm) else {
        return None;
    };
    let w = World::new(&[], "");
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/laravel-app");
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
    write_version(&w, 0);
    w.commit("a Laravel 8 app on Debian's framework");
    let srv = w.tmp.path().join("srv");
    std::fs::create_dir_all(&srv).expect("srv dir");
    let sock = srv.join("php-fpm.sock");
    // The preset's hooks, minus composer and migrate (no network, no database
    // here): the three production caches, exactly as the preset runs them.
    std::fs::write(
        &w.config,
        format!(
            "webroot: {}\nsource:\n  repo: {}\n  branch: main\npreset: laravel\ndrain: 200ms\n\
             opcache:\n  fastcgi: unix:{}\nhooks:\n  after_checkout:\n    - php artisan config:cache\n    \
             - php artisan route:cache\n    - php artisan view:cache\n{extra_yaml}",
            w.webroot.display(),
            w.repo.display(),
            sock.display()
        ),
    )
    .expect("config");
    w.ok(&["deploy"]);
    let fpm = sites_support::start_fpm(&fpm, &srv.join("fpm"), &sock, FPM_INI, 4);
    let (nginx, port) = sites_support::start_nginx(&nginx, &srv, &w.config, &sock);
    let mut http = sites_support::Http::new(port);
    let (status, body) = http.get("/").expect("GET /");
    assert_eq!((status, body.trim()), (200, "C0 T0"), "the app answers");
    Some(Site {
        w,
        port,
        _fpm: fpm,
        _nginx: nginx,
    })
}

/// Deploys versions 1..=n under three visitors; returns what they saw.
fn deploy_under_load(site: &Site, n: u64) -> Seen {
    let stop = Arc::new(AtomicBool::new(false));
    let live = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let visitors: Vec<_> = (0..3)
        .map(|_| {
            let (stop, live, seen) = (stop.clone(), live.clone(), seen.clone());
            let port = site.port;
            std::thread::spawn(move || visitor(port, stop, live, seen))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for v in 1..=n {
        write_version(&site.w, v);
        site.w.commit(&format!("version {v}"));
        let out = site.w.run(&["deploy"]);
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

fn report(what: &str, s: &Seen) {
    eprintln!(
        "laravel {what}: {} requests, {} failed, {} mixed, {} stale; first failed {:?}, first mixed {:?}",
        s.requests,
        s.failed.len(),
        s.mixed.len(),
        s.stale.len(),
        s.failed.first(),
        s.mixed.first()
    );
}

#[test]
fn laravel_with_production_caches_serves_one_version_through_twenty_deploys() {
    let Some(site) = laravel_site("") else {
        return;
    };
    let s = deploy_under_load(&site, 20);
    report("with the preset's snapshot hooks", &s);
    assert!(s.requests > 200, "the visitors did little: {}", s.requests);
    assert!(
        s.failed.is_empty(),
        "failed: {:?}",
        &s.failed[..s.failed.len().min(10)]
    );
    assert!(
        s.mixed.is_empty(),
        "mixed: {:?}",
        &s.mixed[..s.mixed.len().min(10)]
    );
    assert!(
        s.stale.is_empty(),
        "stale: {:?}",
        &s.stale[..s.stale.len().min(10)]
    );
    // Each tree's caches name that tree: ROOT's name ROOT, the kept snapshot's
    // name the snapshot (it served with them).
    let root = site.w.root();
    let config = read(&root.join("bootstrap/cache/config.php"));
    assert!(
        config.contains(&format!("{}/", root.display())),
        "ROOT's config cache names ROOT"
    );
    for snap in site.w.snapshots() {
        let dir = site.w.webroot.join(&snap);
        let cached = read(&dir.join("bootstrap/cache/config.php"));
        assert!(
            !cached.contains(&format!("{}/", root.display())),
            "{snap}'s config cache names ROOT"
        );
        assert!(
            cached.contains(&format!("{}/", dir.display())),
            "{snap}'s config cache names itself"
        );
    }
}
