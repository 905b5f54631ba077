//! Packaging: the cargo-deb metadata, the systemd unit, the generated
//! completions and man page, and a built .deb's contents.
//!
//! The package is built with `cargo deb --no-build` from the binary under test
//! when cargo-deb is installed (`cargo install cargo-deb`); without it the test
//! stages the same asset list by hand and builds with `dpkg-deb --build`, and
//! says so (`ROOTSWAP_TEST_NO_CARGO_DEB=1` forces that path). Either way `dpkg-deb -c`/`-I` must show every file in its place.

use crate::support;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn deb_metadata() -> serde_json::Value {
    let out = Command::new(cargo())
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(manifest_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pkg = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "rootswap")
        .unwrap()
        .clone();
    pkg["metadata"]["deb"].clone()
}

/// (source, destination, mode) of every asset.
fn assets() -> Vec<(String, String, String)> {
    deb_metadata()["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a[0].as_str().unwrap().to_string(),
                a[1].as_str().unwrap().to_string(),
                a[2].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Where an asset's destination lands when it ends with '/'.
fn installed_path(src: &str, dest: &str) -> String {
    if dest.ends_with('/') {
        format!(
            "{dest}{}",
            Path::new(src).file_name().unwrap().to_string_lossy()
        )
    } else {
        dest.to_string()
    }
}

const EXPECTED: [&str; 7] = [
    "usr/bin/rootswap",
    "lib/systemd/system/rootswap@.service",
    "etc/rootswap/example.yaml",
    "usr/share/bash-completion/completions/rootswap",
    "usr/share/zsh/vendor-completions/_rootswap",
    "usr/share/fish/vendor_completions.d/rootswap.fish",
    "usr/share/man/man1/rootswap.1.gz",
];

#[test]
fn deb_metadata_lists_every_asset() {
    let meta = deb_metadata();
    assert_eq!(meta["maintainer-scripts"], "packaging/debian/");
    assert!(meta["maintainer"].as_str().is_some_and(|m| m.contains('@')));
    let list = assets();
    let dests: BTreeSet<String> = list.iter().map(|(s, d, _)| installed_path(s, d)).collect();
    for e in EXPECTED {
        assert!(dests.contains(e), "{e} missing from the assets: {dests:?}");
    }
    for (src, _, mode) in &list {
        if !src.starts_with("target/") {
            assert!(
                manifest_dir().join(src).is_file(),
                "asset source {src} does not exist"
            );
        }
        assert!(mode == "644" || mode == "755", "{src}: mode {mode}");
    }
    for script in ["postinst", "prerm", "postrm"] {
        let text = support::read(&manifest_dir().join("packaging/debian").join(script));
        assert!(
            text.starts_with("#!/bin/sh\n") && text.contains("systemctl"),
            "{script}"
        );
    }
}

#[test]
fn systemd_unit_is_a_hardened_template() {
    let unit = support::read(&manifest_dir().join("packaging/systemd/rootswap@.service"));
    let lines: Vec<&str> = unit.lines().filter(|l| !l.starts_with('#')).collect();
    for want in [
        "ExecStart=/usr/bin/rootswap -c /etc/rootswap/%i.yaml serve",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/www",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ConditionPathExists=/etc/rootswap/%i.yaml",
        "WantedBy=multi-user.target",
        // Slow clients of the trigger URL must not take the deploys' fds.
        "LimitNOFILE=65536",
    ] {
        assert!(lines.contains(&want), "unit lacks `{want}`:\n{unit}");
    }
    // The drop-in that moves ReadWritePaths is documented in the unit itself.
    assert!(
        unit.contains("systemctl edit rootswap@") && unit.contains("#   ReadWritePaths=\n"),
        "{unit}"
    );
    // systemd's own parser: skipped locally without it, a failure under CI=true.
    if let Some(analyze) = support::require_tool("systemd-analyze") {
        let tmp = tempfile::tempdir().unwrap();
        let copy = tmp.path().join("rootswap@test.service");
        std::fs::write(
            &copy,
            unit.replace("/usr/bin/rootswap", &support::bin().to_string_lossy()),
        )
        .unwrap();
        let v = Command::new(analyze)
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&v.stderr);
        assert!(
            !err.contains("Unknown key") && !err.contains("Unknown section"),
            "{err}"
        );
    }
}

#[test]
fn completions_and_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = Command::new(support::bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        for word in ["deploy", "init", "status", "snapshots", "effective"] {
            assert!(text.contains(word), "{shell} completions lack {word}");
        }
    }
    let out = Command::new(support::bin()).arg("man").output().unwrap();
    let man = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && man.contains(".TH rootswap 1"),
        "{man}"
    );
    assert!(man.contains("init") && man.contains("deploy"), "{man}");
    let help = Command::new(support::bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        !help.contains("completions") && !help.contains("\n  man"),
        "hidden from --help:\n{help}"
    );
    assert!(help.contains("init") && help.contains("config"), "{help}");
}

