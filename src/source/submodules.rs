//! Git submodules: a gitlink (a tree entry of mode 160000 naming commit C)
//! stands for the tree of C, so the diff, the tracked-file listing and the
//! checkout go inside submodules as into any directory.
//!
//! Submodule objects are fetched into the same cache repository (objects
//! are content-addressed), their branches and tags kept under
//! `refs/rootswap/modules/<sha1 of the URL>/` so that later fetches
//! negotiate. A walk that meets a gitlink whose commit the cache lacks
//! records it ([`Missing`]) and fails with [`MissingSubmodules`];
//! [`GitSource::with_submodules`] reads `.gitmodules` from the tree that
//! holds the gitlink, resolves and checks the URL, fetches, and runs the
//! walk again: nested submodules are found the same way, one level a round.
//!
//! `.gitmodules` comes from the commit, so from whoever can push: its URLs
//! are checked ([`check_url`]) before anything is fetched.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{anyhow, bail, Context, Result};
use git2::{FetchOptions, Oid, Repository, Tree, TreeEntry};

use super::auth::{callbacks, SshAuth, Why};
use super::local::is_local_path;
use super::repo::{short, GitSource};
use crate::repo_path::RepoPath;

/// Mode of a gitlink tree entry.
pub(super) const GITLINK: i32 = 0o160000;

/// A gitlink crossed on the way from the superproject to a tree.
#[derive(Debug, Clone)]
pub(super) struct Link {
    /// Root tree of the repository that holds the gitlink (and its `.gitmodules`).
    pub(super) tree: Oid,
    /// Path of the gitlink inside that repository.
    pub(super) path: String,
    /// The commit it records.
    pub(super) commit: Oid,
}

/// Which repository a walk is reading: the superproject or a submodule.
#[derive(Debug, Clone)]
pub(super) struct Scope {
    /// Gitlinks crossed from the superproject to this repository.
    chain: Vec<Link>,
    /// Root tree of this repository's commit.
    root_tree: Oid,
    /// ROOT-relative path where this repository's walk starts.
    base: PathBuf,
    /// That place's path inside the repository (`source.subdir` for the superproject).
    prefix: PathBuf,
}

impl Scope {
    /// The superproject's scope: its root tree and the deployed subdir.
    pub(super) fn top(root_tree: Oid, subdir: &Path) -> Rc<Scope> {
        Rc::new(Scope {
            chain: Vec::new(),
            root_tree,
            base: PathBuf::new(),
            prefix: subdir.to_path_buf(),
        })
    }

    /// Path of `at` (relative to ROOT) inside this scope's repository.
    fn in_repo(&self, at: &RepoPath) -> String {
        let rel = at
            .as_path()
            .strip_prefix(&self.base)
            .unwrap_or(at.as_path());
        self.prefix.join(rel).to_string_lossy().into_owned()
    }
}

/// A submodule commit the cache does not have.
#[derive(Debug, Clone)]
pub struct Missing {
    /// Where the submodule lands, relative to ROOT.
    pub at: PathBuf,
    /// Gitlinks from the superproject down to it (the last one is missing).
    pub(super) chain: Vec<Link>,
}

impl Missing {
    /// The submodule's path from the superproject's root, through nested
    /// submodules (`wp-content/plugins/shop/vendor/lib`), as git names it.
    pub fn name(&self) -> String {
        let paths: Vec<&str> = self.chain.iter().map(|l| l.path.as_str()).collect();
        paths.join("/")
    }

    /// The `.gitmodules` file that gives its URL (`.gitmodules`, or
    /// `<parent submodule>/.gitmodules` for a nested one).
    pub fn gitmodules(&self) -> String {
        let parents: Vec<&str> = self
            .chain
            .iter()
            .rev()
            .skip(1)
            .rev()
            .map(|l| l.path.as_str())
            .collect();
        match parents.is_empty() {
            true => ".gitmodules".into(),
            false => format!("{}/.gitmodules", parents.join("/")),
        }
    }
}

