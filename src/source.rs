//! Step 1 and 4 of the flow: the Git source.
//!
//! A bare cache repository in `<state>/repo.git` mirrors the configured
//! remote. [`GitSource::fetch`] brings the branch in; [`GitSource::plan`]
//! lists what differs between the live commit and the new one, and
//! [`GitSource::checkout`] applies that list to ROOT: changed files are
//! written to a temporary name and renamed over the old one, files deleted in
//! the repository are removed, untracked files are left alone, and no `.git`
//! ever lands in ROOT.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use git2::{FetchOptions, ObjectType, Oid, RemoteCallbacks, Repository, Tree};

use crate::config::{ExternalSymlinks, SourceConfig};
use crate::hostkeys;
use crate::repo_path::{BadName, RepoPath};

mod diff;

/// The cached mirror of the configured repository.
///
/// Credentials written into `source.repo` (`https://user:password@host/…`)
/// never reach the disk: the cache's remote is the URL without them, and
/// they are handed to libgit2 through the credential callback at each fetch.
pub struct GitSource {
    repo: Repository,
    /// `source.repo` without user and password: the remote, and what messages show.
    url: String,
    branch: String,
    subdir: PathBuf,
    external: ExternalSymlinks,
    ssh: SshAuth,
}

/// User name and password (or token) for an http(s) remote, from the
/// userinfo of `source.repo`.
#[derive(Clone)]
struct UserPass {
    user: String,
    password: String,
}

impl std::fmt::Debug for UserPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.user, crate::redact::MASK)
    }
}

/// How rootswap authenticates to an ssh remote and checks its host key.
#[derive(Debug, Clone)]
struct SshAuth {
    /// `source.ssh_key`: the only key offered when set.
    key: Option<PathBuf>,
    /// Host and port of an ssh URL (None: not ssh).
    host: Option<(String, u16)>,
    /// known_hosts policy.
    policy: hostkeys::Policy,
    /// Credentials taken out of `source.repo` (never stored in the cache).
    userpass: Option<UserPass>,
}

/// A symlink of a commit whose target leaves the deployed tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalLink {
    /// Where the link is, relative to ROOT.
    pub path: PathBuf,
    /// What it points at, as Git has it.
    pub target: PathBuf,
}

impl std::fmt::Display for ExternalLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "symlink {} -> {} points outside the deployed tree; deployed as Git has it (`source.external_symlinks: refuse` refuses such commits)",
            self.path.display(),
            self.target.display()
        )
    }
}

/// One file-level change between two commits (paths relative to the deployed subdir).
#[derive(Debug, Clone)]
pub struct Change {
    /// Path relative to ROOT, every name checked ([`crate::repo_path`]).
    pub path: RepoPath,
    /// What happens to it.
    pub kind: ChangeKind,
}

/// Kind of a [`Change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// New in the target commit.
    Added {
        /// Blob id of the new content.
        blob: Oid,
        /// Git file mode (0o100644, 0o100755, 0o120000).
        mode: i32,
    },
    /// Content or mode changed.
    Modified {
        /// Blob id of the new content.
        blob: Oid,
        /// Git file mode.
        mode: i32,
    },
    /// Gone from the target commit.
    Deleted,
}

/// What a checkout will do: the changes from one commit to another.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Commit live now (None: first deploy or adopted site).
    pub from: Option<Oid>,
    /// Commit to deploy.
    pub to: Oid,
    /// Deletions first, then additions and modifications.
    pub changes: Vec<Change>,
    /// Symlinks this plan writes whose target leaves the deployed tree
    /// (allowed by `source.external_symlinks`; each is worth one warning).
    pub external_links: Vec<ExternalLink>,
}

impl Plan {
    /// Counts of (added, modified, deleted).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for ch in &self.changes {
            match ch.kind {
                ChangeKind::Added { .. } => c.0 += 1,
                ChangeKind::Modified { .. } => c.1 += 1,
                ChangeKind::Deleted => c.2 += 1,
            }
        }
        c
    }
}

