//! `user_content.shared`: each directory linked from ROOT to its store and
//! owned like ROOT.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::layout::Layout;
use crate::shared::Shared;

use super::check::Check;

/// `user_content.shared`: each directory linked (or linkable by the next
/// deploy), and owned like ROOT so that php-fpm can write where it could before.
pub(super) fn check_shared(shared: &Shared, layout: &Layout) -> Vec<Check> {
    let root = layout.root();
    let root_owner = std::fs::metadata(&root).map(|m| (m.uid(), m.gid())).ok();
    shared
        .paths()
        .iter()
        .map(|p| check_one(shared, &root, root_owner, p))
        .collect()
}

/// One shared directory `p`: what ROOT holds at its place.
fn check_one(shared: &Shared, root: &Path, root_owner: Option<(u32, u32)>, p: &Path) -> Check {
    let at = root.join(p);
    let store = shared.store(p);
    let shown = p.display();
    match std::fs::symlink_metadata(&at) {
        Ok(m) if m.file_type().is_symlink() => check_linked(shared, &at, root_owner, p),
        Ok(m) if m.is_dir() => Check::pass(format!(
            "shared directory {shown} is still a directory in ROOT: the next deploy moves it to {} and links it",
            store.display()
        )),
        Ok(_) => Check::fail(
            true,
            format!("shared directory {shown}: {} is a file; deploys refuse to start", at.display()),
            "move the file away or remove the path from `user_content.shared`",
        ),
        Err(_) => Check::pass(format!(
            "shared directory {shown}: the next deploy creates {} and links it",
            store.display()
        )),
    }
}

/// The link `at` of the shared directory `p`: pointing at its store, which
/// exists and is owned like ROOT.
fn check_linked(shared: &Shared, at: &Path, root_owner: Option<(u32, u32)>, p: &Path) -> Check {
    let store = shared.store(p);
    let shown = p.display();
    let target = std::fs::read_link(at).unwrap_or_default();
    if target != shared.target(p) {
        return Check::fail(
            false,
            format!(
                "shared directory {shown}: ROOT's link points at {}, not {}",
                target.display(),
                store.display()
            ),
            "deploy again: the deploy repoints it",
        );
    }
    let owner = std::fs::metadata(&store).map(|m| (m.uid(), m.gid())).ok();
    match (owner, root_owner) {
        (None, _) => Check::fail(
            true,
            format!(
                "shared directory {shown}: {} is missing; requests writing there fail",
                store.display()
            ),
            format!(
                "mkdir -p {} (owned by the user php-fpm runs as), or deploy again",
                store.display()
            ),
        ),
        (Some(o), Some(r)) if o != r => Check::fail(
            false,
            format!(
                "shared directory {shown}: {} is owned by {}:{}, ROOT by {}:{}",
                store.display(),
                o.0,
                o.1,
                r.0,
                r.1
            ),
            format!(
                "if php-fpm writes uploads as ROOT's owner: chown -R {}:{} {}",
                r.0,
                r.1,
                store.display()
            ),
        ),
        _ => Check::pass(format!("shared directory {shown} -> {}", store.display())),
    }
}
