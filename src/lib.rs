//! rootswap deploys a PHP site from Git into `webroot/ROOT` with zero
//! downtime, following Enscale's flow. Each step of the flow is a file of
//! [`deploy`] (named like the step's line of output) over the mechanisms
//! that do the work:
//!
//! | step of the flow | deploy step (`src/deploy/`) | mechanisms |
//! |---|---|---|
//! | 1. poll the branch, or deploy now | `fetch.rs` (and [`serve`]'s poll) | [`source`] |
//! | 2. copy ROOT to `ROOT_YYYY.MM.DD-HH.MM.SS` | `snapshot.rs`, `in_snapshot.rs` | [`snapshots`], [`copy`], [`user_content`] (watch) |
//! | 3. point the serving link at the snapshot | `to_snapshot.rs` | [`link`], [`drain`], [`user_content`] (carry) |
//! | 4. the new commit into ROOT, the build hooks | `checkout.rs`, `hooks.rs` | [`source`], [`shared`], [`hooks`] |
//! | 5. user files written meanwhile back into ROOT | `copy_back.rs` | [`user_content`] (carry) |
//! | 6. the link back to ROOT, evict the oldest snapshot | `to_root.rs`, `after_switch.rs`, `evict.rs`, `record.rs` | [`link`], [`opcache`], [`health`], [`snapshots`], [`history`] |
//!
//! The flow is written once, in [`deploy::prepare`] and
//! [`deploy::Prepared::commit`]; it takes a [`site::Site`], opened once by
//! the front-ends ([`serve`], the fleet agent, the commands of the binary).
//!
//! The modules sit in layers, each importing only from its own layer or
//! the layers below (checked by a test, see `src/layers.rs`):
//!
//! - util: [`commit`], [`crashpoint`], [`fsutil`], [`redact`], [`progress`],
//!   [`repo_path`], [`hostkeys`], [`copy`], [`link`], [`deploy_lock`];
//! - model: [`preset`], [`config`], [`layout`], [`state`], [`journal`], [`history`];
//! - mechanisms: [`source`], [`user_content`], [`shared`], [`snapshots`],
//!   [`adopt`], [`hooks`], [`php_fpm`], [`opcache`], [`drain`], [`health`],
//!   [`notify`], [`nginx`], [`apache`], [`caddy`], [`webserver`], [`cron`];
//! - the site: [`site`];
//! - flows: [`recover`], [`deploy`], [`rollback`], [`init`];
//! - read-outs: [`status`], [`report`], [`json`], [`effective_config`], [`doctor`];
//! - [`fleet`];
//! - front-ends: [`serve`], [`demo`].
//!
//! `docs/architecture.md` says where everything lives.

#![warn(missing_docs)]

pub mod adopt;
pub mod apache;
pub mod caddy;
pub mod commit;
pub mod config;
pub mod copy;
pub mod crashpoint;
pub mod cron;
pub mod demo;
pub mod deploy;
pub mod deploy_lock;
pub mod doctor;
pub mod drain;
pub mod effective_config;
pub mod fleet;
pub mod fsutil;
pub mod health;
pub mod history;
pub mod hooks;
pub mod hostkeys;
pub mod init;
pub mod journal;
pub mod json;
#[cfg(test)]
mod layers;
pub mod layout;
pub mod link;
pub mod nginx;
pub mod notify;
pub mod opcache;
pub mod php_fpm;
pub mod preset;
pub mod progress;
pub mod recover;
pub mod redact;
pub mod repo_path;
pub mod report;
pub mod rollback;
pub mod serve;
pub mod shared;
pub mod site;
pub mod snapshots;
pub mod source;
pub mod state;
pub mod status;
pub mod user_content;
pub mod webserver;
