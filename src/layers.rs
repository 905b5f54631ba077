//! The crate's layers, checked: a module imports only from its own layer
//! or the layers below, and no chain of imports comes back to where it
//! started. `docs/architecture.md` explains each layer.
//!
//! The check reads the sources (the `crate::…` and `super::…` paths outside
//! comments) rather than trusting a list kept by hand, so a new upward
//! import or a new cycle fails `cargo test` with the file that made it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers from the ground up. A module not listed here fails the test:
/// place it before it lands.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "util",
        &[
            "commit",
            "crashpoint",
            "fsutil",
            "redact",
            "progress",
            "repo_path",
            "hostkeys",
            "copy",
            "link",
            "deploy_lock",
        ],
    ),
    (
        "model",
        &["preset", "config", "layout", "state", "journal", "history"],
    ),
    (
        "mechanisms",
        &[
            "source",
            "user_content",
            "shared",
            "snapshots",
            "adopt",
            "hooks",
            "php_fpm",
            "opcache",
            "drain",
            "health",
            "notify",
            "nginx",
            "apache",
            "caddy",
            "webserver",
            "cron",
        ],
    ),
    ("site", &["site"]),
    ("flows", &["recover", "deploy", "rollback", "init"]),
    (
        "read-outs",
        &["status", "report", "json", "effective_config", "doctor"],
    ),
    ("fleet", &["fleet"]),
    ("front-ends", &["serve", "demo", "layers"]),
];

/// Files of `deploy/` that are not steps: the face, the state the steps
/// share, their types and timing.
const DEPLOY_SHARED: &[&str] = &["mod", "state", "types", "timing"];

/// One source file: its module path and the modules it names.
struct Source {
    module: Vec<String>,
    file: PathBuf,
    /// `crate::a::b…` paths and `super::x` names, outside comments.
    crate_paths: Vec<Vec<String>>,
    super_names: Vec<String>,
}

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&top))
}

/// The identifiers of a path written after `prefix` in `line`.
fn paths_after(line: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find(prefix) {
        let before = &rest[..i];
        rest = &rest[i + prefix.len()..];
        // Part of a longer name, or a visibility (`pub(in crate::serve)`): no import.
        if before.ends_with(|c: char| c.is_alphanumeric() || c == '_') || before.ends_with("(in ") {
            continue;
        }
        let path: Vec<String> = rest
            .split("::")
            .map(|seg| {
                seg.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|seg| !seg.is_empty() && seg.starts_with(|c: char| c.is_lowercase()))
            .collect();
        if !path.is_empty() {
            out.push(path);
        }
    }
    out
}

fn read_sources(dir: &Path, module: &[String], out: &mut Vec<Source>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src/ is readable")
        .map(|e| e.expect("src/ entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if module.is_empty() && name == "cli" {
                continue; // the binary's commands: above every layer
            }
            let mut m = module.to_vec();
            m.push(name);
            read_sources(&path, &m, out);
            continue;
        }
        if path.extension().map_or(true, |e| e != "rs") {
            continue;
        }
        if module.is_empty() && (name == "lib" || name == "main") {
            continue;
        }
        let mut m = module.to_vec();
        if name != "mod" {
            m.push(name);
        }
        let text = std::fs::read_to_string(&path).expect("source is readable");
        let code: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect();
        out.push(Source {
            module: m,
            crate_paths: code
                .iter()
                .flat_map(|l| paths_after(l, "crate::"))
                .collect(),
            super_names: code
                .iter()
                .flat_map(|l| paths_after(l, "super::"))
                .filter_map(|p| p.first().cloned())
                .collect(),
            file: path,
        });
    }
}

/// The longest known module that `path` starts with.
fn resolve(known: &BTreeSet<Vec<String>>, path: &[String]) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| known.contains(m))
}

/// Every import edge between modules, with the file that makes it.
fn edges(sources: &[Source]) -> BTreeMap<Vec<String>, BTreeMap<Vec<String>, PathBuf>> {
    let known: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    let mut out: BTreeMap<_, BTreeMap<_, _>> = BTreeMap::new();
    for s in sources {
        let is_face = s.file.ends_with("mod.rs");
        let parent = match is_face {
            true => s.module.clone(),
            false => s.module[..s.module.len() - 1].to_vec(),
        };
        let siblings = s.super_names.iter().map(|n| {
            let mut p = match is_face {
                true => s.module[..s.module.len().saturating_sub(1)].to_vec(),
                false => parent.clone(),
            };
            p.push(n.clone());
            p
        });
        let targets = s
            .crate_paths
            .iter()
            .filter_map(|p| resolve(&known, p))
            .chain(siblings.filter(|p| known.contains(p)));
        for t in targets {
            if t != s.module {
                let to = out.entry(s.module.clone()).or_default();
                to.entry(t).or_insert_with(|| s.file.clone());
            }
        }
    }
    out
}