/// A `.gitignore` file of a commit: its directory (relative to the repository root) and text.
#[derive(Debug, Clone)]
pub struct IgnoreFile {
    /// Directory holding the file, relative to the repository root ("" for the top).
    pub dir: PathBuf,
    /// File contents.
    pub text: String,
}

impl GitSource {
    /// Opens (creating on first use) the cache repository under `state`.
    pub fn open(state: &Path, cfg: &SourceConfig) -> Result<GitSource> {
        let (url, userpass) = crate::redact::split_userinfo(&resolve_url(&cfg.repo));
        if is_local_path(&url) && !Path::new(&url).exists() {
            bail!(
                "source.repo {} does not exist; set `source.repo` to the repository's URL or an existing local path",
                crate::redact::text(&cfg.repo)
            );
        }
        let path = state.join("repo.git");
        let repo = if path.exists() {
            Repository::open_bare(&path).with_context(|| {
                format!("cannot open the cache repository {}; remove it and deploy again to re-create it", path.display())
            })?
        } else {
            let repo = Repository::init_bare(&path).with_context(|| {
                format!("cannot create the cache repository {}", path.display())
            })?;
            private_config(&path);
            repo
        };
        set_remote(&repo, &path, &url)?;
        let ssh = SshAuth {
            key: cfg.ssh_key.clone(),
            host: hostkeys::ssh_host_port(&url),
            policy: hostkeys::Policy::from_config(cfg.known_hosts.as_deref(), state),
            userpass: userpass.map(|(user, password)| UserPass { user, password }),
        };
        Ok(GitSource {
            repo,
            url,
            branch: cfg.branch.clone(),
            subdir: PathBuf::from(cfg.subdir.trim_matches('/')),
            external: cfg.external_symlinks,
            ssh,
        })
    }

    /// The repository URL (or absolute local path) fetched from, without
    /// credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fetches the configured branch (and, with `all`, every branch and tag).
    pub fn fetch(&self, all: bool) -> Result<()> {
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
        remote
            .fetch(&specs, Some(&mut opts), None)
            .map_err(|e| why.error("cannot fetch from", &self.url, &e))?;
        Ok(())
    }

    /// Removes `*.lock` files that a killed fetch left in the cache
    /// repository; libgit2 refuses to update a ref whose lock file exists, so
    /// one left behind would fail every later deploy. Call only with the
    /// deploy lock held: rootswap is the cache's only writer.
    pub fn clear_stale_locks(&self) -> Result<()> {
        for e in walkdir::WalkDir::new(self.repo.path())
            .into_iter()
            .filter_map(|e| e.ok())
        {
            if e.file_type().is_file() && e.file_name().to_string_lossy().ends_with(".lock") {
                tracing::warn!(
                    "removing {} left by an interrupted fetch",
                    e.path().display()
                );
                std::fs::remove_file(e.path())
                    .with_context(|| format!("cannot remove stale lock {}", e.path().display()))?;
            }
        }
        Ok(())
    }

    /// Asks the remote for the branch head without downloading objects (`git ls-remote`).
    pub fn remote_head(&self) -> Result<Option<Oid>> {
        let mut remote = self
            .repo
            .remote_anonymous(&self.url)
            .context("cannot create remote")?;
        self.ssh.preflight()?;
        let why = Why::default();
        let conn = remote
            .connect_auth(
                git2::Direction::Fetch,
                Some(callbacks(&self.ssh, &why)),
                None,
            )
            .map_err(|e| why.error("cannot reach", &self.url, &e))?;
        let want = format!("refs/heads/{}", self.branch);
        let head = conn
            .list()
            .map_err(|e| anyhow!("cannot list refs of {}: {}", self.url, e.message()))?
            .iter()
            .find(|h| h.name() == want)
            .map(|h| h.oid());
        Ok(head)
    }

