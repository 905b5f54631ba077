//! Paths that come from Git, checked before they touch the disk.
//!
//! A commit's tree is data anyone who can push controls. A crafted tree
//! (`git hash-object --literally`, `git mktree --missing`) can hold entries
//! named `..`, `../../x` or `.git`; a bare repository accepts them with git's
//! default `receive.fsckObjects=false`, and joined onto ROOT they write and
//! delete files anywhere. Git itself refuses such names on checkout
//! (`verify_path` in git's `read-cache.c`, with `core.protectNTFS` and
//! `core.protectHFS`); [`check_name`] refuses the same ones.
//!
//! A [`RepoPath`] can only be made from names that passed [`check_name`],
//! one name at a time, and [`RepoPath::under`] is the one way to turn it into
//! a filesystem path: it pushes the names onto ROOT one by one, so the result
//! always has ROOT as a prefix, component by component.
//!
//! This module is a leaf: it uses nothing of the crate.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Why git refuses a tree entry's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The empty name.
    Empty,
    /// `.`
    Dot,
    /// `..`
    DotDot,
    /// A `/` inside the name.
    Slash,
    /// A `\` inside the name (a directory separator on NTFS; git refuses it
    /// with `core.protectNTFS`, on by default).
    Backslash,
    /// A NUL byte inside the name.
    Nul,
    /// `.git` in any case (`.GIT`, `.Git`).
    DotGit,
    /// A name NTFS reads as `.git`: `git~1`, `.git` followed by dots or
    /// spaces (`.git. `), or an NTFS stream (`.git::$INDEX_ALLOCATION`).
    NtfsDotGit,
    /// A name HFS+ reads as `.git`: `.git` with ignorable code points
    /// (U+200C and others) inside.
    HfsDotGit,
    /// A symlink named `.gitmodules` (or an NTFS/HFS alias of it).
    GitmodulesLink,
}

impl Refusal {
    /// What the rule is, for an error message.
    pub fn rule(self) -> &'static str {
        match self {
            Refusal::Empty => "a name may not be empty",
            Refusal::Dot | Refusal::DotDot | Refusal::Slash | Refusal::Nul | Refusal::DotGit => {
                "a name may not be ., .., .git or contain / or NUL"
            }
            Refusal::Backslash => "a name may not contain \\ (a directory separator on NTFS)",
            Refusal::NtfsDotGit => {
                "a name may not be one NTFS reads as .git (git~1, .git with trailing dots or spaces, .git:stream)"
            }
            Refusal::HfsDotGit => {
                "a name may not be one HFS+ reads as .git (.git with ignorable code points)"
            }
            Refusal::GitmodulesLink => "a symlink may not be named .gitmodules",
        }
    }
}

/// Checks one tree entry's name the way git's `verify_path` does (with
/// `core.protectNTFS` and `core.protectHFS`); `symlink`: the entry is a
/// symlink (mode 120000).
pub fn check_name(name: &[u8], symlink: bool) -> Result<(), Refusal> {
    match name {
        b"" => return Err(Refusal::Empty),
        b"." => return Err(Refusal::Dot),
        b".." => return Err(Refusal::DotDot),
        _ => {}
    }
    if name.contains(&b'/') {
        return Err(Refusal::Slash);
    }
    if name.contains(&0) {
        return Err(Refusal::Nul);
    }
    if name.contains(&b'\\') {
        return Err(Refusal::Backslash);
    }
    if name.eq_ignore_ascii_case(b".git") {
        return Err(Refusal::DotGit);
    }
    if is_ntfs_dotgit(name) {
        return Err(Refusal::NtfsDotGit);
    }
    if is_hfs_dot(name, "git") {
        return Err(Refusal::HfsDotGit);
    }
    if symlink && (is_ntfs_gitmodules(name) || is_hfs_dot(name, "gitmodules")) {
        return Err(Refusal::GitmodulesLink);
    }
    Ok(())
}

/// `name` without its leading `.<word>` (any case), if it has one.
fn after_dot_word<'a>(name: &'a [u8], word: &[u8]) -> Option<&'a [u8]> {
    let rest = name.strip_prefix(b".")?;
    (rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word))
        .then(|| &rest[word.len()..])
}

/// `name` without its leading 8.3 short name `short` (any case), if it has one.
fn after_short<'a>(name: &'a [u8], short: &[u8]) -> Option<&'a [u8]> {
    (name.len() >= short.len() && name[..short.len()].eq_ignore_ascii_case(short))
        .then(|| &name[short.len()..])
}

