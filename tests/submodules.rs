//! Git submodules (issue 22, part 1), with real repositories, a real
//! `git daemon` and the real binary: nested submodules with relative URLs
//! deployed over `git://`; a submodule bump that rewrites only the
//! submodule's changed files (the others keep their inode); a removed
//! submodule; `source.submodules: false` and turning it on and off on a
//! live site; an unreachable submodule failing with its URL and the fix,
//! the site untouched; and the attacks a pushed `.gitmodules` can try
//! (another repository of the machine by path or `file://`, `ext::`,
//! option-like URLs, a gitlink named `.git`), each refused with the site
//! untouched.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::support::*;

/// Bare repositories under `served/` (exported by the daemon when there is one).
struct Served {
    dir: PathBuf,
}

impl Served {
    fn new(w: &World) -> Served {
        let dir = w.tmp.path().join("served");
        std::fs::create_dir_all(&dir).unwrap();
        Served { dir }
    }

    /// A work repository `work-<name>` with `files` and `links` (path,
    /// commit) committed on `main` and pushed to `served/<name>.git`;
    /// returns the work tree and the commit.
    fn repo(
        &self,
        name: &str,
        files: &[(&str, &str)],
        links: &[(&str, &str)],
    ) -> (PathBuf, String) {
        let work = self.dir.parent().unwrap().join(format!("work-{name}"));
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        git(
            &self.dir,
            &["init", "-q", "--bare", "-b", "main", &format!("{name}.git")],
        );
        let commit = self.commit(&work, name, files, links);
        (work, commit)
    }

    /// Writes `files`, records `links`, commits and pushes `work` to `<name>.git`.
    fn commit(
        &self,
        work: &Path,
        name: &str,
        files: &[(&str, &str)],
        links: &[(&str, &str)],
    ) -> String {
        for (rel, text) in files {
            let p = work.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let commit = commit_links(work, links);
        self.push(work, name);
        commit
    }

    fn push(&self, work: &Path, name: &str) {
        let to = self.dir.join(format!("{name}.git"));
        git(work, &["push", "-q", "-f", to.to_str().unwrap(), "main"]);
    }
}

/// Records each (path, commit) as a gitlink, commits everything, returns the commit.
fn commit_links(work: &Path, links: &[(&str, &str)]) -> String {
    for (path, commit) in links {
        // An uninitialised submodule is an empty directory: `git add -A` keeps its gitlink.
        std::fs::create_dir_all(work.join(path)).unwrap();
        git(
            work,
            &[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("160000,{commit},{path}"),
            ],
        );
    }
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "--allow-empty", "-m", "change"]);
    git(work, &["rev-parse", "HEAD"])
}

fn gitmodules(entries: &[(&str, &str)]) -> String {
    entries
        .iter()
        .map(|(path, url)| format!("[submodule \"{path}\"]\n\tpath = {path}\n\turl = {url}\n"))
        .collect()
}

/// The config of `w` with `repo` as `source.repo` and `source` lines added.
fn configure(w: &World, repo: &str, source: &str) {
    let text = format!(
        "webroot: {}\nsource:\n  repo: {repo}\n  branch: main\n{source}drain: 0s\n",
        w.webroot.display()
    );
    std::fs::write(&w.config, text).unwrap();
}

fn ino(p: &Path) -> u64 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .ino()
}

fn short(c: &str) -> &str {
    &c[..7]
}

