//! The `auto_deploy` schedule (tokio-cron-scheduler) and the backoff after
//! failures that happen before a deploy starts (an unreachable repository).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Local};
use tokio_cron_scheduler::{Job, JobScheduler};
use tracing::instrument::WithSubscriber;

use crate::config::{AutoDeployConfig, Config};

/// Poll interval when `auto_deploy` sets neither `every` nor `cron`.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(60);

/// First wait after a failure; it doubles with each failure in a row.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest wait between attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(600);

/// Checks what the config file cannot: the cron expression parses, `every` is not zero.
pub fn validate(cfg: &Config) -> Result<()> {
    make_job(&cfg.auto_deploy, || {}).map(|_| ())
}

/// One line describing the schedule, for the log.
pub fn describe(a: &AutoDeployConfig) -> String {
    if !a.enabled {
        return "auto-deploy off (auto_deploy.enabled: false)".into();
    }
    match (&a.every, &a.cron) {
        (_, Some(c)) => format!("polling on cron \"{c}\""),
        (Some(d), None) => format!("polling every {}", humantime::format_duration(*d)),
        (None, None) => format!(
            "polling every {}",
            humantime::format_duration(DEFAULT_EVERY)
        ),
    }
}

fn make_job(a: &AutoDeployConfig, tick: impl Fn() + Send + Sync + 'static) -> Result<Job> {
    match (&a.every, &a.cron) {
        (Some(_), Some(_)) => bail!("`auto_deploy` has both `every` and `cron`; keep exactly one of them"),
        (_, Some(cron)) => Job::new_async_tz(cron.as_str(), Local, move |_, _| {
            tick();
            Box::pin(async {})
        })
        .map_err(|e| {
            anyhow!(
                "`auto_deploy.cron: \"{cron}\"` is not a valid cron expression ({e}); it takes six fields with seconds first \
                 (sec min hour day-of-month month day-of-week), e.g. \"0 */5 * * * *\" for every five minutes"
            )
        }),
        (every, None) => {
            let every = every.unwrap_or(DEFAULT_EVERY);
            if every < Duration::from_secs(1) {
                bail!(
                    "`auto_deploy.every: {}` is too short; the schedule counts whole seconds, use 1s or more",
                    humantime::format_duration(every)
                );
            }
            Job::new_repeated_async(every, move |_, _| {
                tick();
                Box::pin(async {})
            })
            .map_err(|e| anyhow!("cannot schedule auto_deploy.every: {e}"))
        }
    }
}

/// Starts the schedule (None when `auto_deploy.enabled` is false).
pub async fn start(
    a: &AutoDeployConfig,
    tick: impl Fn() + Send + Sync + 'static,
) -> Result<Option<JobScheduler>> {
    if !a.enabled {
        return Ok(None);
    }
    let job = make_job(a, tick)?;
    // The scheduler logs its own set-up at info level ("Uninited", "Job creator
    // created"): noise in the service's log, so it sets up with logging off.
    let quiet = tracing::subscriber::NoSubscriber::default;
    let sched = JobScheduler::new()
        .with_subscriber(quiet())
        .await
        .map_err(|e| anyhow!("cannot start the auto-deploy scheduler: {e}"))?;
    sched
        .add(job)
        .with_subscriber(quiet())
        .await
        .map_err(|e| anyhow!("cannot add the auto-deploy job: {e}"))?;
    sched
        .start()
        .with_subscriber(quiet())
        .await
        .map_err(|e| anyhow!("cannot start the auto-deploy scheduler: {e}"))?;
    Ok(Some(sched))
}

/// Exponential backoff: 5 s, 10 s, 20 s, … up to 10 minutes.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
    next: Option<Instant>,
    next_wall: Option<DateTime<Local>>,
}

impl Backoff {
    /// Wait after `failures` failures in a row.
    pub fn delay(failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(16);
        BACKOFF_BASE.saturating_mul(1 << exp).min(BACKOFF_CAP)
    }

    /// Records a failure; returns the wait and the wall-clock time of the next attempt.
    pub fn fail(&mut self) -> (Duration, DateTime<Local>) {
        self.failures = self.failures.saturating_add(1);
        let d = Backoff::delay(self.failures);
        let wall = Local::now()
            + chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::seconds(600));
        self.next = Some(Instant::now() + d);
        self.next_wall = Some(wall);
        (d, wall)
    }

    /// Forgets past failures.
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }

    /// When waiting, the time of the next attempt.
    pub fn waiting(&self) -> Option<DateTime<Local>> {
        match (self.next, self.next_wall) {
            (Some(n), Some(w)) if Instant::now() < n => Some(w),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(Backoff::delay(1), Duration::from_secs(5));
        assert_eq!(Backoff::delay(2), Duration::from_secs(10));
        assert_eq!(Backoff::delay(3), Duration::from_secs(20));
        assert_eq!(Backoff::delay(8), BACKOFF_CAP);
        assert_eq!(Backoff::delay(u32::MAX), BACKOFF_CAP);
        let mut b = Backoff::default();
        assert!(b.waiting().is_none());
        b.fail();
        assert!(b.waiting().is_some());
        b.reset();
        assert!(b.waiting().is_none());
    }

    fn auto(every: Option<Duration>, cron: Option<&str>) -> AutoDeployConfig {
        AutoDeployConfig {
            enabled: true,
            every,
            cron: cron.map(str::to_owned),
        }
    }

    #[test]
    fn schedule_validation() {
        assert!(make_job(&auto(Some(Duration::from_secs(1)), None), || {}).is_ok());
        assert!(make_job(&auto(None, Some("0 */5 * * * *")), || {}).is_ok());
        assert!(make_job(&auto(None, None), || {}).is_ok());
        let msg = format!(
            "{:#}",
            make_job(&auto(None, Some("every five minutes")), || {})
                .err()
                .unwrap()
        );
        assert!(
            msg.contains("auto_deploy.cron") && msg.contains("0 */5 * * * *"),
            "{msg}"
        );
        let msg = format!(
            "{:#}",
            make_job(&auto(Some(Duration::from_millis(100)), None), || {})
                .err()
                .unwrap()
        );
        assert!(msg.contains("too short"), "{msg}");
    }
}
