//! Clearing php-fpm's OPcache over FastCGI, without reloading php-fpm.
//!
//! rootswap writes the new version into the same ROOT path that served the
//! old one, so OPcache entries compiled from `ROOT/...` before the deploy are
//! still there when the link returns to ROOT (docs/zero-downtime.md#opcache). `php -r
//! 'opcache_reset();'` on the command line clears the CLI's own cache, not
//! php-fpm's: the reset has to run inside the php-fpm pool. Like cachetool,
//! rootswap writes a small PHP script outside the web-reachable tree (by
//! default in the webroot, which php-fpm must traverse to reach ROOT anyway,
//! not in the state directory, which is private to rootswap;
//! `opcache.script_dir` overrides it), sends
//! one FastCGI request whose `SCRIPT_FILENAME` is that script straight to
//! php-fpm's socket, removes the script and checks the JSON it printed.
//!
//! What the script does: `opcache_invalidate($file, true)` for each file the
//! deploy changed (immediate, per file), then `opcache_reset()` (which only
//! *schedules* a restart, but from that instant no new request uses the old
//! cache; it also covers files a hook wrote and files the deploy deleted,
//! which `opcache_invalidate` cannot reach). Reloading php-fpm is never done:
//! with the default `process_control_timeout = 0` it kills busy workers
//! (docs/zero-downtime.md#never-reload-php-fpm).
//!
//! The FastCGI request itself goes through [`crate::php_fpm`].

use base64::Engine as _;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::php_fpm::{self, Endpoint, Located, Reply};

/// Above this many changed files, rootswap skips the per-file invalidation
/// and relies on `opcache_reset()` alone.
const MAX_INVALIDATE: usize = 20_000;

/// The PHP run inside php-fpm. `%REQ%` becomes the base64 of a JSON request.
const SCRIPT: &str = r#"<?php
// Written by rootswap for one FastCGI request; removed right after it.
header('Content-Type: application/json');
header('Cache-Control: no-store');
$req = json_decode(base64_decode('%REQ%'), true);
$has = function_exists('opcache_get_status');
$out = ['rootswap' => 1, 'php' => PHP_VERSION, 'sapi' => PHP_SAPI, 'pid' => getmypid(), 'user' => null,
        'opcache_loaded' => $has, 'ini' => [], 'invalidated' => 0, 'invalidate_missed' => 0, 'reset' => null, 'status' => null];
if (function_exists('posix_geteuid') && function_exists('posix_getpwuid')) { $pw = posix_getpwuid(posix_geteuid()); $out['user'] = $pw['name'] ?? null; }
foreach (['opcache.enable', 'opcache.validate_timestamps', 'opcache.revalidate_freq', 'opcache.revalidate_path',
          'opcache.restrict_api', 'opcache.file_cache', 'opcache.file_cache_only', 'open_basedir', 'realpath_cache_ttl', 'realpath_cache_size'] as $k) {
    $v = ini_get($k); $out['ini'][$k] = ($v === false) ? null : (string) $v;
}
if ($has && !empty($req['invalidate'])) {
    foreach ($req['invalidate'] as $f) { if (@opcache_invalidate($f, true)) { $out['invalidated']++; } else { $out['invalidate_missed']++; } }
}
if ($has && !empty($req['reset'])) { $out['reset'] = (bool) @opcache_reset(); }
if ($has) {
    $s = @opcache_get_status(false);
    if (is_array($s)) {
        $out['status'] = ['enabled' => (bool) ($s['opcache_enabled'] ?? false), 'restart_pending' => (bool) ($s['restart_pending'] ?? false),
                          'restart_in_progress' => (bool) ($s['restart_in_progress'] ?? false),
                          'cached_scripts' => $s['opcache_statistics']['num_cached_scripts'] ?? null];
    }
    @opcache_invalidate(__FILE__, true);
}
echo json_encode($out);
"#;

