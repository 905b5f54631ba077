//! The dashboard's live feed: what a running deploy does, as it happens.
//!
//! [`Layer`] is a tracing layer (`rootswap serve` installs it) that forwards
//! the deploy's step announcements ([`crate::progress::step_started`], events
//! of target [`crate::progress::STEP_TARGET`]) and the log lines written
//! inside a `deploy` span to a broadcast channel. It also keeps the events of
//! the last few deploys, so that a page opened mid-deploy sees the steps so
//! far, and a history row can show the log of a recent deploy.
//!
//! [`stream`] serves them as Server-Sent Events (`GET /dashboard/events`):
//! `event: state` (which deploy runs, on connect and whenever it changes),
//! then `event: step` and `event: log`, each with a JSON [`LiveEvent`].

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::service::Service;
use crate::progress::STEP_TARGET;

/// Deploys whose events are kept in memory.
const KEEP_DEPLOYS: usize = 20;
/// Events kept per deploy (the rest are counted, not kept).
const KEEP_EVENTS: usize = 2000;
/// Events a slow reader may fall behind before it skips some.
const CHANNEL: usize = 1024;

/// One thing a deploy did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LiveEvent {
    /// Deploy id.
    pub deploy: String,
    /// `step` (a step started), `step-end` (a counted step ended) or `log`.
    pub kind: &'static str,
    /// The step's name (`step`, `step-end`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// `INFO`, `WARN` or `ERROR` (`log`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// The log line (`log`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Milliseconds since the deploy's first event.
    pub at_ms: u64,
}

/// The events of one deploy.
struct Recent {
    id: String,
    started: Instant,
    events: Vec<LiveEvent>,
}

struct Feed {
    tx: broadcast::Sender<LiveEvent>,
    recent: Mutex<VecDeque<Recent>>,
}

fn feed() -> &'static Feed {
    static FEED: OnceLock<Feed> = OnceLock::new();
    FEED.get_or_init(|| Feed {
        tx: broadcast::channel(CHANNEL).0,
        recent: Mutex::new(VecDeque::new()),
    })
}

fn recent() -> std::sync::MutexGuard<'static, VecDeque<Recent>> {
    feed().recent.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records and broadcasts one event of deploy `id`.
fn publish(id: &str, kind: &'static str, step: Option<String>, log: Option<(Level, String)>) {
    let mut recent = recent();
    if recent.back().map(|r| r.id.as_str()) != Some(id) {
        if let Some(pos) = recent.iter().position(|r| r.id == id) {
            // An event of an older deploy (its last lines): keep the order of starts.
            if let Some(r) = recent.remove(pos) {
                recent.push_back(r);
            }
        } else {
            recent.push_back(Recent {
                id: id.to_string(),
                started: Instant::now(),
                events: Vec::new(),
            });
            while recent.len() > KEEP_DEPLOYS {
                recent.pop_front();
            }
        }
    }
    let Some(cur) = recent.back_mut() else {
        return;
    };
    let ev = LiveEvent {
        deploy: id.to_string(),
        kind,
        step,
        level: log.as_ref().map(|(l, _)| l.to_string()),
        message: log.map(|(_, m)| m),
        at_ms: cur.started.elapsed().as_millis() as u64,
    };
    if cur.events.len() < KEEP_EVENTS {
        cur.events.push(ev.clone());
    }
    // Under the lock: a subscriber sees each event either in the replay or live, once.
    let _ = feed().tx.send(ev);
}

/// The events of deploy `id` (while it is among the last few), oldest first.
pub fn events_of(id: &str) -> Option<Vec<LiveEvent>> {
    recent()
        .iter()
        .find(|r| r.id == id)
        .map(|r| r.events.clone())
}

/// The events of deploy `id` so far and a receiver for what follows, with
/// nothing lost or seen twice in between.
fn subscribe(id: Option<&str>) -> (Vec<LiveEvent>, broadcast::Receiver<LiveEvent>) {
    let recent = recent();
    let replay = id
        .and_then(|id| recent.iter().find(|r| r.id == id))
        .map(|r| r.events.clone())
        .unwrap_or_default();
    (replay, feed().tx.subscribe())
}

/// The deploy id a span carries (stored by [`Layer`] when a `deploy` span opens).
struct DeployId(String);

/// Reads the `id` field of a `deploy` span.
#[derive(Default)]
struct IdVisitor(Option<String>);

impl Visit for IdVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "id" {
            self.0 = Some(value.to_string());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "id" {
            self.0 = Some(format!("{value:?}").trim_matches('"').to_string());
        }
    }
}

/// Reads a step event or a log line.
#[derive(Default)]
struct EventVisitor {
    message: Option<String>,
    step: Option<String>,
    finished: Option<String>,
}

