//! The scratch world of a test: a real Git repository made with the `git`
//! command, a webroot, a config, the real `rootswap` binary, and readers of
//! trees that compare what is on disk before and after.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rootswap"))
}

/// `rootswap -c <config>`, ready for more arguments.
pub fn rootswap(config: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("-c").arg(config);
    cmd
}

/// What `rootswap <server> --listen 127.0.0.1:PORT --server-name SITE_HOST
/// <php>` prints for config `cfg`: the configuration a web-server test runs
/// (never a hand-written copy). `php`: how PHP is reached (`--fastcgi
/// unix:SOCKET`, `--mod-php`).
pub fn printed_config(cfg: &Path, server: &str, port: u16, php: &[String]) -> String {
    let out = rootswap(cfg)
        .args([
            server,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--server-name",
            super::net::SITE_HOST,
        ])
        .args(php)
        .output()
        .unwrap_or_else(|e| panic!("rootswap {server} runs: {e}"));
    assert!(
        out.status.success(),
        "rootswap {server} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `--fastcgi unix:SOCKET`, for [`printed_config`].
pub fn fastcgi_unix(socket: &Path) -> Vec<String> {
    vec!["--fastcgi".into(), format!("unix:{}", socket.display())]
}

/// A scratch world: `repo/` (a Git work tree), `webroot/`, and `rootswap.yaml`.
pub struct World {
    pub tmp: tempfile::TempDir,
    pub repo: PathBuf,
    pub webroot: PathBuf,
    pub config: PathBuf,
}

/// Runs `git` in `dir` with a fixed identity, no user or system config, and no
/// automatic garbage collection: a background `git gc --auto` in a test's
/// repository races the test's next `git add` ("unable to create temporary
/// file") on a loaded machine.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "gc.auto=0", "-c", "maintenance.auto=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `git` in `dir` with `input` on its stdin (no user or system config);
/// returns its trimmed stdout.
pub fn git_with_input(dir: &Path, args: &[&str], input: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("git runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl World {
    /// A repository with `files` committed on `main`, and a config (extra YAML appended).
    pub fn new(files: &[(&str, &str)], extra_yaml: &str) -> World {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = tmp.path().join("repo");
        let webroot = tmp.path().join("webroot");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::create_dir_all(&webroot).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        let w = World {
            config: tmp.path().join("rootswap.yaml"),
            tmp,
            repo,
            webroot,
        };
        w.write_files(files);
        w.commit("initial");
        w.set_config(extra_yaml);
        w
    }

    /// Writes the config: webroot, source, drain 0 and `extra` YAML.
    pub fn set_config(&self, extra: &str) {
        let text = format!(
            "webroot: {}\nsource:\n  repo: {}\n  branch: main\ndrain: 0s\n{extra}",
            self.webroot.display(),
            self.repo.display()
        );
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn write_files(&self, files: &[(&str, &str)]) {
        for (rel, text) in files {
            let p = self.repo.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }

    /// Commits everything in the work tree; returns the commit id.
    pub fn commit(&self, msg: &str) -> String {
        git(&self.repo, &["add", "-A"]);
        git(&self.repo, &["commit", "-q", "--allow-empty", "-m", msg]);
        git(&self.repo, &["rev-parse", "HEAD"])
    }

    pub fn root(&self) -> PathBuf {
        self.webroot.join("ROOT")
    }

    pub fn link(&self) -> PathBuf {
        self.webroot.join("current")
    }

    /// Runs `rootswap -c <config> args…`.
    pub fn run(&self, args: &[&str]) -> Output {
        rootswap(&self.config)
            .args(args)
            .output()
            .expect("rootswap runs")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, &self.run(args))
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "rootswap {args:?} unexpectedly succeeded\nstdout:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains("panicked"), "panic: {err}");
        assert!(!err.contains("RUST_BACKTRACE"), "backtrace hint: {err}");
        err
    }

    /// Snapshot names (timestamped and kept), sorted.
    pub fn snapshots(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.webroot)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("ROOT_"))
            .collect();
        v.sort();
        v
    }

    pub fn link_target(&self) -> String {
        std::fs::read_link(self.link())
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

/// Asserts that `rootswap args` exited 0 (showing its output otherwise);
/// returns its stdout.
#[track_caller]
pub fn succeeded(args: &[&str], out: &Output) -> String {
    assert!(
        out.status.success(),
        "rootswap {args:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything observable about a tree: path → (kind, content or target, mode, mtime).
pub fn tree_state(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return out;
    }
    for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
        let m = e.path().symlink_metadata().unwrap();
        let desc = if m.file_type().is_symlink() {
            format!("link {}", std::fs::read_link(e.path()).unwrap().display())
        } else if m.is_dir() {
            format!("dir {:o}", m.mode() & 0o7777)
        } else {
            format!(
                "file {:o} {}.{} {:?}",
                m.mode() & 0o7777,
                m.mtime(),
                m.mtime_nsec(),
                String::from_utf8_lossy(&std::fs::read(e.path()).unwrap())
            )
        };
        out.insert(rel, desc);
    }
    out
}

/// File contents only (path → text) of a tree, skipping directories and symlinks.
pub fn contents(root: &Path) -> BTreeMap<String, String> {
    contents_walk(root, false)
}

/// File contents of a tree as a request sees it: symlinks followed (a
/// shared directory's files appear at their place in the tree).
pub fn served_contents(root: &Path) -> BTreeMap<String, String> {
    contents_walk(root, true)
}

fn contents_walk(root: &Path, follow_links: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(follow_links)
        .sort_by_file_name()
    {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(
                rel,
                String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned(),
            );
        }
    }
    out
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Asserts two tree states are equal, printing only the paths that differ.
#[track_caller]
pub fn assert_same(
    before: &BTreeMap<PathBuf, String>,
    after: &BTreeMap<PathBuf, String>,
    what: &str,
) {
    let mut diffs = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => diffs.push(format!(
                "- {} ({})",
                k.display(),
                v.chars().take(80).collect::<String>()
            )),
            Some(v2) if v2 != v => diffs.push(format!(
                "~ {}: {} => {}",
                k.display(),
                v.chars().take(80).collect::<String>(),
                v2.chars().take(80).collect::<String>()
            )),
            _ => {}
        }
    }
    for (k, v) in after {
        if !before.contains_key(k) {
            diffs.push(format!(
                "+ {} ({})",
                k.display(),
                v.chars().take(80).collect::<String>()
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{what}: {} paths differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// Tree state of a webroot without the Git cache (which fetches update) and the lock file (holder's pid).
pub fn webroot_state(webroot: &Path) -> BTreeMap<PathBuf, String> {
    tree_state(webroot)
        .into_iter()
        .filter(|(k, _)| !k.starts_with(".rootswap/repo.git") && !k.starts_with(".rootswap/lock"))
        .collect()
}

/// Runs `args`, expecting failure with one `error:` line containing every
/// `expect` string, and no change in the webroot.
pub fn assert_untouched(w: &World, args: &[&str], expect: &[&str]) {
    let before = webroot_state(&w.webroot);
    let err = w.fails(args);
    for e in expect {
        assert!(err.contains(e), "expected {e:?} in:\n{err}");
    }
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "one error message:\n{err}"
    );
    assert_same(
        &before,
        &webroot_state(&w.webroot),
        &format!("disk changed after: {err}"),
    );
}