/// What the script reported.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Answer {
    /// PHP version of the pool.
    pub php: String,
    /// `fpm-fcgi` when it really ran inside php-fpm.
    pub sapi: String,
    /// Worker pid that ran it.
    pub pid: u32,
    /// Pool user (when the posix extension is there).
    pub user: Option<String>,
    /// OPcache extension loaded.
    pub opcache_loaded: bool,
    /// Relevant ini values as strings (None: unknown setting).
    pub ini: std::collections::BTreeMap<String, Option<String>>,
    /// Files `opcache_invalidate` accepted.
    pub invalidated: usize,
    /// Files it did not (not cached, or deleted).
    pub invalidate_missed: usize,
    /// What `opcache_reset()` returned (None: not asked).
    pub reset: Option<bool>,
    /// `opcache_get_status(false)`, condensed (None: not available, e.g. `opcache.restrict_api`).
    pub status: Option<CacheStatus>,
}

/// Condensed `opcache_get_status(false)`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheStatus {
    /// The cache serves this request.
    pub enabled: bool,
    /// A restart is scheduled (applied once no request holds the cache).
    pub restart_pending: bool,
    /// A restart runs now.
    pub restart_in_progress: bool,
    /// Scripts in the cache.
    pub cached_scripts: Option<u64>,
}

impl Answer {
    /// An ini value as a string ("" when unset).
    pub fn ini(&self, key: &str) -> &str {
        self.ini.get(key).and_then(|v| v.as_deref()).unwrap_or("")
    }

    /// `opcache.enable` is on and the extension is loaded.
    pub fn cache_on(&self) -> bool {
        self.opcache_loaded && ini_true(self.ini("opcache.enable"))
    }
}

/// PHP's reading of a boolean ini value.
pub fn ini_true(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "on" | "yes" | "true"
    )
}

/// Removes the script when dropped, whatever happened.
struct ScriptFile(PathBuf);

impl Drop for ScriptFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The directory the script is written to.
pub fn script_dir(cfg: &Config) -> PathBuf {
    cfg.opcache
        .script_dir
        .clone()
        .unwrap_or_else(|| cfg.webroot.clone())
}

/// Runs the script inside php-fpm: invalidates `invalidate` (absolute
/// paths), then calls `opcache_reset()` when `reset` is set.
pub fn run(ep: &Endpoint, dir: &Path, invalidate: &[PathBuf], reset: bool) -> Result<Answer> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {} for the OPcache script", dir.display()))?;
    let guard = write_script(dir, invalidate, reset)?;
    let file = guard.0.to_string_lossy().into_owned();
    let reply = php_fpm::request(ep, &script_params(&guard.0, dir), php_fpm::TIMEOUT);
    drop(guard);
    read_answer(&reply?, &file)
}

/// Where the `<VirtualHost>` of `rootswap apache --mod-php` maps the reset
/// script (from 127.0.0.1 only): `<opcache.http>/.rootswap-opcache/<script>`.
pub const HTTP_PREFIX: &str = "/.rootswap-opcache/";