/// `ROOTSWAP_TEST_NO_CARGO_DEB=1` forces the dpkg-deb path.
fn has_cargo_deb() -> bool {
    std::env::var_os("ROOTSWAP_TEST_NO_CARGO_DEB").is_none()
        && Command::new(cargo())
            .args(["deb", "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
}

/// Builds the .deb into `out_dir`, returns its path.
fn build_deb(out_dir: &Path) -> PathBuf {
    let bin = support::bin();
    let profile_dir = bin.parent().unwrap().to_path_buf();
    let target_dir = profile_dir.parent().unwrap().to_path_buf();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(other) => other.to_string(),
        None => panic!("odd binary path {}", bin.display()),
    };
    let st = Command::new("sh")
        .arg(manifest_dir().join("packaging/gen-assets.sh"))
        .arg(&bin)
        .arg(profile_dir.join("assets"))
        .status()
        .unwrap();
    assert!(st.success(), "gen-assets.sh failed");
    if has_cargo_deb() {
        eprintln!("building with cargo deb --no-build --profile {profile}");
        let deb = out_dir.join("rootswap.deb");
        let out = Command::new(cargo())
            .args(["deb", "--no-build", "--fast", "--profile", &profile, "-o"])
            .arg(&deb)
            .env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(manifest_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo deb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return deb;
    }
    eprintln!("cargo-deb is not installed: staging the metadata's assets by hand and building with dpkg-deb");
    let stage = out_dir.join("stage");
    for (src, dest, mode) in assets() {
        let from = match src.strip_prefix("target/release/") {
            Some(rest) => profile_dir.join(rest),
            None => manifest_dir().join(&src),
        };
        let to = stage.join(installed_path(&src, &dest));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        use std::os::unix::fs::PermissionsExt;
        let mode = u32::from_str_radix(&mode, 8).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let debian = stage.join("DEBIAN");
    std::fs::create_dir_all(&debian).unwrap();
    let meta = deb_metadata();
    std::fs::write(
        debian.join("control"),
        format!(
            "Package: rootswap\nVersion: {}-1\nArchitecture: amd64\nSection: {}\nPriority: {}\nMaintainer: {}\nDescription: rootswap\n {}\n",
            env!("CARGO_PKG_VERSION"),
            meta["section"].as_str().unwrap(),
            meta["priority"].as_str().unwrap(),
            meta["maintainer"].as_str().unwrap(),
            meta["extended-description"].as_str().unwrap().replace('\n', " ")
        ),
    )
    .unwrap();
    std::fs::write(debian.join("conffiles"), "/etc/rootswap/example.yaml\n").unwrap();
    for script in ["postinst", "prerm", "postrm"] {
        std::fs::copy(
            manifest_dir().join("packaging/debian").join(script),
            debian.join(script),
        )
        .unwrap();
    }
    let deb = out_dir.join("rootswap.deb");
    let out = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "-z1", "--build"])
        .arg(&stage)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dpkg-deb --build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    deb
}

#[test]
fn the_package_holds_binary_unit_config_completions_and_man_page() {
    if support::require_tool("dpkg-deb").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let deb = build_deb(tmp.path());
    let out = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout);
    let files: BTreeSet<String> = listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_start_matches("./").to_string())
        .collect();
    for e in EXPECTED {
        assert!(files.contains(e), "{e} not in the package:\n{listing}");
    }
    let bin_line = listing
        .lines()
        .find(|l| l.ends_with("./usr/bin/rootswap"))
        .unwrap();
    assert!(bin_line.starts_with("-rwxr-xr-x"), "{bin_line}");
    let info = Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    for want in [
        "Package: rootswap",
        "conffiles",
        "postinst",
        "prerm",
        "postrm",
    ] {
        assert!(info.contains(want), "{want} not in dpkg-deb -I:\n{info}");
    }
    let conffiles = Command::new("dpkg-deb")
        .arg("-f")
        .arg(&deb)
        .arg("Package")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&conffiles.stdout).trim(),
        "rootswap"
    );
    // Unpack: the files are the ones in the tree, and the binary runs.
    let root = tmp.path().join("root");
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        support::read(&root.join("lib/systemd/system/rootswap@.service")),
        support::read(&manifest_dir().join("packaging/systemd/rootswap@.service"))
    );
    assert_eq!(
        support::read(&root.join("etc/rootswap/example.yaml")),
        support::read(&manifest_dir().join("config.example.yaml"))
    );
    let v = Command::new(root.join("usr/bin/rootswap"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&v.stdout).starts_with("rootswap "),
        "{v:?}"
    );
    let ctl = Command::new("dpkg-deb")
        .arg("--ctrl-tarfile")
        .arg(&deb)
        .output()
        .unwrap();
    assert!(ctl.status.success());
    let conf = Command::new("sh")
        .arg("-c")
        .arg("dpkg-deb --ctrl-tarfile \"$1\" | tar -xOf - ./conffiles")
        .arg("sh")
        .arg(&deb)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&conf.stdout).contains("/etc/rootswap/example.yaml"),
        "the default config is a conffile"
    );
}
