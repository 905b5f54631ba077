//! The fleet's load checker: threads that each send GET `/index.php` to a
//! node chosen at random, over and over, and judge every answer. The site
//! answers `A<n> B<n>` (index.php of version n and the lib.php it includes
//! of version n). An answer is **failed** (not 200), **torn** (A and B of
//! different versions), or **stale** (older than the floor the test set
//! once every node served a newer version). Every version seen is kept,
//! so a test can check that none was served that the fleet never committed,
//! and when each answer came, for the client-seen mixed-version window.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Http;

/// `A<n> B<n>` → (n of index.php, n of lib.php).
pub fn parse_pair(body: &str) -> Option<(u32, u32)> {
    let mut it = body.split_whitespace();
    let a = it.next()?.strip_prefix('A')?.parse().ok()?;
    let b = it.next()?.strip_prefix('B')?.parse().ok()?;
    Some((a, b))
}

/// What the checker saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Good answers.
    pub ok: u64,
    /// Answers that were not 200 or not `A<n> B<n>`.
    pub failed: Vec<String>,
    /// `A<n> B<m>` with n != m.
    pub torn: Vec<String>,
    /// Versions below the floor.
    pub stale: Vec<String>,
    /// Every version answered.
    pub versions: BTreeSet<u32>,
    /// When each good answer arrived, and its version.
    pub answers: Vec<(Instant, u32)>,
}

impl Seen {
    fn add(&mut self, other: Seen) {
        self.ok += other.ok;
        self.failed.extend(other.failed);
        self.torn.extend(other.torn);
        self.stale.extend(other.stale);
        self.versions.extend(other.versions);
        self.answers.extend(other.answers);
    }

    /// The client-seen mixed-version window of the deploy of version `n`,
    /// ms: from the first answer of `n` (or newer) to the last answer of an
    /// older version after it (0 when none came after).
    pub fn window_ms(&self, n: u32) -> f64 {
        let Some(first) = self.answers.iter().filter(|a| a.1 >= n).map(|a| a.0).min() else {
            return 0.0;
        };
        self.answers
            .iter()
            .filter(|a| a.1 < n && a.0 > first)
            .map(|a| (a.0 - first).as_secs_f64() * 1000.0)
            .fold(0.0, f64::max)
    }

    /// One line: requests, failed, torn, stale (and the first few of each).
    pub fn summary(&self) -> String {
        let first = |v: &Vec<String>| v.iter().take(5).cloned().collect::<Vec<_>>();
        format!(
            "{} requests: {} ok, {} failed {:?}, {} torn {:?}, {} stale {:?}; versions {:?}",
            self.ok + (self.failed.len() + self.torn.len() + self.stale.len()) as u64,
            self.ok,
            self.failed.len(),
            first(&self.failed),
            self.torn.len(),
            first(&self.torn),
            self.stale.len(),
            first(&self.stale),
            self.versions
        )
    }
}

/// Load threads under way.
pub struct Load {
    stop: Arc<AtomicBool>,
    floor: Arc<AtomicU32>,
    threads: Vec<JoinHandle<Seen>>,
}

impl Load {
    /// `threads` threads sending to `addrs` (each request to one at random).
    pub fn start(addrs: Vec<SocketAddr>, threads: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let floor = Arc::new(AtomicU32::new(0));
        let threads = (0..threads)
            .map(|seed| {
                let (stop, floor, addrs) = (stop.clone(), floor.clone(), addrs.clone());
                std::thread::spawn(move || run(&addrs, seed, &stop, &floor))
            })
            .collect();
        Load {
            stop,
            floor,
            threads,
        }
    }

    /// From now on every node serves version `n` or newer.
    pub fn floor(&self, n: u32) {
        self.floor.store(n, Ordering::SeqCst);
    }

    /// Stops the threads; what they saw.
    pub fn stop(self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Seen::default();
        for t in self.threads {
            all.add(t.join().expect("a load thread panicked"));
        }
        all
    }
}

fn run(addrs: &[SocketAddr], seed: u64, stop: &AtomicBool, floor: &AtomicU32) -> Seen {
    let mut clients: Vec<Http> = addrs
        .iter()
        .map(|a| Http::at(*a).timeout(Duration::from_secs(5)))
        .collect();
    let mut seen = Seen::default();
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (seed + 1);
    while !stop.load(Ordering::Relaxed) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % addrs.len() as u64) as usize;
        let min = floor.load(Ordering::SeqCst);
        match clients[i].get("/index.php") {
            Ok((200, body)) => match parse_pair(&body) {
                Some((a, b)) if a != b => seen.torn.push(format!("{}: {body:?}", addrs[i])),
                Some((a, _)) if a < min => seen
                    .stale
                    .push(format!("{}: {body:?} below {min}", addrs[i])),
                Some((a, _)) => {
                    seen.ok += 1;
                    seen.versions.insert(a);
                    seen.answers.push((Instant::now(), a));
                }
                None => seen.failed.push(format!("{}: {body:?}", addrs[i])),
            },
            other => seen.failed.push(format!("{}: {other:?}", addrs[i])),
        }
    }
    seen
}
