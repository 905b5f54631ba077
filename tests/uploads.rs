//! Uploads during deploys are never lost: a writer keeps creating, appending
//! to, renaming and deleting user files through the link (as PHP would)
//! across 20 deploys; afterwards ROOT holds exactly the writer's final state.

use crate::support;
use crate::support::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default, Debug)]
struct WriterStats {
    ops: u64,
    creates: u64,
    appends: u64,
    renames: u64,
    deletes: u64,
    /// Requests that found their file missing (they change nothing).
    not_found: u64,
}

type OpLog = Vec<(std::time::Instant, String)>;

/// Time between two requests of the writer: `min_us` plus up to `spread_us`.
#[derive(Clone, Copy)]
struct Pace {
    min_us: u64,
    spread_us: u64,
}

fn writer(
    link: PathBuf,
    stop: Arc<AtomicBool>,
    seed: u64,
    pace: Pace,
) -> (BTreeMap<String, String>, WriterStats, OpLog) {
    let mut log: OpLog = Vec::new();
    let mut model: BTreeMap<String, String> = BTreeMap::new();
    let mut st = WriterStats::default();
    let mut rng = support::app_writer::Rng(seed | 1);
    let mut next = || rng.next();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        st.ops += 1;
        let dir = link.join("uploads");
        let op = if model.len() < 20 { 0 } else { next() % 4 };
        let target = std::fs::read_link(&link)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let before_len = log.len();
        let pick = |r: u64, m: &BTreeMap<String, String>| {
            m.keys().nth((r % m.len() as u64) as usize).cloned()
        };
        match op {
            0 => {
                let name = format!("f{n}.txt");
                let text = format!("created {n}\n");
                std::fs::write(dir.join(&name), &text).expect("create through the link");
                log.push((std::time::Instant::now(), format!("create {name}")));
                model.insert(name, text);
                st.creates += 1;
            }
            1 => {
                let Some(name) = pick(next(), &model) else {
                    continue;
                };
                match std::fs::OpenOptions::new()
                    .append(true)
                    .open(dir.join(&name))
                {
                    Ok(mut f) => {
                        let add = format!("appended {n}\n");
                        f.write_all(add.as_bytes()).expect("append");
                        model.get_mut(&name).unwrap().push_str(&add);
                        log.push((std::time::Instant::now(), format!("append {name}")));
                        st.appends += 1;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        log.push((std::time::Instant::now(), format!("NOTFOUND append {name}")));
                        st.not_found += 1
                    }
                    Err(e) => panic!("append {name}: {e}"),
                }
            }
            2 => {
                let Some(name) = pick(next(), &model) else {
                    continue;
                };
                let to = format!("r{n}.txt");
                match std::fs::rename(dir.join(&name), dir.join(&to)) {
                    Ok(()) => {
                        let text = model.remove(&name).unwrap();
                        log.push((std::time::Instant::now(), format!("rename {name} {to}")));
                        model.insert(to, text);
                        st.renames += 1;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        log.push((
                            std::time::Instant::now(),
                            format!("NOTFOUND rename {name} {to}"),
                        ));
                        st.not_found += 1
                    }
                    Err(e) => panic!("rename {name}: {e}"),
                }
            }
            _ => {
                let Some(name) = pick(next(), &model) else {
                    continue;
                };
                match std::fs::remove_file(dir.join(&name)) {
                    Ok(()) => {
                        model.remove(&name);
                        log.push((std::time::Instant::now(), format!("delete {name}")));
                        st.deletes += 1;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        log.push((std::time::Instant::now(), format!("NOTFOUND delete {name}")));
                        st.not_found += 1
                    }
                    Err(e) => panic!("delete {name}: {e}"),
                }
            }
        }
        let _ = before_len;
        log.push((
            std::time::Instant::now(),
            format!("op{n} kind{op} link={target} model={}", model.len()),
        ));
        // The writer's pace between requests (load shape), not a synchronisation.
        std::thread::sleep(Duration::from_micros(
            pace.min_us + next() % pace.spread_us.max(1),
        ));
    }
    (model, st, log)
}

/// What a writer run over 20 deploys ended with.
struct Run {
    w: World,
    st: WriterStats,
    files: usize,
}

