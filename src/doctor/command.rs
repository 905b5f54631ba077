//! The doctor command: its options, every check in order, and the printed
//! report with its exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::site::Site;
use crate::webserver::{self, Server};

use super::check::Check;
use super::{apache, caddy, cron, layout, nginx, php, served, shared};

/// `rootswap doctor` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Check this nginx configuration file (its includes are followed) instead of `nginx -T`.
    #[arg(long, value_name = "FILE")]
    pub nginx_conf: Option<PathBuf>,
    /// Check this Apache configuration file (its includes are followed) instead of the one
    /// `apache2ctl -t -D DUMP_INCLUDES` names.
    #[arg(long, value_name = "FILE")]
    pub apache_conf: Option<PathBuf>,
    /// Check this Caddy configuration (a Caddyfile, read through `caddy adapt`, or its JSON)
    /// instead of /etc/caddy/Caddyfile.
    #[arg(long, value_name = "FILE")]
    pub caddyfile: Option<PathBuf>,
    /// The web server to check (default: the one found serving the site; each found when unsure).
    #[arg(long, value_enum)]
    pub server: Option<Server>,
}

/// Runs every check.
pub fn checks(site: &Site, args: &Args) -> Vec<Check> {
    let (cfg, layout) = (&site.config, &site.layout);
    let mut out = vec![layout::check_link(layout)];
    out.push(layout::check_same_fs(layout));
    out.push(layout::check_space(layout));
    out.extend(layout::check_state_dir(layout));
    out.extend(served::check_served_tree(cfg, layout));
    out.extend(shared::check_shared(&site.shared, layout));
    out.extend(served::check_external_links(cfg, layout));
    let (servers, found) = servers(site, args);
    let mut apache = servers
        .contains(&Server::Apache)
        .then(|| apache::check_apache(cfg, args.apache_conf.as_deref()));
    // With mod_php (or PHP reset through the web server), php-fpm does not serve the site.
    if !apache.as_ref().is_some_and(|a| a.mod_php) && cfg.opcache.http.is_none() {
        out.extend(php::check_php(site.php_fpm(), cfg));
    }
    out.push(found);
    for s in servers {
        match (s, apache.take()) {
            (Server::Apache, Some(found)) => out.extend(found.checks),
            (_, a) => {
                apache = a;
                out.extend(check_server(s, site, args));
            }
        }
    }
    out.extend(cron::check_cron(layout));
    out
}

/// The web servers to check: `--server`, else those whose configuration
/// file was given, else the one found serving the site, else each found
/// (nginx when none is); and the line saying so.
fn servers(site: &Site, args: &Args) -> (Vec<Server>, Check) {
    if let Some(s) = args.server {
        return (vec![s], Check::pass(format!("web server: {s} (--server)")));
    }
    let given: Vec<Server> = [
        args.nginx_conf.as_ref().map(|_| Server::Nginx),
        args.apache_conf.as_ref().map(|_| Server::Apache),
        args.caddyfile.as_ref().map(|_| Server::Caddy),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !given.is_empty() {
        let names: Vec<&str> = given.iter().map(|s| s.name()).collect();
        return (
            given,
            Check::pass(format!(
                "web server: {} (its configuration given)",
                names.join(", ")
            )),
        );
    }
    let found = webserver::detect(&webserver::search_root(), &site.config.webroot);
    if let Some(s) = webserver::serving(&found) {
        return (
            vec![s],
            Check::pass(format!("web server: {}", found[0].describe())),
        );
    }
    if found.is_empty() {
        return (
            vec![Server::Nginx],
            Check::pass(
                "web server: none found on this machine; checking nginx (choose with --server)",
            ),
        );
    }
    let all: Vec<String> = found.iter().map(|f| f.describe()).collect();
    (
        found.iter().map(|f| f.server).collect(),
        Check::pass(format!(
            "web servers: {}; checking each (choose with --server)",
            all.join("; ")
        )),
    )
}

/// The checks of one web server's configuration.
fn check_server(server: Server, site: &Site, args: &Args) -> Vec<Check> {
    let cfg = &site.config;
    match server {
        Server::Nginx => nginx::check_nginx(cfg, args.nginx_conf.as_deref()),
        Server::Caddy => caddy::check_caddy(cfg, args.caddyfile.as_deref()),
        Server::Apache => apache::check_apache(cfg, args.apache_conf.as_deref()).checks,
        Server::LiteSpeed => vec![Check::fail(
            false,
            "LiteSpeed/OpenLiteSpeed: rootswap cannot check its configuration",
            "set it up by hand as docs/webservers.md#litespeed describes (the document root through the link, PHP told the real path)",
        )],
    }
}

/// Runs `rootswap doctor`.
pub fn command(site: &Site, args: &Args) -> Result<ExitCode> {
    let all = checks(site, args);
    let mut fatal = 0;
    let mut other = 0;
    for c in &all {
        println!("{} {}", if c.ok { "✓" } else { "✗" }, c.what);
        if let Some(f) = &c.fix {
            for l in f.lines() {
                println!("    fix: {l}");
            }
        }
        if !c.ok {
            if c.fatal {
                fatal += 1;
            } else {
                other += 1;
            }
        }
    }
    println!();
    if fatal > 0 {
        println!("{fatal} problem(s) that cause downtime or stale code, {other} other");
        Ok(ExitCode::FAILURE)
    } else if other > 0 {
        println!("no problem that causes downtime or stale code; {other} other");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("all checks passed");
        Ok(ExitCode::SUCCESS)
    }
}
