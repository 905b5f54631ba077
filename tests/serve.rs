//! `rootswap serve`: the real binary as a child process, real repositories,
//! real HTTP. Every test starts its own service on its own port and kills
//! it when done (the `Serve` guard), and waits with deadlines only.

use crate::support::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

const APP: &[(&str, &str)] = &[
    ("index.php", "<?php echo 'v1';"),
    ("lib/a.php", "<?php // a"),
];

/// A running `rootswap serve`; killed (SIGKILL) on drop if still running.
struct Serve {
    child: Child,
    log: PathBuf,
}

impl Serve {
    fn start(w: &World) -> Serve {
        Serve::start_with(w, &[])
    }

    /// Starts the service with its debug lines on (`ROOTSWAP_LOG`): the
    /// decisions not to deploy ("up to date", "backing off") are logged
    /// there, so a test can wait for them instead of sleeping.
    fn start_debug(w: &World) -> Serve {
        Serve::spawn(
            w,
            &[],
            Some("info,rootswap=debug,tokio_cron_scheduler=warn"),
        )
    }

    fn start_with(w: &World, args: &[&str]) -> Serve {
        Serve::spawn(w, args, None)
    }

    fn spawn(w: &World, args: &[&str], log_filter: Option<&str>) -> Serve {
        let log = w
            .tmp
            .path()
            .join(format!("serve-{}.log", std::process::id()));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(bin());
        cmd.arg("-c")
            .arg(&w.config)
            .args(args)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        if let Some(f) = log_filter {
            cmd.env("ROOTSWAP_LOG", f);
        }
        let child = cmd.spawn().expect("rootswap serve starts");
        Serve { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How much has been logged so far (a mark for [`Serve::wait_log_after`]).
    fn log_len(&self) -> usize {
        self.log().len()
    }

    /// Waits until `needle` has been logged `times` times after `mark`.
    fn wait_log_after(&self, mark: usize, needle: &str, times: usize, timeout: Duration) {
        let count = || {
            self.log()
                .get(mark..)
                .map_or(0, |l| l.matches(needle).count())
        };
        let ok = wait_until(timeout, || count() >= times);
        assert!(
            ok,
            "{needle:?} logged {} of {times} times within {timeout:?}:\n{}",
            count(),
            self.log()
        );
    }

    fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            // Polling interval of a bounded wait.
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn wait_log(&self, needle: &str, timeout: Duration) {
        let ok = wait_until(timeout, || self.log().contains(needle));
        assert!(
            ok,
            "no {needle:?} in the log within {timeout:?}:\n{}",
            self.log()
        );
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the service has checked the branch `n` more times. Every
/// check writes `.rootswap/last-poll` first; checks run one at a time and a
/// deploy a check starts is awaited before the next check, so when the
/// `n`-th new timestamp appears, the check before it has made its decision
/// and finished whatever it started.
fn wait_polls(w: &World, s: &Serve, n: usize, timeout: Duration) {
    let file = w.webroot.join(".rootswap/last-poll");
    let read = || std::fs::read_to_string(&file).ok();
    let mut seen = vec![read()];
    let ok = wait_until(timeout, || {
        let now = read();
        if !seen.contains(&now) {
            seen.push(now);
        }
        seen.len() > n
    });
    assert!(
        ok,
        "{} of {n} checks within {timeout:?}:\n{}",
        seen.len() - 1,
        s.log()
    );
}

/// `trigger.metrics_token` of the tests that read `/metrics`, and its header.
const METRICS_TOKEN: &str = "m3trics-token";
const METRICS_AUTH: (&str, &str) = ("Authorization", "Bearer m3trics-token");

/// `(running, finished)`: the deploy this service runs now (0 or 1) and
/// those it finished, from `GET /metrics`. The trigger URL claims a deploy
/// before it answers and counts it before releasing the claim, so right
/// after an answer `(0, n)` proves that the request started nothing.
fn deploy_counts(port: u16) -> (u64, u64) {
    let (code, body) = http(port, "GET", "/metrics", &[METRICS_AUTH], b"");
    assert_eq!(code, 200, "{body}");
    let value = |l: &str| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok());
    let running = body
        .lines()
        .find(|l| l.starts_with("rootswap_deploy_running "))
        .and_then(value)
        .unwrap_or_else(|| panic!("no rootswap_deploy_running in\n{body}"));
    let finished = body
        .lines()
        .filter(|l| l.starts_with("rootswap_deploys_total{"))
        .filter_map(value)
        .sum();
    (running, finished)
}

/// Waits until the service runs no deploy and has finished `n`.
fn wait_finished(port: u16, n: u64) {
    assert!(
        wait_until(Duration::from_secs(10), || deploy_counts(port) == (0, n)),
        "not (0 running, {n} finished): {:?}",
        deploy_counts(port)
    );
}

/// What the site serves now (index.php through the link), if anything.
fn live(w: &World) -> Option<String> {
    std::fs::read_to_string(w.link().join("index.php")).ok()
}

/// Waits until the site serves `text`; returns how long it took.
fn wait_live(w: &World, s: &Serve, text: &str, timeout: Duration) -> Duration {
    let t = Instant::now();
    let ok = wait_until(timeout, || {
        live(w).as_deref() == Some(text) && w.link_target() == "ROOT"
    });
    assert!(
        ok,
        "{text:?} not live within {timeout:?} (live: {:?})\nlog:\n{}",
        live(w),
        s.log()
    );
    t.elapsed()
}

fn history(w: &World) -> Vec<serde_json::Value> {
    let p = w.webroot.join(".rootswap/history.jsonl");
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn php(v: &str) -> String {
    format!("<?php echo '{v}';")
}

fn wait_http(s: &Serve, port: u16) {
    let ok = wait_until(Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(
        ok,
        "the trigger URL did not come up on port {port}:\n{}",
        s.log()
    );
}

fn github_sig(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Asserts that no two deploys in the history overlap in time.
fn assert_no_overlap(hist: &[serde_json::Value]) {
    let mut spans: Vec<(
        chrono::DateTime<chrono::FixedOffset>,
        chrono::DateTime<chrono::FixedOffset>,
    )> = hist
        .iter()
        .map(|r| {
            let t = |k: &str| chrono::DateTime::parse_from_rfc3339(r[k].as_str().unwrap()).unwrap();
            (t("started"), t("finished"))
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "deploys overlap: {pair:?}\n{hist:#?}"
        );
    }
}

#[test]
fn local_repo_commits_go_live_within_a_second_and_bursts_end_on_the_last() {
    let _heavy = heavy();
    let w = World::new(APP, "auto_deploy:\n  every: 1s\n");
    let s = Serve::start_debug(&w);
    wait_live(&w, &s, &php("v1"), Duration::from_secs(10));

    w.write_files(&[("index.php", &php("v2"))]);
    w.commit("v2");
    let took = wait_live(&w, &s, &php("v2"), Duration::from_secs(3));
    eprintln!("local repo: commit to live in {took:?}");

    // A burst of five commits, faster than a deploy.
    let mut last = String::new();
    for i in 3..=7 {
        w.write_files(&[("index.php", &php(&format!("v{i}")))]);
        last = w.commit(&format!("v{i}"));
    }
    let took = wait_live(&w, &s, &php("v7"), Duration::from_secs(10));
    eprintln!("burst of 5: last commit live {took:?} after the last commit");
    // Nothing more to do: once the last deploy is recorded, a whole tick
    // decides "up to date" and no further deploy starts.
    assert!(
        wait_until(Duration::from_secs(10), || history(&w)
            .last()
            .is_some_and(|r| r["commit"] == last.as_str())),
        "{:#?}",
        history(&w)
    );
    let mark = s.log_len();
    s.wait_log_after(
        mark,
        "auto-deploy tick: up to date",
        1,
        Duration::from_secs(10),
    );
    let hist = history(&w);
    assert_no_overlap(&hist);
    assert!(hist.iter().all(|r| r["result"] == "success"), "{hist:#?}");
    assert!(hist.iter().all(|r| r["trigger"] == "schedule"), "{hist:#?}");
    assert_eq!(hist.last().unwrap()["commit"], last.as_str());
    let commits: Vec<&str> = hist.iter().filter_map(|r| r["commit"].as_str()).collect();
    let mut unique = commits.clone();
    unique.dedup();
    assert_eq!(commits, unique, "a commit was deployed twice: {hist:#?}");
    assert!(hist.len() <= 7, "{} deploys for 7 commits", hist.len());
    // Human log lines of a deploy carry its id, without colour codes in a file.
    let log = s.log();
    let id = hist.last().unwrap()["id"].as_str().unwrap().to_string();
    let tagged = log
        .lines()
        .filter(|l| l.contains(&format!("deploy{{id={id}}}")))
        .count();
    assert!(tagged >= 5, "lines of deploy {id} carry its id:\n{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no ANSI escapes when stderr is not a terminal"
    );
    // While the service polls, status tells when it polls next.
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["status", "--json"])).unwrap();
    assert!(
        v["last_poll"].is_string() && v["next_poll"].is_string(),
        "{v:#}"
    );
    let text = w.ok(&["status"]);
    assert!(text.contains("next poll in"), "{text}");
}

#[test]
fn polling_a_url_deploys_a_new_commit_within_3s() {
    let _heavy = heavy();
    // A file:// URL is a remote for rootswap: no refs watch, only the 1 s poll.
    let w = World::new(APP, "");
    std::fs::write(
        &w.config,
        format!(
            "webroot: {}\nsource:\n  repo: file://{}\n  branch: main\ndrain: 0s\nauto_deploy:\n  every: 1s\n",
            w.webroot.display(),
            w.repo.display()
        ),
    )
    .unwrap();
    let s = Serve::start_with(&w, &["--log-format", "json"]);
    wait_live(&w, &s, &php("v1"), Duration::from_secs(10));
    assert!(
        !s.log().contains("watching the repository's refs"),
        "{}",
        s.log()
    );
    let mut worst = Duration::ZERO;
    for v in ["v2", "v3"] {
        w.write_files(&[("index.php", &php(v))]);
        w.commit(v);
        let took = wait_live(&w, &s, &php(v), Duration::from_secs(3));
        worst = worst.max(took);
    }
    eprintln!("polling every 1s: commit to live in at most {worst:?}");
    let hist = history(&w);
    assert_no_overlap(&hist);
    // JSON logs: every line of a deploy carries its id.
    let log = s.log();
    for r in &hist {
        let id = r["id"].as_str().unwrap();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["span"]["id"] == id)
            .collect();
        let text: Vec<&str> = lines
            .iter()
            .filter_map(|v| v["fields"]["message"].as_str())
            .collect();
        assert!(
            text.iter().any(|m| m.starts_with("fetch")),
            "{id}: {text:?}\n{log}"
        );
        assert!(
            text.iter().any(|m| m.contains("switch-to-root")),
            "{id}: {text:?}"
        );
    }
}

#[test]
fn an_unreachable_repository_is_retried_with_backoff() {
    let _heavy = heavy();
    let w = World::new(APP, "");
    let later = w.tmp.path().join("later");
    std::fs::write(
        &w.config,
        format!(
            "webroot: {}\nsource:\n  repo: file://{}\n  branch: main\ndrain: 0s\nauto_deploy:\n  every: 1s\n",
            w.webroot.display(),
            later.display()
        ),
    )
    .unwrap();
    let mut s = Serve::start_debug(&w);
    s.wait_log("next attempt at", Duration::from_secs(5));
    assert!(s.log().contains("(in 5s)"), "{}", s.log());
    // Ticks inside the backoff do not hammer the remote: two ticks say so.
    s.wait_log_after(
        0,
        "auto-deploy tick skipped: backing off",
        2,
        Duration::from_secs(5),
    );
    assert_eq!(s.log().matches("next attempt at").count(), 1, "{}", s.log());
    assert!(s.running());
    // The repository appears: the next attempt deploys it.
    git(
        w.tmp.path(),
        &[
            "clone",
            "-q",
            w.repo.to_str().unwrap(),
            later.to_str().unwrap(),
        ],
    );
    wait_live(&w, &s, &php("v1"), Duration::from_secs(8));
}

#[test]
fn a_failing_commit_keeps_the_old_version_and_is_not_retried_until_the_next() {
    let w = World::new(
        APP,
        "auto_deploy:\n  every: 1s\nhooks:\n  after_checkout: ['! grep -q broken index.php']\n",
    );
    let s = Serve::start(&w);
    wait_live(&w, &s, &php("v1"), Duration::from_secs(10));

    w.write_files(&[("index.php", &php("v2 broken"))]);
    let bad = w.commit("v2, whose hook fails");
    let failed = |w: &World| {
        history(w)
            .iter()
            .filter(|r| r["result"] == "failed")
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(3), || failed(&w) == 1),
        "no failed deploy:\n{}",
        s.log()
    );
    assert_eq!(live(&w).as_deref(), Some(php("v1").as_str()));
    // Later ticks decide not to retry it (said once), and two more checks
    // later there is still one failed attempt, old version live, service up.
    s.wait_log(
        "failed to deploy; waiting for a new commit",
        Duration::from_secs(5),
    );
    wait_polls(&w, &s, 2, Duration::from_secs(10));
    let hist = history(&w);
    assert_eq!(failed(&w), 1, "the failed commit was retried:\n{hist:#?}");
    assert_eq!(hist.last().unwrap()["commit"], bad.as_str());
    assert_eq!(live(&w).as_deref(), Some(php("v1").as_str()));
    assert_eq!(w.link_target(), "ROOT");
    assert!(
        s.log().contains("will not be deployed again"),
        "{}",
        s.log()
    );

    // A restart (systemd's Restart=) does not retry it either.
    drop(s);
    let s = Serve::start(&w);
    s.wait_log("will not be retried", Duration::from_secs(5));
    // The start-up check's decision, then one more complete check.
    s.wait_log(
        "failed to deploy; waiting for a new commit",
        Duration::from_secs(5),
    );
    wait_polls(&w, &s, 2, Duration::from_secs(10));
    assert_eq!(failed(&w), 1, "retried after a restart:\n{}", s.log());

    w.write_files(&[("index.php", &php("v3"))]);
    w.commit("v3");
    wait_live(&w, &s, &php("v3"), Duration::from_secs(3));
    assert_no_overlap(&history(&w));
}

#[test]
fn during_a_slow_deploy_others_are_refused_and_sigterm_waits_for_it() {
    let _heavy = heavy();
    let port = free_port();
    // The slow hook runs until the test creates `go` (at most 60 s): the
    // deploy is certainly still running while the test checks what it must.
    let go_dir = tempfile::tempdir().unwrap();
    let go = go_dir.path().join("go");
    let w = World::new(
        APP,
        &format!(
            "auto_deploy:\n  every: 1s\nhooks:\n  after_checkout: ['if [ -f slow ]; then i=0; \
             while [ ! -e {go} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; fi']\n\
             trigger:\n  listen: 127.0.0.1:{port}\n  token: tok\n",
            go = go.display()
        ),
    );
    let mut s = Serve::start(&w);
    wait_live(&w, &s, &php("v1"), Duration::from_secs(10));
    wait_http(&s, port);

    w.write_files(&[("index.php", &php("v2")), ("slow", "")]);
    let c2 = w.commit("v2, slow hook");
    // The deploy is under way once the snapshot serves.
    let ok = wait_until(Duration::from_secs(3), || {
        w.link_target().starts_with("ROOT_")
    });
    assert!(ok, "the deploy did not start:\n{}", s.log());

    // A manual deploy gets the lock error; the trigger URL gets 409.
    let err = w.fails(&["deploy"]);
    assert!(err.contains("already running"), "{err}");
    let (code, body) = http(
        port,
        "POST",
        "/deploy",
        &[("Authorization", "Bearer tok")],
        b"",
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("already running"), "{body}");

    // SIGTERM mid-deploy: it finishes, then the service exits 0; a second signal is ignored.
    s.signal(libc::SIGTERM);
    s.wait_log("waiting for deploy", Duration::from_secs(5));
    assert!(s.running(), "exited during the deploy:\n{}", s.log());
    s.signal(libc::SIGTERM);
    s.wait_log("SIGTERM ignored", Duration::from_secs(5));
    assert!(s.running(), "exited during the deploy:\n{}", s.log());
    std::fs::write(&go, "").unwrap();
    let status = s
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("still running:\n{}", s.log()));
    assert!(status.success(), "exit status {status:?}:\n{}", s.log());
    let log = s.log();
    assert!(log.contains("waiting for deploy"), "{log}");
    assert!(log.contains("SIGTERM ignored"), "{log}");
    assert_eq!(w.link_target(), "ROOT");
    assert_eq!(live(&w).as_deref(), Some(php("v2").as_str()));
    let hist = history(&w);
    assert_eq!(hist.last().unwrap()["result"], "success");
    assert_eq!(hist.last().unwrap()["commit"], c2.as_str());
    assert_no_overlap(&hist);
    // Nothing half-done is left: a manual deploy finds it up to date.
    assert!(w.ok(&["deploy"]).starts_with("up to date"));
}

#[test]
fn trigger_url_and_webhooks() {
    let port = free_port();
    let w = World::new(
        APP,
        &format!(
            "auto_deploy:\n  enabled: false\ntrigger:\n  listen: 127.0.0.1:{port}\n  token: s3cret-token\n  \
             github_secret: gh-s3cret\n  gitlab_token: gl-s3cret\n  metrics_token: {METRICS_TOKEN}\n"
        ),
    );
    let s = Serve::start(&w);
    wait_http(&s, port);
    assert!(
        live(&w).is_none(),
        "polling is off: nothing deploys by itself"
    );

    // Wrong or missing token: 401, nothing deployed, secret not logged.
    let (code, _) = http(
        port,
        "POST",
        "/deploy",
        &[("Authorization", "Bearer nope")],
        b"",
    );
    assert_eq!(code, 401);
    let (code, _) = http(port, "POST", "/deploy", &[], b"");
    assert_eq!(code, 401);
    assert_eq!(deploy_counts(port), (0, 0), "a rejected request deployed");
    assert!(live(&w).is_none());
    assert!(history(&w).is_empty());

    // Valid token: 202 with the deploy id, which the history records.
    let (code, body) = http(
        port,
        "POST",
        "/deploy",
        &[("Authorization", "Bearer s3cret-token")],
        b"",
    );
    assert_eq!(code, 202, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    wait_live(&w, &s, &php("v1"), Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(2), || history(&w)
        .last()
        .is_some_and(|r| r["id"] == id.as_str())));
    assert_eq!(history(&w).last().unwrap()["trigger"], "trigger");

    // GitHub: a push to main with a valid signature deploys; a tampered body does not.
    w.write_files(&[("index.php", &php("v2"))]);
    let c2 = w.commit("v2");
    let push = format!(r#"{{"ref":"refs/heads/main","after":"{c2}"}}"#);
    let sig = github_sig("gh-s3cret", push.as_bytes());
    let tampered = push.replace("main", "mainx");
    wait_finished(port, 1);
    let (code, _) = http(
        port,
        "POST",
        "/webhook/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sig),
            ("Content-Type", "application/json"),
        ],
        tampered.as_bytes(),
    );
    assert_eq!(code, 401);
    let (code, _) = http(
        port,
        "POST",
        "/webhook/github",
        &[("X-GitHub-Event", "push")],
        push.as_bytes(),
    );
    assert_eq!(code, 401, "no signature");
    assert_eq!(deploy_counts(port), (0, 1), "a rejected webhook deployed");
    assert_eq!(live(&w).as_deref(), Some(php("v1").as_str()));
    // A push to another branch is acknowledged and ignored.
    let other = r#"{"ref":"refs/heads/feature"}"#;
    let (code, body) = http(
        port,
        "POST",
        "/webhook/github",
        &[
            ("X-GitHub-Event", "push"),
            (
                "X-Hub-Signature-256",
                &github_sig("gh-s3cret", other.as_bytes()),
            ),
        ],
        other.as_bytes(),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("ignored"), "{body}");
    assert_eq!(deploy_counts(port), (0, 1), "an ignored push deployed");
    let (code, body) = http(
        port,
        "POST",
        "/webhook/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sig),
            ("Content-Type", "application/json"),
        ],
        push.as_bytes(),
    );
    assert_eq!(code, 202, "{body}");
    assert!(body.contains("check requested"), "{body}");
    wait_live(&w, &s, &php("v2"), Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(2), || history(&w)
        .last()
        .is_some_and(|r| r["trigger"] == "webhook")));

    // GitLab: the token header.
    w.write_files(&[("index.php", &php("v3"))]);
    w.commit("v3");
    let gl = r#"{"object_kind":"push","ref":"refs/heads/main"}"#;
    wait_finished(port, 2);
    let (code, _) = http(
        port,
        "POST",
        "/webhook/gitlab",
        &[("X-Gitlab-Token", "wrong")],
        gl.as_bytes(),
    );
    assert_eq!(code, 401);
    assert_eq!(deploy_counts(port), (0, 2), "a wrong GitLab token deployed");
    let (code, body) = http(
        port,
        "POST",
        "/webhook/gitlab",
        &[("X-Gitlab-Token", "gl-s3cret")],
        gl.as_bytes(),
    );
    assert_eq!(code, 202, "{body}");
    wait_live(&w, &s, &php("v3"), Duration::from_secs(5));
    // The deploy goes on a little after the switch (drain, late copy-back, evict).
    assert!(
        wait_until(Duration::from_secs(5), || history(&w).len() == 3),
        "{:#?}",
        history(&w)
    );

    // Bodies over 1 MiB: 413.
    let big = vec![b'x'; 1024 * 1024 + 1];
    let (code, _) = http(
        port,
        "POST",
        "/webhook/github",
        &[("X-GitHub-Event", "push")],
        &big,
    );
    assert_eq!(code, 413);

    // Status and metrics.
    let status = || {
        let auth = ("Authorization", "Bearer s3cret-token");
        let (code, body) = http(port, "GET", "/status", &[auth], b"");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let st = status();
    assert_eq!(st["live"], "ROOT");
    assert_eq!(st["deployed_commit"], history(&w).last().unwrap()["commit"]);
    // The lock is released a moment after the history line is written.
    let idle = wait_until(Duration::from_secs(5), || {
        status()["deploy_running"].is_null()
    });
    assert!(idle, "{:#}", status());
    // A queued trigger may start its deploy right after the idle status:
    // the metrics are read once no deploy runs and the three have counted.
    let metrics = || http(port, "GET", "/metrics", &[METRICS_AUTH], b"");
    let settled = wait_until(Duration::from_secs(10), || {
        let (_, body) = metrics();
        body.contains("rootswap_deploy_running 0")
            && body.contains("rootswap_deploys_total{result=\"success\"} 3")
    });
    let (code, body) = metrics();
    assert!(settled, "{body}");
    assert_eq!(code, 200, "{body}");
    for needle in [
        "rootswap_deploys_total{result=\"success\"} 3",
        "rootswap_deploys_total{result=\"failed\"} 0",
        "rootswap_last_deploy_duration_seconds ",
        "rootswap_last_deploy_timestamp_seconds ",
        "rootswap_snapshots 1",
        "rootswap_snapshot_bytes ",
    ] {
        assert!(body.contains(needle), "no {needle:?} in\n{body}");
    }

    let log = s.log();
    assert!(log.contains("rejected (401)"), "{log}");
    for secret in [
        "s3cret-token",
        "gh-s3cret",
        "gl-s3cret",
        "nope",
        METRICS_TOKEN,
    ] {
        assert!(!log.contains(secret), "the log shows {secret:?}:\n{log}");
    }
}

