//! Apache: a `<VirtualHost>` serves the document root through the link, its
//! MPM fits its PHP handler, and PHP runs with the settings that make a path
//! through the link safe (no realpath cache, OPcache keyed on real paths),
//! read over FastCGI from php-fpm or from the host's `php_admin_value`s for
//! mod_php; with mod_php, something clears its OPcache before the switch back.

use std::path::Path;

use crate::apache::{self as web, Handler, PHP_SETTINGS};
use crate::config::Config;
use crate::nginx::document_root;
use crate::opcache;
use crate::php_fpm::Endpoint;

use super::check::Check;

/// What the Apache checks found: the checks, and whether the site runs mod_php
/// (then php-fpm is not what serves it, and its checks are skipped).
pub(super) struct Found {
    pub checks: Vec<Check>,
    pub mod_php: bool,
}

/// Apache's configuration (a file, or the running server's).
pub(super) fn check_apache(cfg: &Config, conf_file: Option<&Path>) -> Found {
    let conf = match web::load(conf_file) {
        Ok(c) => c,
        Err(e) => {
            let fix = "run doctor where Apache runs (as root), or pass --apache-conf FILE";
            return Found {
                checks: vec![Check::fail(
                    false,
                    format!("Apache configuration not checked: {e:#}"),
                    fix,
                )],
                mod_php: false,
            };
        }
    };
    let mut checks: Vec<Check> = conf
        .problems
        .iter()
        .map(|p| Check::fail(false, format!("{}: {p}; the checks below cannot see what it holds", conf.source), "make it readable for the user running doctor (run it as root), or pass --apache-conf FILE"))
        .collect();
    let mut links = vec![cfg.webroot.join(&cfg.link)];
    if let Ok(w) = cfg.webroot.canonicalize() {
        links.push(w.join(&cfg.link));
    }
    let sites: Vec<web::Site> = web::sites(&conf.directives)
        .into_iter()
        .filter(|s| {
            links
                .iter()
                .any(|l| Path::new(s.document_root.trim_end_matches('/')).starts_with(l))
        })
        .collect();
    if sites.is_empty() {
        checks.push(Check::fail(
            true,
            format!("{}: no <VirtualHost> has its DocumentRoot under the link {} (Apache must serve {})", conf.source, links[0].display(), document_root(cfg).display()),
            "set `DocumentRoot` (and its <Directory>) through the link; `rootswap apache` prints a complete <VirtualHost>",
        ));
        return Found {
            checks,
            mod_php: false,
        };
    }
    let mpm = web::parse::modules(&conf)
        .into_iter()
        .find(|m| m.starts_with("mpm_"));
    let mut mod_php = false;
    for s in &sites {
        let place = format!(
            "{}: <VirtualHost {}> (DocumentRoot {})",
            conf.source, s.addresses, s.document_root
        );
        checks.push(Check::pass(format!("{place} serves through the link")));
        mod_php |= s.handler == Handler::ModPhp;
        checks.extend(check_handler(cfg, &place, s, mpm.as_deref()));
    }
    Found { checks, mod_php }
}

/// The MPM and the PHP handler of one site, and the PHP settings it needs.
fn check_handler(cfg: &Config, place: &str, s: &web::Site, mpm: Option<&str>) -> Vec<Check> {
    let mpm_s = mpm.unwrap_or("MPM not loaded in this file");
    match &s.handler {
        Handler::None => vec![Check::fail(true, format!("{place}: no PHP handler (SetHandler proxy:… for php-fpm, or application/x-httpd-php for mod_php)"), "`rootswap apache --fastcgi ADDR` or `rootswap apache --mod-php` prints one")],
        Handler::ModPhp => {
            let mut out = vec![if matches!(mpm, Some("mpm_event_module" | "mpm_worker_module")) {
                Check::fail(true, format!("{place}: mod_php under {mpm_s}: Debian's mod_php needs mpm_prefork"), "a2dismod mpm_event && a2enmod mpm_prefork, or run PHP in php-fpm (`rootswap apache --fastcgi ADDR`)")
            } else {
                Check::pass(format!("{place}: PHP runs in Apache (mod_php, {mpm_s})"))
            }];
            out.push(settings_check(place, "the host's php_admin_value", |k| s.php_admin.get(k).cloned()));
            out.push(check_mod_php_reset(cfg));
            out
        }
        Handler::Fpm(h) => {
            let mut out = vec![Check::pass(format!("{place}: PHP runs in php-fpm ({h}, {mpm_s})"))];
            out.push(fpm_settings(cfg, place, h));
            out
        }
    }
}

