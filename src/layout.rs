//! The layout on disk: the contract with the web server.
//!
//! ```text
//! webroot/
//!   ROOT/                       the deployed site
//!   ROOT_2026.11.22-10.15.03/   timestamped snapshots (local time, Enscale's format)
//!   ROOT_before-big-change/     a renamed snapshot: kept forever
//!   current -> ROOT             the serving symlink (relative target)
//!   .rootswap/                  state
//! ```
//!
//! Snapshot names are unique: a second snapshot in the same second gets a
//! `-2`, `-3`… suffix, and [`SnapshotName`] orders them by (time, sequence).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Local, NaiveDateTime, TimeZone};

use crate::config::{normalize, Config};

/// Format of a snapshot timestamp, as Enscale writes it.
pub const TIMESTAMP_FORMAT: &str = "%Y.%m.%d-%H.%M.%S";

pub use crate::config::{EVICTING_PREFIX, PARTIAL_PREFIX};

/// Resolved paths of one deployment target.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The webroot directory.
    pub webroot: PathBuf,
    /// Name of ROOT (e.g. `ROOT`).
    pub root_name: String,
    /// Name of the serving link (e.g. `current`).
    pub link_name: String,
    /// The state directory.
    pub state: PathBuf,
}

/// What the serving link points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// No link yet (before the first deploy).
    Missing,
    /// A symlink with this target (as written, normally a bare directory name).
    Symlink(String),
    /// A real directory or file stands where the link should be.
    NotALink,
}

/// A snapshot directory in the webroot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Directory name, e.g. `ROOT_2026.11.22-10.15.03`.
    pub name: String,
    /// Full path.
    pub path: PathBuf,
    /// Parsed timestamp when the name still has the timestamp form; `None`
    /// for a renamed (kept) snapshot.
    pub stamp: Option<SnapshotName>,
}

impl Snapshot {
    /// True when the user renamed it: never evicted nor recycled.
    pub fn is_kept(&self) -> bool {
        self.stamp.is_none()
    }
}

/// The timestamp part of a snapshot name, ordered by time then sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SnapshotName {
    /// Local time the snapshot was taken.
    pub time: NaiveDateTime,
    /// 1 for the first snapshot of that second, 2 for `-2`, …
    pub seq: u32,
}

impl SnapshotName {
    /// Parses the part after `ROOT_`; `None` when it is not a timestamp.
    pub fn parse(suffix: &str) -> Option<SnapshotName> {
        let (stamp, seq) = match suffix.get(19..) {
            Some("") => (suffix, 1),
            Some(rest) => {
                let n = rest.strip_prefix('-')?;
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0') {
                    return None;
                }
                (&suffix[..19], n.parse::<u32>().ok().filter(|n| *n >= 2)?)
            }
            None => return None,
        };
        // chrono accepts single-digit fields; insist on Enscale's exact shape.
        let shape = stamp.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 | 13 | 16 => b == b'.',
            10 => b == b'-',
            _ => b.is_ascii_digit(),
        });
        if !shape {
            return None;
        }
        let time = NaiveDateTime::parse_from_str(stamp, TIMESTAMP_FORMAT).ok()?;
        Some(SnapshotName { time, seq })
    }

    /// Renders the suffix (`2026.11.22-10.15.03` or `2026.11.22-10.15.03-2`).
    pub fn render(&self) -> String {
        let t = self.time.format(TIMESTAMP_FORMAT).to_string();
        if self.seq <= 1 {
            t
        } else {
            format!("{t}-{}", self.seq)
        }
    }
}

impl Layout {
    /// Builds the layout from a validated configuration (no disk access).
    pub fn from_config(cfg: &Config) -> Layout {
        Layout {
            webroot: cfg.webroot.clone(),
            root_name: cfg.root.clone(),
            link_name: cfg.link.clone(),
            state: cfg.state_path(),
        }
    }

    /// Path of ROOT.
    pub fn root(&self) -> PathBuf {
        self.webroot.join(&self.root_name)
    }

    /// Path of the serving link.
    pub fn link(&self) -> PathBuf {
        self.webroot.join(&self.link_name)
    }

    /// Path of a directory in the webroot by name.
    pub fn entry(&self, name: &str) -> PathBuf {
        self.webroot.join(name)
    }

