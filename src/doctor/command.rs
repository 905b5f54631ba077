//! The doctor command: its options, every check in order, and the printed
//! report with its exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::site::Site;

use super::check::Check;
use super::{apache, cron, layout, nginx, php, served, shared};

/// `rootswap doctor` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Check this nginx configuration file (its includes are followed) instead of `nginx -T`.
    #[arg(long, value_name = "FILE")]
    pub nginx_conf: Option<PathBuf>,
    /// Check this Apache configuration file (its includes are followed); without it Apache is
    /// checked (through `apache2ctl -t -D DUMP_INCLUDES`) only where Apache runs and nginx does not.
    #[arg(long, value_name = "FILE")]
    pub apache_conf: Option<PathBuf>,
}

/// Which web servers doctor checks: (nginx, Apache). A configuration file
/// given selects its server; without one, nginx, or Apache where there is
/// Apache and no nginx.
fn servers(args: &Args) -> (bool, bool) {
    match (&args.nginx_conf, &args.apache_conf) {
        (None, None) => {
            let has = |names: &[&str]| names.iter().any(|n| apache::installed(n));
            let apache_only = has(&["apache2ctl", "apachectl"]) && !has(&["nginx"]);
            (!apache_only, apache_only)
        }
        (n, a) => (n.is_some(), a.is_some()),
    }
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
    let (check_nginx, check_apache) = servers(args);
    let apache = check_apache.then(|| apache::check_apache(cfg, args.apache_conf.as_deref()));
    // With mod_php (or PHP reset through the web server), php-fpm does not serve the site.
    if !apache.as_ref().is_some_and(|a| a.mod_php) && cfg.opcache.http.is_none() {
        out.extend(php::check_php(site.php_fpm(), cfg));
    }
    if check_nginx {
        out.extend(nginx::check_nginx(cfg, args.nginx_conf.as_deref()));
    }
    out.extend(apache.into_iter().flat_map(|a| a.checks));
    out.extend(cron::check_cron(layout));
    out
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
