//! Putting a complete version back: after a failed deploy, and after a crash.
//!
//! The rule after a crash is simple and restartable:
//! - **before the link returned to ROOT** (snapshot, switch, rewrite, restore
//!   phases): roll back. The snapshot is complete and is what was served;
//!   ROOT is restored from it and the link returns to ROOT. The next deploy
//!   starts over.
//! - **after** (switch-to-root, finish): roll forward. ROOT was complete
//!   before the link returned to it; the link is pointed at ROOT, the commit
//!   recorded, late uploads copied, old snapshots evicted and
//!   `hooks.after_switch` run.
//!
//! Every action is idempotent and the journal is removed last, so a crash
//! during recovery is recovered by the next command the same way.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::Local;
use git2::Oid;

use crate::config::Config;
use crate::history::{self, Record};
use crate::journal::{phase_name, Journal, Phase};
use crate::layout::{Layout, LinkState};
use crate::site::Site;
use crate::source::GitSource;
use crate::state::State;
use crate::user_content::{self, Classifier};
use crate::{copy, link, snapshots};

/// Restores ROOT from the snapshot `snap_name` and points the link back at ROOT.
///
/// User files that the snapshot lacks are kept when ROOT received them before
/// the link moved to the snapshot (`switched_at`: uploads while the snapshot
/// was being copied) or after the link came back to ROOT (`served_since`:
/// uploads while ROOT served the new version); everything else in ROOT
/// becomes the snapshot's.
/// Uploads that land in the snapshot while the link moves back are copied
/// over after the drain.
///
/// The snapshot's files include what `hooks.in_snapshot` cached there about
/// the snapshot's own location (Laravel's `config:cache`): those hooks run
/// again in ROOT, with `env`, after the copy and before the link returns to
/// ROOT, so that ROOT's caches name ROOT. Their failure fails the restore:
/// the site keeps serving the snapshot, and the next command's recovery
/// restores again. `(switched_at, served_since)`: see above.
pub fn restore_root(
    site: &Site,
    snap_name: &str,
    classifier: &Classifier,
    (switched_at, served_since): (Option<u64>, Option<u64>),
    env: &crate::hooks::HookEnv,
) -> Result<()> {
    let (cfg, layout) = (&site.config, &site.layout);
    let snap = snapshot_to_restore(layout, snap_name)?;
    tracing::warn!("restoring ROOT from {snap_name}");
    let root = layout.root();
    let rescue_dir = layout.state.join("rescue");
    let opts = snapshots::copy_options(cfg);
    let at_restore = user_content::scan(&snap, classifier)?;
    if let Some(t) = switched_at {
        let keep = |ns: u64| ns < t || served_since.is_some_and(|since| ns >= since);
        set_aside_uploads(&root, &rescue_dir, classifier, &at_restore, keep)?;
    }
    if !root.is_dir() {
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
    }
    copy::sync_tree(&snap, &root, &opts).context("cannot restore ROOT from the snapshot")?;
    put_back_uploads(&rescue_dir, &root, &opts)?;
    rebuild_root_caches(cfg, &root, env)?;
    // ROOT holds the old version again: clear bytecode compiled from the new one
    // before any request can run there, and once more right after the switch.
    clear_opcache(site, "before switching back to the restored ROOT");
    link::point_link(&layout.link(), &layout.root_name)?;
    clear_opcache(site, "after switching back to the restored ROOT");
    crate::drain::wait(cfg, &snap);
    let mut now = user_content::scan(&snap, classifier)?;
    user_content::carry(
        &snap,
        &root,
        &at_restore,
        &mut now,
        &HashSet::new(),
        None,
        None,
    )?;
    Ok(())
}

/// The snapshot directory named `snap_name`, refused unless it is one.
fn snapshot_to_restore(layout: &Layout, snap_name: &str) -> Result<PathBuf> {
    let plain = !snap_name.is_empty()
        && !snap_name.contains('/')
        && snap_name != "."
        && snap_name != ".."
        && snap_name != layout.root_name
        && snap_name != layout.link_name;
    let snap = layout.entry(snap_name);
    if !plain || !snap.is_dir() || snap.is_symlink() {
        anyhow::bail!(
            "cannot restore ROOT from snapshot {snap_name:?}: it is not a snapshot directory in {}; ROOT was left as it is",
            layout.webroot.display()
        );
    }
    Ok(snap)
}

