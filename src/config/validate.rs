//! The checks of what the text alone decides: names, paths, combinations.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::load::Source;
use super::{Config, FleetConfig};

impl Config {
    /// Checks what the text alone decides; errors name the file and the key.
    pub(super) fn validate(&self, path: &Path) -> Result<()> {
        let src = &Source(path);
        self.check_names(src)?;
        self.check_source(src)?;
        self.check_paths(src)?;
        self.check_combinations(src)?;
        super::places::check_shared_dir(self).with_context(|| format!("{src}: user_content"))?;
        super::places::check_places(self).map_err(|e| anyhow::anyhow!("{src}: {e:#}"))?;
        Ok(())
    }

    /// `root` and `link`: plain names of their own.
    fn check_names(&self, src: &Source) -> Result<()> {
        for (key, name) in [("root", &self.root), ("link", &self.link)] {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                bail!(
                    "{src}: `{key}: {name}` must be a plain directory name inside webroot (no '/')"
                );
            }
        }
        if self.root == self.link {
            bail!("{src}: `root` and `link` are both `{}`; the link needs its own name, e.g. `link: current`", self.root);
        }
        Ok(())
    }

    /// `source`: a repository, a branch, paths that stay inside.
    fn check_source(&self, src: &Source) -> Result<()> {
        if self.source.repo.trim().is_empty() {
            bail!("{src}: `source.repo` is empty; set it to the repository URL or a local path");
        }
        if self.source.branch.trim().is_empty() {
            bail!("{src}: `source.branch` is empty; set it to the branch to deploy, e.g. main");
        }
        let sub = Path::new(&self.source.subdir);
        if sub.is_absolute()
            || sub
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            bail!(
                "{src}: `source.subdir: {}` must be a path inside the repository (relative, no '..')",
                self.source.subdir
            );
        }
        if let Some(k) = &self.source.ssh_key {
            if !k.is_absolute() {
                bail!("{src}: `source.ssh_key: {}` must be an absolute path (or start with ~/), e.g. /etc/rootswap/deploy_key", k.display());
            }
        }
        if let Some(k) = &self.source.known_hosts {
            if k != "accept-new" && !Path::new(k).is_absolute() {
                bail!("{src}: `source.known_hosts: {k}` must be `accept-new` or an absolute path to a known_hosts file (or start with ~/)");
            }
        }
        Ok(())
    }

    /// `public` inside the application, `state_dir` outside ROOT.
    fn check_paths(&self, src: &Source) -> Result<()> {
        let public = Path::new(&self.public);
        if public.is_absolute()
            || public
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            bail!("{src}: `public: {}` must be a directory inside the application (relative, no '..')", self.public);
        }
        let state = self.state_path();
        let root = self.webroot.join(&self.root);
        if super::normalize(&state).starts_with(super::normalize(&root)) {
            bail!(
                "{src}: `state_dir` ({}) is inside ROOT ({}), where the web server would serve it and deploys would overwrite it; \
                 use the default `.rootswap` (inside webroot, beside ROOT) or an absolute path elsewhere",
                state.display(),
                root.display()
            );
        }
        Ok(())
    }

    /// Keys that exclude or need each other; names hooks can get.
    fn check_combinations(&self, src: &Source) -> Result<()> {
        if let Some(url) = &self.opcache.http {
            let host = url.strip_prefix("http://").unwrap_or_default();
            if host.is_empty() || host.starts_with('/') {
                bail!(
                    "{src}: `opcache.http: {url}` must be an http:// URL of this host that reaches the site's <VirtualHost>, e.g. http://127.0.0.1:80"
                );
            }
        }
        if self.auto_deploy.every.is_some() && self.auto_deploy.cron.is_some() {
            bail!("{src}: `auto_deploy` has both `every` and `cron`; keep exactly one of them");
        }
        if let Some(n) = self.copy.nice {
            if !(0..=19).contains(&n) {
                bail!("{src}: `copy.nice: {n}` must be between 0 and 19");
            }
        }
        for name in self.hooks.env.keys() {
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid || name.starts_with("ROOTSWAP_") {
                bail!(
                    "{src}: `hooks.env: {name}` is not a variable name a hook can get: use letters, digits and _ \
                     (not starting with a digit), and not the ROOTSWAP_ prefix, which rootswap sets itself"
                );
            }
        }
        if let Some(f) = &self.fleet {
            f.validate().with_context(|| format!("{src}: fleet"))?;
        } else if !self.hooks.once.is_empty() {
            bail!(
                "{src}: `hooks.once` runs once per fleet deploy and needs a `fleet:` section; \
                 on a single node put these commands into `hooks.before_switch`"
            );
        }
        Ok(())
    }
}

impl FleetConfig {
    /// Checks the values that need no network: names, endpoints, durations, files.
    pub fn validate(&self) -> Result<()> {
        if self.etcd.is_empty() {
            bail!("`etcd` lists no endpoint; add the client URLs of your etcd members, e.g. [http://10.0.0.1:2379]");
        }
        for e in &self.etcd {
            let ok = ["http://", "https://"]
                .iter()
                .any(|p| e.strip_prefix(p).is_some_and(|rest| rest.contains(':')));
            if !ok {
                bail!("`etcd: {e}` is not a client URL with a port; write it like http://127.0.0.1:2379");
            }
        }
        for (key, name) in [("site", &self.site), ("node", &self.node)] {
            if name.trim().is_empty()
                || name.contains('/')
                || name.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                bail!(
                    "`{key}: {name}` must be a non-empty name without '/' or spaces (it becomes part of etcd keys), e.g. shop-prod"
                );
            }
        }
        if self.lease < Duration::from_secs(1) {
            bail!(
                "`lease: {}` is shorter than etcd's lease granularity (1s); use 2s or more",
                humantime::format_duration(self.lease)
            );
        }
        if self.prepare_timeout < self.lease {
            bail!("`prepare_timeout` is shorter than `lease`; give the nodes at least one lease to prepare");
        }
        if self.switch_delay >= self.lease {
            bail!(
                "`switch_delay: {}` is not shorter than `lease`; the nodes switch this long after the commit point, use e.g. 200ms",
                humantime::format_duration(self.switch_delay)
            );
        }
        if self.user.is_some() != self.password.is_some() {
            bail!("`user` and `password` go together; set both or neither");
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            bail!("`cert_file` and `key_file` go together; set both or neither");
        }
        if self.cert_file.is_some() && self.ca_file.is_none() {
            bail!("`cert_file` needs `ca_file` (the CA of the etcd servers) to turn TLS on");
        }
        for (key, p) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if let Some(p) = p {
                if !p.is_file() {
                    bail!("`{key}: {}` is not a readable file", p.display());
                }
            }
        }
        Ok(())
    }
}
