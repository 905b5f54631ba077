//! Caddy as rootswap sees it: the site block `rootswap caddy` prints, and
//! the reader of an existing configuration that doctor checks.
//!
//! - [`block`]: the site block for the configured layout (root through the
//!   link, `php_fastcgi` with `resolve_root_symlink`, dot files denied),
//!   each line commented with why it is there;
//! - [`parse`]: the configuration as Caddy reads it (a Caddyfile through
//!   `caddy adapt`, or its JSON) and the handlers that pass PHP to php-fpm.
//!
//! What doctor concludes from them lives in [`crate::doctor`].

pub mod block;
pub mod parse;

pub use block::{site_block, upstream, Args};
pub use parse::{load, php_handlers, Conf, PhpHandler, DEFAULT_CADDYFILE};
