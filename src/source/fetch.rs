//! Bringing commits into the cache repository: from a remote over the
//! network (whole history, or the last `source.depth` commits), or from a
//! repository on this machine, read in place.
//!
//! A local `source.repo` is not copied: its object directory becomes an
//! alternate object database of the cache (`objects/info/alternates`, as
//! `git clone --shared` does), and a fetch only copies its refs. A
//! one-file deploy's fetch then costs the refs it reads, not a walk of both
//! commits' trees to build a pack. If that repository later prunes objects
//! the cache relied on (a history rewrite followed by `git gc`), the live
//! commit is no longer found and the next deploy writes the whole tree, as
//! a first deploy does: slower, never wrong.

use std::path::Path;

use anyhow::{Context, Result};
use git2::{FetchOptions, Oid, Repository};

use super::auth::{callbacks, Why};
use super::local::{names, open_local};
use super::repo::GitSource;

/// libgit2's depth that asks for the whole history of a shallow repository.
const UNSHALLOW: u32 = i32::MAX as u32;

impl GitSource {
    /// Fetches the configured branch (and, with `all`, every branch and tag).
    pub fn fetch(&self, all: bool) -> Result<()> {
        match &self.local {
            Some(path) => self.fetch_local(path, all),
            None => self.fetch_remote(all, self.depth),
        }
    }

    /// Fetches, then resolves `reference` (or the branch head). In a
    /// shallow cache, a revision that reaches past the fetched history
    /// (`main~5`, an old commit id) fetches the whole history once and is
    /// resolved again.
    pub fn fetch_and_resolve(&mut self, reference: Option<&str>) -> Result<Oid> {
        self.fetch(reference.is_some())?;
        match self.resolve(reference) {
            Ok(oid) => Ok(oid),
            Err(e) if self.repo.is_shallow() && reference.is_some_and(reaches_into_history) => {
                tracing::info!(
                    "'{}' is not in the last {} commits fetched (source.depth); fetching the whole history",
                    reference.unwrap_or_default(),
                    self.depth
                );
                self.fetch_remote(true, UNSHALLOW)
                    .with_context(|| format!("{e:#}"))?;
                // libgit2 keeps the shallow boundary it read at open.
                self.repo = Repository::open_bare(self.repo.path())
                    .context("cannot reopen the cache repository")?;
                self.resolve(reference)
            }
            Err(e) => Err(e),
        }
    }

    /// A fetch over libgit2's transports (`depth` 0: the whole history).
    fn fetch_remote(&self, all: bool, depth: u32) -> Result<()> {
        let mut remote = self
            .repo
            .find_remote("origin")
            .context("cache repository has no remote")?;
        let branch_spec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.branch);
        let mut specs = vec![branch_spec];
        if all {
            specs.push("+refs/heads/*:refs/remotes/origin/*".into());
            specs.push("+refs/tags/*:refs/tags/*".into());
        }
        self.ssh.preflight()?;
        let why = Why::default();
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(callbacks(&self.ssh, &why));
        opts.download_tags(git2::AutotagOption::None);
        // `source.depth: 0` on a cache fetched shallow before: the whole history.
        let depth = match depth {
            0 if self.repo.is_shallow() => UNSHALLOW,
            d => d,
        };
        opts.depth(i32::try_from(depth).unwrap_or(i32::MAX));
        remote
            .fetch(&specs, Some(&mut opts), None)
            .map_err(|e| why.error("cannot fetch from", &self.url, &e))?;
        Ok(())
    }

    /// A fetch from a repository on this machine: its objects are already
    /// reachable through the alternates file, so only refs are copied.
    fn fetch_local(&self, path: &Path, all: bool) -> Result<()> {
        let local = open_local(path)?;
        let mut refs = vec![(
            format!("refs/heads/{}", self.branch),
            format!("refs/remotes/origin/{}", self.branch),
        )];
        if all {
            refs.extend(names(&local, "refs/heads/*").into_iter().map(|n| {
                let to = format!("refs/remotes/origin/{}", &n["refs/heads/".len()..]);
                (n, to)
            }));
            refs.extend(
                names(&local, "refs/tags/*")
                    .into_iter()
                    .map(|n| (n.clone(), n)),
            );
        }
        for (from, to) in refs {
            let Ok(oid) = local.refname_to_id(&from) else {
                continue; // a missing branch is reported when it is resolved
            };
            self.repo
                .reference(&to, oid, true, "rootswap: fetch in place")
                .with_context(|| {
                    format!(
                        "cannot record {from} of {} in the cache repository",
                        path.display()
                    )
                })?;
        }
        Ok(())
    }

    /// The branch head in the repository, without fetching objects.
    pub fn remote_head(&self) -> Result<Option<Oid>> {
        match &self.local {
            Some(path) => Ok(open_local(path)?
                .refname_to_id(&format!("refs/heads/{}", self.branch))
                .ok()),
            None => self.ls_remote_head(),
        }
    }
}

/// True for revisions that may name a commit behind a shallow history:
/// ancestry (`~`, `^`) or a commit id.
fn reaches_into_history(r: &str) -> bool {
    r.contains(['~', '^']) || (r.len() >= 4 && r.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestry_and_ids_reach_into_history_names_do_not() {
        assert!(reaches_into_history("main~3"));
        assert!(reaches_into_history("v2^"));
        assert!(reaches_into_history("a1b2c3d"));
        assert!(!reaches_into_history("main"));
        assert!(!reaches_into_history("v2.3"));
        assert!(!reaches_into_history("abc"));
    }
}
