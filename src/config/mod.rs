//! Configuration: the YAML file (`-c/--config`, default `./rootswap.yaml`).
//!
//! Every key is documented in `config.example.yaml`, with its default
//! (`tests/config_reference.rs` checks both ways). Unknown keys are an error
//! naming the key and its line; `${VAR}` in every string value (hook commands
//! excepted: the shell expands those) is replaced from the environment (an
//! unset variable is an error naming it).

//!
//! A leaf of the model layer: it reads and checks what the text alone
//! decides, and imports nothing but [`crate::fsutil`] and [`crate::preset`]
//! (whose values lie under the file's). What needs the disk or compiled
//! rules (the user-content globs, the shared directories) is checked when the
//! site is opened ([`crate::site::Site::open`]).
//!
//! - `schema.rs`: the keys, their types and defaults;
//! - `adapters.rs`: serde adapters (durations, hook entries);
//! - `load.rs`: reading the file, the preset laid under it;
//! - `env.rs`: `${VAR}` expansion and `~/` paths;
//! - `validate.rs` and `places.rs`: the checks.

mod adapters;
mod env;
mod load;
mod places;
mod schema;
mod validate;

pub use adapters::{parse_duration, strip_optional};
pub use places::{check_shared_dir, normalize, EVICTING_PREFIX, PARTIAL_PREFIX};
pub use schema::*;

#[cfg(test)]
mod tests;
