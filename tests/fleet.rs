//! Fleet deploys through a real etcd: a 3-member cluster of Debian's
//! `etcd` on 127.0.0.1 ports of each test's own (data in temp dirs, stopped
//! by PID), three real `rootswap serve` nodes with their own webroots, one
//! shared bare Git repository, and `rootswap deploy` as the coordinator.
//!
//! Without `etcd` the tests skip locally and fail under CI=true.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    bin, free_port, git, heavy, parse_pair, rootswap, skip_or_fail, wait_for, web_servers, Fpm,
    Http, Load, Nginx, Pool,
};

const LEASE_S: u64 = 2;

/// Finds etcd, or skips (locally) / fails (CI=true).
fn etcd_bin() -> Option<PathBuf> {
    for p in ["/usr/bin/etcd", "/usr/local/bin/etcd"] {
        if Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    skip_or_fail("etcd is not installed (Debian: apt-get install etcd-server)");
    None
}

/// The fleet's trigger token (`/status`, `/metrics`, `/deploy` and the
/// dashboard need it).
const AUTH: (&str, &str) = ("Authorization", "Bearer fleet-test-token");

/// GET with the fleet's trigger token.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_with(port, path, &[AUTH])
}

/// GET with `headers`; None when nothing listens on `port`.
fn http_get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<(u16, String)> {
    Http::new(port)
        .timeout(Duration::from_secs(3))
        .send("GET", path, headers, b"")
        .ok()
}

fn http_post_deploy(port: u16) -> Option<(u16, String)> {
    Http::new(port)
        .timeout(Duration::from_secs(5))
        .send("POST", "/deploy", &[AUTH], b"")
        .ok()
}

