//! `init` and `doctor` recognise the web server that serves the site, from
//! a directory laid out like `/` (`proc/PID/comm`, `etc/…`, `usr/…`) that
//! `ROOTSWAP_WEBSERVER_SEARCH_ROOT` points them at: init gives that
//! server's advice and names the command that prints its configuration,
//! doctor runs that server's checks (for Caddy, on its real `caddy adapt`).

use std::path::Path;
use std::process::Output;

use crate::support::{find_tool, skip_or_fail, World};

const ENV: &str = "ROOTSWAP_WEBSERVER_SEARCH_ROOT";

/// Writes `text` to `root/rel`, creating directories.
fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// `rootswap -c <w.config> args` looking for web servers under `system`.
fn run_in(w: &World, system: &Path, args: &[&str]) -> Output {
    crate::support::rootswap(&w.config)
        .args(args)
        .env(ENV, system)
        .output()
        .expect("rootswap runs")
}

/// `init` into a fresh config file of `w`, looking under `system`; its stdout.
fn init(w: &World, system: &Path, more: &[&str]) -> String {
    let cfg = w.tmp.path().join("init.yaml");
    let mut args = vec!["init", "--force"];
    let (webroot, repo) = (w.webroot.to_string_lossy(), w.repo.to_string_lossy());
    args.extend(["--webroot", &webroot, "--repo", &repo]);
    args.extend_from_slice(more);
    let out = crate::support::rootswap(&cfg)
        .args(&args)
        .env(ENV, system)
        .output()
        .expect("rootswap runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "init failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn init_names_the_server_whose_configuration_names_the_site() {
    let w = World::new(&[("index.php", "<?php echo 1;")], "");
    let sys = w.tmp.path().join("system");
    // nginx runs (for another site); Caddy's configuration names this one.
    put(&sys, "proc/101/comm", "nginx\n");
    put(
        &sys,
        "etc/nginx/nginx.conf",
        "http { server { root /srv/other/current; } }\n",
    );
    put(&sys, "usr/sbin/nginx", "");
    put(&sys, "usr/bin/caddy", "");
    let site = format!(":80 {{\n\troot * {}/current\n}}\n", w.webroot.display());
    put(&sys, "etc/caddy/Caddyfile", &site);
    let out = init(&w, &sys, &[]);
    assert!(
        out.contains("web server: Caddy (/etc/caddy/Caddyfile names the webroot"),
        "{out}"
    );
    assert!(
        out.contains("run `rootswap caddy` to get the site block"),
        "{out}"
    );
    assert!(
        out.contains(&format!("root * {}/current", w.webroot.display()))
            && out.contains("resolve_root_symlink"),
        "{out}"
    );
    assert!(
        !out.contains("fastcgi_param"),
        "nginx's advice for a Caddy site: {out}"
    );
    // Control: --server wins over what was found.
    let out = init(&w, &sys, &["--server", "nginx"]);
    assert!(
        out.contains("run `rootswap nginx` to get the server block"),
        "{out}"
    );
    assert!(!out.contains("rootswap caddy"), "{out}");
}

#[test]
fn init_lists_servers_it_cannot_choose_between_and_names_litespeed() {
    let w = World::new(&[("index.php", "<?php echo 1;")], "");
    let sys = w.tmp.path().join("system");
    put(&sys, "etc/nginx/nginx.conf", "");
    put(&sys, "etc/caddy/Caddyfile", "");
    let out = init(&w, &sys, &[]);
    assert!(
        out.contains("web servers found: nginx (/etc/nginx/nginx.conf exists); Caddy (/etc/caddy/Caddyfile exists); the advice is for nginx (pass --server to choose another)"),
        "{out}"
    );
    // A running Caddy settles it.
    put(&sys, "proc/7/comm", "caddy\n");
    let out = init(&w, &sys, &[]);
    assert!(out.contains("web server: Caddy (`caddy` runs"), "{out}");
    // LiteSpeed: named, with the manual set-up.
    let lsws = w.tmp.path().join("lsws");
    put(&lsws, "usr/local/lsws/bin/openlitespeed", "");
    put(&lsws, "proc/9/comm", "openlitespeed\n");
    let out = init(&w, &lsws, &[]);
    assert!(out.contains("web server: LiteSpeed/OpenLiteSpeed"), "{out}");
    assert!(out.contains("docs/webservers.md#litespeed"), "{out}");
    // Nothing found: nginx's advice, and how to choose.
    let out = init(&w, &w.tmp.path().join("empty"), &[]);
    assert!(
        out.contains("web server: none found on this machine"),
        "{out}"
    );
    assert!(
        out.contains("fastcgi_param SCRIPT_FILENAME $realpath_root"),
        "{out}"
    );
}

#[test]
fn doctor_checks_the_caddyfile_of_the_caddy_it_finds() {
    if find_tool("caddy").is_none() {
        return skip_or_fail("`caddy` is not installed (apt-get install caddy)");
    }
    let w = World::new(&[("public/index.php", "<?php echo 1;")], "public: public\n");
    w.ok(&["deploy"]);
    let sys = w.tmp.path().join("system");
    put(&sys, "proc/55/comm", "caddy\n");
    put(&sys, "usr/sbin/nginx", "");
    let block = w.ok(&["caddy", "--listen", "127.0.0.1:8080"]);
    put(
        &sys,
        "etc/caddy/Caddyfile",
        &format!("{{\n\tadmin off\n}}\n{block}"),
    );
    let out = run_in(&w, &sys, &["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("✓ web server: Caddy (/etc/caddy/Caddyfile names the webroot"),
        "{text}"
    );
    assert!(text.contains("resolve_root_symlink is on"), "{text}");
    assert!(
        !text.contains("nginx configuration") && !text.contains("$realpath_root"),
        "{text}"
    );
    // The same Caddyfile without the fix: a problem that causes stale code, with the fix.
    let naive: String = block
        .lines()
        .filter(|l| l.trim() != "resolve_root_symlink")
        .map(|l| format!("{l}\n"))
        .collect();
    put(&sys, "etc/caddy/Caddyfile", &naive);
    let out = run_in(&w, &sys, &["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("✗") && text.contains("resolve_root_symlink is off"),
        "{text}"
    );
    // A root past the link (ROOT itself) is named, with the root to set.
    let past = block.replace("/current/public", "/ROOT/public");
    put(&sys, "etc/caddy/Caddyfile", &past);
    let text = String::from_utf8_lossy(&run_in(&w, &sys, &["doctor"]).stdout).into_owned();
    assert!(
        text.contains("no site passes PHP to php-fpm with its root under the link")
            && text.contains(&format!(
                "root * {}/current/public",
                w.webroot.canonicalize().unwrap().display()
            )),
        "{text}"
    );
    // A Caddyfile Caddy cannot read: said, not a crash.
    put(&sys, "etc/caddy/Caddyfile", ":80 {\n\tnot_a_directive\n}\n");
    let text = String::from_utf8_lossy(&run_in(&w, &sys, &["doctor"]).stdout).into_owned();
    assert!(
        text.contains("Caddy configuration not checked") && text.contains("caddy adapt"),
        "{text}"
    );
}

#[test]
fn rootswap_caddy_refuses_bad_options_with_one_message() {
    let w = World::new(&[("index.php", "<?php echo 1;")], "");
    let err = w.fails(&["caddy", "--listen", "127.0.0.1:http"]);
    assert!(
        err.contains("--listen `127.0.0.1:http`") && err.contains("PORT or ADDRESS:PORT"),
        "{err}"
    );
    let err = w.fails(&["caddy", "--fastcgi", "php-fpm"]);
    assert!(err.contains("`php-fpm` is not a php-fpm address"), "{err}");
    // Control: the defaults print a block through the link.
    let out = w.ok(&["caddy"]);
    assert!(
        out.contains("http://:80 {")
            && out.contains(&format!(
                "{}/current",
                w.webroot.canonicalize().unwrap().display()
            )),
        "{out}"
    );
}

#[test]
fn rootswap_apache_refuses_bad_options_with_one_message() {
    let w = World::new(&[("index.php", "<?php echo 1;")], "");
    let err = w.fails(&["apache", "--listen", "127.0.0.1:http"]);
    assert!(
        err.contains("--listen `127.0.0.1:http`") && err.contains("PORT or ADDRESS:PORT"),
        "{err}"
    );
    let err = w.fails(&["apache", "--server-name", "a\n</VirtualHost>"]);
    assert!(
        err.contains("--server-name") && err.contains("one host name"),
        "{err}"
    );
    // Control: the defaults print a host through the link.
    let out = w.ok(&["apache"]);
    assert!(
        out.contains("<VirtualHost")
            && out.contains(&format!(
                "{}/current",
                w.webroot.canonicalize().unwrap().display()
            )),
        "{out}"
    );
}
