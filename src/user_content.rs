//! Step 5 of the flow: user-generated content, and copying it back into ROOT.
//!
//! A path in the served tree is *user content* when the previously deployed
//! commit does not track it, the repository's `.gitignore` files do not
//! ignore it (full gitignore semantics, through the `ignore` crate), or a
//! `preserve` glob matches it — and no `exclude` glob matches it.
//!
//! [`scan`] lists the user files of a tree with their size, mtime and mode (a
//! [`Manifest`]). The deploy scans the snapshot right after taking it, then
//! again when copying back; [`copy_back`] applies the difference to ROOT:
//! files created or changed in the snapshot are copied in, files deleted from
//! it are removed from ROOT (if ROOT still holds the same version), and a
//! path the new commit tracks is left to the commit (a logged conflict).

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::config::UserContentConfig;
use crate::source::IgnoreFile;

/// The `preserve` and `exclude` globs, compiled.
#[derive(Debug, Clone)]
pub struct Rules {
    gitignore: bool,
    preserve: GlobSet,
    /// Literal directory prefixes of the preserve globs; `None` when one has no prefix.
    preserve_prefixes: Option<Vec<PathBuf>>,
    exclude: GlobSet,
}

fn compile(kind: &str, patterns: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g: Glob = GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map_err(|e| anyhow!("{kind} pattern '{p}' is not a valid glob: {}", e.kind()))?;
        b.add(g);
    }
    b.build()
        .map_err(|e| anyhow!("{kind} patterns cannot be compiled: {e}"))
}

/// The part of a glob before its first wildcard, cut back to a whole directory.
fn literal_dir_prefix(glob: &str) -> PathBuf {
    let end = glob.find(['*', '?', '[', '{', '\\']).unwrap_or(glob.len());
    let lit = &glob[..end];
    match lit.rfind('/') {
        Some(i) => PathBuf::from(&lit[..i]),
        None => PathBuf::new(),
    }
}

impl Rules {
    /// Compiles the configured globs; an invalid one is named in the error.
    pub fn new(cfg: &UserContentConfig) -> Result<Rules> {
        let prefixes: Vec<PathBuf> = cfg.preserve.iter().map(|g| literal_dir_prefix(g)).collect();
        Ok(Rules {
            gitignore: cfg.gitignore,
            preserve: compile("preserve", &cfg.preserve)?,
            preserve_prefixes: if prefixes.iter().any(|p| p.as_os_str().is_empty()) {
                None
            } else {
                Some(prefixes)
            },
            exclude: compile("exclude", &cfg.exclude)?,
        })
    }

    /// Could a preserve glob match something below directory `dir`?
    fn preserve_may_match_below(&self, dir: &Path) -> bool {
        if self.preserve.is_empty() {
            return false;
        }
        match &self.preserve_prefixes {
            None => true,
            Some(prefixes) => prefixes
                .iter()
                .any(|p| p.starts_with(dir) || dir.starts_with(p)),
        }
    }
}

/// Decides, path by path, what is user content for one deployed commit.
pub struct Classifier {
    rules: Rules,
    tracked: HashSet<PathBuf>,
    /// Deepest directory first: (ROOT-relative directory depth key, matcher).
    ignores: Vec<Gitignore>,
    /// Virtual prefix under which ROOT-relative paths are matched.
    base: PathBuf,
}

impl Classifier {
    /// Builds a classifier from the rules, the files the commit tracks and its
    /// `.gitignore` files (directories relative to the repository root;
    /// `subdir` is where ROOT sits in the repository).
    pub fn new(
        rules: Rules,
        tracked: HashSet<PathBuf>,
        ignore_files: &[IgnoreFile],
        subdir: &Path,
    ) -> Classifier {
        let repo = PathBuf::from("/rootswap-repo");
        let mut ignores: Vec<(usize, Gitignore)> = Vec::new();
        if rules.gitignore {
            for f in ignore_files {
                let dir = repo.join(&f.dir);
                let mut b = GitignoreBuilder::new(&dir);
                for line in f.text.lines() {
                    if let Err(e) = b.add_line(None, line) {
                        tracing::warn!(
                            "ignoring .gitignore line '{line}' in {}: {e}",
                            f.dir.join(".gitignore").display()
                        );
                    }
                }
                match b.build() {
                    Ok(g) => ignores.push((f.dir.components().count(), g)),
                    Err(e) => {
                        tracing::warn!("cannot use {}: {e}", f.dir.join(".gitignore").display())
                    }
                }
            }
        }
        ignores.sort_by_key(|g| std::cmp::Reverse(g.0));
        Classifier {
            rules,
            tracked,
            ignores: ignores.into_iter().map(|(_, g)| g).collect(),
            base: repo.join(subdir),
        }
    }

