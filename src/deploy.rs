//! The deploy pipeline: Enscale's zero-downtime flow, top to bottom.
//!
//! 1. lock, fetch the branch, resolve the commit (up to date: stop);
//! 2. snapshot ROOT into `ROOT_<timestamp>` ([`crate::snapshot::take`]);
//! 3. point the link at the snapshot ([`crate::switch::point_link`]), drain;
//! 4. check the new commit out into ROOT, run the hooks;
//! 5. copy user content written meanwhile back into ROOT;
//! 6. point the link back at ROOT, drain, copy back once more, evict.
//!
//! Any failure after step 3 restores ROOT from the snapshot and points the
//! link back at it: the site serves the old version throughout.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use chrono::Local;
use git2::Oid;

use crate::config::Config;
use crate::history::{self, Record, StepTiming};
use crate::hooks::{self, HookEnv};
use crate::journal::{Journal, Phase};
use crate::layout::{Layout, LinkState};
use crate::lock::DeployLock;
use crate::progress::Count;
use crate::shared::Shared;
use crate::source::{short, GitSource, Plan};
use crate::state::State;
use crate::user_content::{self, Classifier, Manifest, Rules};
use crate::{snapshot, switch};

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

/// Timings and identity of one run.
struct Run {
    id: String,
    started: chrono::DateTime<Local>,
    clock: Instant,
    steps: Vec<StepTiming>,
    warnings: Vec<String>,
    /// The configuration, when a notification webhook is set.
    notify: Option<Config>,
    /// Who asked.
    trigger: Trigger,
    /// Commit being deployed, once resolved.
    commit: Option<String>,
    /// Commit live before.
    previous: Option<String>,
    /// Snapshot serving during the deploy, once taken.
    snapshot: Option<String>,
}

/// Copy-back passes count the user files they copy (how many there are is
/// known only inside the pass).
const COPIED: Option<Count> = Some(Count {
    unit: "files copied",
    total: None,
});

impl Run {
    fn step<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.counted(name, None, f)
    }

    /// A step whose work is counted: on a terminal, a progress bar (or a
    /// counter, without a total) instead of the spinner.
    fn counted<T>(
        &mut self,
        name: &str,
        count: Option<Count>,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        crate::progress::step_started(name, count);
        let t = Instant::now();
        let r = f();
        if count.is_some() {
            crate::progress::step_finished(name);
        }
        let ms = t.elapsed().as_millis() as u64;
        self.steps.push(StepTiming {
            step: name.to_string(),
            ms,
        });
        match &r {
            Ok(_) => tracing::info!("{name} ({})", fmt_ms(ms)),
            Err(_) => tracing::debug!("{name} failed after {}", fmt_ms(ms)),
        }
        r
    }

    fn record(&self, layout: &Layout, result: &str, evicted: &[String], error: Option<String>) {
        let rec = Record {
            id: self.id.clone(),
            started: self.started.to_rfc3339(),
            finished: Local::now().to_rfc3339(),
            trigger: self.trigger.as_str().to_string(),
            result: result.to_string(),
            commit: self.commit.clone(),
            previous_commit: self.previous.clone(),
            snapshot: self.snapshot.clone(),
            evicted: evicted.to_vec(),
            error,
            warnings: self.warnings.clone(),
            steps: self.steps.clone(),
            duration_ms: self.clock.elapsed().as_millis() as u64,
        };
        if let Err(e) = history::append(&layout.state, &rec) {
            tracing::warn!("cannot record the deploy in the history: {e:#}");
        }
        if let Some(cfg) = &self.notify {
            let short = rec
                .commit
                .as_deref()
                .map(|c| &c[..7.min(c.len())])
                .unwrap_or("?");
            let text = match result {
                "success" => format!("rootswap: deployed {short} to {}", layout.webroot.display()),
                "rolled-back" => format!(
                    "rootswap: deploy of {short} to {} failed its health check and was rolled back",
                    layout.webroot.display()
                ),
                _ => format!(
                    "rootswap: deploy of {short} to {} failed; the previous version stays live",
                    layout.webroot.display()
                ),
            };
            crate::notify::send(
                cfg,
                &crate::notify::Notification {
                    text,
                    result: result.to_string(),
                    id: rec.id.clone(),
                    commit: rec.commit.clone(),
                    previous_commit: rec.previous_commit.clone(),
                    webroot: layout.webroot.display().to_string(),
                    error: rec.error.clone(),
                },
            );
        }
    }
}