/// What NTFS drops after a name: only dots and spaces, or a `:` starting
/// an alternate data stream.
fn ntfs_ignored_tail(rest: &[u8]) -> bool {
    for &c in rest {
        if c == b':' {
            return true;
        }
        if c != b'.' && c != b' ' {
            return false;
        }
    }
    true
}

/// NTFS aliases of `.git`: `.git` or `git~1` (any case) followed only by
/// dots and spaces, or by a stream. Git's `is_ntfs_dotgit`.
fn is_ntfs_dotgit(name: &[u8]) -> bool {
    after_dot_word(name, b"git")
        .or_else(|| after_short(name, b"git~1"))
        .is_some_and(ntfs_ignored_tail)
}

/// `.gitmodules` as NTFS sees it: `.gitmodules`, `gitmod~1`..`gitmod~4`,
/// followed only by dots, spaces or a stream.
fn is_ntfs_gitmodules(name: &[u8]) -> bool {
    let shorts: [&[u8]; 4] = [b"gitmod~1", b"gitmod~2", b"gitmod~3", b"gitmod~4"];
    after_dot_word(name, b"gitmodules")
        .into_iter()
        .chain(shorts.iter().filter_map(|s| after_short(name, s)))
        .any(ntfs_ignored_tail)
}

/// Code points HFS+ ignores when it compares names (git's `next_hfs_char`).
fn hfs_ignorable(c: char) -> bool {
    matches!(c as u32, 0x200c..=0x200f | 0x202a..=0x202e | 0x206a..=0x206f | 0xfeff)
}

/// True when HFS+ reads `name` as `.<word>`: ignorable code points dropped,
/// ASCII case folded. As in git, malformed UTF-8 ends the name.
fn is_hfs_dot(name: &[u8], word: &str) -> bool {
    let text = match std::str::from_utf8(name) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&name[..e.valid_up_to()]).unwrap_or_default(),
    };
    let mut chars = text.chars().filter(|&c| !hfs_ignorable(c));
    if chars.next() != Some('.') {
        return false;
    }
    for want in word.chars() {
        match chars.next() {
            Some(c) if c.is_ascii() && c.eq_ignore_ascii_case(&want) => {}
            _ => return false,
        }
    }
    chars.next().is_none()
}

/// A path inside the deployed tree made only of names that passed
/// [`check_name`]; the empty path is the tree's top.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoPath(PathBuf);

/// A tree entry git refuses: its name, the directory it is in, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadName {
    /// The entry's name as the tree has it.
    pub name: Vec<u8>,
    /// The directory holding it.
    pub dir: RepoPath,
    /// The rule it breaks.
    pub refusal: Refusal,
}

impl fmt::Display for BadName {
    /// `"../../x" in "lib/": a name may not be …` (the name escaped, printable).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = if self.dir.is_top() {
            "the top directory".to_string()
        } else {
            format!("\"{}/\"", escape(self.dir.0.as_os_str().as_bytes()))
        };
        write!(
            f,
            "\"{}\" in {dir}: {}",
            escape(&self.name),
            self.refusal.rule()
        )
    }
}

impl std::error::Error for BadName {}

/// `bytes` as printable ASCII: `\"`, `\\`, `\n`, `\t`, `\xNN` for anything
/// else outside printable ASCII (so an escape sequence in a name cannot
/// reach a terminal or forge a log line).
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

impl RepoPath {
    /// The top of the deployed tree (the empty path).
    pub fn top() -> RepoPath {
        RepoPath::default()
    }

    /// True for the top of the tree.
    pub fn is_top(&self) -> bool {
        self.0.as_os_str().is_empty()
    }

    /// The entry `name` inside this directory, when git accepts the name
    /// (`symlink`: the entry is a symlink).
    pub fn child(&self, name: &[u8], symlink: bool) -> Result<RepoPath, BadName> {
        match check_name(name, symlink) {
            Ok(()) => Ok(RepoPath(self.0.join(OsStr::from_bytes(name)))),
            Err(refusal) => Err(BadName {
                name: name.to_vec(),
                dir: self.clone(),
                refusal,
            }),
        }
    }

    /// Checks a path given as `/`-separated names (as a tree walk or a
    /// config has it); a leading or trailing `/` is ignored, an empty name
    /// in the middle (`a//b`) is refused.
    pub fn parse(path: &[u8]) -> Result<RepoPath, BadName> {
        let trimmed = path.strip_prefix(b"/").unwrap_or(path);
        let trimmed = trimmed.strip_suffix(b"/").unwrap_or(trimmed);
        let mut out = RepoPath::top();
        if trimmed.is_empty() {
            return Ok(out);
        }
        for name in trimmed.split(|&b| b == b'/') {
            out = out.child(name, false)?;
        }
        Ok(out)
    }

