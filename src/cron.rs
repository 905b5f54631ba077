//! Cron jobs that run the site's PHP from ROOT's own path (for `rootswap doctor`).
//!
//! During a deploy ROOT is being rewritten (checkout, hooks) while the
//! snapshot serves: a cron job that addresses `…/ROOT/artisan` directly runs
//! half-written code then, and a job started just before the switch back
//! reads a tree that changes under it. Jobs should go through the serving
//! link (`…/current/artisan`), which always points at a complete version.
//!
//! Read: the invoking user's `crontab -l` (root's, when doctor runs as root),
//! `/etc/crontab`, `/etc/cron.d/*`, and the spool file of the user who owns
//! ROOT (`/var/spool/cron/crontabs/<user>`, readable by root). What cannot be
//! read is left out silently: a missing crontab is not a problem.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A crontab line that runs PHP from ROOT's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where the line is: a file and line number, or `crontab -l`.
    pub source: String,
    /// The line as written.
    pub line: String,
}

/// The cron tables to read for the site whose ROOT is `root`: (label, text).
fn tables(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(text) = own_crontab() {
        out.push(("`crontab -l`".to_string(), text));
    }
    let mut files = vec![PathBuf::from("/etc/crontab")];
    if let Ok(rd) = std::fs::read_dir("/etc/cron.d") {
        let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        names.sort();
        files.extend(names);
    }
    if let Some(user) = owner_name(root) {
        files.push(Path::new("/var/spool/cron/crontabs").join(user));
    }
    for f in files {
        if let Ok(text) = std::fs::read_to_string(&f) {
            out.push((f.display().to_string(), text));
        }
    }
    out
}

/// The invoking user's crontab (None when there is none or no `crontab`).
fn own_crontab() -> Option<String> {
    let out = Command::new("crontab")
        .arg("-l")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The name of the user owning `path`, from /etc/passwd.
fn owner_name(path: &Path) -> Option<String> {
    let uid = std::fs::metadata(path).ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid && !name.is_empty() && !name.contains('/')).then(|| name.to_string())
    })
}

/// Whether `line` names `root` as a path (ROOT itself or something inside it,
/// not `ROOT_2026…` or `ROOTS`).
fn names_path(line: &str, root: &str) -> bool {
    line.match_indices(root).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + root.len()..].chars().next();
        let starts = before.map_or(true, |c| !c.is_ascii_alphanumeric() && c != '_' && c != '/');
        let ends = after.map_or(true, |c| {
            c == '/' || c.is_whitespace() || matches!(c, ';' | '&' | '|' | '"' | '\'' | ')')
        });
        starts && ends
    })
}

/// Whether a cron line runs PHP (a `php` binary, or a framework console).
fn runs_php(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    ["php", "artisan", "bin/console", "drush", "wp-cron", "wp "]
        .iter()
        .any(|w| l.contains(w))
}

/// The lines of `text` (a cron table) that run PHP from one of `roots`.
pub fn scan_table(source: &str, text: &str, roots: &[String]) -> Vec<Finding> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#')
        })
        .filter(|(_, l)| runs_php(l) && roots.iter().any(|r| names_path(l, r)))
        .map(|(i, l)| Finding {
            source: format!("{source}:{}", i + 1),
            line: l.trim().to_string(),
        })
        .collect()
}

/// Every cron line that runs PHP from `root` (its path as configured, and
/// its real path when that differs).
pub fn find(root: &Path) -> Vec<Finding> {
    let mut roots = vec![root.to_string_lossy().trim_end_matches('/').to_string()];
    if let Ok(real) = root.canonicalize() {
        let real = real.to_string_lossy().into_owned();
        if !roots.contains(&real) {
            roots.push(real);
        }
    }
    tables(root)
        .iter()
        .flat_map(|(source, text)| scan_table(source, text, &roots))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_php_run_from_root_and_not_through_the_link() {
        let roots = vec!["/var/www/shop/ROOT".to_string()];
        let table = "\
# m h dom mon dow user command
SHELL=/bin/sh
* * * * * www-data php /var/www/shop/ROOT/artisan schedule:run
* * * * * www-data cd /var/www/shop/ROOT && php artisan schedule:run
* * * * * www-data php /var/www/shop/current/artisan schedule:run
* * * * * www-data php /var/www/shop/ROOT_2026.12.01-10.00.00/artisan x
*/5 * * * * root /usr/bin/backup /var/www/shop/ROOT
  # * * * * * www-data php /var/www/shop/ROOT/artisan commented
";
        let found = scan_table("/etc/cron.d/shop", table, &roots);
        let lines: Vec<&str> = found.iter().map(|f| f.source.as_str()).collect();
        assert_eq!(
            lines,
            ["/etc/cron.d/shop:3", "/etc/cron.d/shop:4"],
            "{found:?}"
        );
    }

    #[test]
    fn path_boundaries() {
        let r = "/w/ROOT";
        assert!(names_path("php /w/ROOT/x.php", r));
        assert!(names_path("cd '/w/ROOT'; php x.php", r));
        assert!(names_path("cd /w/ROOT", r));
        assert!(!names_path("php /w/ROOTS/x.php", r));
        assert!(!names_path("php /w/ROOT_old/x.php", r));
        assert!(!names_path("php /x/w/ROOT/x.php", r));
    }
}
