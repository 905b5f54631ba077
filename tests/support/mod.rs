//! What the integration tests share: a scratch world with a real Git
//! repository and the real `rootswap` binary ([`World`]), outside tools and
//! the skip-or-fail rule, processes stopped by PID ([`Proc`]) and bounded
//! waits, a free port and one HTTP client ([`Http`]), php-fpm ([`Fpm`]), nginx
//! ([`Nginx`]), a `git daemon` ([`GitDaemon`]), Apache ([`Apache`]) and Caddy ([`Caddy`]) started as the test's own processes, the lock that
//! keeps timing-sensitive tests apart ([`heavy`]), and the framework apps
//! ([`Nginx`]), Apache ([`Apache`]) and Caddy ([`Caddy`]) started as the test's own processes, the lock that
//! keeps timing-sensitive tests apart ([`heavy`]), the fleet's load checker ([`Load`]), and the framework apps
//! under load (`apps`, `app_writer`).
#![allow(dead_code)]

mod apache;
pub mod app_writer;
pub mod apps;
mod caddy;
mod fpm;
mod git_daemon;
mod heavy;
pub mod load;
mod net;
mod nginx;
mod proc;
/// Framework skeletons and fake `composer`/`php` tools (fixtures/).
#[path = "../../fixtures/skeletons.rs"]
pub mod skeletons;
mod tools;
mod world;

pub use apache::{require_apache, Apache, Mpm};
pub use caddy::{caddy_servers, Caddy};
pub use fpm::{Fpm, Pool};
pub use git_daemon::GitDaemon;
pub use heavy::heavy;
pub use load::{parse_pair, Load};
pub use net::{free_port, http, Http};
pub use nginx::Nginx;
pub use proc::{wait_for, wait_listening, wait_until, Proc};
pub use tools::*;
pub use world::*;
