//! Private repositories over SSH with a deploy key, and checked host keys,
//! against a real `sshd` (Debian's openssh-server) started by the test on a
//! 127.0.0.1 port of its own, with its own host key and config in a temp
//! dir, serving a bare repository through `git-upload-pack` by absolute path.

use crate::support::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support;
use crate::support::Proc;

pub(crate) fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "rootswap-test", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `SHA256:...` of a public key file, as ssh-keygen prints it.
fn fingerprint(pubkey: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pubkey)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("ssh-keygen -lf: {text}"))
        .to_string()
}

/// `type base64` of a public key file (no comment).
pub(crate) fn key_of(pubkey: &Path) -> String {
    let text = read(pubkey);
    let mut f = text.split_whitespace();
    format!("{} {}", f.next().unwrap(), f.next().unwrap())
}

pub(crate) fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub(crate) struct Sshd {
    _proc: Proc,
    pub(crate) port: u16,
    dir: PathBuf,
}

impl Sshd {
    pub(crate) fn host_pub(&self) -> PathBuf {
        self.dir.join("host_ed25519.pub")
    }
}

/// sshd with one ed25519 host key, accepting `authorized` for the current user.
pub(crate) fn start_sshd(sshd: &Path, dir: &Path, authorized: &Path) -> Sshd {
    std::fs::create_dir_all(dir).unwrap();
    keygen(&dir.join("host_ed25519"));
    std::fs::copy(authorized, dir.join("authorized_keys")).unwrap();
    if unsafe { libc::geteuid() } == 0 {
        // sshd's privilege separation directory (Debian's openssh-server creates it at boot).
        std::fs::create_dir_all("/run/sshd").unwrap();
    }
    let port = support::free_port();
    let conf = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nPidFile {d}/sshd.pid\n\
         AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
         AllowUsers {user}\nLogLevel VERBOSE\n",
        d = dir.display(),
        user = whoami()
    );
    std::fs::write(dir.join("sshd_config"), conf).unwrap();
    let log = dir.join("sshd.log");
    let mut cmd = Command::new(sshd);
    cmd.args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut p = Proc::spawn("sshd", &mut cmd);
    support::wait_listening(&mut p, SocketAddr::from(([127, 0, 0, 1], port)), &log);
    Sshd {
        _proc: p,
        port,
        dir: dir.to_path_buf(),
    }
}

fn write_config(w: &World, url: &str, key: &Path, known_hosts: &str) {
    std::fs::write(
        &w.config,
        format!(
            "webroot: {}\nsource:\n  repo: {url}\n  branch: main\n  ssh_key: {}\n  known_hosts: {known_hosts}\ndrain: 0s\n",
            w.webroot.display(),
            key.display()
        ),
    )
    .unwrap();
}

/// rootswap with HOME in the test's temp dir (the default known_hosts files).
fn run(w: &World, home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("-c")
        .arg(&w.config)
        .args(args)
        .env("HOME", home)
        .output()
        .unwrap()
}