/// Copies ROOT's user files that the snapshot lacks and `keep` says are
/// uploads (by their mtime) into `rescue_dir`.
fn set_aside_uploads(
    root: &Path,
    rescue_dir: &Path,
    classifier: &Classifier,
    at_restore: &user_content::Manifest,
    keep: impl Fn(u64) -> bool,
) -> Result<()> {
    if !root.is_dir() {
        return Ok(());
    }
    for (p, sig) in user_content::scan(root, classifier)? {
        if !at_restore.contains_key(&p) && keep(sig.ns()) {
            copy::copy_file_atomic(&root.join(&p), &rescue_dir.join(&p)).with_context(|| {
                format!(
                    "cannot set aside upload {} before restoring ROOT",
                    p.display()
                )
            })?;
        }
    }
    Ok(())
}

/// The uploads set aside go back into the restored ROOT.
fn put_back_uploads(rescue_dir: &Path, root: &Path, opts: &copy::CopyOptions) -> Result<()> {
    if !rescue_dir.is_dir() {
        return Ok(());
    }
    for e in walkdir::WalkDir::new(rescue_dir).min_depth(1) {
        let e = e.context("cannot read the rescued uploads")?;
        if e.file_type().is_dir() {
            continue;
        }
        let rel = e.path().strip_prefix(rescue_dir).unwrap_or(e.path());
        copy::copy_file_atomic(e.path(), &root.join(rel))?;
    }
    copy::remove_tree(rescue_dir, opts)?;
    Ok(())
}

/// Clears php-fpm's OPcache for the restored ROOT; a failure is a warning.
fn clear_opcache(site: &Site, when: &str) {
    let root = site.layout.root();
    warn_opcache(crate::opcache::clear_for_deploy(
        site.php_fpm(),
        &site.config,
        &root,
        std::iter::empty(),
        when,
    ));
}

/// `hooks.in_snapshot` in the restored ROOT, before it serves again.
fn rebuild_root_caches(cfg: &Config, root: &Path, env: &crate::hooks::HookEnv) -> Result<()> {
    if cfg.hooks.in_snapshot.is_empty() {
        return Ok(());
    }
    crate::hooks::run_all(
        "in_snapshot",
        &cfg.hooks.in_snapshot,
        root,
        env,
        cfg.hooks.timeout,
    )
    .with_context(|| {
        format!(
            "ROOT was restored, but `hooks.in_snapshot` could not rebuild its caches in {} \
             (they would name the snapshot); the site keeps serving the snapshot: fix the hook, \
             then run `rootswap deploy`, which restores ROOT again first",
            root.display()
        )
    })
}

fn warn_opcache(w: Option<String>) {
    if let Some(w) = w {
        tracing::warn!("{w}");
    }
}

/// Removes rootswap's own `.rootswap-tmp-*` files under `tree` (best effort).
fn remove_own_temps(tree: &Path) {
    for e in walkdir::WalkDir::new(tree)
        .into_iter()
        .filter_map(|e| e.ok())
    {
        if !e.file_type().is_dir()
            && e.file_name()
                .to_string_lossy()
                .starts_with(".rootswap-tmp-")
        {
            if let Err(err) = std::fs::remove_file(e.path()) {
                tracing::warn!("cannot remove {}: {err}", e.path().display());
            }
        }
    }
}

/// What a recovery did.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// Id of the interrupted deploy.
    pub id: String,
    /// What was done, for people.
    pub action: String,
}

/// The classifier of user content for `commit` (falling back to an empty
/// tracked set when the cache cannot tell).
fn classifier_for(site: &Site, commit: Option<&str>) -> Result<Classifier> {
    let mut source = GitSource::open(&site.layout.state, &site.config.source)?;
    let state = State::load(&site.layout.state)?;
    let live = state
        .deployed
        .as_deref()
        .and_then(|c| Oid::from_str(c).ok());
    source.set_live(live, state.submodules);
    match commit
        .and_then(|c| Oid::from_str(c).ok())
        .filter(|o| source.has_commit(&o.to_string()))
    {
        Some(oid) => user_content::classifier(&site.rules, &source, oid),
        None => Ok(Classifier::new(
            site.rules.clone(),
            HashSet::new(),
            &[],
            source.subdir(),
        )),
    }
}

