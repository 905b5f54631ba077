//! `rootswap serve`: the unattended service.
//!
//! It polls the branch on the `auto_deploy` schedule, watches the refs of a
//! local repository, answers the deploy trigger URL, Git host webhooks and
//! the dashboard on one listener, and runs every deploy through
//! [`crate::deploy::deploy`]: one code path deploys, whoever asked. At most
//! one deploy runs at a time ([`Service::try_begin`]); a request that finds
//! one running is skipped and logged, never queued.
//!
//! SIGTERM/SIGINT let a running deploy finish, then the service exits 0;
//! SIGHUP and edits of the config file reload it (an invalid one is rejected
//! and the old one kept).
//!
//! Where each part lives, from the ground up:
//!
//! - `check`: why the service looks at the branch; `deliveries`: webhook
//!   deliveries seen lately; `metrics`: the counters and the Prometheus
//!   text; `schedule`: the `auto_deploy` schedule and the backoff;
//!   `settings`: the checks of `trigger:` and `auto_deploy:`; `watch`: the
//!   refs and config file watches; `listener`: the TCP listener's limits;
//! - `service`: the shared state and the one gate, [`Service::start`], that
//!   every deploy asked of the service goes through (on a fleet node it asks
//!   the fleet); [`events`]: the running deploy's log for the dashboard;
//!   `poll`: one check of the branch at a time, and the deploy it calls for;
//! - `auth`: request guards (secrets, tokens, the `Host` and origin checks);
//!   `replies`: the JSON answers the API shares, fleet answers included;
//! - the endpoints: `deploy_api` (`POST /deploy`, `/status`, `/metrics`,
//!   `/health`), `webhook` (`/webhook/github`, `/webhook/gitlab`),
//!   [`dashboard`] (`/` and `/dashboard/…`);
//! - `http`: the one router and the HTTP server; `run`: start, reload, stop.

mod auth;
mod check;
pub mod dashboard;
mod deliveries;
mod deploy_api;
pub mod events;
mod http;
mod listener;
mod metrics;
mod poll;
mod replies;
mod run;
mod schedule;
mod service;
mod settings;
mod watch;
mod webhook;

pub use check::Check;
pub use run::run;
pub use schedule::Backoff;
pub use service::{Answer, Busy, Service};