    /// Resolves what to deploy: the fetched branch head, or `reference` (a
    /// branch, tag or commit) when given.
    pub fn resolve(&self, reference: Option<&str>) -> Result<Oid> {
        let Some(r) = reference else {
            let name = format!("refs/remotes/origin/{}", self.branch);
            return match self.repo.refname_to_id(&name) {
                Ok(oid) => Ok(oid),
                Err(_) => Err(anyhow!(
                    "branch '{}' not found in {}{}; set `source.branch` to an existing branch",
                    self.branch,
                    self.url,
                    self.branch_list()
                )),
            };
        };
        for name in [format!("refs/remotes/origin/{r}"), format!("refs/tags/{r}")] {
            if let Ok(oid) = self.repo.refname_to_id(&name) {
                return self.peel_commit(oid);
            }
        }
        match self.repo.revparse_single(r) {
            Ok(obj) => self.peel_commit(obj.id()),
            Err(_) => bail!(
                "'{r}' is not a branch, tag or commit of {}{}",
                self.url,
                self.branch_list()
            ),
        }
    }

    fn peel_commit(&self, oid: Oid) -> Result<Oid> {
        let obj = self
            .repo
            .find_object(oid, None)
            .context("object vanished from the cache")?;
        Ok(obj
            .peel_to_commit()
            .map_err(|_| anyhow!("{oid} is not a commit"))?
            .id())
    }

    fn branch_list(&self) -> String {
        let mut names = Vec::new();
        if let Ok(refs) = self.repo.references_glob("refs/remotes/origin/*") {
            for r in refs.flatten() {
                if let Some(n) = r.name() {
                    names.push(n.trim_start_matches("refs/remotes/origin/").to_string());
                }
            }
        }
        if names.is_empty() {
            String::new()
        } else {
            format!(" (branches fetched: {})", names.join(", "))
        }
    }

    /// The configured branch's head as last fetched.
    pub fn branch_head(&self) -> Option<Oid> {
        self.repo
            .refname_to_id(&format!("refs/remotes/origin/{}", self.branch))
            .ok()
    }

    /// True when the cache has this commit.
    pub fn has_commit(&self, oid: &str) -> bool {
        Oid::from_str(oid)
            .ok()
            .and_then(|o| self.repo.find_commit(o).ok())
            .is_some()
    }

    /// `abc1234 subject line` for messages.
    pub fn describe(&self, oid: Oid) -> String {
        let short = short(oid);
        match self.repo.find_commit(oid) {
            Ok(c) => format!("{short} {}", c.summary().unwrap_or("")),
            Err(_) => short,
        }
    }

