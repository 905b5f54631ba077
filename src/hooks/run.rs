//! Running a hook list (`composer install`, `php artisan …`): one shell
//! command after the other, with a deadline that holds.
//!
//! Each hook runs as `sh -c CMD` in ROOT, in a process group of its own, with
//! the deploy's variables in its environment. Its output is streamed, line by
//! line, to the log, from pipes read with a deadline (never a blocking read).
//!
//! A hook that outlives `hooks.timeout` is sent SIGTERM and, two seconds
//! later, SIGKILL — its whole process group, and every process that left the
//! group but still carries the hook run's mark or holds its output (see
//! `procs`): the deploy goes on to its failure path within the timeout plus
//! about three seconds, whatever the hook's children do.
//!
//! When the shell exits on its own, what is left in its process group is
//! killed; a process in another session (`setsid`, a daemon) is left running,
//! and if it still holds the hook's output 1.5 s later rootswap stops reading,
//! names it in a warning and goes on.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{output, procs};

use output::Output;

/// How long the hook's output is still read after its shell exited: a
/// background process that keeps the pipes open longer is left behind.
const OUTPUT_GRACE: Duration = Duration::from_millis(1500);

/// Between SIGTERM and SIGKILL for a hook that ran out of time.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Credential files that hooks commonly leave behind, checked in the served
/// directory after the hooks: composer writes `auth.json` where it runs.
const CREDENTIAL_FILES: [&str; 1] = ["auth.json"];

/// Warnings for credential files the web server would hand out: `root` is
/// ROOT, `public` the document root inside it (`.` when ROOT is served whole).
pub fn exposed_credentials(root: &Path, public: &str) -> Vec<String> {
    let served = match public.trim_matches('/') {
        "" | "." => root.to_path_buf(),
        p => root.join(p),
    };
    CREDENTIAL_FILES
        .iter()
        .map(|name| served.join(name))
        .filter(|p| p.is_file())
        .map(|p| {
            format!(
                "{} is in the served tree: anyone can download it. Delete it, and give composer its credentials \
                 through `hooks.env: {{COMPOSER_AUTH: ${{COMPOSER_AUTH}}}}` instead",
                p.display()
            )
        })
        .collect()
}

/// Variables passed to every hook.
#[derive(Debug, Clone, Default)]
pub struct HookEnv {
    /// `ROOTSWAP_COMMIT`: the commit being deployed.
    pub commit: String,
    /// `ROOTSWAP_PREVIOUS_COMMIT`: the commit that was live ("" on a first deploy).
    pub previous_commit: String,
    /// `ROOTSWAP_SNAPSHOT`: path of the snapshot serving meanwhile ("" on a first deploy).
    pub snapshot: String,
    /// `ROOTSWAP_ROOT`: path of ROOT.
    pub root: String,
    /// `hooks.env`: extra variables (credentials such as `COMPOSER_AUTH`).
    pub extra: Vec<(String, String)>,
}

