//! What a deploy is asked to do and what it reports.

use std::path::PathBuf;
use std::time::Duration;

use crate::history::StepTiming;

/// Who asked for a deploy (recorded in the history).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `rootswap deploy` by hand.
    Manual,
    /// The service's auto-deploy schedule.
    Schedule,
    /// The deploy trigger URL.
    TriggerUrl,
    /// A Git host's webhook.
    Webhook,
    /// `rootswap rollback`.
    Rollback,
}

impl Trigger {
    /// Name used in the history.
    pub fn as_str(&self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Schedule => "schedule",
            Trigger::TriggerUrl => "trigger",
            Trigger::Webhook => "webhook",
            Trigger::Rollback => "rollback",
        }
    }
}

/// What to deploy and how.
#[derive(Debug, Clone)]
pub struct Request {
    /// Branch, tag or commit to deploy instead of the configured branch head.
    pub reference: Option<String>,
    /// Deploy even when the commit is already live.
    pub force: bool,
    /// Print what would change without touching anything.
    pub dry_run: bool,
    /// Who asked.
    pub trigger: Trigger,
    /// Deploy id (generated when None).
    pub id: Option<String>,
    /// Name of the snapshot to take instead of `ROOT_<now>` (a fleet deploy
    /// uses one name on every node).
    pub snapshot_name: Option<String>,
    /// Id of the fleet deploy this node's deploy is part of (recorded in the history).
    pub fleet_id: Option<String>,
    /// `--adopt-current`: a serving link to a tree outside the webroot is
    /// adopted (that tree copied into ROOT first) instead of refused.
    pub adopt_current: bool,
}

impl Request {
    /// A plain manual deploy of the branch head.
    pub fn manual() -> Request {
        Request {
            reference: None,
            force: false,
            dry_run: false,
            trigger: Trigger::Manual,
            id: None,
            snapshot_name: None,
            fleet_id: None,
            adopt_current: false,
        }
    }
}

/// How a deploy ended (errors are returned as `Err`).
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The commit is already live.
    UpToDate {
        /// The live commit.
        commit: String,
    },
    /// A new version is live.
    Deployed(Summary),
    /// `--dry-run`: what would happen.
    DryRun(DryRun),
}

/// What a successful deploy did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Deploy id.
    pub id: String,
    /// Commit now live.
    pub commit: String,
    /// `abc1234 subject`.
    pub described: String,
    /// Commit live before, if any.
    pub previous: Option<String>,
    /// Snapshot that served during the deploy (None on a first deploy).
    pub snapshot: Option<String>,
    /// Snapshot recycled into it (incremental snapshot).
    pub recycled: Option<String>,
    /// Files added, modified, deleted.
    pub files: (usize, usize, usize),
    /// User files copied back (both passes).
    pub user_files_copied: usize,
    /// User files removed because they were deleted while the snapshot served.
    pub user_files_removed: usize,
    /// Snapshots evicted.
    pub evicted: Vec<String>,
    /// Total duration.
    pub duration: Duration,
    /// Per-step durations.
    pub steps: Vec<StepTiming>,
    /// Warnings worth the operator's attention.
    pub warnings: Vec<String>,
}

/// What `--dry-run` found.
#[derive(Debug, Clone)]
pub struct DryRun {
    /// Commit live now.
    pub from: Option<String>,
    /// Commit that would be deployed.
    pub to: String,
    /// `abc1234 subject` of the target.
    pub described: String,
    /// Paths added, modified, deleted.
    pub added: Vec<PathBuf>,
    /// Paths modified.
    pub modified: Vec<PathBuf>,
    /// Paths deleted.
    pub deleted: Vec<PathBuf>,
    /// User files that would be carried into the new version.
    pub user_files: Vec<PathBuf>,
    /// Lines worth the operator's attention: adopting a Git clone
    /// (crate::adopt), symlinks that leave the tree.
    pub notes: Vec<String>,
}
