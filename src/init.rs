//! `rootswap init`: look at an existing site, pick the preset, write a
//! commented `rootswap.yaml`, find the web server that serves it
//! ([`crate::webserver`]), and say what to change in that server's
//! configuration and what to run next.
//!
//! Non-interactive with flags. In a terminal it asks only for what it could
//! not find out: the webroot (default: the current directory), the repository
//! (read from the site's `.git` when there is one), the branch (likewise;
//! default `main`), and the preset when no framework was recognised. An
//! existing config file is never overwritten without `--force`; a file that
//! would not load is never written.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::preset::{self, Detection, Preset};
use crate::webserver::{self, Found, Server};

/// What `init` was told on the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where to write the config (`-c`).
    pub config_path: PathBuf,
    /// `--webroot`.
    pub webroot: Option<PathBuf>,
    /// `--repo`.
    pub repo: Option<String>,
    /// `--branch`.
    pub branch: Option<String>,
    /// `--preset` (skips detection).
    pub preset: Option<Preset>,
    /// `--force`: replace an existing config file.
    pub force: bool,
    /// `--server` (skips detection).
    pub server: Option<Server>,
}

/// What `init` did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The file written.
    pub path: PathBuf,
    /// The webroot configured.
    pub webroot: PathBuf,
    /// The directory the site was found in, if any.
    pub site: Option<PathBuf>,
    /// The preset chosen, and why.
    pub detection: Detection,
    /// The document root inside the application.
    pub public: String,
    /// Notes for the operator (migration steps, missing directories).
    pub notes: Vec<String>,
    /// The web server the advice is for (None: none found, nginx's advice).
    pub server: Option<Server>,
    /// Every web server found on this machine, the most likely first.
    pub servers_found: Vec<Found>,
}

/// Asks questions on a terminal (or not at all).
pub struct Asker<'a> {
    /// Answers come from here; None: never ask.
    pub input: Option<&'a mut dyn BufRead>,
    /// Questions go here.
    pub prompt: &'a mut dyn Write,
}

impl Asker<'_> {
    /// Asks `question`; an empty answer takes `default`. None when not interactive.
    fn ask(&mut self, question: &str, default: Option<&str>) -> Result<Option<String>> {
        let Some(input) = self.input.as_mut() else {
            return Ok(None);
        };
        match default {
            Some(d) => write!(self.prompt, "{question} [{d}]: ")?,
            None => write!(self.prompt, "{question}: ")?,
        }
        self.prompt.flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            bail!("no answer to \"{question}\" (end of input); pass it as a flag instead");
        }
        let answer = line.trim();
        Ok(Some(if answer.is_empty() {
            default.unwrap_or("").to_string()
        } else {
            answer.to_string()
        }))
    }
}

/// Files whose presence means "a site lives here".
const SITE_MARKERS: [&str; 8] = [
    "composer.json",
    "index.php",
    "artisan",
    "wp-config.php",
    "wp-load.php",
    "symfony.lock",
    "public/index.php",
    "web/index.php",
];

fn looks_like_site(dir: &Path) -> bool {
    SITE_MARKERS.iter().any(|m| dir.join(m).exists())
}

/// Finds the site under `webroot`: `ROOT`, a real `current` directory, or webroot itself.
fn find_site(webroot: &Path) -> Option<PathBuf> {
    let root = webroot.join("ROOT");
    let current = webroot.join("current");
    let current_is_dir = std::fs::symlink_metadata(&current)
        .map(|m| m.is_dir())
        .unwrap_or(false);
    if root.is_dir() && (looks_like_site(&root) || !current_is_dir) {
        return Some(root);
    }
    if current_is_dir && looks_like_site(&current) {
        return Some(current);
    }
    if looks_like_site(webroot) {
        return Some(webroot.to_path_buf());
    }
    root.is_dir().then_some(root)
}

/// The origin URL and checked-out branch of a Git work tree at `dir`, if it is one.
fn git_origin(dir: &Path) -> (Option<String>, Option<String>) {
    let Ok(repo) = git2::Repository::open(dir) else {
        return (None, None);
    };
    let url = repo
        .find_remote("origin")
        .ok()
        .and_then(|r| r.url().map(str::to_owned));
    let branch = repo
        .head()
        .ok()
        .filter(|h| h.is_branch())
        .and_then(|h| h.shorthand().map(str::to_owned));
    (url, branch)
}

