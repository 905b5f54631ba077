//! Apache 2.4 as rootswap sees it: the `<VirtualHost>` `rootswap apache`
//! prints, and a reader of an existing configuration for doctor.
//!
//! Apache has no `$realpath_root`: it hands PHP the path through the link,
//! whether PHP runs in php-fpm (mpm_event + `mod_proxy_fcgi`) or inside
//! Apache (mpm_prefork + mod_php). What makes that safe is PHP's side:
//! no realpath cache (`realpath_cache_size=0`) and OPcache keyed on real
//! paths (`opcache.revalidate_path=1`), see docs/zero-downtime.md#apache.
//! With mod_php, rootswap clears OPcache through the host (`opcache.http`).
//!
//! - [`block`]: the `<VirtualHost>` for the configured layout, each line
//!   commented with why it is there;
//! - [`parse`]: the configuration reader (includes followed, from the disk
//!   or the files `apache2ctl -t -D DUMP_INCLUDES` names) and the sites
//!   it serves with their PHP handler.
//!
//! What doctor concludes from it lives in [`crate::doctor`].

pub mod block;
pub mod parse;

pub use block::{command, virtual_host, Args, PHP_SETTINGS};
pub use parse::{load, sites, Conf, Handler, Site};
