//! The fleet's commands: `rootswap deploy` on a fleet node (it coordinates
//! and prints every node's progress) and `rootswap fleet status`.

use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};

use super::coordinator::{self, Coordinate, FleetOutcome};
use super::etcd::Etcd;
use super::status;
use crate::config::Config;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn fleet_of(cfg: &Config) -> Result<&crate::config::FleetConfig> {
    cfg.fleet
        .as_ref()
        .ok_or_else(|| anyhow!("this configuration has no `fleet:` section"))
}

/// `rootswap deploy` on a fleet node: coordinates one fleet deploy.
pub fn deploy(
    cfg: &Config,
    reference: Option<String>,
    force: bool,
    as_json: bool,
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
            trigger: "manual".into(),
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
        let v = match &outcome {
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
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    match outcome {
        FleetOutcome::UpToDate { commit } => {
            println!(
                "up to date on every node ({})",
                &commit[..7.min(commit.len())]
            )
        }
        FleetOutcome::Committed {
            record,
            nodes,
            window_ns,
        } => {
            let switched = nodes
                .values()
                .filter(|r| r.state == super::NodeState::Switched)
                .count();
            println!(
                "fleet deploy {}: {} live on {switched} of {} nodes{}",
                record.id,
                record.described,
                record.members.len(),
                window_ns
                    .map(|w| format!("; mixed-version window {:.1} ms", w as f64 / 1e6))
                    .unwrap_or_default()
            );
            if switched < record.members.len() {
                return Ok(ExitCode::from(2));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `rootswap fleet status [--json]`.
pub fn status(cfg: &Config, as_json: bool) -> Result<ExitCode> {
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