/// Recovers an interrupted deploy, if the journal shows one, and records it
/// in the history. Call with the lock held.
pub fn recover(site: &Site) -> Result<Option<Recovered>> {
    recover_as(site, true)
}

/// Cleans up after a deploy that failed and records its failure itself:
/// what [`recover`] does, without a history line of its own.
pub fn clean_up_failed(site: &Site) -> Result<Option<Recovered>> {
    recover_as(site, false)
}

fn recover_as(site: &Site, record: bool) -> Result<Option<Recovered>> {
    let layout = &site.layout;
    let Some(j) = clean_up_temps(site)? else {
        return Ok(None);
    };
    if record {
        tracing::warn!(
            "deploy {} was interrupted during {}: recovering",
            j.id,
            phase_name(j.phase)
        );
    }
    let action = resume(site, &j)?;
    if record {
        tracing::warn!("recovered deploy {}: {action}", j.id);
        history::append(&layout.state, &interrupted_record(&j, &action))?;
    } else {
        tracing::info!("cleaned up after the failed deploy {}: {action}", j.id);
    }
    Journal::finish(&layout.state)?;
    Ok(Some(Recovered { id: j.id, action }))
}

/// Removes what an interrupted run leaves behind in any case (partial
/// snapshots, temporary links and files); returns the journal, if a deploy
/// was interrupted.
fn clean_up_temps(site: &Site) -> Result<Option<Journal>> {
    let (cfg, layout) = (&site.config, &site.layout);
    let journal = Journal::load(&layout.state)?;
    snapshots::clean_leftovers(layout, cfg)?;
    // A kill between creating the temporary link and renaming it leaves the
    // temporary link behind, with or without a journal.
    link::remove_stale_temps(&layout.link())?;
    // ... and so does a kill inside a durable write of the state files.
    crate::fsutil::remove_write_temps(&layout.state);
    let Some(j) = journal else { return Ok(None) };
    // Temporary files of the interrupted run (a copy in flight, a change-watch
    // barrier) are not part of either version.
    remove_own_temps(&layout.root());
    if let Some(snap) = &j.snapshot {
        remove_own_temps(&layout.entry(snap));
    }
    Ok(Some(j))
}

/// Finishes or undoes the interrupted deploy `j`, by the phase it reached;
/// says what was done.
fn resume(site: &Site, j: &Journal) -> Result<String> {
    let (cfg, layout) = (&site.config, &site.layout);
    let live = layout.live_name()?;
    let root_live = live.as_deref() == Some(layout.root_name.as_str());
    Ok(match (j.phase, j.snapshot.as_deref()) {
        (Phase::FirstCheckout, _) => {
            if !root_live {
                copy::remove_tree(&layout.root(), &snapshots::copy_options(cfg))?;
            }
            "removed the half-written first checkout (nothing was served yet); the next deploy starts over".to_string()
        }
        (Phase::Snapshot, _) | (Phase::SwitchToSnapshot, _) if root_live => {
            "the site kept serving ROOT, which was not touched; the partial snapshot was removed"
                .to_string()
        }
        (
            Phase::Snapshot | Phase::SwitchToSnapshot | Phase::Rewrite | Phase::Restore,
            Some(snap),
        ) => roll_back(site, j, snap)?,
        (Phase::SwitchToRoot | Phase::Finish, snap) => roll_forward(site, j, snap)?,
        (phase, None) => {
            // A phase after the snapshot without a snapshot name cannot happen; make ROOT live if it can.
            if matches!(layout.link_state()?, LinkState::Symlink(_)) && !root_live {
                link::point_link(&layout.link(), &layout.root_name)?;
            }
            format!(
                "interrupted during {} with no snapshot recorded; left ROOT as it was",
                phase_name(phase)
            )
        }
    })
}

/// Before the switch back: ROOT is restored from the snapshot `snap`.
fn roll_back(site: &Site, j: &Journal, snap: &str) -> Result<String> {
    let c = classifier_for(site, j.previous.as_deref().or(Some(&j.commit)))?;
    let env = crate::hooks::HookEnv::new(
        &site.config,
        j.previous.as_deref().unwrap_or_default(),
        &j.commit,
        &site.layout.entry(snap).to_string_lossy(),
    );
    restore_root(site, snap, &c, (j.switched_at, None), &env)?;
    Ok(format!(
        "rolled back: ROOT restored from {snap}, the previous version stays live"
    ))
}