    /// The deployed tree of `commit`: the subdir's tree, or the whole tree.
    fn deployed_tree(&self, commit: Oid) -> Result<Option<Tree<'_>>> {
        let c = self
            .repo
            .find_commit(commit)
            .with_context(|| format!("commit {commit} is not in the cache"))?;
        let tree = c.tree().context("cannot read commit tree")?;
        if self.subdir.as_os_str().is_empty() {
            return Ok(Some(tree));
        }
        match tree.get_path(&self.subdir) {
            Ok(entry) if entry.kind() == Some(ObjectType::Tree) => Ok(Some(
                self.repo
                    .find_tree(entry.id())
                    .context("cannot read subdir tree")?,
            )),
            _ => Ok(None),
        }
    }

    /// Files (and symlinks) tracked by `commit`, relative to the deployed subdir.
    pub fn tracked(&self, commit: Oid) -> Result<HashSet<PathBuf>> {
        Ok(self.tracked_and_ignores(commit)?.0)
    }

    /// The `.gitignore` files of `commit` that apply to the deployed tree
    /// (those inside the subdir and those in its ancestors), with directories
    /// relative to the repository root.
    pub fn ignore_files(&self, commit: Oid) -> Result<Vec<IgnoreFile>> {
        Ok(self.tracked_and_ignores(commit)?.1)
    }

    /// [`GitSource::tracked`] and [`GitSource::ignore_files`] in one walk of
    /// the commit's tree.
    pub fn tracked_and_ignores(&self, commit: Oid) -> Result<(HashSet<PathBuf>, Vec<IgnoreFile>)> {
        let mut tracked = HashSet::new();
        let mut ignores = Vec::new();
        let mut found = Vec::new();
        // The subdir's ancestors (the repository root included) may hold .gitignore files too.
        let c = self
            .repo
            .find_commit(commit)
            .with_context(|| format!("commit {commit} is not in the cache"))?;
        let root = c.tree().context("cannot read commit tree")?;
        for dir in self.subdir.ancestors().skip(1) {
            if let Ok(e) = root.get_path(&dir.join(".gitignore")) {
                found.push((dir.to_path_buf(), e.id()));
            }
        }
        if let Some(tree) = self.deployed_tree(commit)? {
            self.walk_tracked(&tree, &RepoPath::top(), &mut tracked, &mut found)?;
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        for (dir, id) in found {
            let blob = self
                .repo
                .find_blob(id)
                .context("cannot read .gitignore blob")?;
            ignores.push(IgnoreFile {
                dir,
                text: String::from_utf8_lossy(blob.content()).into_owned(),
            });
        }
        Ok((tracked, ignores))
    }

    /// Collects the files below `tree` (at `dir`) and its `.gitignore`
    /// files. A name git refuses is no tracked path, and nothing below it
    /// is: the checkout refuses such a commit before writing anything.
    fn walk_tracked(
        &self,
        tree: &Tree<'_>,
        dir: &RepoPath,
        tracked: &mut HashSet<PathBuf>,
        found: &mut Vec<(PathBuf, Oid)>,
    ) -> Result<()> {
        for e in tree.iter() {
            let Ok(path) = dir.child(e.name_bytes(), e.filemode() == 0o120000) else {
                continue;
            };
            match e.kind() {
                Some(ObjectType::Tree) => {
                    let sub = self.repo.find_tree(e.id()).with_context(|| {
                        format!("cannot read tree {} ({})", e.id(), path.display())
                    })?;
                    self.walk_tracked(&sub, &path, tracked, found)?;
                }
                Some(ObjectType::Blob) => {
                    if e.name_bytes() == b".gitignore" {
                        found.push((self.subdir.join(dir.as_path()), e.id()));
                    }
                    tracked.insert(path.to_path_buf());
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The deployed subdir, relative to the repository root ("" for all of it).
    pub fn subdir(&self) -> &Path {
        &self.subdir
    }

    /// Lists the changes from `from` (None: nothing deployed) to `to`.
    pub fn plan(&self, from: Option<Oid>, to: Oid) -> Result<Plan> {
        let new_tree = self.deployed_tree(to)?.ok_or_else(|| {
            anyhow!(
                "`source.subdir: {}` does not exist in commit {}; fix the subdir or the branch",
                self.subdir.display(),
                short(to)
            )
        })?;
        let old_tree = match from {
            Some(f) if self.repo.find_commit(f).is_ok() => self.deployed_tree(f)?,
            _ => None,
        };
        let (deletes, writes) = diff::changes(&self.repo, old_tree.as_ref(), &new_tree)
            .map_err(|e| refused_entry(e, to))?;
        let mut changes = deletes;
        changes.extend(writes);
        let mut plan = Plan {
            from,
            to,
            changes,
            external_links: Vec::new(),
        };
        plan.external_links = self.external_links(&plan)?;
        Ok(plan)
    }

    /// The symlinks `plan` writes that point outside ROOT; with
    /// `source.external_symlinks: refuse`, an error naming the first one
    /// (checked before anything is written).
    fn external_links(&self, plan: &Plan) -> Result<Vec<ExternalLink>> {
        let mut out = Vec::new();
        for ch in &plan.changes {
            let (ChangeKind::Added { blob, mode } | ChangeKind::Modified { blob, mode }) = ch.kind
            else {
                continue;
            };
            if mode != 0o120000 {
                continue;
            }
            let target = self
                .repo
                .find_blob(blob)
                .context("cannot read symlink blob")?;
            let target = PathBuf::from(String::from_utf8_lossy(target.content()).into_owned());
            if link_stays_inside(&ch.path, &target) {
                continue;
            }
            if self.external == ExternalSymlinks::Refuse {
                bail!(
                    "commit {} has a symlink {} -> {} that points outside the deployed tree, and `source.external_symlinks: refuse` is set; \
                     make the link relative and inside the repository, or set `source.external_symlinks: allow` to deploy it as Git has it",
                    short(plan.to),
                    ch.path.display(),
                    target.display()
                );
            }
            out.push(ExternalLink {
                path: ch.path.to_path_buf(),
                target,
            });
        }
        Ok(out)
    }

    /// Applies `plan` to `root`. Restartable: applying it twice gives the same tree.
    pub fn checkout(
        &self,
        plan: &Plan,
        root: &Path,
        mut progress: impl FnMut(&Path),
    ) -> Result<()> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        // Directories below ROOT known to be real directories (not symlinks)
        // during this checkout: each is checked once.
        let mut real_dirs = HashSet::new();
        for ch in &plan.changes {
            let dst = ch.path.under(root);
            progress(&ch.path);
            crate::crashpoint::hit("checkout-entry");
            match ch.kind {
                ChangeKind::Deleted => {
                    if !parents_are_dirs(root, &ch.path) {
                        continue; // a symlink or file took a parent's place: not ours to follow
                    }
                    match std::fs::symlink_metadata(&dst) {
                        Ok(m) if m.is_dir() => {} // a user directory took its place: leave it
                        Ok(_) => std::fs::remove_file(&dst)
                            .with_context(|| format!("cannot remove {}", dst.display()))?,
                        Err(_) => continue,
                    }
                    prune_empty_parents(root, &ch.path);
                }
                ChangeKind::Added { blob, mode } | ChangeKind::Modified { blob, mode } => {
                    ensure_dir(root, &ch.path, &mut real_dirs)?;
                    self.write_entry(root, &ch.path, blob, mode)?;
                }
            }
        }
        Ok(())
    }

    fn write_entry(&self, root: &Path, rel: &RepoPath, blob: Oid, mode: i32) -> Result<()> {
        let dst = rel.under(root);
        let parent = dst.parent().unwrap_or(root);
        let name = dst
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".rootswap-tmp-{name}"));
        let _ = std::fs::remove_file(&tmp);
        let content = self
            .repo
            .find_blob(blob)
            .with_context(|| format!("cannot read blob for {}", rel.display()))?;
        if mode == 0o120000 {
            let target = PathBuf::from(String::from_utf8_lossy(content.content()).into_owned());
            std::os::unix::fs::symlink(&target, &tmp)
                .with_context(|| format!("cannot create symlink {}", tmp.display()))?;
        } else {
            use std::os::unix::fs::OpenOptionsExt;
            let perm = if mode == 0o100755 { 0o755 } else { 0o644 };
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(perm)
                .open(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            f.write_all(content.content())
                .with_context(|| format!("cannot write {}", tmp.display()))?;
        }
        if let Ok(m) = std::fs::symlink_metadata(&dst) {
            if m.is_dir() {
                // The commit now has a file where a directory was: the commit wins.
                std::fs::remove_dir_all(&dst)
                    .with_context(|| format!("cannot replace directory {}", dst.display()))?;
            }
        }
        std::fs::rename(&tmp, &dst)
            .with_context(|| format!("cannot rename {} over {}", tmp.display(), dst.display()))?;
        Ok(())
    }
}

/// Points the cache's `origin` at `url` (credentials already taken out). A
/// cache written by an older rootswap kept the password in its `config`:
/// that remote is rewritten, with a log line.
fn set_remote(repo: &Repository, path: &Path, url: &str) -> Result<()> {
    match repo.find_remote("origin") {
        Ok(r) if r.url() == Some(url) => {}
        Ok(r) => {
            let had_secret = r
                .url()
                .is_some_and(|old| crate::redact::split_userinfo(old).1.is_some());
            repo.remote_set_url("origin", url)
                .context("cannot update the cache repository's remote")?;
            private_config(path);
            if had_secret {
                tracing::warn!(
                    "removed the credentials of `source.repo` from {}: they are no longer stored, \
                     rootswap passes them to the server at each fetch",
                    path.join("config").display()
                );
            }
        }
        Err(_) => {
            repo.remote_with_fetch("origin", url, "+refs/heads/*:refs/remotes/origin/*")
                .context("cannot configure the cache repository's remote")?;
            private_config(path);
        }
    }
    Ok(())
}

/// Makes the cache's `config` readable by its owner only (libgit2 writes it
/// following the umask); best effort, the state directory is private anyway.
fn private_config(repo_dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(
        repo_dir.join("config"),
        std::fs::Permissions::from_mode(0o600),
    );
}

/// Makes every directory above `path` (below `root`) a real directory,
/// replacing any file or symlink in the way, so that writing `path` never
/// follows a link out of ROOT. `known`: directories already made so.
fn ensure_dir(root: &Path, path: &RepoPath, known: &mut HashSet<PathBuf>) -> Result<()> {
    for cur in path.parents_under(root).into_iter().rev() {
        if known.contains(&cur) {
            continue;
        }
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                std::fs::remove_file(&cur).with_context(|| {
                    format!("cannot replace {} with a directory", cur.display())
                })?;
                std::fs::create_dir(&cur)
                    .with_context(|| format!("cannot create {}", cur.display()))?;
            }
            Err(_) => std::fs::create_dir(&cur)
                .with_context(|| format!("cannot create {}", cur.display()))?,
        }
        known.insert(cur);
    }
    Ok(())
}

