//! Credentials for a fetch: user and password from the URL (never
//! written to disk), the SSH key, and the host-key check.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use git2::RemoteCallbacks;

use crate::hostkeys;

/// User name and password (or token) for an http(s) remote, from the
/// userinfo of `source.repo`.
#[derive(Clone)]
pub(super) struct UserPass {
    pub(super) user: String,
    pub(super) password: String,
}

impl std::fmt::Debug for UserPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.user, crate::redact::MASK)
    }
}

/// How rootswap authenticates to an ssh remote and checks its host key.
#[derive(Debug, Clone)]
pub(super) struct SshAuth {
    /// `source.ssh_key`: the only key offered when set.
    pub(super) key: Option<PathBuf>,
    /// Host and port of an ssh URL (None: not ssh).
    pub(super) host: Option<(String, u16)>,
    /// known_hosts policy.
    pub(super) policy: hostkeys::Policy,
    /// Credentials taken out of `source.repo` (never stored in the cache).
    pub(super) userpass: Option<UserPass>,
}

/// What the callbacks learnt when a remote operation failed (a refused host
/// key, a refused deploy key): libgit2's own message says less.
#[derive(Default, Clone)]
pub(super) struct Why(pub(super) std::rc::Rc<std::cell::RefCell<Option<String>>>);

impl Why {
    pub(super) fn set(&self, msg: String) {
        *self.0.borrow_mut() = Some(msg);
    }

    pub(super) fn error(&self, what: &str, url: &str, e: &git2::Error) -> anyhow::Error {
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
    pub(super) fn preflight(&self) -> Result<()> {
        match (&self.key, &self.host) {
            (Some(k), Some(_)) => hostkeys::check_key_file(k),
            _ => Ok(()),
        }
    }
}

pub(super) fn callbacks<'a>(ssh: &'a SshAuth, why: &Why) -> RemoteCallbacks<'a> {
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
pub(super) fn credential(
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
pub(super) fn host_key_check(
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
