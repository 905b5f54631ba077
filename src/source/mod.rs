//! The Git source: the cache repository, what a commit holds, the plan
//! between two commits and the checkout that applies it.
//!
//! A bare cache repository in `<state>/repo.git` mirrors the configured
//! remote. [`GitSource::fetch`] brings the branch in; [`GitSource::plan`]
//! lists what differs between the live commit and the new one, and
//! [`GitSource::checkout`] applies that list to ROOT: changed files are
//! written to a temporary name and renamed over the old one (new files in
//! directories the checkout creates are written in place), by several
//! workers when there are many; files deleted in the repository are removed, untracked files are left alone, and no `.git`
//! ever lands in ROOT.

//!
//! - `repo.rs`: [`GitSource`], the cache repository and its remote;
//! - `fetch.rs`: fetching over the network (shallow with `source.depth`) or
//!   reading a local repository in place;
//! - `local.rs`: a repository on this machine, read in place;
//! - `revision.rs`: what `--ref` names;
//! - `auth.rs`: credentials and host keys for the fetch;
//! - `tree.rs`: a commit's tracked files and `.gitignore` files;
//! - `plan.rs` and `diff.rs`: what differs between two commits;
//! - `submodules.rs`: submodules, walked as the trees of their commits,
//!   fetched into the cache repository;
//! - `checkout.rs`: writing a plan into ROOT.

mod auth;
mod checkout;
mod diff;
mod fetch;
mod local;
mod plan;
mod repo;
mod revision;
mod submodules;
mod tree;

pub use diff::{Change, ChangeKind};
pub use local::is_local_path;
pub use plan::{link_stays_inside, ExternalLink, Plan, RefusedTree};
pub use repo::{short, GitSource};
pub use submodules::{Missing, MissingSubmodules, SubmoduleChange};
pub use tree::IgnoreFile;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn symlinks_must_stay_inside() {
        assert!(link_stays_inside(
            Path::new("vendor/bin/phpunit"),
            Path::new("../phpunit/phpunit/phpunit")
        ));
        assert!(link_stays_inside(Path::new("a"), Path::new("b")));
        assert!(!link_stays_inside(
            Path::new("a"),
            Path::new("../etc/passwd")
        ));
        assert!(!link_stays_inside(Path::new("a/b"), Path::new("../../x")));
        assert!(!link_stays_inside(Path::new("a"), Path::new("/etc/passwd")));
        assert!(!link_stays_inside(
            Path::new("a/b"),
            Path::new("c/../../../x")
        ));
    }
}