#[test]
fn config_reloads_and_a_broken_config_is_rejected() {
    let w = World::new(APP, "auto_deploy:\n  every: 1s\n");
    let mut s = Serve::start(&w);
    wait_live(&w, &s, &php("v1"), Duration::from_secs(10));

    std::fs::write(&w.config, "webroot: [this is not\n  valid yaml\n").unwrap();
    s.wait_log(
        "rejected, keeping the previous configuration",
        Duration::from_secs(5),
    );
    assert!(s.running(), "the service exited:\n{}", s.log());
    // The old configuration still deploys.
    w.write_files(&[("index.php", &php("v2"))]);
    w.commit("v2");
    wait_live(&w, &s, &php("v2"), Duration::from_secs(3));

    // A valid change applies: the new hook runs on the next deploy.
    w.set_config("auto_deploy:\n  every: 1s\nhooks:\n  after_checkout: ['touch hook-ran']\n");
    s.wait_log(
        "configuration reloaded (config file changed)",
        Duration::from_secs(5),
    );
    w.write_files(&[("index.php", &php("v3"))]);
    w.commit("v3");
    wait_live(&w, &s, &php("v3"), Duration::from_secs(3));
    assert!(w.root().join("hook-ran").exists(), "{}", s.log());

    // SIGHUP reloads too (here: nothing changed).
    s.signal(libc::SIGHUP);
    s.wait_log("configuration reload (SIGHUP)", Duration::from_secs(5));
    assert!(s.running());
    s.signal(libc::SIGINT);
    let status = s
        .wait_exit(Duration::from_secs(10))
        .expect("exits on SIGINT");
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_head_a_rollback_left_is_not_redeployed() {
    let w = World::new(APP, "auto_deploy:\n  every: 1s\n");
    w.ok(&["deploy"]);
    w.write_files(&[("index.php", &php("v2"))]);
    let c2 = w.commit("v2");
    // What `rootswap rollback` leaves behind: v1 live, the head it left pinned.
    let state_path = w.webroot.join(".rootswap/state.json");
    let mut state: serde_json::Value = serde_json::from_str(&read(&state_path)).unwrap();
    state["pinned_from"] = serde_json::Value::String(c2.clone());
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();

    let s = Serve::start(&w);
    s.wait_log("rollback moved away from", Duration::from_secs(5));
    // Two more complete checks decide the same.
    wait_polls(&w, &s, 3, Duration::from_secs(10));
    assert_eq!(live(&w).as_deref(), Some(php("v1").as_str()));
    assert_eq!(history(&w).len(), 1);

    w.write_files(&[("index.php", &php("v3"))]);
    w.commit("v3");
    wait_live(&w, &s, &php("v3"), Duration::from_secs(3));
    let pin = || {
        serde_json::from_str::<serde_json::Value>(&read(&state_path)).unwrap()["pinned_from"]
            .clone()
    };
    let cleared = wait_until(Duration::from_secs(3), || pin().is_null());
    assert!(
        cleared,
        "a deploy of the branch clears the pin: {:?}",
        pin()
    );
}

#[test]
fn a_cron_schedule_polls_too() {
    let _heavy = heavy();
    let w = World::new(APP, "");
    std::fs::write(
        &w.config,
        format!(
            "webroot: {}\nsource:\n  repo: file://{}\ndrain: 0s\nauto_deploy:\n  cron: '* * * * * *'\n",
            w.webroot.display(),
            w.repo.display()
        ),
    )
    .unwrap();
    let s = Serve::start(&w);
    wait_live(&w, &s, &php("v1"), Duration::from_secs(10));
    assert!(s.log().contains("polling on cron"), "{}", s.log());
    w.write_files(&[("index.php", &php("v2"))]);
    w.commit("v2");
    wait_live(&w, &s, &php("v2"), Duration::from_secs(3));
}

#[test]
fn a_reload_moves_the_trigger_url_and_a_bad_address_keeps_the_old_one() {
    let (a, b) = (free_port(), free_port());
    let trigger = |port: u16| {
        format!("auto_deploy:\n  enabled: false\ntrigger:\n  listen: 127.0.0.1:{port}\n  token: t0ken\n")
    };
    let w = World::new(APP, &trigger(a));
    let mut s = Serve::start(&w);
    wait_http(&s, a);
    assert_eq!(
        http(
            a,
            "GET",
            "/status",
            &[("Authorization", "Bearer t0ken")],
            b""
        )
        .0,
        200
    );

    // Moved: the new port answers, the old one is closed.
    w.set_config(&trigger(b));
    s.wait_log(
        &format!("trigger URL moved to 127.0.0.1:{b}"),
        Duration::from_secs(5),
    );
    wait_http(&s, b);
    let (code, body) = http(
        b,
        "POST",
        "/deploy",
        &[("Authorization", "Bearer t0ken")],
        b"",
    );
    assert_eq!(code, 202, "{body}");
    assert!(
        wait_until(Duration::from_secs(5), || TcpStream::connect((
            "127.0.0.1",
            a
        ))
        .is_err()),
        "the old port still answers:\n{}",
        s.log()
    );

    // A port someone else holds: the URL stays where it was.
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    w.set_config(&trigger(taken));
    s.wait_log(
        &format!("the trigger URL stays on 127.0.0.1:{b}"),
        Duration::from_secs(5),
    );
    wait_http(&s, b);
    assert_eq!(
        http(
            b,
            "GET",
            "/status",
            &[("Authorization", "Bearer t0ken")],
            b""
        )
        .0,
        200
    );

    // Turned off.
    w.set_config("auto_deploy:\n  enabled: false\n");
    s.wait_log("trigger URL moved to off", Duration::from_secs(5));
    assert!(
        wait_until(Duration::from_secs(5), || TcpStream::connect((
            "127.0.0.1",
            b
        ))
        .is_err()),
        "{}",
        s.log()
    );
    assert!(s.running(), "{}", s.log());
    s.signal(libc::SIGTERM);
    let status = s
        .wait_exit(Duration::from_secs(15))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", s.log());
    drop(squatter);
}

/// `state.json`'s `pinned_from` (the head a rollback moved away from).
fn pinned(w: &World) -> serde_json::Value {
    let p = w.webroot.join(".rootswap/state.json");
    serde_json::from_str::<serde_json::Value>(&read(&p)).unwrap()["pinned_from"].clone()
}

/// A signed GitHub push delivery with its delivery id.
fn github_push(port: u16, secret: &str, delivery: &str, body: &str) -> (u16, String) {
    let sig = github_sig(secret, body.as_bytes());
    http(
        port,
        "POST",
        "/webhook/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", &sig),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
}

#[test]
fn a_push_only_asks_for_a_check_and_a_replay_changes_nothing() {
    let port = free_port();
    let w = World::new(
        APP,
        &format!(
            "auto_deploy:\n  enabled: false\nhooks:\n  after_checkout: ['! grep -q broken index.php']\n\
             trigger:\n  listen: 127.0.0.1:{port}\n  token: tok\n  metrics_token: {METRICS_TOKEN}\n  \
             github_secret: gh\n  gitlab_token: gl\n"
        ),
    );
    let c1 = git(&w.repo, &["rev-parse", "HEAD"]);
    w.ok(&["deploy"]);
    let s = Serve::start(&w);
    wait_http(&s, port);

    // Control: a push of a new commit is looked at and deployed.
    w.write_files(&[("index.php", &php("v2 bad"))]);
    let c2 = w.commit("v2, which will be rolled back");
    let push2 = format!(r#"{{"ref":"refs/heads/main","before":"{c1}","after":"{c2}"}}"#);
    let (code, body) = github_push(port, "gh", "delivery-1", &push2);
    assert_eq!(code, 202, "{body}");
    assert!(body.contains("check requested"), "{body}");
    wait_live(&w, &s, &php("v2 bad"), Duration::from_secs(10));
    wait_finished(port, 1);
    assert_eq!(history(&w).last().unwrap()["trigger"], "webhook");

    // An emergency rollback: v1 live, c2 pinned.
    w.ok(&["rollback"]);
    assert_eq!(live(&w).as_deref(), Some(php("v1").as_str()));
    assert_eq!(pinned(&w), c2.as_str());
    let hist_len = history(&w).len();

    // The same delivery again (GitHub's redelivery), and the same signed body
    // under a new delivery id (a replay): already handled, nothing starts.
    for id in ["delivery-1", "delivery-forged"] {
        let (code, body) = github_push(port, "gh", id, &push2);
        assert_eq!(code, 200, "{id}: {body}");
        assert!(body.contains("already handled"), "{id}: {body}");
    }
    assert_eq!(deploy_counts(port), (0, 1), "a replayed push deployed");
    // A new delivery that names no commit gets past the replay guard: the
    // poller's decision keeps the pin, the bad commit stays off.
    let mark = s.log_len();
    let bare = r#"{"ref":"refs/heads/main"}"#;
    let (code, body) = github_push(port, "gh", "delivery-2", bare);
    assert_eq!(code, 202, "{body}");
    s.wait_log_after(mark, "rollback moved away from", 1, Duration::from_secs(10));
    assert_eq!(deploy_counts(port), (0, 1), "the pinned head was deployed");
    assert_eq!(live(&w).as_deref(), Some(php("v1").as_str()));
    assert_eq!(pinned(&w), c2.as_str(), "the pin was cleared");
    assert_eq!(history(&w).len(), hist_len);

    // A commit whose deploy fails is not retried by a later push.
    w.write_files(&[("index.php", &php("v3 broken"))]);
    let c3 = w.commit("v3, whose hook fails");
    let push3 = format!(r#"{{"ref":"refs/heads/main","before":"{c2}","after":"{c3}"}}"#);
    assert_eq!(github_push(port, "gh", "delivery-3", &push3).0, 202);
    wait_finished(port, 2);
    let failed = |w: &World| {
        history(w)
            .iter()
            .filter(|r| r["result"] == "failed" && r["commit"] == c3.as_str())
            .count()
    };
    assert_eq!(failed(&w), 1, "{:#?}", history(&w));
    let mark = s.log_len();
    let gl = r#"{"object_kind":"push","ref":"refs/heads/main"}"#;
    let gitlab = |uuid: &str| {
        http(
            port,
            "POST",
            "/webhook/gitlab",
            &[("X-Gitlab-Token", "gl"), ("X-Gitlab-Event-UUID", uuid)],
            gl.as_bytes(),
        )
    };
    let (code, body) = gitlab("gl-uuid-1");
    assert_eq!(code, 202, "{body}");
    s.wait_log_after(
        mark,
        "failed to deploy; waiting for a new commit",
        1,
        Duration::from_secs(10),
    );
    assert_eq!(deploy_counts(port), (0, 2), "the failed commit was retried");
    assert_eq!(failed(&w), 1);
    assert_eq!(live(&w).as_deref(), Some(php("v1").as_str()));
    // GitLab's redelivery of the same event: already handled.
    let (code, body) = gitlab("gl-uuid-1");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("already handled"), "{body}");

    // Control: a fresh push of a new commit deploys it.
    w.write_files(&[("index.php", &php("v4"))]);
    let c4 = w.commit("v4");
    let push4 = format!(r#"{{"ref":"refs/heads/main","before":"{c3}","after":"{c4}"}}"#);
    assert_eq!(github_push(port, "gh", "delivery-4", &push4).0, 202);
    wait_live(&w, &s, &php("v4"), Duration::from_secs(10));
    assert!(s.log().contains("already handled"), "{}", s.log());

    // While another process holds the deploy lock (`rootswap deploy` in a
    // shell), a push is refused with 409 and not remembered: the Git host's
    // retry of the same delivery is looked at once the lock is free.
    wait_finished(port, 3);
    w.write_files(&[("index.php", &php("v5"))]);
    let c5 = w.commit("v5");
    let push5 = format!(r#"{{"ref":"refs/heads/main","before":"{c4}","after":"{c5}"}}"#);
    let held = rootswap::deploy_lock::DeployLock::acquire(&w.webroot.join(".rootswap")).unwrap();
    let (code, body) = github_push(port, "gh", "delivery-5", &push5);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("already running"), "{body}");
    drop(held);
    let (code, body) = github_push(port, "gh", "delivery-5", &push5);
    assert_eq!(code, 202, "{body}");
    wait_live(&w, &s, &php("v5"), Duration::from_secs(10));
}

#[test]
fn status_and_metrics_need_the_token_and_foreign_hosts_are_refused() {
    let port = free_port();
    let trigger = |public: bool| {
        format!(
            "auto_deploy:\n  enabled: false\ntrigger:\n  listen: 127.0.0.1:{port}\n  token: tok\n  \
             metrics_token: {METRICS_TOKEN}\n  allowed_hosts: [deploy.example.com]\n  public_status: {public}\n"
        )
    };
    let w = World::new(APP, &trigger(false));
    w.ok(&["deploy"]);
    let s = Serve::start(&w);
    wait_http(&s, port);
    let webroot = w.webroot.to_string_lossy().into_owned();
    let token = ("Authorization", "Bearer tok");
    let get = |path: &str, headers: &[(&str, &str)]| http(port, "GET", path, headers, b"");

    // Without a token: 401 and nothing of the site in the answer.
    for path in ["/status", "/metrics"] {
        for h in [vec![], vec![("Authorization", "Bearer nope")]] {
            let (code, body) = get(path, &h);
            assert_eq!(code, 401, "{path} {h:?}: {body}");
            assert!(!body.contains(&webroot), "{path}: {body}");
        }
    }
    // The trigger token reads both; the metrics token only the metrics.
    let (code, body) = get("/status", &[token]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&webroot), "{body}");
    assert_eq!(get("/metrics", &[token]).0, 200);
    let (code, body) = get("/metrics", &[METRICS_AUTH]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("rootswap_snapshots"), "{body}");
    assert_eq!(get("/status", &[METRICS_AUTH]).0, 401);
    // /health stays public (load balancers), whatever the Host.
    assert_eq!(get("/health", &[]).0, 200);
    assert_eq!(get("/health", &[("Host", "evil.example")]).0, 200);

    // DNS rebinding: a name that is not this listener's is refused, token or not.
    for host in [
        "evil.example",
        &format!("evil.example:{port}"),
        "deploy.example.com.evil",
    ] {
        let (code, body) = get("/status", &[token, ("Host", host)]);
        assert_eq!(code, 421, "{host}: {body}");
        assert!(body.contains("trigger.allowed_hosts"), "{body}");
        assert_eq!(get("/", &[("Host", host)]).0, 421, "{host}");
    }
    let (code, _) = http(
        port,
        "POST",
        "/deploy",
        &[token, ("Host", "evil.example")],
        b"",
    );
    assert_eq!(code, 421);
    assert_eq!(deploy_counts(port), (0, 0), "a refused request deployed");
    // Addresses, localhost and allowed names are served.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "deploy.example.com".to_string(),
        format!("DEPLOY.example.com:{port}"),
    ] {
        assert_eq!(get("/status", &[token, ("Host", &host)]).0, 200, "{host}");
    }
    assert!(s.log().contains("refused (421)"), "{}", s.log());

    // public_status: true publishes both read-only views.
    let mark = s.log_len();
    w.set_config(&trigger(true));
    s.wait_log_after(mark, "configuration reloaded", 1, Duration::from_secs(5));
    assert_eq!(get("/status", &[]).0, 200);
    assert_eq!(get("/metrics", &[]).0, 200);
    assert_eq!(get("/status", &[("Host", "evil.example")]).0, 421);
}

/// Starts `rootswap serve` with soft and hard `RLIMIT_NOFILE` at `fds`, as
/// systemd's default (1,024) would give it.
fn serve_with_fd_limit(w: &World, fds: u64) -> Serve {
    use std::os::unix::process::CommandExt;
    let log = w.tmp.path().join("serve-limited.log");
    let out = std::fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let mut cmd = Command::new(bin());
    cmd.arg("-c")
        .arg(&w.config)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    // SAFETY: setrlimit(2) only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: fds,
                rlim_max: fds,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Serve {
        child: cmd.spawn().expect("rootswap serve starts"),
        log,
    }
}

/// Whether the server closed `c` (EOF or reset), reading what it sent first.
fn closed_by_server(c: &mut TcpStream) -> bool {
    let _ = c.set_nonblocking(true);
    let mut buf = [0u8; 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn a_flood_of_slow_clients_does_not_stop_scheduled_deploys() {
    let _heavy = heavy();
    const FLOOD: usize = 1100;
    let port = free_port();
    let w = World::new(
        APP,
        &format!(
            "auto_deploy:\n  every: 1s\ntrigger:\n  listen: 127.0.0.1:{port}\n  token: tok\n  \
             header_timeout: 8s\n"
        ),
    );
    // The test holds FLOOD sockets itself.
    // SAFETY: getrlimit/setrlimit on this process.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_max < (FLOOD as u64) + 200 {
            skip_or_fail(&format!(
                "the test needs {} open files, the hard limit is {}",
                FLOOD + 200,
                lim.rlim_max
            ));
            return;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    let s = serve_with_fd_limit(&w, 1024);
    wait_live(&w, &s, &php("v1"), Duration::from_secs(10));
    wait_http(&s, port);

    // The flood: each connection sends half a request line and stalls.
    let start = Instant::now();
    let mut conns = Vec::new();
    for _ in 0..FLOOD {
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = c.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0");
            conns.push(c);
        }
    }
    let opened = start.elapsed();
    eprintln!("flood: {} connections opened in {opened:?}", conns.len());
    assert!(conns.len() >= 1000, "only {} connections", conns.len());

    // A scheduled deploy of a new commit still happens under the flood.
    w.write_files(&[("index.php", &php("v2"))]);
    let c2 = w.commit("v2 under a flood");
    // (Within less than the header timeout: while the flood holds its connections.)
    let took = wait_live(&w, &s, &php("v2"), Duration::from_secs(6));
    eprintln!("flood: the scheduled deploy went live {took:?} after the commit");
    assert!(
        wait_until(Duration::from_secs(5), || history(&w).last().is_some_and(
            |r| r["commit"] == c2.as_str() && r["result"] == "success"
        )),
        "{:#?}\n{}",
        history(&w),
        s.log()
    );
    // /status with the token answers (once the stalled ones have timed out).
    let t = Instant::now();
    let answered = wait_until(Duration::from_secs(15), || {
        http(
            port,
            "GET",
            "/status",
            &[("Authorization", "Bearer tok")],
            b"",
        )
        .0 == 200
    });
    assert!(answered, "/status never answered:\n{}", s.log());
    eprintln!("flood: /status answered after {:?}", t.elapsed());
    // Every stalled connection has been closed by the header timeout (8 s).
    let deadline = start + Duration::from_secs(8) + opened + Duration::from_secs(3);
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    let open = conns
        .iter_mut()
        .map(closed_by_server)
        .filter(|closed| !closed)
        .count();
    assert_eq!(
        open,
        0,
        "{open} stalled connections still open:\n{}",
        s.log()
    );
    let log = s.log();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(log.contains("trigger.max_connections"), "{log}");
    // Control: normal requests work.
    assert_eq!(
        http(
            port,
            "GET",
            "/status",
            &[("Authorization", "Bearer tok")],
            b""
        )
        .0,
        200
    );
}

#[test]
fn a_slow_body_gets_408_and_a_silent_kept_alive_connection_is_closed() {
    let _heavy = heavy();
    let port = free_port();
    let w = World::new(
        APP,
        &format!(
            "auto_deploy:\n  enabled: false\ntrigger:\n  listen: 127.0.0.1:{port}\n  token: tok\n  \
             github_secret: gh\n  header_timeout: 2s\n  request_timeout: 1s\n"
        ),
    );
    let s = Serve::start(&w);
    wait_http(&s, port);

    // A body announced and never finished: 408 after request_timeout.
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    c.write_all(
        b"POST /webhook/github HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Event: push\r\n\
          Content-Length: 1000\r\n\r\n{\"ref\":",
    )
    .unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    let took = t.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("trigger.request_timeout"), "{answer}");
    assert!(took < Duration::from_secs(5), "answered after {took:?}");

    // Control: a whole request on a kept-alive connection is answered; the
    // connection, silent afterwards, is closed after header_timeout.
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = c.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let t = Instant::now();
    let rest = c.read(&mut buf);
    let took = t.elapsed();
    assert!(
        matches!(rest, Ok(0)) || (rest.is_err() && took < Duration::from_secs(9)),
        "{rest:?} after {took:?}"
    );
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "closed after {took:?}"
    );
}
