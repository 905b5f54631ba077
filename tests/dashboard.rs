//! The deploy dashboard of `rootswap serve`: the real binary on a port of
//! its own, real repositories, real deploys; the HTML endpoints, the SSE
//! stream, the token and origin checks, and headless Chromium driving the
//! page over the Chrome DevTools Protocol.

use crate::support::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support;
use serde_json::{json, Value};

const TOKEN: &str = "dash-s3cret-token";

/// A running `rootswap serve`; killed on drop.
struct Serve {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Serve {
    fn start(w: &World, port: u16) -> Serve {
        let log = w.tmp.path().join("serve.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(bin())
            .arg("-c")
            .arg(&w.config)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("rootswap serve starts");
        let s = Serve { child, log, port };
        let up = wait_until(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "the listener did not come up:\n{}", s.log());
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        http(self.port, method, path, headers, body.as_bytes())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bearer() -> (&'static str, String) {
    ("Authorization", format!("Bearer {TOKEN}"))
}

fn history(w: &World) -> Vec<Value> {
    std::fs::read_to_string(w.webroot.join(".rootswap/history.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn live(w: &World) -> Option<String> {
    std::fs::read_to_string(w.link().join("index.php")).ok()
}

fn php(v: &str) -> String {
    format!("<?php echo '{v}';")
}

/// A site with two deploys done by the CLI (so one snapshot exists), the
/// service's listener on `port`, and a hook that waits for `gate` to exist.
fn site(port: u16, public: bool) -> (World, PathBuf) {
    let w = World::new(&[("index.php", &php("v1"))], "");
    let gate = w.tmp.path().join("gate");
    std::fs::write(&gate, "").unwrap();
    w.set_config(&format!(
        "auto_deploy:\n  enabled: false\nhooks:\n  after_checkout:\n    - 'i=0; while [ ! -e {} ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done; [ -e {} ]'\n\
         trigger:\n  listen: 127.0.0.1:{port}\n  token: {TOKEN}\n  public_status: {public}\n",
        gate.display(),
        gate.display()
    ));
    w.ok(&["deploy"]);
    w.write_files(&[("index.php", &php("v2"))]);
    w.commit("v2: second version");
    w.ok(&["deploy"]);
    (w, gate)
}

/// An open `GET /dashboard/events` stream.
struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    fn open(port: u16) -> Events {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let req = format!(
            "GET /dashboard/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "events: {status}");
        let mut ev = Events { reader };
        let mut line = String::new();
        while {
            line.clear();
            ev.reader.read_line(&mut line).unwrap();
            line != "\r\n"
        } {
            if line.to_ascii_lowercase().starts_with("content-type") {
                assert!(line.contains("text/event-stream"), "{line}");
            }
        }
        ev
    }

    /// The next SSE event (name, JSON data); chunked encoding's size lines are skipped.
    fn next(&mut self) -> (String, Value) {
        let (mut name, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .expect("the event stream goes on");
            assert!(n > 0, "the event stream ended");
            let l = line.trim_end_matches(['\r', '\n']);
            if let Some(v) = l.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = l.strip_prefix("data:") {
                data.push_str(v.trim_start());
            } else if l.is_empty() && !data.is_empty() {
                return (name, serde_json::from_str(&data).expect("JSON data"));
            }
        }
    }
}

#[test]
fn the_page_the_view_and_the_live_stream_of_a_real_deploy() {
    let _heavy = heavy();
    let port = free_port();
    let (w, _gate) = site(port, true);
    let s = Serve::start(&w, port);
    let hist = history(&w);
    let head = hist.last().unwrap()["commit"].as_str().unwrap().to_string();

    // Public status: the page carries the view without a token.
    let (code, page) = s.http("GET", "/", &[], "");
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("<!doctype html>") && page.contains("dashboard.js"),
        "{page}"
    );
    assert!(
        page.contains(&format!(r#"data-commit="{head}""#)),
        "live commit shown:\n{page}"
    );
    assert!(page.contains("v2: second version"), "subject shown");
    for r in &hist {
        let id = r["id"].as_str().unwrap();
        assert!(
            page.contains(&format!(r#"data-id="{id}""#)),
            "history row {id}"
        );
    }
    assert!(page.contains("<svg class=\"chart\""), "the chart");
    assert!(
        page.contains("Roll back to this"),
        "a snapshot row with its actions"
    );
    assert!(page.contains("success"), "results in words");
    let (code, css) = s.http("GET", "/dashboard/assets/dashboard.css", &[], "");
    assert!(
        code == 200 && css.contains("prefers-color-scheme"),
        "{code}"
    );
    let (code, js) = s.http("GET", "/dashboard/assets/dashboard.js", &[], "");
    assert!(code == 200 && js.contains("sessionStorage"), "{code}");

    // The live stream during a real deploy asked for from the dashboard.
    let mut ev = Events::open(port);
    assert_eq!(ev.next(), ("state".to_string(), json!({ "running": null })));
    w.write_files(&[("index.php", &php("v3"))]);
    let c3 = w.commit("v3");
    let (h, v) = bearer();
    let (code, body) = s.http("POST", "/dashboard/deploy", &[(h, &v)], "{}");
    assert_eq!(code, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut steps = Vec::new();
    let mut logs = Vec::new();
    loop {
        let (name, data) = ev.next();
        match name.as_str() {
            "state" if data["running"] == id.as_str() => {}
            "state" => {
                assert_eq!(data["running"], Value::Null);
                break;
            }
            "step" => {
                assert_eq!(data["deploy"], id.as_str());
                if data["kind"] == "step" {
                    steps.push(data["step"].as_str().unwrap().to_string());
                }
            }
            "log" => logs.push(data["message"].as_str().unwrap().to_string()),
            other => panic!("unexpected event {other}: {data}"),
        }
    }
    for want in [
        "fetch",
        "snapshot",
        "switch-to-snapshot",
        "hooks",
        "switch-to-root",
    ] {
        assert!(
            steps.iter().any(|s| s.starts_with(want)),
            "step {want} streamed: {steps:?}\n{}",
            s.log()
        );
    }
    assert!(logs.iter().any(|l| l.starts_with("fetch (")), "{logs:?}");
    assert!(logs.iter().any(|l| l.contains("ROOT serves")), "{logs:?}");
    assert_eq!(live(&w).as_deref(), Some(php("v3").as_str()));
    assert_eq!(history(&w).last().unwrap()["commit"], c3.as_str());

    // The view now has the new row first, with its steps and log.
    let (code, view) = s.http("GET", "/dashboard/view", &[], "");
    assert_eq!(code, 200);
    let row = view
        .find(&format!(r#"data-id="{id}""#))
        .expect("new history row");
    assert!(
        row < view
            .find(&format!(r#"data-id="{}""#, hist[0]["id"].as_str().unwrap()))
            .unwrap()
    );
    assert!(view.contains(&format!(r#"data-commit="{c3}""#)));
    assert!(
        view.contains("ROOT serves"),
        "the new row carries the deploy's log"
    );

    // Deploy a ref (the first commit) from the dashboard.
    let c1 = hist[0]["commit"].as_str().unwrap().to_string();
    let (code, body) = s.http(
        "POST",
        "/dashboard/deploy",
        &[(h, &v)],
        &json!({ "ref": c1 }).to_string(),
    );
    assert_eq!(code, 202, "{body}");
    let ref_id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(wait_until(Duration::from_secs(20), || history(&w)
        .last()
        .is_some_and(|r| r["id"] == ref_id.as_str())));
    assert_eq!(live(&w).as_deref(), Some(php("v1").as_str()));
    assert_eq!(history(&w).last().unwrap()["commit"], c1.as_str());
    // The service lets go of the deploy gate right after the record is written.
    assert!(wait_until(Duration::from_secs(5), || {
        s.http("GET", "/dashboard/view", &[], "")
            .1
            .contains("<dt>Service</dt><dd>idle</dd>")
    }));

    // Keep and remove through the API; a bad name is one clear error.
    let snaps = w.snapshots();
    let (code, body) = s.http(
        "POST",
        "/dashboard/keep",
        &[(h, &v), ("Content-Type", "application/json")],
        &json!({ "snapshot": snaps[0], "label": "before-v3" }).to_string(),
    );
    assert_eq!(code, 200, "{body}");
    assert!(w.snapshots().contains(&"ROOT_before-v3".to_string()));
    let (code, body) = s.http(
        "POST",
        "/dashboard/remove",
        &[(h, &v)],
        r#"{"snapshot":"ROOT_nope"}"#,
    );
    assert_eq!(code, 400);
    assert!(body.contains("no snapshot named ROOT_nope"), "{body}");
    let (code, _) = s.http(
        "POST",
        "/dashboard/remove",
        &[(h, &v)],
        r#"{"snapshot":"ROOT_before-v3"}"#,
    );
    assert_eq!(code, 200);
    assert!(!w.snapshots().contains(&"ROOT_before-v3".to_string()));
}

#[test]
fn without_the_token_or_from_another_origin_nothing_happens() {
    let port = free_port();
    let (w, _gate) = site(port, false);
    let s = Serve::start(&w, port);
    w.write_files(&[("index.php", &php("v3"))]);
    w.commit("v3");
    let snap = w.snapshots()[0].clone();
    let before = webroot_state(&w.webroot);
    let hist_before = history(&w).len();

    // Reading needs the token: the page is the shell only.
    let (code, page) = s.http("GET", "/", &[], "");
    assert_eq!(code, 200);
    assert!(
        page.contains("token-form") && !page.contains("data-commit"),
        "{page}"
    );
    for path in ["/dashboard/view", "/dashboard/events"] {
        assert_eq!(s.http("GET", path, &[], "").0, 401, "{path}");
        let wrong = ("Authorization", "Bearer nope");
        assert_eq!(s.http("GET", path, &[wrong], "").0, 401, "{path}");
    }
    let (code, view) = s.http("GET", "/dashboard/view", &[("X-Rootswap-Token", TOKEN)], "");
    assert_eq!(code, 200, "the custom header works too");
    assert!(view.contains("data-commit"));

    let body = |what: &str| match what {
        "deploy" => "{}".to_string(),
        "keep" => json!({ "snapshot": snap, "label": "x" }).to_string(),
        _ => json!({ "snapshot": snap }).to_string(),
    };
    for action in ["deploy", "rollback", "keep", "remove"] {
        let path = format!("/dashboard/{action}");
        let b = body(action);
        let (code, text) = s.http("POST", &path, &[], &b);
        assert_eq!(code, 401, "{action} without a token: {text}");
        assert!(!text.contains(TOKEN));
        for wrong in ["Bearer nope", "Bearer ", &format!("Bearer {TOKEN}x"), TOKEN] {
            let (code, _) = s.http("POST", &path, &[("Authorization", wrong)], &b);
            assert_eq!(code, 401, "{action} with {wrong:?}");
        }
        assert_eq!(
            s.http("POST", &path, &[("X-Rootswap-Token", "nope")], &b).0,
            401
        );
        // What a form on another site can send: no custom header, its Origin.
        let form = [
            ("Origin", "http://evil.example"),
            ("Content-Type", "text/plain"),
        ];
        assert_eq!(
            s.http("POST", &path, &form, &b).0,
            403,
            "{action} cross-origin"
        );
        // Even with the token, a request from another origin's page is refused.
        let (h, v) = bearer();
        let cross = [(h, v.as_str()), ("Origin", "http://evil.example")];
        assert_eq!(
            s.http("POST", &path, &cross, &b).0,
            403,
            "{action} cross-origin with token"
        );
        let site = [(h, v.as_str()), ("Sec-Fetch-Site", "cross-site")];
        assert_eq!(s.http("POST", &path, &site, &b).0, 403);
        // No CORS preflight is ever granted.
        let (code, _) = s.http(
            "OPTIONS",
            &path,
            &[
                ("Origin", "http://evil.example"),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "authorization"),
            ],
            "",
        );
        assert!(!(200..300).contains(&code), "preflight answered {code}");
    }
    // Nothing started, nothing changed on disk. Every refusal above was
    // answered before the request could start anything (a deploy starts only
    // once a request is accepted), so there is nothing to wait for.
    assert_same(&before, &webroot_state(&w.webroot), "after refused actions");
    assert_eq!(history(&w).len(), hist_before);
    assert!(!s.log().contains(TOKEN), "the token is never logged");
    assert!(s.log().contains("rejected (401)"));
}

#[test]
fn a_keep_label_from_the_dashboard_is_a_plain_name() {
    let port = free_port();
    let (w, _gate) = site(port, false);
    let s = Serve::start(&w, port);
    let snap = w.snapshots()[0].clone();
    let before = webroot_state(&w.webroot);
    let (h, v) = bearer();
    let auth = [(h, v.as_str()), ("Content-Type", "application/json")];
    for bad in [
        "x\nforged log line",
        "\u{1b}[2Jwiped",
        "-x",
        &"y".repeat(65),
    ] {
        let body = json!({ "snapshot": snap, "label": bad }).to_string();
        let (code, text) = s.http("POST", "/dashboard/keep", &auth, &body);
        assert_eq!(code, 400, "{bad:?}: {text}");
        assert!(text.contains("snapshot label"), "{text}");
    }
    assert_same(&before, &webroot_state(&w.webroot), "after refused labels");
    assert!(!s.log().contains("forged log line"), "{}", s.log());
    // Control.
    let body = json!({ "snapshot": snap, "label": "before-v3" }).to_string();
    let (code, text) = s.http("POST", "/dashboard/keep", &auth, &body);
    assert_eq!(code, 200, "{text}");
    assert!(w.snapshots().contains(&"ROOT_before-v3".to_string()));
}

// ----- headless Chromium over the DevTools Protocol -------------------------

fn chromium() -> Option<PathBuf> {
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    None
}

/// A headless Chromium of our own (own profile, own process group).
struct Browser {
    child: Child,
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next: u64,
}

impl Browser {
    fn start(exe: &Path, profile: &Path) -> Browser {
        use std::os::unix::process::CommandExt;
        std::fs::create_dir_all(profile).unwrap();
        let child = Command::new(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
                "--window-size=1200,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromium starts");
        // Chromium writes its DevTools port into the profile.
        let port_file = profile.join("DevToolsActivePort");
        let mut port = None;
        // Generous: a first start on a busy 2-core machine takes a while.
        let up = wait_until(Duration::from_secs(90), || {
            port = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u16>().ok()));
            port.is_some()
        });
        assert!(up, "chromium did not open its DevTools port");
        let port = port.unwrap();
        let mut page_ws = None;
        let found = wait_until(Duration::from_secs(30), || {
            let (code, body) = http(port, "GET", "/json/list", &[], b"");
            if code != 200 {
                return false;
            }
            let list: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
            page_ws = list
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned));
            page_ws.is_some()
        });
        assert!(found, "no page target in chromium");
        let (ws, _) = tungstenite::connect(page_ws.unwrap()).expect("DevTools websocket");
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        }
        Browser { child, ws, next: 0 }
    }

    /// One DevTools command; its result (events in between are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws
            .send(tungstenite::Message::Text(msg.into()))
            .expect("send to chromium");
        loop {
            let m = self.ws.read().expect("chromium answers");
            let tungstenite::Message::Text(t) = m else {
                continue;
            };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates JavaScript in the page (promises awaited); its value.
    fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(r.get("exceptionDetails").is_none(), "{js}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits until `js` is true in the page.
    fn wait(&mut self, js: &str, timeout: Duration, what: &str) {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.eval(js) == Value::Bool(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let dom = self.eval("document.body.innerText");
        panic!("{what}: not within {timeout:?} ({js})\npage text:\n{dom}");
    }

    fn text(&mut self, selector: &str) -> String {
        let js = format!(
            "(document.querySelector({}) || {{innerText: ''}}).innerText",
            json!(selector)
        );
        self.eval(&js).as_str().unwrap_or("").to_string()
    }

    /// A PNG of the whole page.
    fn screenshot(&mut self, path: &Path) {
        use base64::Engine;
        let m = self.call("Page.getLayoutMetrics", json!({}));
        let (w, h) = (
            m["cssContentSize"]["width"].as_f64().unwrap_or(1200.0),
            m["cssContentSize"]["height"].as_f64().unwrap_or(900.0),
        );
        let r = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": w, "height": h, "scale": 1 } }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The browser and its helpers share the process group we gave it.
        // SAFETY: kill(2) of the process group led by our own child.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

#[test]
fn a_browser_deploys_watches_the_steps_live_and_rolls_back() {
    let _heavy = heavy();
    let Some(exe) = chromium() else {
        support::skip_or_fail("chromium is not installed (Debian package `chromium`)");
        return;
    };
    let port = free_port();
    let (w, gate) = site(port, false);
    let s = Serve::start(&w, port);
    let shots = w.tmp.path().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut b = Browser::start(&exe, &w.tmp.path().join("chromium-profile"));
    let url = format!("http://127.0.0.1:{port}/");
    b.call("Page.navigate", json!({ "url": url }));
    b.wait(
        "document.readyState === 'complete' && !!document.getElementById('token-form')",
        Duration::from_secs(60),
        "page loads",
    );
    // Without the token, the page asks for it and shows nothing of the site.
    assert_eq!(
        b.eval("document.querySelector('#live-commit') === null"),
        json!(true)
    );
    b.screenshot(&shots.join("1-token.png"));

    // Give the token.
    b.eval(&format!(
        "document.getElementById('token').value = {}; document.querySelector('#token-form button').click(); true",
        json!(TOKEN)
    ));
    let v2 = history(&w).last().unwrap()["commit"]
        .as_str()
        .unwrap()
        .to_string();
    b.wait(
        &format!("!!document.querySelector('#live-commit[data-commit=\"{v2}\"]')"),
        Duration::from_secs(20),
        "the view appears once the token is given",
    );
    assert_eq!(
        b.eval("sessionStorage.getItem('rootswap-token')"),
        json!(TOKEN)
    );
    assert_eq!(b.eval("document.cookie"), json!(""), "no cookie");
    b.wait(
        "document.getElementById('running').dataset.connected === 'true'",
        Duration::from_secs(20),
        "live feed connected",
    );
    let rows_before = b
        .eval("document.querySelectorAll('li.deploy').length")
        .as_u64()
        .unwrap();
    b.screenshot(&shots.join("2-dashboard.png"));

    // Deploy now: the hook holds the deploy until the gate reappears, so the
    // running state is seen for certain.
    std::fs::remove_file(&gate).unwrap();
    w.write_files(&[("index.php", &php("v3"))]);
    let v3 = w.commit("v3: third version");
    b.eval("document.getElementById('deploy-now').click(); true");
    b.wait(
        "[...document.querySelectorAll('#steps li')].some(li => li.dataset.step === 'hooks' && li.classList.contains('running'))",
        Duration::from_secs(30),
        "the hooks step shows as running",
    );
    let status = b.text("#run-status");
    assert!(status.contains("is running"), "{status}");
    let done =
        b.eval("[...document.querySelectorAll('#steps li.done')].map(li => li.dataset.step)");
    let done: Vec<String> = serde_json::from_value(done).unwrap();
    assert!(
        done.contains(&"fetch".to_string()) && done.contains(&"snapshot".to_string()),
        "{done:?}"
    );
    assert!(b.text("#steps").contains("done in"), "durations shown");
    assert!(b
        .eval("document.getElementById('run-log').textContent")
        .as_str()
        .unwrap()
        .contains("ROOT_"));
    b.screenshot(&shots.join("3-running.png"));
    std::fs::write(&gate, "").unwrap();
    b.wait(
        "document.getElementById('run-status').textContent.includes('finished: success')",
        Duration::from_secs(30),
        "the deploy finishes on the page",
    );
    b.wait(
        &format!("!!document.querySelector('#live-commit[data-commit=\"{v3}\"]')"),
        Duration::from_secs(10),
        "the live commit moves to v3",
    );
    let rows = b
        .eval("document.querySelectorAll('li.deploy').length")
        .as_u64()
        .unwrap();
    assert_eq!(rows, rows_before + 1, "a new history row");
    let first = b.eval("document.querySelector('li.deploy').dataset.result");
    assert_eq!(first, json!("success"));
    assert!(
        b.text("li.deploy summary").contains("success"),
        "the result in words"
    );
    assert_eq!(live(&w).as_deref(), Some(php("v3").as_str()));
    b.screenshot(&shots.join("4-deployed.png"));

    // Roll back from the snapshot row that holds v2.
    b.eval("window.confirm = () => true; true");
    let clicked = b.eval(&format!(
        "(() => {{ const li = [...document.querySelectorAll('li.snapshot')].find(li => li.innerHTML.includes('{}'));
              if (!li) return false;
              li.querySelector('form[data-action=rollback] button').click(); return true; }})()",
        &v2[..7]
    ));
    assert_eq!(clicked, json!(true), "a snapshot row holds v2");
    b.wait(
        &format!("!!document.querySelector('#live-commit[data-commit=\"{v2}\"]') && document.getElementById('run-status').textContent.includes('finished')"),
        Duration::from_secs(30),
        "the rollback shows on the page",
    );
    assert_eq!(live(&w).as_deref(), Some(php("v2").as_str()));
    assert_eq!(w.link_target(), "ROOT");
    assert_eq!(history(&w).last().unwrap()["trigger"], "rollback");
    assert_eq!(
        b.eval("document.querySelector('li.deploy').querySelector('.trigger').textContent"),
        json!("rollback")
    );
    b.screenshot(&shots.join("5-rolled-back.png"));

    // An action's error is a message on the page, not a stack trace.
    // A keep with a label that looks like a timestamp: the service's words.
    b.eval(
        "(() => { const f = document.querySelector('form[data-action=keep]'); f.querySelector('input').value = '2026.01.01-00.00.00'; f.querySelector('button').click(); return true; })()",
    );
    b.wait(
        "document.getElementById('message').className === 'error'",
        Duration::from_secs(10),
        "the error shows",
    );
    let msg = b.text("#message");
    assert!(msg.contains("looks like a timestamp"), "{msg}");

    // 360 px wide: nothing sticks out sideways.
    b.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 360, "height": 800, "deviceScaleFactor": 1, "mobile": true }),
    );
    b.wait(
        "document.documentElement.scrollWidth <= 360",
        Duration::from_secs(5),
        "fits 360 px",
    );
    b.screenshot(&shots.join("6-narrow.png"));
    for f in [
        "1-token",
        "2-dashboard",
        "3-running",
        "4-deployed",
        "5-rolled-back",
        "6-narrow",
    ] {
        assert!(
            shots.join(format!("{f}.png")).metadata().unwrap().len() > 1000,
            "{f}"
        );
    }
    // The temp dir goes with the test; ROOTSWAP_KEEP_SCREENSHOTS=DIR keeps a copy.
    if let Some(keep) = std::env::var_os("ROOTSWAP_KEEP_SCREENSHOTS") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        for e in std::fs::read_dir(&shots).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), keep.join(e.file_name())).unwrap();
        }
    }
    drop(s);
}
