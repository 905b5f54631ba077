//! Reading an Apache 2.4 configuration: directives and sections
//! (`<VirtualHost>`, `<FilesMatch>`, `<If>` ...) with `Include` and
//! `IncludeOptional` followed, from a file given, or from the main file
//! `apache2ctl -t -D DUMP_INCLUDES` names (Debian's
//! `/etc/apache2/apache2.conf` when it cannot be asked); and the sites it
//! serves, each with its document root, PHP handler and PHP settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// One directive, or a section with the directives inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Its name, lower case (`documentroot`, `virtualhost` for a section).
    pub name: String,
    /// Its arguments, quotes removed.
    pub args: Vec<String>,
    /// What a section holds (empty for a directive).
    pub children: Vec<Directive>,
}

/// A configuration as read.
#[derive(Debug, Clone)]
pub struct Conf {
    /// Where it came from (the main file).
    pub source: String,
    /// Its directives, includes replaced by what they include.
    pub directives: Vec<Directive>,
    /// Includes that could not be read.
    pub problems: Vec<String>,
}

/// How a site runs PHP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    /// `SetHandler "proxy:…"`: php-fpm through mod_proxy_fcgi.
    Fpm(String),
    /// `SetHandler application/x-httpd-php`: mod_php.
    ModPhp,
    /// No PHP handler found.
    None,
}

/// A `<VirtualHost>` as doctor needs it.
#[derive(Debug, Clone)]
pub struct Site {
    /// Its addresses (`*:80`).
    pub addresses: String,
    /// Its `DocumentRoot` (the server's when it has none).
    pub document_root: String,
    /// How it runs PHP (its own handler, else the server's).
    pub handler: Handler,
    /// `php_admin_value`/`php_admin_flag`/`php_value`/`php_flag` settings
    /// (the host's over the server's), names as written.
    pub php_admin: BTreeMap<String, String>,
}

/// Splits a line into words: double or single quotes group, a backslash escapes.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quote, mut started, mut chars) = (None, false, line.chars());
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (_, '\\') => cur.extend(chars.next()),
            (None, c) if c.is_whitespace() => {
                if started || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                started = false;
            }
            (_, c) => cur.push(c),
        }
    }
    if started || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Parses configuration text (includes are left as directives).
pub fn parse(text: &str, source: &str) -> Result<Vec<Directive>> {
    let mut stack: Vec<Directive> = vec![Directive {
        name: String::new(),
        args: vec![],
        children: vec![],
    }];
    let joined = text.replace("\\\r\n", " ").replace("\\\n", " ");
    for (n, raw) in joined.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(end) = line.strip_prefix("</") {
            let name = end.trim_end_matches('>').trim().to_ascii_lowercase();
            let open = stack.pop().filter(|d| d.name == name && !stack.is_empty());
            let Some(done) = open else {
                bail!("{source}: line {}: `{line}` closes no open <{name}>", n + 1);
            };
            if let Some(p) = stack.last_mut() {
                p.children.push(done);
            }
            continue;
        }
        let (section, body) = match line.strip_prefix('<') {
            Some(s) => (true, s.strip_suffix('>').unwrap_or(s)),
            None => (false, line),
        };
        let mut w = words(body);
        if w.is_empty() {
            continue;
        }
        let d = Directive {
            name: w.remove(0).to_ascii_lowercase(),
            args: w,
            children: vec![],
        };
        if section {
            stack.push(d);
        } else if let Some(p) = stack.last_mut() {
            p.children.push(d);
        }
    }
    if stack.len() != 1 {
        bail!(
            "{source}: <{}> is never closed",
            stack.last().map(|d| d.name.as_str()).unwrap_or("")
        );
    }
    Ok(stack.pop().map(|d| d.children).unwrap_or_default())
}

/// The files an `Include` pattern names (wildcards in the last component), sorted.
fn expand(pattern: &Path) -> Result<Vec<PathBuf>> {
    let name = pattern.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains(['*', '?', '[']) {
        return Ok(if pattern.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(pattern)?
                .flatten()
                .map(|e| e.path())
                .collect();
            v.sort();
            v
        } else {
            vec![pattern.to_path_buf()]
        });
    }
    let glob = globset::Glob::new(name)?.compile_matcher();
    let dir = pattern.parent().unwrap_or(Path::new("/"));
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| glob.is_match(n)))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(e.into()),
    };
    v.sort();
    Ok(v)
}

/// Replaces `Include`/`IncludeOptional` by the directives they name
/// (relative to `server_root`); unreadable ones go to `problems`.
fn follow(
    ds: Vec<Directive>,
    server_root: &Path,
    depth: u32,
    problems: &mut Vec<String>,
) -> Vec<Directive> {
    let mut out = Vec::new();
    for mut d in ds {
        let include = d.name == "include" || d.name == "includeoptional";
        let Some(arg) = d.args.first().filter(|_| include && depth < 16).cloned() else {
            d.children = follow(
                std::mem::take(&mut d.children),
                server_root,
                depth,
                problems,
            );
            out.push(d);
            continue;
        };
        let files = match expand(&server_root.join(&arg)) {
            Ok(f) => f,
            Err(e) => {
                problems.push(format!("Include {arg}: {e}"));
                continue;
            }
        };
        for f in files {
            match std::fs::read_to_string(&f)
                .map_err(anyhow::Error::from)
                .and_then(|t| parse(&t, &f.display().to_string()))
            {
                Ok(inner) => out.extend(follow(inner, server_root, depth + 1, problems)),
                Err(e) => problems.push(format!("{}: {e:#}", f.display())),
            }
        }
    }
    out
}

