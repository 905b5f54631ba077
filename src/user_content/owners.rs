//! Who owns the directories rootswap creates in user content.
//!
//! Run as root, rootswap creates directories in the application's data
//! (the copy-back, the catch-up): they get the owner, group and mode of the
//! same directory in the other tree, or of their parent (see
//! [`crate::copy::copy_file_if`]), never root's, or the application (running
//! as www-data) could neither create nor delete files in them.
//!
//! Versions before that rule created them `root:root`. [`Repair`] finds such
//! directories while ROOT's user content is scanned at the start of a deploy
//! and gives them back: a directory owned by root, whose parent is owned by
//! another user, in a part of the tree the repository tracks no file in, gets
//! its parent's owner and group, with a log line naming it.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::rules::Classifier;

/// Repairs root-owned directories in one tree's user content.
pub struct Repair {
    tree: PathBuf,
    /// Directories (relative to the tree) holding a tracked file: not user content.
    tracked_dirs: HashSet<PathBuf>,
    /// Only root can give a directory away (and only root made them).
    active: bool,
    /// Directories repaired, relative to the tree.
    pub repaired: Vec<PathBuf>,
}

impl Repair {
    /// A repair of `tree`, whose tracked files `c` knows.
    pub fn new(tree: &Path, c: &Classifier) -> Repair {
        let mut tracked_dirs = HashSet::new();
        for f in c.tracked() {
            for a in f.ancestors().skip(1) {
                if a.as_os_str().is_empty() || !tracked_dirs.insert(a.to_path_buf()) {
                    break;
                }
            }
        }
        Repair {
            tree: tree.to_path_buf(),
            tracked_dirs,
            active: rustix::process::geteuid().is_root(),
            repaired: Vec::new(),
        }
    }

    /// Looks at the directory `rel` (relative to the tree) and repairs its
    /// owner if an earlier version left it root's. Never fails: what cannot
    /// be looked at or repaired is left as it is, with a log line.
    pub fn visit(&mut self, rel: &Path) {
        if !self.active || rel.as_os_str().is_empty() || self.tracked_dirs.contains(rel) {
            return;
        }
        let dir = self.tree.join(rel);
        let Ok(m) = std::fs::symlink_metadata(&dir) else {
            return;
        };
        if !m.is_dir() || m.uid() != 0 {
            return;
        }
        let parent = self.tree.join(rel.parent().unwrap_or(Path::new("")));
        let Ok(p) = std::fs::metadata(&parent) else {
            return;
        };
        if p.uid() == 0 {
            return;
        }
        match std::os::unix::fs::lchown(&dir, Some(p.uid()), Some(p.gid())) {
            Ok(()) => {
                tracing::warn!(
                    "repaired the owner of {}: it was root's (made by an earlier rootswap), \
                     now {}:{} like {}",
                    dir.display(),
                    p.uid(),
                    p.gid(),
                    parent.display()
                );
                self.repaired.push(rel.to_path_buf());
            }
            Err(e) => tracing::warn!(
                "{} belongs to root while {} belongs to uid {}: cannot give it to that user: {e}",
                dir.display(),
                parent.display(),
                p.uid()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UserContentConfig;
    use crate::user_content::rules::Rules;

    #[test]
    fn root_owned_directories_under_an_app_owned_parent_are_given_back() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: changing owners needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let tree = t.path();
        for d in ["data/pages/old", "app/lib", "rootdata/x"] {
            std::fs::create_dir_all(tree.join(d)).unwrap();
        }
        std::os::unix::fs::chown(tree.join("data"), Some(33), Some(33)).unwrap();
        std::os::unix::fs::chown(tree.join("data/pages"), Some(33), Some(33)).unwrap();
        std::os::unix::fs::chown(tree.join("app"), Some(33), Some(33)).unwrap();
        let tracked: HashSet<PathBuf> = [PathBuf::from("app/lib/a.php")].into_iter().collect();
        let rules = Rules::new(&UserContentConfig::default()).unwrap();
        let c = Classifier::new(rules, tracked, &[], Path::new(""));
        let mut r = Repair::new(tree, &c);
        for d in [
            "data",
            "data/pages",
            "data/pages/old",
            "app",
            "app/lib",
            "rootdata/x",
        ] {
            r.visit(Path::new(d));
        }
        let owner = |d: &str| {
            let m = std::fs::metadata(tree.join(d)).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owner("data/pages/old"), (33, 33), "repaired");
        assert_eq!(owner("app/lib"), (0, 0), "holds a tracked file: left");
        assert_eq!(owner("rootdata/x"), (0, 0), "parent is root's: left");
        assert_eq!(r.repaired, vec![PathBuf::from("data/pages/old")]);
    }
}
