//! DokuWiki from Debian's `dokuwiki` package, flattened into one tree as
//! upstream ships it (code, `conf/`, `lib/plugins`, `lib/tpl` and `data/`'s
//! committed files; Debian's links into /etc and /var/lib resolved, its
//! `inc/preload.php` removed so `conf/` and `data/` are the tree's own),
//! deployed 20 times through real nginx + php-fpm (OPcache on,
//! `validate_timestamps=0`, reset over FastCGI, `drain: auto`) while people
//! use the wiki:
//!
//! - two editors save their pages (`do=edit`, then `do=save` with the form's
//!   `sectok`, `date` and `changecheck`) and read each save back;
//! - a visitor creates pages in namespaces of their own and deletes them
//!   (DokuWiki deletes a page saved with empty text and removes the emptied
//!   namespace directories, and it creates and removes `data/locks/<md5>`
//!   directories around every write);
//! - an uploader sends images through the media manager's form (the upload
//!   that works without JavaScript) and fetches each one back;
//! - two readers request a page.
//!
//! Every page prints the version twice, from two files each deploy changes:
//! the tagline from `conf/local.php` (`C7`) and a marker in the template
//! (`T7`): `C6 T7` is a mixed page, `C6 T6` once version 7 went live is stale.
//!
//! `data/`'s runtime directories are gitignored and named in
//! `user_content.preserve` (docs/flow.md), and belong to php-fpm's user
//! (www-data when the test runs as root). The assertions: all deploys
//! succeed; 0 failed requests, 0 mixed, 0 stale pages; 0 acknowledged edits
//! or uploads lost, 0 deleted pages back; no entry under `data/` owned by
//! anyone but php-fpm's user; every write seen by the next request with
//! `data/`'s directories shared, and within two seconds (the carry's cadence plus a pass, with room for a loaded machine)
//! with the copy-back.

use crate::support;
use crate::support::app_writer::Rng;
use crate::support::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DW: &str = "/usr/share/dokuwiki";
const DW_CONF: &str = "/etc/dokuwiki";
const DW_DATA: &str = "/var/lib/dokuwiki/data";

/// `data/`'s directories DokuWiki writes at run time (not committed).
const RUNTIME: [&str; 11] = [
    "pages",
    "attic",
    "meta",
    "media",
    "media_attic",
    "media_meta",
    "locks",
    "cache",
    "index",
    "tmp",
    "log",
];

/// `conf/` files DokuWiki's ACL and user manager write (not committed).
const RUNTIME_CONF: [&str; 2] = ["acl.auth.php", "users.auth.php"];

/// php-fpm reads only this ini (no conf.d): what DokuWiki needs, OPcache as
/// production runs it. The session directory is appended by the test.
const FPM_INI: &str = "extension=mbstring\nextension=ctype\nextension=xml\nextension=iconv\n\
                       zend_extension=opcache.so\nopcache.enable=1\nopcache.validate_timestamps=0\n\
                       display_errors=Off\nlog_errors=On\n";

/// A 1×1 PNG; each upload appends its own bytes after IEND (DokuWiki checks
/// the image header only).
const PNG: [u8; 67] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x3a, 0x7e, 0x9b,
    0x55, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00,
    0x02, 0x00, 0x01, 0x48, 0xaf, 0xa4, 0x71, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

/// What DokuWiki shows for a page that does not exist ("This topic does not
/// exist yet", or "This page does not exist anymore" once deleted);
/// `do=export_raw` falls back to it.
const GONE: &str = "does not exist";

/// How long a write may take to show before the check gives up.
const VISIBLE_WITHIN: Duration = Duration::from_secs(3);

/// With the copy-back, how late a write may reach the tree that serves.
const CARRIED_WITHIN: Duration = Duration::from_millis(2000);

/// What everyone saw.
#[derive(Default, Debug)]
struct Stats {
    requests: u64,
    edits: u64,
    creates: u64,
    deletes: u64,
    uploads: u64,
    failed: Vec<String>,
    mixed: Vec<String>,
    stale: Vec<String>,
    /// Writes the next request did not see, with how long until it did.
    unseen: Vec<String>,
    /// How late each unseen write was seen (`u128::MAX`: never).
    late_ms: Vec<u128>,
}