#[test]
fn nested_submodules_with_relative_urls_deploy_and_bump_only_their_changes() {
    let w = World::new(&[("index.php", "site")], "");
    let served = Served::new(&w);
    let Some(daemon) = GitDaemon::start(&served.dir) else {
        return;
    };
    let (_, inner) = served.repo("inner", &[("x.php", "inner x")], &[]);
    let lib_files = [
        ("a.php", "a1"),
        ("b.php", "b1"),
        ("c.php", "c1"),
        (".gitmodules", &*gitmodules(&[("inner", "../inner.git")])),
    ];
    let (lib_work, lib1) = served.repo("lib", &lib_files, &[("inner", &inner)]);
    let site_files = [(".gitmodules", &*gitmodules(&[("lib", "../lib.git")]))];
    git(
        &served.dir,
        &["init", "-q", "--bare", "-b", "main", "site.git"],
    );
    served.commit(&w.repo, "site", &site_files, &[("lib", &lib1)]);
    configure(&w, &daemon.url("site.git"), "");

    w.ok(&["deploy"]);
    let root = w.root();
    assert_eq!(read(&root.join("index.php")), "site");
    assert_eq!(read(&root.join("lib/a.php")), "a1");
    assert_eq!(read(&root.join("lib/inner/x.php")), "inner x");
    for git_file in ["lib/.git", "lib/inner/.git", ".git"] {
        assert!(!root.join(git_file).exists(), "{git_file} landed in ROOT");
    }
    // The site writes a file inside the submodule's directory.
    std::fs::write(root.join("lib/upload.txt"), "user").unwrap();
    let before: Vec<u64> = ["index.php", "lib/b.php", "lib/inner/x.php"]
        .iter()
        .map(|p| ino(&root.join(p)))
        .collect();

    // Bump: a.php changes, c.php is deleted, nothing else.
    std::fs::remove_file(lib_work.join("c.php")).unwrap();
    let lib2 = served.commit(&lib_work, "lib", &[("a.php", "a2")], &[]);
    served.commit(&w.repo, "site", &[], &[("lib", &lib2)]);
    let dry = w.ok(&["deploy", "--dry-run"]);
    let line = format!("submodule lib: {} -> {}", short(&lib1), short(&lib2));
    assert!(dry.contains(&line), "dry run lists the bump:\n{dry}");
    assert!(
        dry.contains("lib/a.php") && dry.contains("lib/c.php"),
        "{dry}"
    );
    assert!(
        !dry.contains("lib/b.php"),
        "unchanged files are not listed:\n{dry}"
    );

    w.ok(&["deploy"]);
    assert_eq!(read(&root.join("lib/a.php")), "a2");
    assert!(
        !root.join("lib/c.php").exists(),
        "a file deleted in the submodule is deleted (not carried back as a user file)"
    );
    assert_eq!(read(&root.join("lib/upload.txt")), "user");
    let after: Vec<u64> = ["index.php", "lib/b.php", "lib/inner/x.php"]
        .iter()
        .map(|p| ino(&root.join(p)))
        .collect();
    assert_eq!(before, after, "untouched files keep their inode");

    // Removing the submodule removes its files (the user's file stays).
    git(&w.repo, &["rm", "-q", "--cached", "lib"]);
    std::fs::remove_file(w.repo.join(".gitmodules")).unwrap();
    served.commit(&w.repo, "site", &[], &[]);
    w.ok(&["deploy"]);
    for gone in ["lib/a.php", "lib/b.php", "lib/inner/x.php", ".gitmodules"] {
        assert!(!root.join(gone).exists(), "{gone} is still in ROOT");
    }
    assert_eq!(read(&root.join("lib/upload.txt")), "user");
    assert_eq!(read(&root.join("index.php")), "site");
    drop(daemon);
}

