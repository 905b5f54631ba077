//! The Caddy site block for the configured layout (what `rootswap caddy`
//! prints), each line commented with why it is there
//! (docs/zero-downtime.md#caddy).

use anyhow::{bail, Result};

use crate::config::Config;
use crate::nginx::{document_root, DEFAULT_FPM};
use crate::php_fpm::{self, Endpoint};

/// `rootswap caddy` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where Caddy listens: PORT, or ADDRESS:PORT (the address becomes `bind`).
    #[arg(long, default_value = "80")]
    pub listen: String,
    /// The site's host name (`_`: any host).
    #[arg(long, default_value = "_")]
    pub server_name: String,
    /// php-fpm's address for `php_fastcgi` (default: `opcache.fastcgi`, else Debian's default socket).
    #[arg(long, value_name = "ADDR")]
    pub fastcgi: Option<String>,
}

/// `--listen` split into the address to bind (if any) and the port.
fn listen_parts(listen: &str) -> Result<(Option<String>, u16)> {
    let l = listen.trim();
    let (addr, port) = match l.rsplit_once(':') {
        Some((a, p)) => (Some(a.trim_start_matches('[').trim_end_matches(']')), p),
        None => (None, l),
    };
    let Ok(port) = port.parse::<u16>() else {
        bail!("--listen `{listen}`: expected PORT or ADDRESS:PORT, e.g. 80 or 127.0.0.1:8080");
    };
    match addr {
        Some("") => bail!("--listen `{listen}`: the address before `:` is empty; write PORT alone to listen on every address"),
        a => Ok((a.map(str::to_owned), port)),
    }
}

/// `text` as one Caddyfile token: quoted when it holds a space, a quote,
/// a brace or a `#`.
fn word(text: &str) -> String {
    if text.is_empty() || text.contains(|c: char| c.is_whitespace() || "\"'{}#`\\".contains(c)) {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        text.to_string()
    }
}

/// php-fpm's address as Caddy writes an upstream: `unix//path` or `host:port`.
pub fn upstream(ep: &Endpoint) -> String {
    match ep {
        Endpoint::Unix(p) => format!("unix/{}", p.display()),
        Endpoint::Tcp(h) => h.clone(),
    }
}

/// php-fpm's address for the block and the note explaining it: `--fastcgi`,
/// else `opcache.fastcgi`, else Debian's default socket.
fn fastcgi(cfg: &Config, args: &Args) -> Result<(String, &'static str)> {
    let given = args.fastcgi.as_deref().map(Endpoint::parse).transpose()?;
    Ok(match given.map_or_else(|| php_fpm::configured(cfg), |g| Ok(Some(g))) {
        Ok(Some(ep)) => (upstream(&ep), "php-fpm's socket, the same one rootswap resets OPcache through (opcache.fastcgi)"),
        _ => (
            upstream(&Endpoint::Unix(DEFAULT_FPM.trim_start_matches("unix:").into())),
            "php-fpm's socket; set opcache.fastcgi in rootswap.yaml to the same address so deploys can reset OPcache",
        ),
    })
}

/// Renders the site block; fails on a `--listen` or `--fastcgi` it cannot use.
pub fn site_block(cfg: &Config, args: &Args) -> Result<String> {
    let (bind, port) = listen_parts(&args.listen)?;
    let host = match args.server_name.trim() {
        "_" | "" => "",
        h => h,
    };
    let (pass, pass_note) = fastcgi(cfg, args)?;
    let bind_line = match bind {
        Some(a) => format!("\tbind {}\n", word(&a)),
        None => String::new(),
    };
    let root = document_root(cfg);
    Ok(format!(
        r#"# Caddy site block for rootswap (printed by `rootswap caddy`; Caddy 2.5 or newer).
# Plain HTTP on this address; for Caddy's automatic HTTPS write the bare domain
# name instead (`example.com {{`).
http://{host}:{port} {{
{bind_line}	# The document root goes through the link rootswap switches with one rename(2)
	# ({link} -> {root_name} normally, -> a snapshot while a deploy rewrites {root_name}).
	# Never point Caddy at {root_name} itself: requests would see a half-written tree.
	root * {root}

	# Never serve dot files (.git, .env, .htaccess): a .git in the served tree leaks the source.
	@dotfiles {{
		path */.*
		not path /.well-known/*
	}}
	respond @dotfiles 403

	# PHP goes to php-fpm; a path that is no file runs /index.php (front controller).
	# {pass_note}.
	php_fastcgi {pass} {{
		# Caddy resolves the link once per request and hands PHP the real path
		# (SCRIPT_FILENAME and DOCUMENT_ROOT): OPcache and each worker's realpath
		# cache never serve the old tree under the link's name, and a request that
		# started on one tree finishes on it. Without it, deploys serve stale code.
		resolve_root_symlink
	}}

	# Everything else (images, CSS, JS) from the same root.
	file_server
}}
"#,
        link = cfg.webroot.join(&cfg.link).display(),
        root_name = cfg.root,
        root = word(&root.to_string_lossy()),
        pass = word(&pass),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        let text =
            format!("webroot: /srv/site\npublic: public\nsource:\n  repo: /srv/repo\n{extra}");
        Config::parse(&text, std::path::Path::new("/srv/rootswap.yaml")).unwrap()
    }

    fn args(listen: &str, name: &str, fastcgi: Option<&str>) -> Args {
        Args {
            listen: listen.into(),
            server_name: name.into(),
            fastcgi: fastcgi.map(str::to_owned),
        }
    }

    #[test]
    fn the_block_serves_through_the_link_and_resolves_it() {
        let c = cfg("opcache:\n  fastcgi: tcp:127.0.0.1:9000\n");
        let text = site_block(&c, &args("127.0.0.1:8080", "example.com", None)).unwrap();
        assert!(
            text.contains("\nhttp://example.com:8080 {\n\tbind 127.0.0.1\n"),
            "{text}"
        );
        assert!(text.contains("root * /srv/site/current/public\n"), "{text}");
        assert!(text.contains("php_fastcgi 127.0.0.1:9000 {"), "{text}");
        assert!(text.contains("\t\tresolve_root_symlink\n"), "{text}");
    }

    #[test]
    fn defaults_and_unix_sockets() {
        let text = site_block(&cfg(""), &args("80", "_", None)).unwrap();
        assert!(text.contains("\nhttp://:80 {\n\t#"), "{text}");
        assert!(
            text.contains("php_fastcgi unix//run/php/php-fpm.sock {"),
            "{text}"
        );
        let a = args("8080", "_", Some("unix:/run/php/php8.2-fpm.sock"));
        assert!(site_block(&cfg(""), &a)
            .unwrap()
            .contains("php_fastcgi unix//run/php/php8.2-fpm.sock {"));
        let mut spaced = cfg("");
        spaced.webroot = "/srv/my site".into();
        assert!(site_block(&spaced, &a)
            .unwrap()
            .contains("root * \"/srv/my site/current/public\"\n"));
    }

    #[test]
    fn bad_options_are_refused_with_the_option_named() {
        for l in ["x", ":80", "127.0.0.1:http", ""] {
            let e = site_block(&cfg(""), &args(l, "_", None)).unwrap_err();
            assert!(format!("{e:#}").contains("--listen"), "{l}: {e:#}");
        }
        assert!(site_block(&cfg(""), &args("80", "_", Some("nonsense"))).is_err());
    }
}