    /// Is `rel` (relative to ROOT) ignored by the .gitignore files (this entry only, not its parents)?
    fn ignored_here(&self, rel: &Path, is_dir: bool) -> bool {
        let full = self.base.join(rel);
        for g in &self.ignores {
            if !full.starts_with(g.path()) {
                continue;
            }
            let m = g.matched(&full, is_dir);
            if m.is_ignore() {
                return true;
            }
            if m.is_whitelist() {
                return false;
            }
        }
        false
    }

    /// Is directory `dir` (or one of its parents) ignored?
    fn dir_ignored(&self, dir: &Path) -> bool {
        dir.ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .any(|a| self.ignored_here(a, true))
    }

    /// The files the commit tracks (relative to ROOT).
    pub fn tracked(&self) -> &HashSet<PathBuf> {
        &self.tracked
    }

    /// True when the file `rel` is user content (given whether a parent directory is ignored).
    pub fn is_user_file(&self, rel: &Path, parent_ignored: bool) -> bool {
        if self.tracked.contains(rel) || is_own_temp(rel) {
            return false;
        }
        let ignored = parent_ignored || self.ignored_here(rel, false);
        let wanted = !ignored || self.rules.preserve.is_match(rel);
        wanted && !self.rules.exclude.is_match(rel)
    }
}

fn is_own_temp(rel: &Path) -> bool {
    rel.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(".rootswap-tmp-"))
}

/// The user-content classifier of `commit`: its tracked files and
/// `.gitignore` files, with the configured rules. Built once per deploy.
pub fn classifier(
    rules: &Rules,
    source: &crate::source::GitSource,
    commit: git2::Oid,
) -> Result<Classifier> {
    let (tracked, ignores) = source.tracked_and_ignores(commit)?;
    Ok(Classifier::new(
        rules.clone(),
        tracked,
        &ignores,
        source.subdir(),
    ))
}

/// Identity of a user file's version: what changes when it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sig {
    /// True for a symlink.
    pub symlink: bool,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_ns: i64,
    /// Permission bits.
    pub mode: u32,
}

impl Sig {
    fn of(m: &std::fs::Metadata) -> Sig {
        Sig {
            symlink: m.file_type().is_symlink(),
            size: m.len(),
            mtime: m.mtime(),
            mtime_ns: m.mtime_nsec(),
            mode: m.mode() & 0o7777,
        }
    }

    /// Modification time in nanoseconds since the epoch.
    pub fn ns(&self) -> u64 {
        (self.mtime.max(0) as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(self.mtime_ns.max(0) as u64)
    }

    fn newer_than(&self, other: &Sig) -> bool {
        (self.mtime, self.mtime_ns) > (other.mtime, other.mtime_ns)
    }
}

/// The user files of a tree: ROOT-relative path → version.
pub type Manifest = BTreeMap<PathBuf, Sig>;

/// Lists the user files under `tree`.
pub fn scan(tree: &Path, c: &Classifier) -> Result<Manifest> {
    scan_with(tree, c, &mut |_| {})
}

/// Lists the user files under `tree`, calling `on_dir` with each directory
/// (relative to the tree) before it is read (the change watch's hook).
pub fn scan_with(tree: &Path, c: &Classifier, on_dir: &mut dyn FnMut(&Path)) -> Result<Manifest> {
    let mut out = Manifest::new();
    scan_dir(tree, Path::new(""), false, c, &mut out, on_dir)?;
    Ok(out)
}

fn scan_dir(
    tree: &Path,
    rel: &Path,
    ignored: bool,
    c: &Classifier,
    out: &mut Manifest,
    on_dir: &mut dyn FnMut(&Path),
) -> Result<()> {
    let dir = tree.join(rel);
    on_dir(rel);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        // Removed (or replaced by a file) since its parent was read: nothing to list.
        Err(e)
            if (e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ENOTDIR))
                && !rel.as_os_str().is_empty() =>
        {
            return Ok(())
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read directory {}", dir.display()))
        }
    };
    for e in rd {
        let e = e.with_context(|| format!("cannot read directory {}", dir.display()))?;
        let ft = match e.file_type() {
            Ok(t) => t,
            Err(_) => continue, // vanished meanwhile
        };
        let r = rel.join(e.file_name());
        if ft.is_dir() {
            let dir_ignored = ignored || c.ignored_here(&r, true);
            if dir_ignored && !c.rules.preserve_may_match_below(&r) {
                continue;
            }
            scan_dir(tree, &r, dir_ignored, c, out, on_dir)?;
        } else if c.is_user_file(&r, ignored) {
            match e.metadata() {
                Ok(m) => {
                    out.insert(r, Sig::of(&m));
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(err)
                        .with_context(|| format!("cannot stat {}", tree.join(&r).display()))
                }
            }
        }
    }
    Ok(())
}

