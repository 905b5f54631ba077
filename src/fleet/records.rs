//! The values the fleet keeps in etcd: deploy records, node reports,
//! membership, the committed version and the revert instant, plus the
//! wall-clock helpers every node uses to read them.

use serde::{Deserialize, Serialize};

/// A deploy record: what every member prepares.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeployRecord {
    /// Fleet deploy id (recorded in every node's history).
    pub id: String,
    /// Full commit id to deploy.
    pub commit: String,
    /// `abc1234 subject`.
    pub described: String,
    /// Nodes alive when the deploy started: all of them must prepare.
    pub members: Vec<String>,
    /// Snapshot directory name every node uses.
    pub snapshot: String,
    /// Unix milliseconds after which an unprepared fleet aborts.
    pub deadline_ms: i64,
    /// Node (or `rootswap deploy` on a node) that coordinates.
    pub coordinator: String,
    /// Revision of the lock key the coordinator holds (fencing token).
    pub lock_revision: i64,
    /// RFC 3339 creation time.
    pub created: String,
    /// Who asked: `manual`, `schedule`, `trigger`, `webhook`.
    pub trigger: String,
    /// `hooks.once` must run (on one node) before the commit point.
    #[serde(default)]
    pub once: bool,
    /// The commit the fleet had committed before this deploy (what a
    /// rollback after the commit point goes back to).
    #[serde(default)]
    pub previous: Option<String>,
}

/// The value of a deploy's `revert` key: the fleet goes back to the old
/// version, every node at one instant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Revert {
    /// Unix milliseconds at which every node points its link back at its snapshot.
    pub switch_at_ms: i64,
    /// Why (which node's health check or switch failed).
    pub reason: String,
}

/// A node's state in one deploy.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    /// Preparing (snapshot, checkout, hooks, copy-back).
    Preparing,
    /// Ready to switch; serves the old version from the snapshot.
    Prepared,
    /// Prepare failed (the error is in the report).
    Failed,
    /// The link is back on ROOT: the new version is live here.
    Switched,
    /// The deploy was aborted; the old version is live here.
    Aborted,
    /// The commit point passed, but this node's switch failed: it serves
    /// the old version and answers 503 on `/health`.
    SwitchFailed,
    /// Switched, but its health check failed: the fleet rolls back.
    Unhealthy,
    /// The fleet rolled back after the commit point: the old version is
    /// live here again.
    RolledBack,
}

impl NodeState {
    /// Name as shown by `fleet status`.
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeState::Preparing => "preparing",
            NodeState::Prepared => "prepared",
            NodeState::Failed => "failed",
            NodeState::Switched => "switched",
            NodeState::Aborted => "aborted",
            NodeState::SwitchFailed => "switch-failed",
            NodeState::Unhealthy => "unhealthy",
            NodeState::RolledBack => "rolled-back",
        }
    }
}

/// What a node writes about itself in a deploy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeReport {
    /// Its state.
    pub state: NodeState,
    /// When it got there, RFC 3339.
    pub at: String,
    /// Error or abort reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Instant of the rename that made the new version live (ns since the
    /// Unix epoch, from the filesystem clock: the link's ctime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename_ns: Option<i128>,
    /// The node already served the commit: nothing to switch.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub up_to_date: bool,
    /// After the fleet settled: the node evicted and recorded the deploy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub finished: bool,
    /// With `prepared`: how long etcd took to answer this node lately (ms),
    /// which the commit point's switch instant leaves room for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_ms: Option<u64>,
}

impl NodeReport {
    /// A report of `state` now.
    pub fn now(state: NodeState) -> NodeReport {
        NodeReport {
            state,
            at: chrono::Local::now().to_rfc3339(),
            error: None,
            rename_ns: None,
            up_to_date: false,
            finished: false,
            etcd_ms: None,
        }
    }

    /// The same with an error message.
    pub fn with_error(mut self, e: impl Into<String>) -> NodeReport {
        self.error = Some(e.into());
        self
    }
}

/// The value of a membership key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Member {
    /// Node id.
    pub node: String,
    /// Host name of the machine.
    pub host: String,
    /// Pid of its `rootswap serve`.
    pub pid: u32,
    /// Since when it is a member, RFC 3339.
    pub since: String,
    /// Its trigger URL address (`trigger.listen`), if any.
    #[serde(default)]
    pub trigger: Option<String>,
    /// Commit live on the node.
    #[serde(default)]
    pub live: Option<String>,
    /// False while a committed deploy has not reached this node.
    #[serde(default)]
    pub caught_up: bool,
}

/// The value of the `committed` key: what the whole fleet must serve.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Committed {
    /// Fleet deploy id.
    pub id: String,
    /// Full commit id.
    pub commit: String,
}

/// How long after the commit point the nodes switch: `switch_delay`, or
/// longer when a node is slow to hear from etcd (twice its round trip and
/// 50 ms: the commit travels to it, and it may have coordinated), at most
/// half the lease.
pub fn switch_delay_for(
    switch_delay: std::time::Duration,
    lease: std::time::Duration,
    etcd_ms: impl Iterator<Item = u64>,
) -> std::time::Duration {
    let slowest = etcd_ms.max().unwrap_or(0);
    let room = std::time::Duration::from_millis(slowest.saturating_mul(2).saturating_add(50));
    switch_delay
        .max(room)
        .min(max_switch_wait(switch_delay, lease))
}

/// The longest a node waits for a named switch instant: `switch_delay`, or
/// half the lease when that is longer ([`switch_delay_for`] never goes past it).
pub fn max_switch_wait(
    switch_delay: std::time::Duration,
    lease: std::time::Duration,
) -> std::time::Duration {
    switch_delay.max(lease / 2)
}

/// A wall-clock instant (Unix ms, named by the coordinator) as this
/// machine's monotonic clock: at most `max` from now, so that a clock that
/// runs behind the coordinator's cannot make a node wait long.
pub fn local_instant(at_ms: i64, max: std::time::Duration) -> std::time::Instant {
    let wait = (at_ms - now_ms()).clamp(0, max.as_millis() as i64);
    std::time::Instant::now() + std::time::Duration::from_millis(wait as u64)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_slow_node_moves_the_switch_instant_within_half_a_lease() {
        let (d, lease) = (Duration::from_millis(200), Duration::from_secs(2));
        assert_eq!(switch_delay_for(d, lease, [1u64, 3].into_iter()), d);
        assert_eq!(switch_delay_for(d, lease, std::iter::empty()), d);
        assert_eq!(
            switch_delay_for(d, lease, [2u64, 240].into_iter()),
            Duration::from_millis(530)
        );
        assert_eq!(
            switch_delay_for(d, lease, [5_000u64].into_iter()),
            Duration::from_secs(1)
        );
        assert_eq!(max_switch_wait(d, lease), Duration::from_secs(1));
        assert_eq!(
            max_switch_wait(Duration::from_millis(1500), lease),
            Duration::from_millis(1500)
        );
        let old = r#"{"state":"prepared","at":"x"}"#;
        assert_eq!(
            serde_json::from_str::<NodeReport>(old).unwrap().etcd_ms,
            None
        );
    }

    #[test]
    fn reports_round_trip() {
        let r = NodeReport::now(NodeState::SwitchFailed).with_error("health");
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("switch-failed"), "{text}");
        assert_eq!(serde_json::from_str::<NodeReport>(&text).unwrap(), r);
    }
}
