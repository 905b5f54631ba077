//! The nginx configuration parser: directives and blocks, `include`s
//! followed (from the disk or from an `nginx -T` dump), and what each PHP
//! location sends php-fpm.
//!
//! It reads what rootswap needs to judge a site (the `root`, `fastcgi_pass`
//! and the last `fastcgi_param` of each kind, with nginx's inheritance
//! rule), not the whole grammar: quoted words, comments and blocks are
//! understood, variables and `if` conditions are kept as words.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One nginx directive, with its block if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Name, e.g. `fastcgi_param`.
    pub name: String,
    /// Arguments, unquoted.
    pub args: Vec<String>,
    /// Contents of `{ … }`.
    pub block: Option<Vec<Directive>>,
}

fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    let flush = |cur: &mut String, out: &mut Vec<String>| {
        if !cur.is_empty() {
            out.push(std::mem::take(cur));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' if cur.is_empty() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' if cur.is_empty() => {
                let q = c;
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        if let Some(n) = chars.next() {
                            s.push(n);
                        }
                    } else if c == q {
                        break;
                    } else {
                        s.push(c);
                    }
                }
                // Mark quoted tokens so `;` or `{` inside quotes stay words.
                out.push(format!("\u{0}{s}"));
            }
            '{' | '}' | ';' => {
                flush(&mut cur, &mut out);
                out.push(c.to_string());
            }
            c if c.is_whitespace() => flush(&mut cur, &mut out),
            c => cur.push(c),
        }
    }
    flush(&mut cur, &mut out);
    out
}

fn parse_tokens(tokens: &[String], i: &mut usize) -> Result<Vec<Directive>> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    while *i < tokens.len() {
        let t = &tokens[*i];
        *i += 1;
        match t.as_str() {
            ";" => {
                if !words.is_empty() {
                    let name = words.remove(0);
                    out.push(Directive {
                        name,
                        args: std::mem::take(&mut words),
                        block: None,
                    });
                }
            }
            "{" => {
                let block = parse_tokens(tokens, i)?;
                let name = if words.is_empty() {
                    String::new()
                } else {
                    words.remove(0)
                };
                out.push(Directive {
                    name,
                    args: std::mem::take(&mut words),
                    block: Some(block),
                });
            }
            "}" => return Ok(out),
            w => words.push(w.trim_start_matches('\u{0}').to_string()),
        }
    }
    Ok(out)
}

/// Parses nginx configuration text (includes are not followed).
pub fn parse(text: &str) -> Result<Vec<Directive>> {
    let tokens = tokenize(text);
    let mut i = 0;
    parse_tokens(&tokens, &mut i)
}

/// Where included files come from: the disk, or the files of an `nginx -T` dump.
enum Files {
    Disk,
    Dump(HashMap<PathBuf, String>),
}

impl Files {
    /// The text of an included file, or why it cannot be had.
    fn read(&self, p: &Path) -> Result<String, String> {
        match self {
            Files::Disk => std::fs::read_to_string(p).map_err(|e| e.to_string()),
            Files::Dump(m) => m
                .get(p)
                .cloned()
                .ok_or_else(|| "it is not in the output of `nginx -T`".to_string()),
        }
    }

    fn glob(&self, pattern: &Path) -> Vec<PathBuf> {
        let s = pattern.to_string_lossy();
        if !s.contains(['*', '?', '[']) {
            return vec![pattern.to_path_buf()];
        }
        let Ok(g) = globset::Glob::new(&s).map(|g| g.compile_matcher()) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = match self {
            Files::Disk => pattern
                .parent()
                .and_then(|d| std::fs::read_dir(d).ok())
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| g.is_match(p))
                        .collect()
                })
                .unwrap_or_default(),
            Files::Dump(m) => m.keys().filter(|p| g.is_match(p)).cloned().collect(),
        };
        out.sort();
        out
    }
}