fn yaml_scalar(s: &str) -> String {
    match serde_yaml_ng::to_string(s) {
        Ok(t) => t.trim_end().to_string(),
        Err(_) => format!("{s:?}"),
    }
}

/// The preset's values, commented out, except its shared directories, which
/// are written explicitly (with the `user_content:` line above them).
fn preset_block(p: Preset) -> String {
    let mut out = String::new();
    for l in p.yaml().trim().lines() {
        if l == "user_content:" {
            out.push_str("user_content:\n");
        } else if l.trim_start().starts_with("shared:") {
            out.push_str(
                "  # Uploads (and logs) live once, outside the trees, symlinked into ROOT and\n\
                 \x20 # every snapshot: no deploy can lose or resurrect them (docs/sites.md). The\n\
                 \x20 # first deploy moves them from ROOT to webroot/shared/. `shared: []` turns it off.\n",
            );
            out.push_str(l);
            out.push('\n');
        } else {
            let indent = l.len() - l.trim_start().len();
            out.push_str(&format!("{}# {}\n", &l[..indent], l.trim_start()));
        }
    }
    out
}

/// Renders the commented config file.
pub fn render(
    webroot: &Path,
    repo: &str,
    branch: &str,
    detection: &Detection,
    public: &str,
    site: Option<&Path>,
) -> String {
    let p = detection.preset;
    let mut t = String::new();
    t.push_str("# rootswap configuration, written by `rootswap init`.\n");
    match site {
        Some(dir) if !detection.evidence.is_empty() => t.push_str(&format!(
            "# Site found in {}: {p} ({}).\n",
            dir.display(),
            detection.evidence.join(", ")
        )),
        Some(dir) => t.push_str(&format!(
            "# Site found in {}; no framework recognised.\n",
            dir.display()
        )),
        None => t.push_str("# No site found yet; the first deploy creates ROOT.\n"),
    }
    t.push_str(
        "# Every key is explained in config.example.yaml; `rootswap -c THIS_FILE config --effective`\n\
         # prints what rootswap will use (preset values and defaults filled in).\n\n",
    );
    t.push_str(
        "# Directory holding ROOT (the deployed site), its snapshots ROOT_YYYY.MM.DD-HH.MM.SS\n",
    );
    t.push_str(
        "# and the serving symlink `current`. Point the web server's root through the link.\n",
    );
    t.push_str(&format!(
        "webroot: {}\n\n",
        yaml_scalar(&webroot.to_string_lossy())
    ));
    t.push_str("source:\n");
    t.push_str("  # Repository to deploy: https://, ssh (git@host:org/app.git) or a local path.\n");
    t.push_str(&format!("  repo: {}\n", yaml_scalar(repo)));
    t.push_str("  # Branch deployed by `rootswap deploy` and followed by `rootswap serve`.\n");
    t.push_str(&format!("  branch: {}\n\n", yaml_scalar(branch)));
    t.push_str(&format!(
        "# Framework preset ({}): fills in public, user_content and hooks.\n",
        preset::ALL.map(Preset::name).join(", ")
    ));
    t.push_str(
        "# Set any of those keys here to override it; a list you set replaces the preset's list.\n",
    );
    t.push_str(&format!("preset: {p}\n"));
    if p == Preset::Generic {
        if public != "." {
            t.push_str("\n# Document root inside the application (found by init).\n");
            t.push_str(&format!("public: {}\n", yaml_scalar(public)));
        }
        t.push_str("\n# Commands run in ROOT after the new commit is checked out (a failure aborts the deploy\n");
        t.push_str("# and leaves the old version live). A leading \"? \" makes a hook optional: skipped when\n");
        t.push_str("# its tool (composer, php SCRIPT, a path) is missing.\n");
        match site {
            Some(dir) if dir.join("composer.json").exists() => {
                t.push_str("hooks:\n  after_checkout:\n    - composer install --no-dev --no-interaction --prefer-dist --optimize-autoloader\n")
            }
            _ => t.push_str("# hooks:\n#   after_checkout: [\"composer install --no-dev --no-interaction\"]\n"),
        }
    } else {
        t.push_str(&format!(
            "#\n# The {p} preset sets (uncomment and edit to override):\n"
        ));
        t.push_str(&preset_block(p));
    }
    t.push_str(
        "\n# Wait after pointing the link away from a tree before that tree is changed:\n\
         # longer than your slowest request (or `auto` with opcache.status_path).\n\
         drain: 2s\n\n\
         snapshots:\n  # Timestamped copies of ROOT kept after a deploy (Enscale keeps one).\n  keep: 1\n\n\
         # Clear php-fpm's OPcache after each deploy (never by reloading php-fpm):\n\
         # opcache:\n#   fastcgi: unix:/run/php/php8.2-fpm.sock\n",
    );
    t
}

