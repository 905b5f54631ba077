//! `rootswap doctor`: checks what would cause downtime or stale code, each
//! with ✓ or ✗ and the fix. The exit code is non-zero when a ✗ would cause
//! downtime or stale code (other ✗ are worth fixing but do not).
//!
//! One file per area checked, each check a small function returning
//! [`Check`]s, in the order doctor prints them: `layout.rs` (the link, one
//! filesystem, free space, the state dir), `served.rs` (what nginx could hand
//! out: the state dir, credentials, `.git`, symlinks leaving ROOT),
//! `shared.rs` (`user_content.shared`), `php.rs` (php-fpm, OPcache, the
//! status page `drain: auto` reads), the web server found serving the site
//! ([`crate::webserver`]) with its checks: `nginx.rs` (`$realpath_root` in
//! every PHP location served through the link), `apache.rs` (the
//! `<VirtualHost>` through the link, its MPM and PHP handler, the PHP settings
//! a path through the link needs), `caddy.rs` (`resolve_root_symlink` in
//! every `php_fastcgi` served through the link), and `cron.rs` (jobs that run
//! PHP from ROOT's path). `command.rs` runs them all and prints the report.

mod apache;
mod caddy;
mod check;
mod command;
mod cron;
mod layout;
mod nginx;
mod php;
mod served;
mod shared;

pub use check::Check;
pub use command::{checks, command, Args};
