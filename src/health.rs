//! The health gate: after the link returns to ROOT, a URL must answer with
//! the expected status, or the deploy is rolled back at once.

use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::config::HealthCheckConfig;

/// An HTTP agent with a timeout; TLS through the system's OpenSSL.
pub fn agent(timeout: Duration) -> Result<ureq::Agent> {
    use ureq::tls::{TlsConfig, TlsProvider};
    let cfg = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .tls_config(
            TlsConfig::builder()
                .provider(TlsProvider::NativeTls)
                .build(),
        )
        .build();
    Ok(cfg.into())
}

/// Requests the health URL until it answers `expect_status` (1 + `retries`
/// attempts, one second apart). Returns what the last attempt saw on failure.
pub fn check(hc: &HealthCheckConfig) -> Result<()> {
    let agent = agent(hc.timeout)?;
    let mut last = String::new();
    for attempt in 0..=hc.retries {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        let status = match agent.get(&hc.url).call() {
            Ok(r) => r.status().as_u16(),
            Err(e) => {
                last = format!("{e}");
                tracing::warn!("health check {} attempt {}: {last}", hc.url, attempt + 1);
                continue;
            }
        };
        if status == hc.expect_status {
            tracing::info!("health check {} answered {status}", hc.url);
            return Ok(());
        }
        last = format!("answered {status}, expected {}", hc.expect_status);
        tracing::warn!("health check {} attempt {}: {last}", hc.url, attempt + 1);
    }
    Err(anyhow!(
        "health check {} failed after {} attempt(s): {last}",
        hc.url,
        hc.retries + 1
    ))
}