fn fmt_ms(ms: u64) -> String {
    if ms >= 1000 {
        format!("{:.2}s", ms as f64 / 1000.0)
    } else {
        format!("{ms}ms")
    }
}

/// A fresh deploy id: local time plus a few random-ish hex digits.
pub fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{:04x}",
        Local::now().format("%Y%m%d-%H%M%S"),
        (nanos ^ std::process::id()) & 0xffff
    )
}

/// Runs the whole pipeline once (`rootswap deploy`).
pub fn deploy(cfg: &Config, req: &Request) -> Result<Outcome> {
    let layout = Layout::from_config(cfg);
    layout.preflight()?;
    let created_state = !layout.state.exists();
    if req.dry_run {
        return dry_run(cfg, &layout, req);
    }
    std::fs::create_dir_all(&layout.state)
        .with_context(|| format!("cannot create state directory {}", layout.state.display()))?;
    let lock = DeployLock::acquire(&layout.state)?;
    let result = deploy_locked(cfg, &layout, req);
    if result.is_err()
        && created_state
        && !layout.root().exists()
        && !matches!(layout.link_state(), Ok(LinkState::Symlink(_)))
    {
        // Nothing was ever deployed: leave the disk as we found it.
        drop(lock);
        let _ = std::fs::remove_dir_all(&layout.state);
    }
    result
}