/// Updates the manifest `last` of `tree` for the paths in `changed` (relative
/// to the tree): each is looked at again, a directory with its whole subtree;
/// a path that is gone is dropped with everything recorded below it.
pub fn rescan(
    tree: &Path,
    c: &Classifier,
    last: &Manifest,
    changed: &HashSet<PathBuf>,
) -> Manifest {
    rescan_with(tree, c, last, changed, &mut |_| {})
}

/// [`rescan`], calling `on_dir` with each directory it reads (see [`scan_with`]).
pub fn rescan_with(
    tree: &Path,
    c: &Classifier,
    last: &Manifest,
    changed: &HashSet<PathBuf>,
    on_dir: &mut dyn FnMut(&Path),
) -> Manifest {
    let mut out = last.clone();
    for rel in changed {
        if rel.as_os_str().is_empty() || is_own_temp(rel) {
            continue;
        }
        let under: Vec<PathBuf> = out
            .range(rel.clone()..)
            .take_while(|(k, _)| k.starts_with(rel))
            .map(|(k, _)| k.clone())
            .collect();
        for k in under {
            out.remove(&k);
        }
        let parent_ignored = rel.parent().is_some_and(|p| c.dir_ignored(p));
        match std::fs::symlink_metadata(tree.join(rel)) {
            Err(_) => {}
            Ok(m) if m.is_dir() => {
                let ignored = parent_ignored || c.ignored_here(rel, true);
                if !ignored || c.rules.preserve_may_match_below(rel) {
                    if let Err(e) = scan_dir(tree, rel, ignored, c, &mut out, on_dir) {
                        tracing::debug!("rescan of {}: {e:#}", rel.display());
                    }
                }
            }
            Ok(m) => {
                if c.is_user_file(rel, parent_ignored) {
                    out.insert(rel.clone(), Sig::of(&m));
                }
            }
        }
    }
    out
}

/// What one copy-back pass did.
#[derive(Debug, Default, Clone)]
pub struct CopyBackReport {
    /// User files copied from the snapshot into ROOT.
    pub copied: Vec<PathBuf>,
    /// User files removed from ROOT because they were deleted from the snapshot.
    pub removed: Vec<PathBuf>,
    /// Paths the new commit tracks: the commit's version was kept.
    pub conflicts: Vec<PathBuf>,
    /// Paths whose change was superseded by the destination: it holds a newer
    /// version of its own, or deleted the file since `root_seen`.
    pub superseded: Vec<PathBuf>,
}