/// True when every directory above `path` (below `root`) is a real
/// directory: a deletion never follows a symlink out of ROOT.
fn parents_are_dirs(root: &Path, path: &RepoPath) -> bool {
    path.parents_under(root)
        .iter()
        .all(|d| std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()))
}

/// Removes now-empty directories above `path`, up to (not including)
/// `root`: only the directories named by `path` itself, below `root`.
fn prune_empty_parents(root: &Path, path: &RepoPath) {
    for dir in path.parents_under(root) {
        if std::fs::remove_dir(&dir).is_err() {
            break;
        }
    }
}

/// A commit refused because its tree has an entry git refuses (checked
/// before anything is written; [`crate::repo_path`]).
#[derive(Debug)]
pub struct RefusedTree {
    /// Short id of the commit.
    pub commit: String,
    /// The entry and why.
    pub bad: BadName,
}

impl std::fmt::Display for RefusedTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "commit {} has a tree entry git refuses: {}; fix the commit (git would refuse to check it out)",
            self.commit, self.bad
        )
    }
}

impl std::error::Error for RefusedTree {}

/// The error for a commit whose tree has an entry git refuses (a
/// [`BadName`] from the walk): a [`RefusedTree`] naming the entry and the
/// commit; other errors of the walk as they are.
fn refused_entry(e: anyhow::Error, commit: Oid) -> anyhow::Error {
    match e.downcast::<BadName>() {
        Ok(bad) => anyhow::Error::new(RefusedTree {
            commit: short(commit),
            bad,
        }),
        Err(e) => e.context("cannot compare commits"),
    }
}