    /// The path relative to the tree's top.
    pub fn as_path(&self) -> &Path {
        &self.0
    }

    /// The names, top first.
    pub fn names(&self) -> impl Iterator<Item = &OsStr> {
        self.0.components().filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
    }

    /// The one join of a repository path onto a directory: `root` with the
    /// names pushed one by one. Every name is a single normal component, so
    /// the result is `root` plus exactly [`RepoPath::names`], never outside.
    pub fn under(&self, root: &Path) -> PathBuf {
        let mut out = root.to_path_buf();
        for name in self.names() {
            out.push(name);
        }
        out
    }

    /// The directories holding this entry, below `root` (ROOT itself
    /// excluded), deepest first: what may be pruned once it is gone.
    pub fn parents_under(&self, root: &Path) -> Vec<PathBuf> {
        let names: Vec<&OsStr> = self.names().collect();
        let mut out = Vec::new();
        for depth in (1..names.len()).rev() {
            let mut p = root.to_path_buf();
            for n in &names[..depth] {
                p.push(n);
            }
            out.push(p);
        }
        out
    }
}

impl std::ops::Deref for RepoPath {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for RepoPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(name: &[u8]) -> Option<Refusal> {
        check_name(name, false).err()
    }

    #[test]
    fn refuses_what_git_refuses() {
        for (name, why) in [
            (&b""[..], Refusal::Empty),
            (b".", Refusal::Dot),
            (b"..", Refusal::DotDot),
            (b"../../x", Refusal::Slash),
            (b"a\0b", Refusal::Nul),
            (b"a\\b", Refusal::Backslash),
            (b".git", Refusal::DotGit),
            (b".GIT", Refusal::DotGit),
            (b".Git", Refusal::DotGit),
            (b"git~1", Refusal::NtfsDotGit),
            (b"GIT~1", Refusal::NtfsDotGit),
            (b".git.", Refusal::NtfsDotGit),
            (b".git. ", Refusal::NtfsDotGit),
            (b".git::$INDEX_ALLOCATION", Refusal::NtfsDotGit),
            (b"git~1:stream", Refusal::NtfsDotGit),
            (".g\u{200c}it".as_bytes(), Refusal::HfsDotGit),
            ("\u{feff}.GIT".as_bytes(), Refusal::HfsDotGit),
            (b".git\xff", Refusal::HfsDotGit),
        ] {
            assert_eq!(refused(name), Some(why), "{}", escape(name));
        }
    }

    #[test]
    fn accepts_ordinary_names() {
        for name in [
            &b"index.php"[..],
            b".gitignore",
            b".github",
            b".gitattributes",
            b".gitmodules",
            b"...",
            b".git-x",
            b"git~2",
            b"git",
            b"x.git",
            "caf\u{e9}.php".as_bytes(),
            b"\xff\xfe",
            b" .git",
        ] {
            assert_eq!(refused(name), None, "{}", escape(name));
        }
    }

    #[test]
    fn gitmodules_only_refused_as_a_symlink() {
        for name in [
            &b".gitmodules"[..],
            b".GITMODULES ",
            b"gitmod~1",
            ".git\u{200d}modules".as_bytes(),
        ] {
            assert_eq!(
                check_name(name, true),
                Err(Refusal::GitmodulesLink),
                "{}",
                escape(name)
            );
        }
        assert_eq!(check_name(b".gitmodules", false), Ok(()));
    }

    #[test]
    fn joins_stay_under_root_and_prune_stops_above_it() {
        let p = RepoPath::parse(b"a/b/c.php").unwrap();
        let root = Path::new("/srv/www/ROOT");
        assert_eq!(p.under(root), Path::new("/srv/www/ROOT/a/b/c.php"));
        assert_eq!(
            p.parents_under(root),
            vec![
                PathBuf::from("/srv/www/ROOT/a/b"),
                PathBuf::from("/srv/www/ROOT/a")
            ]
        );
        assert!(RepoPath::parse(b"a/../b").is_err());
        assert!(RepoPath::parse(b"a//b").is_err());
        assert!(RepoPath::top().under(root) == root);
    }

    #[test]
    fn the_message_names_the_entry_escaped() {
        let lib = RepoPath::parse(b"lib").unwrap();
        let e = lib.child(b"../../x", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"../../x\" in \"lib/\": a name may not be ., .., .git or contain / or NUL"
        );
        let e = RepoPath::top().child(b"\x1b[2J\n/x", false).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("\"\\x1b[2J\\n/x\" in the top directory"),
            "{e}"
        );
    }
}