/// Runs the script inside the web server's own PHP (mod_php, which no
/// FastCGI request reaches) with one GET of `<base>/.rootswap-opcache/<script>`.
pub fn run_http(base: &str, dir: &Path, invalidate: &[PathBuf], reset: bool) -> Result<Answer> {
    if !base.starts_with("http://") {
        bail!(
            "opcache.http `{base}` must be an http:// URL of this host, e.g. http://127.0.0.1:80"
        );
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {} for the OPcache script", dir.display()))?;
    let guard = write_script(dir, invalidate, reset)?;
    let file = guard.0.to_string_lossy().into_owned();
    let name = guard
        .0
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let url = format!("{}{HTTP_PREFIX}{name}", base.trim_end_matches('/'));
    let got = crate::health::agent(php_fpm::TIMEOUT)?.get(&url).call();
    let reply = match got {
        Ok(mut r) => Reply {
            status: r.status().as_u16(),
            headers: vec![],
            body: r.body_mut().read_to_vec().unwrap_or_default(),
            stderr: String::new(),
        },
        Err(e) => bail!("cannot reach the web server at {url} (opcache.http): {e}"),
    };
    drop(guard);
    read_answer(&reply, &file).with_context(|| {
        format!("through {url}: the site's <VirtualHost> must map {HTTP_PREFIX} to opcache.script_dir for 127.0.0.1 (`rootswap apache --mod-php` prints it)")
    })
}

/// Writes the script with its request (readable by php-fpm's pool user)
/// into `dir`; it is removed when the returned guard drops.
fn write_script(dir: &Path, invalidate: &[PathBuf], reset: bool) -> Result<ScriptFile> {
    let req = serde_json::json!({
        "invalidate": invalidate.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>(),
        "reset": reset,
    });
    let text = SCRIPT.replace(
        "%REQ%",
        &base64::engine::general_purpose::STANDARD.encode(req.to_string().as_bytes()),
    );
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let path = dir.join(format!(
        ".rootswap-opcache-{}-{nanos:08x}.php",
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)
        .with_context(|| format!("cannot write the OPcache script {}", path.display()))?;
    let guard = ScriptFile(path.clone());
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    drop(f);
    // The umask may have narrowed the mode: php-fpm's pool user must read it.
    let _ = std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644));
    Ok(guard)
}

/// The CGI parameters of a GET of the script at `path` in `dir`.
fn script_params(path: &Path, dir: &Path) -> [(&'static str, String); 11] {
    let name = format!(
        "/{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    [
        ("REQUEST_METHOD", "GET".to_string()),
        ("SCRIPT_FILENAME", path.to_string_lossy().into_owned()),
        ("SCRIPT_NAME", name.clone()),
        ("REQUEST_URI", name.clone()),
        ("DOCUMENT_URI", name),
        ("DOCUMENT_ROOT", dir.to_string_lossy().into_owned()),
        ("QUERY_STRING", String::new()),
        ("SERVER_SOFTWARE", "rootswap".to_string()),
        ("REMOTE_ADDR", "127.0.0.1".to_string()),
        ("SERVER_NAME", "localhost".to_string()),
        ("CONTENT_LENGTH", "0".to_string()),
    ]
}

/// The script's JSON from php-fpm's reply, or an error that says why the
/// script did not run (and how to fix that) for the script `file`.
fn read_answer(reply: &Reply, file: &str) -> Result<Answer> {
    let body = String::from_utf8_lossy(&reply.body);
    if reply.status != 200 || !body.trim_start().starts_with('{') {
        let detail = if reply.stderr.is_empty() {
            body.trim().chars().take(300).collect::<String>()
        } else {
            reply.stderr.clone()
        };
        let hint = failure_hint(reply.status, &detail, file);
        bail!("{hint} (HTTP {}; php-fpm said: {detail})", reply.status);
    }
    serde_json::from_str(body.trim()).with_context(|| {
        format!(
            "php-fpm's answer is not the script's JSON: {}",
            body.chars().take(300).collect::<String>()
        )
    })
}

/// What most likely kept the script `file` from running.
fn failure_hint(status: u16, detail: &str, file: &str) -> String {
    if detail.contains("Primary script unknown")
        || detail.contains("No input file")
        || detail.contains("open_basedir")
        || status == 404
    {
        format!(
            "php-fpm could not open {}: its pool user must be able to read it (systemd PrivateTmp, open_basedir and chroot hide directories from php-fpm); \
             set `opcache.script_dir` to a directory php-fpm can read, e.g. one inside open_basedir but outside the document root",
            file
        )
    } else if status == 403 {
        "php-fpm refused the script (security.limit_extensions must allow .php)".to_string()
    } else {
        "the OPcache script did not run as expected".to_string()
    }
}

/// Judges an answer to a reset: `Ok(description)` when stale code cannot be
/// served any more, `Err(warning)` when the reset did not happen.
pub fn judge(a: &Answer) -> std::result::Result<String, String> {
    if a.sapi != "fpm-fcgi" && a.sapi != "apache2handler" {
        return Err(format!("the OPcache script ran under the `{}` SAPI, not php-fpm: php-fpm's cache was not cleared", a.sapi));
    }
    if !a.opcache_loaded {
        return Ok("OPcache is not loaded in php-fpm: nothing to clear".into());
    }
    if !ini_true(a.ini("opcache.enable")) {
        return Ok("OPcache is disabled in php-fpm (opcache.enable=0): nothing to clear".into());
    }
    let pending = a
        .status
        .as_ref()
        .is_some_and(|s| s.restart_pending || s.restart_in_progress);
    match a.reset {
        Some(true) => Ok(format!(
            "OPcache reset scheduled ({} changed files invalidated)",
            a.invalidated
        )),
        // Under load a reset may already be pending: not a failure (docs/zero-downtime.md#opcache).
        Some(false) if pending => Ok(format!(
            "OPcache reset already pending ({} changed files invalidated)",
            a.invalidated
        )),
        Some(false) => {
            let restrict = a.ini("opcache.restrict_api");
            let why = if restrict.is_empty() {
                String::new()
            } else {
                format!(" opcache.restrict_api={restrict} allows only scripts under that path: set `opcache.script_dir` inside it.")
            };
            Err(format!("opcache_reset() returned false and no restart is pending: php-fpm may serve stale code.{why}"))
        }
        None => Ok(format!("{} changed files invalidated", a.invalidated)),
    }
}

/// Clears php-fpm's cache for a deploy: invalidates the `changed` files
/// (paths relative to `root`, which is resolved to its real path as nginx's
/// `$realpath_root` hands it to PHP) and resets. Returns `None` when done (or
/// when no `opcache.fastcgi` is configured), `Some(warning)` when the reset
/// did not happen.
pub fn clear_for_deploy<'a>(
    fpm: Result<Located>,
    cfg: &Config,
    root: &Path,
    changed: impl Iterator<Item = &'a Path>,
    when: &str,
) -> Option<String> {
    match clear(fpm, cfg, root, changed, when) {
        Ok(note) => {
            tracing::info!("{note}");
            None
        }
        Err(w) => Some(w),
    }
}

