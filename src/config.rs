//! Configuration: the YAML file (`-c/--config`, default `./rootswap.yaml`).
//!
//! Every key is documented in `config.example.yaml`, with its default
//! (`tests/config_reference.rs` checks both ways). Unknown keys are an error
//! naming the key and its line; `${VAR}` in every string value (hook commands
//! excepted: the shell expands those) is replaced from the environment (an
//! unset variable is an error naming it).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The whole configuration, as read from the file and validated.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Framework preset whose values lie under this file's (see [`crate::preset`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<crate::preset::Preset>,
    /// Directory holding ROOT, its snapshots, the link and (by default) the state dir.
    pub webroot: PathBuf,
    /// Name of the deployed directory inside `webroot`.
    #[serde(default = "default_root")]
    pub root: String,
    /// Name of the serving symlink inside `webroot`.
    #[serde(default = "default_link")]
    pub link: String,
    /// State directory (cache repository, lock, history); relative to `webroot` unless absolute.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Document root inside the application (`public` for Laravel/Symfony, `.` for plain sites).
    #[serde(default = "default_public")]
    pub public: String,
    /// Where the code comes from.
    pub source: SourceConfig,
    /// Snapshot retention.
    #[serde(default)]
    pub snapshots: SnapshotsConfig,
    /// Which files written by the site are carried into the new version.
    #[serde(default)]
    pub user_content: UserContentConfig,
    /// Wait after pointing the link away from a tree, before that tree is changed:
    /// a duration, or `auto` (ask php-fpm's status page which requests still run).
    #[serde(default = "default_drain")]
    pub drain: Drain,
    /// Upper bound of `drain: auto`.
    #[serde(
        default = "default_drain_max",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub drain_max: Duration,
    /// Commands run during the deploy.
    #[serde(default)]
    pub hooks: HooksConfig,
    /// Copy engine tuning.
    #[serde(default)]
    pub copy: CopyConfig,
    /// The service's polling schedule (`rootswap serve`).
    #[serde(default)]
    pub auto_deploy: AutoDeployConfig,
    /// The deploy trigger URL and Git host webhooks (`rootswap serve`).
    #[serde(default)]
    pub trigger: TriggerConfig,
    /// OPcache reset over FastCGI.
    #[serde(default)]
    pub opcache: OpcacheConfig,
    /// Health gate after the switch back to ROOT.
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// Notifications of deploy results.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// Several web nodes deploying together through etcd (see [`crate::fleet`]);
    /// absent: this node deploys on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetConfig>,
}

/// `fleet:` — the etcd cluster and this node's place in the fleet.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// etcd client endpoints, e.g. `http://10.0.0.1:2379`.
    pub etcd: Vec<String>,
    /// Name of the site: the key prefix `/rootswap/<site>/` all its nodes share.
    pub site: String,
    /// This node's id (default: the host name).
    #[serde(default = "default_node")]
    pub node: String,
    /// Time-to-live of this node's membership key, of the leadership and of the deploy lock.
    #[serde(
        default = "default_lease",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub lease: Duration,
    /// How long every member may take to prepare before the deploy is aborted.
    #[serde(
        default = "default_prepare_timeout",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub prepare_timeout: Duration,
    /// How far after the commit point every node renames its link: the
    /// coordinator names one instant for all, so the nodes switch together
    /// instead of each as soon as it hears of the commit.
    #[serde(
        default = "default_switch_delay",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub switch_delay: Duration,
    /// etcd user (with `password`).
    #[serde(default)]
    pub user: Option<String>,
    /// etcd password of `user`.
    #[serde(default)]
    pub password: Option<String>,
    /// CA certificate (PEM) that signed the etcd servers' certificates: turns TLS on.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's client-certificate authentication.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Key (PEM) of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

fn default_node() -> String {
    crate::fsutil::host_name()
}

fn default_lease() -> Duration {
    Duration::from_secs(10)
}

fn default_prepare_timeout() -> Duration {
    Duration::from_secs(600)
}

fn default_switch_delay() -> Duration {
    Duration::from_millis(200)
}

/// `drain:` — a fixed wait or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Wait this long.
    Fixed(Duration),
    /// Ask php-fpm's status page; fall back to `drain_max`-bounded fixed wait.
    Auto,
}

impl<'de> Deserialize<'de> for Drain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Drain, D::Error> {
        Ok(
            match d.deserialize_any(DurationVisitor { allow_auto: true })? {
                Some(t) => Drain::Fixed(t),
                None => Drain::Auto,
            },
        )
    }
}

impl Serialize for Drain {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Drain::Auto => s.serialize_str("auto"),
            Drain::Fixed(d) => ser_duration(d, s),
        }
    }
}