impl Visit for EventVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = Some(value.to_string()),
            "step" => self.step = Some(value.to_string()),
            "finished" => self.finished = Some(value.to_string()),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = || format!("{value:?}").trim_matches('"').to_string();
        match field.name() {
            "message" => self.message = Some(format!("{value:?}")),
            "step" => self.step = Some(text()),
            "finished" => self.finished = Some(text()),
            _ => {}
        }
    }
}

/// Forwards the events of `deploy` spans to the live feed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Layer;

impl<S> tracing_subscriber::Layer<S> for Layer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "deploy" {
            return;
        }
        let mut v = IdVisitor::default();
        attrs.record(&mut v);
        if let (Some(deploy), Some(span)) = (v.0, ctx.span(id)) {
            span.extensions_mut().insert(DeployId(deploy));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let is_step = meta.target() == STEP_TARGET;
        if !is_step && *meta.level() > Level::INFO {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let Some(deploy) = scope
            .into_iter()
            .find_map(|s| s.extensions().get::<DeployId>().map(|d| d.0.clone()))
        else {
            return;
        };
        let mut v = EventVisitor::default();
        event.record(&mut v);
        if is_step {
            match (v.step, v.finished) {
                (Some(step), _) => publish(&deploy, "step", Some(step), None),
                (None, Some(step)) => publish(&deploy, "step-end", Some(step), None),
                (None, None) => {}
            }
        } else if let Some(msg) = v.message {
            let msg = crate::redact::text(&msg).into_owned();
            publish(&deploy, "log", None, Some((*meta.level(), msg)));
        }
    }
}

/// The filter [`Layer`] runs under: step events, and log lines from `info` up.
pub fn filter() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new()
        .with_target(STEP_TARGET, Level::DEBUG)
        .with_default(Level::INFO)
}

fn sse_json(name: &str, value: &impl Serialize) -> SseEvent {
    SseEvent::default()
        .event(name)
        .data(serde_json::to_string(value).unwrap_or_else(|_| "{}".into()))
}

fn state_event(running: Option<&str>) -> SseEvent {
    sse_json("state", &serde_json::json!({ "running": running }))
}

fn live_event(ev: &LiveEvent) -> SseEvent {
    sse_json(if ev.kind == "log" { "log" } else { "step" }, ev)
}

/// What the stream still has to say and where it listens.
struct Reader {
    svc: Arc<Service>,
    queue: VecDeque<SseEvent>,
    rx: broadcast::Receiver<LiveEvent>,
    running: tokio::sync::watch::Receiver<Option<String>>,
    tick: tokio::time::Interval,
}

impl Reader {
    /// The next event, or None when the service stops.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            tokio::select! {
                ev = self.rx.recv() => match ev {
                    Ok(ev) => return Some(live_event(&ev)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!("dashboard event stream skipped {n} events (slow reader)");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                changed = self.running.changed() => {
                    changed.ok()?;
                    let running = self.running.borrow_and_update().clone();
                    return Some(state_event(running.as_deref()));
                }
                _ = self.tick.tick() => {
                    if self.svc.is_shutting_down() {
                        return None;
                    }
                }
            }
        }
    }
}

/// `GET /dashboard/events`: the running deploy so far, then live.
pub fn stream(svc: Arc<Service>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut running = svc.running.subscribe();
    let current = running.borrow_and_update().clone();
    let (replay, rx) = subscribe(current.as_deref());
    let mut queue = VecDeque::with_capacity(replay.len() + 1);
    queue.push_back(state_event(current.as_deref()));
    queue.extend(replay.iter().map(live_event));
    let reader = Reader {
        svc,
        queue,
        rx,
        running,
        tick: tokio::time::interval(Duration::from_secs(1)),
    };
    let s =
        futures_util::stream::unfold(
            reader,
            |mut r| async move { r.next().await.map(|e| (Ok(e), r)) },
        );
    Sse::new(s).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    #[test]
    fn steps_and_log_lines_of_a_deploy_span_reach_the_feed() {
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::Layer::with_filter(Layer, filter()));
        let (_, mut rx) = subscribe(None);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside any deploy");
            let span = tracing::info_span!("deploy", id = %"t-feed-1");
            let _e = span.enter();
            crate::progress::step_started("fetch", None);
            tracing::info!("fetch (3ms)");
            tracing::debug!("not shown");
            tracing::warn!(parent: &span, "careful");
        });
        let mut got = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            if ev.deploy == "t-feed-1" {
                got.push((ev.kind, ev.step, ev.message));
            }
        }
        assert_eq!(
            got,
            vec![
                ("step", Some("fetch".to_string()), None),
                ("log", None, Some("fetch (3ms)".to_string())),
                ("log", None, Some("careful".to_string())),
            ]
        );
        let kept = events_of("t-feed-1").unwrap();
        assert_eq!(kept.len(), 3);
        assert_eq!(kept[2].level.as_deref(), Some("WARN"));
    }
}
