//! Real sites on the first try: symlinks as Git has them, an existing site
//! that is a `git clone` adopted safely, the presets' shared uploads applied
//! to a running site, and php-fpm's OPcache found (or a loud warning).
//! The real binary against real Git repositories; php-fpm started by the test.

use crate::support;
use crate::support::*;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn last_history_warnings(w: &World) -> Vec<String> {
    let out = w.ok(&["history", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("history --json");
    v.as_array()
        .and_then(|a| a.last())
        .and_then(|r| r["warnings"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn stderr_of(w: &World, args: &[&str]) -> (String, String) {
    let out = w.run(args);
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "rootswap {args:?} failed\n{o}\n{e}");
    (o, e)
}

/// The four kinds of link a real repository has, committed with `ln -s`.
fn commit_external_links(w: &World) {
    let r = &w.repo;
    std::fs::create_dir_all(r.join("wp-includes/certificates")).unwrap();
    std::fs::create_dir_all(r.join("app/config")).unwrap();
    std::fs::create_dir_all(r.join("public")).unwrap();
    symlink(
        "/etc/ssl/certs/ca-certificates.crt",
        r.join("wp-includes/certificates/ca-bundle.crt"),
    )
    .unwrap();
    symlink("../../../etc/hostname", r.join("app/config/host.txt")).unwrap();
    symlink("/nonexistent/rootswap-test/cache", r.join("app/cache")).unwrap();
    // The common `public/uploads -> shared` pattern: into the webroot's shared dir.
    symlink("../../shared/uploads", r.join("public/uploads")).unwrap();
    // A link that stays inside: no warning.
    symlink("../public/index.php", r.join("app/index-link.php")).unwrap();
    w.commit("links as a real repository has them");
}

#[test]
fn external_symlinks_are_deployed_as_git_has_them_with_one_warning_each() {
    let w = World::new(&[("public/index.php", "<?php echo 1;")], "public: public\n");
    w.ok(&["deploy"]);
    commit_external_links(&w);
    std::fs::create_dir_all(w.webroot.join("shared/uploads")).unwrap();
    std::fs::write(w.webroot.join("shared/uploads/cat.jpg"), "jpg").unwrap();
    let (stdout, stderr) = stderr_of(&w, &["deploy"]);
    let links = [
        (
            "wp-includes/certificates/ca-bundle.crt",
            "/etc/ssl/certs/ca-certificates.crt",
        ),
        ("app/config/host.txt", "../../../etc/hostname"),
        ("app/cache", "/nonexistent/rootswap-test/cache"),
        ("public/uploads", "../../shared/uploads"),
    ];
    for (path, target) in links {
        assert_eq!(
            std::fs::read_link(w.root().join(path)).unwrap(),
            Path::new(target),
            "{path} deployed as Git has it"
        );
        let named = format!("symlink {path} -> {target} points outside");
        assert_eq!(
            stderr.matches(&named).count(),
            1,
            "one warning for {path}:\n{stderr}"
        );
    }
    assert!(!stderr.contains("app/index-link.php"), "{stderr}");
    assert!(stdout.contains("deployed"), "{stdout}");
    // The link into the shared dir serves what is there.
    assert_eq!(read(&w.root().join("public/uploads/cat.jpg")), "jpg");
    let hist = last_history_warnings(&w);
    assert_eq!(
        hist.iter().filter(|h| h.contains("points outside")).count(),
        4,
        "{hist:?}"
    );
    // A later deploy that does not touch them does not warn again.
    w.write_files(&[("public/index.php", "<?php echo 2;")]);
    w.commit("v2");
    let (_, again) = stderr_of(&w, &["deploy"]);
    assert!(!again.contains("points outside"), "{again}");

    // doctor lists them, and which are served (under public/).
    let out = w.run(&["doctor"]);
    let doc = String::from_utf8_lossy(&out.stdout).into_owned();
    let served = doc
        .lines()
        .find(|l| l.starts_with('✗') && l.contains("under the public directory"))
        .unwrap_or_else(|| panic!("served links listed:\n{doc}"));
    assert!(
        served.contains("public/uploads -> ../../shared/uploads"),
        "{served}"
    );
    assert!(!served.contains("ca-bundle"), "{served}");
    let other = doc
        .lines()
        .find(|l| l.contains("not under the public directory"))
        .unwrap_or_else(|| panic!("other links listed:\n{doc}"));
    for (path, _) in &links[..3] {
        assert!(other.contains(path), "{path} in {other}");
    }
    assert!(
        other.contains("app/cache -> /nonexistent/rootswap-test/cache (dangling)"),
        "{other}"
    );
}

#[test]
fn external_symlinks_refuse_restores_the_refusal_and_changes_nothing() {
    let w = World::new(&[("index.php", "<?php echo 1;")], "");
    // set_config writes `source:` itself: write the whole file instead.
    std::fs::write(
        &w.config,
        format!(
            "webroot: {}\nsource:\n  repo: {}\n  branch: main\n  external_symlinks: refuse\ndrain: 0s\n",
            w.webroot.display(),
            w.repo.display()
        ),
    )
    .unwrap();
    w.ok(&["deploy"]);
    symlink("/etc/ssl/certs/ca-certificates.crt", w.repo.join("ca.crt")).unwrap();
    w.write_files(&[("index.php", "<?php echo 2;")]);
    w.commit("absolute link");
    assert_untouched(
        &w,
        &["deploy"],
        &[
            "symlink ca.crt -> /etc/ssl/certs/ca-certificates.crt",
            "points outside the deployed tree",
            "`source.external_symlinks: refuse`",
            "external_symlinks: allow",
        ],
    );
    assert_eq!(read(&w.root().join("index.php")), "<?php echo 1;");
}

#[test]
fn a_git_clone_in_root_is_adopted_without_its_git_dir_in_the_served_tree() {
    let w = World::new(
        &[
            ("index.php", "<?php echo 'v1';"),
            (".gitignore", "uploads/\n"),
            ("lib/a.php", "<?php"),
        ],
        "",
    );
    // The site as people have it: a clone in the docroot, a stray file, uploads.
    let out = Command::new("git")
        .args(["clone", "-q"])
        .arg(&w.repo)
        .arg(w.root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(w.root().join("phpinfo.php"), "<?php phpinfo();").unwrap();
    std::fs::create_dir_all(w.root().join("uploads/2026")).unwrap();
    std::fs::write(w.root().join("uploads/2026/a.jpg"), "a").unwrap();
    std::fs::write(w.root().join("uploads/2026/b.jpg"), "b").unwrap();
    symlink("ROOT", w.link()).unwrap();
    w.write_files(&[("index.php", "<?php echo 'v2';")]);
    w.commit("v2");

    // --dry-run shows both and changes nothing.
    let before = tree_state(&w.webroot);
    let dry = w.ok(&["deploy", "--dry-run"]);
    assert!(
        dry.contains("would move") && dry.contains("ROOT/.git") && dry.contains("adopted.git"),
        "{dry}"
    );
    assert!(dry.contains("would keep 2 entries"), "{dry}");
    assert!(dry.contains("  phpinfo.php\n"), "{dry}");
    assert!(dry.contains("  uploads/ (2 files)\n"), "{dry}");
    assert!(
        !dry.contains(".git/"),
        "no .git file counted as user content: {dry}"
    );
    assert_same(&before, &tree_state(&w.webroot), "dry run changed the disk");

    let (_, log) = stderr_of(&w, &["deploy"]);
    assert!(
        log.contains("moved") && log.contains("adopted.git"),
        "{log}"
    );
    assert!(
        log.contains("phpinfo.php") && log.contains("uploads/ (2 files)"),
        "{log}"
    );
    // No .git anywhere the web server can reach: ROOT, the snapshot it served.
    for e in walkdir::WalkDir::new(&w.webroot)
        .into_iter()
        .filter_map(|e| e.ok())
    {
        let rel = e.path().strip_prefix(&w.webroot).unwrap();
        if rel.starts_with(".rootswap") {
            continue;
        }
        assert!(
            !rel.components().any(|c| c.as_os_str() == ".git"),
            "{} in the webroot",
            rel.display()
        );
    }
    let adopted = w.webroot.join(".rootswap/adopted.git");
    assert!(
        adopted.join("HEAD").is_file(),
        "the clone's .git kept in the state dir"
    );
    assert_eq!(read(&w.link().join("index.php")), "<?php echo 'v2';");
    assert_eq!(read(&w.link().join("phpinfo.php")), "<?php phpinfo();");
    assert_eq!(read(&w.link().join("uploads/2026/b.jpg")), "b");
    // The next deploy has nothing to adopt.
    w.write_files(&[("index.php", "<?php echo 'v3';")]);
    w.commit("v3");
    let (_, log) = stderr_of(&w, &["deploy"]);
    assert!(
        !log.contains("adopted.git") && !log.contains("phpinfo"),
        "{log}"
    );
    // A clone over the running site later: its .git still leaves the served tree.
    let again = w.tmp.path().join("again");
    let out = Command::new("git")
        .args(["clone", "-q"])
        .arg(&w.repo)
        .arg(&again)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::rename(again.join(".git"), w.root().join(".git")).unwrap();
    w.write_files(&[("index.php", "<?php echo 'v4';")]);
    w.commit("v4");
    let (_, log) = stderr_of(&w, &["deploy"]);
    assert!(log.contains("adopted-2.git"), "{log}");
    assert!(
        !log.contains("phpinfo"),
        "no list after the first deploy: {log}"
    );
    assert!(!w.root().join(".git").exists());
    assert!(w.webroot.join(".rootswap/adopted-2.git/HEAD").is_file());
}

#[test]
fn upgrading_a_running_site_to_the_shared_uploads_preset_loses_no_upload() {
    let _heavy = heavy();
    let w = World::new(
        &[
            ("index.php", "<?php echo 1;"),
            ("wp-includes/version.php", "<?php $v = 1;"),
            ("wp-content/themes/t/style.css", "a"),
            (".gitignore", "wp-content/uploads/\n"),
        ],
        // The old preset: no shared directory.
        "preset: wordpress\nuser_content:\n  shared: []\n",
    );
    w.ok(&["deploy"]);
    let up = w.root().join("wp-content/uploads");
    std::fs::create_dir_all(up.join("2026/11")).unwrap();
    for i in 0..200 {
        std::fs::write(up.join(format!("2026/11/old{i}.jpg")), format!("old {i}")).unwrap();
    }
    w.write_files(&[("index.php", "<?php echo 2;")]);
    w.commit("v2");
    w.ok(&["deploy"]);
    assert!(!w.root().join("wp-content/uploads").is_symlink());

    // The new rootswap: the preset shares wp-content/uploads. A writer keeps
    // uploading through the link while the upgrade deploy runs.
    w.set_config("preset: wordpress\n");
    let e = w.ok(&["config", "--effective", "--json"]);
    assert!(e.contains("wp-content/uploads"), "{e}");
    w.write_files(&[("index.php", "<?php echo 3;")]);
    w.commit("v3");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (link, stop) = (w.link(), stop.clone());
        std::thread::spawn(move || {
            let mut written = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) || n < 50 {
                let dir = link.join("wp-content/uploads/2026/12");
                let _ = std::fs::create_dir_all(&dir);
                let name = format!("new{n}.jpg");
                if std::fs::write(dir.join(&name), format!("new {n}")).is_ok() {
                    written.push(name);
                }
                n += 1;
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
            written
        })
    };
    let (out, _) = stderr_of(&w, &["deploy"]);
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(out.contains("deployed"), "{out}");
    assert_eq!(
        std::fs::read_link(w.root().join("wp-content/uploads")).unwrap(),
        Path::new("../../shared/wp-content/uploads"),
        "the first deploy with `shared` moved the directory out of ROOT"
    );
    let served = served_contents(&w.link().join("wp-content/uploads"));
    for i in 0..200 {
        assert_eq!(
            served
                .get(&format!("2026/11/old{i}.jpg"))
                .map(String::as_str),
            Some(format!("old {i}").as_str()),
            "old upload {i}"
        );
    }
    let lost: Vec<&String> = written
        .iter()
        .filter(|n| !served.contains_key(&format!("2026/12/{n}")))
        .collect();
    assert!(written.len() >= 50, "the writer wrote {}", written.len());
    assert!(lost.is_empty(), "{} uploads lost: {lost:?}", lost.len());
    // Later deploys keep them too, and never copy them.
    w.write_files(&[("index.php", "<?php echo 4;")]);
    w.commit("v4");
    w.ok(&["deploy"]);
    assert_eq!(
        served_contents(&w.link().join("wp-content/uploads")),
        served
    );
}

const FPM_INI: &str = "zend_extension=opcache.so\nopcache.enable=1\nopcache.validate_timestamps=0\ndisplay_errors=Off\nlog_errors=On\n";

#[test]
fn php_fpm_is_found_on_its_socket_or_the_deploy_and_status_warn() {
    let _heavy = heavy();
    let Some(fpm_bin) = support::require(
        "php-fpm",
        support::find_php_fpm(),
        "apt-get install -y php-fpm",
    ) else {
        return;
    };
    let w = World::new(&[("index.php", "<?php echo 1;")], "");
    let search = w.tmp.path().join("sys");
    let deploy = |w: &World, v: u32| {
        w.write_files(&[("index.php", &format!("<?php echo {v};"))]);
        w.commit(&format!("v{v}"));
        let out = Command::new(bin())
            .arg("-c")
            .arg(&w.config)
            .arg("deploy")
            .env("ROOTSWAP_FPM_SEARCH_ROOT", &search)
            .output()
            .unwrap();
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{o}\n{e}");
        (o, e)
    };
    let cmd = |w: &World, args: &[&str]| {
        let out = Command::new(bin())
            .arg("-c")
            .arg(&w.config)
            .args(args)
            .env("ROOTSWAP_FPM_SEARCH_ROOT", &search)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    w.ok(&["deploy"]);
    // Nothing to find: the summary line and status say WARNING.
    std::fs::create_dir_all(search.join("run/php")).unwrap();
    let (out, err) = deploy(&w, 2);
    assert!(
        out.contains("WARNING: php-fpm's OPcache was not cleared"),
        "{out}"
    );
    assert!(
        err.contains("OPcache not cleared") && err.contains("opcache.fastcgi"),
        "{err}"
    );
    let st = cmd(&w, &["status"]);
    assert!(st.contains("opcache") && st.contains("WARNING:"), "{st}");

    // A real php-fpm on Debian's socket name (and a pool config naming it).
    let sock = search.join("run/php/php8.2-fpm.sock");
    let fpm_dir = w.tmp.path().join("fpm");
    let _fpm = Fpm::start(Pool::new(&fpm_bin, &fpm_dir, &sock, FPM_INI, 2));
    let pool_d = search.join("etc/php/8.2/fpm/pool.d");
    std::fs::create_dir_all(&pool_d).unwrap();
    std::fs::write(
        pool_d.join("www.conf"),
        format!("[www]\nuser = www-data\nlisten = {}\n", sock.display()),
    )
    .unwrap();
    let (out, err) = deploy(&w, 3);
    assert!(!out.contains("WARNING"), "{out}");
    assert!(
        err.contains(&format!("php-fpm found at unix:{}", sock.display())),
        "says which: {err}"
    );
    assert!(err.contains("OPcache reset scheduled"), "{err}");
    let st = cmd(&w, &["status"]);
    assert!(
        !st.contains("WARNING") && st.contains(&sock.display().to_string()),
        "{st}"
    );
    let doc = cmd(&w, &["doctor"]);
    assert!(
        doc.contains(&format!("php-fpm found at unix:{}", sock.display())),
        "{doc}"
    );
    assert!(
        doc.contains("validate_timestamps is 0") && doc.contains("stale code"),
        "doctor asks php-fpm: {doc}"
    );
    // Two pools: rootswap cannot choose, and says so.
    let other = search.join("run/php/php8.3-fpm.sock");
    let fpm2_dir = w.tmp.path().join("fpm2");
    let _fpm2 = Fpm::start(Pool::new(&fpm_bin, &fpm2_dir, &other, FPM_INI, 1));
    let (out, err) = deploy(&w, 4);
    assert!(out.contains("WARNING"), "{out}");
    assert!(err.contains("several php-fpm addresses"), "{err}");
}

#[test]
fn doctor_and_deploy_agree_on_an_absolute_serving_link() {
    let w = World::new(&[("index.php", "<?php echo 1;")], "");
    w.ok(&["deploy"]);
    std::fs::remove_file(w.link()).unwrap();
    symlink(w.root(), w.link()).unwrap();
    let out = w.run(&["doctor"]);
    let doc = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = doc
        .lines()
        .find(|l| l.contains("link ") && l.contains("->"))
        .unwrap_or_else(|| panic!("{doc}"));
    assert!(line.starts_with('✓'), "{line}");
    assert!(line.contains("deploys accept it"), "{line}");
    // And deploy does accept it, pointing the link at ROOT by name.
    w.write_files(&[("index.php", "<?php echo 2;")]);
    w.commit("v2");
    w.ok(&["deploy"]);
    assert_eq!(w.link_target(), "ROOT");
}