/// `auto_deploy:` — when the service polls the branch.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AutoDeployConfig {
    /// Poll at all (false keeps the service up for the trigger URL and status).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Poll interval (exclusive with `cron`).
    #[serde(
        default,
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration"
    )]
    pub every: Option<Duration>,
    /// Cron expression with seconds, e.g. `0 */5 * * * *` (exclusive with `every`).
    #[serde(default)]
    pub cron: Option<String>,
}

impl Default for AutoDeployConfig {
    fn default() -> Self {
        AutoDeployConfig {
            enabled: true,
            every: None,
            cron: None,
        }
    }
}

/// `trigger:` — the deploy trigger URL.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Address to listen on, e.g. `127.0.0.1:9810` (off when absent).
    #[serde(default)]
    pub listen: Option<String>,
    /// Bearer token for `POST /deploy`.
    #[serde(default)]
    pub token: Option<String>,
    /// Secret of the GitHub webhook (`X-Hub-Signature-256`).
    #[serde(default)]
    pub github_secret: Option<String>,
    /// Token of the GitLab webhook (`X-Gitlab-Token`).
    #[serde(default)]
    pub gitlab_token: Option<String>,
    /// The dashboard (`/`) shows the site's status, history and snapshots to
    /// anyone who can reach the listener, without the token (default false:
    /// reading needs the token too). Actions always need the token.
    #[serde(default)]
    pub public_status: bool,
    /// A bearer token that reads `GET /metrics` only (for Prometheus'
    /// `bearer_token`); the trigger token reads it too.
    #[serde(default)]
    pub metrics_token: Option<String>,
    /// Host names (optionally `name:port`) clients may address the listener
    /// by, besides IP addresses and `localhost`: other `Host` headers are
    /// refused (DNS rebinding).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Connections served at once; beyond it new ones are closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time a client has to send a request's headers (also the longest a
    /// kept-alive connection may wait for its next request).
    #[serde(
        default = "default_header_timeout",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub header_timeout: Duration,
    /// A connection on which nothing moves in either direction this long is closed.
    #[serde(
        default = "default_idle_timeout",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub idle_timeout: Duration,
    /// Time a request has from its headers to its answer (body included).
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub request_timeout: Duration,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        TriggerConfig {
            listen: None,
            token: None,
            github_secret: None,
            gitlab_token: None,
            public_status: false,
            metrics_token: None,
            allowed_hosts: Vec::new(),
            max_connections: default_max_connections(),
            header_timeout: default_header_timeout(),
            idle_timeout: default_idle_timeout(),
            request_timeout: default_request_timeout(),
        }
    }
}

/// `opcache:` — how rootswap clears php-fpm's OPcache.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpcacheConfig {
    /// php-fpm's FastCGI address: `unix:/run/php/php8.2-fpm.sock` or `tcp:127.0.0.1:9000` (off when absent).
    #[serde(default)]
    pub fastcgi: Option<String>,
    /// Directory for the reset script, readable by php-fpm (default: the webroot).
    #[serde(default)]
    pub script_dir: Option<PathBuf>,
    /// php-fpm's status path (`pm.status_path`), used by `drain: auto`.
    #[serde(default)]
    pub status_path: Option<String>,
}

/// `health_check:` — a URL that must answer after the switch back.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// URL to request (http://).
    pub url: String,
    /// Expected HTTP status.
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
    /// Timeout of one request.
    #[serde(
        default = "default_health_timeout",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub timeout: Duration,
    /// Further attempts after a failure.
    #[serde(default = "default_health_retries")]
    pub retries: u32,
}

/// `notify:` — where deploy results are sent.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// URL receiving a JSON POST (Slack-compatible `text`) per deploy result.
    #[serde(default)]
    pub webhook: Option<String>,
}

/// `source:` — the Git repository and branch to deploy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// URL or local path of the repository.
    pub repo: String,
    /// Branch followed by `deploy` (and by the service).
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Deploy only this subdirectory of the repository ("" for all of it).
    #[serde(default)]
    pub subdir: String,
    /// A symlink of the commit whose target leaves the deployed tree (an
    /// absolute or `../..` target): deployed as Git has it with a warning
    /// (`allow`, the default), or the deploy is refused (`refuse`).
    #[serde(default)]
    pub external_symlinks: ExternalSymlinks,
    /// Private key file for ssh repositories (a read-only deploy key). When
    /// set, only this key is offered; absent: ssh-agent, then `~/.ssh/id_*`.
    #[serde(default)]
    pub ssh_key: Option<PathBuf>,
    /// Where ssh host keys are checked: a known_hosts file, or `accept-new`
    /// (the default files, and a first contact is accepted and recorded in
    /// `<state>/known_hosts`). Absent: `/etc/ssh/ssh_known_hosts`,
    /// `~/.ssh/known_hosts` and `<state>/known_hosts`; an unknown host fails.
    #[serde(default)]
    pub known_hosts: Option<String>,
}

