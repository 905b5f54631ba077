use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use super::*;

fn parse(text: &str) -> Result<Config> {
    Config::parse(text, Path::new("/etc/rootswap/test.yaml"))
}

#[test]
fn defaults_fill_in() {
    let c = parse("webroot: /srv/w\nsource:\n  repo: /srv/app.git\n").unwrap();
    assert_eq!(c.root, "ROOT");
    assert_eq!(c.link, "current");
    assert_eq!(c.source.branch, "main");
    assert_eq!(c.snapshots.keep, 1);
    assert_eq!(c.drain, Drain::Fixed(Duration::from_secs(2)));
    assert_eq!(c.state_path(), PathBuf::from("/srv/w/.rootswap"));
}

#[test]
fn unknown_key_names_key_and_line() {
    let err = parse("webroot: /srv/w\nsource:\n  repo: x\n  brnach: main\n").unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("brnach"), "{msg}");
    assert!(msg.contains("line 4"), "{msg}");
    assert!(msg.contains("test.yaml"), "{msg}");
}

#[test]
fn missing_webroot_is_named() {
    let msg = format!("{:#}", parse("source:\n  repo: x\n").unwrap_err());
    assert!(msg.contains("webroot"), "{msg}");
}

#[test]
fn durations() {
    let c = parse("webroot: /w\ndrain: 500ms\nhooks:\n  timeout: 1m\nsource: {repo: x}\n").unwrap();
    assert_eq!(c.drain, Drain::Fixed(Duration::from_millis(500)));
    assert_eq!(c.hooks.timeout, Duration::from_secs(60));
    let c = parse("webroot: /w\ndrain: auto\nsource: {repo: x}\n").unwrap();
    assert_eq!(c.drain, Drain::Auto);
    assert_eq!(c.hooks.timeout, Duration::from_secs(600), "default");
    let msg = format!(
        "{:#}",
        parse("webroot: /w\ndrain: soon\nsource: {repo: x}\n").unwrap_err()
    );
    assert!(msg.contains("soon") && msg.contains("line 2"), "{msg}");
}

#[test]
fn env_expansion() {
    std::env::set_var("ROOTSWAP_TEST_REPO", "/srv/repo.git");
    let c = parse("webroot: /w\nsource: {repo: '${ROOTSWAP_TEST_REPO}'}\n").unwrap();
    assert_eq!(c.source.repo, "/srv/repo.git");
    let msg = format!(
        "{:#}",
        parse("webroot: /w\nsource: {repo: '${ROOTSWAP_NOPE_NOPE}'}\n").unwrap_err()
    );
    assert!(
        msg.contains("ROOTSWAP_NOPE_NOPE") && msg.contains("source.repo"),
        "{msg}"
    );
}

#[test]
fn every_hook_list_is_left_for_the_shell() {
    for key in [
        "after_checkout",
        "before_switch",
        "in_snapshot",
        "after_switch",
        "once",
    ] {
        let r = parse(&format!(
            "webroot: /w\nsource: {{repo: x}}\nhooks: {{{key}: ['echo ${{ROOTSWAP_UNSET_IN_TESTS}}']}}\n"
        ));
        // `once` needs a fleet: that may be the complaint, never the variable.
        if let Err(e) = r {
            let msg = format!("{e:#}");
            assert!(!msg.contains("ROOTSWAP_UNSET_IN_TESTS"), "{key}: {msg}");
        }
    }
}

#[test]
fn env_expansion_covers_every_string_but_hook_commands() {
    std::env::set_var("ROOTSWAP_TEST_PORT", "9811");
    std::env::set_var("ROOTSWAP_TEST_HOST", "127.0.0.1");
    let c = parse(
        "webroot: /w\nsource: {repo: x}\ntrigger: {listen: '${ROOTSWAP_TEST_HOST}:${ROOTSWAP_TEST_PORT}'}\n\
         health_check: {url: 'http://${ROOTSWAP_TEST_HOST}/h.php'}\n\
         user_content: {preserve: ['${ROOTSWAP_TEST_PORT}/**']}\n\
         hooks: {after_checkout: ['echo ${ROOTSWAP_COMMIT}'], env: {A: '${ROOTSWAP_TEST_PORT}'}}\n",
    )
    .unwrap();
    assert_eq!(c.trigger.listen.as_deref(), Some("127.0.0.1:9811"));
    assert_eq!(c.health_check.unwrap().url, "http://127.0.0.1/h.php");
    assert_eq!(c.user_content.preserve, vec!["9811/**"]);
    assert_eq!(c.hooks.env["A"], "9811");
    // The shell expands hook commands when it runs them.
    assert_eq!(c.hooks.after_checkout, vec!["echo ${ROOTSWAP_COMMIT}"]);
    let msg = format!(
        "{:#}",
        parse("webroot: /w\nsource: {repo: x}\ntrigger: {listen: '${ROOTSWAP_NOPE_LISTEN}'}\n")
            .unwrap_err()
    );
    assert!(
        msg.contains("ROOTSWAP_NOPE_LISTEN") && msg.contains("trigger.listen"),
        "{msg}"
    );
}

#[test]
fn state_dir_inside_root_is_refused() {
    let msg = format!(
        "{:#}",
        parse("webroot: /w\nstate_dir: ROOT/.state\nsource: {repo: x}\n").unwrap_err()
    );
    assert!(msg.contains("inside ROOT"), "{msg}");
}

