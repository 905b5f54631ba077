//! Secrets out of sight: the one place that decides what text may show of a
//! URL.
//!
//! [`url()`] masks the credentials of one URL (`https://user:PASSWORD@host`,
//! a lone token `https://TOKEN@host`, secret-looking query parameters);
//! [`text`] masks every URL found in free text (an error chain, a log line, a
//! hook's output). Everything rootswap shows a person or stores — CLI errors,
//! log lines, the dashboard, `status --json`, the history, notifications,
//! `config --effective` — goes through one of them. [`split_userinfo`] takes
//! the credentials out of a repository URL so that they are never written to
//! disk (see `crate::source`).

use std::borrow::Cow;

/// What a masked secret is shown as.
pub const MASK: &str = "********";

/// Masks the credentials of a URL (the password, a token given as the user
/// name of an http(s) URL, secret-looking query parameters); None when there
/// are none. Only text written as a URL (`scheme://...`) is considered: an
/// scp-style `git@host:path` or a path is left alone.
pub fn url(text: &str) -> Option<String> {
    if !text.contains("://") {
        return None;
    }
    let Ok(mut url) = url::Url::parse(text) else {
        return mask_authority(text);
    };
    let mut changed = false;
    if url.password().is_some_and(|p| !p.is_empty()) {
        url.set_password(Some(MASK)).ok()?;
        changed = true;
    } else if !url.username().is_empty() && url.scheme().starts_with("http") {
        // A lone user name is a token for http(s) (https://TOKEN@host);
        // for ssh://git@host it is just the account.
        url.set_username(MASK).ok()?;
        changed = true;
    }
    if let Some(query) = url.query() {
        if let Some(q) = mask_query(query) {
            url.set_query(Some(&q));
            changed = true;
        }
    }
    changed.then(|| url.to_string())
}

/// The query with secret-looking parameters masked; None when none is.
/// Rebuilt from the raw parts, so the rest stays encoded as written.
fn mask_query(query: &str) -> Option<String> {
    let mut masked_any = false;
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| {
            let name = url::form_urlencoded::parse(kv.as_bytes())
                .next()
                .map(|(k, v)| (k.into_owned(), !v.is_empty()));
            match (name, kv.split_once('=')) {
                (Some((k, true)), Some((raw, _))) if secret_param(&k) => {
                    masked_any = true;
                    format!("{raw}={MASK}")
                }
                _ => kv.to_string(),
            }
        })
        .collect();
    masked_any.then(|| parts.join("&"))
}

/// For text that looks like a URL but does not parse: masks the userinfo
/// by hand (`scheme://user:pass@` -> `scheme://user:********@`).
fn mask_authority(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..end].rfind('@')?;
    let userinfo = &rest[..at];
    let masked = match userinfo.split_once(':') {
        Some((user, pass)) if !pass.is_empty() => format!("{user}:{MASK}"),
        Some(_) => return None,
        None if scheme.starts_with("http") && !userinfo.is_empty() => MASK.to_string(),
        None => return None,
    };
    Some(format!("{scheme}://{masked}{}", &rest[at..]))
}

