//! The configuration's keys: one struct per section, with defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::adapters::{
    de_duration, de_hooks, de_opt_duration, ser_duration, ser_opt_duration, DurationVisitor,
};

/// The whole configuration, as read from the file and validated.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file this configuration was read from (empty when parsed from
    /// text alone); for messages.
    #[serde(skip)]
    pub path: PathBuf,
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
    /// PHP inside the web server (Apache's mod_php): the `http://127.0.0.1:PORT`
    /// base URL through which rootswap runs its reset script instead of FastCGI
    /// (the `<VirtualHost>` of `rootswap apache --mod-php` maps it).
    #[serde(default)]
    pub http: Option<String>,
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
    /// Commits fetched from each branch tip (`0`, the default: the whole
    /// history). A revision older than that is fetched when asked for.
    /// Ignored for a repository on this machine, which is read in place.
    #[serde(default)]
    pub depth: u32,
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
    /// Deploy the commit's Git submodules (recursively) at the commits it
    /// records, fetched into the cache repository; `false`: submodules are
    /// skipped with a warning.
    #[serde(default = "default_true")]
    pub submodules: bool,
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

impl Config {
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