/// A walk met submodule commits the cache does not have (fetch them and walk again).
#[derive(Debug)]
pub struct MissingSubmodules(pub Vec<Missing>);

impl std::fmt::Display for MissingSubmodules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self
            .0
            .iter()
            .map(|m| {
                let c = m.chain.last().map(|l| short(l.commit)).unwrap_or_default();
                format!("{} at {c}", m.name())
            })
            .collect();
        write!(f, "submodule commits not fetched: {}", list.join(", "))
    }
}

impl std::error::Error for MissingSubmodules {}

/// A submodule whose commit changes in a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmoduleChange {
    /// Where it is, relative to ROOT.
    pub path: PathBuf,
    /// Commit ROOT holds (None: new submodule).
    pub from: Option<Oid>,
    /// Commit to deploy (None: submodule removed).
    pub to: Option<Oid>,
}

impl std::fmt::Display for SubmoduleChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = |o: Option<Oid>, none: &str| o.map(short).unwrap_or_else(|| none.into());
        write!(
            f,
            "submodule {}: {} -> {}",
            self.path.display(),
            side(self.from, "(new)"),
            side(self.to, "(removed)")
        )
    }
}

/// A tree being walked and the repository it belongs to.
pub(super) struct Side<'r> {
    pub(super) tree: Tree<'r>,
    pub(super) scope: Rc<Scope>,
}

/// The tree of the commit gitlink `e` (at `at`, in `scope`) records, when
/// the cache has that commit; else None, and the commit is added to `missing`.
pub(super) fn enter<'r>(
    repo: &'r Repository,
    e: &TreeEntry,
    at: &RepoPath,
    scope: &Rc<Scope>,
    missing: &mut Vec<Missing>,
) -> Result<Option<Side<'r>>> {
    let mut chain = scope.chain.clone();
    chain.push(Link {
        tree: scope.root_tree,
        path: scope.in_repo(at),
        commit: e.id(),
    });
    let commit = match repo.find_object(e.id(), None) {
        Ok(obj) => obj.into_commit().map_err(|_| {
            anyhow!(
                "submodule {} records {}, which is not a commit",
                at.display(),
                e.id()
            )
        })?,
        Err(_) => {
            missing.push(Missing {
                at: at.to_path_buf(),
                chain,
            });
            return Ok(None);
        }
    };
    let tree = commit
        .tree()
        .with_context(|| format!("cannot read the tree of submodule {}", at.display()))?;
    let scope = Rc::new(Scope {
        chain,
        root_tree: tree.id(),
        base: at.to_path_buf(),
        prefix: PathBuf::new(),
    });
    Ok(Some(Side { tree, scope }))
}

/// One `[submodule "name"]` section of a `.gitmodules` file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Module {
    pub(super) name: String,
    pub(super) path: Option<String>,
    pub(super) url: Option<String>,
}

/// Reads the `submodule.*.path` and `submodule.*.url` of a `.gitmodules`
/// file (git-config syntax). Include directives are not followed and other
/// keys are ignored.
pub(super) fn parse_gitmodules(text: &str) -> Vec<Module> {
    let mut out: Vec<Module> = Vec::new();
    let mut in_module = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix('[') {
            let head = rest.split(']').next().unwrap_or("");
            let (section, sub) = head.split_once(char::is_whitespace).unwrap_or((head, ""));
            in_module = section.eq_ignore_ascii_case("submodule");
            if in_module {
                let name = sub.trim().trim_matches('"').to_string();
                out.push(Module {
                    name,
                    ..Module::default()
                });
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (Some(m), true) = (out.last_mut(), in_module) else {
            continue;
        };
        let value = config_value(value);
        match key.trim().to_ascii_lowercase().as_str() {
            "path" => m.path = Some(value),
            "url" => m.url = Some(value),
            _ => {}
        }
    }
    out
}

/// A git-config value: quotes removed, `\"` `\\` `\n` `\t` unescaped, a
/// comment (`#`, `;` outside quotes) cut off.
fn config_value(raw: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = raw.trim().chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            },
            '#' | ';' if !quoted => break,
            _ => out.push(c),
        }
    }
    out.trim_end().to_string()
}

