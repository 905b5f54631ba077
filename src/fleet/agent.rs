//! A node of the fleet, inside `rootswap serve`: joins (membership on a
//! lease, the election, following deploy records), answers a deploy asked
//! of it ([`Answer`]), and leaves. What it does while it runs lives in
//! [`super::membership`], [`super::catch_up`] and [`super::participate`].
//!
//! The agent knows no HTTP and no service: whoever runs it hands it the
//! configuration in force ([`ConfigFn`]) and what to do when this node
//! becomes the leader ([`LeaderFn`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use super::coordinator::{self, Coordinate};
use super::etcd::Etcd;
use super::records::{Member, NodeReport};
use crate::config::Config;
use crate::deploy::{Request, Trigger};
use crate::deploy_lock::DeployLock;
use crate::site::Site;
use crate::state::State;

/// Gives the agent the configuration in force (the service reloads it).
pub type ConfigFn = Box<dyn Fn() -> Arc<Site> + Send + Sync>;

/// Called when this node becomes the leader (the service then polls).
pub type LeaderFn = Box<dyn Fn() + Send + Sync>;

/// This node's part in the fleet, shared by the service's tasks.
pub struct Agent {
    pub(super) etcd: Etcd,
    pub(super) node: String,
    pub(super) ttl: Duration,
    /// `fleet.switch_delay`: the most this node waits for a named instant.
    pub(super) switch_delay: Duration,
    pub(super) config: ConfigFn,
    pub(super) on_leader: LeaderFn,
    pub(super) lease: Mutex<i64>,
    pub(super) member: Mutex<Member>,
    pub(super) leader: AtomicBool,
    /// Name and trigger address of the leader, as last seen.
    pub(super) leader_seen: Mutex<Option<(String, Option<String>)>>,
    pub(super) caught_up: AtomicBool,
    /// False from a lost lease until this node joined again: it cannot
    /// know what the fleet committed meanwhile.
    pub(super) in_touch: AtomicBool,
    /// Held by a deploy or catch-up in progress on this node.
    pub(super) busy: tokio::sync::Mutex<()>,
    pub(super) stopping: AtomicBool,
}

/// What a fleet node answers when a deploy (or rollback) is asked of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// This node leads and started fleet deploy `id`.
    Accepted(String),
    /// This node is a follower: ask the leader.
    NotLeader {
        /// The leader's node id (`unknown` when none was seen yet).
        leader: String,
        /// The leader's trigger address, when it has one.
        trigger: Option<String>,
    },
    /// A fleet deploy (or catch-up) already runs on this node.
    Busy,
}

