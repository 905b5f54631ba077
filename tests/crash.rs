//! Crash tests: `rootswap deploy` is SIGKILLed at every step of the pipeline
//! and at random instants inside the long ones; after each kill the link must
//! point at one complete version with every user file, and the next
//! `rootswap deploy` must recover and finish the job.

use crate::support::*;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Files of version `v`: every file changes with each version; one file
/// appears and one disappears so that checkouts add, change and delete.
fn version(v: u32, files: usize) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for i in 0..files {
        m.insert(
            format!("src/m{}/f{i}.php", i % 17),
            format!("<?php // file {i} version {v}\n{}", "x".repeat(i % 300)),
        );
    }
    m.insert("index.php".into(), format!("<?php echo 'v{v}';"));
    m.insert(format!("only-in-v{v}.php"), "<?php".into());
    m.insert(".gitignore".into(), "/cache/\n.env\n".into());
    m
}

struct Site {
    w: World,
    files: usize,
    v: u32,
    /// Version live before the current deploy.
    live_v: u32,
    /// User files as the test wrote them (path → content).
    user: BTreeMap<String, String>,
}

impl Site {
    fn new(files: usize, extra: &str) -> Site {
        let w = World::new(&[], extra);
        let mut s = Site {
            w,
            files,
            v: 0,
            live_v: 0,
            user: BTreeMap::new(),
        };
        s.commit_next();
        s.w.ok(&["deploy"]);
        s.live_v = s.v;
        for i in 0..20 {
            s.add_user(&format!("uploads/u{i}.jpg"), &format!("upload {i}"));
        }
        s.add_user(".env", "SECRET=1");
        s.w.set_config(&format!("user_content:\n  preserve: ['.env']\n{extra}"));
        s
    }

    fn add_user(&mut self, rel: &str, text: &str) {
        let p = self.w.link().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        self.user.insert(rel.to_string(), text.to_string());
    }

    fn commit_next(&mut self) {
        let old = version(self.v, self.files);
        self.v += 1;
        let new = version(self.v, self.files);
        for k in old.keys() {
            if !new.contains_key(k) {
                let _ = std::fs::remove_file(self.w.repo.join(k));
            }
        }
        let files: Vec<(&str, &str)> = new.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.w.write_files(&files);
        self.w.commit(&format!("v{}", self.v));
    }

    /// The served tree is one complete version (the old or the new) plus every user file.
    fn check_served(&self, label: &str) -> u32 {
        let live = self.w.webroot.join(self.w.link_target());
        // rootswap's own temporary files (a copy in flight, a change-watch
        // barrier) may stand in a tree right after a kill: they are no
        // version's; recovery removes them (checked in check_recovered).
        let got: BTreeMap<String, String> = served_contents(&live)
            .into_iter()
            .filter(|(k, _)| {
                !Path::new(k)
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".rootswap-tmp-"))
            })
            .collect();
        let mut matched = None;
        for v in [self.live_v, self.v] {
            let want = version(v, self.files);
            let code: BTreeMap<String, String> = got
                .iter()
                .filter(|(k, _)| want.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let extra: Vec<&String> = got
                .keys()
                .filter(|k| !want.contains_key(*k) && !self.user.contains_key(*k))
                .collect();
            if code == want && extra.is_empty() {
                matched = Some(v);
            }
        }
        let Some(v) = matched else {
            panic!(
                "{label}: the served tree {} is not one complete version",
                live.display()
            );
        };
        for (k, text) in &self.user {
            assert_eq!(
                got.get(k),
                Some(text),
                "{label}: user file {k} lost or changed in the served tree"
            );
        }
        v
    }

    /// After recovery and a new deploy: ROOT is the new version, live, no leftovers.
    fn check_recovered(&self, label: &str) {
        assert_eq!(self.w.link_target(), "ROOT", "{label}");
        assert_eq!(
            self.check_served(label),
            self.v,
            "{label}: ROOT holds the new commit"
        );
        for e in std::fs::read_dir(&self.w.webroot).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !n.starts_with(".partial-")
                    && !n.starts_with(".evicting-")
                    && !n.contains("rootswap-tmp"),
                "{label}: leftover {n}"
            );
        }
        for e in walkdir::WalkDir::new(&self.w.webroot) {
            let e = e.unwrap();
            assert!(
                !e.file_name()
                    .to_string_lossy()
                    .starts_with(".rootswap-tmp-"),
                "{label}: temp file {}",
                e.path().display()
            );
        }
        let state = self.w.webroot.join(".rootswap");
        assert!(
            !state.join("journal.json").exists(),
            "{label}: journal left behind"
        );
        for e in std::fs::read_dir(&state).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !n.contains(".tmp-"),
                "{label}: state temp file {n} left behind"
            );
        }
        assert!(
            !state.join("rescue").exists(),
            "{label}: rescue dir left behind"
        );
    }
}