fn deploy_locked(cfg: &Config, layout: &Layout, req: &Request) -> Result<Outcome> {
    let id = req.id.clone().unwrap_or_else(new_id);
    let span = tracing::info_span!("deploy", id = %id);
    let _enter = span.enter();
    let mut run = Run {
        id,
        started: Local::now(),
        clock: Instant::now(),
        steps: Vec::new(),
        warnings: Vec::new(),
        notify: cfg.notify.webhook.as_ref().map(|_| cfg.clone()),
        trigger: req.trigger,
        commit: None,
        previous: None,
        snapshot: None,
    };

    crate::recover::recover(cfg, layout)?;
    let mut state = State::load(&layout.state)?;

    // Step 1: fetch and resolve.
    let source = run.step("fetch", || {
        let s = GitSource::open(&layout.state, &cfg.source)?;
        s.clear_stale_locks()?;
        s.fetch(req.reference.is_some())?;
        Ok(s)
    })?;
    let commit = source.resolve(req.reference.as_deref())?;
    let previous = state.deployed.clone();
    let prev_oid = previous
        .as_deref()
        .and_then(|p| Oid::from_str(p).ok())
        .filter(|_| previous.as_deref().is_some_and(|p| source.has_commit(p)));
    let root_empty = layout.root_is_empty()?;
    if previous.as_deref() == Some(commit.to_string().as_str()) && !req.force && !root_empty {
        tracing::info!("up to date ({})", short(commit));
        return Ok(Outcome::UpToDate {
            commit: commit.to_string(),
        });
    }
    tracing::info!("deploying {}", source.describe(commit));
    let mut plan = source.plan(prev_oid, commit)?;
    run.warnings
        .extend(plan.external_links.iter().map(|l| l.to_string()));
    let new_tracked = source.tracked(commit)?;
    // A site that was a `git clone`: its .git leaves the served tree before
    // the snapshot copies it (crate::adopt).
    for line in crate::adopt::before_snapshot(layout, cfg, &new_tracked, previous.is_none())? {
        tracing::info!("{line}");
    }
    // Shared directories are checked before anything changes; once linked,
    // the checkout leaves what is below them alone.
    let shared = Shared::from_config(cfg)?;
    if !shared.is_empty() {
        shared.check(&layout.root(), &new_tracked)?;
        let linked = shared.linked_in(&layout.root());
        plan.changes
            .retain(|c| !crate::shared::covers(&linked, &c.path));
    }
    run.commit = Some(commit.to_string());
    run.previous = previous.clone();
    let mut journal = Journal {
        id: run.id.clone(),
        trigger: req.trigger.as_str().to_string(),
        commit: commit.to_string(),
        previous: previous.clone(),
        snapshot: None,
        phase: Phase::Snapshot,
        started: run.started.to_rfc3339(),
        switched_at: None,
    };

    if root_empty {
        return first_deploy(
            cfg,
            layout,
            req,
            &mut run,
            &source,
            &plan,
            &shared,
            &mut state,
            &mut journal,
        );
    }

    // Step 2: snapshot ROOT.
    journal.enter(&layout.state, Phase::Snapshot)?;
    // Counted by the copy engine; the total is ROOT's entry count at the last snapshot.
    let entries = Some(Count {
        unit: "entries",
        total: state.root_entries,
    });
    let taken = run.counted("snapshot", entries, || {
        snapshot::take(layout, cfg, Local::now())
    })?;
    journal.snapshot = Some(taken.name.clone());
    run.snapshot = Some(taken.name.clone());
    tracing::info!(
        "snapshot {} ({}{} files copied, {} unchanged)",
        taken.name,
        taken
            .recycled
            .as_ref()
            .map(|r| format!("recycled {r}, "))
            .unwrap_or_default(),
        taken.stats.files,
        taken.stats.unchanged
    );
    state.set_snapshot(&taken.path, previous.clone())?;
    state.root_entries = Some(taken.stats.entries);
    state.save(&layout.state)?;
    let old_classifier = classifier(cfg, &source, prev_oid.unwrap_or(commit))?;
    // From here on, what changes under the snapshot is recorded, so that the
    // copy-back passes look only at those paths (full scans when events were lost).
    let mut watch = crate::changes::ChangeWatch::start(&taken.path);
    let mut before = run.step("scan-user-content", || {
        user_content::scan(&taken.path, &old_classifier)
    })?;
    let snap_state = before.clone();

    // Step 3: serve the snapshot, let requests on ROOT finish.
    //
    // Uploads ROOT receives while the snapshot is being copied belong in the
    // served tree. They are carried over (`catch-up`) until a pass finds
    // nothing new, so that the switch happens right after a pass and the two
    // trees differ for as short a time as possible; then once more at once
    // after the switch, and once more after the drain, when no request still
    // runs on ROOT.
    let mut root_base = before.clone();
    let mut catch_up =
        |run: &mut Run, before: &mut Manifest, cutoff: Option<u64>| -> Result<usize> {
            let (root_now, r) = run.counted("catch-up", COPIED, || {
                let mut root_now = user_content::scan(&layout.root(), &old_classifier)?;
                // A file the snapshot had and lost since was deleted by a request there: not brought back.
                let r = user_content::copy_back(
                    &layout.root(),
                    &taken.path,
                    &root_base,
                    &mut root_now,
                    &HashSet::new(),
                    Some(before),
                    cutoff,
                )?;
                Ok((root_now, r))
            })?;
            for p in &r.copied {
                if let Some(sig) = root_now.get(p) {
                    before.insert(p.clone(), *sig);
                }
            }
            for p in &r.removed {
                before.remove(p);
            }
            // Changed on both sides and the snapshot's change (a newer version, or
            // a deletion) won: ROOT's version is superseded. Record it as the base
            // that the snapshot's state replaces, so the copy-back applies it.
            for p in &r.superseded {
                if let Some(sig) = root_now.get(p) {
                    before.insert(p.clone(), *sig);
                }
            }
            root_base = root_now;
            Ok(r.copied.len() + r.removed.len())
        };
    for _ in 0..3 {
        if catch_up(&mut run, &mut before, None)? == 0 {
            break;
        }
    }
    journal.enter(&layout.state, Phase::SwitchToSnapshot)?;
    run.step("switch-to-snapshot", || {
        switch::point_link(&layout.link(), &taken.name)
    })?;
    journal.switched_at = Some(crate::fsutil::fs_now_ns(&layout.state));
    journal.enter(&layout.state, Phase::Rewrite)?;
    catch_up(&mut run, &mut before, journal.switched_at)?;
    let drained = run.step("drain", || Ok(crate::drain::wait(cfg, &layout.root())))?;
    run.warnings.extend(drained);
    catch_up(&mut run, &mut before, journal.switched_at)?;

    // Steps 4-5: rewrite ROOT, run hooks, copy user content back. Any failure restores ROOT.
    let env = HookEnv {
        commit: commit.to_string(),
        previous_commit: previous.clone().unwrap_or_default(),
        snapshot: taken.path.to_string_lossy().into_owned(),
        root: layout.root().to_string_lossy().into_owned(),
        extra: hook_extra_env(cfg),
    };
    let mut cb = CopyBack {
        snapshot: &taken.path,
        root: layout.root(),
        classifier: &old_classifier,
        new_tracked: &new_tracked,
        copied: 0,
        removed: 0,
    };
    let changes = Some(Count {
        unit: "changes",
        total: Some(plan.changes.len() as u64),
    });
    let rewrite = (|| -> Result<Manifest> {
        run.counted("checkout", changes, || {
            source.checkout(&plan, &layout.root(), |_| crate::progress::advance())
        })?;
        run.step("shared", || link_shared(&shared, &layout.root()))?;
        run.step("hooks", || {
            hooks::run_all(
                "after_checkout",
                &cfg.hooks.after_checkout,
                &layout.root(),
                &env,
                cfg.hooks.timeout,
            )
        })?;
        let (now, _) = run.counted("copy-back", COPIED, || {
            cb.pass(
                watch.as_mut(),
                &snap_state,
                &before,
                None,
                journal.switched_at,
            )
        })?;
        run.step("before-switch hooks", || {
            hooks::run_all(
                "before_switch",
                &cfg.hooks.before_switch,
                &layout.root(),
                &env,
                cfg.hooks.timeout,
            )
        })?;
        Ok(now)
    })();
    let pass1 = match rewrite {
        Ok(m) => m,
        Err(e) => {
            let restored = journal.enter(&layout.state, Phase::Restore).and_then(|_| {
                crate::recover::restore_root(
                    cfg,
                    layout,
                    &taken.name,
                    &old_classifier,
                    journal.switched_at,
                    None,
                )
            });
            if restored.is_ok() {
                if let Err(je) = Journal::finish(&layout.state) {
                    tracing::warn!("{je:#}");
                }
            }
            let msg = match &restored {
                Ok(()) => format!("{e:#}\nROOT was restored from {} and the previous version stays live", taken.name),
                Err(re) => format!(
                    "{e:#}\nrestoring ROOT from {} failed too ({re:#}); the site keeps serving the complete snapshot {}",
                    taken.name, taken.name
                ),
            };
            run.record(layout, "failed", &[], Some(msg.clone()));
            return Err(anyhow!(msg));
        }
    };
    warn_exposed_credentials(cfg, layout, &mut run);

    // Step 6: serve ROOT again. ROOT is complete and nothing runs on it: clear
    // php-fpm's OPcache while traffic is still on the snapshot (NOTES.md §8: 0
    // torn, 0 stale), and once more right after the switch. From the journal
    // entry on, a crash rolls forward (what the last passes would have copied,
    // recovery copies), so that nothing but the last pass stands between the
    // last look at the snapshot and the switch.
    let opcache_reset = |run: &mut Run, when: &str| -> Result<()> {
        let w = run.step("opcache-reset", || {
            Ok(crate::opcache::clear_for_deploy(
                cfg,
                &layout.root(),
                plan.changes.iter().map(|c| c.path.as_path()),
                when,
            ))
        })?;
        run.warnings.extend(w);
        Ok(())
    };
    opcache_reset(&mut run, "before switching back to ROOT")?;
    journal.enter(&layout.state, Phase::SwitchToRoot)?;
    // ROOT's user files: a file that disappears from ROOT after the switch was
    // deleted by a request there, and must not be resurrected by the late
    // copy-back. Scanned here, then kept up to date with what the passes do.
    let mut root_pass1 = user_content::scan(&layout.root(), &old_classifier)?;
    // Uploads that reached the snapshot during the first copy-back pass: repeat
    // until a pass finds nothing, so the switch back follows a quiet pass.
    let mut pass1 = pass1;
    for _ in 0..3 {
        let pass = run.counted("copy-back", COPIED, || {
            cb.pass(watch.as_mut(), &pass1, &pass1, None, journal.switched_at)
        });
        match pass {
            Ok((now, r)) => {
                applied_to_root(&mut root_pass1, &now, &r);
                pass1 = now;
                if r.copied.is_empty() && r.removed.is_empty() {
                    break;
                }
            }
            Err(e) => {
                run.warnings
                    .push(format!("copy-back: {e:#} (retried after the switch)"));
                break;
            }
        }
    }
    let switched_back = crate::fsutil::fs_now_ns(&layout.state);
    run.step("switch-to-root", || {
        switch::point_link(&layout.link(), &layout.root_name)
    })?;
    opcache_reset(&mut run, "after switching back to ROOT")?;
    // Health gate: a failing URL puts the old version back at once.
    if let Some(hc) = &cfg.health_check {
        if let Err(e) = run.step("health-check", || crate::health::check(hc)) {
            let msg = roll_back_unhealthy(cfg, layout, &mut journal, &taken.name, &old_classifier, plan.changes.iter().map(|c| c.path.as_path()), switched_back)
                .map(|_| format!("{e:#}\nthe link went back to {} and ROOT was restored from it: the previous version is live", taken.name))
                .unwrap_or_else(|re| format!("{e:#}\nrolling back failed too ({re:#})"));
            run.record(layout, "rolled-back", &[], Some(msg.clone()));
            return Err(anyhow!(msg));
        }
    }
    state.deployed = Some(commit.to_string());
    pin(&mut state, req, &source, commit);
    state.save(&layout.state)?;
    journal.enter(&layout.state, Phase::Finish)?;
    // Uploads that landed in the snapshot while the link moved back: once at
    // once (the window is the length of this pass), once more after the drain
    // (requests that started on the snapshot have finished by then).
    let mut seen_before = pass1;
    let mut root_seen = root_pass1;
    for (i, name) in ["copy-back (late)", "copy-back (after drain)"]
        .into_iter()
        .enumerate()
    {
        if i == 1 {
            let drained = run.step("drain", || Ok(crate::drain::wait(cfg, &taken.path)))?;
            run.warnings.extend(drained);
        }
        let pass = run.counted(name, COPIED, || {
            cb.pass(
                watch.as_mut(),
                &seen_before,
                &seen_before,
                Some(&root_seen),
                Some(switched_back),
            )
        });
        match pass {
            Ok((now, r)) => {
                applied_to_root(&mut root_seen, &now, &r);
                seen_before = now;
            }
            Err(e) => run.warnings.push(format!("late copy-back: {e:#}")),
        }
    }
    // Counted as entries removed; each evicted snapshot holds about as many as this one.
    let evicting =
        snapshot::evictable(layout, cfg, Some(&taken.name)).map_or(0, |v| v.len() as u64);
    let removing = Some(Count {
        unit: "entries removed",
        total: Some(evicting * (taken.stats.entries + 1)).filter(|t| *t > 0),
    });
    let (evicted, warns) = run.counted("evict", removing, || {
        snapshot::evict(layout, cfg, Some(&taken.name))
    })?;
    run.warnings.extend(warns);
    state.retain_snapshots(&snapshot::inodes(layout)?);
    state.save(&layout.state)?;
    Journal::finish(&layout.state)?;

    let summary = Summary {
        id: run.id.clone(),
        commit: commit.to_string(),
        described: source.describe(commit),
        previous: previous.clone(),
        snapshot: Some(taken.name.clone()),
        recycled: taken.recycled.clone(),
        files: plan.counts(),
        user_files_copied: cb.copied,
        user_files_removed: cb.removed,
        evicted: evicted.clone(),
        duration: run.clock.elapsed(),
        steps: run.steps.clone(),
        warnings: run.warnings.clone(),
    };
    run.record(layout, "success", &evicted, None);
    Ok(Outcome::Deployed(summary))
}