    /// Checks what must hold before anything is changed: webroot is a
    /// directory, ROOT is not a file, the link is a symlink (or absent).
    pub fn preflight(&self) -> Result<()> {
        match std::fs::metadata(&self.webroot) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!(
                "webroot {} is not a directory; set `webroot` to the directory that holds {}",
                self.webroot.display(),
                self.root_name
            ),
            Err(e) => bail!(
                "webroot {} cannot be used: {e}; create it (mkdir -p) or fix `webroot` in the config",
                self.webroot.display()
            ),
        }
        let root = self.root();
        match std::fs::symlink_metadata(&root) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => bail!(
                "{} is a symlink; rootswap deploys into a real directory there: replace it with the directory it points to",
                root.display()
            ),
            Ok(_) => bail!(
                "{} is a file, not a directory; move it away (rootswap deploys the site into that directory)",
                root.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!("cannot inspect {}: {e}", root.display()),
        }
        if self.link_state()? == LinkState::NotALink {
            bail!(
                "{link} is a real directory or file, not a symlink; rootswap serves through a symlink it switches atomically.\n\
                 To migrate: move the site into {root} (mv {link} {root}), point the web server at {link}, and deploy again: \
                 rootswap creates {link} -> {rname}",
                link = self.link().display(),
                root = root.display(),
                rname = self.root_name
            );
        }
        Ok(())
    }

    /// Reads the serving link.
    pub fn link_state(&self) -> Result<LinkState> {
        let link = self.link();
        match std::fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&link)
                    .with_context(|| format!("cannot read link {}", link.display()))?;
                Ok(LinkState::Symlink(target.to_string_lossy().into_owned()))
            }
            Ok(_) => Ok(LinkState::NotALink),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LinkState::Missing),
            Err(e) => Err(e).with_context(|| format!("cannot inspect {}", link.display())),
        }
    }

    /// Name of the webroot entry the link points at, if it points inside webroot.
    pub fn live_name(&self) -> Result<Option<String>> {
        Ok(match self.link_state()? {
            LinkState::Symlink(t) => {
                let p = Path::new(&t);
                if p.is_absolute() {
                    match p.strip_prefix(&self.webroot) {
                        Ok(rel) => Some(rel.to_string_lossy().into_owned()),
                        Err(_) => None,
                    }
                } else {
                    Some(t.trim_end_matches('/').to_string())
                }
            }
            _ => None,
        })
    }

    /// The serving link's target when it is foreign: a symlink to an
    /// existing directory that is not an entry of the webroot (left by an
    /// earlier tool, e.g. `current -> /srv/releases/42`). The target comes
    /// back absolute and normalized. A deploy would point the link at ROOT
    /// and stop serving that tree (and its uploads) without a word, so it
    /// refuses unless told to adopt it ([`Layout::foreign_link_advice`]).
    pub fn foreign_link(&self) -> Result<Option<PathBuf>> {
        let LinkState::Symlink(t) = self.link_state()? else {
            return Ok(None);
        };
        let webroot = normalize(&self.webroot);
        let target = match Path::new(&t).is_absolute() {
            true => normalize(Path::new(&t)),
            false => normalize(&webroot.join(&t)),
        };
        let in_webroot = target.parent() == Some(webroot.as_path()) && target != webroot;
        Ok((!in_webroot && target.is_dir()).then_some(target))
    }

    /// What to do about a foreign link to `target`: the message a deploy
    /// refuses with and `doctor` shows.
    pub fn foreign_link_advice(&self, target: &Path) -> String {
        format!(
            "{link} points outside the webroot, at {target} (left by another tool?); a deploy would point it at {root} \
             and that tree, with its uploads, would no longer be served.\n\
             Either move that tree into ROOT yourself (mv {target} {root}) and deploy again, \
             or run `rootswap deploy --adopt-current`: it copies {target} into {root} first, \
             so its files stay served (the commit's tracked files win, the others are kept as user content), and then deploys",
            link = self.link().display(),
            target = target.display(),
            root = self.root().display(),
        )
    }

    /// True when ROOT is absent or empty.
    pub fn root_is_empty(&self) -> Result<bool> {
        match std::fs::read_dir(self.root()) {
            Ok(mut it) => Ok(it.next().is_none()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", self.root().display())),
        }
    }

    /// Every snapshot (timestamped and renamed), oldest timestamped first, then renamed by name.
    pub fn snapshots(&self) -> Result<Vec<Snapshot>> {
        let prefix = format!("{}_", self.root_name);
        let mut out = Vec::new();
        let rd = std::fs::read_dir(&self.webroot)
            .with_context(|| format!("cannot list {}", self.webroot.display()))?;
        for entry in rd {
            let entry = entry.with_context(|| format!("cannot list {}", self.webroot.display()))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Some(suffix) = name.strip_prefix(&prefix) else {
                continue;
            };
            if suffix.is_empty() || !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            out.push(Snapshot {
                path: entry.path(),
                stamp: SnapshotName::parse(suffix),
                name,
            });
        }
        out.sort_by(|a, b| match (&a.stamp, &b.stamp) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.name.cmp(&b.name),
        });
        Ok(out)
    }

    /// Timestamped snapshots only, oldest first.
    pub fn timestamped(&self) -> Result<Vec<Snapshot>> {
        Ok(self
            .snapshots()?
            .into_iter()
            .filter(|s| !s.is_kept())
            .collect())
    }

    /// A new, unused snapshot name for `now`, ordered after every existing one.
    pub fn new_snapshot_name(&self, now: DateTime<Local>) -> Result<String> {
        let time = now.naive_local();
        let time = time.with_nanosecond_zero();
        let existing = self.timestamped()?;
        let mut seq = 1;
        if let Some(newest) = existing.last().and_then(|s| s.stamp) {
            // Never sort before an existing snapshot, even if the clock went back.
            if newest.time > time {
                return Ok(self.snapshot_dir_name(&SnapshotName {
                    time: newest.time,
                    seq: newest.seq + 1,
                }));
            }
            if newest.time == time {
                seq = newest.seq + 1;
            }
        }
        loop {
            let name = self.snapshot_dir_name(&SnapshotName { time, seq });
            let taken = std::fs::symlink_metadata(self.entry(&name)).is_ok()
                || std::fs::symlink_metadata(self.entry(&format!("{PARTIAL_PREFIX}{name}")))
                    .is_ok();
            if !taken {
                return Ok(name);
            }
            seq += 1;
        }
    }

    /// `ROOT_` + rendered timestamp.
    pub fn snapshot_dir_name(&self, n: &SnapshotName) -> String {
        format!("{}_{}", self.root_name, n.render())
    }

    /// Time a snapshot name stands for, in local time, if it is timestamped.
    pub fn snapshot_time(s: &Snapshot) -> Option<DateTime<Local>> {
        s.stamp
            .and_then(|n| Local.from_local_datetime(&n.time).earliest())
    }
}