/// Masks every URL in `s` (see [`url()`]); borrowed when nothing is masked.
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.contains("://") {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut changed = false;
    while let Some(pos) = rest.find("://") {
        let start = rest[..pos]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map(|i| i + 1)
            .unwrap_or(0);
        let len = rest[pos..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(rest.len() - pos);
        let end = pos + len;
        out.push_str(&rest[..start]);
        let candidate = &rest[start..end];
        // A URL ends before trailing punctuation of the sentence around it.
        let trimmed = candidate.trim_end_matches([',', ';', ')', ']', '}', '.', ':']);
        match url(trimmed) {
            Some(m) if start < pos => {
                out.push_str(&m);
                out.push_str(&candidate[trimmed.len()..]);
                changed = true;
            }
            _ => out.push_str(candidate),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(s)
    }
}

/// A repository URL without its credentials, and the credentials
/// (percent-decoded user and password; the password "" for a lone token).
/// Anything that is not a `scheme://user@host` URL comes back as it is.
pub fn split_userinfo(repo: &str) -> (String, Option<(String, String)>) {
    if !repo.contains("://") {
        return (repo.to_string(), None);
    }
    let Ok(mut u) = url::Url::parse(repo) else {
        return (repo.to_string(), None);
    };
    if u.username().is_empty() && u.password().is_none() {
        return (repo.to_string(), None);
    }
    if !u.scheme().starts_with("http") {
        // ssh://git@host: the user is the account, not a secret; a password
        // there is still kept out of the cache's config.
        if u.password().is_none() {
            return (repo.to_string(), None);
        }
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = decode(u.username());
    let pass = decode(u.password().unwrap_or(""));
    if u.set_password(None).is_err()
        || (u.scheme().starts_with("http") && u.set_username("").is_err())
    {
        return (repo.to_string(), None);
    }
    (u.to_string(), Some((user, pass)))
}

fn secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "token",
        "key",
        "secret",
        "password",
        "passwd",
        "pass",
        "sig",
        "signature",
        "auth",
    ]
    .iter()
    .any(|s| n == *s || n.ends_with(&format!("_{s}")) || n.ends_with(&format!("-{s}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_url_credentials() {
        assert_eq!(
            url("https://bob:hunter2@git.example.com/a.git").as_deref(),
            Some("https://bob:********@git.example.com/a.git")
        );
        assert_eq!(
            url("https://ghp_abc@github.com/a/b.git").as_deref(),
            Some("https://********@github.com/a/b.git")
        );
        assert_eq!(url("ssh://git@github.com/a/b.git"), None);
        assert_eq!(url("git@github.com:a/b.git"), None);
        assert_eq!(
            url("https://example.com/hook?x=1&token=abc#f").as_deref(),
            Some("https://example.com/hook?x=1&token=********#f")
        );
        assert_eq!(url("https://example.com/path@x"), None);
        // The rest of the URL stays as written (encoding, order, other parameters).
        assert_eq!(
            url("https://example.com/h?next=%2Fa%20b&api_key=k1&x").as_deref(),
            Some("https://example.com/h?next=%2Fa%20b&api_key=********&x")
        );
        assert_eq!(
            url("https://example.com/h?token="),
            None,
            "empty: nothing to hide"
        );
        assert_eq!(url("not a url://"), None);
        assert_eq!(url("/srv/repo.git"), None);
        assert_eq!(
            url("https://u:p@exa mple/").as_deref(),
            Some("https://u:********@exa mple/"),
            "unparsable: masked by hand"
        );
    }

    #[test]
    fn masks_urls_in_free_text() {
        let e = "cannot fetch from https://bob:SECRET@127.0.0.1:9/r.git: failed to connect; \
                 check `source.repo` (was 'http://TOKEN@h/x'), see https://example.com/doc.";
        let m = text(e);
        assert!(!m.contains("SECRET") && !m.contains("TOKEN"), "{m}");
        assert!(
            m.contains("https://bob:********@127.0.0.1:9/r.git: failed"),
            "{m}"
        );
        assert!(m.contains("'http://********@h/x'"), "{m}");
        assert!(m.ends_with("see https://example.com/doc."), "{m}");
        assert!(matches!(text("no url here"), Cow::Borrowed(_)));
        assert!(matches!(text("ssh://git@h/x and /srv/r"), Cow::Borrowed(_)));
    }

    #[test]
    fn splits_credentials_off_repository_urls() {
        assert_eq!(
            split_userinfo("https://bob:p%40ss@h:8443/r.git"),
            (
                "https://h:8443/r.git".to_string(),
                Some(("bob".to_string(), "p@ss".to_string()))
            )
        );
        assert_eq!(
            split_userinfo("https://TOKEN@h/r.git"),
            (
                "https://h/r.git".to_string(),
                Some(("TOKEN".to_string(), String::new()))
            )
        );
        assert_eq!(split_userinfo("ssh://git@h/r.git").1, None);
        assert_eq!(split_userinfo("git@h:r.git").1, None);
        assert_eq!(split_userinfo("/srv/r.git").1, None);
        assert_eq!(split_userinfo("https://h/r.git").1, None);
    }
}
