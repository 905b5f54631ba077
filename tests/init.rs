//! `rootswap init` on an existing site of each framework: detection, the
//! written (commented, loadable) config, the nginx and next-step advice, the
//! refusal to overwrite, and the questions it must not ask without a terminal.

use crate::support::skeletons;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support;
use crate::support::{git, read};

/// A server: `webroot/ROOT` holds a site (a Git clone of `origin`), nothing configured yet.
struct Server {
    tmp: tempfile::TempDir,
    webroot: PathBuf,
    config: PathBuf,
}

fn server(files: &[(&str, &str)], extra: &[(&str, &str)], clone: bool) -> Server {
    let tmp = tempfile::tempdir().unwrap();
    let webroot = tmp.path().join("webroot");
    let root = webroot.join("ROOT");
    std::fs::create_dir_all(&root).unwrap();
    skeletons::write(&root, files);
    if clone {
        let origin = tmp.path().join("origin.git");
        git(&root, &["init", "-q", "-b", "production"]);
        git(&root, &["add", "-A"]);
        git(&root, &["commit", "-q", "-m", "site"]);
        git(
            tmp.path(),
            &[
                "clone",
                "-q",
                "--bare",
                &root.to_string_lossy(),
                &origin.to_string_lossy(),
            ],
        );
        git(
            &root,
            &["remote", "add", "origin", &origin.to_string_lossy()],
        );
    }
    skeletons::write(&root, extra);
    let config = tmp.path().join("etc/rootswap/site.yaml");
    Server {
        tmp,
        webroot,
        config,
    }
}

impl Server {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(support::bin())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .current_dir(self.tmp.path())
            .stdin(Stdio::null())
            .env("NO_COLOR", "1")
            // No web server found (tests/webserver.rs tests the detection): nginx's advice.
            .env(
                "ROOTSWAP_WEBSERVER_SEARCH_ROOT",
                self.tmp.path().join("no-system"),
            )
            .output()
            .expect("rootswap runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            out.status.success(),
            "rootswap {args:?} failed\nstdout:\n{o}\nstderr:\n{e}"
        );
        o
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let e = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "rootswap {args:?} unexpectedly succeeded"
        );
        assert!(!e.contains("panicked"), "{e}");
        e
    }

    fn init(&self, more: &[&str]) -> String {
        let w = self.webroot.to_string_lossy().into_owned();
        let mut args = vec!["init", "--webroot", &w];
        args.extend_from_slice(more);
        self.ok(&args)
    }

    fn effective(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["config", "--json"])).unwrap()
    }
}

fn check_advice(out: &str, docroot: &Path, config: &Path) {
    assert!(
        out.contains(&format!("root {};", docroot.display())),
        "{out}"
    );
    assert!(
        out.contains("fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;"),
        "{out}"
    );
    assert!(
        out.contains("fastcgi_param DOCUMENT_ROOT   $realpath_root;"),
        "{out}"
    );
    assert!(
        out.contains("run `rootswap nginx` to get the server block"),
        "{out}"
    );
    assert!(
        out.contains(&format!("rootswap -c {} deploy", config.display())),
        "{out}"
    );
}

