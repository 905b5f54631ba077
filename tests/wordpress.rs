//! Debian's WordPress package tree as a site's repository: it deploys (its
//! links into /etc and /usr/share/javascript as Git has them), nginx and
//! php-fpm serve it, and it survives 20 deploys while a visitor uploads into
//! `wp-content/uploads` through nginx + php-fpm (create, append, rename,
//! delete): afterwards the uploads are exactly what the visitor was told
//! they are: 0 lost, 0 resurrected, every request answered.

use crate::support;
use crate::support::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WP: &str = "/usr/share/wordpress";

/// The visitor's upload endpoint, committed next to WordPress's files.
const UPLOAD_PHP: &str = r#"<?php
// Test endpoint: what a media upload does to wp-content/uploads.
$d = __DIR__ . '/wp-content/uploads/rs';
if (!is_dir($d)) { @mkdir($d, 0777, true); }
$op = $_GET['op'] ?? '';
$n = basename($_GET['name'] ?? 'x');
$p = "$d/$n";
switch ($op) {
case 'create': echo file_put_contents($p, $_GET['text']) === false ? 'error' : 'ok'; break;
case 'append': if (!is_file($p)) { echo 'notfound'; break; }
    echo file_put_contents($p, $_GET['text'], FILE_APPEND) === false ? 'error' : 'ok'; break;
case 'rename': echo @rename($p, "$d/" . basename($_GET['to'])) ? 'ok' : 'notfound'; break;
case 'delete': echo @unlink($p) ? 'ok' : 'notfound'; break;
case 'version': require __DIR__ . '/wp-includes/version.php'; echo "wordpress $wp_version"; break;
default: echo 'bad op';
}
"#;

const FPM_INI: &str = "zend_extension=opcache.so\nopcache.enable=1\nopcache.validate_timestamps=0\ndisplay_errors=Off\nlog_errors=On\n";

#[derive(Default, Debug)]
struct Stats {
    requests: u64,
    failed: Vec<String>,
    creates: u64,
    appends: u64,
    renames: u64,
    deletes: u64,
}

/// Uploads through nginx until `stop`; returns what the visitor was told is there.
fn visitor(port: u16, stop: Arc<AtomicBool>) -> (BTreeMap<String, String>, Stats) {
    let mut http = support::Http::new(port);
    let mut model: BTreeMap<String, String> = BTreeMap::new();
    let mut st = Stats::default();
    let mut rng = support::app_writer::Rng(0x9e37_79b9_7f4a_7c15);
    let mut next = || rng.next();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let op = if model.len() < 30 { 0 } else { next() % 4 };
        let pick = |r: u64, m: &BTreeMap<String, String>| {
            m.keys().nth((r % m.len().max(1) as u64) as usize).cloned()
        };
        let (query, name, to, text) = match op {
            0 => {
                let name = format!("f{n}.jpg");
                let text = format!("c{n};");
                (
                    format!("op=create&name={name}&text={text}"),
                    name,
                    None,
                    text,
                )
            }
            1 => {
                let Some(name) = pick(next(), &model) else {
                    continue;
                };
                let text = format!("a{n};");
                (
                    format!("op=append&name={name}&text={text}"),
                    name,
                    None,
                    text,
                )
            }
            2 => {
                let Some(name) = pick(next(), &model) else {
                    continue;
                };
                let to = format!("r{n}.jpg");
                (
                    format!("op=rename&name={name}&to={to}"),
                    name,
                    Some(to),
                    String::new(),
                )
            }
            _ => {
                let Some(name) = pick(next(), &model) else {
                    continue;
                };
                (format!("op=delete&name={name}"), name, None, String::new())
            }
        };
        st.requests += 1;
        match http.get(&format!("/rs-upload.php?{query}")) {
            Ok((200, body)) if body == "ok" => match op {
                0 => {
                    model.insert(name, text);
                    st.creates += 1;
                }
                1 => {
                    if let Some(t) = model.get_mut(&name) {
                        t.push_str(&text);
                    }
                    st.appends += 1;
                }
                2 => {
                    let t = model.remove(&name).unwrap_or_default();
                    model.insert(to.unwrap_or_default(), t);
                    st.renames += 1;
                }
                _ => {
                    model.remove(&name);
                    st.deletes += 1;
                }
            },
            other => st.failed.push(format!("{query}: {other:?}")),
        }
        std::thread::sleep(Duration::from_micros(500 + next() % 2500));
    }
    (model, st)
}

