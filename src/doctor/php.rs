//! php-fpm: reachable over FastCGI, its OPcache settings, and the status
//! page `drain: auto` reads.

use crate::config::{Config, Drain};
use crate::opcache::{self, Answer};
use crate::php_fpm::{self, Endpoint, Located};

use super::check::Check;

/// php-fpm found, running rootswap's script, its OPcache settings, and the
/// status page when `drain: auto` needs it.
pub(super) fn check_php(fpm: anyhow::Result<Located>, cfg: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(ep) = check_found(fpm, &mut out) else {
        return out;
    };
    let a = match opcache::run(&ep, &opcache::script_dir(cfg), &[], false) {
        Ok(a) => a,
        Err(e) => {
            out.push(Check::fail(true, format!("php-fpm at {ep} did not run rootswap's OPcache script: {e:#}"), "check that php-fpm runs and listens there, and that its pool user can read opcache.script_dir (default: the webroot)"));
            return out;
        }
    };
    out.push(Check::pass(format!(
        "php-fpm at {ep} answers FastCGI (PHP {}, {}{}) and can read rootswap's script in {}",
        a.php,
        a.sapi,
        a.user
            .as_deref()
            .map(|u| format!(", user {u}"))
            .unwrap_or_default(),
        opcache::script_dir(cfg).display()
    )));
    out.push(check_cache_settings(&a, &ep));
    out.extend(check_restrict_api(cfg, &a));
    if cfg.drain == Drain::Auto {
        out.push(check_status_page(cfg, &ep));
    }
    out
}

/// php-fpm's address: configured, or found (said in `out`); `None` (with
/// the failure in `out`) when there is none.
fn check_found(fpm: anyhow::Result<Located>, out: &mut Vec<Check>) -> Option<Endpoint> {
    match fpm {
        Ok(Located::Configured(ep)) => Some(ep),
        Ok(Located::Found(ep, how)) => {
            out.push(Check::pass(format!(
                "opcache.fastcgi is not set; php-fpm found at {ep} ({how}): deploys clear its OPcache there"
            )));
            Some(ep)
        }
        Ok(Located::NotFound(why)) => {
            out.push(Check::fail(
                true,
                format!("opcache.fastcgi is not set and {why}: rootswap cannot clear php-fpm's OPcache, and ROOT's old code stays cached after a deploy"),
                "set opcache.fastcgi to php-fpm's address in rootswap.yaml, e.g. unix:/run/php/php8.2-fpm.sock (the fastcgi_pass of your nginx site)",
            ));
            None
        }
        Err(e) => {
            out.push(Check::fail(
                true,
                format!("opcache.fastcgi: {e:#}"),
                "write unix:/path/to/php-fpm.sock or tcp:127.0.0.1:9000",
            ));
            None
        }
    }
}

/// What php-fpm's OPcache settings mean for stale code.
fn check_cache_settings(a: &Answer, ep: &Endpoint) -> Check {
    let vt = a.ini("opcache.validate_timestamps");
    let freq = a.ini("opcache.revalidate_freq");
    let settings = format!(
        "opcache.enable={} validate_timestamps={vt} revalidate_freq={freq}",
        a.ini("opcache.enable")
    );
    if !a.cache_on() {
        Check::pass(format!("OPcache is off in php-fpm ({settings}): nothing can be served stale, but PHP compiles every file on every request"))
    } else if opcache::ini_true(vt) {
        Check::pass(format!(
            "OPcache: {settings}: php-fpm re-checks each file at most every {freq} s, which alone serves old code and mixes versions for that long; rootswap's reset before and after the switch back covers it (validate_timestamps=0 is faster and safe with rootswap)"
        ))
    } else {
        Check::pass(format!("OPcache: {settings}: opcache.validate_timestamps is 0, so php-fpm serves stale code until its cache is reset (guaranteed without a reset); rootswap resets it over FastCGI at {ep} before and after the switch back"))
    }
}

/// `opcache.restrict_api` must allow rootswap's script to reset the cache.
fn check_restrict_api(cfg: &Config, a: &Answer) -> Option<Check> {
    let restrict = a.ini("opcache.restrict_api");
    if a.cache_on() && !restrict.is_empty() && !opcache::script_dir(cfg).starts_with(restrict) {
        return Some(Check::fail(
            true,
            format!("opcache.restrict_api={restrict}: rootswap's script in {} may not call opcache_reset()", opcache::script_dir(cfg).display()),
            format!("set opcache.script_dir to a directory under {restrict} that is not web-reachable"),
        ));
    }
    None
}

/// `drain: auto` reads php-fpm's status page, or waits `drain_max` each time.
fn check_status_page(cfg: &Config, ep: &Endpoint) -> Check {
    match cfg.opcache.status_path.as_deref() {
        Some(p) => match php_fpm::fpm_status(ep, p, php_fpm::TIMEOUT) {
            Ok(st) => Check::pass(format!("drain: auto reads php-fpm's status page {p} (pool {}, {} workers)", st.pool, st.processes.len())),
            Err(e) => Check::fail(false, format!("drain: auto cannot read the status page: {e:#}; it waits drain_max instead"), format!("set `pm.status_path = {p}` in the php-fpm pool")),
        },
        None => Check::fail(false, "drain: auto without opcache.status_path: it waits drain_max every time", "set `pm.status_path = /fpm-status` in the pool and `opcache.status_path: /fpm-status` in rootswap.yaml"),
    }
}
