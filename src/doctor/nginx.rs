//! nginx: every PHP location served through the link hands PHP the real
//! path (`$realpath_root`).

use std::path::Path;

use crate::config::Config;
use crate::nginx::{self as web, Directive, PhpLocation};

use super::check::Check;

/// nginx's configuration (a file, or `nginx -T`): every include read, and
/// every PHP location served through the link hands PHP the real path.
pub(super) fn check_nginx(cfg: &Config, conf_file: Option<&Path>) -> Vec<Check> {
    let web::Conf {
        source,
        directives: conf,
        problems,
    } = match web::load(conf_file) {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::fail(
                false,
                format!("nginx configuration not checked: {e:#}"),
                "run doctor where nginx runs (as root for nginx -T), or pass --nginx-conf FILE",
            )]
        }
    };
    let mut out: Vec<Check> = problems
        .iter()
        .map(|p| {
            Check::fail(
                false,
                format!("{source}: {p}; the checks below cannot see what it holds"),
                "make it readable for the user running doctor (run it as root), or pass --nginx-conf FILE",
            )
        })
        .collect();
    out.extend(check_locations(cfg, &source, &conf));
    out
}

/// The `$realpath_root` checks of every PHP location served through the link.
fn check_locations(cfg: &Config, source: &str, conf: &[Directive]) -> Vec<Check> {
    let mut links = vec![cfg.webroot.join(&cfg.link)];
    if let Ok(w) = cfg.webroot.canonicalize() {
        links.push(w.join(&cfg.link));
    }
    let through_link = |root: &str| {
        links
            .iter()
            .any(|l| Path::new(root.trim_end_matches('/')).starts_with(l))
    };
    let locs: Vec<PhpLocation> = web::php_locations(conf)
        .into_iter()
        .filter(|l| through_link(&l.root))
        .collect();
    let fix_lines =
        "in the PHP location, after `include fastcgi_params;` (or snippets/fastcgi-php.conf):\n\
                     fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;\n\
                     fastcgi_param DOCUMENT_ROOT $realpath_root;\n\
                     (`rootswap nginx` prints a complete server block)";
    if locs.is_empty() {
        return vec![Check::fail(
            true,
            format!("{source}: no server passes PHP to php-fpm with its root under the link {} (nginx must serve {})", links[0].display(), web::document_root(cfg).display()),
            format!("set `root {};` in the site's server block; `rootswap nginx` prints one", web::document_root(cfg).display()),
        )];
    }
    let mut out = Vec::new();
    for l in locs {
        let place = format!(
            "{source}: server {} {} (root {})",
            l.listen.join(" "),
            l.location,
            l.root
        );
        let sf_ok = l
            .script_filename
            .as_deref()
            .is_some_and(|v| v.starts_with("$realpath_root"));
        let dr_ok = l
            .document_root
            .as_deref()
            .is_some_and(|v| v == "$realpath_root");
        if sf_ok && dr_ok {
            out.push(Check::pass(format!(
                "{place}: SCRIPT_FILENAME and DOCUMENT_ROOT use $realpath_root"
            )));
        } else {
            out.push(Check::fail(
                true,
                format!(
                    "{place}: SCRIPT_FILENAME is {}, DOCUMENT_ROOT is {}: PHP sees the link's path, so OPcache and each worker's realpath cache serve the old tree after a switch, and one request can mix both",
                    l.script_filename.as_deref().unwrap_or("not set"),
                    l.document_root.as_deref().unwrap_or("not set")
                ),
                fix_lines,
            ));
        }
    }
    out
}
