//! The fleet under network faults: a test bed of Linux network namespaces.
//!
//! Each etcd member and each `rootswap serve` node runs in a namespace of
//! its own (`rs-<id>-e0`, `rs-<id>-n0`, ...; `<id>` is this test process's
//! pid and a counter), joined by veth pairs to a bridge in a hub namespace,
//! which a veth pair joins to the test's own namespace (the load checker,
//! nginx and php-fpm run there and read each node's webroot link; etcd
//! and the nodes are reached at their addresses on the bridge). Everything
//! is made by the test and removed when the bed is dropped, also when a
//! test panics. A partition is a pair of `blackhole` routes, one in each
//! namespace: packets between the two vanish, both ways, while everyone
//! else still reaches both.
//!
//! What must hold in every scenario: no node ever serves a version the
//! fleet did not commit; after the fault heals, every node converges on the
//! committed version by itself; a node cut off from etcd keeps serving what
//! it had and answers 503 on `/health` once it lost its lease; the load
//! checker sees no failed, torn or stale answer.
//!
//! A slow link is made of [`Delay`] proxies: for a node, its etcd
//! endpoints; for an etcd member, its client and peer ports as everyone
//! reaches them, and the other members as it reaches them (their addresses
//! on its loopback, with ARP answers for them turned off).
//!
//! Needs root and `ip` (iproute2); skips locally without them, fails under
//! CI=true. `tc netem` is not used: the kernel this was written on has no
//! `sch_netem` (see docs/fleet.md for what was measured instead).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::support::{
    bin, free_port, git, heavy, skip_or_fail, wait_for, web_servers, Fpm, Http, Load, Nginx, Pool,
};

const LEASE_S: u64 = 2;
const TRIGGER_PORT: u16 = 8080;

/// Runs `ip ARGS`; panics with its stderr when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `ip ARGS`, ignoring a failure (cleanup).
fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The namespaces, the bridge and the links of one test.
struct Net {
    id: String,
    /// Third octet of the bed's 10.213.X.0/24.
    subnet: u8,
    roles: Vec<String>,
    root_link: String,
}

static BEDS: AtomicU32 = AtomicU32::new(0);

impl Net {
    /// Makes the hub (a bridge), one namespace per role joined to it, and
    /// the link from the test's own namespace; None (skipped) without root
    /// or `ip`.
    fn new(roles: &[&str]) -> Option<Net> {
        if unsafe { libc::geteuid() } != 0 {
            skip_or_fail("the network test bed needs root (network namespaces)");
            return None;
        }
        crate::support::require_tool("ip")?;
        remove_leftovers();
        let n = BEDS.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let id = format!("{pid}-{n}");
        let subnet = ((pid as u64 * 7 + n as u64) % 250) as u8;
        let net = Net {
            root_link: format!("rs{}", (pid * 8 + n) % 100_000_000),
            id,
            subnet,
            roles: roles.iter().map(|r| r.to_string()).collect(),
        };
        let hub = net.ns("hub");
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "set", "lo", "up"]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for role in roles {
            let ns = net.ns(role);
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            let port = format!("v-{role}");
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.addr(role)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        ip(&[
            "link",
            "add",
            &net.root_link,
            "type",
            "veth",
            "peer",
            "name",
            "v-up",
            "netns",
            &hub,
        ]);
        ip(&["-n", &hub, "link", "set", "v-up", "master", "br0", "up"]);
        let me = format!("10.213.{}.254/24", net.subnet);
        ip(&["addr", "add", &me, "dev", &net.root_link]);
        ip(&["link", "set", &net.root_link, "up"]);
        Some(net)
    }

    fn ns(&self, role: &str) -> String {
        format!("rs-{}-{role}", self.id)
    }

    /// e0..e2: .10..12, n0..n2: .20..22.
    fn addr(&self, role: &str) -> String {
        let (kind, i) = role.split_at(1);
        let i: u8 = i.parse().expect("role like e0 or n1");
        let base = if kind == "e" { 10 } else { 20 };
        format!("10.213.{}.{}", self.subnet, base + i)
    }

