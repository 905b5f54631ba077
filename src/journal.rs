//! The deploy journal: what a deploy is about to do, written durably before
//! it does it, so that a crash at any instant can be recovered.
//!
//! `<state>/journal.json` holds the running deploy's identity and its current
//! [`Phase`]. It is written to a temporary name, fsynced, renamed over the
//! old one and the directory fsynced ([`crate::fsutil::write_atomic`]); it is
//! removed when the deploy ends, whatever the outcome. A journal found by the
//! next command that takes the lock means the deploy died: see
//! [`crate::recover`].

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Where a deploy was when it last wrote the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// First deploy: writing into an empty ROOT; nothing is served yet.
    FirstCheckout,
    /// Copying ROOT into a `.partial-` snapshot; the link still points at ROOT.
    Snapshot,
    /// About to point the link at the complete snapshot, or done so.
    SwitchToSnapshot,
    /// Rewriting ROOT (checkout, hooks, copy-back); the snapshot serves.
    Rewrite,
    /// ROOT is complete; about to point the link back at it, or done so.
    SwitchToRoot,
    /// ROOT serves the new version; late copy-back and eviction remain.
    Finish,
    /// A failed deploy is restoring ROOT from the snapshot.
    Restore,
}

/// The journal entry of a running deploy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    /// Deploy id.
    pub id: String,
    /// Who started it.
    pub trigger: String,
    /// Commit being deployed.
    pub commit: String,
    /// Commit live before (None on a first deploy or an adopted site).
    pub previous: Option<String>,
    /// Snapshot serving during the deploy, once it has a final name.
    pub snapshot: Option<String>,
    /// Current phase.
    pub phase: Phase,
    /// When the deploy started, RFC 3339.
    pub started: String,
    /// When the link was pointed at the snapshot (ns since the epoch): user
    /// files ROOT got before that instant were uploads, not hook output.
    #[serde(default)]
    pub switched_at: Option<u64>,
    /// Why the deploy failed, once it has: written before it puts the old
    /// version back, so that a recovery that finishes that work records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn path(state: &Path) -> std::path::PathBuf {
    state.join("journal.json")
}

impl Journal {
    /// Records `phase` durably before the step that changes the disk.
    pub fn enter(&mut self, state: &Path, phase: Phase) -> Result<()> {
        self.phase = phase;
        let data = serde_json::to_vec_pretty(self).context("cannot encode the deploy journal")?;
        crate::fsutil::write_atomic(&path(state), &data)
            .with_context(|| format!("cannot write the deploy journal in {}", state.display()))?;
        crate::crashpoint::hit(phase_name(phase));
        Ok(())
    }

    /// Keeps why the deploy failed in its journal, when the journal is
    /// still there (the deploy stopped with work left for a recovery), so
    /// that the recovery's history line says it. Best effort: the error is
    /// reported to the caller anyway.
    pub fn keep_error(&mut self, state: &Path, error: &anyhow::Error) {
        if !matches!(Journal::load(state), Ok(Some(j)) if j.id == self.id) {
            return;
        }
        self.error = Some(format!("{error:#}"));
        let written = serde_json::to_vec_pretty(self)
            .map_err(anyhow::Error::from)
            .and_then(|data| crate::fsutil::write_atomic(&path(state), &data));
        if let Err(e) = written {
            tracing::warn!("cannot keep the deploy's error in its journal: {e:#}");
        }
    }

    /// Reads an unfinished deploy's journal, if any.
    pub fn load(state: &Path) -> Result<Option<Journal>> {
        match crate::fsutil::read_optional(&path(state))? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text).map(Some).with_context(|| {
                format!(
                    "the deploy journal {} is damaged; move it away and check the site by hand",
                    path(state).display()
                )
            }),
        }
    }

    /// Removes the journal: the deploy (or its recovery) is over.
    pub fn finish(state: &Path) -> Result<()> {
        match std::fs::remove_file(path(state)) {
            Ok(()) => crate::fsutil::fsync_dir(state),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path(state).display())),
        }
    }
}

/// Name of a phase as written in the journal and used by crash points.
pub fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::FirstCheckout => "first-checkout",
        Phase::Snapshot => "snapshot",
        Phase::SwitchToSnapshot => "switch-to-snapshot",
        Phase::Rewrite => "rewrite",
        Phase::SwitchToRoot => "switch-to-root",
        Phase::Finish => "finish",
        Phase::Restore => "restore",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(id: &str) -> Journal {
        Journal {
            id: id.into(),
            trigger: "manual".into(),
            commit: "c".into(),
            previous: None,
            snapshot: Some("ROOT_x".into()),
            phase: Phase::Rewrite,
            started: "2026-01-01T00:00:00+00:00".into(),
            switched_at: None,
            error: None,
        }
    }

    #[test]
    fn a_failed_deploys_error_is_kept_only_in_its_own_unfinished_journal() {
        let t = tempfile::tempdir().unwrap();
        let mut j = journal("a");
        // No journal (the deploy finished it): nothing is written.
        j.keep_error(t.path(), &anyhow::anyhow!("boom"));
        assert!(Journal::load(t.path()).unwrap().is_none());
        j.enter(t.path(), Phase::SwitchToRoot).unwrap();
        j.keep_error(t.path(), &anyhow::anyhow!("boom").context("switch-to-root"));
        let back = Journal::load(t.path()).unwrap().unwrap();
        assert_eq!(back.error.as_deref(), Some("switch-to-root: boom"));
        assert_eq!(back.phase, Phase::SwitchToRoot);
        // Another deploy's journal is not touched.
        let mut other = journal("b");
        other.keep_error(t.path(), &anyhow::anyhow!("other"));
        let back = Journal::load(t.path()).unwrap().unwrap();
        assert_eq!(
            (back.id.as_str(), back.error.as_deref()),
            ("a", Some("switch-to-root: boom"))
        );
    }
}