trait NanoZero {
    fn with_nanosecond_zero(self) -> Self;
}

impl NanoZero for NaiveDateTime {
    fn with_nanosecond_zero(self) -> Self {
        use chrono::Timelike;
        self.with_nanosecond(0).unwrap_or(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(dir: &Path) -> Layout {
        Layout {
            webroot: dir.to_path_buf(),
            root_name: "ROOT".into(),
            link_name: "current".into(),
            state: dir.join(".rootswap"),
        }
    }

    #[test]
    fn parses_enscale_names() {
        let n = SnapshotName::parse("2019.08.12-08.19.33").unwrap();
        assert_eq!(n.seq, 1);
        assert_eq!(n.render(), "2019.08.12-08.19.33");
        let n2 = SnapshotName::parse("2019.08.12-08.19.33-2").unwrap();
        assert_eq!(n2.seq, 2);
        assert!(n < n2);
        assert!(SnapshotName::parse("2019.08.12-08.19.33-10").unwrap() > n2);
        for bad in [
            "before-big-change",
            "2019.08.12-08.19",
            "2019.8.12-08.19.33",
            "2019.08.12-08.19.33-",
            "2019.08.12-08.19.33-1",
            "2019.08.12-08.19.33-02",
            "2019.08.12-08.19.33x",
            "2019.13.12-08.19.33",
            "kept-2019.08.12-08.19.33",
        ] {
            assert!(SnapshotName::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn same_second_names_are_unique_and_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let l = layout(dir.path());
        let now = Local.with_ymd_and_hms(2026, 11, 22, 10, 15, 3).unwrap();
        let a = l.new_snapshot_name(now).unwrap();
        assert_eq!(a, "ROOT_2026.11.22-10.15.03");
        std::fs::create_dir(dir.path().join(&a)).unwrap();
        let b = l.new_snapshot_name(now).unwrap();
        assert_eq!(b, "ROOT_2026.11.22-10.15.03-2");
        std::fs::create_dir(dir.path().join(&b)).unwrap();
        std::fs::create_dir(dir.path().join("ROOT_kept")).unwrap();
        let names: Vec<_> = l.snapshots().unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec![a, b, "ROOT_kept".to_string()]);
        // A clock that went back still sorts after the newest.
        let earlier = Local.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap();
        assert_eq!(
            l.new_snapshot_name(earlier).unwrap(),
            "ROOT_2026.11.22-10.15.03-3"
        );
    }

    #[test]
    fn link_in_place_of_directory_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let l = layout(dir.path());
        std::fs::create_dir(dir.path().join("current")).unwrap();
        let msg = format!("{:#}", l.preflight().unwrap_err());
        assert!(
            msg.contains("not a symlink") && msg.contains("migrate"),
            "{msg}"
        );
    }
}