/// Runs `init`: decides, validates, writes. Nothing is written when anything fails.
pub fn run(opts: &Options, asker: &mut Asker<'_>) -> Result<Outcome> {
    let path = &opts.config_path;
    if path.exists() && !opts.force {
        bail!(
            "{} already exists; rootswap init does not overwrite it. Pass --force to replace it, \
             or -c OTHER.yaml to write another file",
            path.display()
        );
    }
    let webroot = choose_webroot(opts, asker)?;
    let mut notes = Vec::new();
    let site = if webroot.is_dir() {
        find_site(&webroot)
    } else {
        None
    };
    if !webroot.exists() {
        notes.push(format!(
            "{} does not exist yet: create it (mkdir -p) before the first deploy",
            webroot.display()
        ));
    }
    let detection = choose_preset(opts, site.as_deref(), asker)?;
    let (found_repo, found_branch) = site.as_deref().map(git_origin).unwrap_or((None, None));
    let repo = choose_repo(opts, found_repo, site.as_deref().unwrap_or(&webroot), asker)?;
    let branch = match (&opts.branch, found_branch) {
        (Some(b), _) => b.clone(),
        (None, Some(b)) => b,
        (None, None) => asker
            .ask("branch to deploy", Some("main"))?
            .unwrap_or_else(|| "main".into()),
    };
    let public = public_dir(&detection, site.as_deref());
    notes.extend(
        site.as_deref()
            .and_then(|dir| placement_note(dir, &webroot)),
    );
    let text = render(
        &webroot,
        &repo,
        &branch,
        &detection,
        &public,
        site.as_deref(),
    );
    Config::parse(&text, path)
        .context("the generated configuration does not load (a bug: please report it)")?;
    let private = crate::redact::split_userinfo(&repo).1.is_some();
    write_config(path, &text, opts.force, private)?;
    if private {
        notes.push(password_note(path));
    }
    let servers_found = webserver::detect(&webserver::search_root(), &webroot);
    let server = opts
        .server
        .or_else(|| webserver::serving(&servers_found).or(servers_found.first().map(|f| f.server)));
    Ok(Outcome {
        path: path.clone(),
        webroot,
        site,
        detection,
        public,
        notes,
        server,
        servers_found,
    })
}

/// The webroot: `--webroot`, or asked (the current directory by default),
/// made absolute. It may not exist yet, but may not be a file.
fn choose_webroot(opts: &Options, asker: &mut Asker<'_>) -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let webroot = match &opts.webroot {
        Some(w) => w.clone(),
        None => match asker.ask("webroot (the directory that holds ROOT and the link `current`)", Some(&cwd.to_string_lossy()))? {
            Some(a) => PathBuf::from(a),
            None => bail!("rootswap init needs --webroot DIR (the directory that holds ROOT) when not run in a terminal"),
        },
    };
    let webroot = crate::config::normalize(&cwd.join(webroot));
    if webroot.exists() && !webroot.is_dir() {
        bail!("--webroot {} is not a directory", webroot.display());
    }
    Ok(webroot)
}

/// The preset: `--preset`, else detected in the site, else asked (generic
/// when nobody answers).
fn choose_preset(opts: &Options, site: Option<&Path>, asker: &mut Asker<'_>) -> Result<Detection> {
    let mut detection = match (&opts.preset, site) {
        (Some(p), _) => Detection {
            preset: *p,
            evidence: vec!["--preset".into()],
        },
        (None, Some(dir)) => preset::detect(dir),
        (None, None) => Detection {
            preset: Preset::Generic,
            evidence: Vec::new(),
        },
    };
    if opts.preset.is_none() && detection.evidence.is_empty() {
        let list = preset::ALL.map(Preset::name).join(", ");
        if let Some(a) = asker.ask(
            &format!("no framework recognised; preset ({list})"),
            Some("generic"),
        )? {
            let p: Preset = serde_yaml_ng::from_str(&a)
                .map_err(|_| anyhow::anyhow!("`{a}` is not a preset; use one of {list}"))?;
            detection = Detection {
                preset: p,
                evidence: vec!["your answer".into()],
            };
        }
    }
    Ok(detection)
}

