//! What `--ref` names: git's revision syntax, read relative to what the
//! cache fetched. The branches of `source.repo` live in the cache under
//! `refs/remotes/origin/`, so `main~1` is read as
//! `refs/remotes/origin/main~1`, and `HEAD` as the configured branch.
//! Tags, commit ids (short or long) and suffixes such as `^2`, `~3` or
//! `^{commit}` work as in git. Reflog syntax (`main@{2}`) is refused: the
//! cache's reflog is not the history anyone pushed.

use anyhow::{anyhow, bail, Result};
use git2::Oid;

use super::repo::GitSource;

/// Branch and tag names shown in an error, at most.
const LISTED: usize = 20;

impl GitSource {
    /// Resolves what to deploy: the fetched branch head, or `reference`
    /// (a branch, tag or commit, with git's revision suffixes).
    pub fn resolve(&self, reference: Option<&str>) -> Result<Oid> {
        let Some(r) = reference else {
            let name = format!("refs/remotes/origin/{}", self.branch);
            return self.repo.refname_to_id(&name).map_err(|_| {
                anyhow!(
                    "branch '{}' not found in {}{}; set `source.branch` to an existing branch",
                    self.branch,
                    self.url,
                    self.known_refs()
                )
            });
        };
        if r.contains("@{") {
            bail!(
                "'{r}': reflog revisions (@{{…}}) are not supported, the cache's reflog is not the repository's history; \
                 give a branch, a tag, a commit id or an ancestor such as {}~1",
                self.branch
            );
        }
        for name in [format!("refs/remotes/origin/{r}"), format!("refs/tags/{r}")] {
            if let Ok(oid) = self.repo.refname_to_id(&name) {
                return self.peel_commit(oid);
            }
        }
        let spec = self.relative_to_fetched(r);
        match self.repo.revparse_single(&spec) {
            Ok(obj) => self.peel_commit(obj.id()),
            Err(e) => bail!(
                "'{r}' is not a branch, tag or commit of {} ({}){}; \
                 give one of those, optionally with ~N or ^N (for example {}~1)",
                self.url,
                e.message(),
                self.known_refs(),
                self.branch
            ),
        }
    }

    /// `r` with its leading name rewritten to the fetched branch it names
    /// (`main~2` → `refs/remotes/origin/main~2`, `HEAD^` → the configured
    /// branch's `^`); anything else unchanged.
    fn relative_to_fetched(&self, r: &str) -> String {
        let end = r.find(['~', '^', ':', '@']).unwrap_or(r.len());
        let (name, rest) = r.split_at(end);
        let branch = match name {
            "HEAD" => self.branch.as_str(),
            n => n,
        };
        let fetched = format!("refs/remotes/origin/{branch}");
        match !branch.is_empty() && self.repo.refname_to_id(&fetched).is_ok() {
            true => format!("{fetched}{rest}"),
            false => r.to_string(),
        }
    }

    pub(super) fn peel_commit(&self, oid: Oid) -> Result<Oid> {
        let obj = self
            .repo
            .find_object(oid, None)
            .map_err(|_| anyhow!("{oid} vanished from the cache repository"))?;
        Ok(obj
            .peel_to_commit()
            .map_err(|_| anyhow!("{oid} is not a commit"))?
            .id())
    }

    /// ` (branches fetched: …; tags: …)` for error messages, or "".
    pub(super) fn known_refs(&self) -> String {
        let branches = self.ref_names("refs/remotes/origin/*", "refs/remotes/origin/");
        let tags = self.ref_names("refs/tags/*", "refs/tags/");
        match (branches.is_empty(), tags.is_empty()) {
            (true, true) => String::new(),
            (false, true) => format!(" (branches fetched: {branches})"),
            (true, false) => format!(" (tags: {tags})"),
            (false, false) => format!(" (branches fetched: {branches}; tags: {tags})"),
        }
    }

    /// Up to [`LISTED`] names under `glob`, without `prefix`, comma-separated.
    fn ref_names(&self, glob: &str, prefix: &str) -> String {
        let Ok(refs) = self.repo.references_glob(glob) else {
            return String::new();
        };
        let mut names: Vec<String> = refs
            .flatten()
            .filter_map(|r| r.name().map(|n| n.trim_start_matches(prefix).to_string()))
            .collect();
        names.sort();
        let more = names.len().saturating_sub(LISTED);
        names.truncate(LISTED);
        let mut out = names.join(", ");
        if more > 0 {
            out.push_str(&format!(" and {more} more"));
        }
        out
    }
}
