//! The layout and its state: the link, one filesystem for ROOT and its
//! snapshots, room for the next snapshot, a private state dir.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::layout::{Layout, LinkState};

use super::check::Check;

/// The serving link: a symlink to a directory of the webroot, by name.
pub(super) fn check_link(layout: &Layout) -> Check {
    let link = layout.link();
    match layout.link_state() {
        Ok(LinkState::Symlink(t)) => check_symlink(layout, &t),
        Ok(LinkState::Missing) => Check::fail(
            true,
            format!("link {} does not exist yet", link.display()),
            "run `rootswap deploy`: the first deploy creates it",
        ),
        Ok(LinkState::NotALink) => Check::fail(
            true,
            format!(
                "{} is a real directory, not a symlink: it cannot be switched atomically",
                link.display()
            ),
            format!(
                "mv {} {} and run `rootswap deploy` (it creates the link)",
                link.display(),
                layout.root().display()
            ),
        ),
        Err(e) => Check::fail(
            true,
            format!("cannot read link {}: {e:#}", link.display()),
            "check the webroot's permissions",
        ),
    }
}

/// The link is a symlink to `t`: inside the webroot, by name (or an
/// absolute link deploys adopt), to a directory that exists.
fn check_symlink(layout: &Layout, t: &str) -> Check {
    let link = layout.link();
    let p = Path::new(t);
    let bare = p.components().count() == 1 && !t.contains('/');
    let target = layout.webroot.join(p);
    // An absolute link to an entry of the webroot is what deploy
    // adopts (Layout::live_name) and rewrites by name at its switch.
    let adopted = (!bare)
        .then(|| layout.live_name().ok().flatten())
        .flatten()
        .filter(|n| !n.contains('/') && layout.webroot.join(n).is_dir());
    if let Ok(Some(foreign)) = layout.foreign_link() {
        Check::fail(
            true,
            format!(
                "link {} -> {t}: a tree outside the webroot, which a deploy would stop serving",
                link.display()
            ),
            layout.foreign_link_advice(&foreign),
        )
    } else if let Some(name) = adopted {
        Check::pass(format!(
            "link {} -> {t}: an absolute link to {name} in the webroot; deploys accept it and point the link at {name} by name at their next switch",
            link.display()
        ))
    } else if !bare {
        Check::fail(
            true,
            format!(
                "link {} -> {t}: not a name inside the webroot",
                link.display()
            ),
            format!(
                "point it at ROOT by name: run `rootswap deploy`, or ln -s {} tmp && mv -T tmp {}",
                layout.root_name,
                link.display()
            ),
        )
    } else if !target.is_dir() {
        Check::fail(
            true,
            format!(
                "link {} -> {t}: the target does not exist (every request fails)",
                link.display()
            ),
            "run `rootswap deploy` to check out the site into ROOT and point the link at it",
        )
    } else {
        Check::pass(format!(
            "link {} -> {t} is a symlink into the webroot",
            link.display()
        ))
    }
}

/// ROOT and its snapshots on the webroot's filesystem (renames and recycling).
pub(super) fn check_same_fs(layout: &Layout) -> Check {
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    let Some(web) = dev(&layout.webroot) else {
        return Check::fail(
            true,
            format!("webroot {} cannot be read", layout.webroot.display()),
            "create it or fix `webroot`",
        );
    };
    let mut others: Vec<String> = Vec::new();
    let mut dirs = vec![layout.root()];
    if let Ok(snaps) = layout.snapshots() {
        dirs.extend(snaps.into_iter().map(|s| s.path));
    }
    for d in &dirs {
        if let Some(x) = dev(d) {
            if x != web {
                others.push(d.display().to_string());
            }
        }
    }
    if others.is_empty() {
        Check::pass(format!(
            "ROOT and its {} snapshot(s) are on the webroot's filesystem",
            dirs.len().saturating_sub(1)
        ))
    } else {
        Check::fail(
            false,
            format!("on another filesystem than the webroot: {}", others.join(", ")),
            "keep ROOT and its snapshots as plain directories in the webroot (no mount points): renames and recycling need one filesystem",
        )
    }
}

/// The state dir holds the history, the Git cache and the lock: rootswap's
/// alone (0700). A deploy tightens a loose one; doctor says so beforehand.
pub(super) fn check_state_dir(layout: &Layout) -> Option<Check> {
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::symlink_metadata(&layout.state).ok()?;
    let mode = m.permissions().mode() & 0o7777;
    Some(if mode & 0o077 == 0 {
        Check::pass(format!(
            "state dir {} is private ({mode:04o})",
            layout.state.display()
        ))
    } else {
        Check::fail(
            false,
            format!(
                "state dir {} is {mode:04o}: other local users can read the history and the Git cache",
                layout.state.display()
            ),
            format!(
                "run `chmod -R go-rwx {}` (the next deploy does it too)",
                layout.state.display()
            ),
        )
    })
}

fn tree_size(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

/// Room on the webroot's filesystem for a snapshot of ROOT.
pub(super) fn check_space(layout: &Layout) -> Check {
    let root = layout.root();
    if !root.is_dir() {
        return Check::pass("ROOT does not exist yet: no snapshot to make room for");
    }
    let need = tree_size(&root);
    let margin = (need / 10).max(64 << 20);
    match rustix::fs::statvfs(&layout.webroot) {
        Ok(st) => {
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            let mib = |b: u64| b / (1 << 20);
            if free >= need + margin {
                Check::pass(format!(
                    "{} MiB free, a snapshot of ROOT needs {} MiB (+{} MiB margin)",
                    mib(free),
                    mib(need),
                    mib(margin)
                ))
            } else {
                Check::fail(
                    false,
                    format!("only {} MiB free; a snapshot of ROOT needs {} MiB (+{} MiB margin): the next deploy fails (the site stays up)", mib(free), mib(need), mib(margin)),
                    "free space on the webroot's filesystem, or remove kept snapshots: rootswap snapshots list",
                )
            }
        }
        Err(e) => Check::fail(
            false,
            format!(
                "cannot read free space of {}: {e}",
                layout.webroot.display()
            ),
            "check the webroot",
        ),
    }
}