/// The first deploy: nothing to snapshot; check out into ROOT and create the link.
#[allow(clippy::too_many_arguments)]
fn first_deploy(
    cfg: &Config,
    layout: &Layout,
    req: &Request,
    run: &mut Run,
    source: &GitSource,
    plan: &Plan,
    shared: &Shared,
    state: &mut State,
    journal: &mut Journal,
) -> Result<Outcome> {
    let root = layout.root();
    let env = HookEnv {
        commit: plan.to.to_string(),
        root: root.to_string_lossy().into_owned(),
        extra: hook_extra_env(cfg),
        ..Default::default()
    };
    let res = (|| -> Result<()> {
        journal.enter(&layout.state, Phase::FirstCheckout)?;
        let changes = Some(Count {
            unit: "changes",
            total: Some(plan.changes.len() as u64),
        });
        run.counted("checkout", changes, || {
            source.checkout(plan, &root, |_| crate::progress::advance())
        })?;
        run.step("shared", || link_shared(shared, &root))?;
        run.step("hooks", || {
            hooks::run_all(
                "after_checkout",
                &cfg.hooks.after_checkout,
                &root,
                &env,
                cfg.hooks.timeout,
            )
        })?;
        run.step("before-switch hooks", || {
            hooks::run_all(
                "before_switch",
                &cfg.hooks.before_switch,
                &root,
                &env,
                cfg.hooks.timeout,
            )
        })?;
        journal.enter(&layout.state, Phase::SwitchToRoot)?;
        run.step("switch-to-root", || {
            switch::point_link(&layout.link(), &layout.root_name)
        })
    })();
    if let Err(e) = res {
        if let Err(re) = crate::recover::recover(cfg, layout) {
            tracing::warn!("cannot clean up the failed first deploy: {re:#}");
        }
        run.record(layout, "failed", &[], Some(format!("{e:#}")));
        return Err(
            e.context("first deploy failed; nothing was live before, so the link was not created")
        );
    }
    warn_exposed_credentials(cfg, layout, run);
    state.deployed = Some(plan.to.to_string());
    pin(state, req, source, plan.to);
    state.save(&layout.state)?;
    Journal::finish(&layout.state)?;
    let summary = Summary {
        id: run.id.clone(),
        commit: plan.to.to_string(),
        described: source.describe(plan.to),
        previous: None,
        snapshot: None,
        recycled: None,
        files: plan.counts(),
        user_files_copied: 0,
        user_files_removed: 0,
        evicted: Vec::new(),
        duration: run.clock.elapsed(),
        steps: run.steps.clone(),
        warnings: run.warnings.clone(),
    };
    run.record(layout, "success", &[], None);
    Ok(Outcome::Deployed(summary))
}