/// Resolves a `.gitmodules` URL: `./x` and `../x` are relative to the
/// superproject's URL (`parent`), as git resolves them.
pub(super) fn resolve_url(parent: &str, url: &str) -> Result<String> {
    if !(url.starts_with("./") || url.starts_with("../")) {
        return Ok(url.to_string());
    }
    // The part of the parent no `..` may remove: scheme and host.
    let floor = if let Some(i) = parent.find("://") {
        parent[i + 3..]
            .find('/')
            .map_or(parent.len(), |j| i + 3 + j)
    } else if !is_local_path(parent) {
        parent.find(':').unwrap_or(0)
    } else {
        0
    };
    let mut base = parent.trim_end_matches('/').to_string();
    let mut rest = url;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("../") {
            let top = base.ends_with(':');
            let cut = base.rfind(['/', ':']).filter(|&i| i >= floor && !top);
            let Some(cut) = cut else {
                bail!("the relative URL {url} climbs above {parent}");
            };
            // `host:repo.git` climbs to `host:`, keeping the colon.
            let keep = if base[cut..].starts_with(':') {
                cut + 1
            } else {
                cut
            };
            base.truncate(keep);
            rest = r;
        } else {
            break;
        }
    }
    let sep = if base.ends_with(':') { "" } else { "/" };
    Ok(format!("{base}{sep}{rest}"))
}

