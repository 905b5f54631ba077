//! The site, opened once: the configuration and everything derived from it.
//!
//! Like cargo's `Workspace`, a [`Site`] is built by the front-ends (the CLI
//! commands, `serve`, the fleet agent, `demo`) and handed down: flows take
//! `&Site`, mechanisms take only their part (the [`Layout`], the user-content
//! [`Rules`], the [`Shared`] directories). Nothing below the front-ends calls
//! `Layout::from_config` or compiles the rules again; `serve` swaps in a new
//! site when its configuration is reloaded, and keeps the old one when the
//! new one does not open.
//!
//! Opening checks what the configuration's text alone cannot: the
//! user-content globs compile, the shared directories are well formed. It
//! touches nothing on disk.

use std::sync::OnceLock;

use anyhow::{Context, Result};

use crate::config::Config;
use crate::layout::Layout;
use crate::php_fpm::Located;
use crate::shared::Shared;
use crate::state::State;
use crate::user_content::Rules;

/// One site: where its trees lie, which files are user content, which
/// directories are shared, as its configuration says.
#[derive(Debug, Clone)]
pub struct Site {
    /// The configuration, as read and checked.
    pub config: Config,
    /// Where ROOT, its snapshots, the serving link and the state live.
    pub layout: Layout,
    /// The `user_content` globs, compiled.
    pub rules: Rules,
    /// `user_content.shared`: directories that live outside ROOT.
    pub shared: Shared,
    /// php-fpm's address, once found (a search that found nothing is
    /// repeated: php-fpm may start after rootswap).
    php_fpm: OnceLock<Located>,
}

/// A site reads as its configuration (`site.trigger`, `&site` where a
/// `&Config` is wanted): what is derived from it is in the named fields.
impl std::ops::Deref for Site {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

impl Site {
    /// Opens the site `config` describes. An error names the configuration
    /// file and the key.
    pub fn open(config: &Config) -> Result<Site> {
        let src = match config.path.as_os_str().is_empty() {
            true => "the configuration".to_string(),
            false => format!("config file {}", config.path.display()),
        };
        let rules =
            Rules::new(&config.user_content).with_context(|| format!("{src}: user_content"))?;
        let shared = Shared::from_config(config).with_context(|| format!("{src}: user_content"))?;
        Ok(Site {
            layout: Layout::from_config(config),
            config: config.clone(),
            rules,
            shared,
            php_fpm: OnceLock::new(),
        })
    }

    /// Where php-fpm listens: `opcache.fastcgi`, or else the one php-fpm
    /// found on this machine (searched once per site, when found).
    pub fn php_fpm(&self) -> Result<Located> {
        if let Some(found) = self.php_fpm.get() {
            return Ok(found.clone());
        }
        let located = crate::php_fpm::locate(&self.config)?;
        if located.endpoint().is_some() {
            let _ = self.php_fpm.set(located.clone());
        }
        Ok(located)
    }

    /// What the state directory records now (deployed commit, snapshots,
    /// pins). Read afresh: a deploy changes it.
    pub fn state(&self) -> Result<State> {
        State::load(&self.layout.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(text: &str) -> Result<Site> {
        let cfg = Config::parse(text, std::path::Path::new("/etc/rootswap/test.yaml"))?;
        Site::open(&cfg)
    }

    #[test]
    fn bad_glob_names_pattern_and_file() {
        let msg = format!(
            "{:#}",
            open("webroot: /w\nsource: {repo: x}\nuser_content: {preserve: ['a/[b']}\n")
                .unwrap_err()
        );
        assert!(msg.contains("a/[b"), "{msg}");
        assert!(
            msg.contains("config file /etc/rootswap/test.yaml: user_content"),
            "{msg}"
        );
    }

    #[test]
    fn a_shared_dir_with_dots_is_refused() {
        let msg = format!(
            "{:#}",
            open("webroot: /w\nsource: {repo: x}\nuser_content: {shared: ['../x']}\n").unwrap_err()
        );
        assert!(msg.contains("`shared: ../x`"), "{msg}");
    }

    #[test]
    fn opening_derives_the_layout() {
        let site = open("webroot: /w\nsource: {repo: x}\n").unwrap();
        assert_eq!(site.layout.root(), std::path::PathBuf::from("/w/ROOT"));
        assert!(site.shared.is_empty());
    }
}