/// The repository: `--repo`, else the site's `origin`, else asked; `looked`
/// is where an `origin` was looked for (named when there is none).
fn choose_repo(
    opts: &Options,
    found: Option<String>,
    looked: &Path,
    asker: &mut Asker<'_>,
) -> Result<String> {
    Ok(match (&opts.repo, found) {
        (Some(r), _) => r.clone(),
        (None, Some(r)) => r,
        (None, None) => match asker.ask("Git repository to deploy (URL or path)", None)? {
            Some(a) if !a.trim().is_empty() => a,
            Some(_) => bail!("a repository is needed; pass --repo URL"),
            None => bail!(
                "rootswap init needs --repo URL: {} is not a Git work tree with an `origin` remote to read it from",
                looked.display()
            ),
        },
    })
}

/// The served subdirectory: the preset's, or for a generic site the one
/// that holds `index.php` (`public`, `web`, else the tree itself).
fn public_dir(detection: &Detection, site: Option<&Path>) -> String {
    if detection.preset == Preset::Generic {
        match site {
            Some(dir) if dir.join("public/index.php").is_file() => "public".to_string(),
            Some(dir) if dir.join("web/index.php").is_file() => "web".to_string(),
            _ => ".".to_string(),
        }
    } else {
        detection.preset.public().to_string()
    }
}

/// What to move when the site found is not where rootswap deploys (the
/// webroot itself, or a real `current` directory).
fn placement_note(dir: &Path, webroot: &Path) -> Option<String> {
    if dir == webroot {
        Some(format!(
            "the site sits directly in {w}; rootswap deploys into {w}/ROOT and serves it through {w}/current. \
             Either move the site one level down (mkdir {w}/ROOT and move its files there) or set webroot \
             to the parent directory and root: {name}",
            w = webroot.display(),
            name = webroot.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        ))
    } else if dir.ends_with("current") {
        Some(format!(
            "{} is a real directory: move it to ROOT (mv current ROOT in {}); the first deploy creates the link current -> ROOT",
            dir.display(),
            webroot.display()
        ))
    } else {
        None
    }
}

/// What to know about a configuration that holds the repository's password.
fn password_note(path: &Path) -> String {
    format!(
        "{} holds the password of source.repo, so it is readable by its owner only (mode 0600): \
         if rootswap runs as another user, chown the file to that user, or keep the password out of \
         the file by writing repo: https://USER:${{GIT_PASSWORD}}@HOST/PATH and setting GIT_PASSWORD \
         in rootswap's environment",
        path.display()
    )
}

/// Writes `text` to `path` through a temporary file: replaced whole with
/// `force`, else created only if still absent. `private`: readable by its
/// owner only (it holds a password), whatever the umask.
fn write_config(path: &Path, text: &str, force: bool, private: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rootswap.yaml".into());
    let tmp = dir.join(format!(".{name}.init-{}", std::process::id()));
    // A stale file of that name would keep its mode: start from none.
    let _ = std::fs::remove_file(&tmp);
    match private {
        true => crate::fsutil::write_private(&tmp, text.as_bytes()),
        false => std::fs::write(&tmp, text),
    }
    .with_context(|| format!("cannot write {}", tmp.display()))?;
    let done = if force {
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    } else {
        let r = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        r.map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
                "{} appeared meanwhile; pass --force to replace it",
                path.display()
            ),
            _ => anyhow::anyhow!("cannot write {}: {e}", path.display()),
        })
    };
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

/// What to tell the operator after writing the file.
pub fn report(o: &Outcome) -> String {
    let mut t = String::new();
    let why = if o.detection.evidence.is_empty() {
        "nothing recognised".to_string()
    } else {
        o.detection.evidence.join(", ")
    };
    t.push_str(&format!(
        "wrote {} (preset {}: {why})\n",
        o.path.display(),
        o.detection.preset
    ));
    for n in &o.notes {
        t.push_str(&format!("note: {n}\n"));
    }
    let docroot = if o.public == "." {
        o.webroot.join("current")
    } else {
        o.webroot.join("current").join(&o.public)
    };
    t.push_str(&server_found(o));
    t.push_str(&server_advice(o.server.unwrap_or(Server::Nginx), &docroot));
    let c = shell_word(&o.path.to_string_lossy());
    t.push_str(&format!(
        "\nnext:\n  rootswap -c {c} deploy --dry-run   # what the first deploy would do\n  rootswap -c {c} deploy\n"
    ));
    t
}

