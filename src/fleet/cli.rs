//! The fleet's commands: `rootswap deploy` on a fleet node (it coordinates
//! and prints every node's progress) and `rootswap fleet status`.

use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};

use super::coordinator::{self, Coordinate, FleetOutcome};
use super::etcd::Etcd;
use super::records::{NodeReport, NodeState};
use super::status;
use crate::site::Site;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn fleet_of(cfg: &Site) -> Result<&crate::config::FleetConfig> {
    cfg.fleet
        .as_ref()
        .ok_or_else(|| anyhow!("this configuration has no `fleet:` section"))
}

/// `rootswap deploy` on a fleet node: coordinates one fleet deploy.
pub fn deploy(
    cfg: &Site,
    reference: Option<String>,
    force: bool,
    as_json: bool,
) -> Result<ExitCode> {
    deploy_as(cfg, reference, force, as_json, "manual")
}

fn deploy_as(
    cfg: &Site,
    reference: Option<String>,
    force: bool,
    as_json: bool,
    trigger: &str,
) -> Result<ExitCode> {
    let fleet = fleet_of(cfg)?;
    let rt = runtime()?;
    let outcome = rt.block_on(async {
        let etcd = Etcd::connect(fleet).await?;
        let req = Coordinate {
            reference,
            force,
            coordinator: format!("rootswap deploy on {}", fleet.node),
            id: None,
            trigger: trigger.into(),
        };
        let print = |e: coordinator::Event| {
            if !as_json {
                println!("{}", status::event_line(&e));
            }
        };
        coordinator::coordinate(&etcd, cfg, req, &print).await
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    let outcome = outcome?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&outcome_json(&outcome))?);
    } else {
        println!("{}", outcome_line(&outcome));
    }
    // Exit 2: committed, but a member did not switch (down or cut off; it
    // catches up when it is back).
    Ok(ExitCode::from(if behind(&outcome) { 2 } else { 0 }))
}

/// How many members switched.
fn switched(nodes: &std::collections::BTreeMap<String, NodeReport>) -> usize {
    nodes
        .values()
        .filter(|r| r.state == NodeState::Switched)
        .count()
}

/// Committed, but a member did not switch.
fn behind(outcome: &FleetOutcome) -> bool {
    match outcome {
        FleetOutcome::Committed { record, nodes, .. } => switched(nodes) < record.members.len(),
        FleetOutcome::UpToDate { .. } => false,
    }
}

/// `rootswap deploy --json`'s summary of a fleet deploy.
fn outcome_json(outcome: &FleetOutcome) -> serde_json::Value {
    match outcome {
        FleetOutcome::UpToDate { commit } => {
            serde_json::json!({ "result": "up-to-date", "commit": commit })
        }
        FleetOutcome::Committed {
            record,
            nodes,
            window_ns,
        } => serde_json::json!({
            "result": "committed",
            "id": record.id,
            "commit": record.commit,
            "nodes": nodes,
            "window_ms": window_ns.map(|w| w as f64 / 1e6),
        }),
    }
}

/// `rootswap deploy`'s last line on a fleet.
fn outcome_line(outcome: &FleetOutcome) -> String {
    match outcome {
        FleetOutcome::UpToDate { commit } => {
            format!(
                "up to date on every node ({})",
                crate::commit::short(commit)
            )
        }
        FleetOutcome::Committed {
            record,
            nodes,
            window_ns,
        } => format!(
            "fleet deploy {}: {} live on {} of {} nodes{}",
            record.id,
            record.described,
            switched(nodes),
            record.members.len(),
            window_ns
                .map(|w| format!("; mixed-version window {:.1} ms", w as f64 / 1e6))
                .unwrap_or_default()
        ),
    }
}

/// `rootswap fleet status [--json]`.
pub fn status(cfg: &Site, as_json: bool) -> Result<ExitCode> {
    let fleet = fleet_of(cfg)?;
    let rt = runtime()?;
    let s = rt.block_on(async {
        let etcd = Etcd::connect(fleet).await?;
        status::gather(&etcd, &fleet.site).await
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    let s = s?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", status::text(&s));
    }
    Ok(ExitCode::SUCCESS)
}

/// `rootswap rollback [SNAPSHOT]` on a fleet node: a fleet deploy of the
/// commit that snapshot holds on this node (every node then deploys it).
pub fn rollback(cfg: &Site, name: Option<&str>) -> Result<ExitCode> {
    let layout = cfg.layout.clone();
    layout.preflight()?;
    let snap = match name {
        Some(n) => crate::snapshots::find(&layout, n)?,
        None => layout.timestamped()?.pop().ok_or_else(|| {
            anyhow!(
                "there is no snapshot to roll back to in {}; name one with `rootswap rollback NAME`",
                layout.webroot.display()
            )
        })?,
    };
    let state = crate::state::State::load(&layout.state)?;
    let commit = state
        .snapshot(&snap.path)
        .and_then(|i| i.commit.clone())
        .ok_or_else(|| {
            anyhow!(
                "the commit of {} is not known; deploy a known version instead with `rootswap deploy --ref REF`",
                snap.name
            )
        })?;
    println!(
        "rolling the fleet back to {} ({}), the version of {}",
        crate::commit::short(&commit),
        snap.name,
        fleet_of(cfg)?.node
    );
    deploy_as(cfg, Some(commit), true, false, "rollback")
}