/// True when a symlink at `link` (relative to ROOT) with `target` resolves inside ROOT.
pub fn link_stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = link.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// Seven-character commit id.
pub fn short(oid: Oid) -> String {
    crate::commit::short(&oid.to_string()).to_string()
}

/// True when the repository is given as a local path rather than a URL.
pub fn is_local_path(repo: &str) -> bool {
    !(repo.contains("://") || (repo.contains('@') && repo.contains(':')))
}

/// Turns an existing local path into an absolute one; URLs are kept.
fn resolve_url(repo: &str) -> String {
    if !is_local_path(repo) {
        return repo.to_string();
    }
    match std::fs::canonicalize(repo) {
        Ok(p) => p.to_string_lossy().into_owned(),
        Err(_) => repo.to_string(),
    }
}

/// What the callbacks learnt when a remote operation failed (a refused host
/// key, a refused deploy key): libgit2's own message says less.
#[derive(Default, Clone)]
struct Why(std::rc::Rc<std::cell::RefCell<Option<String>>>);

impl Why {
    fn set(&self, msg: String) {
        *self.0.borrow_mut() = Some(msg);
    }

    fn error(&self, what: &str, url: &str, e: &git2::Error) -> anyhow::Error {
        let url = crate::redact::text(url);
        match self.0.borrow().as_ref() {
            Some(m) => anyhow!("{what} {url}: {m}"),
            None => anyhow!(
                "{what} {url}: {}; check `source.repo` and that this machine can reach it",
                crate::redact::text(e.message())
            ),
        }
    }
}