/// [`clear_for_deploy`] without the log line: `Ok(what happened)` for
/// people, or `Err(warning)` when the reset did not happen (the deploy's
/// step line carries the note).
pub fn clear<'a>(
    fpm: Result<Located>,
    cfg: &Config,
    root: &Path,
    changed: impl Iterator<Item = &'a Path>,
    when: &str,
) -> Result<String, String> {
    let files = |root: &Path| -> Vec<PathBuf> {
        let real = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        let files: Vec<PathBuf> = changed.map(|p| real.join(p)).collect();
        if files.len() > MAX_INVALIDATE {
            vec![]
        } else {
            files
        }
    };
    if let Some(base) = &cfg.opcache.http {
        return match run_http(base, &script_dir(cfg), &files(root), true) {
            Ok(a) => judge(&a)
                .map(|msg| format!("{msg} {when} (through {base})"))
                .map_err(|w| format!("OPcache {when}: {w}")),
            Err(e) => Err(format!("OPcache not cleared {when}: {e:#}")),
        };
    }
    let (ep, found) = match fpm {
        Ok(Located::Configured(ep)) => (ep, String::new()),
        Ok(Located::Found(ep, how)) => {
            let found = format!(" (php-fpm found at {ep}: {how}; opcache.fastcgi is not set)");
            (ep, found)
        }
        Ok(l @ Located::NotFound(_)) => {
            let w = l.warning().unwrap_or_default();
            return Err(w.replacen(
                "OPcache not cleared",
                &format!("OPcache not cleared {when}"),
                1,
            ));
        }
        Err(e) => return Err(format!("OPcache not cleared {when}: {e:#}")),
    };
    match run(&ep, &script_dir(cfg), &files(root), true) {
        Ok(a) => match judge(&a) {
            Ok(msg) => Ok(format!("{msg} {when}{found}")),
            Err(w) => Err(format!("OPcache {when}: {w}")),
        },
        Err(e) => Err(format!("OPcache not cleared {when}: {e:#}")),
    }
}