#[test]
fn a_layout_that_points_at_itself_is_refused_naming_both_keys() {
    for (yaml, expect) in [
        (
            "link: .rootswap\n",
            &[
                "`link: .rootswap`",
                "is the same directory as `state_dir: .rootswap`",
                "set `link`",
            ][..],
        ),
        (
            "state_dir: current/.state\n",
            &[
                "`link: current`",
                "holds `state_dir: current/.state`",
                "set `state_dir`",
            ],
        ),
        (
            "link: ROOT_live\n",
            &["`link: ROOT_live`", "form of a snapshot name", "`current`"],
        ),
        (
            "state_dir: ROOT_state\n",
            &[
                "`state_dir: ROOT_state`",
                "form of a snapshot name",
                "`.rootswap`",
            ],
        ),
        (
            "state_dir: shared\n",
            &[
                "`state_dir: shared`",
                "`user_content.shared_dir: shared`",
                "set `state_dir`",
            ],
        ),
        (
            "user_content: {shared_dir: .rootswap/files}\n",
            &[
                "holds `user_content.shared_dir: .rootswap/files`",
                "set `user_content.shared_dir`",
            ],
        ),
        (
            "state_dir: /\n",
            &["`state_dir: /`", "is the webroot or a directory above it"],
        ),
        (
            "state_dir: .\n",
            &["`state_dir: .`", "is the webroot or a directory above it"],
        ),
    ] {
        let text = format!("webroot: /w\nsource: {{repo: x}}\n{yaml}");
        let msg = format!("{:#}", parse(&text).unwrap_err());
        for e in expect {
            assert!(msg.contains(e), "{yaml}: expected {e:?} in {msg}");
        }
    }
    for ok in [
        "link: live\n",
        "state_dir: /var/lib/rootswap/site\n",
        "root: app\nlink: www\n",
    ] {
        let text = format!("webroot: /w\nsource: {{repo: x}}\n{ok}");
        assert!(parse(&text).is_ok(), "{ok}");
    }
}

#[test]
fn the_example_config_is_valid() {
    let c = parse(include_str!("../../config.example.yaml")).unwrap();
    assert_eq!(c.webroot, PathBuf::from("/var/www/webroot"));
    assert!(
        c.user_content.preserve.is_empty(),
        "the example shows defaults"
    );
}

#[test]
fn fleet_defaults_and_errors() {
    let base = "webroot: /w\nsource: {repo: x}\n";
    let c = parse(base).unwrap();
    assert!(c.fleet.is_none(), "no fleet section: single node");
    let c = parse(&format!(
        "{base}fleet: {{etcd: ['http://127.0.0.1:2379'], site: shop, node: web1}}\n"
    ))
    .unwrap();
    let f = c.fleet.unwrap();
    assert_eq!(f.lease, Duration::from_secs(10));
    assert_eq!(f.prepare_timeout, Duration::from_secs(600));
    assert_eq!(f.switch_delay, Duration::from_millis(200));
    assert_eq!(f.node, "web1");
    let c = parse(&format!(
        "{base}fleet: {{etcd: ['http://127.0.0.1:2379'], site: shop}}\n"
    ))
    .unwrap();
    assert!(!c.fleet.unwrap().node.is_empty(), "host name by default");
    for (bad, want) in [
        ("{etcd: [], site: shop}", "no endpoint"),
        ("{etcd: ['127.0.0.1'], site: shop}", "client URL"),
        ("{etcd: ['http://a:1'], site: a/b}", "without '/'"),
        ("{etcd: ['http://a:1'], site: s, node: 'x y'}", "node"),
        (
            "{etcd: ['http://a:1'], site: s, lease: 100ms}",
            "granularity",
        ),
        ("{etcd: ['http://a:1'], site: s, user: u}", "together"),
        (
            "{etcd: ['http://a:1'], site: s, lease: 2s, switch_delay: 2s}",
            "`switch_delay: 2s` is not shorter than `lease`",
        ),
        (
            "{etcd: ['http://a:1'], site: s, ca_file: /nope/ca.pem}",
            "/nope/ca.pem",
        ),
        ("{etcd: ['http://a:1'], site: s, sight: x}", "sight"),
    ] {
        let msg = format!("{:#}", parse(&format!("{base}fleet: {bad}\n")).unwrap_err());
        assert!(msg.contains(want), "{bad}: {msg}");
    }
    let msg = format!(
        "{:#}",
        parse(&format!("{base}hooks: {{once: ['php artisan migrate']}}\n")).unwrap_err()
    );
    assert!(msg.contains("needs a `fleet:`"), "{msg}");
}

#[test]
fn opcache_http_must_be_an_http_url() {
    for bad in [
        "ftp://127.0.0.1",
        "127.0.0.1:80",
        "http://",
        "https://127.0.0.1",
    ] {
        let text = format!("webroot: /w\nsource: {{repo: x}}\nopcache: {{http: '{bad}'}}\n");
        let msg = format!("{:#}", parse(&text).unwrap_err());
        assert!(
            msg.contains("`opcache.http:") && msg.contains("http://127.0.0.1:80"),
            "{bad}: {msg}"
        );
    }
    assert!(
        parse("webroot: /w\nsource: {repo: x}\nopcache: {http: 'http://127.0.0.1:8081'}\n").is_ok()
    );
}