impl HookEnv {
    /// The variables for hooks of `cfg` that deploy `commit` over `previous`
    /// (`snapshot`: the snapshot's path, "" when there is none), with `hooks.env`.
    pub fn new(
        cfg: &crate::config::Config,
        commit: &str,
        previous: &str,
        snapshot: &str,
    ) -> HookEnv {
        HookEnv {
            commit: commit.to_string(),
            previous_commit: previous.to_string(),
            snapshot: snapshot.to_string(),
            root: cfg.webroot.join(&cfg.root).to_string_lossy().into_owned(),
            extra: cfg
                .hooks
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

/// Runs `commands` in order in `dir`; the first failure stops and is returned.
pub fn run_all(
    stage: &str,
    commands: &[String],
    dir: &Path,
    env: &HookEnv,
    timeout: Duration,
) -> Result<()> {
    for cmd in commands {
        // `"? CMD"` is optional: skipped when its tool is missing (see tools.rs).
        let (cmd, optional) = crate::config::strip_optional(cmd);
        if let Some(why) = super::tools::missing_tool(cmd, dir, optional, timeout) {
            if optional {
                tracing::info!("hook {stage}: skipped optional `{cmd}`: {why}");
                continue;
            }
            bail!(
                "hook {stage} `{cmd}` cannot run: {why}. Install it, remove the hook from `hooks.{stage}` \
                 (a list you set replaces the preset's), or mark it optional: \"? {cmd}\""
            );
        }
        run_one(stage, cmd, dir, env, timeout)?;
    }
    Ok(())
}

fn run_one(stage: &str, cmd: &str, dir: &Path, env: &HookEnv, timeout: Duration) -> Result<()> {
    tracing::info!("hook {stage}: {cmd}");
    let started = Instant::now();
    let mark = procs::new_mark();
    let mut child = spawn(cmd, dir, env, &mark).with_context(|| {
        format!(
            "hook {stage} `{cmd}`: cannot start /bin/sh in {}",
            dir.display()
        )
    })?;
    let pgid = child.id() as i32;
    let mut out = match Output::new(child.stdout.take(), child.stderr.take()) {
        Ok(out) => out,
        Err(e) => {
            kill_group(pgid, libc::SIGKILL);
            let _ = child.wait();
            return Err(e.context(format!("hook {stage} `{cmd}`")));
        }
    };
    let deadline = started + timeout;
    let status = loop {
        out.read_for(Duration::from_millis(50));
        if let Some(status) = child.try_wait().context("cannot wait for hook")? {
            break status;
        }
        if Instant::now() >= deadline {
            stop(&mut child, pgid, &mark, &mut out);
            out.close();
            bail!(
                "hook {stage} `{cmd}` timed out after {} and was killed with every process it started; \
                 raise `hooks.timeout` if it needs longer",
                humantime::format_duration(timeout)
            );
        }
    };
    // Anything the hook left running in its group goes too.
    kill_group(pgid, libc::SIGKILL);
    finish_output(stage, cmd, &mark, out);
    if !status.success() {
        let how = match status.code() {
            Some(c) => format!("exited with status {c}"),
            None => "was killed by a signal".to_string(),
        };
        bail!("hook {stage} `{cmd}` {how} (ran in {})", dir.display());
    }
    tracing::info!("hook {stage} done in {:.2?}: {cmd}", started.elapsed());
    Ok(())
}

/// After the hook's shell exited: reads its output for [`OUTPUT_GRACE`] more
/// at most, then closes the pipes, naming any process that still held them.
fn finish_output(stage: &str, cmd: &str, mark: &str, mut out: Output) {
    if !out.read_until(Instant::now() + OUTPUT_GRACE) {
        let holders: Vec<String> = procs::find(mark, &out.inodes())
            .into_iter()
            .filter(|p| p.holds_output)
            .map(|p| p.to_string())
            .collect();
        tracing::warn!(
            "hook {stage} `{cmd}`: a background process ({}) kept the hook's output open; rootswap stopped reading \
             it {} after the hook ended and goes on. Redirect that process's output (`... >/dev/null 2>&1 &`, or to a log file)",
            if holders.is_empty() { "gone by now".to_string() } else { holders.join(", ") },
            humantime::format_duration(OUTPUT_GRACE)
        );
    }
    out.close();
}

/// Starts `sh -c cmd` in a process group of its own, marked with `mark`.
fn spawn(cmd: &str, dir: &Path, env: &HookEnv, mark: &str) -> std::io::Result<Child> {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .env("ROOTSWAP_COMMIT", &env.commit)
        .env("ROOTSWAP_PREVIOUS_COMMIT", &env.previous_commit)
        .env("ROOTSWAP_SNAPSHOT", &env.snapshot)
        .env("ROOTSWAP_ROOT", &env.root)
        .envs(env.extra.iter().map(|(k, v)| (k, v)))
        .env(procs::MARK_VAR, mark)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
}

/// Ends a hook that ran out of time: SIGTERM to its process group and to
/// every process marked as its own or holding its output (other sessions
/// included), SIGKILL to whatever is left two seconds later. Returns within
/// about three seconds whatever the processes do.
fn stop(child: &mut Child, pgid: i32, mark: &str, out: &mut Output) {
    kill_group(pgid, libc::SIGTERM);
    procs::signal(&procs::find(mark, &out.inodes()), libc::SIGTERM);
    let grace = Instant::now() + KILL_GRACE;
    while Instant::now() < grace {
        out.read_for(Duration::from_millis(50));
        let exited = matches!(child.try_wait(), Ok(Some(_)));
        if exited && !out.is_open() && procs::find(mark, &[]).is_empty() {
            return;
        }
    }
    kill_group(pgid, libc::SIGKILL);
    procs::signal(&procs::find(mark, &out.inodes()), libc::SIGKILL);
    let reaped = Instant::now() + Duration::from_secs(1);
    while Instant::now() < reaped && !matches!(child.try_wait(), Ok(Some(_))) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !out.read_until(Instant::now() + Duration::from_millis(500)) {
        tracing::warn!(
            "a process of the timed-out hook still holds its output; rootswap stopped reading it"
        );
    }
}

fn kill_group(pgid: i32, sig: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_environment_and_reports_failure() {
        let dir = tempfile::tempdir().unwrap();
        let env = HookEnv {
            commit: "abc".into(),
            ..Default::default()
        };
        run_all(
            "test",
            &["echo $ROOTSWAP_COMMIT > out".to_string()],
            dir.path(),
            &env,
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out"))
                .unwrap()
                .trim(),
            "abc"
        );
        let msg = format!(
            "{:#}",
            run_all(
                "test",
                &["exit 3".to_string()],
                dir.path(),
                &env,
                Duration::from_secs(5)
            )
            .unwrap_err()
        );
        assert!(msg.contains("exited with status 3"), "{msg}");
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let msg = format!(
            "{:#}",
            run_all(
                "test",
                &["(sleep 30; touch late) & sleep 30".to_string()],
                dir.path(),
                &HookEnv::default(),
                Duration::from_millis(300)
            )
            .unwrap_err()
        );
        assert!(msg.contains("timed out"), "{msg}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn timeout_reaches_children_in_other_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let msg = format!(
            "{:#}",
            run_all(
                "test",
                &["setsid sh -c 'echo $$ > escaped; exec sleep 30' & sleep 0.3; echo done; sleep 30".to_string()],
                dir.path(),
                &HookEnv::default(),
                Duration::from_secs(1)
            )
            .unwrap_err()
        );
        assert!(msg.contains("timed out"), "{msg}");
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
        let pid = std::fs::read_to_string(dir.path().join("escaped")).unwrap();
        let pid: i32 = pid.trim().parse().unwrap();
        // SIGKILL is delivered asynchronously: on a loaded machine the
        // process may take a few scheduler ticks to be gone.
        let alive = || {
            // SAFETY: signal 0 only asks whether the pid exists.
            (unsafe { libc::kill(pid, 0) }) == 0
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z ")
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(), "the escaped child {pid} survived the timeout");
    }

    #[test]
    fn a_daemon_holding_the_output_does_not_hold_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        run_all(
            "test",
            // The sleep lets the child leave the group before the shell ends
            // (what is still in the group then is killed).
            &[
                "setsid sh -c 'echo $$ > daemon; exec sleep 30' & sleep 0.3; echo started"
                    .to_string(),
            ],
            dir.path(),
            &HookEnv::default(),
            Duration::from_secs(20),
        )
        .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let pid: i32 = std::fs::read_to_string(dir.path().join("daemon"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: kill(2) on the pid the test's own daemon wrote.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}
