//! Step 4 of the flow, second half: the build hooks (`composer install`, …).
//!
//! Each hook runs as `sh -c CMD` in ROOT, in a process group of its own, with
//! the deploy's variables in its environment. Its output is streamed, line by
//! line, to the log. A hook that outlives `hooks.timeout` is sent SIGTERM and,
//! two seconds later, SIGKILL — to its whole process group, so nothing it
//! started keeps running.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

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
        // `"? CMD"` is optional: skipped when its tool is missing (see hook_tools).
        let (cmd, optional) = crate::hook_tools::strip_optional(cmd);
        if let Some(why) = crate::hook_tools::missing_tool(cmd, dir, optional, timeout) {
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
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .env("ROOTSWAP_COMMIT", &env.commit)
        .env("ROOTSWAP_PREVIOUS_COMMIT", &env.previous_commit)
        .env("ROOTSWAP_SNAPSHOT", &env.snapshot)
        .env("ROOTSWAP_ROOT", &env.root)
        .envs(env.extra.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| {
            format!(
                "hook {stage} `{cmd}`: cannot start /bin/sh in {}",
                dir.display()
            )
        })?;
    let pgid = child.id() as i32;
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(pump(out, false));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(pump(err, true));
    }
    let status = loop {
        if let Some(status) = child.try_wait().context("cannot wait for hook")? {
            break status;
        }
        if started.elapsed() >= timeout {
            kill_group(pgid, libc::SIGTERM);
            let grace = Instant::now();
            let status = loop {
                if let Some(s) = child.try_wait().context("cannot wait for hook")? {
                    break s;
                }
                if grace.elapsed() > Duration::from_secs(2) {
                    kill_group(pgid, libc::SIGKILL);
                    break child.wait().context("cannot wait for hook")?;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            kill_group(pgid, libc::SIGKILL);
            let _ = status;
            for p in pumps {
                let _ = p.join();
            }
            bail!(
                "hook {stage} `{cmd}` timed out after {} and was killed with its process group; raise `hooks.timeout` if it needs longer",
                humantime::format_duration(timeout)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Anything the hook left running in its group goes too.
    kill_group(pgid, libc::SIGKILL);
    for p in pumps {
        let _ = p.join();
    }
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

fn pump<R: std::io::Read + Send + 'static>(r: R, is_err: bool) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(r);
        let mut line = Vec::new();
        while let Ok(n) = reader.read_until(b'\n', &mut line) {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            if is_err {
                tracing::warn!(target: "hook", "| {text}");
            } else {
                tracing::info!(target: "hook", "| {text}");
            }
            line.clear();
        }
    })
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
}
