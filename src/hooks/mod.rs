//! The hooks: shell commands a deploy runs (`composer install`, `php
//! artisan config:cache`, restarting queue workers), and what rootswap
//! guarantees about them.
//!
//! - `run.rs`: running a hook list ([`run_all`]) with its environment
//!   ([`HookEnv`]), and the check for credentials a hook left in the
//!   public directory ([`exposed_credentials`]);
//! - `tools.rs`: is a hook's tool there? optional hooks (`"? CMD"`);
//! - `output.rs`: streaming a hook's output with deadlines;
//! - `procs.rs`: finding every process of a hook run, to stop it in time.

mod output;
mod procs;
mod run;
mod tools;

pub use run::{exposed_credentials, run_all, HookEnv};