/// Refuses a submodule URL a hostile commit could use against this
/// machine: an option-like URL (`-...`), a remote helper (`ext::`,
/// `fd::`, any `transport::`), control characters, and, unless
/// `source.repo` is itself a local path, a local path or `file://` URL
/// (which would publish another repository of this machine into the site;
/// git refuses them too since CVE-2022-39253).
pub(super) fn check_url(url: &str, top_is_local: bool) -> Result<(), String> {
    if url.is_empty() {
        return Err("the URL is empty".into());
    }
    if url.starts_with('-') {
        return Err("a URL starting with '-' is refused (it would read as an option)".into());
    }
    if url.chars().any(|c| c.is_control()) {
        return Err("the URL contains control characters".into());
    }
    let helper = url.split_once("::").is_some_and(|(t, _)| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if helper {
        return Err(
            "remote helper URLs (`transport::address`, such as `ext::`) are refused".into(),
        );
    }
    let local = is_local_path(url) || url.to_ascii_lowercase().starts_with("file:");
    if local && !top_is_local {
        return Err(
            "a local path or file:// URL is refused when `source.repo` is not a local path \
             (it would publish another repository of this machine into the site)"
                .into(),
        );
    }
    if !local {
        let scheme = url.split("://").next().unwrap_or("").to_ascii_lowercase();
        let known = ["https", "http", "ssh", "git", "git+ssh", "ssh+git"];
        if url.contains("://") && !known.contains(&scheme.as_str()) {
            return Err(format!("the URL scheme {scheme}:// is not supported"));
        }
    }
    Ok(())
}

/// `scheme://host[:port]` of a URL (lowercased, without user and
/// password), for the same-host credential rule; None for a local path.
pub(super) fn authority(url: &str) -> Option<String> {
    if let Some((scheme, rest)) = url.split_once("://") {
        let auth = rest.split('/').next().unwrap_or("");
        let auth = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
        return (!auth.is_empty()).then(|| format!("{scheme}://{auth}").to_ascii_lowercase());
    }
    if is_local_path(url) {
        return None;
    }
    let (before, _) = url.split_once(':')?;
    let host = before.rsplit_once('@').map_or(before, |(_, h)| h);
    Some(format!("ssh://{host}").to_ascii_lowercase())
}

impl GitSource {
    /// Tells the source which commit ROOT holds and whether ROOT holds its
    /// submodules (`State::submodules`): a plan from that commit, and its
    /// tracked files, follow what ROOT really has, even after
    /// `source.submodules` changed.
    pub fn set_live(&mut self, commit: Option<Oid>, with_submodules: bool) {
        self.live = commit.map(|c| (c, with_submodules));
    }

    /// Whether `commit`'s submodules are (or will be) in ROOT: as recorded
    /// for the live commit, else `source.submodules`.
    pub(super) fn submodules_in(&self, commit: Oid) -> bool {
        match self.live {
            Some((live, with)) if live == commit => with,
            _ => self.submodules,
        }
    }

    /// The superproject's scope for `commit`.
    pub(super) fn top_scope(&self, commit: Oid) -> Result<Rc<Scope>> {
        let c = self
            .repo
            .find_commit(commit)
            .with_context(|| format!("commit {commit} is not in the cache"))?;
        Ok(Scope::top(c.tree_id(), &self.subdir))
    }

    /// Runs `op` (a walk), fetching the submodule commits it reports missing
    /// and running it again until it completes.
    pub(super) fn with_submodules<T>(&self, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        let mut tried: HashSet<Oid> = HashSet::new();
        loop {
            let missing = match op() {
                Err(e) if e.is::<MissingSubmodules>() => match e.downcast::<MissingSubmodules>() {
                    Ok(m) => m.0,
                    Err(e) => return Err(e),
                },
                other => return other,
            };
            for m in missing {
                let Some(last) = m.chain.last() else { continue };
                if !tried.insert(last.commit) {
                    bail!(
                        "submodule {} at {}: the commit is still missing after a fetch",
                        m.name(),
                        short(last.commit)
                    );
                }
                self.fetch_submodule(&m)?;
            }
        }
    }

    /// Fetches the commit of `m` from the URL `.gitmodules` gives it.
    fn fetch_submodule(&self, m: &Missing) -> Result<()> {
        let url = self.submodule_url(m)?;
        let commit = m.chain.last().map(|l| l.commit).unwrap_or_else(Oid::zero);
        let shown = crate::redact::text(&url);
        tracing::info!("fetching submodule {} from {shown}", m.name());
        let ns = Oid::hash_object(git2::ObjectType::Blob, url.as_bytes())
            .map_err(|e| anyhow!("cannot hash {shown}: {e}"))?;
        let specs = [
            format!("+refs/heads/*:refs/rootswap/modules/{ns}/heads/*"),
            format!("+refs/tags/*:refs/rootswap/modules/{ns}/tags/*"),
        ];
        let auth = self.submodule_auth(&url);
        auth.preflight()?;
        let fix = format!(
            "check the URL of submodule {} in {} and that this machine can reach it \
             (or set `source.submodules: false` to deploy without submodules); nothing was changed",
            m.name(),
            m.gitmodules()
        );
        if is_local_path(&url) && !Path::new(&url).exists() {
            bail!(
                "cannot fetch submodule {} from {shown}: no such repository on this machine; {fix}",
                m.name()
            );
        }
        let mut remote = self.repo.remote_anonymous(&url).map_err(|e| {
            anyhow!(
                "submodule {}: bad URL {shown}: {}; {fix}",
                m.name(),
                e.message()
            )
        })?;
        let why = Why::default();
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(callbacks(&auth, &why));
        opts.download_tags(git2::AutotagOption::None);
        if let Err(e) = remote.fetch(&specs, Some(&mut opts), None) {
            let detail = why.0.borrow().clone();
            let detail = detail.unwrap_or_else(|| crate::redact::text(e.message()).into_owned());
            bail!(
                "cannot fetch submodule {} from {shown}: {detail}; {fix}",
                m.name()
            );
        }
        if self.repo.find_commit(commit).is_err() {
            // Not on a branch or tag: ask for the commit itself (servers that allow it).
            let mut opts = FetchOptions::new();
            opts.remote_callbacks(callbacks(&auth, &why));
            let _ = remote.fetch(&[commit.to_string()], Some(&mut opts), None);
        }
        if self.repo.find_commit(commit).is_err() {
            bail!(
                "submodule {} records commit {commit}, which {shown} does not have on any branch or tag; \
                 push that commit to the submodule's repository, or commit the submodule at a pushed commit",
                m.name()
            );
        }
        Ok(())
    }

    /// The checked URL of the missing submodule `m`, resolving each
    /// `.gitmodules` along its chain against its parent's URL.
    fn submodule_url(&self, m: &Missing) -> Result<String> {
        let top_is_local = is_local_path(&self.url) || self.url.starts_with("file:");
        let mut url = self.url.clone();
        for link in &m.chain {
            let module = self.gitmodules_entry(link, m)?;
            let raw = module.url.ok_or_else(|| {
                anyhow!(
                    "submodule {}: {} gives `{}` no url; add one",
                    m.name(),
                    m.gitmodules(),
                    module.name
                )
            })?;
            let resolved = resolve_url(&url, &raw).with_context(|| {
                format!("submodule {}: fix its url in {}", m.name(), m.gitmodules())
            })?;
            if let Err(why) = check_url(&resolved, top_is_local) {
                bail!(
                    "submodule {}: url {} in {} refused: {why}; \
                     give the submodule a URL of your Git host (or set `source.submodules: false`)",
                    m.name(),
                    crate::redact::text(&resolved),
                    m.gitmodules()
                );
            }
            url = resolved;
        }
        Ok(url)
    }

    /// The `.gitmodules` section of `link`'s tree whose path is the gitlink's.
    fn gitmodules_entry(&self, link: &Link, m: &Missing) -> Result<Module> {
        let tree = self
            .repo
            .find_tree(link.tree)
            .context("cannot read a tree")?;
        let text = tree
            .get_name(".gitmodules")
            .and_then(|e| self.repo.find_blob(e.id()).ok())
            .map(|b| String::from_utf8_lossy(b.content()).into_owned())
            .ok_or_else(|| {
                anyhow!(
                    "submodule {}: the commit has no {}; \
                     add the submodule with `git submodule add`",
                    m.name(),
                    m.gitmodules()
                )
            })?;
        parse_gitmodules(&text)
            .into_iter()
            .find(|x| x.path.as_deref().map(|p| p.trim_end_matches('/')) == Some(&link.path))
            .ok_or_else(|| {
                anyhow!(
                    "submodule {}: {} has no entry with `path = {}`; \
                     add one with `git submodule add`, or remove the gitlink",
                    m.name(),
                    m.gitmodules(),
                    link.path
                )
            })
    }

    /// The credentials for a submodule URL: the same SSH key and host-key
    /// policy; the user and password of `source.repo` only when the
    /// submodule is on the same host (same scheme, host and port).
    fn submodule_auth(&self, url: &str) -> SshAuth {
        let same_host = authority(url).is_some() && authority(url) == authority(&self.url);
        SshAuth {
            key: self.ssh.key.clone(),
            host: crate::hostkeys::ssh_host_port(url),
            policy: self.ssh.policy.clone(),
            userpass: self.ssh.userpass.clone().filter(|_| same_host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_urls_resolve_as_git_does() {
        let r = |p, u| resolve_url(p, u).unwrap();
        assert_eq!(
            r("https://h/org/site.git", "../lib.git"),
            "https://h/org/lib.git"
        );
        assert_eq!(
            r("https://h/org/site.git/", "../lib.git"),
            "https://h/org/lib.git"
        );
        assert_eq!(
            r("https://h/org/site.git", "./lib"),
            "https://h/org/site.git/lib"
        );
        assert_eq!(r("https://h/org/site", "../../x/lib"), "https://h/x/lib");
        assert_eq!(r("git@h:org/site.git", "../lib.git"), "git@h:org/lib.git");
        assert_eq!(r("git@h:site.git", "../lib.git"), "git@h:lib.git");
        assert_eq!(r("/srv/git/site.git", "../lib.git"), "/srv/git/lib.git");
        assert_eq!(r("https://h/a", "https://other/x"), "https://other/x");
        assert!(resolve_url("https://h/site.git", "../../x").is_err());
        assert!(resolve_url("git@h:site.git", "../../x").is_err());
    }

    #[test]
    fn hostile_urls_are_refused() {
        assert!(check_url("https://h/x.git", false).is_ok());
        assert!(check_url("git@h:x.git", false).is_ok());
        assert!(check_url("/srv/other.git", false).is_err());
        assert!(check_url("file:///srv/other.git", false).is_err());
        assert!(check_url("/srv/other.git", true).is_ok());
        assert!(check_url("-uploadpack=touch /tmp/x", false).is_err());
        assert!(check_url("ext::sh -c touch% /tmp/pwned", false).is_err());
        assert!(check_url("ext::sh -c touch% /tmp/pwned", true).is_err());
        assert!(check_url("https://h/x\n", false).is_err());
        assert!(check_url("ftp://h/x", false).is_err());
        assert!(check_url("fd::17", false).is_err());
        assert!(check_url("https://[::1]:8080/x.git", false).is_ok());
    }

    #[test]
    fn gitmodules_are_read_without_includes() {
        let text = "[submodule \"lib\"]\n\tpath = vendor/lib\n\turl = \"../lib.git\" # c\n\
                    [include]\n\tpath = /etc/passwd\n[Submodule \"b\"]\nPATH=b\nurl=https://h/b\n";
        let m = parse_gitmodules(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].path.as_deref(), Some("vendor/lib"));
        assert_eq!(m[0].url.as_deref(), Some("../lib.git"));
        assert_eq!(m[1].name, "b");
        assert_eq!(m[1].path.as_deref(), Some("b"));
    }

    #[test]
    fn the_password_of_source_repo_goes_to_its_host_only() {
        let state = tempfile::tempdir().unwrap();
        let cfg: crate::config::SourceConfig =
            serde_yaml_ng::from_str("repo: https://deploy:s3cret@git.example.com/org/site.git")
                .unwrap();
        let source = GitSource::open(state.path(), &cfg).unwrap();
        let same = source.submodule_auth("https://git.example.com/org/lib.git");
        assert_eq!(same.userpass.map(|u| u.password).as_deref(), Some("s3cret"));
        for other in [
            "https://evil.example.net/lib.git",
            "https://git.example.com:8443/org/lib.git",
            "git@git.example.com:org/lib.git",
        ] {
            assert!(source.submodule_auth(other).userpass.is_none(), "{other}");
        }
    }

    #[test]
    fn a_nested_submodule_is_named_from_the_superproject() {
        let link = |path: &str| Link {
            tree: Oid::zero(),
            path: path.into(),
            commit: Oid::zero(),
        };
        let top = Missing {
            at: PathBuf::from("lib"),
            chain: vec![link("web/lib")],
        };
        assert_eq!(
            (top.name(), top.gitmodules()),
            ("web/lib".into(), ".gitmodules".into())
        );
        let nested = Missing {
            at: PathBuf::from("lib/inner"),
            chain: vec![link("web/lib"), link("inner")],
        };
        assert_eq!(nested.name(), "web/lib/inner");
        assert_eq!(nested.gitmodules(), "web/lib/.gitmodules");
    }

    #[test]
    fn credentials_follow_the_host() {
        assert_eq!(
            authority("https://u:p@Git.Example/x"),
            Some("https://git.example".into())
        );
        assert_eq!(authority("git@h:x.git"), Some("ssh://h".into()));
        assert_ne!(authority("http://h/x"), authority("https://h/x"));
        assert_eq!(authority("/srv/x"), None);
        assert_ne!(authority("https://h:8443/x"), authority("https://h/x"));
    }
}