/// What the users were told is in the wiki: page id → text (None: deleted),
/// media id → bytes.
#[derive(Default)]
struct Model {
    pages: BTreeMap<String, Option<String>>,
    media: BTreeMap<String, Vec<u8>>,
}

/// State the users and the deploy loop share.
struct Shared {
    stop: AtomicBool,
    /// The version every page must show at least (set when a deploy returned).
    live: AtomicU64,
    stats: Mutex<Stats>,
}

impl Shared {
    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One browser: keep-alive connections, DokuWiki's session cookie.
struct Browser {
    agent: ureq::Agent,
    base: String,
    cookies: BTreeMap<String, String>,
    shared: Arc<Shared>,
    /// The tree (`ROOT` or a snapshot) that served the last wiki page.
    tree: String,
}

/// An answer: status, `Location`, body.
struct Answer {
    status: u16,
    location: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Browser {
    fn new(port: u16, shared: Arc<Shared>) -> Browser {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .max_redirects(0)
            .http_status_as_error(false)
            .build()
            .into();
        Browser {
            agent,
            base: format!("http://127.0.0.1:{port}"),
            cookies: BTreeMap::new(),
            shared,
            tree: String::new(),
        }
    }

    fn cookie(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn finish(
        &mut self,
        what: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer, String> {
        self.shared.stats().requests += 1;
        let mut r = r.map_err(|e| format!("{what}: {e}"))?;
        for c in r.headers().get_all("set-cookie") {
            let pair = c.to_str().unwrap_or("").split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                self.cookies
                    .insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        let location = r
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        let status = r.status().as_u16();
        let body = r
            .body_mut()
            .read_to_vec()
            .map_err(|e| format!("{what}: body: {e}"))?;
        Ok(Answer {
            status,
            location,
            body,
        })
    }

    fn get(&mut self, path: &str) -> Result<Answer, String> {
        let r = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Cookie", self.cookie())
            .call();
        self.finish(&format!("GET {path}"), r)
    }

    fn post_form(&mut self, path: &str, form: &[(&str, &str)]) -> Result<Answer, String> {
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Cookie", self.cookie())
            .send_form(form.iter().copied());
        self.finish(&format!("POST {path}"), r)
    }

    fn post_multipart(
        &mut self,
        path: &str,
        body: Vec<u8>,
        boundary: &str,
    ) -> Result<Answer, String> {
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Cookie", self.cookie())
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .send(&body[..]);
        self.finish(&format!("POST {path}"), r)
    }

    fn fail(&self, what: String) {
        self.shared.stats().failed.push(what);
    }

    /// GETs a wiki page (200 expected) and checks its two version markers
    /// against the version live when the request started.
    fn page(&mut self, path: &str) -> Option<String> {
        let floor = self.shared.live.load(Ordering::SeqCst);
        let a = match self.get(path) {
            Ok(a) if a.status == 200 => a,
            Ok(a) => {
                self.fail(format!("GET {path}: {} {:.200}", a.status, a.text()));
                return None;
            }
            Err(e) => {
                self.fail(e);
                return None;
            }
        };
        let html = a.text();
        self.tree = tree_of(&html);
        let (Some(c), Some(t)) = (
            marker(&html, "class=\"claim\">C"),
            marker(&html, "id=\"rs-tpl\">T"),
        ) else {
            self.fail(format!(
                "GET {path}: 200 without the version markers: {:.300}",
                html
            ));
            return None;
        };
        if c != t {
            self.shared.stats().mixed.push(format!("{path}: C{c} T{t}"));
        } else if c < floor {
            self.shared.stats().stale.push(format!(
                "{path}: version {c} after version {floor} went live"
            ));
        }
        Some(html)
    }

    /// Opens the editor and saves `text` (empty: deletes the page). True when
    /// DokuWiki acknowledged the save (its redirect to the page).
    fn save(&mut self, id: &str, text: &str) -> bool {
        let Some(form) = self.page(&format!("/doku.php?id={id}&do=edit")) else {
            return false;
        };
        let (Some(sectok), Some(date), Some(changecheck)) = (
            hidden(&form, "sectok"),
            hidden(&form, "date"),
            hidden(&form, "changecheck"),
        ) else {
            self.fail(format!("edit {id}: no edit form: {:.300}", form));
            return false;
        };
        let form = [
            ("id", id),
            ("do", "save"),
            ("sectok", &sectok),
            ("date", &date),
            ("prefix", "."),
            ("suffix", ""),
            ("changecheck", &changecheck),
            ("target", "section"),
            ("summary", "rootswap test"),
            ("wikitext", text),
        ];
        match self.post_form("/doku.php", &form) {
            Ok(a) if (a.status == 302 || a.status == 303) && a.location.is_some() => true,
            Ok(a) => {
                self.fail(format!("save {id}: {} {:.300}", a.status, a.text()));
                false
            }
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    /// Polls `path` until `ok` holds for its body (up to VISIBLE_WITHIN);
    /// records a write the first request did not see, with the delay.
    fn expect_visible(&mut self, what: &str, path: &str, ok: &dyn Fn(&Answer) -> bool) {
        let mut what = what.to_string();
        let t = Instant::now();
        let mut first = true;
        loop {
            let seen = match self.get(path) {
                Ok(a) => ok(&a),
                Err(e) => {
                    self.fail(e);
                    false
                }
            };
            if seen && first {
                return;
            }
            if first {
                // Which tree took the write, which one answered without it.
                let wrote = std::mem::take(&mut self.tree);
                self.page("/doku.php?id=rs:home");
                what = format!("{what} (form from {wrote}, then {} served)", self.tree);
            }
            if seen || t.elapsed() > VISIBLE_WITHIN {
                let how = if seen {
                    format!("seen after {} ms", t.elapsed().as_millis())
                } else {
                    format!("not seen within {} s", VISIBLE_WITHIN.as_secs())
                };
                let mut stats = self.shared.stats();
                stats.unseen.push(format!("{what}: {how}"));
                stats.late_ms.push(if seen {
                    t.elapsed().as_millis()
                } else {
                    u128::MAX
                });
                return;
            }
            first = false;
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The tree a page was served from (the template prints DOKU_INC's name).
fn tree_of(html: &str) -> String {
    let key = "id=\"rs-tree\">";
    html.find(key)
        .map(|i| &html[i + key.len()..])
        .and_then(|rest| rest.split('<').next())
        .unwrap_or("?")
        .to_string()
}

/// The number after `prefix` in `html`.
fn marker(html: &str, prefix: &str) -> Option<u64> {
    let rest = &html[html.find(prefix)? + prefix.len()..];
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// The value of the hidden form field `name`.
fn hidden(html: &str, name: &str) -> Option<String> {
    let key = format!("name=\"{name}\" value=\"");
    let rest = &html[html.find(&key)? + key.len()..];
    Some(rest[..rest.find('"')?].to_string())
}

/// Saves this editor's pages over and over, reading each save back.
fn editor(port: u16, shared: Arc<Shared>, who: u64) -> Model {
    let mut b = Browser::new(port, shared.clone());
    let mut m = Model::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ who);
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let id = format!("rs:e{who}p{}", rng.next() % 6);
        let text = format!("editor {who} save {n} of {id}");
        if b.save(&id, &text) {
            shared.stats().edits += 1;
            m.pages.insert(id.clone(), Some(text.clone()));
            b.expect_visible(
                &format!("edit {id} #{n}"),
                &format!("/doku.php?id={id}&do=export_raw"),
                &|a| a.status == 200 && a.text().trim_end() == text,
            );
        }
        std::thread::sleep(Duration::from_millis(5 + rng.next() % 20));
    }
    m
}

/// Creates pages, each in a namespace of its own, and deletes them again.
fn creator(port: u16, shared: Arc<Shared>) -> Model {
    let mut b = Browser::new(port, shared.clone());
    let mut m = Model::default();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut live: Vec<String> = Vec::new();
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        if live.len() < 4 || rng.next() % 2 == 0 {
            let id = format!("vis:n{n}:page");
            let text = format!("created {n}");
            if b.save(&id, &text) {
                shared.stats().creates += 1;
                m.pages.insert(id.clone(), Some(text.clone()));
                live.push(id.clone());
                b.expect_visible(
                    &format!("create {id}"),
                    &format!("/doku.php?id={id}&do=export_raw"),
                    &|a| a.status == 200 && a.text().trim_end() == text,
                );
            }
        } else {
            let id = live.remove((rng.next() % live.len() as u64) as usize);
            if b.save(&id, "") {
                shared.stats().deletes += 1;
                m.pages.insert(id.clone(), None);
                b.expect_visible(
                    &format!("delete {id}"),
                    &format!("/doku.php?id={id}&do=export_raw"),
                    &|a| a.status == 200 && a.text().contains(GONE),
                );
            } else {
                live.push(id);
            }
        }
        std::thread::sleep(Duration::from_millis(5 + rng.next() % 20));
    }
    m
}

/// Uploads images through the media manager's form and fetches each back.
fn uploader(port: u16, shared: Arc<Shared>) -> Model {
    let mut b = Browser::new(port, shared.clone());
    let mut m = Model::default();
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let form = match b.get("/lib/exe/mediamanager.php?ns=up") {
            Ok(a) if a.status == 200 => a.text(),
            Ok(a) => {
                b.fail(format!("media manager: {} {:.200}", a.status, a.text()));
                continue;
            }
            Err(e) => {
                b.fail(e);
                continue;
            }
        };
        b.tree = tree_of(&form);
        let Some(sectok) = hidden(&form, "sectok") else {
            b.fail(format!("media manager: no upload form: {form:.300}"));
            continue;
        };
        let name = format!("u{n}.png");
        let mut bytes = PNG.to_vec();
        bytes.extend_from_slice(format!("rootswap upload {n}").as_bytes());
        let boundary = format!("rootswapdw{n}");
        let mut body = Vec::new();
        for (k, v) in [
            ("sectok", sectok.as_str()),
            ("ns", "up"),
            ("mediaid", &name),
        ] {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"{name}\"\r\n\
                 Content-Type: image/png\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        match b.post_multipart("/lib/exe/mediamanager.php", body, &boundary) {
            Ok(a) if a.status == 200 && a.text().contains("<div class=\"success\">") => {
                shared.stats().uploads += 1;
                let id = format!("up:{name}");
                m.media.insert(id.clone(), bytes.clone());
                b.expect_visible(
                    &format!("upload {id}"),
                    &format!("/lib/exe/fetch.php?media={id}"),
                    &|a| a.status == 200 && a.body == bytes,
                );
            }
            Ok(a) => b.fail(format!("upload {name}: {} {:.300}", a.status, a.text())),
            Err(e) => b.fail(e),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    m
}

/// Reads a page until `stop`.
fn reader(port: u16, shared: Arc<Shared>) {
    let mut b = Browser::new(port, shared.clone());
    while !shared.stop.load(Ordering::Relaxed) {
        b.page("/doku.php?id=rs:home");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The package's tree as upstream ships it, in `repo`: returns the
/// template's text (without the version marker).
fn flatten_dokuwiki(repo: &Path) -> String {
    // -L: Debian's links (lib/plugins, lib/tpl, .htaccess, conf's ACL files)
    // become the files they point to.
    sh(Command::new("cp")
        .arg("-aL")
        .arg(format!("{DW}/."))
        .arg(repo));
    sh(Command::new("cp")
        .arg("-aL")
        .arg(format!("{DW_CONF}/."))
        .arg(repo.join("conf")));
    std::fs::create_dir_all(repo.join("data")).expect("data/");
    for f in std::fs::read_dir(DW_DATA)
        .expect("the package's data skeleton")
        .flatten()
    {
        if f.path().is_file() {
            sh(Command::new("cp")
                .arg("-a")
                .arg(f.path())
                .arg(repo.join("data")));
        }
    }
    // Debian's preload points DOKU_CONF at /etc/dokuwiki; without it DokuWiki
    // reads DOKU_INC/conf, as upstream does.
    std::fs::remove_file(repo.join("inc/preload.php")).expect("Debian's inc/preload.php");
    let main = repo.join("conf/dokuwiki.php");
    let text = read(&main).replace(
        "$conf['savedir']     = '/var/lib/dokuwiki/data';",
        "$conf['savedir']     = './data';",
    );
    assert!(
        text.contains("'./data'"),
        "savedir set in {}",
        main.display()
    );
    std::fs::write(&main, text).expect("conf/dokuwiki.php");
    for f in ["conf/apache.conf", "conf/lighttpd.conf"] {
        let _ = std::fs::remove_file(repo.join(f));
    }
    let mut ignore: Vec<String> = RUNTIME.iter().map(|d| format!("/data/{d}/")).collect();
    ignore.extend(RUNTIME_CONF.iter().map(|f| format!("/conf/{f}")));
    std::fs::write(repo.join(".gitignore"), ignore.join("\n") + "\n").expect(".gitignore");
    let tpl = read(&repo.join("lib/tpl/dokuwiki/main.php"));
    assert!(tpl.contains("<body>"), "the template has <body>");
    tpl
}

/// Writes version `v` into the two files every page reads it from.
fn write_version(w: &World, tpl: &str, v: u64) {
    w.write_files(&[
        (
            "conf/local.php",
            &format!(
                "<?php\n$conf['title'] = 'rootswap test wiki';\n$conf['useacl'] = 0;\n$conf['tagline'] = 'C{v}';\n"
            ),
        ),
        (
            "lib/tpl/dokuwiki/main.php",
            &tpl.replacen("<body>", &format!(
                    "<body><span id=\"rs-tpl\">T{v}</span>\
                     <span id=\"rs-tree\"><?php echo basename(DOKU_INC) ?></span>"
                ), 1),
        ),
    ]);
}

/// The file of a page id in `data/`.
fn page_file(data: &Path, id: &str) -> PathBuf {
    data.join("pages")
        .join(format!("{}.txt", id.replace(':', "/")))
}

fn media_file(data: &Path, id: &str) -> PathBuf {
    data.join("media").join(id.replace(':', "/"))
}

fn first<T: std::fmt::Debug>(v: &[T]) -> &[T] {
    &v[..v.len().min(10)]
}

/// The wiki deployed once and served: `None` when a tool is missing (outside CI).
struct Wiki {
    w: World,
    tpl: String,
    port: u16,
    /// rootswap's (and the repository's) user when it is not the test's:
    /// www-data's uid and gid, and a HOME of its own.
    site_user: Option<(u32, u32, PathBuf)>,
    /// The uid everything under `ROOT/data` must belong to (php-fpm's user).
    owner: u32,
    fpm_log: PathBuf,
    _fpm: Option<Fpm>,
    _nginx: Option<Nginx>,
}

impl Wiki {
    /// `rootswap deploy`, as the site user when there is one.
    fn deploy(&self) -> std::process::Output {
        match &self.site_user {
            None => self.w.run(&["deploy"]),
            Some((uid, gid, home)) => support::as_user(*uid, *gid, "www-data", home, &bin())
                .arg("-c")
                .arg(&self.w.config)
                .arg("deploy")
                .output()
                .expect("rootswap runs"),
        }
    }

    /// Commits the work tree, as the user who owns the repository.
    fn commit(&self, msg: &str) {
        let Some((uid, gid, home)) = &self.site_user else {
            self.w.commit(msg);
            return;
        };
        for args in [vec!["add", "-A"], vec!["commit", "-q", "-m", msg]] {
            sh(
                support::as_user(*uid, *gid, "www-data", home, Path::new("git"))
                    .args([
                        "-c",
                        "gc.auto=0",
                        "-c",
                        "user.name=t",
                        "-c",
                        "user.email=t@example.invalid",
                    ])
                    .args(&args)
                    .current_dir(&self.w.repo)
                    .env("GIT_CONFIG_GLOBAL", "/dev/null")
                    .env("GIT_CONFIG_NOSYSTEM", "1"),
            );
        }
    }
}

/// Who runs rootswap.
#[derive(Clone, Copy, PartialEq)]
enum RunAs {
    /// The test's own user (root in CI: `sudo rootswap deploy`).
    TestUser,
    /// www-data, which owns the repository, the webroot and the config, as
    /// the packaged unit runs rootswap (needs root to switch users).
    SiteUser,
}

/// How the wiki's data is kept across deploys.
#[derive(Clone, Copy, PartialEq)]
enum Data {
    /// `data/`'s runtime directories preserved: the copy-back carries them.
    CopyBack,
    /// `data/`'s runtime directories in `user_content.shared`: one copy,
    /// outside the trees, linked from each.
    Shared,
}

/// The rootswap config: `data/`'s runtime directories preserved (or
/// shared) and the ACL files preserved, drain `auto` through php-fpm's
/// status page.
fn write_config(w: &World, sock: &Path, data: Data) {
    let mut preserve: Vec<String> = match data {
        Data::CopyBack => RUNTIME
            .iter()
            .map(|d| format!("    - data/{d}/**\n"))
            .collect(),
        Data::Shared => Vec::new(),
    };
    preserve.extend(RUNTIME_CONF.iter().map(|f| format!("    - conf/{f}\n")));
    let shared: String = match data {
        Data::CopyBack => String::new(),
        Data::Shared => std::iter::once("  shared:\n".to_string())
            .chain(RUNTIME.iter().map(|d| format!("    - data/{d}\n")))
            .collect(),
    };
    std::fs::write(
        &w.config,
        format!(
            "webroot: {}\nsource:\n  repo: {}\n  branch: main\ndrain: auto\n\
             opcache:\n  fastcgi: unix:{}\n  status_path: /fpm-status\n\
             user_content:\n  preserve:\n{}{shared}",
            w.webroot.display(),
            w.repo.display(),
            sock.display(),
            preserve.concat()
        ),
    )
    .expect("config");
}

/// Moves the wiki's data in once, as an administrator does: the package's
/// skeleton, owned by php-fpm's user. Returns that user (None: the test's
/// own) and its uid.
fn move_data_in(data: &Path, shared: &Path, as_root: bool) -> (Option<String>, u32) {
    for d in RUNTIME {
        // Into the directory (through the link, when it is shared).
        sh(Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", Path::new(DW_DATA).join(d).display()))
            .arg(data.join(d)));
    }
    if !as_root {
        return (None, unsafe { libc::geteuid() });
    }
    sh(Command::new("chown")
        .args(["-R", "www-data:www-data"])
        .arg(data));
    if shared.is_dir() {
        sh(Command::new("chown")
            .args(["-R", "www-data:www-data"])
            .arg(shared));
    }
    (Some("www-data".to_string()), uid_of("www-data"))
}

fn dokuwiki_site(data: Data, run_as: RunAs) -> Option<Wiki> {
    let install = "apt-get install -y --no-install-recommends dokuwiki nginx-light php-fpm";
    let dw = support::require(
        "Debian's dokuwiki package",
        Path::new(DW).join("doku.php").is_file().then(|| DW.into()),
        install,
    );
    let nginx = support::require("nginx", support::find_program(&["nginx"]), install);
    let fpm = support::require("php-fpm", support::find_php_fpm(), install);
    let (Some(_), Some(nginx), Some(fpm)) = (dw, nginx, fpm) else {
        return None;
    };
    if run_as == RunAs::SiteUser
        && (!require_root("running rootswap as the site user") || require_tool("setpriv").is_none())
    {
        return None;
    }
    let as_root = unsafe { libc::geteuid() } == 0;
    let w = World::new(&[], "");
    if as_root {
        // php-fpm's user must reach the trees inside the test's directory.
        sh(Command::new("chmod").arg("755").arg(w.tmp.path()));
    }
    let tpl = flatten_dokuwiki(&w.repo);
    write_version(&w, &tpl, 0);
    w.commit("DokuWiki from Debian's package, flattened");
    let srv = w.tmp.path().join("srv");
    let sessions = srv.join("sessions");
    std::fs::create_dir_all(&sessions).expect("sessions dir");
    let sock = srv.join("php-fpm.sock");
    write_config(&w, &sock, data);
    let site_user = (run_as == RunAs::SiteUser).then(|| {
        let (uid, gid) = (uid_of("www-data"), gid_of("www-data"));
        let home = w.tmp.path().join("home");
        std::fs::create_dir_all(&home).expect("home dir");
        sh(Command::new("chown")
            .args(["-R", "www-data:www-data"])
            .args([&w.repo, &w.webroot, &w.config, &home]));
        (uid, gid, home)
    });
    let mut wiki = Wiki {
        w,
        tpl,
        port: 0,
        site_user,
        owner: 0,
        fpm_log: PathBuf::new(),
        _fpm: None,
        _nginx: None,
    };
    let out = wiki.deploy();
    assert!(
        out.status.success(),
        "first deploy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = &wiki.w;
    let shared = w.webroot.join("shared");
    let (pool_user, owner) = move_data_in(&w.root().join("data"), &shared, as_root);
    if let Some(u) = &pool_user {
        sh(Command::new("chown").arg(format!("{u}:{u}")).arg(&sessions));
    }
    let ini = format!("{FPM_INI}session.save_path=\"{}\"\n", sessions.display());
    let fpm_dir = srv.join("fpm");
    let fpm = Fpm::start(Pool {
        pool_user,
        status_path: Some("/fpm-status".into()),
        // rootswap as www-data must reach the socket (OPcache, drain).
        listen_user: wiki.site_user.as_ref().map(|_| "www-data".to_string()),
        ..Pool::new(&fpm, &fpm_dir, &sock, &ini, 4)
    });
    let nginx = Nginx::for_app(&nginx, &srv, &w.config, &sock);
    wiki.port = nginx.port();
    wiki.owner = owner;
    wiki.fpm_log = fpm_dir.join("php-errors.log");
    wiki._fpm = Some(fpm);
    wiki._nginx = Some(nginx);
    Some(wiki)
}

/// Starts the users, deploys versions 1..=n, stops the users; returns what
/// they were told and the failed deploys' last error lines.
fn deploy_under_users(wiki: &Wiki, shared: &Arc<Shared>, n: u64) -> (Model, Vec<String>) {
    let port = wiki.port;
    let mut users: Vec<std::thread::JoinHandle<Model>> = Vec::new();
    for who in 0..2 {
        let s = shared.clone();
        users.push(std::thread::spawn(move || editor(port, s, who)));
    }
    let s = shared.clone();
    users.push(std::thread::spawn(move || creator(port, s)));
    let s = shared.clone();
    users.push(std::thread::spawn(move || uploader(port, s)));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let s = shared.clone();
            std::thread::spawn(move || reader(port, s))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut failures = Vec::new();
    for v in 1..=n {
        write_version(&wiki.w, &wiki.tpl, v);
        wiki.commit(&format!("version {v}"));
        let out = wiki.deploy();
        if out.status.success() {
            shared.live.store(v, Ordering::SeqCst);
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
            failures.push(format!("deploy {v}: {last}"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    shared.stop.store(true, Ordering::Relaxed);
    let mut model = Model::default();
    for u in users {
        let m = u.join().expect("a user thread");
        model.pages.extend(m.pages);
        model.media.extend(m.media);
    }
    for r in readers {
        r.join().expect("a reader thread");
    }
    (model, failures)
}

/// What the served `data/` holds against what the users were told.
#[derive(Debug)]
struct Verdict {
    lost_edits: Vec<String>,
    lost_uploads: Vec<String>,
    deleted_back: Vec<String>,
    foreign_owned: Vec<String>,
}

fn compare(wiki: &Wiki, model: &Model) -> Verdict {
    let served = wiki.w.link().join("data");
    let text_of = |id: &str| {
        std::fs::read_to_string(page_file(&served, id))
            .ok()
            .map(|s| s.trim_end().to_string())
    };
    let mut v = Verdict {
        lost_edits: Vec::new(),
        lost_uploads: Vec::new(),
        deleted_back: Vec::new(),
        foreign_owned: [wiki.w.root().join("data"), wiki.w.webroot.join("shared")]
            .iter()
            .flat_map(|d| support::app_writer::foreign_owned(d, wiki.owner))
            .collect(),
    };
    for (id, text) in &model.pages {
        match text {
            Some(t) if text_of(id).as_ref() != Some(t) => v.lost_edits.push(id.clone()),
            None if page_file(&served, id).exists() => v.deleted_back.push(id.clone()),
            _ => {}
        }
    }
    for (id, bytes) in &model.media {
        if std::fs::read(media_file(&served, id)).ok().as_ref() != Some(bytes) {
            v.lost_uploads.push(id.clone());
        }
    }
    v
}

fn report(s: &Stats, deploy_failures: &[String], v: &Verdict) {
    eprintln!(
        "dokuwiki: {} requests ({} edits, {} pages created, {} deleted, {} uploads) over 20 deploys; \
         {} deploys failed, {} failed requests, {} mixed, {} stale, {} writes not seen by the next request \
         (latest seen after {} ms), \
         {} edits lost, {} uploads lost, {} deleted pages back, {} entries under data/ not owned by php-fpm's user",
        s.requests,
        s.edits,
        s.creates,
        s.deletes,
        s.uploads,
        deploy_failures.len(),
        s.failed.len(),
        s.mixed.len(),
        s.stale.len(),
        s.unseen.len(),
        s.late_ms.iter().filter(|ms| **ms != u128::MAX).max().unwrap_or(&0),
        v.lost_edits.len(),
        v.lost_uploads.len(),
        v.deleted_back.len(),
        v.foreign_owned.len()
    );
    for (kind, list) in [
        ("deploy failures", deploy_failures),
        ("failed", &s.failed[..]),
        ("mixed", &s.mixed[..]),
        ("stale", &s.stale[..]),
        ("unseen", &s.unseen[..]),
        ("deleted pages back", &v.deleted_back[..]),
        ("foreign-owned", &v.foreign_owned[..]),
    ] {
        if !list.is_empty() {
            eprintln!("dokuwiki {kind}: {:#?}", first(list));
        }
    }
}

/// The site as docs/flow.md describes it: the runtime directories
/// preserved, carried by the copy-back. A write acknowledged by the tree
/// traffic just left reaches the other tree within the carry's cadence
/// (25 ms while a drain waits, plus the pass): a request sent in between
/// may not see it yet. Each such write must be seen within
/// [`CARRIED_WITHIN`]; how many and how late is printed.
#[test]
fn debian_dokuwiki_survives_twenty_deploys_under_editors_and_uploads() {
    let _heavy = heavy();
    dokuwiki_under_users(Data::CopyBack, RunAs::TestUser);
}

/// The same with rootswap run by the site user www-data (who owns the
/// repository, the webroot and the config), as the packaged unit runs it.
#[test]
fn debian_dokuwiki_deployed_by_the_site_user_survives_twenty_deploys() {
    let _heavy = heavy();
    dokuwiki_under_users(Data::CopyBack, RunAs::SiteUser);
}

/// The same with `data/`'s runtime directories shared: one copy, linked from
/// every tree, so every write is seen by the next request, always.
#[test]
fn debian_dokuwiki_with_shared_data_shows_every_write_to_the_next_request() {
    let _heavy = heavy();
    dokuwiki_under_users(Data::Shared, RunAs::TestUser);
}

fn dokuwiki_under_users(data: Data, run_as: RunAs) {
    let Some(wiki) = dokuwiki_site(data, run_as) else {
        return;
    };
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        live: AtomicU64::new(0),
        stats: Mutex::new(Stats::default()),
    });
    let mut admin = Browser::new(wiki.port, shared.clone());
    let saved = admin.save("rs:home", "the home page");
    let home = admin.page("/doku.php?id=rs:home").unwrap_or_default();
    assert!(
        saved && home.contains("the home page") && shared.stats().failed.is_empty(),
        "the wiki saves and shows a page (php-fpm's log: {}): {:?} {home:.500}",
        wiki.fpm_log.display(),
        shared.stats().failed
    );
    let (model, deploy_failures) = deploy_under_users(&wiki, &shared, 20);
    let v = compare(&wiki, &model);
    let s = shared.stats();
    report(&s, &deploy_failures, &v);
    assert!(
        s.edits > 20 && s.creates > 5 && s.deletes > 5 && s.uploads > 10,
        "the users did little: {s:?}"
    );
    assert!(
        deploy_failures.is_empty(),
        "deploys failed: {deploy_failures:#?}"
    );
    assert!(
        s.failed.is_empty(),
        "failed requests: {:#?}",
        first(&s.failed)
    );
    assert!(s.mixed.is_empty(), "mixed pages: {:#?}", first(&s.mixed));
    assert!(s.stale.is_empty(), "stale pages: {:#?}", first(&s.stale));
    assert!(
        v.lost_edits.is_empty(),
        "acknowledged edits lost: {:?}",
        first(&v.lost_edits)
    );
    assert!(
        v.lost_uploads.is_empty(),
        "acknowledged uploads lost: {:?}",
        first(&v.lost_uploads)
    );
    assert!(
        v.deleted_back.is_empty(),
        "deleted pages back: {:?}",
        first(&v.deleted_back)
    );
    match data {
        Data::Shared => assert!(
            s.unseen.is_empty(),
            "writes not seen by the next request: {:#?}",
            first(&s.unseen)
        ),
        Data::CopyBack => assert!(
            s.late_ms.iter().all(|ms| *ms <= CARRIED_WITHIN.as_millis()),
            "writes not carried within {CARRIED_WITHIN:?}: {:#?}",
            first(&s.unseen)
        ),
    }
    assert!(
        v.foreign_owned.is_empty(),
        "not owned by php-fpm's user under ROOT/data: {:#?}",
        first(&v.foreign_owned)
    );
    drop(s);
    let home = admin.page("/doku.php?id=rs:home").unwrap_or_default();
    assert_eq!(
        marker(&home, "class=\"claim\">C"),
        Some(20),
        "version 20 is live"
    );
}