    /// A command run inside `role`'s namespace.
    fn command(&self, role: &str, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(role)]).arg(program);
        c
    }

    /// Cuts `a` off from each of `others`, both ways.
    fn cut(&self, a: &str, others: &[&str]) {
        for b in others {
            ip(&[
                "-n",
                &self.ns(a),
                "route",
                "add",
                "blackhole",
                &self.addr(b),
            ]);
            ip(&[
                "-n",
                &self.ns(b),
                "route",
                "add",
                "blackhole",
                &self.addr(a),
            ]);
        }
    }

    /// Undoes [`Net::cut`].
    fn heal(&self, a: &str, others: &[&str]) {
        for b in others {
            ip(&[
                "-n",
                &self.ns(a),
                "route",
                "del",
                "blackhole",
                &self.addr(b),
            ]);
            ip(&[
                "-n",
                &self.ns(b),
                "route",
                "del",
                "blackhole",
                &self.addr(a),
            ]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let mut all: Vec<String> = self.roles.iter().map(|r| self.ns(r)).collect();
        all.push(self.ns("hub"));
        for ns in &all {
            // Whatever still runs in it (the fleet's own processes are killed first).
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                }
            }
        }
        ip_quiet(&["link", "del", &self.root_link]);
        for ns in &all {
            ip_quiet(&["netns", "del", ns]);
        }
    }
}

/// A slow link in user space (the kernel here has no `netem`): TCP
/// proxies, one per etcd member, that hold every chunk of data, both ways,
/// 100 ms +- 20 ms (uniform), in order; and, to model 1 % packet loss as TCP
/// meets it, 1 chunk in 100 another 300 ms (Linux's least retransmission
/// timeout, 200 ms, plus a round trip).
struct Delay {
    listen: Vec<SocketAddr>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Delay {
    /// Proxies on `ip` (free ports), one to each of `to`.
    fn start(ip: &str, to: Vec<SocketAddr>) -> Delay {
        let binds = to
            .into_iter()
            .map(|u| (format!("{ip}:0").parse().unwrap(), u))
            .collect();
        Delay::proxies(None, binds)
    }

    /// One proxy per (listen, upstream) pair, made inside network
    /// namespace `ns` when given (its listeners and upstream connections
    /// belong to that namespace: a thread of their own enters it first).
    fn proxies(ns: Option<String>, binds: Vec<(SocketAddr, SocketAddr)>) -> Delay {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            if let Some(ns) = ns {
                let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
                let r =
                    unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            }
            for (n, (bind, upstream)) in binds.into_iter().enumerate() {
                let l = std::net::TcpListener::bind(bind).expect("bind a proxy");
                l.set_nonblocking(true).unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                let stop = stop2.clone();
                // Threads inherit this thread's network namespace.
                std::thread::spawn(move || accept_loop(l, upstream, n as u64, &stop));
            }
        });
        let listen = rx.iter().collect();
        Delay { listen, stop }
    }
}