/// Credential files the hooks left where the web server hands them out.
fn warn_exposed_credentials(cfg: &Config, layout: &Layout, run: &mut Run) {
    for w in hooks::exposed_credentials(&layout.root(), &cfg.public) {
        tracing::warn!("{w}");
        run.warnings.push(w);
    }
}

/// `hooks.env` as the hooks get it.
fn hook_extra_env(cfg: &Config) -> Vec<(String, String)> {
    cfg.hooks
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Links the shared directories into `root` (after a checkout, before the hooks).
fn link_shared(shared: &Shared, root: &Path) -> Result<()> {
    for done in shared.link_into(root)? {
        tracing::info!("shared directory {done}");
    }
    Ok(())
}

/// The copy-back from the served snapshot into ROOT, pass after pass.
struct CopyBack<'a> {
    snapshot: &'a Path,
    root: PathBuf,
    classifier: &'a Classifier,
    new_tracked: &'a HashSet<PathBuf>,
    /// User files copied into ROOT so far, over all passes.
    copied: usize,
    /// User files removed from ROOT so far.
    removed: usize,
}

impl CopyBack<'_> {
    /// One pass: the snapshot's user files now (its state `last` plus what the
    /// watch saw change since) applied to ROOT against `base`. Returns the
    /// snapshot's state and what the pass did.
    fn pass(
        &mut self,
        watch: Option<&mut crate::changes::ChangeWatch>,
        last: &Manifest,
        base: &Manifest,
        root_seen: Option<&Manifest>,
        cutoff: Option<u64>,
    ) -> Result<(Manifest, user_content::CopyBackReport)> {
        let mut now = crate::changes::manifest(watch, self.snapshot, last, self.classifier)?;
        let r = user_content::copy_back(
            self.snapshot,
            &self.root,
            base,
            &mut now,
            self.new_tracked,
            root_seen,
            cutoff,
        )?;
        self.copied += r.copied.len();
        self.removed += r.removed.len();
        Ok((now, r))
    }
}

