//! Criterion benchmark of the dashboard's first render, server-side, with
//! 1,000 deploys in the history: gather the status, read the end of
//! history.jsonl, write the HTML (what `GET /` does with access).
//!
//! `cargo bench --bench dashboard`. The site is generated in a temp dir:
//! ROOT and the `current` link, three snapshots of 200 files, and 1,000
//! history records of 20 steps each (about 2 MB of history.jsonl). For
//! comparison it also times reading the whole history (`history::read`)
//! against its last 100 records (`history::read_last`).

use std::io::Write;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use rootswap::config::Config;
use rootswap::history::{self, Record, StepTiming};

const DEPLOYS: usize = 1000;

const STEPS: [&str; 20] = [
    "fetch",
    "snapshot",
    "scan-user-content",
    "catch-up",
    "switch-to-snapshot",
    "catch-up",
    "drain",
    "catch-up",
    "checkout",
    "shared",
    "hooks",
    "copy-back",
    "before-switch hooks",
    "opcache-reset",
    "copy-back",
    "switch-to-root",
    "opcache-reset",
    "copy-back (late)",
    "drain",
    "evict",
];

fn record(i: usize) -> Record {
    let commit = |n: usize| format!("{:040x}", n * 7919 + 1);
    let steps: Vec<StepTiming> = STEPS
        .iter()
        .enumerate()
        .map(|(k, s)| StepTiming {
            step: s.to_string(),
            ms: ((i * 31 + k * 17) % 400) as u64,
            passes: Vec::new(),
        })
        .collect();
    Record {
        id: format!("20260101-{:06}-{:04x}", i, i),
        started: "2026-01-01T10:00:00+00:00".into(),
        finished: "2026-01-01T10:00:03+00:00".into(),
        trigger: ["schedule", "webhook", "manual", "trigger"][i % 4].into(),
        result: if i % 17 == 0 { "failed" } else { "success" }.into(),
        commit: Some(commit(i)),
        previous_commit: Some(commit(i.saturating_sub(1))),
        snapshot: Some(format!("ROOT_2026.01.01-10.00.{:02}", i % 60)),
        evicted: vec![format!("ROOT_2025.12.31-10.00.{:02}", i % 60)],
        error: (i % 17 == 0).then(|| "hook `composer install` failed with exit status 1".into()),
        warnings: Vec::new(),
        duration_ms: steps.iter().map(|s| s.ms).sum(),
        steps,
        fleet_id: None,
    }
}

/// A site with 1,000 deploys; returns its configuration.
fn site(dir: &Path) -> Config {
    let webroot = dir.join("webroot");
    let state = webroot.join(".rootswap");
    std::fs::create_dir_all(&state).unwrap();
    for name in [
        "ROOT",
        "ROOT_2026.01.01-10.00.01",
        "ROOT_2026.01.01-10.00.02",
        "ROOT_before-upgrade",
    ] {
        for f in 0..200 {
            let d = webroot.join(name).join(format!("lib/d{}", f % 10));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("f{f}.php")), "<?php // a file of the site\n").unwrap();
        }
    }
    std::os::unix::fs::symlink("ROOT", webroot.join("current")).unwrap();
    let mut f = std::fs::File::create(state.join("history.jsonl")).unwrap();
    for i in 0..DEPLOYS {
        let mut line = serde_json::to_vec(&record(i)).unwrap();
        line.push(b'\n');
        f.write_all(&line).unwrap();
    }
    // ROOT holds the last deploy's commit, as after a real deploy.
    let live = rootswap::state::State {
        deployed: record(DEPLOYS - 1).commit,
        ..Default::default()
    };
    live.save(&state).unwrap();
    let yaml = format!(
        "webroot: {}\nsource:\n  repo: https://github.com/acme/site.git\n  branch: main\ntrigger:\n  token: t\n",
        webroot.display()
    );
    Config::parse(&yaml, &dir.join("rootswap.yaml")).unwrap()
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = site(dir.path());
    let site = rootswap::site::Site::open(&cfg).unwrap();
    let html = rootswap::serve::dashboard::first_render(&site).unwrap();
    assert!(
        html.contains("li class=\"deploy\""),
        "the history is rendered"
    );
    assert_eq!(history::read(&cfg.state_path()).unwrap().len(), DEPLOYS);
    c.bench_function("dashboard first render, 1000 deploys", |b| {
        b.iter(|| rootswap::serve::dashboard::first_render(&site).unwrap())
    });
    let state = cfg.state_path();
    c.bench_function("history read_last(100) of 1000", |b| {
        b.iter(|| history::read_last(&state, 100).unwrap())
    });
    c.bench_function("history read (all 1000)", |b| {
        b.iter(|| history::read(&state).unwrap())
    });
}

criterion_group!(dashboard, benches);
criterion_main!(dashboard);