/// Applies to `root` what changed in `snapshot` between the manifests
/// `before` and `now`. `new_tracked` is the set of files the new commit
/// tracks; where ROOT's file is newer than the snapshot's, ROOT's is kept.
/// `root_seen`, when given, lists ROOT's user files at the time `before` was
/// taken: a path ROOT had then and lacks now was deleted in ROOT since, and
/// is not brought back. A file deleted from `snapshot` is removed from
/// `root` when ROOT still holds the version `before` recorded, or any version
/// written before `cutoff_ns` (the switch that made `snapshot` the served
/// tree: what ROOT got earlier is superseded by what the served tree did).
pub fn copy_back(
    snapshot: &Path,
    root: &Path,
    before: &Manifest,
    now: &mut Manifest,
    new_tracked: &HashSet<PathBuf>,
    root_seen: Option<&Manifest>,
    cutoff_ns: Option<u64>,
) -> Result<CopyBackReport> {
    let mut report = CopyBackReport::default();
    let tracked_or_under_tracked = |p: &Path| {
        p.ancestors()
            .any(|a| !a.as_os_str().is_empty() && new_tracked.contains(a))
    };
    let changed: Vec<(PathBuf, Sig)> = now
        .iter()
        .filter(|(p, sig)| before.get(*p) != Some(*sig))
        .map(|(p, s)| (p.clone(), *s))
        .collect();
    for (p, sig) in &changed {
        if tracked_or_under_tracked(p) {
            tracing::warn!(
                "user file {} is now tracked by the repository: the commit's version wins",
                p.display()
            );
            report.conflicts.push(p.clone());
            continue;
        }
        let dst = root.join(p);
        let in_root = std::fs::symlink_metadata(&dst);
        // The copy lands only if ROOT's file is still what is looked at here:
        // a request that deletes, creates or rewrites it meanwhile wins.
        let expect = match &in_root {
            Ok(m) if !m.is_dir() => crate::copy::Expect::Present(Some(crate::copy::Version {
                size: m.len(),
                mtime: (m.mtime(), m.mtime_nsec()),
            })),
            Ok(_) => crate::copy::Expect::Any,
            Err(_) => crate::copy::Expect::Absent,
        };
        if in_root.is_err() && root_seen.is_some_and(|seen| seen.contains_key(p)) {
            report.superseded.push(p.clone());
            continue; // deleted in ROOT after the switch back: the deletion is newer
        }
        crate::crashpoint::hit("copy-back-entry");
        if let Ok(m) = in_root {
            if !m.is_dir() {
                let cur = Sig::of(&m);
                if &cur == sig {
                    continue;
                }
                if before.get(p) != Some(&cur) && cur.newer_than(sig) {
                    // ROOT got a newer version of its own (a hook, or a request after the switch).
                    report.superseded.push(p.clone());
                    continue;
                }
            }
        }
        match crate::copy::copy_file_if(&snapshot.join(p), &dst, expect) {
            Ok(crate::copy::Placed::Skipped) => {
                // Changed in ROOT while the copy was in flight: that change is newer.
                report.superseded.push(p.clone());
            }
            Ok(crate::copy::Placed::Done) => {
                // The file may have changed since it was scanned: remember what was really copied.
                if let Ok(m) = std::fs::symlink_metadata(&dst) {
                    now.insert(p.clone(), Sig::of(&m));
                }
                report.copied.push(p.clone())
            }
            Err(e) if !snapshot.join(p).exists() => {
                // Deleted (or renamed) since the scan; the next pass sees the
                // deletion. The version scanned never reached ROOT: record the
                // one that did, so that the deletion removes it from ROOT.
                tracing::debug!("{} vanished during copy-back: {e:#}", p.display());
                match before.get(p) {
                    Some(applied) => now.insert(p.clone(), *applied),
                    None => now.remove(p),
                };
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot copy user file {} back into ROOT", p.display())
                })
            }
        }
    }
    for (p, sig) in before {
        if now.contains_key(p) || tracked_or_under_tracked(p) {
            continue;
        }
        let dst = root.join(p);
        let Ok(m) = std::fs::symlink_metadata(&dst) else {
            continue;
        };
        let cur = Sig::of(&m);
        let older_than_cutoff = cutoff_ns.is_some_and(|c| cur.ns() < c);
        if m.is_dir() || (&cur != sig && !older_than_cutoff) {
            continue; // ROOT holds a version written since: not the file the user deleted
        }
        match std::fs::remove_file(&dst) {
            Ok(()) => report.removed.push(p.clone()),
            // Removed meanwhile (by a request, or with its directory): the same result.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot remove deleted user file {}", dst.display()))
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(preserve: &[&str], exclude: &[&str]) -> Rules {
        Rules::new(&UserContentConfig {
            gitignore: true,
            preserve: preserve.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    fn ig(dir: &str, text: &str) -> IgnoreFile {
        IgnoreFile {
            dir: PathBuf::from(dir),
            text: text.into(),
        }
    }

    fn classifier(
        preserve: &[&str],
        exclude: &[&str],
        files: &[IgnoreFile],
        subdir: &str,
    ) -> Classifier {
        let tracked: HashSet<PathBuf> = ["index.php", "public/index.php"]
            .iter()
            .map(PathBuf::from)
            .collect();
        Classifier::new(rules(preserve, exclude), tracked, files, Path::new(subdir))
    }

    #[test]
    fn tracked_ignored_preserved_excluded() {
        let c = classifier(
            &[".env", "storage/**"],
            &["cache/**", "storage/framework/cache/**"],
            &[ig("", ".env\nstorage/\ncache/\n*.log\n!keep.log\n")],
            "",
        );
        assert!(!c.is_user_file(Path::new("index.php"), false), "tracked");
        assert!(
            c.is_user_file(Path::new("uploads/a.jpg"), false),
            "untracked, not ignored"
        );
        assert!(!c.is_user_file(Path::new("debug.log"), false), "ignored");
        assert!(
            c.is_user_file(Path::new("keep.log"), false),
            "negation re-includes"
        );
        assert!(
            c.is_user_file(Path::new(".env"), false),
            "preserve wins over ignore"
        );
        assert!(
            c.is_user_file(Path::new("storage/app/x"), true),
            "preserve inside an ignored dir"
        );
        assert!(
            !c.is_user_file(Path::new("storage/framework/cache/x"), true),
            "exclude wins over preserve"
        );
        assert!(!c.is_user_file(Path::new("cache/x"), true), "ignored dir");
        assert!(
            !c.is_user_file(Path::new(".rootswap-tmp-x"), false),
            "own temp files"
        );
    }

    #[test]
    fn nested_gitignore_overrides_parent_and_subdir_maps() {
        let c = classifier(
            &[],
            &[],
            &[ig("", "*.txt\n"), ig("app/docs", "!*.txt\n")],
            "app",
        );
        assert!(!c.is_user_file(Path::new("a.txt"), false));
        assert!(c.is_user_file(Path::new("docs/a.txt"), false));
        // Anchored pattern in the repository root .gitignore applies to the subdir.
        let c = classifier(&[], &[], &[ig("", "/app/tmp/\n")], "app");
        assert!(c.ignored_here(Path::new("tmp"), true));
        assert!(
            !c.ignored_here(Path::new("tmp"), false),
            "directory pattern only matches directories"
        );
    }

    #[test]
    fn prefixes() {
        assert_eq!(literal_dir_prefix("storage/**"), PathBuf::from("storage"));
        assert_eq!(
            literal_dir_prefix("storage/app/*.jpg"),
            PathBuf::from("storage/app")
        );
        assert_eq!(literal_dir_prefix("**/*.env"), PathBuf::new());
        assert_eq!(literal_dir_prefix(".env"), PathBuf::new());
        let r = rules(&["storage/**"], &[]);
        assert!(r.preserve_may_match_below(Path::new("storage")));
        assert!(r.preserve_may_match_below(Path::new("storage/app")));
        assert!(!r.preserve_may_match_below(Path::new("vendor")));
    }

    #[test]
    fn copy_back_applies_creations_changes_and_deletions() {
        let t = tempfile::tempdir().unwrap();
        let (snap, root) = (t.path().join("snap"), t.path().join("root"));
        for d in [&snap, &root] {
            std::fs::create_dir_all(d.join("uploads")).unwrap();
            std::fs::write(d.join("uploads/keep"), "k").unwrap();
            std::fs::write(d.join("uploads/gone"), "g").unwrap();
            std::fs::write(d.join("uploads/edit"), "1").unwrap();
        }
        let c = classifier(&[], &[], &[], "");
        // The copies share mtimes in a real snapshot; make them equal here.
        for f in ["keep", "gone", "edit"] {
            let m = std::fs::metadata(snap.join("uploads").join(f)).unwrap();
            let ft = std::fs::FileTimes::new().set_modified(m.modified().unwrap());
            std::fs::File::options()
                .write(true)
                .open(root.join("uploads").join(f))
                .unwrap()
                .set_times(ft)
                .unwrap();
        }
        let before = scan(&snap, &c).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(snap.join("uploads/new"), "n").unwrap();
        std::fs::write(snap.join("uploads/edit"), "22").unwrap();
        std::fs::remove_file(snap.join("uploads/gone")).unwrap();
        std::fs::write(snap.join("index.php"), "user edit of a tracked file").unwrap();
        let mut now = scan(&snap, &c).unwrap();
        let tracked: HashSet<PathBuf> = [PathBuf::from("index.php")].into_iter().collect();
        let r = copy_back(&snap, &root, &before, &mut now, &tracked, None, None).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("uploads/new")).unwrap(),
            "n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("uploads/edit")).unwrap(),
            "22"
        );
        assert!(!root.join("uploads/gone").exists());
        assert!(
            !root.join("index.php").exists(),
            "tracked files are not user content"
        );
        assert_eq!(r.copied.len(), 2);
        assert_eq!(r.removed, vec![PathBuf::from("uploads/gone")]);
    }
}