/// php-fpm's address in a `SetHandler "proxy:…"`.
fn fpm_endpoint(handler: &str) -> Option<Endpoint> {
    if let Some(rest) = handler.strip_prefix("proxy:unix:") {
        return Some(Endpoint::Unix(rest.split('|').next()?.into()));
    }
    let hostport = handler.strip_prefix("proxy:fcgi://")?.split('/').next()?;
    Endpoint::parse(hostport).ok()
}

/// php-fpm's settings, asked over FastCGI.
fn fpm_settings(cfg: &Config, place: &str, handler: &str) -> Check {
    let Some(ep) = fpm_endpoint(handler) else {
        return Check::fail(false, format!("{place}: cannot tell php-fpm's address from `{handler}`; its PHP settings are not checked"), "write SetHandler \"proxy:unix:/run/php/php8.2-fpm.sock|fcgi://localhost\"");
    };
    match opcache::run(&ep, &opcache::script_dir(cfg), &[], false) {
        Ok(a) => settings_check(place, &format!("php-fpm at {ep}"), |k| a.ini.get(k).cloned().flatten()),
        Err(e) => Check::fail(true, format!("{place}: php-fpm at {ep} did not answer, so its PHP settings are unknown: {e:#}"), "start php-fpm, or check that its pool user can read opcache.script_dir (default: the webroot)"),
    }
}

/// [`PHP_SETTINGS`] as `get` reads them.
fn settings_check(place: &str, from: &str, get: impl Fn(&str) -> Option<String>) -> Check {
    let wrong: Vec<String> = PHP_SETTINGS
        .iter()
        .filter(|(k, v)| {
            !get(k).is_some_and(|got| got.trim() == *v || (*v == "1" && opcache::ini_true(&got)))
        })
        .map(|(k, v)| {
            format!(
                "{k} is {} (needs {v})",
                get(k).unwrap_or_else(|| "not set".into())
            )
        })
        .collect();
    if wrong.is_empty() {
        let set: Vec<String> = PHP_SETTINGS
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        return Check::pass(format!("{place}: {from}: {}", set.join(", ")));
    }
    let fix = if from.starts_with("php-fpm") {
        PHP_SETTINGS
            .iter()
            .map(|(k, v)| format!("php_admin_value[{k}] = {v}"))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n(in the php-fpm pool; `rootswap apache` explains them)"
    } else {
        PHP_SETTINGS
            .iter()
            .map(|(k, v)| format!("php_admin_value {k} {v}"))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n(in the <VirtualHost>; `rootswap apache --mod-php` prints them)"
    };
    Check::fail(
        true,
        format!("{place}: {from}: {}: Apache hands PHP the link's path, so each PHP process keeps the old tree in its realpath cache and OPcache serves it under the link's name after a switch", wrong.join(", ")),
        fix,
    )
}

/// mod_php's OPcache lives in Apache: rootswap clears it through the host (`opcache.http`).
fn check_mod_php_reset(cfg: &Config) -> Check {
    match &cfg.opcache.http {
        Some(url) => Check::pass(format!("mod_php: rootswap clears Apache's OPcache through {url}{} (opcache.http)", opcache::HTTP_PREFIX)),
        None => Check::fail(
            true,
            "mod_php: opcache.http is not set, and rootswap cannot reach OPcache inside Apache over FastCGI: ROOT's old code stays cached after a deploy",
            "opcache:\n  http: http://127.0.0.1:80   # an address of this host's <VirtualHost>; `rootswap apache --mod-php` maps the script for 127.0.0.1",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn php_fpm_addresses_from_set_handler() {
        assert_eq!(
            fpm_endpoint("proxy:unix:/run/php/x.sock|fcgi://localhost"),
            Some(Endpoint::Unix("/run/php/x.sock".into()))
        );
        assert_eq!(
            fpm_endpoint("proxy:fcgi://127.0.0.1:9000/"),
            Some(Endpoint::Tcp("127.0.0.1:9000".into()))
        );
        assert_eq!(fpm_endpoint("application/x-httpd-php"), None);
    }

    #[test]
    fn the_settings_check_names_what_is_missing() {
        let ok = settings_check("here", "the host", |k| {
            PHP_SETTINGS
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        });
        assert!(ok.ok, "{}", ok.what);
        let on = settings_check("here", "the host", |k| {
            Some(
                if k == "opcache.revalidate_path" {
                    "On"
                } else {
                    "0"
                }
                .to_string(),
            )
        });
        assert!(on.ok, "{}", on.what);
        let bad = settings_check("here", "php-fpm at unix:/x", |_| None);
        assert!(!bad.ok && bad.fatal);
        assert!(
            bad.what
                .contains("realpath_cache_size is not set (needs 0)"),
            "{}",
            bad.what
        );
        assert!(bad
            .fix
            .unwrap_or_default()
            .contains("php_admin_value[opcache.revalidate_path] = 1"));
    }
}
