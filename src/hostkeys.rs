//! Step 1, for ssh repositories: the server's host key, checked against
//! known_hosts files the way OpenSSH checks it.
//!
//! libgit2 hands rootswap the raw host key the server presented (its
//! `certificate_check` callback); this module looks it up in known_hosts
//! files (plain, wildcard and hashed `|1|salt|hash` host entries,
//! `@revoked` lines; `@cert-authority` lines are skipped) and says what was
//! found. An unknown or changed key is an error that shows the key's
//! fingerprint as `ssh` prints it (`SHA256:...`) and how to add it. With
//! `source.known_hosts: accept-new` a host that is in no file is accepted
//! once and recorded in `<state>/known_hosts`; a changed key still fails.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Digest;

/// How host keys are checked (from `source.known_hosts`).
#[derive(Debug, Clone)]
pub struct Policy {
    /// Files read, in order (missing files are skipped).
    pub files: Vec<PathBuf>,
    /// Accept a host found in no file, and append its key here.
    pub record_new: Option<PathBuf>,
}

impl Policy {
    /// The policy of `source.known_hosts` (`None`: the default files), with
    /// rootswap's own file in the state dir.
    pub fn from_config(known_hosts: Option<&str>, state: &Path) -> Policy {
        let own = state.join("known_hosts");
        let defaults = || {
            let mut v = vec![PathBuf::from("/etc/ssh/ssh_known_hosts")];
            if let Some(home) = std::env::var_os("HOME") {
                v.push(PathBuf::from(home).join(".ssh/known_hosts"));
            }
            v.push(own.clone());
            v
        };
        match known_hosts {
            None => Policy {
                files: defaults(),
                record_new: None,
            },
            Some("accept-new") => Policy {
                files: defaults(),
                record_new: Some(own.clone()),
            },
            Some(file) => Policy {
                files: vec![PathBuf::from(file)],
                record_new: None,
            },
        }
    }
}