/// Which web server was found (or chosen), and the others.
fn server_found(o: &Outcome) -> String {
    let listed: Vec<String> = o.servers_found.iter().map(Found::describe).collect();
    let tie = o.servers_found.len() > 1 && webserver::serving(&o.servers_found).is_none();
    match (o.server, o.servers_found.first()) {
        (None, _) => "\nweb server: none found on this machine; the advice is for nginx \
                      (rootswap init --server nginx|apache|caddy|litespeed chooses)\n"
            .to_string(),
        (Some(s), Some(first)) if first.server == s && !tie => {
            format!("\nweb server: {}\n", first.describe())
        }
        (Some(s), _) if tie => format!(
            "\nweb servers found: {}; the advice is for {s} (pass --server to choose another)\n",
            listed.join("; ")
        ),
        (Some(s), _) => format!("\nweb server: {s} (--server)\n"),
    }
}

/// What to set in `server`'s configuration so it serves `docroot` through
/// the link with PHP seeing real paths, and which command prints it all.
fn server_advice(server: Server, docroot: &Path) -> String {
    let d = docroot.display();
    match server {
        Server::Nginx => format!(
            "nginx: serve the site through the link and hand PHP the real path, so a request that\n\
             started on one tree finishes on it. In the server block:\n\
             \x20   root {d};\n\
             and after `include snippets/fastcgi-php.conf;` (or fastcgi.conf) in the PHP location:\n\
             \x20   fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;\n\
             \x20   fastcgi_param DOCUMENT_ROOT   $realpath_root;\n\
             run `rootswap nginx` to get the server block.\n"
        ),
        Server::Caddy => format!(
            "Caddy: serve the site through the link and let Caddy resolve it once per request, so\n\
             PHP sees the real path and a request that started on one tree finishes on it. In the site block:\n\
             \x20   root * {d}\n\
             \x20   php_fastcgi unix//run/php/php-fpm.sock {{\n\
             \x20       resolve_root_symlink\n\
             \x20   }}\n\
             run `rootswap caddy` to get the site block.\n"
        ),
        Server::Apache => format!(
            "Apache: serve the site through the link (DocumentRoot {d}) and make PHP see real paths:\n\
             realpath_cache_size=0 and opcache.revalidate_path=1 (docs/zero-downtime.md#apache); with mod_php\n\
             set opcache.http. Run `rootswap apache --fastcgi ADDR` or `rootswap apache --mod-php` to get the <VirtualHost>.\n"
        ),
        Server::LiteSpeed => format!(
            "LiteSpeed/OpenLiteSpeed: no rootswap command prints its configuration. Set the document\n\
             root to {d} and follow docs/webservers.md#litespeed.\n"
        ),
    }
}

fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rendered_config_loads() {
        for p in preset::ALL {
            let d = Detection {
                preset: p,
                evidence: vec!["x".into()],
            };
            let text = render(
                Path::new("/srv/w w"),
                "https://e.com/a b.git",
                "main",
                &d,
                p.public(),
                None,
            );
            let c = Config::parse(&text, Path::new("/tmp/x.yaml"))
                .unwrap_or_else(|e| panic!("{p}: {e:#}\n{text}"));
            assert_eq!(c.preset, Some(p));
            assert_eq!(c.public, p.public());
            assert_eq!(c.source.repo, "https://e.com/a b.git");
        }
    }

    #[test]
    fn asks_only_when_interactive() {
        let mut out = Vec::new();
        let mut a = Asker {
            input: None,
            prompt: &mut out,
        };
        assert_eq!(a.ask("q", Some("d")).unwrap(), None);
        let mut input = std::io::Cursor::new(b"\nfoo\n".to_vec());
        let mut a = Asker {
            input: Some(&mut input),
            prompt: &mut out,
        };
        assert_eq!(a.ask("q", Some("d")).unwrap().as_deref(), Some("d"));
        assert_eq!(a.ask("q", None).unwrap().as_deref(), Some("foo"));
        assert!(a.ask("q", None).is_err());
    }
}
