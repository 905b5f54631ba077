//! The nginx server block for the configured layout (what `rootswap nginx`
//! prints), each line commented with why it is there
//! (docs/zero-downtime.md#real-paths-for-php).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::config::Config;
use crate::php_fpm::{self, Endpoint};

/// php-fpm's address when `opcache.fastcgi` is not set (Debian's default pool).
pub const DEFAULT_FPM: &str = "unix:/run/php/php-fpm.sock";

/// `rootswap nginx` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Value of nginx's `listen` (port, or address:port).
    #[arg(long, default_value = "80")]
    pub listen: String,
    /// Value of nginx's `server_name`.
    #[arg(long, default_value = "_")]
    pub server_name: String,
    /// php-fpm's address for `fastcgi_pass` (default: `opcache.fastcgi`, else Debian's default socket).
    #[arg(long, value_name = "ADDR")]
    pub fastcgi: Option<String>,
}

/// The document root nginx must use: `<webroot>/<link>/<public>`.
pub fn document_root(cfg: &Config) -> PathBuf {
    let webroot = cfg
        .webroot
        .canonicalize()
        .unwrap_or_else(|_| cfg.webroot.clone());
    let link = webroot.join(&cfg.link);
    let public = cfg.public.trim_matches('/');
    if public.is_empty() || public == "." {
        link
    } else {
        link.join(public)
    }
}

/// Renders the server block.
pub fn server_block(cfg: &Config, args: &Args) -> String {
    let root = document_root(cfg);
    let given = args.fastcgi.as_deref().map(Endpoint::parse).transpose();
    let (pass, pass_note) = match given.and_then(|g| Ok(g.or(php_fpm::configured(cfg)?))) {
        Ok(Some(ep)) => (ep.nginx(), "php-fpm's socket, the same one rootswap resets OPcache through (opcache.fastcgi)".to_string()),
        _ => (
            DEFAULT_FPM.to_string(),
            "php-fpm's socket; set opcache.fastcgi in rootswap.yaml to the same address so deploys can reset OPcache".to_string(),
        ),
    };
    let root_s = root.display();
    let link_s = cfg.webroot.join(&cfg.link).display().to_string();
    format!(
        r#"# nginx server block for rootswap (printed by `rootswap nginx`).
server {{
    # Where this site listens.
    listen {listen};
    server_name {server_name};

    # The document root goes through the link rootswap switches with one rename(2)
    # ({link_s} -> {root_name} normally, -> a snapshot while a deploy rewrites {root_name}).
    # Never point nginx at {root_name} itself: requests would see a half-written tree.
    root {root_s};
    # Directory requests run index.php.
    index index.php index.html;

    # Front controller: existing files are served as they are, everything else goes to /index.php.
    location / {{
        try_files $uri $uri/ /index.php$is_args$args;
    }}

    # Never serve dot files (.git, .env, .htaccess): a .git in the served tree leaks the source.
    location ~ /\.(?!well-known/) {{
        deny all;
    }}

    location ~ \.php$ {{
        # Only scripts that exist go to php-fpm (a 404 here instead of PHP guessing a path).
        try_files $uri =404;
        # The standard CGI parameters (QUERY_STRING, REQUEST_METHOD, ...). Debian's
        # snippets/fastcgi-php.conf and fastcgi.conf also set SCRIPT_FILENAME from $document_root.
        include fastcgi_params;
        # AFTER the include: when a parameter is sent twice php-fpm keeps the last one.
        # $realpath_root is the document root with the link resolved, once per request:
        # PHP sees real paths, so OPcache and the realpath cache never serve the old tree
        # under the link's name, and a request that started on one tree finishes on it.
        fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;
        fastcgi_param DOCUMENT_ROOT $realpath_root;
        # {pass_note}.
        fastcgi_pass {pass};
    }}
}}
"#,
        listen = args.listen,
        server_name = args.server_name,
        root_name = cfg.root,
    )
}

/// Runs `rootswap nginx`.
pub fn command(cfg: &Config, args: &Args) -> Result<ExitCode> {
    if let Some(a) = &args.fastcgi {
        Endpoint::parse(a)?;
    }
    print!("{}", server_block(cfg, args));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        let text =
            format!("webroot: /srv/site\npublic: public\nsource:\n  repo: /srv/repo\n{extra}");
        Config::parse(&text, std::path::Path::new("/srv/rootswap.yaml")).unwrap()
    }

    fn args() -> Args {
        Args {
            listen: "127.0.0.1:8080".into(),
            server_name: "example.com".into(),
            fastcgi: None,
        }
    }

    #[test]
    fn the_block_serves_through_the_link_with_realpath_root_after_the_include() {
        let text = server_block(&cfg("opcache:\n  fastcgi: tcp:127.0.0.1:9000\n"), &args());
        assert!(text.contains("root /srv/site/current/public;"), "{text}");
        assert!(text.contains("fastcgi_pass 127.0.0.1:9000;"), "{text}");
        let include = text.find("include fastcgi_params;").unwrap();
        let sf = text
            .find("fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;")
            .unwrap();
        let dr = text
            .find("fastcgi_param DOCUMENT_ROOT $realpath_root;")
            .unwrap();
        assert!(
            include < sf && include < dr,
            "the $realpath_root lines must come after the include"
        );
        let conf = crate::nginx::parse::parse(&format!("http {{ {text} }}")).unwrap();
        let locs = crate::nginx::parse::php_locations(&conf);
        assert_eq!(locs.len(), 1);
        assert_eq!(
            locs[0].script_filename.as_deref(),
            Some("$realpath_root$fastcgi_script_name")
        );
    }

    #[test]
    fn the_socket_defaults_and_can_be_given() {
        let text = server_block(&cfg(""), &args());
        assert!(
            text.contains(&format!("fastcgi_pass {DEFAULT_FPM};")),
            "{text}"
        );
        let a = Args {
            fastcgi: Some("unix:/run/php/php8.2-fpm.sock".into()),
            ..args()
        };
        assert!(server_block(&cfg(""), &a).contains("fastcgi_pass unix:/run/php/php8.2-fpm.sock;"));
        let mut dot = cfg("");
        dot.public = ".".into();
        assert!(server_block(&dot, &args()).contains("root /srv/site/current;"));
    }
}