/// The main configuration file: the first `apache2ctl -t -D DUMP_INCLUDES`
/// lists, else Debian's or Red Hat's.
fn main_file() -> Result<PathBuf> {
    for ctl in ["apache2ctl", "apachectl"] {
        let Ok(out) = Command::new(ctl)
            .args(["-t", "-D", "DUMP_INCLUDES"])
            .output()
        else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(f) = text.lines().find_map(|l| l.trim().strip_prefix("(*) ")) {
            return Ok(PathBuf::from(f.trim()));
        }
    }
    ["/etc/apache2/apache2.conf", "/etc/httpd/conf/httpd.conf"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("no Apache configuration found (no apache2ctl, no /etc/apache2/apache2.conf)")
}

/// Reads `file` (or the running server's main file), includes followed.
pub fn load(file: Option<&Path>) -> Result<Conf> {
    let main = match file {
        Some(f) => f.to_path_buf(),
        None => main_file()?,
    };
    let text = std::fs::read_to_string(&main)
        .with_context(|| format!("cannot read {}", main.display()))?;
    let top = parse(&text, &main.display().to_string())?;
    let server_root = top
        .iter()
        .find(|d| d.name == "serverroot")
        .and_then(|d| d.args.first())
        .map(PathBuf::from)
        .or_else(|| main.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/etc/apache2"));
    let mut problems = Vec::new();
    let directives = follow(top, &server_root, 0, &mut problems);
    Ok(Conf {
        source: main.display().to_string(),
        directives,
        problems,
    })
}

/// Every directive named `name` in `ds` and the sections inside (not other `<VirtualHost>`s).
fn find<'a>(ds: &'a [Directive], name: &str, out: &mut Vec<&'a Directive>) {
    for d in ds {
        if d.name == name {
            out.push(d);
        }
        if d.name != "virtualhost" {
            find(&d.children, name, out);
        }
    }
}

/// The PHP handler among `ds` (php files only).
fn handler(ds: &[Directive]) -> Handler {
    let mut sets = Vec::new();
    find(ds, "sethandler", &mut sets);
    find(ds, "addhandler", &mut sets);
    for d in sets {
        let v = d.args.first().map(String::as_str).unwrap_or("");
        if v.starts_with("proxy:") {
            return Handler::Fpm(v.to_string());
        }
        if v == "application/x-httpd-php" {
            return Handler::ModPhp;
        }
    }
    Handler::None
}

/// `php_*_value`/`php_*_flag` settings among `ds`.
fn php_settings(ds: &[Directive], into: &mut BTreeMap<String, String>) {
    for n in ["php_value", "php_flag", "php_admin_value", "php_admin_flag"] {
        let mut found = Vec::new();
        find(ds, n, &mut found);
        for d in found {
            if let [k, v, ..] = d.args.as_slice() {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The modules `LoadModule` loads (`mpm_event_module`, `php_module` ...).
pub fn modules(conf: &Conf) -> Vec<String> {
    let mut found = Vec::new();
    find(&conf.directives, "loadmodule", &mut found);
    found
        .iter()
        .filter_map(|d| d.args.first().cloned())
        .collect()
}

/// Every `<VirtualHost>` (anywhere in the configuration), with what the server sets for it.
pub fn sites(conf: &[Directive]) -> Vec<Site> {
    let mut hosts = Vec::new();
    collect_hosts(conf, &mut hosts);
    let mut server_php = BTreeMap::new();
    php_settings(conf, &mut server_php);
    let server_root = conf
        .iter()
        .find(|d| d.name == "documentroot")
        .and_then(|d| d.args.first().cloned());
    hosts
        .into_iter()
        .map(|h| {
            let mut php_admin = server_php.clone();
            php_settings(&h.children, &mut php_admin);
            let own = h
                .children
                .iter()
                .find(|d| d.name == "documentroot")
                .and_then(|d| d.args.first().cloned());
            let handler = match handler(&h.children) {
                Handler::None => handler(conf),
                found => found,
            };
            Site {
                addresses: h.args.join(" "),
                document_root: own.or(server_root.clone()).unwrap_or_default(),
                handler,
                php_admin,
            }
        })
        .collect()
}

fn collect_hosts<'a>(ds: &'a [Directive], out: &mut Vec<&'a Directive>) {
    for d in ds {
        if d.name == "virtualhost" {
            out.push(d);
        } else {
            collect_hosts(&d.children, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_quotes_and_includes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sites")).unwrap();
        std::fs::write(
            dir.path().join("sites/a.conf"),
            "<VirtualHost *:80>\n  DocumentRoot \"/srv/a/current\"\n  <FilesMatch \\.php$>\n    SetHandler \"proxy:unix:/run/x.sock|fcgi://localhost\"\n  </FilesMatch>\n</VirtualHost>\n",
        )
        .unwrap();
        let main = dir.path().join("main.conf");
        std::fs::write(
            &main,
            format!("ServerRoot {}\nLoadModule mpm_event_module mods/mpm.so\nIncludeOptional sites/*.conf\nInclude missing.conf\n", dir.path().display()),
        )
        .unwrap();
        let conf = load(Some(&main)).unwrap();
        assert_eq!(conf.problems.len(), 1, "{:?}", conf.problems);
        assert_eq!(modules(&conf), vec!["mpm_event_module".to_string()]);
        let s = sites(&conf.directives);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].document_root, "/srv/a/current");
        assert_eq!(
            s[0].handler,
            Handler::Fpm("proxy:unix:/run/x.sock|fcgi://localhost".into())
        );
        assert!(parse("<VirtualHost *:80>\n", "x").is_err());
        assert!(parse("</Directory>\n", "x").is_err());
    }
}