/// `source.submodules: false` keeps submodules out; turning it on (same
/// commit) brings them in, turning it off again takes them out. The
/// superproject is a local path, where a relative URL is a local path too
/// (the control for the local-path refusal below).
#[test]
fn submodules_false_skips_them_and_the_setting_can_change_on_a_live_site() {
    let w = World::new(&[("index.php", "site")], "");
    let served = Served::new(&w);
    let (_, lib) = served.repo("lib", &[("a.php", "a1")], &[]);
    // w.repo is <tmp>/repo: ../served/lib.git resolves to the bare repository.
    let site_files = [(".gitmodules", &*gitmodules(&[("lib", "../served/lib.git")]))];
    for (rel, text) in site_files {
        std::fs::write(w.repo.join(rel), text).unwrap();
    }
    commit_links(&w.repo, &[("lib", &lib)]);
    let repo = w.repo.to_str().unwrap().to_string();

    configure(&w, &repo, "  submodules: false\n");
    let out = w.run(&["deploy"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("submodule lib is not deployed"), "{err}");
    assert!(!w.root().join("lib/a.php").exists());
    assert_eq!(read(&w.root().join("index.php")), "site");

    configure(&w, &repo, "");
    w.ok(&["deploy"]);
    assert_eq!(read(&w.root().join("lib/a.php")), "a1");
    // Up to date now: a second deploy changes nothing.
    let snaps = w.snapshots();
    w.ok(&["deploy"]);
    assert_eq!(
        w.snapshots(),
        snaps,
        "an up-to-date deploy takes no snapshot"
    );

    configure(&w, &repo, "  submodules: false\n");
    w.ok(&["deploy"]);
    assert!(
        !w.root().join("lib/a.php").exists(),
        "turned off: the submodule's files are removed"
    );
    assert_eq!(read(&w.root().join("index.php")), "site");
}

/// With `source.subdir`, `.gitmodules` paths are relative to the
/// repository root, the files land relative to the subdir.
#[test]
fn submodules_inside_the_deployed_subdir() {
    let w = World::new(&[("web/index.php", "site"), ("README", "not deployed")], "");
    let served = Served::new(&w);
    let (_, lib) = served.repo("lib", &[("a.php", "in web/lib")], &[]);
    let modules = gitmodules(&[("web/lib", "../served/lib.git")]);
    std::fs::write(w.repo.join(".gitmodules"), modules).unwrap();
    commit_links(&w.repo, &[("web/lib", &lib)]);
    configure(&w, w.repo.to_str().unwrap(), "  subdir: web\n");
    w.ok(&["deploy"]);
    assert_eq!(read(&w.root().join("lib/a.php")), "in web/lib");
    assert_eq!(read(&w.root().join("index.php")), "site");
    assert!(!w.root().join("README").exists());

    // A relative URL naming no repository of this machine.
    let modules = gitmodules(&[("web/lib", "../served/nope.git")]);
    std::fs::write(w.repo.join(".gitmodules"), modules).unwrap();
    let (_, other) = served.repo("other", &[("o.php", "o")], &[]);
    commit_links(&w.repo, &[("web/lib", &other)]);
    assert_untouched(
        &w,
        &["deploy"],
        &["no such repository", "nope.git", "web/lib"],
    );
}

/// A superproject served by a git daemon, deployed once, then given
/// submodules whose URL is unreachable or hostile: each deploy fails with
/// one error, the webroot unchanged, no foreign content in ROOT.
#[test]
fn unreachable_and_hostile_submodule_urls_fail_with_the_site_untouched() {
    let w = World::new(&[("index.php", "v1")], "");
    let served = Served::new(&w);
    let Some(daemon) = GitDaemon::start(&served.dir) else {
        return;
    };
    git(
        &served.dir,
        &["init", "-q", "--bare", "-b", "main", "site.git"],
    );
    served.push(&w.repo, "site");
    configure(&w, &daemon.url("site.git"), "");
    w.ok(&["deploy"]);

    // A repository of this machine a pusher should never publish.
    let secret = w.tmp.path().join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    git(&secret, &["init", "-q", "-b", "main"]);
    std::fs::write(secret.join("secret.php"), "private").unwrap();
    let secret_commit = commit_links(&secret, &[]);
    let sentinel = w.tmp.path().join("pwned");
    let missing = daemon.url("missing.git");
    let (_, lib) = served.repo("lib", &[("a.php", "a")], &[]);
    let cases = [
        // A commit the submodule's repository does not have (never pushed).
        ("../lib.git".to_string(), "push that commit"),
        (format!("{}", secret.display()), "refused"),
        (format!("file://{}", secret.display()), "refused"),
        (
            format!("ext::sh -c touch% {}", sentinel.display()),
            "refused",
        ),
        ("-uhack".to_string(), "refused"),
        (missing.clone(), "source.submodules: false"),
    ];
    for (url, expect) in &cases {
        std::fs::write(w.repo.join(".gitmodules"), gitmodules(&[("lib", url)])).unwrap();
        commit_links(&w.repo, &[("lib", &secret_commit)]);
        served.push(&w.repo, "site");
        assert_untouched(&w, &["deploy"], &[expect, "lib"]);
        assert!(!sentinel.exists(), "{url}: ext:: ran a command");
        assert!(!w.root().join("lib").exists(), "{url}: lib landed in ROOT");
        assert_eq!(read(&w.root().join("index.php")), "v1");
    }
    let err = w.fails(&["deploy"]);
    assert!(err.contains(&missing), "the error names the URL:\n{err}");

    // A gitlink named `.git` is refused like any entry git refuses.
    let fine = gitmodules(&[("lib", "../lib.git")]);
    std::fs::write(w.repo.join(".gitmodules"), &fine).unwrap();
    commit_links(&w.repo, &[("lib", &lib)]);
    let listing = git(&w.repo, &["ls-tree", "HEAD"]);
    let hostile = format!("{listing}\n160000 commit {lib}\t.git\n");
    let tree = git_with_input(&w.repo, &["mktree"], hostile.as_bytes());
    let commit = git(
        &w.repo,
        &["commit-tree", &tree, "-p", "HEAD", "-m", "hostile"],
    );
    git(&w.repo, &["update-ref", "refs/heads/main", &commit]);
    served.push(&w.repo, "site");
    let before = webroot_state(&w.webroot);
    let err = w.fails(&["deploy"]);
    assert!(err.contains("git refuses") && err.contains(".git"), "{err}");
    assert!(!w.root().join(".git").exists());
    assert!(!w.root().join("lib").exists());
    let after = webroot_state(&w.webroot);
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, v)| {
            before.get(*k) != Some(v) && k.as_path() != Path::new(".rootswap/history.jsonl")
        })
        .collect();
    assert!(
        changed.is_empty(),
        "only the history records the refusal: {changed:?}"
    );

    // The control: a normal submodule deploys from the same daemon.
    git(&w.repo, &["reset", "-q", "--hard", "HEAD~1"]);
    served.push(&w.repo, "site");
    w.ok(&["deploy"]);
    assert_eq!(read(&w.root().join("lib/a.php")), "a");
    drop(daemon);
}