/// The name known_hosts uses for `host` on `port`: `host`, or `[host]:port`.
pub fn host_id(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// `SHA256:...` as `ssh-keygen -l` and ssh's prompts print it.
pub fn fingerprint(blob: &[u8]) -> String {
    let digest = sha2::Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// The key type written at the start of a key blob (`ssh-ed25519`, `ssh-rsa`, ...).
pub fn key_type(blob: &[u8]) -> String {
    let Some(len) = blob.get(..4) else {
        return "unknown".into();
    };
    let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    blob.get(4..4 + n)
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// One usable known_hosts line.
#[derive(Debug, Clone)]
struct Entry {
    file: PathBuf,
    line: usize,
    revoked: bool,
    hosts: String,
    key: Vec<u8>,
}

/// What the known_hosts files say about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line for this host has exactly this key.
    Known,
    /// No line for this host has a key of this type.
    Unknown {
        /// Key types the files know for this host (another type than offered).
        other_types: Vec<String>,
    },
    /// A line for this host has another key of the same type.
    Changed {
        /// `file:line` of that line.
        at: String,
    },
    /// The key is marked `@revoked`.
    Revoked {
        /// `file:line` of the marker.
        at: String,
    },
}

fn read_entries(files: &[PathBuf]) -> Vec<Entry> {
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for (i, raw) in text.lines().enumerate() {
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let mut fields = l.split_whitespace();
            let mut first = fields.next().unwrap_or("");
            let mut revoked = false;
            if first.starts_with('@') {
                match first {
                    "@revoked" => revoked = true,
                    _ => continue, // @cert-authority: certificates are not used here
                }
                first = fields.next().unwrap_or("");
            }
            let (Some(_ty), Some(b64)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Ok(key) = base64::engine::general_purpose::STANDARD.decode(b64) else {
                continue;
            };
            out.push(Entry {
                file: f.clone(),
                line: i + 1,
                revoked,
                hosts: first.to_string(),
                key,
            });
        }
    }
    out
}

/// `*` and `?` wildcards, as in ssh's host patterns.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p.eq_ignore_ascii_case(t) => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// Does the host field of a known_hosts line name `id` (`host` or `[host]:port`)?
fn hosts_match(field: &str, id: &str) -> bool {
    if let Some(rest) = field.strip_prefix("|1|") {
        let Some((salt, hash)) = rest.split_once('|') else {
            return false;
        };
        let b64 = &base64::engine::general_purpose::STANDARD;
        let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
            return false;
        };
        mac.update(id.as_bytes());
        return mac.verify_slice(&hash).is_ok();
    }
    let mut matched = false;
    for pat in field.split(',') {
        if let Some(neg) = pat.strip_prefix('!') {
            if glob(neg.as_bytes(), id.as_bytes()) {
                return false;
            }
        } else if glob(pat.as_bytes(), id.as_bytes()) {
            matched = true;
        }
    }
    matched
}

/// Looks `key` (a raw key blob) up for `id` in `files`.
pub fn lookup(files: &[PathBuf], id: &str, key: &[u8]) -> Verdict {
    let ty = key_type(key);
    let mut changed = None;
    let mut other_types = Vec::new();
    let mut known = false;
    for e in read_entries(files) {
        if e.revoked {
            if e.key == key {
                return Verdict::Revoked {
                    at: format!("{}:{}", e.file.display(), e.line),
                };
            }
            continue;
        }
        if !hosts_match(&e.hosts, id) {
            continue;
        }
        if e.key == key {
            known = true;
        } else if key_type(&e.key) == ty {
            changed.get_or_insert(format!("{}:{}", e.file.display(), e.line));
        } else {
            other_types.push(key_type(&e.key));
        }
    }
    if known {
        Verdict::Known
    } else if let Some(at) = changed {
        Verdict::Changed { at }
    } else {
        other_types.sort();
        other_types.dedup();
        Verdict::Unknown { other_types }
    }
}

/// A presented key, as the messages show it.
struct Shown {
    /// `host` or `[host]:port`.
    id: String,
    /// `ssh-ed25519`, `ssh-rsa`, ...
    ty: String,
    /// `ED25519`, `RSA`, `ECDSA`.
    short_ty: String,
    /// `SHA256:...`.
    fp: String,
    /// The `ssh-keyscan` command that fetches this key type.
    keyscan: String,
}

impl Shown {
    fn new(host: &str, port: u16, key: &[u8]) -> Shown {
        let ty = key_type(key);
        let scan_ty = ty
            .trim_start_matches("ssh-")
            .split('-')
            .next()
            .unwrap_or("ed25519")
            .to_string();
        let port_arg = if port == 22 {
            String::new()
        } else {
            format!(" -p {port}")
        };
        Shown {
            id: host_id(host, port),
            short_ty: scan_ty.to_ascii_uppercase(),
            keyscan: format!("ssh-keyscan{port_arg} -t {scan_ty} {host}"),
            fp: fingerprint(key),
            ty,
        }
    }

    fn changed(&self, at: &str) -> String {
        let Shown {
            id,
            ty,
            short_ty,
            fp,
            keyscan,
        } = self;
        let file = at.rsplit_once(':').map(|(f, _)| f).unwrap_or(at);
        format!(
            "the host key of {id} has CHANGED: the server offers the {short_ty} key {fp}, but {at} holds another {ty} key for it. \
             Someone may be intercepting the connection (man-in-the-middle), or the server's key was replaced. \
             Ask the server's administrator for its fingerprint; if {fp} is right, remove the old line \
             (ssh-keygen -R '{id}' -f {file}) and add the new key ({keyscan} >> {file}, after checking the fingerprint)"
        )
    }

    fn unknown(&self, policy: &Policy, other_types: &[String]) -> String {
        let Shown {
            id,
            ty,
            short_ty,
            fp,
            keyscan,
        } = self;
        let files = policy
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let add_to = policy
            .files
            .iter()
            .find(|f| f.to_string_lossy().contains("/.ssh/"))
            .or(policy.files.first())
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "~/.ssh/known_hosts".into());
        let others = if other_types.is_empty() {
            String::new()
        } else {
            format!(
                " (the files know it only with {} key(s); rootswap's ssh library negotiated {ty})",
                other_types.join(", ")
            )
        };
        format!(
            "the host key of {id} is not known: the server offers the {short_ty} key {fp}, and no line of {files} has it{others}. \
             Check that fingerprint with the server's administrator (or the Git host's documentation), then add the key: \
             {keyscan} >> {add_to} (and compare the fingerprint: ssh-keygen -lf {add_to}); \
             or set `source.known_hosts: accept-new` to accept a first contact"
        )
    }
}

