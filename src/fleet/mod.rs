//! Fleet deploys: several web nodes of one site switch to a new version
//! together, coordinated through etcd (the `fleet:` section of the config).
//!
//! Every node's `rootswap serve` keeps a membership key alive on a lease and
//! takes part in an election ([`Agent`]); the leader polls the branch. A
//! deploy is two-phase ([`coordinator`]):
//!
//! 1. the coordinator takes the fleet's deploy lock (a key on a lease; its
//!    revision is the fencing token every later write compares) and writes a
//!    deploy record: commit, members, one snapshot name, a deadline;
//! 2. every member prepares (snapshot, serve the snapshot, checkout, hooks,
//!    copy-back) and writes `prepared` or `failed`;
//! 3. the commit point is ONE etcd transaction that writes `commit` only if
//!    every member's `prepared` key exists, no `abort` exists and the lock is
//!    unchanged; before it, any failure, lost member or the deadline makes
//!    someone write `abort` (only if `commit` does not exist), so a deploy is
//!    either committed everywhere or aborted everywhere;
//! 4. every member switches back to ROOT and writes `switched` with the
//!    instant of its rename. A node that was down at the commit point
//!    finishes the switch when it comes back.
//!
//! Keys live under `/rootswap/<site>/` ([`Keys`]).
//!
//! Where things live: [`keys`] (the key layout), [`records`] (the values
//! kept under it), [`view`] (one deploy as etcd shows it now), [`deploy_lock`]
//! (the fleet's deploy lock), [`coordinator`] and [`settle`] (the
//! coordinator's two phases and the verdict after them), [`etcd`] (the
//! client), [`endpoints`] (one client per etcd endpoint, failing over),
//! [`status`] (`rootswap fleet status`), [`cli`] (the commands).
//! A node's part is the [`Agent`]: [`agent`] (joining, leaving, the typed
//! answers to a deploy asked of this node), [`membership`] (lease and
//! election), [`catch_up`] (following the fleet's records and catching up
//! with a missed commit point) and [`participate`] (this node's half of a
//! deploy). The fleet knows no HTTP and no service: `rootswap serve` gives
//! the agent what it needs (the configuration in force, what to do on
//! becoming the leader) and turns its answers into responses.

pub mod agent;
pub mod catch_up;
pub mod cli;
pub mod coordinator;
pub mod deploy_lock;
pub mod endpoints;
pub mod etcd;
mod keep_alive;
pub mod keys;
pub mod membership;
mod no_service;
pub mod participate;
pub mod records;
pub mod settle;
pub mod status;
pub mod view;

pub use agent::{Agent, Answer, ConfigFn, LeaderFn};
pub use coordinator::{coordinate, Aborted, Coordinate, Event, FleetOutcome};
pub use deploy_lock::Busy;
pub use keys::Keys;
pub use records::{
    local_instant, max_switch_wait, now_ms, switch_delay_for, Committed, DeployRecord, Member,
    NodeReport, NodeState, Revert,
};