impl SshAuth {
    /// Checks what can be checked before connecting: the key file.
    fn preflight(&self) -> Result<()> {
        match (&self.key, &self.host) {
            (Some(k), Some(_)) => hostkeys::check_key_file(k),
            _ => Ok(()),
        }
    }
}

fn callbacks<'a>(ssh: &'a SshAuth, why: &Why) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    let mut tries = 0;
    let cred_why = why.clone();
    cb.credentials(move |url, user, allowed| {
        tries += 1;
        credential(ssh, &cred_why, tries, url, user.unwrap_or("git"), allowed)
    });
    let cert_why = why.clone();
    cb.certificate_check(move |cert, hostname| host_key_check(ssh, &cert_why, cert, hostname));
    cb
}

/// The credentials for attempt number `tries`: the deploy key alone when
/// `source.ssh_key` is set; else ssh-agent, `~/.ssh/id_*`; for http(s), the
/// user and password written in `source.repo` (once), else git's credential
/// helpers.
fn credential(
    ssh: &SshAuth,
    why: &Why,
    tries: u32,
    url: &str,
    user: &str,
    allowed: git2::CredentialType,
) -> std::result::Result<git2::Cred, git2::Error> {
    if let (Some(key), true) = (&ssh.key, allowed.contains(git2::CredentialType::SSH_KEY)) {
        if tries > 1 {
            let msg = format!(
                "the server refused the deploy key {} (source.ssh_key) for user {user}: add its public key \
                 (ssh-keygen -y -f {}) to the repository's deploy keys, or fix `source.ssh_key`",
                key.display(),
                key.display()
            );
            why.set(msg.clone());
            return Err(git2::Error::from_str(&msg));
        }
        return git2::Cred::ssh_key(user, None, key, None);
    }
    if tries > 4 {
        return Err(git2::Error::from_str(
            "authentication failed (tried ssh-agent, ~/.ssh keys and git credential helpers)",
        ));
    }
    if allowed.contains(git2::CredentialType::SSH_KEY) {
        if tries == 1 {
            return git2::Cred::ssh_key_from_agent(user);
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        for key in ["id_ed25519", "id_rsa", "id_ecdsa"] {
            let p = home.join(".ssh").join(key);
            if p.exists() {
                return git2::Cred::ssh_key(user, None, &p, None);
            }
        }
    }
    if let (Some(up), true) = (
        &ssh.userpass,
        allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT),
    ) {
        if tries > 1 {
            let msg = format!(
                "the server refused the user name and password (or token) given in `source.repo` for {}; \
                 check them, and that they may read the repository",
                crate::redact::text(url)
            );
            why.set(msg.clone());
            return Err(git2::Error::from_str(&msg));
        }
        return git2::Cred::userpass_plaintext(&up.user, &up.password);
    }
    if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
        if let Ok(cfg) = git2::Config::open_default() {
            return git2::Cred::credential_helper(&cfg, url, None);
        }
    }
    git2::Cred::default()
}

/// Checks an ssh server's host key against known_hosts ([`hostkeys::check`]);
/// TLS certificates are left to libgit2.
fn host_key_check(
    ssh: &SshAuth,
    why: &Why,
    cert: &git2::cert::Cert<'_>,
    hostname: &str,
) -> std::result::Result<git2::CertificateCheckStatus, git2::Error> {
    let Some(hk) = cert.as_hostkey() else {
        return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
    };
    let refuse = |msg: String| {
        why.set(msg.clone());
        Err(git2::Error::from_str(&msg))
    };
    let Some(key) = hk.hostkey() else {
        return refuse(format!(
            "the ssh server {hostname} sent no host key rootswap can check"
        ));
    };
    let (host, port) = ssh
        .host
        .clone()
        .unwrap_or_else(|| (hostname.to_string(), 22));
    match hostkeys::check(&ssh.policy, &host, port, key) {
        Ok(note) => {
            if let Some(n) = note {
                tracing::warn!("{n}");
            }
            Ok(git2::CertificateCheckStatus::CertificateOk)
        }
        Err(msg) => refuse(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
