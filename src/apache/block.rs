//! The Apache `<VirtualHost>` for the configured layout (what `rootswap
//! apache` prints), each line commented with why it is there
//! (docs/zero-downtime.md#apache).

use std::process::ExitCode;

use anyhow::Result;

use crate::config::Config;
use crate::nginx::document_root;
use crate::opcache;
use crate::php_fpm::{self, Endpoint};

/// The PHP settings Apache needs because it hands PHP the link's path:
/// no realpath cache (each worker would keep the old tree for
/// `realpath_cache_ttl`, 120 s) and OPcache keyed on the real path.
pub const PHP_SETTINGS: &[(&str, &str)] = &[
    ("realpath_cache_size", "0"),
    ("opcache.revalidate_path", "1"),
];

/// `rootswap apache` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address of the `<VirtualHost>` (`*:80`, `127.0.0.1:8080`, or a port).
    #[arg(long, default_value = "*:80")]
    pub listen: String,
    /// Value of `ServerName`.
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    /// PHP runs in php-fpm at this address (mpm_event + mod_proxy_fcgi; the default,
    /// with `opcache.fastcgi` or Debian's default socket).
    #[arg(long, value_name = "ADDR", conflicts_with = "mod_php")]
    pub fastcgi: Option<String>,
    /// PHP runs inside Apache (mpm_prefork + mod_php).
    #[arg(long)]
    pub mod_php: bool,
}

/// The `<VirtualHost>` address: a bare port becomes `*:PORT`.
fn address(listen: &str) -> String {
    if listen.parse::<u16>().is_ok() {
        format!("*:{listen}")
    } else {
        listen.to_string()
    }
}

/// `text` with the regular expression's special characters escaped (`.` is all a URL prefix has).
fn regex_escape(text: &str) -> String {
    text.replace('.', "\\.")
}

/// php-fpm's address as `SetHandler` wants it.
pub fn proxy_handler(ep: &Endpoint) -> String {
    match ep {
        Endpoint::Unix(p) => format!("proxy:unix:{}|fcgi://localhost", p.display()),
        Endpoint::Tcp(h) => format!("proxy:fcgi://{h}"),
    }
}

/// The PHP part: php-fpm through mod_proxy_fcgi, or mod_php.
fn php_part(cfg: &Config, args: &Args) -> String {
    if args.mod_php {
        let settings: String = PHP_SETTINGS
            .iter()
            .map(|(k, v)| format!("    php_admin_value {k} {v}\n"))
            .collect();
        return format!(
            r#"    # PHP runs inside Apache (mpm_prefork + mod_php; a2enmod php8.2).
    <FilesMatch "\.php$">
        SetHandler application/x-httpd-php
    </FilesMatch>
    # Apache hands PHP the path through the link. PHP must resolve it anew on every
    # request (no realpath cache: each process would keep the old tree for 120 s) and
    # OPcache must key scripts on the real path (revalidate_path), so a request runs
    # one tree and the old tree is never served under the link's name.
{settings}    # OPcache lives in Apache's memory here, out of FastCGI's reach: rootswap clears it through
    # this host (opcache.http: http://127.0.0.1:PORT in rootswap.yaml). For one request it writes
    # a script into opcache.script_dir and fetches it here: only that name, only from this
    # machine (mod_alias, mod_authz_host). Never a graceful restart: it drops kept-alive requests.
    AliasMatch "^{prefix}(\.rootswap-opcache-[0-9]+-[0-9a-f]+\.php)$" "{dir}/$1"
    <LocationMatch "^{prefix}">
        Require ip 127.0.0.1 ::1
    </LocationMatch>
"#,
            prefix = regex_escape(opcache::HTTP_PREFIX),
            dir = opcache::script_dir(cfg).display(),
        );
    }
    let given = args.fastcgi.as_deref().map(Endpoint::parse).transpose();
    let (ep, note) = match given.and_then(|g| Ok(g.or(php_fpm::configured(cfg)?))) {
        Ok(Some(ep)) => (
            ep,
            "the same address rootswap resets OPcache through (opcache.fastcgi)",
        ),
        _ => (
            Endpoint::Unix(crate::nginx::DEFAULT_FPM.trim_start_matches("unix:").into()),
            "Debian's default; set opcache.fastcgi in rootswap.yaml to the same address",
        ),
    };
    let settings: String = PHP_SETTINGS
        .iter()
        .map(|(k, v)| format!("    #   php_admin_value[{k}] = {v}\n"))
        .collect();
    format!(
        r#"    # PHP runs in php-fpm (mpm_event + mod_proxy_fcgi; a2enmod proxy_fcgi).
    <FilesMatch "\.php$">
        # Only scripts that exist go to php-fpm (a 404 here instead of PHP guessing a path).
        <If "-f %{{REQUEST_FILENAME}}">
            # php-fpm's address: {note}.
            SetHandler "{handler}"
        </If>
    </FilesMatch>
    # Apache hands php-fpm the path through the link (it has no $realpath_root). PHP must
    # resolve it anew on every request and OPcache must key scripts on the real path, so
    # a request runs one tree and the old tree is never served under the link's name.
    # In the php-fpm pool (rootswap doctor checks them over FastCGI):
{settings}"#,
        handler = proxy_handler(&ep),
    )
}

