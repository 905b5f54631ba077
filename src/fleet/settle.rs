//! After the commit point: the fleet keeps the new version, or every node
//! goes back to the old one together.
//!
//! Every node reports its switch back (`switched`, `unhealthy` when its
//! health check failed, `switch-failed`). Once every live member has
//! reported, one verdict is written, exactly once (a transaction that needs
//! neither key to exist):
//!
//! - `settled`: every node is healthy on the new version; each node evicts
//!   and records its deploy;
//! - `revert`: a node is unhealthy or could not switch; every node points
//!   its link back at its snapshot (which still holds the old version) at
//!   one named instant, restores ROOT from it, and records the deploy as
//!   rolled back. The fleet's `committed` key goes back to the old commit.
//!
//! It is the two phases reversed: the snapshots are the prepared old
//! version, the `revert` key is the commit point of the way back. The
//! coordinator writes the verdict; when it is gone, any node does.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;

use super::etcd::{absent, created_at, exists, put_op, Etcd};
use super::records::{now_ms, Committed, DeployRecord, Member, NodeReport, NodeState, Revert};
use super::view::View;

/// What the fleet does after its commit point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the new version.
    Settle,
    /// Go back to the old version on every node (why).
    Revert(String),
}

/// A node's state once its switch back is over (whatever its result).
pub fn switched(s: NodeState) -> bool {
    matches!(
        s,
        NodeState::Switched | NodeState::Unhealthy | NodeState::SwitchFailed
    )
}

/// The verdict the members' reports call for; None while a live member has
/// not finished its switch (unless `give_up`: then it counts as healthy,
/// and catches up by itself). A member that is down is not waited for.
pub fn verdict(
    record: &DeployRecord,
    nodes: &BTreeMap<String, NodeReport>,
    live: &BTreeMap<String, Member>,
    give_up: bool,
) -> Option<Verdict> {
    let mut bad = Vec::new();
    for m in &record.members {
        let report = nodes.get(m);
        let error = report
            .and_then(|r| r.error.as_deref())
            .unwrap_or("no reason given");
        match report.map(|r| r.state) {
            Some(NodeState::Unhealthy) => bad.push(format!("{m}'s health check failed ({error})")),
            Some(NodeState::SwitchFailed) => bad.push(format!("{m}'s switch failed ({error})")),
            Some(NodeState::Switched) => {}
            _ if give_up || !live.contains_key(m) => {}
            _ => return None,
        }
    }
    Some(match bad.is_empty() {
        true => Verdict::Settle,
        false => Verdict::Revert(format!("after the commit point, {}", bad.join("; "))),
    })
}

/// Writes `verdict` for `record` unless a verdict exists already (then the
/// existing one stands: read it back). `fence`: the coordinator's lock
/// revision, which must still be held; `delay`: how far ahead the revert's
/// instant is named.
pub async fn write(
    etcd: &Etcd,
    record: &DeployRecord,
    verdict: &Verdict,
    delay: Duration,
    fence: Option<i64>,
) -> Result<()> {
    let k = &etcd.keys;
    let id = &record.id;
    let mut when = vec![
        exists(&k.commit(id)),
        absent(&k.settled(id)),
        absent(&k.revert(id)),
    ];
    if let Some(rev) = fence {
        when.push(created_at(&k.lock(), rev));
    }
    let then = match verdict {
        Verdict::Settle => vec![put_op(&k.settled(id), &now_ms(), None)],
        Verdict::Revert(reason) => {
            let revert = Revert {
                switch_at_ms: now_ms() + delay.as_millis() as i64,
                reason: reason.clone(),
            };
            let mut ops = vec![put_op(&k.revert(id), &revert, None)];
            match &record.previous {
                Some(previous) => {
                    let back = Committed {
                        id: id.clone(),
                        commit: previous.clone(),
                    };
                    ops.push(put_op(&k.committed(), &back, None));
                }
                // The fleet's first deploy: nothing was committed before it.
                None => ops.push(etcd_client::TxnOp::delete(k.committed().as_str(), None)),
            }
            ops
        }
    };
    etcd.txn(when, then).await.map(|_| ())
}

/// The verdict as written, from a view of the deploy.
pub fn written(view: &View) -> Option<Verdict> {
    if view.settled {
        return Some(Verdict::Settle);
    }
    view.revert
        .as_ref()
        .map(|r| Verdict::Revert(r.reason.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> DeployRecord {
        DeployRecord {
            id: "f1".into(),
            commit: "c".repeat(40),
            described: "ccccccc new".into(),
            members: vec!["a".into(), "b".into(), "c".into()],
            snapshot: "ROOT_2026.12.01-10.00.00".into(),
            deadline_ms: 0,
            coordinator: "a".into(),
            lock_revision: 7,
            created: String::new(),
            trigger: "manual".into(),
            once: false,
            previous: Some("b".repeat(40)),
        }
    }

    fn live(names: &[&str]) -> BTreeMap<String, Member> {
        names
            .iter()
            .map(|n| {
                let m = Member {
                    node: n.to_string(),
                    host: "h".into(),
                    pid: 1,
                    since: String::new(),
                    trigger: None,
                    live: None,
                    caught_up: true,
                };
                (n.to_string(), m)
            })
            .collect()
    }

    fn reports(states: &[(&str, NodeState)]) -> BTreeMap<String, NodeReport> {
        states
            .iter()
            .map(|(n, s)| (n.to_string(), NodeReport::now(*s).with_error("boom")))
            .collect()
    }

    #[test]
    fn all_switched_settles_and_one_unhealthy_reverts_naming_it() {
        let r = record();
        let all = live(&["a", "b", "c"]);
        let ok = reports(&[
            ("a", NodeState::Switched),
            ("b", NodeState::Switched),
            ("c", NodeState::Switched),
        ]);
        assert_eq!(verdict(&r, &ok, &all, false), Some(Verdict::Settle));
        let sick = reports(&[
            ("a", NodeState::Switched),
            ("b", NodeState::Unhealthy),
            ("c", NodeState::Switched),
        ]);
        let Some(Verdict::Revert(why)) = verdict(&r, &sick, &all, false) else {
            panic!("no revert");
        };
        assert!(why.contains("b's health check failed (boom)"), "{why}");
    }

    #[test]
    fn a_live_member_still_switching_is_waited_for_a_dead_one_is_not() {
        let r = record();
        let partial = reports(&[("a", NodeState::Switched), ("b", NodeState::Prepared)]);
        assert_eq!(verdict(&r, &partial, &live(&["a", "b"]), false), None);
        assert_eq!(
            verdict(&r, &partial, &live(&["a", "b"]), true),
            Some(Verdict::Settle)
        );
        assert_eq!(
            verdict(&r, &partial, &live(&["a"]), false),
            Some(Verdict::Settle)
        );
    }
}
