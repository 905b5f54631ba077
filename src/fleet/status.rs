//! `rootswap fleet status`, the progress lines of a fleet deploy, and the
//! node's `GET /health`.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::coordinator::Event;
use super::etcd::Etcd;
use super::records::{Committed, DeployRecord, Member, NodeReport};
use super::view::{alive, View};

/// One progress line of a fleet deploy.
pub fn event_line(e: &Event) -> String {
    match e {
        Event::Started(r) => format!(
            "deploy {} of {}: {} members prepare ({}), snapshot {}",
            r.id,
            r.described,
            r.members.len(),
            r.members.join(", "),
            r.snapshot
        ),
        Event::Node(n, r) => {
            let mut line = format!("  {n}: {}", r.state.as_str());
            if r.up_to_date {
                line.push_str(" (already live there)");
            }
            if let Some(e) = &r.error {
                line.push_str(&format!(": {e}"));
            }
            line
        }
        Event::CommitPoint => "commit point passed: every member switches now".into(),
        Event::Aborting(why) => format!("aborting: {why}"),
        Event::Behind(n) => format!("  {n}: down; it switches when it comes back"),
        Event::Once(n) => format!("every member prepared; {n} runs hooks.once"),
        Event::RollingBack(why) => {
            format!("{why}: rolling the whole fleet back, every node at one instant")
        }
    }
}

/// One member as `fleet status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Node id.
    pub node: String,
    /// Its membership key is alive.
    pub alive: bool,
    /// It leads the fleet.
    pub leader: bool,
    /// Commit live there (as the node reported it).
    pub live: Option<String>,
    /// It serves the committed version.
    pub caught_up: bool,
    /// Host and pid of its `rootswap serve`.
    pub host: Option<String>,
    /// Pid of its `rootswap serve`.
    pub pid: Option<u32>,
    /// Its state in the last fleet deploy.
    pub last_deploy: Option<NodeReport>,
}

/// What `fleet status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    /// Site name.
    pub site: String,
    /// The leader's node id.
    pub leader: Option<String>,
    /// What the fleet committed to last.
    pub committed: Option<Committed>,
    /// The last deploy record.
    pub last_deploy: Option<DeployRecord>,
    /// `committed`, `aborted: reason`, `rolled back after the commit point: reason` or `in progress`.
    pub last_result: Option<String>,
    /// A fleet deploy holds the lock now.
    pub deploying: bool,
    /// Every member, alive or named by the last deploy.
    pub nodes: Vec<NodeStatus>,
    /// First to last rename of the last committed deploy, ms.
    pub window_ms: Option<f64>,
}

/// Reads the fleet's state from etcd.
pub async fn gather(etcd: &Etcd, site: &str) -> Result<FleetStatus> {
    let k = &etcd.keys;
    let members: BTreeMap<String, Member> = alive(etcd).await?;
    let leader = etcd.leader(&k.election()).await.ok().flatten();
    let committed = etcd
        .get::<Committed>(&k.committed())
        .await?
        .map(|e| e.value);
    let last_id = etcd.get::<String>(&k.last()).await?.map(|e| e.value);
    let record = match &last_id {
        Some(id) => etcd
            .get::<DeployRecord>(&k.record(id))
            .await?
            .map(|e| e.value),
        None => None,
    };
    let view = match &record {
        Some(r) => View::read(etcd, &r.id).await?,
        None => View::default(),
    };
    let last_result = record.as_ref().map(|_| {
        if let Some(r) = &view.revert {
            format!("rolled back after the commit point: {}", r.reason)
        } else if view.committed {
            "committed".to_string()
        } else if let Some(r) = &view.aborted {
            format!("aborted: {r}")
        } else {
            "in progress".to_string()
        }
    });
    let mut names: Vec<String> = members.keys().cloned().collect();
    if let Some(r) = &record {
        names.extend(r.members.iter().cloned());
    }
    names.sort();
    names.dedup();
    let nodes = names
        .into_iter()
        .map(|n| {
            let m = members.get(&n);
            NodeStatus {
                alive: m.is_some(),
                leader: leader.as_deref() == Some(n.as_str()),
                live: m.and_then(|m| m.live.clone()),
                caught_up: m.is_some_and(|m| m.caught_up),
                host: m.map(|m| m.host.clone()),
                pid: m.map(|m| m.pid),
                last_deploy: view.nodes.get(&n).cloned(),
                node: n,
            }
        })
        .collect::<Vec<_>>();
    let renames: Vec<i128> = view
        .nodes
        .values()
        .filter(|r| !r.up_to_date)
        .filter_map(|r| r.rename_ns)
        .collect();
    let window_ms = match (renames.iter().min(), renames.iter().max()) {
        (Some(a), Some(b)) if renames.len() > 1 => Some((b - a) as f64 / 1e6),
        _ => None,
    };
    Ok(FleetStatus {
        site: site.to_string(),
        leader,
        committed,
        last_deploy: record,
        last_result,
        deploying: etcd.has(&k.lock()).await?,
        nodes,
        window_ms,
    })
}

fn short(c: &str) -> &str {
    crate::commit::short(c)
}

/// `fleet status` for people.
pub fn text(s: &FleetStatus) -> String {
    let mut out = format!(
        "fleet site {}: leader {}; committed {}{}\n",
        s.site,
        s.leader.as_deref().unwrap_or("none"),
        s.committed
            .as_ref()
            .map(|c| format!("{} (deploy {})", short(&c.commit), c.id))
            .unwrap_or_else(|| "nothing yet".into()),
        if s.deploying {
            "; a fleet deploy is in progress"
        } else {
            ""
        }
    );
    if let (Some(r), Some(res)) = (&s.last_deploy, &s.last_result) {
        out.push_str(&format!(
            "last deploy {} of {}: {res}{}\n",
            r.id,
            r.described,
            s.window_ms
                .map(|w| format!("; mixed-version window {w:.1} ms"))
                .unwrap_or_default()
        ));
    }
    out.push_str(&format!(
        "{:<12} {:<6} {:<8} {:<9} {}\n",
        "NODE", "ALIVE", "LIVE", "CAUGHT-UP", "LAST DEPLOY"
    ));
    for n in &s.nodes {
        let last = n
            .last_deploy
            .as_ref()
            .map(|r| {
                let mut t = r.state.as_str().to_string();
                if let Some(e) = &r.error {
                    t.push_str(&format!(" ({e})"));
                }
                t
            })
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<12} {:<6} {:<8} {:<9} {last}\n",
            format!("{}{}", n.node, if n.leader { "*" } else { "" }),
            if n.alive { "yes" } else { "no" },
            n.live.as_deref().map(short).unwrap_or("-"),
            if n.caught_up { "yes" } else { "no" },
        ));
    }
    out
}
