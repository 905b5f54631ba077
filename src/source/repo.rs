//! The cache repository: a bare mirror of `source.repo` in
//! `<state>/repo.git`, fetched, and the commits it resolves.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::local::{is_local_path, local_path, objects_dir, set_alternate};
use git2::{Oid, Repository};

use super::auth::{callbacks, SshAuth, UserPass, Why};
use crate::config::{ExternalSymlinks, SourceConfig};
use crate::hostkeys;

/// The cached mirror of the configured repository.
///
/// Credentials written into `source.repo` (`https://user:password@host/…`)
/// never reach the disk: the cache's remote is the URL without them, and
/// they are handed to libgit2 through the credential callback at each fetch.
pub struct GitSource {
    pub(super) repo: Repository,
    /// `source.repo` without user and password: the remote, and what messages show.
    pub(super) url: String,
    pub(super) branch: String,
    pub(super) subdir: PathBuf,
    pub(super) external: ExternalSymlinks,
    pub(super) ssh: SshAuth,
    /// `source.repo` when it is a repository on this machine, read in place.
    pub(super) local: Option<PathBuf>,
    /// `source.depth`: commits fetched per branch tip (0: the whole history).
    pub(super) depth: u32,
    /// `source.submodules`: the new commit's submodules are deployed.
    pub(super) submodules: bool,
    /// The live commit and whether ROOT holds its submodules
    /// ([`GitSource::set_live`]).
    pub(super) live: Option<(Oid, bool)>,
}

/// Points the cache's `origin` at `url` (credentials already taken out). A
/// cache written by an older rootswap kept the password in its `config`:
/// that remote is rewritten, with a log line.
pub(super) fn set_remote(repo: &Repository, path: &Path, url: &str) -> Result<()> {
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
pub(super) fn private_config(repo_dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(
        repo_dir.join("config"),
        std::fs::Permissions::from_mode(0o600),
    );
}

/// Seven-character commit id.
pub fn short(oid: Oid) -> String {
    crate::commit::short(&oid.to_string()).to_string()
}

/// Turns an existing local path into an absolute one; URLs are kept.
pub(super) fn resolve_url(repo: &str) -> String {
    if !is_local_path(repo) {
        return repo.to_string();
    }
    match std::fs::canonicalize(repo) {
        Ok(p) => p.to_string_lossy().into_owned(),
        Err(_) => repo.to_string(),
    }
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
        let local = local_path(&url);
        if !path.exists() {
            Repository::init_bare(&path).with_context(|| {
                format!("cannot create the cache repository {}", path.display())
            })?;
            private_config(&path);
        }
        let objects = local.as_deref().map(objects_dir).transpose()?;
        set_alternate(&path, objects.as_deref())?;
        let repo = Repository::open_bare(&path).with_context(|| {
            format!(
                "cannot open the cache repository {}; remove it and deploy again to re-create it",
                path.display()
            )
        })?;
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
            local,
            depth: cfg.depth,
            submodules: cfg.submodules,
            live: None,
        })
    }

    /// The repository URL (or absolute local path) fetched from, without
    /// credentials.
    pub fn url(&self) -> &str {
        &self.url
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
    pub(super) fn ls_remote_head(&self) -> Result<Option<Oid>> {
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

    /// The deployed subdir, relative to the repository root ("" for all of it).
    pub fn subdir(&self) -> &Path {
        &self.subdir
    }
}
