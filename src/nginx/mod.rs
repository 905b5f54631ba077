//! nginx as rootswap sees it: the server block `rootswap nginx` prints, and
//! a parser that reads an existing configuration to check it.
//!
//! - [`block`]: the server block for the configured layout (document root
//!   through the link, `$realpath_root` after the include, dot files
//!   denied), each line commented with why it is there;
//! - [`parse`]: the configuration parser (includes followed, from the disk
//!   or from `nginx -T`) and the PHP locations with what they send php-fpm.
//!
//! What doctor concludes from a parsed configuration lives in
//! [`crate::doctor`].

pub mod block;
pub mod parse;

pub use block::{command, document_root, server_block, Args, DEFAULT_FPM};
pub use parse::{load, php_locations, Conf, Directive, PhpLocation};
