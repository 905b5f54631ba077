//! Framework presets against real skeletons of each framework's layout: the
//! preset's hooks run (through fake `composer`/`php` that log their calls),
//! its preserve/exclude globs decide which files written during the deploy
//! reach the new version, missing tools fail (or are skipped when optional),
//! every value can be overridden, and `config --effective` shows the result.

use crate::support::skeletons;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support;
use crate::support::{read, World};

struct Site {
    w: World,
    bin: PathBuf,
    log: PathBuf,
}

fn site(files: &[(&str, &str)], yaml: &str, composer: bool) -> Site {
    let w = World::new(files, yaml);
    let bin = w.tmp.path().join("fakebin");
    skeletons::fake_tools(&bin, composer);
    let log = w.tmp.path().join("hooks.log");
    Site { w, bin, log }
}

impl Site {
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new(support::bin());
        c.arg("-c")
            .arg(&self.w.config)
            .args(args)
            .env("PATH", path)
            .env("HOOK_LOG", &self.log)
            .env("NO_COLOR", "1");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("rootswap runs")
    }

    fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
        let out = self.run(args, env);
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            out.status.success(),
            "rootswap {args:?} failed\nstdout:\n{o}\nstderr:\n{e}"
        );
        (o, e)
    }

    fn fails(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.run(args, env);
        let e = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "rootswap {args:?} unexpectedly succeeded:\n{e}"
        );
        assert!(!e.contains("panicked"), "{e}");
        e
    }

    /// Hook calls logged since the last call, without the probes.
    fn take_log(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        text.lines().map(str::to_owned).collect()
    }

    /// Deploys a new commit while "visitors" write `uploads` into the serving snapshot.
    fn deploy_with_uploads(&self, uploads: &[(&str, &str)], env: &[(&str, &str)]) -> String {
        self.w.write_files(&[("CHANGELOG", "v2\n")]);
        self.w.commit("v2");
        let list = self.w.tmp.path().join("uploads.tsv");
        let text: String = uploads.iter().map(|(p, c)| format!("{p}\t{c}\n")).collect();
        std::fs::write(&list, text).unwrap();
        let mut env = env.to_vec();
        let l = list.to_string_lossy().into_owned();
        env.push(("USER_FILES", &l));
        let (out, _) = self.ok(&["deploy"], &env);
        out
    }

    fn effective(&self) -> serde_json::Value {
        let (out, _) = self.ok(&["config", "--effective", "--json"], &[]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

fn has(root: &Path, rel: &str) -> bool {
    root.join(rel).symlink_metadata().is_ok()
}

fn strs(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn laravel_preset_runs_artisan_and_keeps_storage() {
    let s = site(&skeletons::laravel(), "preset: laravel\n", true);
    s.ok(&["deploy"], &[]);
    assert_eq!(
        s.take_log(),
        [
            "composer install --no-dev --no-interaction --prefer-dist --optimize-autoloader @ ROOT",
            "php artisan migrate --force @ ROOT",
            "php artisan config:cache @ ROOT",
            "php artisan route:cache @ ROOT",
            "php artisan view:cache @ ROOT",
            "php artisan queue:restart @ ROOT",
        ]
    );
    let uploads = [
        (".env", "APP_KEY=base64:secret"),
        ("storage/app/public/avatars/1.png", "png"),
        ("storage/logs/laravel.log", "log line"),
        ("storage/framework/sessions/abc123", "session"),
        ("storage/framework/cache/data/ab/cd/entry", "cache"),
        ("storage/framework/views/0123abcd.php", "<?php compiled"),
        ("bootstrap/cache/config.php", "<?php return [];"),
    ];
    s.deploy_with_uploads(&uploads, &[("PHP_COMMANDS", "horizon:terminate")]);
    // The snapshot's config and view caches are rebuilt inside it (config
    // first), before the checkout; workers restart once ROOT serves.
    let log = s.take_log();
    let in_snapshot: Vec<&str> = log[..2]
        .iter()
        .map(|l| l.split(" @ ROOT_").next().unwrap_or(""))
        .collect();
    assert_eq!(
        in_snapshot,
        ["php artisan config:cache", "php artisan view:cache"],
        "{log:?}"
    );
    assert!(log[..2].iter().all(|l| l.contains(" @ ROOT_")), "{log:?}");
    assert_eq!(
        &log[2..],
        [
            "composer install --no-dev --no-interaction --prefer-dist --optimize-autoloader @ ROOT",
            "php artisan migrate --force @ ROOT",
            "php artisan config:cache @ ROOT",
            "php artisan route:cache @ ROOT",
            "php artisan view:cache @ ROOT",
            "php artisan queue:restart @ ROOT",
            "php artisan horizon:terminate @ ROOT",
        ]
    );
    let root = s.w.root();
    assert_eq!(read(&root.join(".env")), "APP_KEY=base64:secret");
    for kept in [
        ".env",
        "storage/app/public/avatars/1.png",
        "storage/logs/laravel.log",
        "storage/framework/sessions/abc123",
    ] {
        assert!(has(&root, kept), "{kept} was preserved");
    }
    for dropped in [
        "storage/framework/cache/data/ab/cd/entry",
        "storage/framework/views/0123abcd.php",
        "bootstrap/cache/config.php",
    ] {
        assert!(!has(&root, dropped), "{dropped} is excluded by the preset");
    }
    assert_eq!(read(&root.join("CHANGELOG")), "v2\n");
    let e = s.effective();
    assert_eq!(e["preset"], "laravel");
    assert_eq!(e["public"], "public");
    assert_eq!(
        strs(&e["user_content"]["preserve"]),
        [
            ".env",
            "storage/app/**",
            "storage/logs/**",
            "storage/framework/sessions/**"
        ]
    );
    assert_eq!(
        strs(&e["user_content"]["exclude"]),
        [
            "storage/framework/cache/**",
            "storage/framework/views/**",
            "bootstrap/cache/*.php"
        ]
    );
}

#[test]
fn without_the_preset_laravel_env_is_not_carried_over() {
    // The contrast: .env is gitignored, so only the preset's preserve carries it.
    let s = site(&skeletons::laravel(), "", true);
    s.ok(&["deploy"], &[]);
    assert!(s.take_log().is_empty(), "no preset, no hooks");
    s.deploy_with_uploads(&[(".env", "APP_KEY=x")], &[]);
    assert!(!has(&s.w.root(), ".env"));
}

#[test]
fn symfony_preset_skips_migrations_when_doctrine_is_absent() {
    let s = site(&skeletons::symfony(), "preset: symfony\n", true);
    let (_, err) = s.ok(&["deploy"], &[]);
    assert_eq!(
        s.take_log(),
        [
            "composer install --no-dev --optimize-autoloader @ ROOT",
            "php bin/console cache:warmup @ ROOT"
        ]
    );
    assert!(
        err.contains("skipped optional") && err.contains("doctrine:migrations:migrate"),
        "{err}"
    );
    let uploads = [
        (".env.local", "DATABASE_URL=mysql://u:p@db/app"),
        ("var/log/prod.log", "log"),
        ("public/uploads/photo.jpg", "jpg"),
        ("var/cache/prod/Container.php", "<?php"),
    ];
    s.deploy_with_uploads(&uploads, &[("PHP_COMMANDS", "doctrine:migrations:migrate")]);
    // No hook in the snapshot: Symfony's container finds its tree relative
    // to its own files. ROOT's cache is removed, then warmed up.
    assert_eq!(
        s.take_log(),
        [
            "composer install --no-dev --optimize-autoloader @ ROOT",
            "php bin/console cache:warmup @ ROOT",
            "php bin/console doctrine:migrations:migrate --no-interaction --allow-no-migration @ ROOT",
        ]
    );
    let root = s.w.root();
    for kept in [".env.local", "var/log/prod.log", "public/uploads/photo.jpg"] {
        assert!(has(&root, kept), "{kept} was preserved");
    }
    assert!(!has(&root, "var/cache/prod/Container.php"));
    let e = s.effective();
    assert_eq!(e["public"], "public");
    assert_eq!(
        strs(&e["hooks"]["after_checkout"])[3],
        "? php bin/console doctrine:migrations:migrate --no-interaction --allow-no-migration"
    );
}

#[test]
fn wordpress_preset_keeps_config_and_uploads() {
    let s = site(&skeletons::wordpress(), "preset: wordpress\n", true);
    s.ok(&["deploy"], &[]);
    assert!(s.take_log().is_empty(), "wordpress has no hooks");
    assert!(strs(&s.effective()["hooks"]["after_checkout"]).is_empty());
    // WordPress runs no composer: a hook of the test's own plays the visitor.
    s.w.set_config("preset: wordpress\nhooks:\n  after_checkout: [write-uploads]\n");
    let uploads = [
        ("wp-config.php", "<?php define('DB_PASSWORD', 'x');"),
        (".htaccess", "# BEGIN WordPress"),
        ("wp-content/uploads/2026/11/cat.jpg", "jpg"),
        ("wp-content/cache/page.html", "cached"),
    ];
    s.deploy_with_uploads(&uploads, &[]);
    let root = s.w.root();
    for kept in [
        "wp-config.php",
        ".htaccess",
        "wp-content/uploads/2026/11/cat.jpg",
    ] {
        assert!(has(&root, kept), "{kept} was preserved");
    }
    assert!(!has(&root, "wp-content/cache/page.html"));
    assert!(
        has(&s.w.link(), "wp-includes/version.php"),
        "served from the top"
    );
    assert_eq!(s.effective()["public"], ".");
}

#[test]
fn drupal_preset_runs_drush_installed_by_composer() {
    let s = site(&skeletons::drupal(), "preset: drupal\n", true);
    s.ok(&["deploy"], &[]);
    // vendor/bin/drush does not exist before `composer install` made it: the
    // tool check runs right before each hook.
    assert_eq!(
        s.take_log(),
        ["composer install --no-dev @ ROOT", "drush deploy @ ROOT"]
    );
    let uploads = [
        ("web/sites/default/files/logo.png", "png"),
        ("web/sites/default/settings.local.php", "<?php $x = 1;"),
    ];
    s.deploy_with_uploads(&uploads, &[]);
    for kept in [
        "web/sites/default/files/logo.png",
        "web/sites/default/settings.local.php",
    ] {
        assert!(has(&s.w.root(), kept), "{kept} was preserved");
    }
    assert_eq!(s.effective()["public"], "web");
}

#[test]
fn generic_preset_is_the_plain_defaults() {
    let s = site(&skeletons::generic(), "preset: generic\n", true);
    let (out, _) = s.ok(&["deploy", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["result"], "deployed");
    assert!(v["files"]["added"].as_u64().unwrap() >= 4, "{v}");
    s.w.write_files(&[("src/New.php", "<?php\n")]);
    s.w.commit("new file");
    let (out, _) = s.ok(&["deploy", "--dry-run", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["result"], "dry-run");
    assert_eq!(v["added"], serde_json::json!(["src/New.php"]));
    s.ok(&["deploy"], &[]);
    assert!(s.take_log().is_empty());
    let e = s.effective();
    assert_eq!(e["public"], ".");
    assert!(strs(&e["user_content"]["preserve"]).is_empty());
    assert!(strs(&e["hooks"]["after_checkout"]).is_empty());
}

#[test]
fn missing_artisan_fails_saying_so_and_keeps_the_old_version() {
    let s = site(&skeletons::laravel(), "preset: laravel\n", true);
    s.ok(&["deploy"], &[]);
    std::fs::remove_file(s.w.repo.join("artisan")).unwrap();
    s.w.write_files(&[("resources/views/welcome.blade.php", "<h1>v2</h1>\n")]);
    s.w.commit("v2 without artisan");
    let err = s.fails(&["deploy"], &[]);
    assert!(
        err.contains("`artisan` is not in ROOT") && err.contains("php artisan migrate --force"),
        "{err}"
    );
    assert!(
        err.contains("optional"),
        "says how to make it optional: {err}"
    );
    assert_eq!(
        read(&s.w.link().join("resources/views/welcome.blade.php")),
        "<h1>v1</h1>\n"
    );
}

#[test]
fn missing_composer_fails_saying_so() {
    let s = site(&skeletons::laravel(), "preset: laravel\n", false);
    // A PATH without composer, even where a real one is installed: the fake
    // tools (no composer among them) and a directory holding only `sh`.
    let tools = s.w.tmp.path().join("tools-without-composer");
    std::fs::create_dir_all(&tools).unwrap();
    let sh = support::find_tool("sh").expect("sh is on PATH");
    std::os::unix::fs::symlink(sh, tools.join("sh")).unwrap();
    let path = format!("{}:{}", s.bin.display(), tools.display());
    let err = s.fails(&["deploy"], &[("PATH", &path)]);
    assert!(err.contains("`composer` is not installed"), "{err}");
    assert!(!s.w.link().exists(), "nothing went live");
}

#[test]
fn every_preset_value_can_be_overridden() {
    let yaml = "preset: laravel\npublic: htdocs\nuser_content:\n  exclude: []\nhooks:\n  after_checkout:\n    - \"? php artisan-missing migrate\"\n    - {run: vendor/bin/nope, optional: true}\n    - {run: php artisan config:cache}\n  after_switch: []\n  timeout: 1m\n";
    let s = site(&skeletons::laravel(), yaml, true);
    let (_, err) = s.ok(&["deploy"], &[]);
    assert_eq!(
        s.take_log(),
        ["php artisan config:cache @ ROOT"],
        "the user's list replaced the preset's"
    );
    assert!(
        err.contains("skipped optional `php artisan-missing migrate`"),
        "{err}"
    );
    assert!(err.contains("skipped optional `vendor/bin/nope`"), "{err}");
    let e = s.effective();
    assert_eq!(e["public"], "htdocs");
    assert!(strs(&e["user_content"]["exclude"]).is_empty());
    assert_eq!(
        strs(&e["user_content"]["preserve"])[0],
        ".env",
        "untouched keys keep the preset's value"
    );
    assert_eq!(e["hooks"]["timeout"], "1m");
    assert!(strs(&e["hooks"]["after_switch"]).is_empty());
    assert_eq!(
        strs(&e["hooks"]["in_snapshot"]),
        ["php artisan config:cache", "php artisan view:cache"],
        "a hook list not set keeps the preset's"
    );
    assert_eq!(
        strs(&e["hooks"]["after_checkout"]),
        [
            "? php artisan-missing migrate",
            "? vendor/bin/nope",
            "php artisan config:cache"
        ]
    );
    // The YAML form says the same, and is itself a loadable config.
    let (yaml_out, _) = s.ok(&["config", "--effective"], &[]);
    assert!(
        yaml_out.starts_with("# Effective configuration"),
        "{yaml_out}"
    );
    assert!(yaml_out.contains("public: htdocs"), "{yaml_out}");
    std::fs::write(&s.w.config, &yaml_out).unwrap();
    let (again, _) = s.ok(&["config", "--effective"], &[]);
    assert_eq!(
        again.lines().skip(1).collect::<Vec<_>>(),
        yaml_out.lines().skip(1).collect::<Vec<_>>()
    );
}

#[test]
fn config_errors_still_name_key_and_line_with_a_preset() {
    let s = site(
        &skeletons::laravel(),
        "preset: laravel\nuser_content:\n  preserv: ['.env']\n",
        true,
    );
    let err = s.fails(&["config"], &[]);
    assert!(err.contains("preserv") && err.contains("line 8"), "{err}");
    s.w.set_config("preset: larvel\n");
    let err = s.fails(&["config"], &[]);
    assert!(
        err.contains("larvel") && err.contains("laravel") && err.contains("line 6"),
        "{err}"
    );
    s.w.set_config("preset: laravel\nhooks:\n  after_checkout:\n    - {run: x, optonal: true}\n");
    let err = s.fails(&["config"], &[]);
    assert!(
        err.contains("after_checkout") || err.contains("hook"),
        "{err}"
    );
}

#[test]
fn effective_config_masks_secrets() {
    let yaml = "preset: wordpress\ntrigger:\n  listen: 127.0.0.1:9810\n  token: tok-SECRET1\n  github_secret: gh-SECRET2\n  gitlab_token: gl-SECRET3\n  metrics_token: mt-SECRET7\nnotify:\n  webhook: https://hooks.example.com/services/x?token=SECRET4&channel=ops\nhealth_check:\n  url: http://admin:SECRET5@127.0.0.1/health\n";
    let s = site(&skeletons::wordpress(), yaml, true);
    s.w.set_config(yaml);
    // A repository URL with credentials (never fetched: config only).
    let text = read(&s.w.config).replacen(
        &format!("repo: {}", s.w.repo.display()),
        "repo: https://deploy:SECRET6@git.example.com/acme/site.git",
        1,
    );
    std::fs::write(&s.w.config, text).unwrap();
    for args in [
        &["config", "--effective"][..],
        &["config", "--effective", "--json"][..],
        &["config", "--json"][..],
    ] {
        let (out, _) = s.ok(args, &[]);
        assert!(!out.contains("SECRET"), "{args:?} leaks a secret:\n{out}");
        assert!(out.contains("********"), "{out}");
        assert!(
            out.contains("https://deploy:********@git.example.com/acme/site.git"),
            "{out}"
        );
        assert!(out.contains("channel=ops"), "{out}");
        assert!(
            out.contains("127.0.0.1:9810"),
            "non-secrets are shown: {out}"
        );
    }
    let e = s.effective();
    assert_eq!(e["trigger"]["token"], "********");
    assert_eq!(e["trigger"]["github_secret"], "********");
    assert_eq!(e["trigger"]["gitlab_token"], "********");
    assert_eq!(e["trigger"]["metrics_token"], "********");
    // `config` without flags checks and says so, without printing values.
    let (out, _) = s.ok(&["config"], &[]);
    assert!(
        out.contains("OK") && out.contains("preset wordpress") && !out.contains("SECRET"),
        "{out}"
    );
}

#[test]
fn status_is_aligned_coloured_only_on_a_terminal_and_honours_no_color() {
    let s = site(&skeletons::laravel(), "preset: laravel\n", true);
    s.ok(&["deploy"], &[]);
    let (out, _) = s.ok(&["status"], &[]);
    assert!(!out.contains('\x1b'), "no colour into a pipe:\n{out}");
    for label in [
        "webroot",
        "live",
        "commit",
        "branch",
        "deploying",
        "last",
        "auto",
        "snapshots",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label} line:\n{out}"));
        assert_eq!(
            line.as_bytes()[10],
            b' ',
            "values start in column 12: {line:?}"
        );
        assert_ne!(
            line.as_bytes()[11],
            b' ',
            "values start in column 12: {line:?}"
        );
    }
    assert!(
        out.contains("initial"),
        "the commit's subject is shown:\n{out}"
    );
    assert!(
        out.contains("(deployed)") && out.contains("success"),
        "{out}"
    );
    // On a terminal (util-linux `script` gives one): colour, unless NO_COLOR is set.
    let Some(script) = support::require_tool("script") else {
        return;
    };
    let on_tty = |no_color: bool| {
        let cmd = format!(
            "{} -c {} status",
            support::bin().display(),
            s.w.config.display()
        );
        let mut c = Command::new(&script);
        c.args(["-qec", &cmd, "/dev/null"])
            .env_remove("NO_COLOR")
            .env("TERM", "xterm");
        if no_color {
            c.env("NO_COLOR", "1");
        }
        String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned()
    };
    let coloured = on_tty(false);
    assert!(
        coloured.contains("\x1b[32mROOT\x1b[0m"),
        "live ROOT in green on a terminal:\n{coloured:?}"
    );
    let plain = on_tty(true);
    assert!(
        plain.contains("ROOT") && !plain.contains('\x1b'),
        "NO_COLOR turns colour off:\n{plain:?}"
    );
}

#[test]
fn deploy_on_a_terminal_shows_a_spinner_per_step_and_one_summary_line() {
    let Some(script) = support::require_tool("script") else {
        return;
    };
    let s = site(&skeletons::laravel(), "preset: laravel\n", true);
    let path = format!(
        "{}:{}",
        s.bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cmd = format!(
        "{} -c {} deploy",
        support::bin().display(),
        s.w.config.display()
    );
    let out = Command::new(script)
        .args(["-qec", &cmd, "/dev/null"])
        .env("PATH", path)
        .env("HOOK_LOG", &s.log)
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // indicatif redraws the spinner line in place (\r + clear line), naming the step.
    assert!(text.contains("\x1b[2K"), "a spinner was drawn:\n{text:?}");
    assert!(
        text.contains(" hooks "),
        "the spinner names the running step:\n{text:?}"
    );
    let summaries: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("deployed ") && l.contains("files changed"))
        .collect();
    assert_eq!(summaries.len(), 1, "one summary line:\n{text:?}");
    // Without a terminal: no spinner at all.
    let out = s.run(&["deploy", "--force"], &[]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("\x1b[2K"));
}