/// Locks `m`, also when a panicking holder poisoned it.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Agent {
    /// Joins the fleet: connects (an unreachable etcd or a node id already
    /// alive elsewhere is an error), recovers an interrupted deploy, takes a
    /// lease, registers, campaigns, and starts following deploy records.
    pub async fn start(cfg: &Config, config: ConfigFn, on_leader: LeaderFn) -> Result<Arc<Agent>> {
        let fleet = cfg
            .fleet
            .as_ref()
            .ok_or_else(|| anyhow!("no `fleet:` section"))?;
        let etcd = Etcd::connect(fleet).await?;
        let key = etcd.keys.member(&fleet.node);
        if let Some(old) = etcd.get::<Member>(&key).await? {
            let ours = old.value.host == crate::fsutil::host_name() && !pid_alive(old.value.pid);
            if !ours {
                anyhow::bail!(
                    "fleet: node id `{}` is already alive in site {} (pid {} on {}); give each node its own `fleet.node`",
                    fleet.node,
                    fleet.site,
                    old.value.pid,
                    old.value.host
                );
            }
            // Our own predecessor, killed: its key waits for its lease to expire.
            etcd.delete(&key).await?;
        }
        recover_interrupted(config()).await?;
        let member = Member {
            node: fleet.node.clone(),
            host: crate::fsutil::host_name(),
            pid: std::process::id(),
            since: chrono::Local::now().to_rfc3339(),
            trigger: cfg.trigger.listen.clone(),
            live: State::load(&config().layout.state)
                .ok()
                .and_then(|s| s.deployed),
            caught_up: false,
        };
        let agent = Arc::new(Agent {
            etcd,
            node: fleet.node.clone(),
            ttl: fleet.lease,
            switch_delay: fleet.switch_delay,
            config,
            on_leader,
            lease: Mutex::new(0),
            member: Mutex::new(member),
            leader: AtomicBool::new(false),
            leader_seen: Mutex::new(None),
            caught_up: AtomicBool::new(false),
            in_touch: AtomicBool::new(true),
            busy: tokio::sync::Mutex::new(()),
            stopping: AtomicBool::new(false),
        });
        agent.register().await?;
        tracing::info!(
            "fleet: node {} joined site {} (etcd {})",
            agent.node,
            fleet.site,
            fleet.etcd.join(", ")
        );
        tokio::spawn(agent.clone().membership());
        tokio::spawn(agent.clone().follow());
        tokio::spawn(agent.clone().watch_leader());
        Ok(agent)
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether this node leads the fleet (polls the branch, answers the trigger).
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// The leader's node id and trigger address, as last seen.
    pub fn leader(&self) -> Option<(String, Option<String>)> {
        lock(&self.leader_seen).clone()
    }

    /// False while the fleet committed a version this node does not serve yet.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::SeqCst)
    }

    /// False while this node has no lease in etcd (etcd unreachable for
    /// longer than the lease, or the lease revoked): it serves what it had
    /// but cannot know whether the fleet committed something else.
    pub fn in_touch(&self) -> bool {
        self.in_touch.load(Ordering::SeqCst)
    }

    /// Whether a deploy or catch-up runs on this node.
    pub fn deploying(&self) -> bool {
        self.busy.try_lock().is_err()
    }

    /// The etcd client.
    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// Coordinates a fleet deploy from this node (the leader's poll or trigger).
    pub async fn coordinate(
        &self,
        trigger: Trigger,
        reference: Option<String>,
        force: bool,
        id: Option<String>,
    ) -> Result<coordinator::FleetOutcome> {
        let cfg = (self.config)();
        let req = Coordinate {
            reference,
            force,
            coordinator: self.node.clone(),
            id,
            trigger: trigger.as_str().to_string(),
        };
        let log =
            |e: coordinator::Event| tracing::info!("fleet: {}", super::status::event_line(&e));
        coordinator::coordinate(&self.etcd, &cfg, req, &log).await
    }

    /// Leaves the fleet: the membership key and the leadership go at once.
    /// A deploy in flight here is then aborted by its coordinator; this waits
    /// (at most two leases) for this node's part of it to end.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let lease = *lock(&self.lease);
        let _ = self.etcd.revoke(lease).await;
        let _ = tokio::time::timeout(self.ttl * 2, self.busy.lock()).await;
    }

    /// The leader's node id and trigger address, as an [`Answer`] to give
    /// the asker of a deploy when this node is a follower.
    pub fn not_leader(&self) -> Answer {
        let (leader, trigger) = self.leader().unwrap_or_else(|| ("unknown".into(), None));
        Answer::NotLeader { leader, trigger }
    }

    /// A deploy (or rollback) asked of this node by the trigger URL, a
    /// webhook or the dashboard: the leader starts a fleet deploy of `req`'s
    /// ref (force, trigger) in the background; a follower names the leader.
    pub fn request(self: &Arc<Self>, req: Request) -> Answer {
        if !self.is_leader() {
            return self.not_leader();
        }
        if self.deploying() {
            return Answer::Busy;
        }
        let id = coordinator::new_id();
        let agent = self.clone();
        let fid = id.clone();
        tokio::spawn(async move {
            let res = agent
                .coordinate(req.trigger, req.reference, req.force, Some(fid.clone()))
                .await;
            if let Err(e) = res {
                tracing::error!("fleet deploy {fid}: {e:#}");
            }
        });
        Answer::Accepted(id)
    }

    /// Writes this node's report, retrying for a while when etcd does not answer.
    pub(super) async fn write_state(&self, id: &str, r: &NodeReport) -> Result<()> {
        let key = self.etcd.keys.node_state(id, &self.node);
        let mut tries = 0;
        loop {
            match self.etcd.put(&key, r, None).await {
                Ok(()) => return Ok(()),
                Err(e) if tries >= 20 => return Err(e),
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Recovers a deploy a kill interrupted (ROOT restored from the snapshot).
async fn recover_interrupted(site: Arc<Site>) -> Result<()> {
    if crate::recover::pending(&site.layout.state).is_none() {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || {
        let _lock = DeployLock::acquire(&site.layout.state)?;
        crate::recover::recover(&site).map(|_| ())
    })
    .await
    .map_err(|e| anyhow!("recovery stopped unexpectedly: {e}"))?
    .context("fleet: cannot recover the interrupted deploy")
}