/// Directives with their `include`s replaced by the included files' own.
/// An include that cannot be read or parsed is left out and said in `problems`
/// (the checks then cannot see what it holds).
fn expand(
    dirs: Vec<Directive>,
    base: &Path,
    files: &Files,
    depth: usize,
    problems: &mut Vec<String>,
) -> Vec<Directive> {
    let mut out = Vec::new();
    for mut d in dirs {
        if d.name == "include" && d.block.is_none() {
            let Some(arg) = d.args.first() else { continue };
            if depth >= 16 {
                problems.push(format!(
                    "include {arg} not followed: includes nest more than 16 deep"
                ));
                continue;
            }
            let p = Path::new(arg);
            let p = if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            };
            for f in files.glob(&p) {
                match files.read(&f).map(|text| parse(&text)) {
                    Ok(Ok(parsed)) => out.extend(expand(parsed, base, files, depth + 1, problems)),
                    Ok(Err(e)) => {
                        problems.push(format!("cannot parse included file {}: {e:#}", f.display()))
                    }
                    Err(e) => {
                        problems.push(format!("cannot read included file {}: {e}", f.display()))
                    }
                }
            }
            continue;
        }
        if let Some(b) = d.block.take() {
            d.block = Some(expand(b, base, files, depth, problems));
        }
        out.push(d);
    }
    out
}

/// Splits `nginx -T` output into (file, text), the main file first.
pub fn split_dump(dump: &str) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = Vec::new();
    for line in dump.lines() {
        if let Some(rest) = line.strip_prefix("# configuration file ") {
            out.push((
                PathBuf::from(rest.trim_end_matches(':').trim()),
                String::new(),
            ));
        } else if let Some((_, text)) = out.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

/// What nginx sends php-fpm for one PHP location of a server that serves through the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhpLocation {
    /// The server's `listen` values.
    pub listen: Vec<String>,
    /// The location's pattern.
    pub location: String,
    /// The effective root.
    pub root: String,
    /// Last SCRIPT_FILENAME value sent (None: not sent).
    pub script_filename: Option<String>,
    /// Last DOCUMENT_ROOT value sent.
    pub document_root: Option<String>,
}

fn last_param(params: &[Directive], key: &str) -> Option<String> {
    params
        .iter()
        .filter(|d| d.args.first().map(String::as_str) == Some(key))
        .filter_map(|d| d.args.get(1).cloned())
        .next_back()
}

fn walk_locations(
    block: &[Directive],
    inherited_params: &[Directive],
    root: &str,
    listen: &[String],
    label: &str,
    out: &mut Vec<PhpLocation>,
) {
    let own: Vec<Directive> = block
        .iter()
        .filter(|d| d.name == "fastcgi_param")
        .cloned()
        .collect();
    // nginx: a level inherits fastcgi_param only when it defines none itself.
    let params = if own.is_empty() {
        inherited_params.to_vec()
    } else {
        own
    };
    let root = block
        .iter()
        .filter(|d| d.name == "root")
        .filter_map(|d| d.args.first())
        .next_back()
        .map(String::as_str)
        .unwrap_or(root);
    if block.iter().any(|d| d.name == "fastcgi_pass") {
        out.push(PhpLocation {
            listen: listen.to_vec(),
            location: label.to_string(),
            root: root.to_string(),
            script_filename: last_param(&params, "SCRIPT_FILENAME"),
            document_root: last_param(&params, "DOCUMENT_ROOT"),
        });
    }
    for d in block {
        if let (Some(b), true) = (&d.block, d.name == "location" || d.name == "if") {
            walk_locations(
                b,
                &params,
                root,
                listen,
                &format!("{} {}", d.name, d.args.join(" ")),
                out,
            );
        }
    }
}