/// `source.external_symlinks:` — symlinks that point outside the deployed tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExternalSymlinks {
    /// Deploy them as Git checks them out; the deploy log and history name each one.
    #[default]
    Allow,
    /// Refuse the commit before anything is written.
    Refuse,
}

/// `snapshots:` — how many timestamped copies of ROOT are kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotsConfig {
    /// Timestamped snapshots kept after a deploy (renamed ones are never counted nor evicted).
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// Recycle the snapshot this deploy would evict anyway instead of copying ROOT from scratch.
    #[serde(default = "default_true")]
    pub incremental: bool,
}

impl Default for SnapshotsConfig {
    fn default() -> Self {
        SnapshotsConfig {
            keep: default_keep(),
            incremental: true,
        }
    }
}

/// `user_content:` — rules for copying files written while the snapshot served.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserContentConfig {
    /// Honour the repository's `.gitignore` files: ignored paths are not copied back.
    #[serde(default = "default_true")]
    pub gitignore: bool,
    /// Globs copied back even when ignored.
    #[serde(default)]
    pub preserve: Vec<String>,
    /// Globs never copied back (wins over `preserve`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Directories (relative to ROOT) kept outside the trees, in `shared_dir`,
    /// and symlinked into ROOT and so into every snapshot: what requests write
    /// there is never copied, so no deploy can lose it (see [`crate::shared`]).
    #[serde(default)]
    pub shared: Vec<String>,
    /// Where the shared directories live: relative to webroot unless absolute.
    #[serde(default = "default_shared_dir")]
    pub shared_dir: PathBuf,
}

fn default_shared_dir() -> PathBuf {
    PathBuf::from("shared")
}

impl Default for UserContentConfig {
    fn default() -> Self {
        UserContentConfig {
            gitignore: true,
            preserve: Vec::new(),
            exclude: Vec::new(),
            shared: Vec::new(),
            shared_dir: default_shared_dir(),
        }
    }
}

/// `hooks:` — shell commands run in ROOT.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    /// Run after the new commit is checked out into ROOT, in order. An entry is a
    /// command, or `{run: CMD, optional: true}`, kept here as `"? CMD"` (see [`crate::hooks`]).
    #[serde(default, deserialize_with = "de_hooks")]
    pub after_checkout: Vec<String>,
    /// Run in ROOT just before the link returns to it (entries as in `after_checkout`).
    #[serde(default, deserialize_with = "de_hooks")]
    pub before_switch: Vec<String>,
    /// Run INSIDE the snapshot (cwd = the snapshot) after it is copied and
    /// before the link points at it, so that whatever the application caches
    /// about its own location (Laravel's `config:cache`) names the tree that
    /// serves it; run again in ROOT when ROOT is restored from a snapshot.
    /// A failure fails the deploy before the snapshot serves. Entries as in
    /// `after_checkout`.
    #[serde(default, deserialize_with = "de_hooks")]
    pub in_snapshot: Vec<String>,
    /// Run in ROOT after the link points at the new version (queue workers'
    /// restart), and again after an automatic rollback that follows them.
    /// Entries as in `after_checkout`.
    #[serde(default, deserialize_with = "de_hooks")]
    pub after_switch: Vec<String>,
    /// What a failing `after_switch` hook does: `report` (a warning in the
    /// history, the notification and `status`; the new version stays live)
    /// or `rollback` (back to the previous version, like a failed health check).
    #[serde(default)]
    pub after_switch_failure: AfterSwitchFailure,
    /// Fleet only: run by ONE node in its ROOT once every node has prepared,
    /// before the fleet's commit point (database migrations); a failure aborts
    /// the fleet deploy. Entries as in `after_checkout`.
    #[serde(default, deserialize_with = "de_hooks")]
    pub once: Vec<String>,
    /// Upper bound for each hook; the hook's whole process group is killed then.
    #[serde(
        default = "default_hook_timeout",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub timeout: Duration,
    /// Extra environment for every hook, e.g. `COMPOSER_AUTH: ${COMPOSER_AUTH}`:
    /// credentials reach composer without an `auth.json` in the web-reachable
    /// tree. `${VAR}` is expanded; values are masked by `config --effective`.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            after_checkout: Vec::new(),
            before_switch: Vec::new(),
            in_snapshot: Vec::new(),
            after_switch: Vec::new(),
            after_switch_failure: AfterSwitchFailure::default(),
            once: Vec::new(),
            timeout: default_hook_timeout(),
            env: Default::default(),
        }
    }
}