/// Keeps a writer going through the link during 20 deploys; asserts that
/// ROOT's `uploads/` ends exactly as the writer left it.
fn twenty_deploys_under_a_writer(extra_yaml: &str, pace: Pace, label: &str) -> Run {
    // One writer at a time: the two tests measure rootswap, not each other.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut files: Vec<(String, String)> = (0..200)
        .map(|i| (format!("src/f{i}.php"), format!("<?php // {i}")))
        .collect();
    files.push(("index.php".into(), "<?php echo 0;".into()));
    files.push(("uploads/.keep".into(), String::new()));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let w = World::new(&refs, "");
    w.set_config(&format!("drain: 50ms\n{extra_yaml}"));
    let text = read(&w.config).replace("drain: 0s\n", "");
    std::fs::write(&w.config, text).unwrap();
    w.ok(&["deploy"]);

    let stop = Arc::new(AtomicBool::new(false));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let handle = {
        let (link, stop) = (w.link(), stop.clone());
        std::thread::spawn(move || writer(link, stop, seed, pace))
    };
    for i in 1..=20 {
        w.write_files(&[("index.php", &format!("<?php echo {i};"))]);
        w.commit(&format!("v{i}"));
        w.ok(&["deploy"]);
    }
    stop.store(true, Ordering::Relaxed);
    let (model, st, log) = handle.join().unwrap();

    assert_eq!(w.link_target(), "ROOT");
    let got: BTreeMap<String, String> = contents(&w.root().join("uploads"))
        .into_iter()
        .filter(|(k, _)| k != ".keep")
        .collect();
    let lost: Vec<&String> = model
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .map(|(k, _)| k)
        .collect();
    let resurrected: Vec<&String> = got.keys().filter(|k| !model.contains_key(*k)).collect();
    eprintln!(
        "{label}: 20 deploys, writer seed {seed}: {} requests ({} creates, {} appends, {} renames, {} deletes, {} found their file missing); \
         {} files at the end; lost {}, resurrected {}",
        st.ops,
        st.creates,
        st.appends,
        st.renames,
        st.deletes,
        st.not_found,
        model.len(),
        lost.len(),
        resurrected.len()
    );
    if !lost.is_empty() || !resurrected.is_empty() {
        let t0 = log.first().map(|l| l.0).unwrap();
        for name in lost.iter().chain(resurrected.iter()) {
            eprintln!("--- {name}");
            for (i, (t, line)) in log.iter().enumerate() {
                if line.split_whitespace().any(|w| w == name.as_str()) {
                    let ctx = if i > 0 { &log[i - 1].1 } else { line };
                    eprintln!(
                        "{:>8.1}ms {line}   [{ctx}]",
                        (*t - t0).as_secs_f64() * 1000.0
                    );
                }
            }
        }
    }
    assert!(lost.is_empty(), "lost or stale: {lost:?}");
    assert!(resurrected.is_empty(), "resurrected: {resurrected:?}");
    assert!(
        st.ops > 200,
        "the writer kept writing throughout: {}",
        st.ops
    );
    Run {
        w,
        files: model.len(),
        st,
    }
}

#[test]
fn uploads_during_twenty_deploys_are_never_lost() {
    let _heavy = heavy();
    // A busy but realistic site: one upload request every 3-10 ms.
    let pace = Pace {
        min_us: 3000,
        spread_us: 7000,
    };
    twenty_deploys_under_a_writer("", pace, "copy-back");
}

#[test]
fn shared_uploads_survive_a_harsh_writer_with_no_request_ever_missing_its_file() {
    let _heavy = heavy();
    // A request every 0.5-3 ms: harsher than the copy-back can promise (see
    // docs/flow.md#what-is-left-to-chance); a shared directory needs no copy.
    let pace = Pace {
        min_us: 500,
        spread_us: 2500,
    };
    let r = twenty_deploys_under_a_writer(
        "user_content:\n  shared: [uploads]\n",
        pace,
        "shared uploads",
    );
    assert_eq!(
        r.st.not_found, 0,
        "with a shared directory every request finds the file the previous one wrote"
    );
    let up = r.w.root().join("uploads");
    assert_eq!(
        std::fs::read_link(&up).unwrap(),
        std::path::Path::new("../shared/uploads")
    );
    // Every snapshot links to the same directory.
    for s in r.w.snapshots() {
        assert_eq!(
            std::fs::read_link(r.w.webroot.join(&s).join("uploads")).unwrap(),
            std::path::Path::new("../shared/uploads"),
            "{s}"
        );
    }
    assert_eq!(
        contents(&r.w.webroot.join("shared/uploads"))
            .keys()
            .filter(|k| *k != ".keep")
            .count(),
        r.files
    );
}