/// Every PHP location (one with `fastcgi_pass`) of every server, with its effective root and parameters.
pub fn php_locations(conf: &[Directive]) -> Vec<PhpLocation> {
    let mut out = Vec::new();
    for http in conf.iter().filter(|d| d.name == "http") {
        let Some(hb) = &http.block else { continue };
        let http_params: Vec<Directive> = hb
            .iter()
            .filter(|d| d.name == "fastcgi_param")
            .cloned()
            .collect();
        let http_root = hb
            .iter()
            .filter(|d| d.name == "root")
            .filter_map(|d| d.args.first())
            .next_back()
            .cloned()
            .unwrap_or_default();
        for server in hb.iter().filter(|d| d.name == "server") {
            let Some(sb) = &server.block else { continue };
            let listen: Vec<String> = sb
                .iter()
                .filter(|d| d.name == "listen")
                .filter_map(|d| d.args.first().cloned())
                .collect();
            walk_locations(sb, &http_params, &http_root, &listen, "server", &mut out);
        }
    }
    out
}

/// An nginx configuration as read, its includes followed.
pub struct Conf {
    /// Where it came from (the file, or `nginx -T`).
    pub source: String,
    /// Its directives, includes followed.
    pub directives: Vec<Directive>,
    /// Includes that could not be followed, and why.
    pub problems: Vec<String>,
}