/// Runs a deploy that kills itself at `point`; returns whether it died by SIGKILL.
fn deploy_crashing_at(w: &World, point: &str) -> bool {
    let out = Command::new(bin())
        .arg("-c")
        .arg(&w.config)
        .arg("deploy")
        .env("ROOTSWAP_CRASH_AT", point)
        .output()
        .unwrap();
    match out.status.signal() {
        Some(9) => true,
        _ => {
            assert!(
                out.status.success(),
                "deploy with crash point {point} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            false
        }
    }
}

/// Kills a running deploy after `delay`; returns whether it was still running.
/// Starts a deploy and SIGKILLs it `delay` later. Returns whether it was
/// still running at that instant, and how long it took when it was not.
fn deploy_killed_after(w: &World, delay: Duration) -> (bool, Option<Duration>) {
    let start = Instant::now();
    let mut child = Command::new(bin())
        .arg("-c")
        .arg(&w.config)
        .arg("deploy")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The kill instant itself (random by design), not a synchronisation;
    // watched in 1 ms steps so that a deploy which ends first is timed.
    while start.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            return (false, Some(start.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let status = child.wait().unwrap();
    (killed && status.signal() == Some(9), None)
}

fn history_has_interrupted(w: &World) -> usize {
    read(&w.webroot.join(".rootswap/history.jsonl"))
        .lines()
        .filter(|l| l.contains("\"result\":\"interrupted\""))
        .count()
}

/// One kill: commit, crash, check served tree, status, redeploy, check.
fn kill_and_recover(site: &mut Site, label: &str, crash: impl FnOnce(&World) -> bool) -> bool {
    site.commit_next();
    let before = history_has_interrupted(&site.w);
    let killed = crash(&site.w);
    site.check_served(&format!("{label} (right after the kill)"));
    let status = site.w.ok(&["status"]);
    if killed && site.w.webroot.join(".rootswap/journal.json").exists() {
        assert!(
            status.contains("interrupted"),
            "{label}: status shows the interrupted deploy:\n{status}"
        );
    }
    site.w.ok(&["deploy"]);
    site.live_v = site.v;
    site.check_recovered(label);
    if killed && history_has_interrupted(&site.w) == before {
        // Killed before the journal was first written: nothing to recover.
        assert!(
            label.contains("random"),
            "{label}: the interrupted deploy is in the history"
        );
    }
    killed
}

#[test]
fn kill_at_every_phase_and_inside_checkout_and_copy_back() {
    let _heavy = heavy();
    let mut site = Site::new(150, "");
    let mut kills = 0;
    let mut points: Vec<String> = [
        "snapshot",
        "switch-to-snapshot",
        "rewrite",
        "switch-to-root",
        "finish",
        "link-temp:1",
        "link-temp:2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in [1, 2, 5, 10, 30, 60, 100, 140, 160] {
        points.push(format!("checkout-entry:{n}"));
    }
    for p in &points {
        if kill_and_recover(&mut site, p, |w| deploy_crashing_at(w, p)) {
            kills += 1;
        }
    }
    // Copy-back: a hook plays visitors writing into the served snapshot.
    site.w.set_config(
        "user_content:\n  preserve: ['.env']\nhooks:\n  after_checkout: ['for i in 1 2 3 4 5 6; do echo late$i > $ROOTSWAP_SNAPSHOT/uploads/late$i.jpg; done']\n",
    );
    for i in 1..=6 {
        site.user
            .insert(format!("uploads/late{i}.jpg"), format!("late{i}\n"));
    }
    for n in [1, 3, 6] {
        let p = format!("copy-back-entry:{n}");
        if kill_and_recover(&mut site, &p, |w| deploy_crashing_at(w, &p)) {
            kills += 1;
        }
    }
    eprintln!(
        "phase and entry kill points survived: {kills} of {}",
        points.len() + 3
    );
    assert!(kills >= points.len(), "every point was reached: {kills}");
}

#[test]
fn kill_during_failure_restore_and_first_deploy() {
    let _heavy = heavy();
    let mut site = Site::new(80, "");
    site.w
        .set_config("user_content:\n  preserve: ['.env']\nhooks:\n  after_checkout: ['exit 3']\n");
    let mut kills = 0;
    for p in ["restore", "rewrite"] {
        site.commit_next();
        if deploy_crashing_at(&site.w, p) {
            kills += 1;
        }
        // The old version is served; recovery restores ROOT; the failing hook fails again cleanly.
        site.check_served(p);
        let err = site.w.fails(&["deploy"]);
        assert!(err.contains("exited with status 3"), "{err}");
        assert_eq!(site.w.link_target(), "ROOT");
        assert_eq!(
            site.check_served(p),
            site.live_v,
            "{p}: the previous version stays live"
        );
    }
    site.w.set_config("user_content:\n  preserve: ['.env']\n");
    site.w.ok(&["deploy"]);
    site.live_v = site.v;
    site.check_recovered("after failing hooks");
    // First deploy: nothing is served until the link exists.
    for p in ["first-checkout", "checkout-entry:2", "switch-to-root"] {
        let w = World::new(&[("index.php", "<?php echo 1;"), ("a/b.php", "<?php")], "");
        let killed = deploy_crashing_at(&w, p);
        assert!(killed, "{p}");
        kills += 1;
        let link_ok = std::fs::read_link(w.link()).is_err()
            || read(&w.link().join("index.php")) == "<?php echo 1;";
        assert!(
            link_ok,
            "{p}: the link points at a complete tree or does not exist"
        );
        w.ok(&["status"]);
        w.ok(&["deploy"]);
        assert_eq!(read(&w.link().join("index.php")), "<?php echo 1;");
        assert!(!w.webroot.join(".rootswap/journal.json").exists());
    }
    eprintln!("restore and first-deploy kill points survived: {kills}");
}

#[test]
fn kill_while_moving_uploads_into_a_shared_directory() {
    let _heavy = heavy();
    let mut site = Site::new(80, "");
    // The operator copied some uploads over already: the move merges.
    let shared = site.w.webroot.join("shared/uploads");
    std::fs::create_dir_all(&shared).unwrap();
    for i in 0..3 {
        std::fs::write(shared.join(format!("u{i}.jpg")), format!("upload {i}")).unwrap();
    }
    site.w
        .set_config("user_content:\n  preserve: ['.env']\n  shared: [uploads]\n");
    let mut kills = 0;
    for p in ["shared-entry:1", "shared-entry:9", "shared-link"] {
        // The first kill interrupts the move; its recovery deploy finishes it,
        // so a later point is reached only if an earlier one was not.
        if kill_and_recover(&mut site, p, |w| deploy_crashing_at(w, p)) {
            kills += 1;
        }
        assert_eq!(
            std::fs::read_link(site.w.root().join("uploads"))
                .unwrap()
                .display()
                .to_string(),
            "../shared/uploads",
            "{p}"
        );
        for (k, text) in site.user.iter().filter(|(k, _)| k.starts_with("uploads/")) {
            assert_eq!(
                &read(&site.w.webroot.join("shared").join(k)),
                text,
                "{p}: {k}"
            );
        }
    }
    assert!(kills >= 1, "the move was interrupted at least once");
    eprintln!("shared-directory kill points survived: {kills}");
}

#[test]
fn kill_at_random_instants() {
    let _heavy = heavy();
    let mut site = Site::new(600, "");
    // How long does a deploy take here? The shortest of three, so that the
    // kills land inside deploys even when the first one ran on a busy machine.
    let full = (0..3)
        .map(|_| {
            site.commit_next();
            let t = Instant::now();
            site.w.ok(&["deploy"]);
            site.live_v = site.v;
            t.elapsed()
        })
        .min()
        .unwrap();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!(
        "deploy of {} files takes {full:?}; random seed {seed}",
        site.files
    );
    let mut killed = 0;
    let runs = 30;
    // Deploy times drift with the machine's load (other tests share it):
    // the kill range follows the median of the last deploys that ended
    // before their kill, so the kills keep landing inside deploys.
    let mut durations = vec![full; 3];
    for i in 0..runs {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut recent = durations[durations.len() - 3..].to_vec();
        recent.sort();
        let range = recent[1];
        let delay = Duration::from_micros(seed % (range.as_micros() as u64 + 1));
        let mut took = None;
        if kill_and_recover(
            &mut site,
            &format!("random kill {i} after {delay:?}"),
            |w| {
                let (killed, finished) = deploy_killed_after(w, delay);
                took = finished;
                killed
            },
        ) {
            killed += 1;
        }
        durations.extend(took);
    }
    eprintln!("random kill points: {killed} of {runs} deploys killed mid-flight, all recovered");
    // The point is kills mid-flight: a third of them at least (a busy
    // machine makes some deploys slower or faster than the calibration).
    assert!(
        killed >= runs / 3,
        "too few random kills landed during a deploy: {killed} of {runs}"
    );
    assert!(Path::new(&site.w.webroot.join("ROOT")).is_dir());
}

#[test]
fn a_fetch_killed_midway_leaves_no_lock_that_blocks_the_next_deploy() {
    let _heavy = heavy();
    let w = World::new(&[("index.php", "<?php echo 1;")], "");
    w.ok(&["deploy"]);
    // What libgit2 leaves when SIGKILL lands inside a fetch.
    let cache = w.webroot.join(".rootswap/repo.git");
    std::fs::write(cache.join("refs/remotes/origin/main.lock"), "").unwrap();
    std::fs::write(cache.join("config.lock"), "").unwrap();
    w.write_files(&[("index.php", "<?php echo 2;")]);
    w.commit("v2");
    let out = w.run(&["deploy"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("left by an interrupted fetch"), "{err}");
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 2;");
}
