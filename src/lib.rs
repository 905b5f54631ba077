//! rootswap deploys a PHP site from Git into `webroot/ROOT` with zero
//! downtime, following Enscale's flow:
//!
//! 1. poll the branch (or deploy now) — [`source`], [`deploy`];
//! 2. copy `ROOT` to `ROOT_YYYY.MM.DD-HH.MM.SS` — [`snapshot`], [`copy`];
//! 3. point the serving link at that snapshot — [`switch`], [`drain`];
//! 4. deploy the new commit into `ROOT`, run the hooks — [`source`], [`hooks`];
//! 5. copy user files written meanwhile back into ROOT — [`user_content`];
//! 6. point the link back at ROOT, evict the oldest snapshot — [`switch`], [`snapshot`].
//!
//! The pipeline that strings these together is [`deploy::deploy`].

#![warn(missing_docs)]

pub mod adopt;
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