/// Over ssh, a submodule is fetched with the site's deploy key and its
/// URL's host key is checked as the site's is: a relative URL (same host)
/// deploys; the same repository through a host name whose key is not in
/// `known_hosts` is refused with the fingerprint, the site untouched.
#[test]
fn ssh_submodules_use_the_deploy_key_and_the_host_key_check() {
    use crate::ssh::{key_of, keygen, start_sshd, whoami};
    let _heavy = heavy();
    let Some(sshd_bin) = require(
        "sshd",
        find_program(&["sshd"]),
        "apt-get install -y openssh-server",
    ) else {
        return;
    };
    if require(
        "ssh-keygen",
        find_program(&["ssh-keygen"]),
        "apt-get install -y openssh-client",
    )
    .is_none()
    {
        return;
    }
    let w = World::new(&[("index.php", "site")], "");
    let served = Served::new(&w);
    let (_, lib) = served.repo("lib", &[("a.php", "over ssh")], &[]);
    git(
        &served.dir,
        &["init", "-q", "--bare", "-b", "main", "site.git"],
    );
    let keys = w.tmp.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let deploy_key = keys.join("deploy_key");
    keygen(&deploy_key);
    let server = start_sshd(
        &sshd_bin,
        &w.tmp.path().join("sshd"),
        &deploy_key.with_extension("pub"),
    );
    let port = server.port;
    let known = keys.join("known_hosts");
    std::fs::write(
        &known,
        format!("[127.0.0.1]:{port} {}\n", key_of(&server.host_pub())),
    )
    .unwrap();
    let home = w.tmp.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let url = |host: &str, name: &str| {
        format!(
            "ssh://{}@{host}:{port}{}/{name}",
            whoami(),
            served.dir.display()
        )
    };
    let source = format!(
        "  ssh_key: {}\n  known_hosts: {}\n",
        deploy_key.display(),
        known.display()
    );
    configure(&w, &url("127.0.0.1", "site.git"), &source);
    let deploy = || {
        std::process::Command::new(bin())
            .arg("-c")
            .arg(&w.config)
            .arg("deploy")
            .env("HOME", &home)
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .unwrap()
    };

    served.commit(
        &w.repo,
        "site",
        &[(".gitmodules", &*gitmodules(&[("lib", "../lib.git")]))],
        &[("lib", &lib)],
    );
    let out = deploy();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&w.root().join("lib/a.php")), "over ssh");

    // The same server under a name known_hosts does not list.
    let (_, other) = served.repo("other", &[("o.php", "o")], &[]);
    let modules = gitmodules(&[
        ("lib", "../lib.git"),
        ("other", &url("localhost", "other.git")),
    ]);
    served.commit(
        &w.repo,
        "site",
        &[(".gitmodules", &*modules)],
        &[("other", &other)],
    );
    let before = webroot_state(&w.webroot);
    let out = deploy();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("submodule other")
            && err.contains(&format!("the host key of [localhost]:{port} is not known")),
        "{err}"
    );
    assert_same(
        &before,
        &webroot_state(&w.webroot),
        "a refused submodule changes nothing",
    );
    assert!(!w.root().join("other").exists());
}