/// At or after the switch back: ROOT was complete; it becomes live, the
/// late uploads are carried, the snapshot evicted.
fn roll_forward(site: &Site, j: &Journal, snap: Option<&str>) -> Result<String> {
    let (cfg, layout) = (&site.config, &site.layout);
    link::point_link(&layout.link(), &layout.root_name)?;
    let mut state = State::load(&layout.state)?;
    state.deployed = Some(j.commit.clone());
    state.submodules = cfg.source.submodules;
    state.save(&layout.state)?;
    if let Some(snap) = snap {
        crate::drain::wait(cfg, &layout.entry(snap));
        late_copy(site, snap, j)?;
        let (evicted, _) = snapshots::evict(layout, cfg, Some(snap))?;
        if !evicted.is_empty() {
            tracing::info!("evicted {}", evicted.join(", "));
        }
    }
    Ok(format!(
        "rolled forward: ROOT was complete, {} is live{}",
        crate::commit::short(&j.commit),
        after_switch_rolled_forward(cfg, layout, j)
    ))
}

/// The history line of a deploy that died: its error when it had failed
/// before it died (it was putting the old version back), and what the
/// recovery did.
fn interrupted_record(j: &Journal, action: &str) -> Record {
    let error = match (&j.error, j.phase) {
        (Some(e), Phase::Restore) => format!(
            "{e}\nthe deploy failed and was interrupted during restore while putting the previous version back; {action}"
        ),
        (Some(e), phase) => format!(
            "{e}\nthe deploy failed during {} and left the rest to this recovery; {action}",
            phase_name(phase)
        ),
        (None, phase) => format!("interrupted during {}; {action}", phase_name(phase)),
    };
    Record {
        id: j.id.clone(),
        started: j.started.clone(),
        finished: Local::now().to_rfc3339(),
        trigger: j.trigger.clone(),
        result: "interrupted".into(),
        commit: Some(j.commit.clone()),
        previous_commit: j.previous.clone(),
        snapshot: j.snapshot.clone(),
        evicted: Vec::new(),
        error: Some(error),
        warnings: Vec::new(),
        steps: Vec::new(),
        duration_ms: 0,
        fleet_id: None,
    }
}

/// `hooks.after_switch` for a deploy rolled forward (the crash may have
/// come before they ran; they restart workers, so running them twice is
/// harmless). Returns a note for the action when they failed.
fn after_switch_rolled_forward(cfg: &Config, layout: &Layout, j: &Journal) -> String {
    if cfg.hooks.after_switch.is_empty() {
        return String::new();
    }
    let snap = j
        .snapshot
        .as_deref()
        .map(|s| layout.entry(s).to_string_lossy().into_owned())
        .unwrap_or_default();
    let env = crate::hooks::HookEnv::new(
        cfg,
        &j.commit,
        j.previous.as_deref().unwrap_or_default(),
        &snap,
    );
    match crate::hooks::run_all(
        "after_switch",
        &cfg.hooks.after_switch,
        &layout.root(),
        &env,
        cfg.hooks.timeout,
    ) {
        Ok(()) => String::new(),
        Err(e) => {
            tracing::error!("hooks.after_switch failed: {e:#}");
            format!("; hooks.after_switch failed: {e:#}")
        }
    }
}

/// After a crash past the switch back: copy user files the snapshot got after
/// the first switch that ROOT lacks or holds an older version of.
fn late_copy(site: &Site, snap: &str, j: &Journal) -> Result<()> {
    let layout = &site.layout;
    let Some(t) = j.switched_at else {
        return Ok(());
    };
    let c = classifier_for(site, j.previous.as_deref().or(Some(&j.commit)))?;
    let snap_path = layout.entry(snap);
    let root = layout.root();
    for (p, sig) in user_content::scan(&snap_path, &c)? {
        if sig.ns() < t {
            continue;
        }
        let dst: PathBuf = root.join(&p);
        let newer = match std::fs::symlink_metadata(&dst) {
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                (m.mtime(), m.mtime_nsec()) < (sig.mtime, sig.mtime_ns)
            }
            Err(_) => true,
        };
        if newer {
            copy::copy_file_atomic(&snap_path.join(&p), &dst)?;
        }
    }
    Ok(())
}

/// Is there an unfinished deploy (for `status`)?
pub fn pending(state: &Path) -> Option<Journal> {
    Journal::load(state).ok().flatten()
}
