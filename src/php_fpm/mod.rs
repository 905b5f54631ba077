//! php-fpm as rootswap talks to it: where it listens, the FastCGI client
//! that sends it one request, and its status page.
//!
//! - [`endpoint`]: the [`Endpoint`] type (a unix socket or `host:port`), the
//!   configured one (`opcache.fastcgi`), and the search for the one php-fpm
//!   of this machine when none is configured ([`locate`]);
//! - [`fastcgi`]: one FastCGI request, no body, and php-fpm's [`Reply`];
//! - [`status`]: php-fpm's status page (`pm.status_path`, `?full&json`),
//!   which tells which worker runs which script.
//!
//! What is sent (the OPcache script, the drain's questions) is decided by
//! [`crate::opcache`] and [`crate::drain`]; this folder imports neither.

pub mod endpoint;
pub mod fastcgi;
pub mod status;

pub use endpoint::{configured, locate, Endpoint, Located};
pub use fastcgi::{request, Reply, TIMEOUT};
pub use status::{fpm_status, FpmStatus, Proc};
