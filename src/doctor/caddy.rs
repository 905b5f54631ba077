//! Caddy: every handler that passes PHP to php-fpm from a root under the
//! link resolves the link first (`resolve_root_symlink`).

use std::path::Path;

use crate::caddy::{self as web, PhpHandler};
use crate::config::Config;
use crate::nginx::document_root;

use super::check::Check;

/// Caddy's configuration (a Caddyfile read by `caddy adapt`, or its JSON;
/// default /etc/caddy/Caddyfile): PHP is served through the link, with the
/// link resolved per request.
pub(super) fn check_caddy(cfg: &Config, file: Option<&Path>) -> Vec<Check> {
    // Debian's Caddyfile, under the directory the web server was looked for in.
    let default =
        crate::webserver::search_root().join(web::DEFAULT_CADDYFILE.trim_start_matches('/'));
    let conf = match web::load(Some(file.unwrap_or(&default))) {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::fail(
                false,
                format!("Caddy configuration not checked: {e:#}"),
                "run doctor where Caddy runs, or pass --caddyfile FILE (a Caddyfile, or the JSON `caddy adapt` prints)",
            )]
        }
    };
    check_handlers(cfg, &conf.source, &web::php_handlers(&conf.json))
}

/// The `resolve_root_symlink` checks of every PHP handler served through the link.
fn check_handlers(cfg: &Config, source: &str, all: &[PhpHandler]) -> Vec<Check> {
    let mut links = vec![cfg.webroot.join(&cfg.link)];
    if let Ok(w) = cfg.webroot.canonicalize() {
        links.push(w.join(&cfg.link));
    }
    let docroot = document_root(cfg);
    let through_link = |h: &&PhpHandler| {
        h.root.as_deref().is_some_and(|r| {
            links
                .iter()
                .any(|l| Path::new(r.trim_end_matches('/')).starts_with(l))
        })
    };
    let served: Vec<&PhpHandler> = all.iter().filter(through_link).collect();
    if served.is_empty() {
        let roots: Vec<String> = all
            .iter()
            .map(|h| h.root.clone().unwrap_or_else(|| "no root".into()))
            .collect();
        return vec![Check::fail(
            true,
            format!(
                "{source}: no site passes PHP to php-fpm with its root under the link {} (Caddy must serve {}; PHP roots found: {})",
                links[0].display(),
                docroot.display(),
                if roots.is_empty() { "none".to_string() } else { roots.join(", ") }
            ),
            format!(
                "set `root * {}` in the site's block, before php_fastcgi; `rootswap caddy` prints one",
                docroot.display()
            ),
        )];
    }
    served
        .into_iter()
        .map(|h| {
            let place = format!(
                "{source}: site {} php_fastcgi {} (root {})",
                h.site,
                h.upstreams.join(" "),
                h.root.as_deref().unwrap_or_default()
            );
            if h.resolve_root_symlink {
                Check::pass(format!("{place}: resolve_root_symlink is on"))
            } else {
                Check::fail(
                    true,
                    format!("{place}: resolve_root_symlink is off: PHP sees the link's path, so OPcache and each worker's realpath cache serve the old tree after a switch, and one request can mix both"),
                    "in the site's php_fastcgi block add the line `resolve_root_symlink`:\n\
                     php_fastcgi unix//run/php/php-fpm.sock {\n\
                     \x20   resolve_root_symlink\n\
                     }\n\
                     (`rootswap caddy` prints a complete site block; Caddy 2.5 or newer)",
                )
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::parse(
            "webroot: /srv/site\npublic: public\nsource:\n  repo: /srv/repo\n",
            Path::new("/srv/rootswap.yaml"),
        )
        .unwrap()
    }

    fn handler(root: &str, resolve: bool) -> PhpHandler {
        PhpHandler {
            site: ":80".into(),
            root: Some(root.into()),
            resolve_root_symlink: resolve,
            upstreams: vec!["unix//run/php/php-fpm.sock".into()],
        }
    }

    #[test]
    fn each_handler_through_the_link_is_judged() {
        let c = check_handlers(&cfg(), "f", &[handler("/srv/site/current/public", true)]);
        assert!(c.len() == 1 && c[0].ok, "{c:?}");
        let c = check_handlers(
            &cfg(),
            "f",
            &[
                handler("/srv/site/current/public", false),
                handler("/srv/other", false),
            ],
        );
        assert!(c.len() == 1 && !c[0].ok && c[0].fatal, "{c:?}");
        assert!(c[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("resolve_root_symlink"));
    }

    #[test]
    fn a_root_past_the_link_is_a_failure_that_names_the_docroot() {
        let c = check_handlers(&cfg(), "f", &[handler("/srv/site/ROOT/public", true)]);
        assert!(c.len() == 1 && !c[0].ok && c[0].fatal, "{c:?}");
        assert!(c[0].what.contains("/srv/site/ROOT/public"), "{}", c[0].what);
        assert!(c[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("root * /srv/site/current/public"));
    }
}
