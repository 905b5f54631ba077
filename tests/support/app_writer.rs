//! A site user who writes through the app while it is deployed: creates,
//! appends to and deletes files in the places the framework keeps user
//! content (the fixtures' `/write` action), reads every write back with the
//! next request (`/read`), and keeps a model of what the app told it exists.
//! At the end the model is compared with the served tree.

use super::net::Http;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the writer was told: (place, name) → the text, or None once deleted.
pub type Model = BTreeMap<(String, String), Option<String>>;

/// What the writer did and saw.
#[derive(Default, Debug)]
pub struct Writes {
    /// Writes answered "ok".
    pub done: u64,
    /// Of those: creates, appends, deletes.
    pub creates: u64,
    pub appends: u64,
    pub deletes: u64,
    /// Writes not answered "ok" (status and body).
    pub failed: Vec<String>,
    /// Writes the next request did not show: what it answered instead, and
    /// how long after the write the write became visible.
    pub unseen: Vec<String>,
    /// The longest of those delays.
    pub longest_unseen: Duration,
    /// What the writer was told exists.
    pub model: Model,
    /// Each file's acknowledged operations (`op@ms` since `start`): the
    /// story of a file a check finds wrong, to lay next to the deploys'.
    pub log: BTreeMap<(String, String), Vec<String>>,
}

/// The served tree against the model.
#[derive(Default, Debug)]
pub struct Verdict {
    /// Files the app said exist (with their text) that are missing.
    pub lost: Vec<String>,
    /// Files the app said it deleted (or never wrote) that are there.
    pub resurrected: Vec<String>,
    /// Files there with another text than the app acknowledged.
    pub differing: Vec<String>,
    /// How many files the model holds (live).
    pub live: usize,
}

/// A small xorshift: the users' choices, the same every run (the runs
/// differ only by timing).
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Writes through `/write` in `places` until `stop`, reading each write back.
pub fn writer(
    port: u16,
    places: &'static [(&'static str, &'static str)],
    stop: Arc<AtomicBool>,
    start: Instant,
) -> Writes {
    let mut http = Http::new(port);
    let mut w = Writes::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let place = places[(n as usize) % places.len()].0;
        let live: Vec<String> = w
            .model
            .iter()
            .filter(|((p, _), t)| p == place && t.is_some())
            .map(|((_, name), _)| name.clone())
            .collect();
        let r = rng.next();
        let (op, name, text) = if live.len() < 5 || r % 3 == 0 {
            ("create", format!("w{n}"), format!("c{n}."))
        } else {
            let name = live[(rng.next() % live.len() as u64) as usize].clone();
            if r % 3 == 1 {
                ("append", name, format!("a{n}."))
            } else {
                ("delete", name, String::new())
            }
        };
        let key = (place.to_string(), name.clone());
        let query = format!("place={place}&op={op}&name={name}&text={text}");
        match http.get(&format!("/write?{query}")) {
            Ok((200, body)) if body == "ok" => {}
            other => {
                w.failed.push(format!("{query}: {other:?}"));
                // What the app did is unknown: forget the file.
                w.model.remove(&key);
                continue;
            }
        }
        w.done += 1;
        let now = match op {
            "create" => {
                w.creates += 1;
                Some(text)
            }
            "append" => {
                w.appends += 1;
                let old = w.model.get(&key).cloned().flatten().unwrap_or_default();
                Some(old + &text)
            }
            _ => {
                w.deletes += 1;
                None
            }
        };
        let expect = match &now {
            Some(t) => format!("={t}"),
            None => "absent".to_string(),
        };
        let acked = Instant::now();
        w.log
            .entry(key.clone())
            .or_default()
            .push(format!("{op}@{}", (acked - start).as_millis()));
        w.model.insert(key, now);
        let read = format!("/read?place={place}&name={name}");
        match http.get(&read) {
            Ok((200, body)) if body == expect => {}
            other => {
                let delay = visible_after(&mut http, &read, &expect, acked);
                w.longest_unseen = w.longest_unseen.max(delay.unwrap_or(Duration::MAX));
                w.unseen.push(format!(
                    "{op} {place}/{name} acknowledged at {} ms: expected {expect:?}, read {other:?}; visible after {delay:?}",
                    (acked - start).as_millis()
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    w
}

/// How long after `since` the read answers `expect` (polled for up to 5 s).
fn visible_after(http: &mut Http, read: &str, expect: &str, since: Instant) -> Option<Duration> {
    while since.elapsed() < Duration::from_secs(5) {
        if matches!(http.get(read), Ok((200, body)) if body == expect) {
            return Some(since.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// The files under `tree` in `places` against the model.
pub fn compare(tree: &Path, places: &[(&str, &str)], model: &Model) -> Verdict {
    let mut v = Verdict::default();
    for ((place, name), text) in model {
        let Some((_, dir)) = places.iter().find(|(p, _)| p == place) else {
            continue;
        };
        let file = tree.join(dir).join(name);
        let found = std::fs::read_to_string(&file).ok();
        match (text, found) {
            (Some(_), None) => v.lost.push(file.display().to_string()),
            (Some(t), Some(f)) if *t != f => v
                .differing
                .push(format!("{}: {f:?}, acknowledged {t:?}", file.display())),
            (None, Some(f)) => v.resurrected.push(format!("{}: {f:?}", file.display())),
            _ => {}
        }
        v.live += usize::from(text.is_some());
    }
    // Files nobody was told about (a write the app refused is forgotten).
    for (place, dir) in places {
        for e in std::fs::read_dir(tree.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('w') && !model.contains_key(&(place.to_string(), name.clone())) {
                v.resurrected.push(e.path().display().to_string());
            }
        }
    }
    v
}

/// Entries under `dir` (itself included; a symlink at the top followed) not
/// owned by `uid`, with their owner and mode; symlinks below are not
/// followed and their own owner is not checked.
pub fn foreign_owned(dir: &Path, uid: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())];
    while let Some(p) = todo.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        // A symlink's own owner does not matter (rootswap's links to shared
        // directories are its own).
        if m.uid() != uid && !m.file_type().is_symlink() {
            out.push(format!(
                "{} ({}:{} {:o})",
                p.display(),
                m.uid(),
                m.gid(),
                m.mode() & 0o7777
            ));
        }
        if m.is_dir() {
            todo.extend(
                std::fs::read_dir(&p)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
        }
    }
    out.sort();
    out
}
