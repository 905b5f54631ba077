//! rootswap's integration tests: one test binary (Cargo.toml's
//! `[[test]] name = "integration"`, `autotests = false`), so the support
//! module and the library link once instead of once per file.
//!
//! Each `tests/NAME.rs` beside this file is a module of the binary with the
//! tests it always had: `cargo test --test integration NAME::` runs the
//! tests of one file (what `cargo test --test NAME` did), `cargo test
//! --test integration NAME::some_test` one test. `tests/support/` is what
//! they share (see its module doc); a new test file needs a `mod` line here.
//!
//! Tests of all files run in one process, side by side: a test that starts
//! real servers or asserts on timing takes [`support::heavy`] first, and no
//! test changes process-wide state (environment, working directory, umask,
//! signal handlers): it gives such settings to the child it runs.

mod support;

mod app_data;
mod config_reference;
mod copy_engine;
mod copy_props;
mod copy_recycle;
mod crash;
mod dashboard;
mod deploy;
mod dokuwiki;
mod faults;
mod fleet;
mod fleet_net;
mod git_sources;
mod hook_escape;
mod hook_stages;
mod hostile;
mod init;
mod laravel;
mod layout_guard;
mod package;
mod pipeline;
mod presets;
mod progress;
mod repo_path_props;
mod secrets;
mod serve;
mod shared;
mod sites;
mod ssh;
mod submodules;
mod symfony;
mod uploads;
mod webserver;
mod wordpress;
mod zero_downtime;