/// Loads the nginx configuration: `file` and its includes, or without a
/// file what `nginx -T` prints.
pub fn load(file: Option<&Path>) -> Result<Conf> {
    let mut problems = Vec::new();
    match file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            let base = f.parent().map(Path::to_path_buf).unwrap_or_default();
            let directives = expand(parse(&text)?, &base, &Files::Disk, 0, &mut problems);
            Ok(Conf {
                source: f.display().to_string(),
                directives,
                problems,
            })
        }
        None => {
            let out = std::process::Command::new("nginx")
                .arg("-T")
                .output()
                .context("cannot run `nginx -T` (pass --nginx-conf FILE instead)")?;
            if !out.status.success() {
                bail!(
                    "`nginx -T` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let files = split_dump(&String::from_utf8_lossy(&out.stdout));
            let Some((main, text)) = files.first().cloned() else {
                bail!("`nginx -T` printed no configuration")
            };
            let base = main.parent().map(Path::to_path_buf).unwrap_or_default();
            let map = Files::Dump(files.into_iter().collect());
            let directives = expand(parse(&text)?, &base, &map, 0, &mut problems);
            Ok(Conf {
                source: "nginx -T".to_string(),
                directives,
                problems,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
http {
    include mime.types;
    server {
        listen 127.0.0.1:8080;
        root /srv/web/current/public;   # through the link
        location / { try_files $uri $uri/ /index.php$is_args$args; }
        location ~ \.php$ {
            include fastcgi.conf;
            fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;
            fastcgi_param DOCUMENT_ROOT "$realpath_root";
            fastcgi_pass unix:/run/php/php8.2-fpm.sock;
        }
    }
}
"#;

    #[test]
    fn finds_the_last_parameter_sent() {
        let conf = parse(GOOD).unwrap();
        let locs = php_locations(&conf);
        assert_eq!(locs.len(), 1);
        assert_eq!(locs[0].root, "/srv/web/current/public");
        assert_eq!(
            locs[0].script_filename.as_deref(),
            Some("$realpath_root$fastcgi_script_name")
        );
        assert_eq!(locs[0].document_root.as_deref(), Some("$realpath_root"));
        assert_eq!(locs[0].listen, vec!["127.0.0.1:8080"]);
    }

    #[test]
    fn an_include_after_the_realpath_lines_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fastcgi.conf"), "fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\nfastcgi_param DOCUMENT_ROOT $document_root;\n").unwrap();
        let bad = GOOD
            .replace("include fastcgi.conf;\n", "")
            .replace("fastcgi_pass", "include fastcgi.conf;\n fastcgi_pass");
        let conf = expand(
            parse(&bad).unwrap(),
            dir.path(),
            &Files::Disk,
            0,
            &mut Vec::new(),
        );
        let locs = php_locations(&conf);
        assert_eq!(
            locs[0].script_filename.as_deref(),
            Some("$document_root$fastcgi_script_name")
        );
        // And in the right order, the include is overridden.
        let conf = expand(
            parse(GOOD).unwrap(),
            dir.path(),
            &Files::Disk,
            0,
            &mut Vec::new(),
        );
        assert_eq!(
            php_locations(&conf)[0].script_filename.as_deref(),
            Some("$realpath_root$fastcgi_script_name")
        );
    }

    #[test]
    fn params_are_inherited_only_when_the_location_has_none() {
        let text = "http { fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name; server { root /w/current; location ~ \\.php$ { fastcgi_pass x; } } }";
        let locs = php_locations(&parse(text).unwrap());
        assert_eq!(
            locs[0].script_filename.as_deref(),
            Some("$realpath_root$fastcgi_script_name")
        );
        let text = "http { fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name; server { root /w/current; location ~ \\.php$ { fastcgi_param A b; fastcgi_pass x; } } }";
        let locs = php_locations(&parse(text).unwrap());
        assert_eq!(locs[0].script_filename, None);
    }

    #[test]
    fn splits_an_nginx_dump() {
        let dump = "nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\n# configuration file /etc/nginx/nginx.conf:\nhttp { include /etc/nginx/sites-enabled/*; }\n\n# configuration file /etc/nginx/sites-enabled/a:\nserver { root /w/current; location ~ \\.php$ { fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name; fastcgi_param DOCUMENT_ROOT $realpath_root; fastcgi_pass x; } }\n";
        let files = split_dump(dump);
        assert_eq!(files.len(), 2);
        let (main, text) = files[0].clone();
        let map = Files::Dump(files.into_iter().collect());
        let conf = expand(
            parse(&text).unwrap(),
            main.parent().unwrap(),
            &map,
            0,
            &mut Vec::new(),
        );
        let locs = php_locations(&conf);
        assert_eq!(locs.len(), 1);
        assert_eq!(locs[0].document_root.as_deref(), Some("$realpath_root"));
    }

    #[test]
    fn an_include_that_cannot_be_read_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            "http { include missing.conf; include sites/*.conf; server { root /w/current; } }";
        std::fs::create_dir(dir.path().join("sites")).unwrap();
        // A directory where a file is expected: found by the glob, unreadable as a file.
        std::fs::create_dir(dir.path().join("sites/a.conf")).unwrap();
        std::fs::write(dir.path().join("sites/b.conf"), "server { root /w/b; }").unwrap();
        let mut problems = Vec::new();
        let conf = expand(
            parse(text).unwrap(),
            dir.path(),
            &Files::Disk,
            0,
            &mut problems,
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("cannot read included file")
                && problems[0].contains("missing.conf"),
            "{problems:?}"
        );
        assert!(problems[1].contains("sites/a.conf"), "{problems:?}");
        // What could be read is still there.
        let http = conf[0].block.as_ref().unwrap();
        assert_eq!(http.iter().filter(|d| d.name == "server").count(), 2);
        // From an `nginx -T` dump: a file the dump lacks.
        let mut problems = Vec::new();
        let map = Files::Dump(HashMap::new());
        expand(
            parse("include /etc/nginx/x.conf;").unwrap(),
            Path::new("/etc/nginx"),
            &map,
            0,
            &mut problems,
        );
        assert!(
            problems[0].contains("not in the output of `nginx -T`"),
            "{problems:?}"
        );
    }

    #[test]
    fn quoted_words_and_comments() {
        let d = parse("a \"b;c\" 'd e'; # x { ; \n f { g; }").unwrap();
        assert_eq!(d[0].args, vec!["b;c", "d e"]);
        assert_eq!(d[1].name, "f");
        assert_eq!(d[1].block.as_ref().unwrap()[0].name, "g");
    }
}