fn kill(pid: u32, sig: i32) {
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// A 3-member etcd cluster.
struct Etcd {
    children: Vec<Option<Child>>,
    clients: Vec<u16>,
}

impl Etcd {
    /// Starts the cluster; again on new ports when a member does not come
    /// up (a port picked as free can be taken meanwhile by another test's
    /// outgoing connection).
    fn start(bin: &Path, dir: &Path) -> Etcd {
        for attempt in 1..=3 {
            let d = dir.join(format!("etcd-try{attempt}"));
            std::fs::create_dir_all(&d).unwrap();
            if let Some(e) = Etcd::try_start(bin, &d) {
                return e;
            }
        }
        panic!(
            "etcd did not come up in 3 attempts; see {}/etcd-try*/etcd*.log",
            dir.display()
        );
    }

    fn try_start(bin: &Path, dir: &Path) -> Option<Etcd> {
        let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let peers: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let cluster = (0..3)
            .map(|i| format!("e{i}=http://127.0.0.1:{}", peers[i]))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("rootswap-test-{}-{}", std::process::id(), clients[0]);
        let children = (0..3)
            .map(|i| {
                let log = std::fs::File::create(dir.join(format!("etcd{i}.log"))).unwrap();
                Some(
                    Command::new(bin)
                        .args(["--name", &format!("e{i}")])
                        .arg("--data-dir")
                        .arg(dir.join(format!("etcd{i}")))
                        .args([
                            "--listen-client-urls",
                            &format!("http://127.0.0.1:{}", clients[i]),
                            "--advertise-client-urls",
                            &format!("http://127.0.0.1:{}", clients[i]),
                            "--listen-peer-urls",
                            &format!("http://127.0.0.1:{}", peers[i]),
                            "--initial-advertise-peer-urls",
                            &format!("http://127.0.0.1:{}", peers[i]),
                            "--initial-cluster",
                            &cluster,
                            "--initial-cluster-token",
                            &token,
                            "--initial-cluster-state",
                            "new",
                            "--heartbeat-interval",
                            "50",
                            "--election-timeout",
                            "500",
                        ])
                        .stdout(Stdio::null())
                        .stderr(log)
                        .spawn()
                        .expect("etcd starts"),
                )
            })
            .collect();
        let e = Etcd { children, clients };
        let start = Instant::now();
        for &c in &e.clients {
            while !http_get(c, "/health").is_some_and(|(code, b)| code == 200 && b.contains("true"))
            {
                if start.elapsed() > Duration::from_secs(20) {
                    return None; // dropped: its members are killed
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(e)
    }

    /// Index of the member that is the raft leader now.
    fn leader(&self) -> Option<usize> {
        self.clients.iter().position(|&c| {
            self.children[self.clients.iter().position(|&x| x == c).unwrap()].is_some()
                && http_get(c, "/metrics")
                    .is_some_and(|(_, b)| b.lines().any(|l| l.trim() == "etcd_server_is_leader 1"))
        })
    }

    fn kill_member(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops member `i` (SIGSTOP: it hangs, its connections stay open) and
    /// wakes it `after` later, from a thread of its own.
    fn pause_member(&self, i: usize, after: Duration) -> std::thread::JoinHandle<()> {
        let pid = self.children[i].as_ref().expect("member running").id();
        kill(pid, libc::SIGSTOP);
        std::thread::spawn(move || {
            std::thread::sleep(after);
            kill(pid, libc::SIGCONT);
        })
    }

    /// Waits until every running member answers `/health` with true.
    fn wait_healthy(&self) {
        for (i, &c) in self.clients.iter().enumerate() {
            if self.children[i].is_none() {
                continue;
            }
            wait_for("an etcd member's health", Duration::from_secs(20), || {
                http_get(c, "/health").is_some_and(|(code, b)| code == 200 && b.contains("true"))
            });
        }
    }

    fn endpoints(&self) -> String {
        self.clients
            .iter()
            .map(|c| format!("'http://127.0.0.1:{c}'"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One web node: its webroot, config and (when running) its `rootswap serve`.
struct Node {
    name: String,
    dir: PathBuf,
    config: PathBuf,
    port: u16,
    serve: Option<Child>,
    starts: usize,
}

impl Node {
    fn webroot(&self) -> PathBuf {
        self.dir.join("webroot")
    }

    fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Starts `rootswap serve` with extra environment variables.
    fn start_with(&mut self, env: &[(&str, &str)]) {
        self.starts += 1;
        let log =
            std::fs::File::create(self.dir.join(format!("serve-{}.log", self.starts))).unwrap();
        let child = Command::new(bin())
            .arg("-c")
            .arg(&self.config)
            .arg("serve")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("rootswap serve starts");
        self.serve = Some(child);
        let port = self.port;
        wait_for(
            &format!("{}'s HTTP port", self.name),
            Duration::from_secs(20),
            || http_get(port, "/health").is_some(),
        );
    }

    fn pid(&self) -> u32 {
        self.serve.as_ref().expect("running").id()
    }

    fn health(&self) -> Option<u16> {
        http_get(self.port, "/health").map(|r| r.0)
    }

    /// Waits (at most `max`) for the serve process to end by itself.
    fn wait_exit(&mut self, max: Duration) -> std::process::ExitStatus {
        let c = self.serve.as_mut().expect("running");
        let start = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                self.serve = None;
                return st;
            }
            assert!(
                start.elapsed() < max,
                "{} did not exit within {max:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn sigkill(&mut self) {
        if let Some(mut c) = self.serve.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        (1..=self.starts)
            .map(|i| {
                std::fs::read_to_string(self.dir.join(format!("serve-{i}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n--- restarted ---\n")
    }

    fn run(&self, args: &[&str]) -> Output {
        rootswap(&self.config)
            .args(args)
            .output()
            .expect("rootswap runs")
    }

    /// What ROOT holds (index.php), what the link points at, what state.json says.
    fn version(&self) -> (String, String, Option<String>) {
        let w = self.webroot();
        let index = std::fs::read_to_string(w.join("ROOT/index.php")).unwrap_or_default();
        let link = std::fs::read_link(w.join("current"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let state: Option<serde_json::Value> =
            std::fs::read_to_string(w.join(".rootswap/state.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
        let deployed = state.and_then(|s| s["deployed"].as_str().map(String::from));
        (index, link, deployed)
    }

    /// What a request gets: index.php through the serving link.
    fn served(&self) -> String {
        std::fs::read_to_string(self.webroot().join("current/index.php")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = self.serve.as_mut() {
            kill(c.id(), libc::SIGCONT);
        }
        self.sigkill();
    }
}

/// Three nodes, one bare repository, one etcd cluster.
struct Fleet {
    nodes: Vec<Node>,
    work: PathBuf,
    tmp: PathBuf,
    etcd: Etcd,
    _dir: tempfile::TempDir,
}

impl Fleet {
    fn new() -> Option<Fleet> {
        Fleet::build(&[])
    }

    /// A fleet whose nodes also have these `hooks.once` entries (`{t}`: the temp dir).
    fn build(once: &[&str]) -> Option<Fleet> {
        let etcd_bin = etcd_bin()?;
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().to_path_buf();
        let etcd = Etcd::start(&etcd_bin, &tmp);
        let bare = tmp.join("app.git");
        let work = tmp.join("work");
        std::fs::create_dir_all(&bare).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        let site = format!("t{}-{}", std::process::id(), etcd.clients[0]);
        let nodes = (0..3)
            .map(|i| {
                let name = format!("n{i}");
                let ndir = tmp.join(&name);
                std::fs::create_dir_all(ndir.join("webroot")).unwrap();
                let port = free_port();
                let t = tmp.display();
                let config = ndir.join("rootswap.yaml");
                let once: String = if once.is_empty() {
                    String::new()
                } else {
                    let items: String = once
                        .iter()
                        .map(|c| format!("    - {}\n", c.replace("{t}", &t.to_string())))
                        .collect();
                    format!("  once:\n{items}")
                };
                // The drain outlasts the load test's requests: a request still running on
                // ROOT while the checkout rewrites it would be torn (docs/zero-downtime.md).
                std::fs::write(
                    &config,
                    format!(
                        "webroot: {webroot}\nsource:\n  repo: {bare}\n  branch: main\ndrain: 200ms\n\
                         auto_deploy: {{enabled: false}}\ntrigger: {{listen: '127.0.0.1:{port}', token: fleet-test-token}}\n\
                         hooks:\n{once}  after_checkout:\n    - test ! -e {t}/fail-{name}\n    - touch {t}/in-prepare-{name}; while [ -e {t}/hold-{name} ]; do sleep 0.05; done\n\
                         \x20 after_switch:\n    - echo \"$ROOTSWAP_COMMIT $(readlink ../current)\" >> {t}/after-switch-{name}\n\
                         fleet:\n  etcd: [{eps}]\n  site: {site}\n  node: {name}\n  lease: {LEASE_S}s\n  prepare_timeout: 60s\n",
                        webroot = ndir.join("webroot").display(),
                        bare = bare.display(),
                        eps = etcd.endpoints(),
                    ),
                )
                .unwrap();
                Node {
                    name,
                    dir: ndir,
                    config,
                    port,
                    serve: None,
                    starts: 0,
                }
            })
            .collect();
        let mut f = Fleet {
            nodes,
            work,
            tmp,
            etcd,
            _dir: dir,
        };
        for n in f.nodes.iter_mut() {
            n.start();
        }
        f.wait_members(3);
        Some(f)
    }

    /// Waits until every node's `hooks.after_switch` last logged `line`.
    fn wait_after_switch(&self, line: &str) {
        wait_for(
            &format!("hooks.after_switch to log `{line}` on every node"),
            Duration::from_secs(20),
            || {
                self.nodes.iter().all(|n| {
                    std::fs::read_to_string(self.tmp.join(format!("after-switch-{}", n.name)))
                        .is_ok_and(|t| t.lines().last() == Some(line))
                })
            },
        );
    }

    /// Commits `index.php` = `text` and pushes it; returns the commit id.
    fn push(&self, text: &str) -> String {
        std::fs::write(self.work.join("index.php"), text).unwrap();
        std::fs::write(self.work.join("lib.php"), format!("<?php // {text}\n")).unwrap();
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@e.invalid",
                "commit",
                "-q",
                "-m",
                text,
            ],
        );
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Spawns `rootswap deploy` on node `via` (the coordinator), output piped.
    fn spawn_deploy(&self, via: usize) -> Child {
        Command::new(bin())
            .arg("-c")
            .arg(&self.nodes[via].config)
            .arg("deploy")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn status(&self, via: usize) -> serde_json::Value {
        let out = self.nodes[via].run(&["fleet", "status", "--json"]);
        assert!(
            out.status.success(),
            "fleet status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn wait_members(&self, n: usize) {
        wait_for(
            &format!("{n} alive members and a leader"),
            Duration::from_secs(30),
            || {
                let s = self.status(0);
                let alive = s["nodes"]
                    .as_array()
                    .map(|a| a.iter().filter(|n| n["alive"] == true).count())
                    .unwrap_or(0);
                alive == n && !s["leader"].is_null()
            },
        );
    }

    fn deploy(&self, via: usize) -> Output {
        self.nodes[via].run(&["deploy"])
    }

    fn deploy_ok(&self, via: usize) -> String {
        let out = self.deploy(via);
        let text = format!(
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "fleet deploy failed\n{text}\n{}",
            self.logs()
        );
        text
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("==== {} ====\n{}", n.name, n.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn flag(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    /// Every node serves `text` from ROOT and its state says `commit`.
    fn assert_all_on(&self, text: &str, commit: &str) {
        for n in &self.nodes {
            let (index, link, deployed) = n.version();
            assert_eq!(index, text, "{}: ROOT\n{}", n.name, self.logs());
            assert_eq!(link, "ROOT", "{}: the link", n.name);
            assert_eq!(deployed.as_deref(), Some(commit), "{}: state.json", n.name);
            assert_eq!(n.served(), text, "{}: served", n.name);
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Hooks waiting on a hold file of a killed node must end too.
        for n in &self.nodes {
            let _ = std::fs::remove_file(self.flag(&format!("hold-{}", n.name)));
        }
    }
}

#[test]
fn happy_path_all_three_switch_and_status_shows_it() {
    let _heavy = heavy();
    let Some(f) = Fleet::new() else { return };
    let c1 = f.push("v1");
    let out = f.deploy_ok(0);
    assert!(out.contains("live on 3 of 3 nodes"), "{out}");
    f.assert_all_on("v1", &c1);
    let c2 = f.push("v2");
    let out = f.deploy_ok(1);
    assert!(out.contains("commit point passed"), "{out}");
    for n in ["n0", "n1", "n2"] {
        assert!(out.contains(&format!("{n}: prepared")), "{out}");
        assert!(out.contains(&format!("{n}: switched")), "{out}");
    }
    f.assert_all_on("v2", &c2);
    // hooks.after_switch ran on every node once the fleet settled, on ROOT.
    f.wait_after_switch(&format!("{c2} ROOT"));
    let s = f.status(2);
    assert_eq!(s["committed"]["commit"], c2.as_str(), "{s}");
    assert_eq!(s["last_result"], "committed", "{s}");
    let nodes = s["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{s}");
    for n in nodes {
        assert_eq!(n["alive"], true, "{s}");
        assert_eq!(n["live"], c2.as_str(), "{s}");
        assert_eq!(n["caught_up"], true, "{s}");
        assert_eq!(n["last_deploy"]["state"], "switched", "{s}");
        assert!(
            n["last_deploy"]["rename_ns"].is_i64() || n["last_deploy"]["rename_ns"].is_u64(),
            "{s}"
        );
    }
    assert_eq!(
        nodes.iter().filter(|n| n["leader"] == true).count(),
        1,
        "{s}"
    );
    // Every node's history records the fleet deploy id.
    let id = s["last_deploy"]["id"].as_str().unwrap().to_string();
    for n in &f.nodes {
        let h = n.run(&["history", "--json"]);
        let h: serde_json::Value = serde_json::from_slice(&h.stdout).unwrap();
        let last = h.as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["fleet_id"], id.as_str(), "{}: {last}", n.name);
        assert_eq!(last["result"], "success", "{}: {last}", n.name);
    }
    // Every node is healthy, and says so in /status.
    for n in &f.nodes {
        assert_eq!(
            http_get(n.port, "/health").map(|r| r.0),
            Some(200),
            "{}",
            n.name
        );
        let (code, body) = http_get(n.port, "/status").unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(code, 200, "{body}");
        assert_eq!(v["fleet"]["node"], n.name.as_str(), "{body}");
        assert_eq!(v["fleet"]["caught_up"], true, "{body}");
    }
    // The dashboard of any node shows every node of the fleet.
    let (code, view) = http_get_with(f.nodes[2].port, "/dashboard/view", &[AUTH]).unwrap();
    assert_eq!(code, 200, "{view}");
    for n in &f.nodes {
        assert!(
            view.contains(&format!(r#"data-node="{}""#, n.name)),
            "{}: {view}",
            n.name
        );
    }
    assert!(
        view.contains("(leader)") && view.contains("committed"),
        "{view}"
    );
    // Nothing new: up to date everywhere, nothing touched.
    let out = f.deploy_ok(2);
    assert!(out.contains("up to date on every node"), "{out}");
    // A rollback on one node rolls the whole fleet back.
    let out = f.nodes[1].run(&["rollback"]);
    assert!(out.status.success(), "{}\n{}", text(&out), f.logs());
    assert!(
        text(&out).contains("live on 3 of 3 nodes"),
        "{}",
        text(&out)
    );
    f.assert_all_on("v1", &c1);
    f.wait_after_switch(&format!("{c1} ROOT"));
}

#[test]
fn a_hook_failing_on_one_node_aborts_and_all_stay_old() {
    let _heavy = heavy();
    let Some(f) = Fleet::new() else { return };
    let c1 = f.push("v1");
    f.deploy_ok(0);
    std::fs::write(f.flag("fail-n1"), "").unwrap();
    f.push("v2");
    let out = f.deploy(0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the fleet deploy must fail\n{stdout}"
    );
    assert!(
        stderr.contains("aborted") && stderr.contains("n1"),
        "{stderr}"
    );
    assert!(stdout.contains("n1: failed"), "{stdout}");
    f.assert_all_on("v1", &c1);
    let s = f.status(1);
    assert_eq!(s["committed"]["commit"], c1.as_str(), "{s}");
    assert!(
        s["last_result"].as_str().unwrap().starts_with("aborted"),
        "{s}"
    );
    for n in s["nodes"].as_array().unwrap() {
        let state = n["last_deploy"]["state"].as_str().unwrap();
        let want = if n["node"] == "n1" {
            "failed"
        } else {
            "aborted"
        };
        assert_eq!(state, want, "{s}");
    }
}

#[test]
fn sigkill_during_prepare_aborts_within_a_lease_and_the_node_rejoins() {
    let _heavy = heavy();
    let Some(mut f) = Fleet::new() else { return };
    let c1 = f.push("v1");
    f.deploy_ok(0);
    std::fs::write(f.flag("hold-n2"), "").unwrap();
    let _ = std::fs::remove_file(f.flag("in-prepare-n2"));
    f.push("v2");
    let coordinator = Command::new(bin())
        .arg("-c")
        .arg(&f.nodes[0].config)
        .arg("deploy")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let flag = f.flag("in-prepare-n2");
    wait_for("n2 to be preparing", Duration::from_secs(30), || {
        flag.exists()
    });
    let killed = Instant::now();
    f.nodes[2].sigkill();
    let out = coordinator.wait_with_output().unwrap();
    let took = killed.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("aborted") && stderr.contains("n2"),
        "{stderr}"
    );
    // About one lease (etcd expires a lease between TTL and TTL + its tick).
    assert!(
        took < Duration::from_secs(LEASE_S * 3),
        "abort took {took:?} after the kill (lease {LEASE_S}s)"
    );
    for n in &f.nodes[..2] {
        let (index, link, deployed) = n.version();
        assert_eq!(
            (index.as_str(), link.as_str()),
            ("v1", "ROOT"),
            "{}",
            n.name
        );
        assert_eq!(deployed.as_deref(), Some(c1.as_str()), "{}", n.name);
    }
    // n2 served the old version throughout, and does after a restart.
    assert_eq!(f.nodes[2].served(), "v1");
    std::fs::remove_file(f.flag("hold-n2")).unwrap();
    f.nodes[2].start();
    f.wait_members(3);
    let (index, link, _) = f.nodes[2].version();
    assert_eq!((index.as_str(), link.as_str()), ("v1", "ROOT"));
    let out = f.deploy_ok(1);
    assert!(out.contains("live on 3 of 3 nodes"), "{out}");
    let c2 = git(&f.work, &["rev-parse", "HEAD"]);
    f.assert_all_on("v2", &c2);
}

#[test]
fn two_deploys_at_once_one_runs_the_other_is_told() {
    let _heavy = heavy();
    let Some(f) = Fleet::new() else { return };
    f.push("v1");
    f.deploy_ok(0);
    std::fs::write(f.flag("hold-n0"), "").unwrap();
    let _ = std::fs::remove_file(f.flag("in-prepare-n0"));
    let c2 = f.push("v2");
    let first = Command::new(bin())
        .arg("-c")
        .arg(&f.nodes[0].config)
        .arg("deploy")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let flag = f.flag("in-prepare-n0");
    wait_for("n0 to be preparing", Duration::from_secs(30), || {
        flag.exists()
    });
    let second = f.deploy(1);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second deploy must not run");
    assert!(
        stderr.contains("fleet deploy is already in progress"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rootswap deploy on n0"),
        "names the holder: {stderr}"
    );
    let s = f.status(2);
    assert_eq!(s["deploying"], true, "{s}");
    std::fs::remove_file(f.flag("hold-n0")).unwrap();
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    f.assert_all_on("v2", &c2);
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn sigkill_after_the_commit_point_the_node_switches_when_it_comes_back() {
    let _heavy = heavy();
    let Some(mut f) = Fleet::new() else { return };
    f.push("v1");
    f.deploy_ok(0);
    // n2 kills itself right after journaling `switch-to-root`: the commit
    // point has passed, its link still points at the snapshot.
    f.nodes[2].sigkill();
    f.nodes[2].start_with(&[("ROOTSWAP_CRASH_AT", "switch-to-root")]);
    f.wait_members(3);
    let c2 = f.push("v2");
    let out = f.deploy(0);
    let t = text(&out);
    assert!(t.contains("commit point passed"), "{t}");
    assert!(
        t.contains("n2: down; it switches when it comes back"),
        "{t}"
    );
    assert_eq!(out.status.code(), Some(2), "not every node switched: {t}");
    let st = f.nodes[2].wait_exit(Duration::from_secs(30));
    assert!(!st.success(), "n2 was killed: {st:?}");
    for n in &f.nodes[..2] {
        let (index, link, deployed) = n.version();
        assert_eq!(
            (index.as_str(), link.as_str()),
            ("v2", "ROOT"),
            "{}",
            n.name
        );
        assert_eq!(deployed.as_deref(), Some(c2.as_str()), "{}", n.name);
    }
    // n2 serves one complete version meanwhile (the snapshot of v1, or v2).
    let served = f.nodes[2].served();
    assert!(served == "v1" || served == "v2", "n2 serves {served:?}");
    f.nodes[2].start();
    wait_for("n2 to catch up", Duration::from_secs(60), || {
        f.nodes[2].version().2.as_deref() == Some(c2.as_str()) && f.nodes[2].health() == Some(200)
    });
    f.assert_all_on("v2", &c2);
    wait_for(
        "fleet status: all three on v2",
        Duration::from_secs(20),
        || {
            let s = f.status(1);
            s["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["alive"] == true && n["live"] == c2.as_str() && n["caught_up"] == true)
        },
    );
}

#[test]
fn sigstop_longer_than_the_lease_aborts_and_the_woken_node_does_not_act() {
    let _heavy = heavy();
    let Some(f) = Fleet::new() else { return };
    let c1 = f.push("v1");
    f.deploy_ok(0);
    std::fs::write(f.flag("hold-n1"), "").unwrap();
    let _ = std::fs::remove_file(f.flag("in-prepare-n1"));
    f.push("v2");
    let coordinator = f.spawn_deploy(0);
    let flag = f.flag("in-prepare-n1");
    wait_for("n1 to be preparing", Duration::from_secs(30), || {
        flag.exists()
    });
    let pid = f.nodes[1].pid();
    kill(pid, libc::SIGSTOP);
    let out = coordinator.wait_with_output().unwrap();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("n1 stopped renewing its lease"), "{t}");
    // The prepare finishes while n1 sleeps; then it wakes up.
    std::fs::remove_file(f.flag("hold-n1")).unwrap();
    kill(pid, libc::SIGCONT);
    let id = f.status(0)["last_deploy"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("n1 to report it aborted", Duration::from_secs(30), || {
        f.status(0)["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["node"] == "n1" && n["last_deploy"]["state"] == "aborted")
    });
    assert_eq!(f.status(0)["last_deploy"]["id"], id.as_str());
    f.assert_all_on("v1", &c1);
    f.wait_members(3);
    let out = f.deploy_ok(2);
    assert!(out.contains("live on 3 of 3 nodes"), "{out}");
}

#[test]
fn killing_the_etcd_leader_mid_deploy_ends_all_committed_or_all_aborted() {
    let _heavy = heavy();
    let Some(mut f) = Fleet::new() else { return };
    let c1 = f.push("v1");
    f.deploy_ok(0);
    std::fs::write(f.flag("hold-n1"), "").unwrap();
    let _ = std::fs::remove_file(f.flag("in-prepare-n1"));
    let c2 = f.push("v2");
    let coordinator = f.spawn_deploy(0);
    let flag = f.flag("in-prepare-n1");
    wait_for("n1 to be preparing", Duration::from_secs(30), || {
        flag.exists()
    });
    let mut leader = None;
    wait_for("an etcd leader", Duration::from_secs(10), || {
        leader = f.etcd.leader();
        leader.is_some()
    });
    f.etcd.kill_member(leader.unwrap());
    std::fs::remove_file(f.flag("hold-n1")).unwrap();
    let out = coordinator.wait_with_output().unwrap();
    let t = text(&out);
    // Exit 0: committed and switched everywhere; 1: aborted; 2 would be a
    // commit with a node reported down, which killing etcd must not cause.
    assert_ne!(out.status.code(), Some(2), "{t}");
    let want = if out.status.success() {
        ("v2", c2)
    } else {
        ("v1", c1)
    };
    eprintln!(
        "etcd leader killed: the deploy {}",
        if out.status.success() {
            "committed"
        } else {
            "aborted"
        }
    );
    let start = Instant::now();
    while !f.nodes.iter().all(|n| {
        let (index, link, deployed) = n.version();
        index == want.0 && link == "ROOT" && deployed.as_deref() == Some(want.1.as_str())
    }) {
        let seen: Vec<_> = f.nodes.iter().map(|n| n.version()).collect();
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "nodes did not settle on {}: {seen:?}\n{t}\n{}",
            want.0,
            f.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    f.assert_all_on(want.0, &want.1);
}

/// The issue's hung member: while a fleet deploy runs (n1 prepares), the
/// etcd leader is paused (SIGSTOP) for 5 s, so the rest of the deploy (the
/// reports, the commit point, the switch, the verdict) meets a member that
/// holds its connections open and answers nothing. Every deploy must commit
/// on all three nodes within `prepare_timeout`, while a load checker through
/// nginx + php-fpm sees no failed, torn or stale answer and no version that
/// was not committed. `ROOTSWAP_PAUSE_RUNS` deploys (default 3).
#[test]
fn a_paused_etcd_leader_does_not_stop_a_fleet_deploy() {
    let _heavy = heavy();
    let Some((nginx, fpm)) = web_servers("fleet with a paused etcd leader") else {
        return;
    };
    let Some(mut f) = Fleet::new() else { return };
    let runs: u32 = std::env::var("ROOTSWAP_PAUSE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    push_pair(&f, 0);
    f.deploy_ok(0);
    let (ports, _nginx, _fpm) = serve_through_web(&mut f, &nginx, &fpm);
    let addrs = ports.iter().map(|p| ([127, 0, 0, 1], *p).into()).collect();
    let load = Load::start(addrs, 3);
    let mut took = Vec::new();
    for run in 1..=runs {
        f.etcd.wait_healthy();
        f.wait_members(3);
        std::fs::write(f.flag("hold-n1"), "").unwrap();
        let _ = std::fs::remove_file(f.flag("in-prepare-n1"));
        let commit = push_pair(&f, run);
        let started = Instant::now();
        let mut coordinator = f.spawn_deploy(run as usize % 3);
        while !f.flag("in-prepare-n1").exists() {
            if started.elapsed() > Duration::from_secs(30)
                || coordinator.try_wait().unwrap().is_some()
            {
                let _ = coordinator.kill();
                let out = coordinator.wait_with_output().unwrap();
                panic!(
                    "run {run}: n1 did not prepare\n{}\n{}",
                    text(&out),
                    f.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut leader = None;
        wait_for("an etcd leader", Duration::from_secs(10), || {
            leader = f.etcd.leader();
            leader.is_some()
        });
        let wake = f.etcd.pause_member(leader.unwrap(), Duration::from_secs(5));
        std::fs::remove_file(f.flag("hold-n1")).unwrap();
        let out = coordinator.wait_with_output().unwrap();
        took.push(started.elapsed());
        let t = text(&out);
        wake.join().unwrap();
        // Debian's etcd 3.4.23: the woken member, still believing it leads,
        // revokes every lease it did not see renewed (etcd-io/etcd#15247,
        // fixed in 3.4.28 and 3.5.11); the nodes join again by themselves.
        std::thread::sleep(Duration::from_secs(LEASE_S + 1));
        f.wait_members(3);
        assert!(
            out.status.success(),
            "run {run}: the deploy did not commit with the etcd leader paused\n{t}\n{}",
            f.logs()
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "run {run}: {t}"
        );
        for n in &f.nodes {
            assert_eq!(
                n.version().2.as_deref(),
                Some(commit.as_str()),
                "{}",
                n.name
            );
        }
        load.floor(run);
    }
    let seen = load.stop();
    let mut windows: Vec<f64> = (1..=runs).map(|n| seen.window_ms(n)).collect();
    windows.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let _ = writeln!(
        std::io::stderr(),
        "paused etcd leader: {runs} of {runs} deploys committed, took {took:?}; \
         client-seen window p50 {:.1} ms, p99 {:.1} ms; load: {}",
        percentile(&windows, 0.5),
        percentile(&windows, 0.99),
        seen.summary()
    );
    assert!(
        seen.failed.is_empty() && seen.torn.is_empty() && seen.stale.is_empty(),
        "{}",
        seen.summary()
    );
    assert!(seen.ok > 100, "{}", seen.summary());
    let committed: std::collections::BTreeSet<u32> = (0..=runs).collect();
    assert!(seen.versions.is_subset(&committed), "{}", seen.summary());
}

/// Fleet deploys per measurement: `ROOTSWAP_FLEET_DEPLOYS` (benches/fleet.sh), default 20.
fn deploys() -> u32 {
    std::env::var("ROOTSWAP_FLEET_DEPLOYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(20)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Twenty fleet deploys in a row: each one commits on all three nodes, and
/// the mixed-version window (first to last rename instant, from the links'
/// ctimes) is printed as p50/p99 (a measurement, not asserted).
#[test]
fn twenty_deploys_report_the_mixed_version_window() {
    let _heavy = heavy();
    let Some(f) = Fleet::new() else { return };
    f.push("v0");
    f.deploy_ok(0);
    let mut windows = Vec::new();
    let mut took = Vec::new();
    let mut overhead = Vec::new();
    let count = deploys();
    for i in 1..=count as usize {
        let c = f.push(&format!("v{i}"));
        let started = Instant::now();
        let out = f.nodes[i % 3].run(&["deploy", "--json"]);
        took.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(
            out.status.success(),
            "deploy {i}: {}\n{}",
            text(&out),
            f.logs()
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["result"], "committed", "{v}");
        assert_eq!(v["commit"], c.as_str(), "{v}");
        windows.push(v["window_ms"].as_f64().expect("three renames"));
        f.assert_all_on(&format!("v{i}"), &c);
        // The slowest node's own work: the sum of its deploy's steps.
        let slowest = f
            .nodes
            .iter()
            .map(|n| {
                let h: serde_json::Value =
                    serde_json::from_slice(&n.run(&["history", "--json"]).stdout).unwrap();
                let rec = h.as_array().unwrap().last().unwrap().clone();
                assert_eq!(rec["fleet_id"], v["id"], "{}: {rec}", n.name);
                // Less the wait for the fleet's switch instant, which is not the node's work.
                let waited: f64 = rec["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|s| s["passes"].as_array().cloned().unwrap_or_default())
                    .filter(|p| p["step"] == rootswap::deploy::WAIT_PASS)
                    .map(|p| p["ms"].as_f64().unwrap_or(0.0))
                    .sum();
                rec["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["ms"].as_f64().unwrap_or(0.0))
                    .sum::<f64>()
                    - waited
            })
            .fold(0.0, f64::max);
        overhead.push(took[took.len() - 1] - slowest);
    }
    windows.sort_by(|a, b| a.partial_cmp(b).unwrap());
    took.sort_by(|a, b| a.partial_cmp(b).unwrap());
    overhead.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let line = format!(
        "fleet: {count} deploys, 3 nodes: mixed-version window p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         fleet deploy p50 {:.0} ms, p99 {:.0} ms; beyond the slowest node's own steps p50 {:.0} ms, p99 {:.0} ms",
        percentile(&windows, 0.5),
        percentile(&windows, 0.99),
        windows[windows.len() - 1],
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        percentile(&overhead, 0.5),
        percentile(&overhead, 0.99)
    );
    let _ = writeln!(std::io::stderr(), "{line}");
}

// ------------------------------------------------ under load: nginx + php-fpm

/// OPcache as in production: never revalidated, so only rootswap's reset
/// (over FastCGI, to this pool) makes a node's new code run.
const PHP_INI: &str =
    "zend_extension=opcache.so\nopcache.enable=1\nopcache.validate_timestamps=0\n\
     opcache.memory_consumption=64\nopcache.max_accelerated_files=4000\nrealpath_cache_ttl=120\n";

/// One php-fpm pool (socket `dir/fpm.sock`) and one nginx with a server
/// block per node, each resolving the node's link per request
/// (`$realpath_root`).
fn start_web(dir: &Path, nodes: &[Node], nginx: &Path, fpm: &Path) -> (Vec<u16>, Nginx, Fpm) {
    let sock = dir.join("fpm.sock");
    let fpm = Fpm::start(Pool::new(fpm, dir, &sock, PHP_INI, 6));
    let ports: Vec<u16> = nodes.iter().map(|_| free_port()).collect();
    let servers: String = nodes
        .iter()
        .zip(&ports)
        .map(|(n, p)| {
            format!(
                "server {{ listen 127.0.0.1:{p}; root {w}/current; index index.php;\n\
                 location ~ \\.php$ {{ fastcgi_pass unix:{s}; fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;\n\
                 fastcgi_param DOCUMENT_ROOT $realpath_root; fastcgi_param REQUEST_METHOD $request_method;\n\
                 fastcgi_param SCRIPT_NAME $fastcgi_script_name; fastcgi_param QUERY_STRING $query_string; }} }}\n",
                w = n.webroot().display(),
                s = sock.display()
            )
        })
        .collect();
    let nginx = Nginx::start(nginx, dir, &servers, &ports);
    (ports, nginx, fpm)
}

/// `A<n> B<n>`: index.php of version n and the lib.php it includes.
/// Stores a visitor's upload (named by `?n=`) in the site's `uploads/`,
/// which `.gitignore` keeps out of Git: user content.
const UPLOAD_PHP: &str = "<?php $n = basename($_GET['n'] ?? '');\n\
if ($n === '') { http_response_code(400); exit; }\n\
@mkdir(__DIR__ . '/uploads');\n\
if (file_put_contents(__DIR__ . '/uploads/' . $n, $n) === false) { http_response_code(500); exit; }\n\
echo 'stored ', $n;\n";

/// Commits version `n` of the load site (index.php `A<n>` including lib.php
/// `B<n>`, upload.php, uploads/ ignored) and pushes it; returns the commit.
fn push_pair(f: &Fleet, n: u32) -> String {
    std::fs::write(
        f.work.join("index.php"),
        format!("<?php require __DIR__ . '/lib.php'; echo 'A{n} ', $lib;\n"),
    )
    .unwrap();
    std::fs::write(f.work.join("lib.php"), format!("<?php $lib = 'B{n}';\n")).unwrap();
    std::fs::write(f.work.join("upload.php"), UPLOAD_PHP).unwrap();
    std::fs::write(f.work.join(".gitignore"), "/uploads/\n").unwrap();
    git(&f.work, &["add", "-A"]);
    git(
        &f.work,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e.invalid",
            "commit",
            "-q",
            "-m",
            &format!("v{n}"),
        ],
    );
    git(&f.work, &["push", "-q", "origin", "main"]);
    git(&f.work, &["rev-parse", "HEAD"])
}

/// Starts nginx + php-fpm in front of the three nodes (after a first deploy
/// of version 0), restarts the nodes so that each clears the pool's OPcache
/// and keeps `uploads/`, and waits until each serves version 0 through nginx.
fn serve_through_web(f: &mut Fleet, nginx: &Path, fpm: &Path) -> (Vec<u16>, Nginx, Fpm) {
    let web = f.tmp.join("web");
    std::fs::create_dir_all(&web).unwrap();
    let (ports, nginx, fpm) = start_web(&web, &f.nodes, nginx, fpm);
    let sock = web.join("fpm.sock");
    for i in 0..3 {
        let cfg = std::fs::read_to_string(&f.nodes[i].config).unwrap();
        // uploads/ is in .gitignore: `preserve` makes it user content, copied back.
        let opcache = format!(
            "opcache:\n  fastcgi: unix:{}\nuser_content:\n  preserve: [\"uploads/**\"]\n",
            sock.display()
        );
        std::fs::write(&f.nodes[i].config, format!("{cfg}{opcache}")).unwrap();
        f.nodes[i].sigkill();
        f.nodes[i].start();
    }
    f.wait_members(3);
    for &p in &ports {
        wait_for("the site through nginx", Duration::from_secs(10), || {
            http_get(p, "/index.php")
                .is_some_and(|(c, b)| c == 200 && parse_pair(&b) == Some((0, 0)))
        });
    }
    (ports, nginx, fpm)
}

/// Twenty fleet deploys while a load checker sends each request to a node
/// chosen at random: no failed request, no torn response (index.php and
/// the lib.php it includes of one version), every node on the last commit;
/// the mixed-version window is printed (p50/p99).
#[test]
fn twenty_deploys_under_load_through_nginx_and_php_fpm() {
    let _heavy = heavy();
    let Some((nginx, fpm)) = web_servers("fleet under load") else {
        return;
    };
    let Some(mut f) = Fleet::new() else { return };
    push_pair(&f, 0);
    f.deploy_ok(0);
    let (ports, _nginx, _fpm) = serve_through_web(&mut f, &nginx, &fpm);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checkers: Vec<_> = (0..3u64)
        .map(|seed| {
            let (stop, ports) = (stop.clone(), ports.clone());
            std::thread::spawn(move || {
                let (mut ok, mut bad) = (0u64, Vec::new());
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (seed + 1);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let port = ports[(x % ports.len() as u64) as usize];
                    match http_get(port, "/index.php") {
                        Some((200, body)) => match parse_pair(&body) {
                            Some((a, b)) if a == b => ok += 1,
                            _ => bad.push(format!("torn or garbled: {body:?}")),
                        },
                        other => bad.push(format!("failed: {other:?}")),
                    }
                }
                (ok, bad)
            })
        })
        .collect();
    // A visitor uploading to a node chosen at random, a request every 3-10 ms.
    let writer = {
        let (stop, ports) = (stop.clone(), ports.clone());
        std::thread::spawn(move || {
            let (mut stored, mut bad) = (Vec::new(), Vec::new());
            let mut x = 0x2545_f491_4f6c_dd1du64;
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let node = (x % ports.len() as u64) as usize;
                n += 1;
                let name = format!("u{n}");
                match http_get(ports[node], &format!("/upload.php?n={name}")) {
                    Some((200, body)) if body == format!("stored {name}") => {
                        stored.push((node, name))
                    }
                    other => bad.push(format!("upload {name} to node {node}: {other:?}")),
                }
                std::thread::sleep(Duration::from_millis(3 + x % 8));
            }
            (stored, bad)
        })
    };
    let mut windows = Vec::new();
    let mut last = String::new();
    let count = deploys();
    for i in 1..=count {
        last = push_pair(&f, i);
        let out = f.nodes[i as usize % 3].run(&["deploy", "--json"]);
        assert!(
            out.status.success(),
            "deploy {i}: {}\n{}",
            text(&out),
            f.logs()
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        windows.push(v["window_ms"].as_f64().expect("three renames"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut bad) = (0, Vec::new());
    for c in checkers {
        let (o, b) = c.join().unwrap();
        ok += o;
        bad.extend(b);
    }
    assert!(
        bad.is_empty(),
        "{} bad responses of {}: {:?}",
        bad.len(),
        ok + bad.len() as u64,
        &bad[..bad.len().min(10)]
    );
    assert!(ok > 100, "the load checker got only {ok} responses");
    let (stored, failed_uploads) = writer.join().unwrap();
    assert!(failed_uploads.is_empty(), "{failed_uploads:?}");
    assert!(stored.len() > 50, "only {} uploads", stored.len());
    // Every upload is in the ROOT of the node it was sent to, as written.
    let lost: Vec<String> = stored
        .iter()
        .filter(|(node, name)| {
            let p = f.nodes[*node].webroot().join("ROOT/uploads").join(name);
            std::fs::read_to_string(p).ok().as_deref() != Some(name.as_str())
        })
        .map(|(node, name)| format!("{name} on n{node}"))
        .collect();
    if !lost.is_empty() {
        // Where the first one is, if anywhere.
        let first = stored
            .iter()
            .find(|(n, name)| lost.contains(&format!("{name} on n{n}")))
            .unwrap();
        let found = Command::new("find")
            .arg(f.tmp.as_os_str())
            .arg("-name")
            .arg(&first.1)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        panic!(
            "{} of {} uploads lost: {:?}\n{} is at: {found}\n{}",
            lost.len(),
            stored.len(),
            &lost[..lost.len().min(20)],
            first.1,
            f.nodes[first.0].log()
        );
    }
    for n in &f.nodes {
        assert_eq!(n.version().2.as_deref(), Some(last.as_str()), "{}", n.name);
        assert!(
            !n.log().contains("OPcache not cleared"),
            "{}: the OPcache was not cleared\n{}",
            n.name,
            n.log()
        );
    }
    windows.sort_by(|a, b| a.partial_cmp(b).unwrap());
    // Not a benchmark (the figures are printed): the nodes switch together,
    // not each as it gets round to it (a lease apart).
    let max = windows[windows.len() - 1];
    assert!(
        max < 1000.0,
        "the nodes switched {max:.1} ms apart: {windows:?}"
    );
    let _ = writeln!(
        std::io::stderr(),
        "fleet under load: {count} deploys, 3 nodes, {ok} requests, 0 failed, 0 torn; {} uploads, 0 lost; \
         mixed-version window p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        stored.len(),
        percentile(&windows, 0.5),
        percentile(&windows, 0.99),
        windows[windows.len() - 1]
    );
}

/// Start-up errors: an etcd that does not answer, a node id already alive.
#[test]
fn bad_fleet_values_are_one_clear_error_at_start() {
    let _heavy = heavy();
    let Some(f) = Fleet::new() else { return };
    let cfg = std::fs::read_to_string(&f.nodes[0].config).unwrap();
    let webroot = f.tmp.join("extra/webroot");
    std::fs::create_dir_all(&webroot).unwrap();
    let other = cfg
        .replace(
            &f.nodes[0].webroot().display().to_string(),
            &webroot.display().to_string(),
        )
        .replace(
            &format!("127.0.0.1:{}", f.nodes[0].port),
            &format!("127.0.0.1:{}", free_port()),
        );
    // Same node id as n0, which is alive (another pid).
    let dup = f.tmp.join("extra/dup.yaml");
    std::fs::write(&dup, &other).unwrap();
    let out = Command::new(bin())
        .arg("-c")
        .arg(&dup)
        .arg("serve")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("node id `n0` is already alive"), "{err}");
    // No etcd at that address.
    let dead = free_port();
    let mut nowhere = String::new();
    for line in other.lines() {
        if line.trim_start().starts_with("etcd:") {
            nowhere.push_str(&format!("  etcd: ['http://127.0.0.1:{dead}']\n"));
        } else {
            nowhere.push_str(&format!("{}\n", line.replace("node: n0", "node: n9")));
        }
    }
    let path = f.tmp.join("extra/nowhere.yaml");
    std::fs::write(&path, nowhere).unwrap();
    let out = Command::new(bin())
        .arg("-c")
        .arg(&path)
        .arg("serve")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{dead}")) && err.contains("fleet.etcd"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // Nothing was written into the webroot by either attempt.
    let entries: Vec<_> = std::fs::read_dir(&webroot).unwrap().collect();
    assert!(entries.is_empty(), "{entries:?}");
    // And a site name with '/' is refused by `config` already.
    let slash = f.tmp.join("extra/slash.yaml");
    std::fs::write(&slash, other.replace("site: ", "site: a/")).unwrap();
    let out = Command::new(bin())
        .arg("-c")
        .arg(&slash)
        .arg("config")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("without '/'"),
        "{err}"
    );
}

#[test]
fn hooks_once_run_on_one_node_before_the_commit_point_and_a_failure_aborts() {
    let _heavy = heavy();
    let Some(f) = Fleet::build(&[
        "echo \"$(cat index.php) $(cat ../current/index.php 2>/dev/null) $ROOTSWAP_ROOT\" >> {t}/once.log",
        "test ! -e {t}/fail-once",
    ]) else {
        return;
    };
    f.push("v1");
    let out = f.deploy_ok(0);
    assert!(
        out.contains("n0 runs hooks.once"),
        "the coordinating node runs them: {out}"
    );
    let c2 = f.push("v2");
    let out = f.deploy_ok(1);
    assert!(
        out.contains("every member prepared; n1 runs hooks.once"),
        "{out}"
    );
    f.assert_all_on("v2", &c2);
    let log = std::fs::read_to_string(f.flag("once.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "once per fleet deploy: {log}");
    // Run in n1's ROOT, which held v2, while its link still served v1.
    assert!(
        lines[1].starts_with("v2 v1 ") && lines[1].contains("/n1/webroot/ROOT"),
        "{log}"
    );
    std::fs::write(f.flag("fail-once"), "").unwrap();
    f.push("v3");
    let out = f.deploy(2);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("hooks.once failed on node n2"), "{t}");
    f.assert_all_on("v2", &c2);
}

/// A health endpoint for one node: 200 while `ok`, else 500.
fn health_server(ok: std::sync::Arc<std::sync::atomic::AtomicBool>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let good = ok.load(std::sync::atomic::Ordering::SeqCst);
            let status = if good {
                "200 OK"
            } else {
                "500 Internal Server Error"
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    port
}

#[test]
fn a_health_check_failing_after_the_commit_point_rolls_the_whole_fleet_back() {
    let _heavy = heavy();
    let Some(mut f) = Fleet::new() else { return };
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let hport = health_server(healthy.clone());
    let cfg = std::fs::read_to_string(&f.nodes[1].config).unwrap();
    std::fs::write(
        &f.nodes[1].config,
        format!(
            "{cfg}health_check:\n  url: http://127.0.0.1:{hport}/\n  timeout: 2s\n  retries: 0\n"
        ),
    )
    .unwrap();
    f.nodes[1].sigkill();
    f.nodes[1].start();
    f.wait_members(3);
    let c1 = f.push("v1");
    f.deploy_ok(0);
    f.assert_all_on("v1", &c1);
    healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    f.push("v2");
    let out = f.deploy(2);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("n1: unhealthy"), "{t}");
    assert!(t.contains("n1's health check failed"), "{t}");
    assert!(t.contains("rolling the whole fleet back"), "{t}");
    assert!(t.contains("every node went back to"), "{t}");
    f.assert_all_on("v1", &c1);
    let s = f.status(0);
    assert_eq!(s["committed"]["commit"], c1.as_str(), "{s}");
    // The same deploy, reversed: every node records it as rolled back (no
    // second deploy), and went back at one instant.
    let mut fleet_ids = Vec::new();
    for n in &f.nodes {
        let h = n.run(&["history", "--json"]);
        let h: serde_json::Value = serde_json::from_slice(&h.stdout).unwrap();
        let last = h.as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["result"], "rolled-back", "{}: {last}", n.name);
        fleet_ids.push(last["fleet_id"].clone());
    }
    assert!(
        fleet_ids
            .iter()
            .all(|i| *i == fleet_ids[0] && i.is_string()),
        "{fleet_ids:?}"
    );
    assert!(
        s["last_result"]
            .as_str()
            .is_some_and(|r| r.starts_with("rolled back after the commit point")),
        "{s}"
    );
    let backs: Vec<i128> = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let r = &n["last_deploy"];
            assert_eq!(r["state"], "rolled-back", "{s}");
            r["rename_ns"]
                .as_i64()
                .expect("the instant of the way back") as i128
        })
        .collect();
    assert_eq!(backs.len(), 3, "{s}");
    let spread = backs.iter().max().unwrap() - backs.iter().min().unwrap();
    let _ = writeln!(
        std::io::stderr(),
        "fleet rollback after the commit point: the three links went back within {:.1} ms",
        spread as f64 / 1e6
    );
    wait_for("n1 healthy again", Duration::from_secs(20), || {
        f.nodes[1].health() == Some(200)
    });
}

#[test]
fn the_trigger_url_the_leader_deploys_the_fleet_a_follower_names_the_leader() {
    let _heavy = heavy();
    let Some(f) = Fleet::new() else { return };
    let c1 = f.push("v1");
    let s = f.status(0);
    let leader = s["leader"].as_str().unwrap().to_string();
    let li: usize = leader[1..].parse().unwrap();
    let fi = (li + 1) % 3;
    // /status knows who leads (refreshed every second).
    wait_for(
        "the follower to know the leader",
        Duration::from_secs(10),
        || {
            http_get(f.nodes[fi].port, "/status").is_some_and(|(_, b)| {
                serde_json::from_str::<serde_json::Value>(&b)
                    .is_ok_and(|v| v["fleet"]["leader_node"] == leader.as_str())
            })
        },
    );
    let (code, body) = http_post_deploy(f.nodes[fi].port).unwrap();
    assert_eq!(code, 421, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["leader"], leader.as_str(), "{body}");
    assert_eq!(
        v["leader_trigger"],
        format!("127.0.0.1:{}", f.nodes[li].port).as_str(),
        "{body}"
    );
    let (code, body) = http_post_deploy(f.nodes[li].port).unwrap();
    assert_eq!(code, 202, "{body}");
    wait_for("the fleet to deploy v1", Duration::from_secs(60), || {
        f.nodes
            .iter()
            .all(|n| n.version().2.as_deref() == Some(c1.as_str()) && n.version().1 == "ROOT")
    });
    f.assert_all_on("v1", &c1);
}
