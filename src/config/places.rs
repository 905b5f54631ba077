//! Where ROOT, the link, the state directory and the shared directory lie:
//! each needs a place of its own (checked from the text, without the disk).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::Config;

/// Prefix of hidden directories holding a snapshot that is being built.
pub const PARTIAL_PREFIX: &str = ".partial-";
/// Prefix of hidden directories holding a snapshot that is being removed.
pub const EVICTING_PREFIX: &str = ".evicting-";

/// Lexically normalizes a path (removes `.` and folds `..`), without touching the disk.
pub fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `user_content.shared_dir` is a directory of its own: not the webroot,
/// not inside ROOT, not the link or a snapshot name.
pub fn check_shared_dir(cfg: &Config) -> Result<()> {
    let uc = &cfg.user_content;
    let dir = if uc.shared_dir.is_absolute() {
        normalize(&uc.shared_dir)
    } else {
        normalize(&cfg.webroot.join(&uc.shared_dir))
    };
    let webroot = normalize(&cfg.webroot);
    let root = webroot.join(&cfg.root);
    let first = dir.strip_prefix(&webroot).ok().and_then(|r| {
        r.components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
    });
    let clash = dir.starts_with(&root)
        || dir == webroot
        || first.as_deref() == Some(cfg.link.as_str())
        || first
            .as_deref()
            .is_some_and(|f| f.starts_with(&format!("{}_", cfg.root)));
    if clash {
        bail!(
                "`shared_dir: {}` must be a directory of its own: not webroot, not inside ROOT, not the link or a snapshot name; \
                 use the default `shared` (webroot/shared) or an absolute path elsewhere",
                uc.shared_dir.display()
            );
    }
    Ok(())
}

/// A place the configuration gives a name in (or beside) the webroot.
struct Place {
    key: &'static str,
    value: String,
    default: &'static str,
    /// Absolute and normalized.
    path: PathBuf,
}

/// Checks that ROOT, the link, the state directory and the shared directory
/// each have a place of their own: none the same as another, inside another
/// or under the link, neither the state nor the shared directory the webroot
/// or above it, and none but ROOT shaped like a snapshot name (`ROOT_*`, or
/// rootswap's `.partial-*`/`.evicting-*` temporaries). A layout that points
/// at itself fails its first switch or copies the webroot into ROOT. The
/// error names the two keys and which one to change.
pub(super) fn check_places(cfg: &Config) -> Result<()> {
    let webroot = normalize(&cfg.webroot);
    let places = places(cfg, &webroot);
    for p in &places[2..] {
        if webroot.starts_with(&p.path) {
            bail!(
                "`{}: {}` ({}) is the webroot or a directory above it; it needs a directory of its own: use the default `{}` or an absolute path outside the webroot",
                p.key, p.value, p.path.display(), p.default
            );
        }
    }
    check_snapshot_like(cfg, &webroot, &places[1..])?;
    check_overlaps(&places)
}

/// ROOT, the link, the state directory and the shared directory, resolved.
fn places(cfg: &Config, webroot: &Path) -> [Place; 4] {
    let resolve = |p: &Path| match p.is_absolute() {
        true => normalize(p),
        false => normalize(&webroot.join(p)),
    };
    [
        Place {
            key: "root",
            value: cfg.root.clone(),
            default: "ROOT",
            path: webroot.join(&cfg.root),
        },
        Place {
            key: "link",
            value: cfg.link.clone(),
            default: "current",
            path: webroot.join(&cfg.link),
        },
        Place {
            key: "state_dir",
            value: cfg.state_dir.display().to_string(),
            default: ".rootswap",
            path: resolve(&cfg.state_dir),
        },
        Place {
            key: "user_content.shared_dir",
            value: cfg.user_content.shared_dir.display().to_string(),
            default: "shared",
            path: resolve(&cfg.user_content.shared_dir),
        },
    ]
}

/// No place but ROOT may look like a snapshot (rootswap would evict it).
fn check_snapshot_like(cfg: &Config, webroot: &Path, places: &[Place]) -> Result<()> {
    let snapshot_prefix = format!("{}_", cfg.root);
    for p in places {
        let first = p
            .path
            .strip_prefix(webroot)
            .ok()
            .and_then(|r| r.components().next());
        let Some(first) = first.map(|c| c.as_os_str().to_string_lossy().into_owned()) else {
            continue;
        };
        if [snapshot_prefix.as_str(), PARTIAL_PREFIX, EVICTING_PREFIX]
            .iter()
            .any(|x| first.starts_with(x))
        {
            bail!(
                "`{}: {}` has the form of a snapshot name ({snapshot_prefix}*, or rootswap's temporary {PARTIAL_PREFIX}* and {EVICTING_PREFIX}*): \
                 rootswap would list, evict or remove it as a snapshot; use the default `{}` or a name that does not start with `{snapshot_prefix}`",
                p.key, p.value, p.default
            );
        }
    }
    Ok(())
}

/// No place the same as another, inside another or under the link.
fn check_overlaps(places: &[Place]) -> Result<()> {
    for (i, a) in places.iter().enumerate() {
        for b in &places[i + 1..] {
            let how = if a.path == b.path {
                "is the same directory as"
            } else if a.path.starts_with(&b.path) {
                "is inside"
            } else if b.path.starts_with(&a.path) {
                "holds"
            } else {
                continue;
            };
            let fix = if b.value != b.default { b } else { a };
            bail!(
                "`{}: {}` ({}) {how} `{}: {}` ({}); ROOT, the link, the state directory and the shared directory each need a place of their own, \
                 none inside another or under the link: set `{}` to another name (its default is `{}`)",
                a.key, a.value, a.path.display(), b.key, b.value, b.path.display(), fix.key, fix.default
            );
        }
    }
    Ok(())
}