/// `hooks.after_switch_failure:` — what a failing `after_switch` hook does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterSwitchFailure {
    /// Keep the new version live; the failure is a warning of the deploy.
    #[default]
    Report,
    /// Go back to the previous version, as after a failed health check.
    Rollback,
}

/// `copy:` — copy engine tuning.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CopyConfig {
    /// Worker threads for copies and removals (0 or absent: the number of cores).
    #[serde(default)]
    pub threads: usize,
    /// Lower the copying threads' CPU and I/O priority (nice value 1-19).
    #[serde(default)]
    pub nice: Option<i32>,
}

/// `~/x` → `$HOME/x`; anything else as written.
fn home_path(text: &str) -> PathBuf {
    match (text.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(text),
    }
}

fn default_root() -> String {
    "ROOT".into()
}
fn default_link() -> String {
    "current".into()
}
fn default_state_dir() -> PathBuf {
    PathBuf::from(".rootswap")
}
fn default_public() -> String {
    ".".into()
}
fn default_branch() -> String {
    "main".into()
}
fn default_keep() -> usize {
    1
}
fn default_true() -> bool {
    true
}
fn default_drain() -> Drain {
    Drain::Fixed(Duration::from_secs(2))
}
fn default_drain_max() -> Duration {
    Duration::from_secs(30)
}
fn default_expect_status() -> u16 {
    200
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_health_retries() -> u32 {
    2
}
fn default_hook_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_max_connections() -> usize {
    256
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Parses a human duration such as `2s`, `500ms`, `10m` or `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("'{text}' is not a duration ({e}); write it like 2s, 500ms, 10m or 1h")
    })
}

/// Accepts a number of seconds or a human duration string, keeping the
/// YAML location in errors (an untagged enum would lose it).
struct DurationVisitor {
    allow_auto: bool,
}

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(if self.allow_auto {
            "a duration such as 2s or 500ms, or `auto`"
        } else {
            "a duration such as 2s, 500ms or 10m"
        })
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Duration::from_secs(v)))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(|s| Some(Duration::from_secs(s)))
            .map_err(|_| E::custom(format!("{v} is negative; durations are 0 or more")))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if self.allow_auto && v.trim() == "auto" {
            return Ok(None);
        }
        parse_duration(v).map(Some).map_err(|e| {
            E::custom(if self.allow_auto {
                format!("{e}, or `auto`")
            } else {
                e
            })
        })
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor { allow_auto: false })?
        .ok_or_else(|| serde::de::Error::custom("`auto` is not allowed here"))
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    if d.is_zero() {
        s.serialize_str("0s")
    } else {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

fn ser_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

/// A hook entry: `CMD`, or `{run: CMD, optional: true}` which becomes `"? CMD"`.
fn de_hooks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        run: String,
        #[serde(default)]
        optional: bool,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Cmd(String),
        Map(Entry),
    }
    let raw: Vec<Raw> = Deserialize::deserialize(d).map_err(|_: D::Error| {
        serde::de::Error::custom(
            "a hook list holds commands (strings) or `{run: CMD, optional: true}` entries",
        )
    })?;
    Ok(raw
        .into_iter()
        .map(|r| match r {
            Raw::Cmd(c) => c,
            Raw::Map(Entry {
                run,
                optional: true,
            }) => format!("? {}", crate::hook_tools::strip_optional(&run).0),
            Raw::Map(Entry {
                run,
                optional: false,
            }) => run,
        })
        .collect())
}

/// Where a configuration error was found, for messages.
struct Source<'a>(&'a Path);

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}", self.0.display())
    }
}

impl Config {
    /// Reads, parses and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read {}; create it from config.example.yaml or pass another file with -c",
                Source(path)
            )
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates configuration text; `path` is used in messages and
    /// to resolve a relative `webroot`.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let mut cfg: Config = serde_yaml_ng::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}: {}", Source(path), yaml_message(&e)))?;
        if let Some(preset) = cfg.preset {
            // The file alone parsed (so its errors came with line numbers); now
            // parse it again with the preset's values laid under it.
            cfg = crate::preset::apply(text, preset)
                .with_context(|| format!("{}: with `preset: {preset}`", Source(path)))?;
        }
        cfg.expand_env(path)?;
        if cfg.webroot.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            let base = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base
            };
            cfg.webroot = base.join(&cfg.webroot);
        }
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Replaces `${VAR}` in every string value of the configuration (found by
    /// walking its YAML form, so a new key needs nothing here). Hook commands
    /// are the exception: the shell that runs them expands their variables,
    /// including the `ROOTSWAP_*` ones only a hook sees.
    fn expand_env(&mut self, path: &Path) -> Result<()> {
        let mut value = serde_yaml_ng::to_value(&*self)
            .with_context(|| format!("{}: cannot expand ${{VAR}}s", Source(path)))?;
        expand_strings(&mut value, &mut Vec::new())
            .map_err(|(key, e)| anyhow::anyhow!("{}: key `{key}`: {e:#}", Source(path)))?;
        *self = serde_yaml_ng::from_value(value)
            .map_err(|e| anyhow::anyhow!("{}: after expanding ${{VAR}}s: {e}", Source(path)))?;
        if let Some(k) = self.source.ssh_key.as_mut() {
            *k = home_path(&k.to_string_lossy());
        }
        if let Some(k) = self.source.known_hosts.as_mut() {
            if k != "accept-new" {
                *k = home_path(k).to_string_lossy().into_owned();
            }
        }
        Ok(())
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let src = Source(path);
        for (key, name) in [("root", &self.root), ("link", &self.link)] {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                bail!(
                    "{src}: `{key}: {name}` must be a plain directory name inside webroot (no '/')"
                );
            }
        }
        if self.root == self.link {
            bail!("{src}: `root` and `link` are both `{}`; the link needs its own name, e.g. `link: current`", self.root);
        }
        if self.source.repo.trim().is_empty() {
            bail!("{src}: `source.repo` is empty; set it to the repository URL or a local path");
        }
        if self.source.branch.trim().is_empty() {
            bail!("{src}: `source.branch` is empty; set it to the branch to deploy, e.g. main");
        }
        let sub = Path::new(&self.source.subdir);
        if sub.is_absolute()
            || sub
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            bail!(
                "{src}: `source.subdir: {}` must be a path inside the repository (relative, no '..')",
                self.source.subdir
            );
        }
        if let Some(k) = &self.source.ssh_key {
            if !k.is_absolute() {
                bail!("{src}: `source.ssh_key: {}` must be an absolute path (or start with ~/), e.g. /etc/rootswap/deploy_key", k.display());
            }
        }
        if let Some(k) = &self.source.known_hosts {
            if k != "accept-new" && !Path::new(k).is_absolute() {
                bail!("{src}: `source.known_hosts: {k}` must be `accept-new` or an absolute path to a known_hosts file (or start with ~/)");
            }
        }
        let public = Path::new(&self.public);
        if public.is_absolute()
            || public
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            bail!("{src}: `public: {}` must be a directory inside the application (relative, no '..')", self.public);
        }
        if self.auto_deploy.every.is_some() && self.auto_deploy.cron.is_some() {
            bail!("{src}: `auto_deploy` has both `every` and `cron`; keep exactly one of them");
        }
        if let Some(n) = self.copy.nice {
            if !(0..=19).contains(&n) {
                bail!("{src}: `copy.nice: {n}` must be between 0 and 19");
            }
        }
        for name in self.hooks.env.keys() {
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid || name.starts_with("ROOTSWAP_") {
                bail!(
                    "{src}: `hooks.env: {name}` is not a variable name a hook can get: use letters, digits and _ \
                     (not starting with a digit), and not the ROOTSWAP_ prefix, which rootswap sets itself"
                );
            }
        }
        if let Some(f) = &self.fleet {
            f.validate().with_context(|| format!("{src}: fleet"))?;
        } else if !self.hooks.once.is_empty() {
            bail!(
                "{src}: `hooks.once` runs once per fleet deploy and needs a `fleet:` section; \
                 on a single node put these commands into `hooks.before_switch`"
            );
        }
        crate::user_content::Rules::new(&self.user_content)
            .with_context(|| format!("{src}: user_content"))?;
        crate::shared::Shared::from_config(self).with_context(|| format!("{src}: user_content"))?;
        let state = self.state_path();
        let root = self.webroot.join(&self.root);
        if normalize(&state).starts_with(normalize(&root)) {
            bail!(
                "{src}: `state_dir` ({}) is inside ROOT ({}), where the web server would serve it and deploys would overwrite it; \
                 use the default `.rootswap` (inside webroot, beside ROOT) or an absolute path elsewhere",
                state.display(),
                root.display()
            );
        }
        crate::layout::check_places(self).map_err(|e| anyhow::anyhow!("{src}: {e:#}"))?;
        Ok(())
    }

    /// The state directory as an absolute-or-webroot-relative path.
    pub fn state_path(&self) -> PathBuf {
        if self.state_dir.is_absolute() {
            self.state_dir.clone()
        } else {
            self.webroot.join(&self.state_dir)
        }
    }

    /// Number of copy threads, resolving 0 to the number of cores.
    pub fn copy_threads(&self) -> usize {
        if self.copy.threads > 0 {
            self.copy.threads
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }
    }
}

impl FleetConfig {
    /// Checks the values that need no network: names, endpoints, durations, files.
    pub fn validate(&self) -> Result<()> {
        if self.etcd.is_empty() {
            bail!("`etcd` lists no endpoint; add the client URLs of your etcd members, e.g. [http://10.0.0.1:2379]");
        }
        for e in &self.etcd {
            let ok = ["http://", "https://"]
                .iter()
                .any(|p| e.strip_prefix(p).is_some_and(|rest| rest.contains(':')));
            if !ok {
                bail!("`etcd: {e}` is not a client URL with a port; write it like http://127.0.0.1:2379");
            }
        }
        for (key, name) in [("site", &self.site), ("node", &self.node)] {
            if name.trim().is_empty()
                || name.contains('/')
                || name.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                bail!(
                    "`{key}: {name}` must be a non-empty name without '/' or spaces (it becomes part of etcd keys), e.g. shop-prod"
                );
            }
        }
        if self.lease < Duration::from_secs(1) {
            bail!(
                "`lease: {}` is shorter than etcd's lease granularity (1s); use 2s or more",
                humantime::format_duration(self.lease)
            );
        }
        if self.prepare_timeout < self.lease {
            bail!("`prepare_timeout` is shorter than `lease`; give the nodes at least one lease to prepare");
        }
        if self.switch_delay >= self.lease {
            bail!(
                "`switch_delay: {}` is not shorter than `lease`; the nodes switch this long after the commit point, use e.g. 200ms",
                humantime::format_duration(self.switch_delay)
            );
        }
        if self.user.is_some() != self.password.is_some() {
            bail!("`user` and `password` go together; set both or neither");
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            bail!("`cert_file` and `key_file` go together; set both or neither");
        }
        if self.cert_file.is_some() && self.ca_file.is_none() {
            bail!("`cert_file` needs `ca_file` (the CA of the etcd servers) to turn TLS on");
        }
        for (key, p) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if let Some(p) = p {
                if !p.is_file() {
                    bail!("`{key}: {}` is not a readable file", p.display());
                }
            }
        }
        Ok(())
    }
}

/// Lexically normalizes a path (removes `.` and folds `..`), without touching the disk.
pub fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Keys whose strings are shell commands, left for the shell to expand.
const SHELL_KEYS: [&str; 5] = [
    "hooks.after_checkout",
    "hooks.before_switch",
    "hooks.in_snapshot",
    "hooks.after_switch",
    "hooks.once",
];

/// Expands `${VAR}` in every string below `v`; on error, the dotted key.
fn expand_strings(
    v: &mut serde_yaml_ng::Value,
    key: &mut Vec<String>,
) -> Result<(), (String, anyhow::Error)> {
    use serde_yaml_ng::Value;
    match v {
        Value::String(text) => {
            *text = expand(text).map_err(|e| (key.join("."), e))?;
        }
        Value::Sequence(items) => {
            if SHELL_KEYS.contains(&key.join(".").as_str()) {
                return Ok(());
            }
            for item in items {
                expand_strings(item, key)?;
            }
        }
        Value::Mapping(m) => {
            // Unset optional keys: left out, so that they read back as unset.
            m.retain(|_, item| !item.is_null());
            for (k, item) in m.iter_mut() {
                key.push(k.as_str().map_or_else(|| format!("{k:?}"), str::to_owned));
                let r = expand_strings(item, key);
                key.pop();
                r?;
            }
        }
        Value::Tagged(t) => expand_strings(&mut t.value, key)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// Replaces `${VAR}` with the environment's value.
fn expand(text: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            bail!("`${{` without a closing `}}` in '{text}'");
        };
        let name = &after[..end];
        match std::env::var(name) {
            Ok(v) => out.push_str(&v),
            Err(_) => bail!("uses ${{{name}}}, but the environment variable {name} is not set"),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Rewrites serde_yaml_ng's message into a shorter one that names the line.
fn yaml_message(e: &serde_yaml_ng::Error) -> String {
    let msg = e.to_string();
    match e.location() {
        Some(loc) if !msg.contains("line") => format!("line {}: {msg}", loc.line()),
        _ => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/etc/rootswap/test.yaml"))
    }

    #[test]
    fn defaults_fill_in() {
        let c = parse("webroot: /srv/w\nsource:\n  repo: /srv/app.git\n").unwrap();
        assert_eq!(c.root, "ROOT");
        assert_eq!(c.link, "current");
        assert_eq!(c.source.branch, "main");
        assert_eq!(c.snapshots.keep, 1);
        assert_eq!(c.drain, Drain::Fixed(Duration::from_secs(2)));
        assert_eq!(c.state_path(), PathBuf::from("/srv/w/.rootswap"));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("webroot: /srv/w\nsource:\n  repo: x\n  brnach: main\n").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("brnach"), "{msg}");
        assert!(msg.contains("line 4"), "{msg}");
        assert!(msg.contains("test.yaml"), "{msg}");
    }

    #[test]
    fn missing_webroot_is_named() {
        let msg = format!("{:#}", parse("source:\n  repo: x\n").unwrap_err());
        assert!(msg.contains("webroot"), "{msg}");
    }

    #[test]
    fn durations() {
        let c =
            parse("webroot: /w\ndrain: 500ms\nhooks:\n  timeout: 1m\nsource: {repo: x}\n").unwrap();
        assert_eq!(c.drain, Drain::Fixed(Duration::from_millis(500)));
        assert_eq!(c.hooks.timeout, Duration::from_secs(60));
        let c = parse("webroot: /w\ndrain: auto\nsource: {repo: x}\n").unwrap();
        assert_eq!(c.drain, Drain::Auto);
        assert_eq!(c.hooks.timeout, Duration::from_secs(600), "default");
        let msg = format!(
            "{:#}",
            parse("webroot: /w\ndrain: soon\nsource: {repo: x}\n").unwrap_err()
        );
        assert!(msg.contains("soon") && msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn env_expansion() {
        std::env::set_var("ROOTSWAP_TEST_REPO", "/srv/repo.git");
        let c = parse("webroot: /w\nsource: {repo: '${ROOTSWAP_TEST_REPO}'}\n").unwrap();
        assert_eq!(c.source.repo, "/srv/repo.git");
        let msg = format!(
            "{:#}",
            parse("webroot: /w\nsource: {repo: '${ROOTSWAP_NOPE_NOPE}'}\n").unwrap_err()
        );
        assert!(
            msg.contains("ROOTSWAP_NOPE_NOPE") && msg.contains("source.repo"),
            "{msg}"
        );
    }

    #[test]
    fn every_hook_list_is_left_for_the_shell() {
        for key in [
            "after_checkout",
            "before_switch",
            "in_snapshot",
            "after_switch",
            "once",
        ] {
            let r = parse(&format!(
                "webroot: /w\nsource: {{repo: x}}\nhooks: {{{key}: ['echo ${{ROOTSWAP_UNSET_IN_TESTS}}']}}\n"
            ));
            // `once` needs a fleet: that may be the complaint, never the variable.
            if let Err(e) = r {
                let msg = format!("{e:#}");
                assert!(!msg.contains("ROOTSWAP_UNSET_IN_TESTS"), "{key}: {msg}");
            }
        }
    }

    #[test]
    fn env_expansion_covers_every_string_but_hook_commands() {
        std::env::set_var("ROOTSWAP_TEST_PORT", "9811");
        std::env::set_var("ROOTSWAP_TEST_HOST", "127.0.0.1");
        let c = parse(
            "webroot: /w\nsource: {repo: x}\ntrigger: {listen: '${ROOTSWAP_TEST_HOST}:${ROOTSWAP_TEST_PORT}'}\n\
             health_check: {url: 'http://${ROOTSWAP_TEST_HOST}/h.php'}\n\
             user_content: {preserve: ['${ROOTSWAP_TEST_PORT}/**']}\n\
             hooks: {after_checkout: ['echo ${ROOTSWAP_COMMIT}'], env: {A: '${ROOTSWAP_TEST_PORT}'}}\n",
        )
        .unwrap();
        assert_eq!(c.trigger.listen.as_deref(), Some("127.0.0.1:9811"));
        assert_eq!(c.health_check.unwrap().url, "http://127.0.0.1/h.php");
        assert_eq!(c.user_content.preserve, vec!["9811/**"]);
        assert_eq!(c.hooks.env["A"], "9811");
        // The shell expands hook commands when it runs them.
        assert_eq!(c.hooks.after_checkout, vec!["echo ${ROOTSWAP_COMMIT}"]);
        let msg = format!(
            "{:#}",
            parse("webroot: /w\nsource: {repo: x}\ntrigger: {listen: '${ROOTSWAP_NOPE_LISTEN}'}\n")
                .unwrap_err()
        );
        assert!(
            msg.contains("ROOTSWAP_NOPE_LISTEN") && msg.contains("trigger.listen"),
            "{msg}"
        );
    }

    #[test]
    fn state_dir_inside_root_is_refused() {
        let msg = format!(
            "{:#}",
            parse("webroot: /w\nstate_dir: ROOT/.state\nsource: {repo: x}\n").unwrap_err()
        );
        assert!(msg.contains("inside ROOT"), "{msg}");
    }

    #[test]
    fn a_layout_that_points_at_itself_is_refused_naming_both_keys() {
        for (yaml, expect) in [
            (
                "link: .rootswap\n",
                &[
                    "`link: .rootswap`",
                    "is the same directory as `state_dir: .rootswap`",
                    "set `link`",
                ][..],
            ),
            (
                "state_dir: current/.state\n",
                &[
                    "`link: current`",
                    "holds `state_dir: current/.state`",
                    "set `state_dir`",
                ],
            ),
            (
                "link: ROOT_live\n",
                &["`link: ROOT_live`", "form of a snapshot name", "`current`"],
            ),
            (
                "state_dir: ROOT_state\n",
                &[
                    "`state_dir: ROOT_state`",
                    "form of a snapshot name",
                    "`.rootswap`",
                ],
            ),
            (
                "state_dir: shared\n",
                &[
                    "`state_dir: shared`",
                    "`user_content.shared_dir: shared`",
                    "set `state_dir`",
                ],
            ),
            (
                "user_content: {shared_dir: .rootswap/files}\n",
                &[
                    "holds `user_content.shared_dir: .rootswap/files`",
                    "set `user_content.shared_dir`",
                ],
            ),
            (
                "state_dir: /\n",
                &["`state_dir: /`", "is the webroot or a directory above it"],
            ),
            (
                "state_dir: .\n",
                &["`state_dir: .`", "is the webroot or a directory above it"],
            ),
        ] {
            let text = format!("webroot: /w\nsource: {{repo: x}}\n{yaml}");
            let msg = format!("{:#}", parse(&text).unwrap_err());
            for e in expect {
                assert!(msg.contains(e), "{yaml}: expected {e:?} in {msg}");
            }
        }
        for ok in [
            "link: live\n",
            "state_dir: /var/lib/rootswap/site\n",
            "root: app\nlink: www\n",
        ] {
            let text = format!("webroot: /w\nsource: {{repo: x}}\n{ok}");
            assert!(parse(&text).is_ok(), "{ok}");
        }
    }

    #[test]
    fn the_example_config_is_valid() {
        let c = parse(include_str!("../config.example.yaml")).unwrap();
        assert_eq!(c.webroot, PathBuf::from("/var/www/webroot"));
        assert!(
            c.user_content.preserve.is_empty(),
            "the example shows defaults"
        );
    }

    #[test]
    fn fleet_defaults_and_errors() {
        let base = "webroot: /w\nsource: {repo: x}\n";
        let c = parse(base).unwrap();
        assert!(c.fleet.is_none(), "no fleet section: single node");
        let c = parse(&format!(
            "{base}fleet: {{etcd: ['http://127.0.0.1:2379'], site: shop, node: web1}}\n"
        ))
        .unwrap();
        let f = c.fleet.unwrap();
        assert_eq!(f.lease, Duration::from_secs(10));
        assert_eq!(f.prepare_timeout, Duration::from_secs(600));
        assert_eq!(f.switch_delay, Duration::from_millis(200));
        assert_eq!(f.node, "web1");
        let c = parse(&format!(
            "{base}fleet: {{etcd: ['http://127.0.0.1:2379'], site: shop}}\n"
        ))
        .unwrap();
        assert!(!c.fleet.unwrap().node.is_empty(), "host name by default");
        for (bad, want) in [
            ("{etcd: [], site: shop}", "no endpoint"),
            ("{etcd: ['127.0.0.1'], site: shop}", "client URL"),
            ("{etcd: ['http://a:1'], site: a/b}", "without '/'"),
            ("{etcd: ['http://a:1'], site: s, node: 'x y'}", "node"),
            (
                "{etcd: ['http://a:1'], site: s, lease: 100ms}",
                "granularity",
            ),
            ("{etcd: ['http://a:1'], site: s, user: u}", "together"),
            (
                "{etcd: ['http://a:1'], site: s, lease: 2s, switch_delay: 2s}",
                "`switch_delay: 2s` is not shorter than `lease`",
            ),
            (
                "{etcd: ['http://a:1'], site: s, ca_file: /nope/ca.pem}",
                "/nope/ca.pem",
            ),
            ("{etcd: ['http://a:1'], site: s, sight: x}", "sight"),
        ] {
            let msg = format!("{:#}", parse(&format!("{base}fleet: {bad}\n")).unwrap_err());
            assert!(msg.contains(want), "{bad}: {msg}");
        }
        let msg = format!(
            "{:#}",
            parse(&format!("{base}hooks: {{once: ['php artisan migrate']}}\n")).unwrap_err()
        );
        assert!(msg.contains("needs a `fleet:`"), "{msg}");
    }

    #[test]
    fn bad_glob_names_pattern() {
        let msg = format!(
            "{:#}",
            parse("webroot: /w\nsource: {repo: x}\nuser_content: {preserve: ['a/[b']}\n")
                .unwrap_err()
        );
        assert!(msg.contains("a/[b"), "{msg}");
    }
}
