//! Is a hook's tool there? Optional hooks (`"? CMD"`) and the missing-tool check.
//!
//! Before a hook runs, rootswap looks at its first word:
//! - a path (`vendor/bin/drush`, `./build.sh`): it must exist in ROOT (or at that absolute path);
//! - a program name (`composer`): the shell must find it (`command -v`, so builtins count);
//! - `php SCRIPT …` (also `php8.2`): SCRIPT (`artisan`, `bin/console`) must exist in ROOT.
//!
//! A hook whose tool is missing fails with a message that says which and how to
//! fix it — unless it is *optional*: written with a leading `?`
//! (`"? php bin/console doctrine:migrations:migrate"`, quoted in YAML, where a
//! bare `?` starts a mapping key) or as `{run: CMD, optional: true}`. An
//! optional hook is skipped, with a log line, when its tool is missing; and for
//! `php SCRIPT NAMESPACE:COMMAND` (Symfony console, artisan, drush) also when
//! `php SCRIPT help NAMESPACE:COMMAND` says the command does not exist (e.g.
//! doctrine migrations not installed). Once it runs, an optional hook that
//! fails fails the deploy like any other.
//!
//! Commands the check cannot read (starting with `$VAR`, quotes, subshells…) are
//! not checked: they run, and the shell reports what it reports.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SHELL_SPECIAL: &[char] = &[
    '$', '`', '\'', '"', '\\', '(', ')', '{', '}', '|', ';', '&', '<', '>', '*', '?', '[', ']',
    '~', '#',
];

fn plain(word: &str) -> bool {
    !word.is_empty() && !word.contains(SHELL_SPECIAL)
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

fn is_php(word: &str) -> bool {
    word.strip_prefix("php")
        .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// Why `cmd`'s tool is not there (None: it is, or the command cannot be read).
/// `optional` also probes `php SCRIPT help NS:COMMAND`, bounded by `timeout`.
pub fn missing_tool(cmd: &str, dir: &Path, optional: bool, timeout: Duration) -> Option<String> {
    let mut words = cmd.split_whitespace().skip_while(|w| is_assignment(w));
    let first = words.next()?;
    if !plain(first) {
        return None;
    }
    if first.contains('/') {
        let p = if Path::new(first).is_absolute() {
            Path::new(first).to_path_buf()
        } else {
            dir.join(first)
        };
        if !p.exists() {
            return Some(format!("`{first}` does not exist ({})", p.display()));
        }
    } else if !on_path(first, dir) {
        let path = std::env::var("PATH").unwrap_or_default();
        return Some(format!(
            "`{first}` is not installed: the shell does not find it (PATH={path})"
        ));
    }
    if is_php(first) {
        let script = words.next().filter(|w| plain(w) && !w.starts_with('-'))?;
        if !dir.join(script).is_file() {
            return Some(format!(
                "`{script}` is not in ROOT ({}), and `{first} {script}` needs it",
                dir.display()
            ));
        }
        if optional {
            if let Some(command) = words
                .next()
                .filter(|w| plain(w) && !w.starts_with('-') && w.contains(':'))
            {
                if !probe(&[first, script, "help", command], dir, timeout) {
                    return Some(format!("`{command}` is not a command of {script} (`{first} {script} help {command}` failed)"));
                }
            }
        }
    }
    None
}

fn on_path(program: &str, dir: &Path) -> bool {
    Command::new("/bin/sh")
        .args(["-c", "command -v -- \"$1\" >/dev/null 2>&1", "sh", program])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn probe(argv: &[&str], dir: &Path, timeout: Duration) -> bool {
    let Ok(mut child) = Command::new(argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return s.success(),
            Ok(None) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::strip_optional;

    #[test]
    fn optional_marker() {
        assert_eq!(strip_optional("? php artisan x"), ("php artisan x", true));
        assert_eq!(strip_optional("?php artisan x"), ("php artisan x", true));
        assert_eq!(
            strip_optional("composer install"),
            ("composer install", false)
        );
    }

    #[test]
    fn finds_missing_programs_paths_and_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let t = Duration::from_secs(5);
        assert!(
            missing_tool("exit 3", dir.path(), false, t).is_none(),
            "builtins are found"
        );
        assert!(missing_tool("echo $X > out", dir.path(), false, t).is_none());
        assert!(missing_tool("FOO=1 sh -c true", dir.path(), false, t).is_none());
        assert!(
            missing_tool("\"$PHP\" artisan", dir.path(), false, t).is_none(),
            "unreadable: not checked"
        );
        let m = missing_tool("rootswap-no-such-tool install", dir.path(), false, t).unwrap();
        assert!(m.contains("not installed"), "{m}");
        let m = missing_tool("vendor/bin/drush deploy", dir.path(), false, t).unwrap();
        assert!(
            m.contains("vendor/bin/drush") && m.contains("does not exist"),
            "{m}"
        );
        if on_path("php", dir.path()) {
            let m = missing_tool("php artisan migrate --force", dir.path(), false, t).unwrap();
            assert!(m.contains("`artisan` is not in ROOT"), "{m}");
        }
    }
}