#[test]
fn init_recognises_each_framework() {
    let cases: [(&str, skeletons::Files, &str, &str); 5] = [
        ("laravel", skeletons::laravel(), "public", "artisan"),
        ("symfony", skeletons::symfony(), "public", "symfony.lock"),
        ("wordpress", skeletons::wordpress(), ".", "wp-load.php"),
        ("drupal", skeletons::drupal(), "web", "web/core"),
        (
            "generic",
            skeletons::generic(),
            "public",
            "nothing recognised",
        ),
    ];
    for (name, files, public, evidence) in cases {
        let mut extra = skeletons::installed(name);
        if name == "wordpress" {
            extra.push(("wp-config.php", "<?php define('DB_NAME', 'wp');"));
        }
        let s = server(&files, &extra, true);
        let out = s.init(&[]);
        assert!(out.contains(&format!("(preset {name}: ")), "{name}: {out}");
        assert!(out.contains(evidence), "{name}: {out}");
        let text = read(&s.config);
        assert!(
            text.starts_with("# rootswap configuration, written by `rootswap init`"),
            "{text}"
        );
        assert!(text.contains(&format!("\npreset: {name}\n")), "{text}");
        let e = s.effective();
        assert_eq!(e["preset"], name);
        assert_eq!(e["public"], public, "{name}");
        assert_eq!(e["webroot"], s.webroot.to_string_lossy().as_ref());
        assert_eq!(
            e["source"]["repo"],
            s.tmp.path().join("origin.git").to_string_lossy().as_ref(),
            "read from the site's origin"
        );
        assert_eq!(
            e["source"]["branch"], "production",
            "read from the site's checked-out branch"
        );
        let docroot = if public == "." {
            s.webroot.join("current")
        } else {
            s.webroot.join("current").join(public)
        };
        check_advice(&out, &docroot, &s.config);
        // Uploads (and logs) are shared by default, and init writes them explicitly.
        let shared: &[&str] = match name {
            "laravel" => &["storage/app/public", "storage/logs"],
            "symfony" => &["public/uploads", "var/log"],
            "wordpress" => &["wp-content/uploads"],
            "drupal" => &["web/sites/default/files"],
            _ => &[],
        };
        if shared.is_empty() {
            assert!(!text.contains("shared: ["), "{name}: {text}");
        } else {
            assert!(
                text.contains("\nuser_content:\n")
                    && text.contains(&format!("\n  shared: [{}]\n", shared.join(", "))),
                "{name}: shared directories written explicitly:\n{text}"
            );
        }
        let effective: Vec<&str> = e["user_content"]["shared"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(effective, shared, "{name}: shared set");
        if name == "generic" {
            let hooks = e["hooks"]["after_checkout"].as_array().unwrap();
            assert_eq!(
                hooks.len(),
                1,
                "composer.json found: composer install suggested and set"
            );
        }
    }
}

#[test]
fn init_then_deploy_works_end_to_end() {
    let s = server(
        &skeletons::laravel(),
        &skeletons::installed("laravel"),
        true,
    );
    s.init(&[]);
    let bin = s.tmp.path().join("fakebin");
    skeletons::fake_tools(&bin, true);
    let out = Command::new(support::bin())
        .arg("-c")
        .arg(&s.config)
        .arg("deploy")
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("HOOK_LOG", s.tmp.path().join("hooks.log"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_link(s.webroot.join("current")).unwrap(),
        Path::new("ROOT")
    );
    let log = read(&s.tmp.path().join("hooks.log"));
    assert!(log.contains("php artisan migrate --force"), "{log}");
}

#[test]
fn init_flags_win_over_detection() {
    let s = server(&skeletons::wordpress(), &[], true);
    s.init(&[
        "--repo",
        "https://git.example.com/acme/blog.git",
        "--branch",
        "main",
        "--preset",
        "generic",
    ]);
    let e = s.effective();
    assert_eq!(e["preset"], "generic");
    assert_eq!(e["source"]["repo"], "https://git.example.com/acme/blog.git");
    assert_eq!(e["source"]["branch"], "main");
}

#[test]
fn init_needs_repo_when_it_cannot_find_one_and_leaves_nothing_behind() {
    let s = server(&skeletons::symfony(), &[], false);
    let err = s.fails(&["init", "--webroot", &s.webroot.to_string_lossy()]);
    assert!(err.contains("--repo"), "{err}");
    assert!(!s.config.exists());
    assert!(
        !s.config.parent().unwrap().exists()
            || std::fs::read_dir(s.config.parent().unwrap())
                .unwrap()
                .next()
                .is_none()
    );
    let out = s.init(&["--repo", "git@git.example.com:acme/shop.git"]);
    assert!(out.contains("preset symfony"), "{out}");
    assert_eq!(s.effective()["source"]["branch"], "main", "default branch");
}

#[test]
fn init_needs_webroot_without_a_terminal() {
    let s = server(&skeletons::generic(), &[], true);
    let err = s.fails(&["init"]);
    assert!(err.contains("--webroot"), "{err}");
    assert!(!s.config.exists());
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let s = server(&skeletons::laravel(), &[], true);
    std::fs::create_dir_all(s.config.parent().unwrap()).unwrap();
    std::fs::write(&s.config, "# mine\n").unwrap();
    let err = s.fails(&["init", "--webroot", &s.webroot.to_string_lossy()]);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(read(&s.config), "# mine\n");
    s.init(&["--force"]);
    assert!(read(&s.config).contains("preset: laravel"));
    let leftovers: Vec<_> = std::fs::read_dir(s.config.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
}

#[test]
fn init_explains_a_site_that_is_not_in_root_yet() {
    // A WordPress site served straight from the webroot directory.
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("html");
    skeletons::write(&site, &skeletons::wordpress());
    let config = tmp.path().join("rootswap.yaml");
    let out = Command::new(support::bin())
        .args([
            "-c",
            &config.to_string_lossy(),
            "init",
            "--webroot",
            &site.to_string_lossy(),
            "--repo",
            "/srv/blog.git",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("preset wordpress"), "{text}");
    assert!(text.contains("note: the site sits directly in"), "{text}");
}

/// A site cloned with a password in its origin URL: the written config
/// holds that password, so only its owner may read it (the umask would
/// have made it world-readable), and the operator is told why and how to
/// keep the password out of the file.
#[test]
fn init_keeps_a_config_with_the_origins_password_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = server(&skeletons::laravel(), &[], true);
    let root = s.webroot.join("ROOT");
    git(
        &root,
        &[
            "remote",
            "set-url",
            "origin",
            "https://deploy:s3cret@git.example.com/acme/shop.git",
        ],
    );
    let out = s.init(&[]);
    let mode = std::fs::metadata(&s.config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{out}");
    assert!(
        read(&s.config).contains("s3cret"),
        "the config keeps the URL"
    );
    assert!(!out.contains("s3cret"), "{out}");
    assert!(out.contains("holds the password of source.repo"), "{out}");
    assert!(out.contains("${GIT_PASSWORD}"), "{out}");

    // Without a password the file is as readable as any other config.
    let plain = server(&skeletons::laravel(), &[], true);
    plain.init(&[]);
    let mode = std::fs::metadata(&plain.config)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode & 0o044, 0o044, "mode {mode:o}");
}