/// Checks the key `host:port` presented. `Ok(note)`: accepted (the note says
/// when it was a first contact just recorded); `Err(message)`: refused, with
/// the fingerprint and how to fix it.
pub fn check(policy: &Policy, host: &str, port: u16, key: &[u8]) -> Result<Option<String>, String> {
    let shown = Shown::new(host, port, key);
    let Shown {
        id, short_ty, fp, ..
    } = &shown;
    match lookup(&policy.files, id, key) {
        Verdict::Known => Ok(None),
        Verdict::Revoked { at } => Err(format!(
            "the host key of {id} ({short_ty} key {fp}) is marked @revoked in {at}: rootswap will not connect"
        )),
        Verdict::Changed { at } => Err(shown.changed(&at)),
        Verdict::Unknown { other_types } => {
            let Some(record) = &policy.record_new else {
                return Err(shown.unknown(policy, &other_types));
            };
            let line = format!(
                "{id} {} {}\n",
                shown.ty,
                base64::engine::general_purpose::STANDARD.encode(key)
            );
            append(record, &line).map_err(|e| {
                format!("cannot record the host key of {id} in {}: {e}", record.display())
            })?;
            Ok(Some(format!(
                "first contact with {id}: accepted its {short_ty} key {fp} (source.known_hosts: accept-new) and recorded it in {}",
                record.display()
            )))
        }
    }
}

fn append(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(line.as_bytes())?;
    f.sync_all()
}

/// The host and port of an ssh repository URL (`ssh://user@host:port/path`
/// or scp-like `user@host:path`), None for other URLs.
pub fn ssh_host_port(url: &str) -> Option<(String, u16)> {
    if let Some(rest) = url
        .strip_prefix("ssh://")
        .or_else(|| url.strip_prefix("git+ssh://"))
        .or_else(|| url.strip_prefix("ssh+git://"))
    {
        let authority = rest.split('/').next().unwrap_or("");
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']')?;
            let port = after
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(22);
            return Some((h.to_string(), port));
        }
        return Some(match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().unwrap_or(22)),
            None => (hostport.to_string(), 22),
        });
    }
    if url.contains("://") {
        return None;
    }
    let (before, _) = url.split_once(':')?;
    let host = before.rsplit_once('@').map_or(before, |(_, h)| h);
    (!host.is_empty() && !host.contains('/')).then(|| (host.to_string(), 22))
}

/// Refuses a private key file others can read, as ssh does.
pub fn check_key_file(key: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::metadata(key).map_err(|e| {
        anyhow::anyhow!(
            "`source.ssh_key` {}: {e}; set it to the deploy key's private key file",
            key.display()
        )
    })?;
    if !m.is_file() {
        anyhow::bail!("`source.ssh_key` {} is not a file", key.display());
    }
    let mode = m.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "permissions {mode:04o} for the private key {} are too open: it is required that your private key files are NOT accessible by others (ssh refuses such a key too); run chmod 600 {}",
            key.display(),
            key.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(ty: &str, body: &[u8]) -> Vec<u8> {
        let mut v = (ty.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(ty.as_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn hashed_plain_and_wildcard_entries() {
        let dir = tempfile::tempdir().unwrap();
        let key = blob("ssh-ed25519", b"k1");
        let other = blob("ssh-ed25519", b"k2");
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        // |1|salt|HMAC-SHA1(salt, "[h]:2222")
        let salt = b"0123456789abcdefghij";
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(salt).unwrap();
        mac.update(b"[h]:2222");
        let hash = mac.finalize().into_bytes();
        let f = dir.path().join("kh");
        std::fs::write(
            &f,
            format!(
                "# comment\n|1|{}|{} ssh-ed25519 {}\n*.example.org,!bad.example.org ssh-ed25519 {}\n",
                b64(salt),
                b64(&hash),
                b64(&key),
                b64(&other)
            ),
        )
        .unwrap();
        let files = vec![f];
        assert_eq!(lookup(&files, "[h]:2222", &key), Verdict::Known);
        assert!(matches!(lookup(&files, "h", &key), Verdict::Unknown { .. }));
        assert_eq!(lookup(&files, "git.example.org", &other), Verdict::Known);
        assert!(matches!(
            lookup(&files, "git.example.org", &key),
            Verdict::Changed { .. }
        ));
        assert!(matches!(
            lookup(&files, "bad.example.org", &other),
            Verdict::Unknown { .. }
        ));
    }

    #[test]
    fn urls_and_fingerprints() {
        assert_eq!(
            ssh_host_port("ssh://root@127.0.0.1:2222/srv/r.git"),
            Some(("127.0.0.1".into(), 2222))
        );
        assert_eq!(
            ssh_host_port("git@github.com:acme/app.git"),
            Some(("github.com".into(), 22))
        );
        assert_eq!(ssh_host_port("https://github.com/a/b.git"), None);
        assert_eq!(host_id("h", 22), "h");
        assert_eq!(host_id("h", 2222), "[h]:2222");
        // Known answer: SHA256 of "" in unpadded base64.
        assert_eq!(
            fingerprint(b""),
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
        );
        assert_eq!(key_type(&blob("ssh-rsa", b"x")), "ssh-rsa");
    }
}