#[test]
fn deploy_key_and_host_keys_against_a_real_sshd() {
    let _heavy = heavy();
    let Some(sshd_bin) = support::require(
        "sshd",
        support::find_program(&["sshd"]),
        "apt-get install -y openssh-server",
    ) else {
        return;
    };
    if support::require(
        "ssh-keygen",
        support::find_program(&["ssh-keygen"]),
        "apt-get install -y openssh-client",
    )
    .is_none()
    {
        return;
    }
    let w = World::new(&[("index.php", "<?php echo 'v1';")], "");
    let t = w.tmp.path();
    // The private repository, served by sshd by absolute path.
    let bare = t.join("srv/site.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    git(&w.repo, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let keys = t.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let deploy_key = keys.join("deploy_key");
    let wrong_key = keys.join("wrong_key");
    keygen(&deploy_key);
    keygen(&wrong_key);
    let server = start_sshd(
        &sshd_bin,
        &t.join("sshd"),
        &deploy_key.with_extension("pub"),
    );
    let port = server.port;
    let url = format!("ssh://{}@127.0.0.1:{port}{}", whoami(), bare.display());
    let fp = fingerprint(&server.host_pub());
    let home = t.join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let known = keys.join("known_hosts");
    std::fs::write(
        &known,
        format!("[127.0.0.1]:{port} {}\n", key_of(&server.host_pub())),
    )
    .unwrap();

    // Unknown host on a first deploy: fails, shows the fingerprint and how to add it, leaves nothing.
    let empty = keys.join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    write_config(&w, &url, &deploy_key, empty.to_str().unwrap());
    let out = run(&w, &home, &["deploy"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("the host key of [127.0.0.1]:{port} is not known")),
        "{err}"
    );
    assert!(err.contains(&fp), "fingerprint {fp} shown: {err}");
    assert!(
        err.contains(&format!("ssh-keyscan -p {port} -t ed25519 127.0.0.1")),
        "{err}"
    );
    assert!(err.contains("accept-new"), "{err}");
    assert_eq!(
        std::fs::read_dir(&w.webroot).unwrap().count(),
        0,
        "nothing left behind"
    );

    // Right key, known host (hashed entry, as `ssh-keygen -H` writes it): deploys.
    let hashed = keys.join("hashed_known_hosts");
    std::fs::copy(&known, &hashed).unwrap();
    let out = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&hashed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(read(&hashed).starts_with("|1|"), "{}", read(&hashed));
    write_config(&w, &url, &deploy_key, hashed.to_str().unwrap());
    let out = run(&w, &home, &["deploy"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&w.link().join("index.php")), "<?php echo 'v1';");

    // A new commit behind sshd, then each failure leaves the site as it was.
    w.write_files(&[("index.php", "<?php echo 'v2';")]);
    w.commit("v2");
    git(&w.repo, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let check_fails = |config_key: &Path, kh: &str, expect: &[&str]| {
        write_config(&w, &url, config_key, kh);
        let before = webroot_state(&w.webroot);
        let out = run(&w, &home, &["deploy"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{err}");
        for e in expect {
            assert!(err.contains(e), "expected {e:?} in:\n{err}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert_same(
            &before,
            &webroot_state(&w.webroot),
            &format!("disk changed after: {err}"),
        );
        assert_eq!(read(&w.link().join("index.php")), "<?php echo 'v1';");
    };
    // Wrong key.
    check_fails(
        &wrong_key,
        known.to_str().unwrap(),
        &[
            "the server refused the deploy key",
            wrong_key.to_str().unwrap(),
        ],
    );
    // Unknown host.
    check_fails(&deploy_key, empty.to_str().unwrap(), &["is not known", &fp]);
    // Changed host key: known_hosts holds another ed25519 key for this host and port.
    let other = keys.join("other_host");
    keygen(&other);
    let changed = keys.join("changed_known_hosts");
    std::fs::write(
        &changed,
        format!(
            "[127.0.0.1]:{port} {}\n",
            key_of(&other.with_extension("pub"))
        ),
    )
    .unwrap();
    check_fails(
        &deploy_key,
        changed.to_str().unwrap(),
        &["has CHANGED", &fp, "man-in-the-middle", "ssh-keygen -R"],
    );
    // A private key others can read is refused, as ssh refuses it.
    let open_key = keys.join("open_key");
    std::fs::copy(&deploy_key, &open_key).unwrap();
    std::fs::set_permissions(
        &open_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    check_fails(
        &open_key,
        known.to_str().unwrap(),
        &["permissions 0644", "too open", "chmod 600"],
    );

    // accept-new: the first contact is accepted and recorded; then a changed key still fails.
    write_config(&w, &url, &deploy_key, "accept-new");
    let out = run(&w, &home, &["deploy"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("first contact with") && err.contains(&fp),
        "{err}"
    );
    assert_eq!(read(&w.link().join("index.php")), "<?php echo 'v2';");
    let recorded = read(&w.webroot.join(".rootswap/known_hosts"));
    assert!(
        recorded.contains(&format!("[127.0.0.1]:{port} ssh-ed25519 ")),
        "{recorded}"
    );
    w.write_files(&[("index.php", "<?php echo 'v3';")]);
    w.commit("v3");
    git(&w.repo, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let out = run(&w, &home, &["deploy"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("first contact"), "known now: {err}");
    assert_eq!(read(&w.link().join("index.php")), "<?php echo 'v3';");
    // No `known_hosts` setting: the user's ~/.ssh/known_hosts is read.
    std::fs::remove_file(w.webroot.join(".rootswap/known_hosts")).unwrap();
    std::fs::copy(&known, home.join(".ssh/known_hosts")).unwrap();
    std::fs::write(
        &w.config,
        format!(
            "webroot: {}\nsource:\n  repo: {url}\n  branch: main\n  ssh_key: {}\ndrain: 0s\n",
            w.webroot.display(),
            deploy_key.display()
        ),
    )
    .unwrap();
    let out = run(&w, &home, &["deploy", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(home.join(".ssh/known_hosts")).unwrap();
    write_config(&w, &url, &deploy_key, "accept-new");
    // The server's key changes: accept-new does not accept that.
    std::fs::write(
        w.webroot.join(".rootswap/known_hosts"),
        format!(
            "[127.0.0.1]:{port} {}\n",
            key_of(&other.with_extension("pub"))
        ),
    )
    .unwrap();
    w.write_files(&[("index.php", "<?php echo 'v4';")]);
    w.commit("v4");
    git(&w.repo, &["push", "-q", bare.to_str().unwrap(), "main"]);
    check_fails_v3(&w, &home, &["has CHANGED", &fp]);
}

fn check_fails_v3(w: &World, home: &Path, expect: &[&str]) {
    let out = run(w, home, &["deploy"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    for e in expect {
        assert!(err.contains(e), "expected {e:?} in:\n{err}");
    }
    assert_eq!(read(&w.link().join("index.php")), "<?php echo 'v3';");
}