/// Keeps `root_seen` (ROOT's user files) in step with what a copy-back pass
/// did to ROOT: a copied file's entry in `now` is what was written there; a
/// removed file is gone (removed by rootswap, not deleted by a request).
fn applied_to_root(root_seen: &mut Manifest, now: &Manifest, r: &user_content::CopyBackReport) {
    for p in &r.copied {
        if let Some(sig) = now.get(p) {
            root_seen.insert(p.clone(), *sig);
        }
    }
    for p in &r.removed {
        root_seen.remove(p);
    }
}

/// A deploy of another ref than the branch head (or a rollback) pins the
/// branch head it moved away from: `rootswap serve` does not redeploy that
/// head, only a newer commit. A deploy of the branch head clears the pin.
fn pin(state: &mut State, req: &Request, source: &GitSource, commit: Oid) {
    if req.reference.is_some() || req.trigger == Trigger::Rollback {
        state.pinned_from = source
            .branch_head()
            .filter(|h| *h != commit)
            .map(|h| h.to_string());
    } else {
        state.pinned_from = None;
    }
}

/// After a failed health check: serve the snapshot again, let requests on
/// ROOT finish, restore ROOT from the snapshot, serve ROOT, clear the OPcache.
fn roll_back_unhealthy<'a>(
    cfg: &Config,
    layout: &Layout,
    journal: &mut Journal,
    snap: &str,
    classifier: &Classifier,
    changed: impl Iterator<Item = &'a std::path::Path>,
    switched_back: u64,
) -> Result<()> {
    journal.enter(&layout.state, Phase::Restore)?;
    switch::point_link(&layout.link(), snap)?;
    let _ = crate::drain::wait(cfg, &layout.root());
    // Uploads ROOT received during the snapshot copy, and while it served the
    // new version, are kept.
    crate::recover::restore_root(
        cfg,
        layout,
        snap,
        classifier,
        journal.switched_at,
        Some(switched_back),
    )?;
    // restore_root cleared the OPcache before and after its switch; also drop
    // the bytecode of exactly the files this deploy changed.
    let _ = crate::opcache::clear_for_deploy(cfg, &layout.root(), changed, "after rolling back");
    Journal::finish(&layout.state)
}

