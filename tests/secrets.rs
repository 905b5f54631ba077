//! Secrets stay secret and the state directory is private (issue 18,
//! findings 6 and 10). A real authenticated smart-HTTP fetch (`git
//! http-backend` behind a small CGI bridge that demands basic auth), a fetch
//! from a closed port and one refused for a wrong password; then every
//! output is searched for the password: the CLI's stderr, the cache's
//! `config`, the history, `status --json`, the service's log, its dashboard
//! and `/status`. And the state directory under umask 022.

use crate::support::*;
use base64::Engine;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USER: &str = "deploy";
const SECRET: &str = "S3CRET-pw";
const TOKEN: &str = "secrets-test-token";

/// A smart-HTTP Git server on a loopback port: every request must carry
/// basic auth for USER:SECRET, else 401; the rest is `git http-backend`.
struct GitHttp {
    port: u16,
    /// The Authorization headers the server was sent.
    auths: Arc<Mutex<Vec<String>>>,
}

impl GitHttp {
    fn start(project_root: PathBuf) -> GitHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let auths = Arc::new(Mutex::new(Vec::new()));
        let seen = auths.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = handle(conn, &project_root, &seen);
            }
        });
        GitHttp { port, auths }
    }

    fn url(&self, password: &str) -> String {
        format!("http://{USER}:{password}@127.0.0.1:{}/repo", self.port)
    }
}

fn handle(s: TcpStream, root: &Path, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let body = read_body(&mut r, &headers)?;
    let mut s = s;
    let auth = headers.get("authorization").cloned().unwrap_or_default();
    seen.lock().unwrap().push(auth.clone());
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{SECRET}"))
    );
    if auth != want {
        return s.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cgi = Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env(
            "CONTENT_TYPE",
            headers.get("content-type").cloned().unwrap_or_default(),
        )
        .env("CONTENT_LENGTH", body.len().to_string())
        .env(
            "HTTP_CONTENT_ENCODING",
            headers.get("content-encoding").cloned().unwrap_or_default(),
        )
        .env("REMOTE_USER", USER)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = cgi.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let out = cgi.wait_with_output()?;
    let _ = feeder.join();
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)))
        .unwrap_or((raw.len(), 0));
    let head = String::from_utf8_lossy(&raw[..split.0]).into_owned();
    let payload = &raw[split.0 + split.1..];
    let mut status = "200 OK".to_string();
    let mut resp = String::new();
    for h in head.lines() {
        match h.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => resp.push_str(&format!("{h}\r\n")),
            None => {}
        }
    }
    s.write_all(
        format!(
            "HTTP/1.1 {status}\r\n{resp}Content-Length: {}\r\nConnection: close\r\n\r\n",
            payload.len()
        )
        .as_bytes(),
    )?;
    s.write_all(payload)
}

fn read_body(r: &mut impl BufRead, headers: &HashMap<String, String>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = headers.get("content-length").and_then(|n| n.parse().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    }
    Ok(body)
}

/// Writes the config with `repo` as `source.repo`.
fn configure(w: &World, repo: &str, extra: &str) {
    std::fs::write(
        &w.config,
        format!(
            "webroot: {}\nsource:\n  repo: {repo}\n  branch: main\ndrain: 0s\n{extra}",
            w.webroot.display()
        ),
    )
    .unwrap();
}