/// `rootswap opcache reset`: resets php-fpm's cache, returns what happened.
pub fn reset_by_hand(fpm: Result<Located>, cfg: &Config) -> Result<String> {
    if let Some(base) = &cfg.opcache.http {
        let a = run_http(base, &script_dir(cfg), &[], true)?;
        return judge(&a)
            .map_err(|w| anyhow!(w))
            .map(|m| format!("{m} (through {base}, PHP {}, process {})", a.php, a.pid));
    }
    let loc = fpm?;
    let ep = loc.endpoint().cloned().ok_or_else(|| {
        anyhow!(
            "{}; set `opcache.fastcgi` to php-fpm's address, e.g. unix:/run/php/php8.2-fpm.sock",
            loc.describe()
        )
    })?;
    let a = run(&ep, &script_dir(cfg), &[], true)?;
    judge(&a)
        .map_err(|w| anyhow!(w))
        .map(|m| format!("{m} (php-fpm at {ep}, PHP {}, worker {})", a.php, a.pid))
}

/// `rootswap opcache …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Cmd {
    /// Reset php-fpm's OPcache now, over FastCGI (`opcache.fastcgi`), or through the web server (`opcache.http`).
    Reset,
    /// Show php-fpm's OPcache settings and state, read over FastCGI.
    Status,
}

/// Runs `rootswap opcache …`.
pub fn command(fpm: Result<Located>, cfg: &Config, cmd: &Cmd) -> Result<std::process::ExitCode> {
    match cmd {
        Cmd::Reset => println!("{}", reset_by_hand(fpm, cfg)?),
        Cmd::Status => {
            let a = inspect(fpm, cfg)?;
            println!("{}", serde_json::to_string_pretty(&a)?);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Reads php-fpm's OPcache settings without changing anything (doctor).
pub fn inspect(fpm: Result<Located>, cfg: &Config) -> Result<Answer> {
    if let Some(base) = &cfg.opcache.http {
        return run_http(base, &script_dir(cfg), &[], false);
    }
    let loc = fpm?;
    let ep = loc
        .endpoint()
        .cloned()
        .ok_or_else(|| anyhow!("{}", loc.describe()))?;
    run(&ep, &script_dir(cfg), &[], false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(reset: Option<bool>, pending: bool) -> Answer {
        let mut a = Answer {
            sapi: "fpm-fcgi".into(),
            opcache_loaded: true,
            reset,
            ..Default::default()
        };
        a.ini.insert("opcache.enable".into(), Some("1".into()));
        a.status = Some(CacheStatus {
            enabled: true,
            restart_pending: pending,
            ..Default::default()
        });
        a
    }

    #[test]
    fn judges_resets() {
        assert!(judge(&answer(Some(true), true)).is_ok());
        // Already pending under load: fine.
        assert!(judge(&answer(Some(false), true)).is_ok());
        // Refused and nothing pending: a warning.
        assert!(judge(&answer(Some(false), false)).is_err());
        let mut cli = answer(Some(true), true);
        cli.sapi = "cli".into();
        assert!(judge(&cli).is_err());
        let mut off = answer(Some(false), false);
        off.ini.insert("opcache.enable".into(), Some("0".into()));
        assert!(judge(&off).is_ok());
    }

    #[test]
    fn a_missing_socket_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let ep = Endpoint::Unix(dir.path().join("nope.sock"));
        let e = run(&ep, dir.path(), &[], true).unwrap_err();
        assert!(
            format!("{e:#}").contains("cannot connect to php-fpm"),
            "{e:#}"
        );
        // The script was removed.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