#[test]
fn debian_wordpress_survives_twenty_deploys_under_an_uploading_visitor() {
    let _heavy = heavy();
    let install = "apt-get install -y --no-install-recommends wordpress nginx-light php-fpm";
    let wp = support::require(
        "Debian's wordpress package",
        Path::new(WP)
            .join("wp-includes")
            .is_dir()
            .then(|| WP.into()),
        install,
    );
    let nginx = support::require("nginx", support::find_program(&["nginx"]), install);
    let fpm = support::require("php-fpm", support::find_php_fpm(), install);
    let (Some(_), Some(nginx), Some(fpm)) = (wp, nginx, fpm) else {
        return;
    };
    let w = World::new(&[], "");
    // The repository: the package's tree as it is (links included), plus the endpoint.
    let out = Command::new("cp")
        .args(["-a", &format!("{WP}/."), w.repo.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.write_files(&[
        ("rs-upload.php", UPLOAD_PHP),
        (".gitignore", "wp-content/uploads/\n"),
        ("rs-deploy.txt", "0"),
    ]);
    w.commit("Debian's wordpress package tree");
    let srv = w.tmp.path().join("srv");
    std::fs::create_dir_all(&srv).unwrap();
    let sock = srv.join("php-fpm.sock");
    std::fs::write(
        &w.config,
        format!(
            "webroot: {}\nsource:\n  repo: {}\n  branch: main\npreset: wordpress\ndrain: 300ms\nopcache:\n  fastcgi: unix:{}\n",
            w.webroot.display(),
            w.repo.display(),
            sock.display()
        ),
    )
    .unwrap();
    let (_, first) = {
        let out = w.run(&["deploy"]);
        let e = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "first deploy failed:\n{e}");
        ((), e)
    };
    assert!(
        first.contains(
            "wp-includes/certificates/ca-bundle.crt -> /etc/ssl/certs/ca-certificates.crt"
        ),
        "the CA bundle link is named: {first}"
    );
    assert_eq!(
        std::fs::read_link(w.root().join("wp-includes/certificates/ca-bundle.crt")).unwrap(),
        Path::new("/etc/ssl/certs/ca-certificates.crt")
    );
    let fpm_dir = srv.join("fpm");
    let _fpm = Fpm::start(Pool::new(&fpm, &fpm_dir, &sock, FPM_INI, 4));
    let nginx = Nginx::for_app(&nginx, &srv, &w.config, &sock);
    let port = nginx.port();
    let mut http = support::Http::new(port);
    let (status, body) = http.get("/readme.html").unwrap();
    assert!(
        status == 200 && body.contains("WordPress"),
        "{status} {body}"
    );
    let (status, body) = http.get("/rs-upload.php?op=version").unwrap();
    assert!(
        status == 200 && body.starts_with("wordpress "),
        "PHP from the tree: {status} {body}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let visitor = {
        let stop = stop.clone();
        std::thread::spawn(move || visitor(port, stop))
    };
    // Let the visitor upload its first files before the first deploy.
    let t = std::time::Instant::now();
    while std::fs::read_dir(w.root().join("wp-content/uploads/rs"))
        .map(|d| d.count())
        .unwrap_or(0)
        < 30
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the visitor uploads nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for i in 1..=20 {
        w.write_files(&[("rs-deploy.txt", &i.to_string())]);
        w.commit(&format!("deploy {i}"));
        let out = w.run(&["deploy"]);
        assert!(
            out.status.success(),
            "deploy {i} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (model, st) = visitor.join().unwrap();
    assert!(
        st.failed.is_empty(),
        "{} requests failed: {:?}",
        st.failed.len(),
        &st.failed[..st.failed.len().min(10)]
    );
    assert!(
        st.creates > 30 && st.appends > 0 && st.renames > 0 && st.deletes > 0,
        "the visitor did little: {st:?}"
    );
    let disk = served_contents(&w.link().join("wp-content/uploads/rs"));
    let lost: Vec<&String> = model.keys().filter(|k| !disk.contains_key(*k)).collect();
    let resurrected: Vec<&String> = disk.keys().filter(|k| !model.contains_key(*k)).collect();
    let differ: Vec<&String> = model
        .iter()
        .filter(|(k, v)| disk.get(*k).is_some_and(|d| d != *v))
        .map(|(k, _)| k)
        .collect();
    eprintln!(
        "wordpress: {} requests ({} creates, {} appends, {} renames, {} deletes) over 20 deploys; {} uploads at the end; lost {}, resurrected {}, differing {}",
        st.requests, st.creates, st.appends, st.renames, st.deletes, model.len(), lost.len(), resurrected.len(), differ.len()
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(resurrected.is_empty(), "resurrected: {resurrected:?}");
    assert!(differ.is_empty(), "content differs: {differ:?}");
    assert_eq!(read(&w.link().join("rs-deploy.txt")), "20");
    let (status, body) = http.get("/rs-deploy.txt").unwrap();
    assert_eq!((status, body.as_str()), (200, "20"));
}