fn both(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn no_secret(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the password:\n{text}");
}

/// One HTTP GET with the token: the whole response (empty when nothing
/// listens on `port`).
fn get(port: u16, path: &str) -> String {
    let auth = format!("Bearer {TOKEN}");
    Http::new(port)
        .exchange("GET", path, &[("Authorization", &auth)], b"")
        .map(|raw| String::from_utf8_lossy(&raw).into_owned())
        .unwrap_or_default()
}

#[test]
fn an_authenticated_fetch_keeps_the_password_out_of_every_output() {
    if require_tool("git").is_none() {
        return;
    }
    let w = World::new(&[("index.php", "v1")], "");
    let server = GitHttp::start(w.tmp.path().to_path_buf());
    let state = w.webroot.join(".rootswap");

    // A cache left by an older rootswap: the password in its config, 0644.
    git(
        w.tmp.path(),
        &[
            "init",
            "-q",
            "--bare",
            state.join("repo.git").to_str().unwrap(),
        ],
    );
    git(
        &state.join("repo.git"),
        &["remote", "add", "origin", &server.url(SECRET)],
    );
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();

    configure(&w, &server.url(SECRET), "");
    let out = w.run(&["deploy"]);
    let text = both(&out);
    assert!(
        out.status.success(),
        "the authenticated deploy failed:\n{text}"
    );
    assert_eq!(read(&w.link().join("index.php")), "v1");
    no_secret("deploy's output", &text);
    assert!(
        text.contains("removed the credentials of `source.repo`"),
        "no word about the rewritten cache config:\n{text}"
    );
    let auths = server.auths.lock().unwrap().clone();
    assert!(
        auths.iter().any(|a| a.starts_with("Basic ")),
        "the credentials never reached the server: {auths:?}"
    );
    let config = std::fs::read_to_string(state.join("repo.git/config")).unwrap();
    no_secret("repo.git/config", &config);
    assert!(
        config.contains(&format!("127.0.0.1:{}/repo", server.port)),
        "{config}"
    );
    let mode = std::fs::metadata(state.join("repo.git/config"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "repo.git/config is {mode:o}");

    // A new commit fetched with the credentials passed at fetch time only.
    w.write_files(&[("index.php", "v2")]);
    w.commit("v2");
    let out = w.run(&["deploy"]);
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(read(&w.link().join("index.php")), "v2");
    no_secret("second deploy", &both(&out));

    // Refused: a wrong password; unreachable: a closed port. Errors mask.
    let wrong = "WRONG-S3CRET-pw";
    w.write_files(&[("index.php", "v3")]);
    w.commit("v3");
    configure(&w, &server.url(wrong), "");
    let err = w.fails(&["deploy"]);
    assert!(!err.contains(wrong), "the wrong password is shown:\n{err}");
    assert!(err.contains("refused the user name and password"), "{err}");
    let closed = free_port();
    let closed_url = format!("http://{USER}:{SECRET}@127.0.0.1:{closed}/repo");
    configure(&w, &closed_url, "");
    let err = w.fails(&["deploy"]);
    no_secret("a failed fetch's error", &err);
    assert!(err.contains(&format!("127.0.0.1:{closed}")), "{err}");
    no_secret(
        "config --effective",
        &both(&w.run(&["config", "--effective"])),
    );
    no_secret("status --json", &both(&w.run(&["status", "--json"])));
    no_secret("history --json", &both(&w.run(&["history", "--json"])));
    let history = std::fs::read_to_string(state.join("history.jsonl")).unwrap();
    no_secret("history.jsonl", &history);
    assert!(!history.contains(wrong), "{history}");

    // The service: polls the closed port (failing), serves the dashboard.
    let port = free_port();
    configure(
        &w,
        &closed_url,
        &format!(
            "auto_deploy:\n  every: 1s\ntrigger:\n  listen: 127.0.0.1:{port}\n  token: {TOKEN}\n"
        ),
    );
    let log = w.tmp.path().join("serve.log");
    let logf = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(bin())
        .arg("-c")
        .arg(&w.config)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::from(logf.try_clone().unwrap()))
        .stderr(Stdio::from(logf))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    while Instant::now() < deadline && read_log().matches("cannot check").count() < 2 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let pages: Vec<(&str, String)> = ["/", "/dashboard/view", "/status", "/metrics"]
        .into_iter()
        .map(|p| (p, get(port, p)))
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    let served = read_log();
    assert!(
        served.contains("cannot check"),
        "the service never polled:\n{served}"
    );
    no_secret("the service's log", &served);
    assert!(
        served.contains(&format!("{USER}:********@127.0.0.1:{closed}")),
        "{served}"
    );
    for (path, body) in &pages {
        assert!(body.starts_with("HTTP/1.1 200"), "GET {path}: {body}");
        no_secret(&format!("GET {path}"), body);
    }
    let view = &pages[1].1;
    assert!(
        view.contains("********@127.0.0.1"),
        "the dashboard shows no (masked) repository:\n{view}"
    );
}

/// Runs the binary under umask 022 (the packaged unit's).
fn run_umask(w: &World, args: &[&str]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 022; exec \"$@\"")
        .arg("sh")
        .arg(bin())
        .arg("-c")
        .arg(&w.config)
        .args(args);
    cmd.output().unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn the_state_directory_is_private_whatever_the_umask() {
    let w = World::new(&[("index.php", "v1"), ("lib/a.php", "a")], "");
    let out = run_umask(&w, &["deploy"]);
    assert!(out.status.success(), "{}", both(&out));
    let state = w.webroot.join(".rootswap");
    assert_eq!(mode(&state), 0o700, "state dir");
    for f in ["history.jsonl", "state.json", "lock"] {
        assert_eq!(
            mode(&state.join(f)) & 0o077,
            0,
            "{f} is {:o}",
            mode(&state.join(f))
        );
    }
    assert_eq!(mode(&state.join("repo.git/config")) & 0o077, 0);
    // Control: the served tree still follows the umask (the web server reads it).
    assert_eq!(mode(&w.root().join("index.php")), 0o644);
    assert_eq!(mode(&w.root().join("lib")), 0o755);

    let doctor = both(&run_umask(&w, &["doctor"]));
    assert!(doctor.contains("is private (0700)"), "{doctor}");
    // A state dir made by an older rootswap is tightened once, with a log line.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["history.jsonl", "state.json"] {
        std::fs::set_permissions(state.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    // doctor says so beforehand, with the fix, and changes nothing.
    let doctor = both(&run_umask(&w, &["doctor"]));
    assert!(
        doctor.contains("is 0755: other local users can read")
            && doctor.contains("chmod -R go-rwx"),
        "{doctor}"
    );
    assert_eq!(mode(&state), 0o755);
    w.write_files(&[("index.php", "v2")]);
    w.commit("v2");
    let out = run_umask(&w, &["deploy"]);
    let text = both(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("made the state directory private"), "{text}");
    assert!(text.contains("0755 -> 0700"), "{text}");
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("history.jsonl")), 0o600);
    assert_eq!(mode(&state.join("state.json")), 0o600);
    assert_eq!(read(&w.link().join("index.php")), "v2");
    // Once: the next run has nothing to say.
    let out = run_umask(&w, &["deploy"]);
    let text = both(&out);
    assert!(!text.contains("made the state directory private"), "{text}");
}