fn sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    read_sources(&src, &[], &mut out);
    out
}

#[test]
fn every_module_has_a_layer_and_imports_only_downward() {
    let sources = sources();
    let mut wrong = Vec::new();
    for s in &sources {
        let top = &s.module[0];
        let Some(own) = layer_of(top) else {
            wrong.push(format!(
                "{top} is in no layer: add it to LAYERS in src/layers.rs"
            ));
            continue;
        };
        for p in &s.crate_paths {
            match layer_of(&p[0]) {
                Some(l) if l > own => wrong.push(format!(
                    "{} ({}) imports crate::{} ({}): a layer above it",
                    s.file.display(),
                    LAYERS[own].0,
                    p.join("::"),
                    LAYERS[l].0
                )),
                _ => {}
            }
        }
    }
    wrong.dedup();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_import_cycle_and_no_file_imports_its_own_face() {
    let sources = sources();
    let edges = edges(&sources);
    let mut wrong = Vec::new();
    for (from, tos) in &edges {
        for (to, file) in tos {
            if from.len() > to.len() && from.starts_with(to) {
                wrong.push(format!(
                    "{} imports its own folder's face `{}`: import the named file instead",
                    file.display(),
                    to.join("::")
                ));
            }
        }
    }
    for cycle in cycles(&edges) {
        let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
        wrong.push(format!("import cycle: {}", names.join(" -> ")));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn deploy_steps_import_only_the_state_and_types() {
    let mut wrong = Vec::new();
    for s in sources().iter().filter(|s| s.module[0] == "deploy") {
        let own = s.module.last().map(String::as_str).unwrap_or("mod");
        if s.module.len() == 1 || DEPLOY_SHARED.contains(&own) {
            continue;
        }
        let steps = s
            .crate_paths
            .iter()
            .filter(|p| p[0] == "deploy")
            .filter_map(|p| p.get(1).cloned())
            .chain(s.super_names.iter().cloned());
        for step in steps {
            if !DEPLOY_SHARED.contains(&step.as_str()) {
                wrong.push(format!("{} imports deploy::{step}", s.file.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<Vec<String>, BTreeMap<Vec<String>, PathBuf>>) -> Vec<Vec<Vec<String>>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeMap<Vec<String>, PathBuf>>,
        index: BTreeMap<Vec<String>, usize>,
        low: BTreeMap<Vec<String>, usize>,
        stack: Vec<Vec<String>>,
        out: Vec<Vec<Vec<String>>>,
    }
    impl Walk<'_> {
        fn visit(&mut self, v: &Vec<String>) {
            let i = self.index.len();
            self.index.insert(v.clone(), i);
            self.low.insert(v.clone(), i);
            self.stack.push(v.clone());
            let next: Vec<Vec<String>> = self
                .edges
                .get(v)
                .map(|t| t.keys().cloned().collect())
                .unwrap_or_default();
            for w in &next {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let l = self.low[w].min(self.low[v]);
                    self.low.insert(v.clone(), l);
                } else if self.stack.contains(w) {
                    let l = self.index[w].min(self.low[v]);
                    self.low.insert(v.clone(), l);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    let done = &w == v;
                    comp.push(w);
                    if done {
                        break;
                    }
                }
                if comp.len() > 1 {
                    self.out.push(comp);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.out
}

#[test]
fn the_check_sees_a_cycle_and_an_upward_import() {
    let m = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    let mut e: BTreeMap<_, BTreeMap<_, _>> = BTreeMap::new();
    e.entry(m("a"))
        .or_default()
        .insert(m("b"), PathBuf::from("a.rs"));
    e.entry(m("b"))
        .or_default()
        .insert(m("a"), PathBuf::from("b.rs"));
    assert_eq!(cycles(&e).len(), 1);
    assert_eq!(
        paths_after("use crate::serve::Service; // x", "crate::"),
        vec![m("serve")]
    );
    assert_eq!(
        paths_after("crate::deploy::fetch::Fetched", "crate::"),
        vec![m("deploy::fetch")]
    );
    assert!(paths_after("pub(in crate::serve) fn f()", "crate::").is_empty());
    assert!(layer_of("fleet") < layer_of("serve"));
    assert!(layer_of("config") < layer_of("site"));
}