/// Renders the `<VirtualHost>`.
pub fn virtual_host(cfg: &Config, args: &Args) -> String {
    let root = document_root(cfg);
    let root_s = root.display();
    let link_s = cfg.webroot.join(&cfg.link).display().to_string();
    format!(
        r#"# Apache 2.4 <VirtualHost> for rootswap (printed by `rootswap apache`).
<VirtualHost {addr}>
    ServerName {server_name}

    # The document root goes through the link rootswap switches with one rename(2)
    # ({link_s} -> {root_name} normally, -> a snapshot while a deploy rewrites {root_name}).
    # Never point Apache at {root_name} itself: requests would see a half-written tree.
    DocumentRoot {root_s}
    <Directory {root_s}>
        # The link must be followed; .htaccess is not read (its changes would not be deployed atomically).
        Options FollowSymLinks
        AllowOverride None
        Require all granted
        # Directory requests run index.php; anything that is not a file goes to /index.php.
        DirectoryIndex index.php index.html
        FallbackResource /index.php
    </Directory>

    # Never serve dot files (.git, .env, .htaccess): a .git in the served tree leaks the source.
    <LocationMatch "/\.(?!well-known/)">
        Require all denied
    </LocationMatch>

{php}</VirtualHost>
"#,
        addr = address(&args.listen),
        server_name = args.server_name,
        root_name = cfg.root,
        php = php_part(cfg, args),
    )
}

/// `--listen` is PORT or ADDRESS:PORT (`*:80`, `127.0.0.1:8080`,
/// `[::1]:8080`), and `--server-name` one host name: anything else would
/// break the printed `<VirtualHost>` or add lines to it.
fn check_args(args: &Args) -> Result<()> {
    let l = args.listen.trim();
    let (addr, port) = l.rsplit_once(':').map_or((None, l), |(a, p)| (Some(a), p));
    let addr_ok = addr.map_or(true, |a| {
        !a.is_empty() && !a.contains(|c: char| c.is_whitespace() || c.is_control() || c == '>')
    });
    if port.parse::<u16>().is_err() || !addr_ok {
        anyhow::bail!(
            "--listen `{}`: expected PORT or ADDRESS:PORT, e.g. 80, *:80 or 127.0.0.1:8080",
            args.listen
        );
    }
    let name = &args.server_name;
    if name.is_empty()
        || name.contains(|c: char| c.is_whitespace() || c.is_control() || "\"'<>#".contains(c))
    {
        anyhow::bail!(
            "--server-name `{}`: expected one host name, e.g. example.com",
            name.escape_debug()
        );
    }
    Ok(())
}

/// Runs `rootswap apache`.
pub fn command(cfg: &Config, args: &Args) -> Result<ExitCode> {
    check_args(args)?;
    if let Some(a) = &args.fastcgi {
        Endpoint::parse(a)?;
    }
    print!("{}", virtual_host(cfg, args));
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
            listen: "8080".into(),
            server_name: "example.com".into(),
            fastcgi: None,
            mod_php: false,
        }
    }

    #[test]
    fn bad_listen_and_server_name_are_refused() {
        for listen in ["http", "127.0.0.1:http", ":80", "a b:80", "80>\n<x"] {
            let a = Args {
                listen: listen.into(),
                ..args()
            };
            let msg = format!("{:#}", check_args(&a).unwrap_err());
            assert!(
                msg.contains("--listen") && msg.contains("PORT or ADDRESS:PORT"),
                "{listen}: {msg}"
            );
        }
        for name in ["", "a b", "x\n</VirtualHost>", "a\"b"] {
            let a = Args {
                server_name: name.into(),
                ..args()
            };
            let msg = format!("{:#}", check_args(&a).unwrap_err());
            assert!(msg.contains("--server-name"), "{name:?}: {msg}");
        }
        for listen in ["80", "*:80", "127.0.0.1:8080", "[::1]:8080"] {
            let a = Args {
                listen: listen.into(),
                ..args()
            };
            assert!(check_args(&a).is_ok(), "{listen}");
        }
        assert!(check_args(&args()).is_ok());
    }

    #[test]
    fn php_fpm_through_the_link_and_the_read_back_agrees() {
        let text = virtual_host(&cfg("opcache:\n  fastcgi: tcp:127.0.0.1:9000\n"), &args());
        assert!(text.contains("<VirtualHost *:8080>"), "{text}");
        assert!(
            text.contains("DocumentRoot /srv/site/current/public\n"),
            "{text}"
        );
        assert!(
            text.contains("SetHandler \"proxy:fcgi://127.0.0.1:9000\""),
            "{text}"
        );
        let conf = crate::apache::parse::parse(&text, "t").unwrap();
        let sites = crate::apache::parse::sites(&conf);
        assert_eq!(sites.len(), 1);
        assert_eq!(sites[0].document_root, "/srv/site/current/public");
        assert_eq!(
            sites[0].handler,
            crate::apache::parse::Handler::Fpm("proxy:fcgi://127.0.0.1:9000".into())
        );
    }

    #[test]
    fn mod_php_sets_the_php_settings_in_the_host() {
        let a = Args {
            mod_php: true,
            ..args()
        };
        let text = virtual_host(&cfg(""), &a);
        assert!(
            text.contains("SetHandler application/x-httpd-php"),
            "{text}"
        );
        assert!(text.contains(r#"AliasMatch "^/\.rootswap-opcache/(\.rootswap-opcache-[0-9]+-[0-9a-f]+\.php)$" "/srv/site/$1""#), "{text}");
        let conf = crate::apache::parse::parse(&text, "t").unwrap();
        let s = &crate::apache::parse::sites(&conf)[0];
        assert_eq!(s.handler, crate::apache::parse::Handler::ModPhp);
        for (k, v) in PHP_SETTINGS {
            assert_eq!(s.php_admin.get(*k).map(String::as_str), Some(*v), "{k}");
        }
        let unix = Args {
            fastcgi: Some("unix:/run/php/x.sock".into()),
            ..args()
        };
        assert!(virtual_host(&cfg(""), &unix)
            .contains("\"proxy:unix:/run/php/x.sock|fcgi://localhost\""));
    }
}