/// Accepts on `l` and pumps each connection to `upstream` and back, slowly.
fn accept_loop(
    l: std::net::TcpListener,
    upstream: SocketAddr,
    n: u64,
    stop: &std::sync::atomic::AtomicBool,
) {
    let mut seed = 0x517c_c1b7_2722_0a95_u64 ^ n;
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((down, _)) => {
                let Ok(up) = std::net::TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = down.set_nonblocking(false);
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                pump(down.try_clone().unwrap(), up.try_clone().unwrap(), seed);
                pump(up, down, seed ^ 0xff);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

impl Drop for Delay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copies `from` to `to`, each chunk delivered 100 +- 20 ms after it came
/// (300 ms more for 1 in 100), never before the chunk ahead of it.
fn pump(mut from: std::net::TcpStream, mut to: std::net::TcpStream, seed: u64) {
    use std::io::{Read, Write};
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut x = seed | 1;
        let mut last = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut ms = 80 + x % 41;
            if x % 100 == 0 {
                ms += 300;
            }
            last = last.max(Instant::now() + Duration::from_millis(ms));
            if tx.send((last, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (at, data) in rx {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            if to.write_all(&data).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

/// Removes the namespaces and links of beds whose test process is gone
/// (killed before its drops ran).
fn remove_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let mut parts = name.strip_prefix("rs-").unwrap_or_default().split('-');
        let (Some(pid), Some(n)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(pid), Ok(n)) = (pid.parse::<u32>(), n.parse::<u32>()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        ip_quiet(&["link", "del", &format!("rs{}", (pid * 8 + n) % 100_000_000)]);
        ip_quiet(&["netns", "del", name]);
    }
}

fn kill_child(c: &mut Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// GET `path` from `addr`: status and body, None when nothing answers.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    Http::at(addr)
        .timeout(Duration::from_secs(3))
        .send("GET", path, &[], b"")
        .ok()
}

/// An etcd member 100 ms away from everyone: its client and peer ports are
/// reached through proxies in the test's namespace (`client`, `peer`: its
/// URLs for the nodes and the cluster), and it reaches the other members
/// through proxies in its own namespace, which answer at their addresses
/// (given to its loopback) and forward to second addresses of theirs.
struct Far {
    member: usize,
    client: SocketAddr,
    peer: SocketAddr,
    _outside: Delay,
    _inside: Delay,
}

/// The second address of member `o` (the far member's proxies forward there).
fn second_addr(net: &Net, o: usize) -> String {
    format!("10.213.{}.{}", net.subnet, 110 + o)
}

/// The bed: three etcd members, three nodes, one bare repository, and
/// nginx + php-fpm in front of the nodes' webroots.
struct Bed {
    etcd: Vec<Option<Child>>,
    nodes: Vec<Option<Child>>,
    /// The slow node's proxies to etcd, when it has one.
    delay: Option<(usize, Delay)>,
    /// The far etcd member and its proxies, when there is one.
    far: Option<Far>,
    tmp: PathBuf,
    work: PathBuf,
    web: Vec<u16>,
    _nginx: Option<Nginx>,
    _fpm: Option<Fpm>,
    // Dropped last: the processes above die first, then the namespaces go.
    net: Net,
    _dir: tempfile::TempDir,
}

const PHP_INI: &str =
    "zend_extension=opcache.so\nopcache.enable=1\nopcache.validate_timestamps=0\n\
     opcache.memory_consumption=64\nopcache.max_accelerated_files=4000\nrealpath_cache_ttl=120\n";

impl Bed {
    fn new() -> Option<Bed> {
        Bed::build(None, None)
    }

    /// A bed whose node `slow` (if any) reaches etcd through [`Delay`]
    /// proxies, and whose etcd member `far` (if any) is reached by everyone,
    /// and reaches the other members, through such proxies.
    fn build(slow: Option<usize>, far: Option<usize>) -> Option<Bed> {
        let etcd_bin = PathBuf::from("/usr/bin/etcd");
        if !etcd_bin.exists() {
            skip_or_fail("etcd is not installed (Debian: apt-get install etcd-server)");
            return None;
        }
        let (nginx, fpm) = web_servers("the fleet's network test bed")?;
        let net = Net::new(&["e0", "e1", "e2", "n0", "n1", "n2"])?;
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().to_path_buf();
        let mut bed = Bed {
            etcd: Vec::new(),
            nodes: vec![None, None, None],
            delay: None,
            far: None,
            work: tmp.join("work"),
            tmp,
            web: Vec::new(),
            _nginx: None,
            _fpm: None,
            net,
            _dir: dir,
        };
        if let Some(m) = far {
            bed.far = Some(bed.far_member(m));
        }
        bed.start_etcd(&etcd_bin);
        if let Some(i) = slow {
            let me = format!("10.213.{}.254", bed.net.subnet);
            let to = (0..3)
                .map(|e| {
                    format!("{}:2379", bed.net.addr(&format!("e{e}")))
                        .parse()
                        .unwrap()
                })
                .collect();
            bed.delay = Some((i, Delay::start(&me, to)));
        }
        bed.make_repo();
        bed.push(0);
        let sock = bed.tmp.join("fpm.sock");
        for i in 0..3 {
            bed.write_config(i, &sock);
        }
        bed.start_web(&nginx, &fpm, &sock);
        for i in 0..3 {
            bed.start_node(i);
        }
        bed.wait_alive(0, 3);
        let out = bed.deploy(0);
        assert!(out.status.success(), "first deploy: {}", bed.text(&out));
        Some(bed)
    }

    /// Makes member `m` far (see [`Far`]), before etcd starts.
    fn far_member(&self, m: usize) -> Far {
        let me = format!("10.213.{}.254", self.net.subnet);
        let em = self.net.addr(&format!("e{m}"));
        let at = |a: &str, port: u16| -> SocketAddr { format!("{a}:{port}").parse().unwrap() };
        let outside = Delay::proxies(
            None,
            vec![(at(&me, 0), at(&em, 2379)), (at(&me, 0), at(&em, 2380))],
        );
        // The other members' addresses on the far member's loopback must not
        // be answered for on the bridge (ARP), or the nodes' traffic to those
        // members would land here.
        let far_ns = self.net.ns(&format!("e{m}"));
        for (key, value) in [("arp_ignore", "1"), ("arp_announce", "2")] {
            let set = format!(
                "echo {value} > /proc/sys/net/ipv4/conf/all/{key}; echo {value} > /proc/sys/net/ipv4/conf/eth0/{key}"
            );
            ip(&["netns", "exec", &far_ns, "sh", "-c", &set]);
        }
        let mut binds = Vec::new();
        for o in (0..3).filter(|o| *o != m) {
            let eo = self.net.addr(&format!("e{o}"));
            let second = second_addr(&self.net, o);
            ip(&[
                "-n",
                &self.net.ns(&format!("e{o}")),
                "addr",
                "add",
                &format!("{second}/24"),
                "dev",
                "eth0",
            ]);
            ip(&[
                "-n",
                &self.net.ns(&format!("e{m}")),
                "addr",
                "add",
                &format!("{eo}/32"),
                "dev",
                "lo",
            ]);
            binds.push((at(&eo, 2380), at(&second, 2380)));
        }
        let inside = Delay::proxies(Some(self.net.ns(&format!("e{m}"))), binds);
        Far {
            member: m,
            client: outside.listen[0],
            peer: outside.listen[1],
            _outside: outside,
            _inside: inside,
        }
    }

    /// Member `i`'s peer URL as the cluster knows it.
    fn peer_url(&self, i: usize) -> String {
        match &self.far {
            Some(f) if f.member == i => format!("http://{}", f.peer),
            _ => format!("http://{}:2380", self.net.addr(&format!("e{i}"))),
        }
    }

    fn start_etcd(&mut self, bin: &Path) {
        let cluster = (0..3)
            .map(|i| format!("e{i}={}", self.peer_url(i)))
            .collect::<Vec<_>>()
            .join(",");
        for i in 0..3 {
            let role = format!("e{i}");
            let a = self.net.addr(&role);
            let listen_peer = match &self.far {
                Some(f) if f.member != i => {
                    format!("http://{a}:2380,http://{}:2380", second_addr(&self.net, i))
                }
                _ => format!("http://{a}:2380"),
            };
            let log = std::fs::File::create(self.tmp.join(format!("etcd{i}.log"))).unwrap();
            let child = self
                .net
                .command(&role, bin)
                .args(["--name", &role])
                .arg("--data-dir")
                .arg(self.tmp.join(format!("etcd{i}")))
                .args(["--listen-client-urls", &format!("http://{a}:2379")])
                .args(["--advertise-client-urls", &format!("http://{a}:2379")])
                .args(["--listen-peer-urls", &listen_peer])
                .args(["--initial-advertise-peer-urls", &self.peer_url(i)])
                .args(["--initial-cluster", &cluster])
                .args(["--initial-cluster-token", &format!("rs-{}", self.net.id)])
                .args(["--initial-cluster-state", "new"])
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("etcd starts");
            self.etcd.push(Some(child));
        }
        for i in 0..3 {
            let addr: SocketAddr = format!("{}:2379", self.net.addr(&format!("e{i}")))
                .parse()
                .unwrap();
            wait_for("an etcd member", Duration::from_secs(30), || {
                get(addr, "/health").is_some_and(|(c, b)| c == 200 && b.contains("true"))
            });
        }
    }

    /// Index of the etcd member that leads the cluster now.
    fn etcd_leader(&self) -> Option<usize> {
        (0..3).find(|i| {
            let addr: SocketAddr = format!("{}:2379", self.net.addr(&format!("e{i}")))
                .parse()
                .unwrap();
            get(addr, "/metrics")
                .is_some_and(|(_, b)| b.lines().any(|l| l.trim() == "etcd_server_is_leader 1"))
        })
    }

    fn make_repo(&self) {
        let bare = self.tmp.join("app.git");
        std::fs::create_dir_all(&bare).unwrap();
        std::fs::create_dir_all(&self.work).unwrap();
        git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        git(&self.work, &["init", "-q", "-b", "main"]);
        git(
            &self.work,
            &["remote", "add", "origin", bare.to_str().unwrap()],
        );
    }

    /// Commits and pushes version `n` (index.php `A<n>` including lib.php `B<n>`).
    fn push(&self, n: u32) -> String {
        std::fs::write(
            self.work.join("index.php"),
            format!("<?php require __DIR__ . '/lib.php'; echo 'A{n} ', $lib;\n"),
        )
        .unwrap();
        std::fs::write(self.work.join("lib.php"), format!("<?php $lib = 'B{n}';\n")).unwrap();
        git(&self.work, &["add", "-A"]);
        let msg = format!("v{n}");
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
                &msg,
            ],
        );
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.tmp.join(format!("n{i}"))
    }

    fn config(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("rootswap.yaml")
    }

    fn write_config(&self, i: usize, sock: &Path) {
        let d = self.node_dir(i);
        std::fs::create_dir_all(d.join("webroot")).unwrap();
        let eps = match &self.delay {
            Some((slow, d)) if *slow == i => d
                .listen
                .iter()
                .map(|a| format!("'http://{a}'"))
                .collect::<Vec<_>>()
                .join(", "),
            _ => (0..3)
                .map(|e| match &self.far {
                    Some(f) if f.member == e => format!("'http://{}'", f.client),
                    _ => format!("'http://{}:2379'", self.net.addr(&format!("e{e}"))),
                })
                .collect::<Vec<_>>()
                .join(", "),
        };
        let t = self.tmp.display();
        let text = format!(
            "webroot: {webroot}\nsource:\n  repo: {bare}\n  branch: main\ndrain: 200ms\n\
             auto_deploy: {{enabled: false}}\ntrigger: {{listen: '{addr}:{TRIGGER_PORT}', token: t}}\n\
             hooks:\n  after_checkout:\n    - touch {t}/in-prepare-n{i}; while [ -e {t}/hold-n{i} ]; do sleep 0.05; done\n\
             opcache:\n  fastcgi: unix:{sock}\n\
             fleet:\n  etcd: [{eps}]\n  site: s\n  node: n{i}\n  lease: {LEASE_S}s\n  prepare_timeout: 60s\n\
             \x20 switch_delay: 200ms\n",
            webroot = d.join("webroot").display(),
            bare = self.tmp.join("app.git").display(),
            addr = self.net.addr(&format!("n{i}")),
            sock = sock.display(),
        );
        std::fs::write(self.config(i), text).unwrap();
    }

    fn start_web(&mut self, nginx: &Path, fpm: &Path, sock: &Path) {
        let web = self.tmp.join("web");
        std::fs::create_dir_all(&web).unwrap();
        self._fpm = Some(Fpm::start(Pool::new(fpm, &web, sock, PHP_INI, 6)));
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let servers: String = (0..3)
            .map(|i| {
                format!(
                    "server {{ listen 127.0.0.1:{p}; root {w}/current; index index.php;\n\
                     location ~ \\.php$ {{ fastcgi_pass unix:{s}; fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;\n\
                     fastcgi_param DOCUMENT_ROOT $realpath_root; fastcgi_param REQUEST_METHOD $request_method;\n\
                     fastcgi_param SCRIPT_NAME $fastcgi_script_name; fastcgi_param QUERY_STRING $query_string; }} }}\n",
                    p = ports[i],
                    w = self.node_dir(i).join("webroot").display(),
                    s = sock.display()
                )
            })
            .collect();
        self._nginx = Some(Nginx::start(nginx, &web, &servers, &ports));
        self.web = ports;
    }

    fn start_node(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.node_dir(i).join("serve.log"))
            .unwrap();
        let child = self
            .net
            .command(&format!("n{i}"), &bin())
            .arg("-c")
            .arg(self.config(i))
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("rootswap serve starts");
        self.nodes[i] = Some(child);
        wait_for("a node's /health", Duration::from_secs(30), || {
            self.health(i).is_some()
        });
    }

    /// `/health` of node `i`: its status code.
    fn health(&self, i: usize) -> Option<u16> {
        let addr = format!("{}:{TRIGGER_PORT}", self.net.addr(&format!("n{i}")));
        get(addr.parse().unwrap(), "/health").map(|r| r.0)
    }

    /// Runs `rootswap ARGS` as node `via`, in its namespace.
    fn run(&self, via: usize, args: &[&str]) -> Output {
        self.net
            .command(&format!("n{via}"), &bin())
            .arg("-c")
            .arg(self.config(via))
            .args(args)
            .output()
            .expect("rootswap runs")
    }

    fn deploy(&self, via: usize) -> Output {
        self.run(via, &["deploy", "--json"])
    }

    fn spawn_deploy(&self, via: usize) -> Child {
        self.net
            .command(&format!("n{via}"), &bin())
            .arg("-c")
            .arg(self.config(via))
            .args(["deploy", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits until `fleet status` (asked of node `via`) shows `n` alive nodes.
    fn wait_alive(&self, via: usize, n: usize) {
        wait_for(&format!("{n} alive nodes"), Duration::from_secs(30), || {
            let out = self.run(via, &["fleet", "status", "--json"]);
            let Ok(s) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
                return false;
            };
            let alive = s["nodes"]
                .as_array()
                .map(|a| a.iter().filter(|n| n["alive"] == true).count())
                .unwrap_or(0);
            alive == n && !s["leader"].is_null()
        });
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for i in 0..3 {
            let log =
                std::fs::read_to_string(self.node_dir(i).join("serve.log")).unwrap_or_default();
            s.push_str(&format!("==== n{i} ====\n{log}\n"));
        }
        for i in 0..3 {
            let log =
                std::fs::read_to_string(self.tmp.join(format!("etcd{i}.log"))).unwrap_or_default();
            let notable: Vec<&str> = log
                .lines()
                .filter(|l| {
                    [
                        "elected leader",
                        "lost leader",
                        "lease",
                        "timed out",
                        "slow",
                        "failed",
                    ]
                    .iter()
                    .any(|w| l.contains(w))
                })
                .collect();
            let last = &notable[notable.len().saturating_sub(8)..];
            s.push_str(&format!(
                "==== etcd e{i}: the last of {} lines on leaders, leases, timeouts, failures ====\n{}\n",
                notable.len(),
                last.join("\n")
            ));
        }
        s
    }

    fn text(&self, out: &Output) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        )
    }

    /// What node `i` serves through its link (index.php's `A<n>`).
    fn served(&self, i: usize) -> String {
        let p = self.node_dir(i).join("webroot/current/index.php");
        std::fs::read_to_string(p).unwrap_or_default()
    }

    /// The commit node `i`'s state says it serves.
    fn deployed(&self, i: usize) -> Option<String> {
        let p = self.node_dir(i).join("webroot/.rootswap/state.json");
        let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
        s["deployed"].as_str().map(String::from)
    }

    /// Waits (at most `max`) until every node serves `commit` and answers 200 on /health.
    fn converge(&self, commit: &str, max: Duration) {
        let start = Instant::now();
        loop {
            let states: Vec<_> = (0..3)
                .map(|i| (self.deployed(i), self.health(i), self.served(i)))
                .collect();
            if states
                .iter()
                .all(|(d, h, _)| d.as_deref() == Some(commit) && *h == Some(200))
            {
                return;
            }
            assert!(
                start.elapsed() < max,
                "the nodes did not converge on {commit} within {max:?}: {states:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn load(&self) -> Load {
        let addrs = self
            .web
            .iter()
            .map(|p| ([127, 0, 0, 1], *p).into())
            .collect();
        Load::start(addrs, 3)
    }

    fn flag(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    /// Holds node `i` in its prepare (its hook waits) until [`Bed::release`].
    fn hold(&self, i: usize) {
        std::fs::write(self.flag(&format!("hold-n{i}")), "").unwrap();
        let _ = std::fs::remove_file(self.flag(&format!("in-prepare-n{i}")));
    }

    fn release(&self, i: usize) {
        let _ = std::fs::remove_file(self.flag(&format!("hold-n{i}")));
    }

    fn wait_preparing(&self, i: usize) {
        let f = self.flag(&format!("in-prepare-n{i}"));
        wait_for("a node to prepare", Duration::from_secs(30), || f.exists());
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for i in 0..3 {
            self.release(i);
        }
        for c in self.nodes.iter_mut().chain(self.etcd.iter_mut()).flatten() {
            kill_child(c);
        }
    }
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// Asserts the load checker's verdict: nothing failed, torn or stale, and
/// only `committed` versions were served.
fn assert_load(seen: &crate::support::load::Seen, committed: &BTreeSet<u32>) {
    eprintln!("load: {}", seen.summary());
    assert!(
        seen.failed.is_empty() && seen.torn.is_empty() && seen.stale.is_empty(),
        "{}",
        seen.summary()
    );
    assert!(seen.ok > 50, "{}", seen.summary());
    assert!(
        seen.versions.is_subset(committed),
        "a version the fleet did not commit was served: {}",
        seen.summary()
    );
}

/// What node `i` last reported in the last deploy, as `fleet status` (asked of `via`) shows it.
fn node_state(bed: &Bed, via: usize, i: usize) -> String {
    let s = json(&bed.run(via, &["fleet", "status", "--json"]));
    s["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["node"] == format!("n{i}").as_str()))
        .and_then(|n| n["last_deploy"]["state"].as_str().map(String::from))
        .unwrap_or_default()
}

const OTHERS_OF_N2: [&str; 5] = ["e0", "e1", "e2", "n0", "n1"];

/// n2 is cut off from etcd and its peers while it prepares: the deploy
/// aborts (n2 stops renewing its lease), nobody serves the new version, n2
/// answers 503 on /health while cut off and keeps serving the old version;
/// healed, it rejoins by itself and the next deploy commits on all three.
/// Then, after a commit, n2 is cut off again: the next deploy commits on n0
/// and n1, and n2, healed, catches up with it by itself.
#[test]
fn a_node_partitioned_during_prepare_and_after_a_commit() {
    let _heavy = heavy();
    let Some(bed) = Bed::new() else { return };
    let load = bed.load();
    let others = OTHERS_OF_N2;
    // During prepare.
    bed.hold(1);
    bed.hold(2);
    bed.push(1);
    let coordinator = bed.spawn_deploy(0);
    bed.wait_preparing(1);
    bed.wait_preparing(2);
    bed.net.cut("n2", &others);
    bed.release(1);
    bed.release(2);
    let out = coordinator.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "committed without n2: {}",
        bed.text(&out)
    );
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        why.contains("node n2"),
        "the abort names n2: {}",
        bed.text(&out)
    );
    wait_for(
        "n2's /health to answer 503",
        Duration::from_secs(10),
        || bed.health(2) == Some(503),
    );
    assert!(bed.served(2).contains("A0"), "n2 serves {}", bed.served(2));
    bed.net.heal("n2", &others);
    bed.wait_alive(0, 3);
    let c2 = bed.push(2);
    let out = bed.deploy(0);
    assert!(out.status.success(), "after the heal: {}", bed.text(&out));
    bed.converge(&c2, Duration::from_secs(20));
    load.floor(2);
    // After a commit: n2 is cut off, the fleet goes on without it.
    bed.net.cut("n2", &others);
    wait_for(
        "n2's /health to answer 503",
        Duration::from_secs(10),
        || bed.health(2) == Some(503),
    );
    bed.wait_alive(0, 2);
    let c3 = bed.push(3);
    let out = bed.deploy(0);
    assert!(out.status.success(), "without n2: {}", bed.text(&out));
    assert_eq!(json(&out)["nodes"].as_object().map(|m| m.len()), Some(2));
    assert!(bed.served(2).contains("A2"), "n2 serves {}", bed.served(2));
    bed.net.heal("n2", &others);
    bed.converge(&c3, Duration::from_secs(30));
    load.floor(3);
    let seen = load.stop();
    assert_load(&seen, &[0, 2, 3].into());
}

/// n2 prepared, then is cut off just before the commit point: the commit
/// point passes (n2's lease still runs), n0 and n1 switch, n2 cannot hear
/// of it and keeps serving the old version from its snapshot, answering
/// 503 once its lease is gone; `rootswap deploy` exits 2 (committed, a node
/// behind). Healed, n2 switches to the committed version by itself.
#[test]
fn a_node_partitioned_at_the_commit_point_catches_up_after_the_heal() {
    let _heavy = heavy();
    let Some(bed) = Bed::new() else { return };
    let load = bed.load();
    bed.hold(1);
    let c1 = bed.push(1);
    let coordinator = bed.spawn_deploy(0);
    bed.wait_preparing(1);
    wait_for("n2 to report prepared", Duration::from_secs(20), || {
        node_state(&bed, 0, 2) == "prepared"
    });
    bed.net.cut("n2", &OTHERS_OF_N2);
    bed.release(1);
    let out = coordinator.wait_with_output().unwrap();
    let v = json(&out);
    assert_eq!(v["result"], "committed", "{}", bed.text(&out));
    assert_eq!(out.status.code(), Some(2), "{}", bed.text(&out));
    for i in [0, 1] {
        assert_eq!(bed.deployed(i).as_deref(), Some(c1.as_str()), "n{i}");
    }
    wait_for(
        "n2's /health to answer 503",
        Duration::from_secs(10),
        || bed.health(2) == Some(503),
    );
    assert!(bed.served(2).contains("A0"), "n2 serves {}", bed.served(2));
    std::thread::sleep(Duration::from_secs(3));
    assert!(bed.served(2).contains("A0"), "n2 serves {}", bed.served(2));
    bed.net.heal("n2", &OTHERS_OF_N2);
    bed.converge(&c1, Duration::from_secs(30));
    load.floor(1);
    let seen = load.stop();
    assert_load(&seen, &[0, 1].into());
}

/// The etcd member that leads the cluster is cut off from the other two
/// members and from every node while n1 prepares: the other two elect a
/// leader, the nodes move to them, and the deploy commits on all three.
/// Healed, the member rejoins and the next deploy commits too.
#[test]
fn the_etcd_leader_partitioned_during_a_deploy() {
    let _heavy = heavy();
    let Some(bed) = Bed::new() else { return };
    let load = bed.load();
    bed.hold(1);
    let c1 = bed.push(1);
    let coordinator = bed.spawn_deploy(0);
    bed.wait_preparing(1);
    let mut leader = None;
    wait_for("an etcd leader", Duration::from_secs(10), || {
        leader = bed.etcd_leader();
        leader.is_some()
    });
    let cut = format!("e{}", leader.unwrap());
    let rest: Vec<String> = ["e0", "e1", "e2", "n0", "n1", "n2"]
        .iter()
        .filter(|r| **r != cut)
        .map(|r| r.to_string())
        .collect();
    let rest: Vec<&str> = rest.iter().map(|s| s.as_str()).collect();
    bed.net.cut(&cut, &rest);
    let started = Instant::now();
    bed.release(1);
    let out = coordinator.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the deploy did not commit with the etcd leader cut off: {}",
        bed.text(&out)
    );
    eprintln!(
        "etcd leader {cut} cut off: committed {:?} after the cut",
        started.elapsed()
    );
    bed.converge(&c1, Duration::from_secs(20));
    load.floor(1);
    bed.net.heal(&cut, &rest);
    bed.wait_alive(0, 3);
    let c2 = bed.push(2);
    let out = bed.deploy(1);
    assert!(out.status.success(), "after the heal: {}", bed.text(&out));
    bed.converge(&c2, Duration::from_secs(20));
    load.floor(2);
    let seen = load.stop();
    assert_load(&seen, &[0, 1, 2].into());
}

/// n2 is 100 ms +- 20 ms away from every etcd member (1 % of its chunks
/// another 300 ms): five deploys commit on all three nodes; the
/// mixed-version window and the deploy time are printed; the median window
/// must be within 50 ms with the default `switch_delay` (200 ms): the slow
/// node reports how long etcd takes to answer it, and the commit point's
/// switch instant leaves it room (at most half the lease, 1 s here).
#[test]
fn a_node_100_ms_away_from_etcd() {
    let _heavy = heavy();
    let Some(bed) = Bed::build(Some(2), None) else {
        return;
    };
    let load = bed.load();
    let (mut windows, mut took) = (Vec::new(), Vec::new());
    for n in 1..=5u32 {
        let c = bed.push(n);
        let started = Instant::now();
        let out = bed.deploy(n as usize % 3);
        took.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(out.status.success(), "deploy {n}: {}", bed.text(&out));
        bed.converge(&c, Duration::from_secs(20));
        load.floor(n);
        let v = json(&out);
        windows.push(v["window_ms"].as_f64().expect("three renames"));
        if windows[windows.len() - 1] > 50.0 {
            eprintln!("deploy {n}: {}", v["nodes"]);
        }
    }
    // In deploy order (deploys 2 and 5 are coordinated by the slow node).
    eprintln!("n2 100 ms away: windows in deploy order {windows:?}");
    windows.sort_by(|a, b| a.partial_cmp(b).unwrap());
    took.sort_by(|a, b| a.partial_cmp(b).unwrap());
    eprintln!("n2 100 ms away: 5 deploys committed; window ms {windows:?}; deploy ms {took:?}");
    // The median within the 50 ms; every window under the longest
    // switch instant (a busy machine can make one node late; docs/fleet.md).
    assert!(
        windows[windows.len() / 2] <= 50.0 && windows[windows.len() - 1] < 1000.0,
        "{windows:?}\n{}",
        bed.logs()
    );
    let seen = load.stop();
    let client: Vec<f64> = (1..=5).map(|n| seen.window_ms(n)).collect();
    eprintln!("n2 100 ms away: client-seen windows in deploy order {client:?} ms");
    assert_load(&seen, &(0..=5).collect());
}

/// The etcd member e2 is 100 ms +- 20 ms away from the other members and
/// from every node, both ways (1 % loss modelled as in [`Delay`]): five
/// deploys commit on all three nodes; windows and deploy times are printed.
#[test]
fn an_etcd_member_100_ms_away() {
    let _heavy = heavy();
    let Some(bed) = Bed::build(None, Some(2)) else {
        return;
    };
    let load = bed.load();
    let (mut windows, mut took) = (Vec::new(), Vec::new());
    for n in 1..=5u32 {
        let c = bed.push(n);
        let led = bed.etcd_leader();
        let started = Instant::now();
        let out = bed.deploy(n as usize % 3);
        took.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(
            out.status.success(),
            "deploy {n} (etcd leader e{led:?}): {}",
            bed.text(&out)
        );
        bed.converge(&c, Duration::from_secs(20));
        load.floor(n);
        windows.push(json(&out)["window_ms"].as_f64().expect("three renames"));
    }
    let seen = load.stop();
    let client: Vec<f64> = (1..=5).map(|n| seen.window_ms(n)).collect();
    eprintln!(
        "e2 100 ms away: 5 deploys committed; windows {windows:?} ms, client-seen {client:?} ms; deploy ms {took:?}"
    );
    assert_load(&seen, &(0..=5).collect());
    windows.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert!(windows[2] <= 50.0, "{windows:?}");
}