/// The user-content classifier for a commit (its tracked files and .gitignore files).
pub fn classifier(cfg: &Config, source: &GitSource, commit: Oid) -> Result<Classifier> {
    let rules = Rules::new(&cfg.user_content)?;
    Ok(Classifier::new(
        rules,
        source.tracked(commit)?,
        &source.ignore_files(commit)?,
        source.subdir(),
    ))
}

fn dry_run(cfg: &Config, layout: &Layout, req: &Request) -> Result<Outcome> {
    // Fetch into a throwaway cache when there is none yet, so a dry run creates nothing.
    let tmp;
    let state_dir = if layout.state.exists() {
        layout.state.clone()
    } else {
        tmp = tempfile_dir()?;
        tmp.clone()
    };
    let result = (|| {
        let state = State::load(&layout.state)?;
        let source = GitSource::open(&state_dir, &cfg.source)?;
        source.fetch(req.reference.is_some())?;
        let to = source.resolve(req.reference.as_deref())?;
        let from = state
            .deployed
            .as_deref()
            .and_then(|p| Oid::from_str(p).ok())
            .filter(|o| source.has_commit(&o.to_string()));
        let plan = source.plan(from, to)?;
        let mut out = DryRun {
            from: state.deployed.clone(),
            to: to.to_string(),
            described: source.describe(to),
            added: Vec::new(),
            modified: Vec::new(),
            deleted: Vec::new(),
            user_files: Vec::new(),
            notes: plan.external_links.iter().map(|l| l.to_string()).collect(),
        };
        let adopted = match state.deployed {
            None => crate::adopt::adopt_git_clone(layout, cfg, &source.tracked(to)?, true)?,
            Some(_) => crate::adopt::Adopted::default(),
        };
        out.notes.extend(adopted.lines(None));
        for ch in &plan.changes {
            match ch.kind {
                crate::source::ChangeKind::Added { .. } => out.added.push(ch.path.clone()),
                crate::source::ChangeKind::Modified { .. } => out.modified.push(ch.path.clone()),
                crate::source::ChangeKind::Deleted => out.deleted.push(ch.path.clone()),
            }
        }
        if layout.root().is_dir() {
            let c = classifier(cfg, &source, from.unwrap_or(to))?;
            let new_tracked = source.tracked(to)?;
            out.user_files = user_content::scan(&layout.root(), &c)?
                .into_keys()
                .filter(|p| !new_tracked.contains(p))
                .filter(|p| adopted.git_dir.is_none() || !p.starts_with(".git"))
                .collect();
        }
        Ok(Outcome::DryRun(out))
    })();
    if state_dir != layout.state {
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    result
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "rootswap-dry-run-{}-{}",
        std::process::id(),
        new_id()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
