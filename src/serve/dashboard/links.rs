//! Links from the dashboard to the repository's web pages, for remotes on
//! GitHub, GitLab (gitlab.com or a host whose name says `gitlab`) and
//! Bitbucket, in their https and ssh forms (`https://host/owner/repo.git`,
//! `ssh://git@host/owner/repo.git`, `git@host:owner/repo.git`).

use url::Url;

/// Which web interface a remote has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host {
    GitHub,
    GitLab,
    Bitbucket,
}

/// The web page of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoWeb {
    host: Host,
    /// `https://host/owner/repo`, without `.git` or a trailing slash.
    base: String,
}

impl RepoWeb {
    /// The web page of remote `remote`, when it is on a known host.
    pub fn from_remote(remote: &str) -> Option<RepoWeb> {
        let url = parse_remote(remote.trim())?;
        let host_name = url.host_str()?.to_ascii_lowercase();
        let host = match host_name.as_str() {
            "github.com" | "www.github.com" => Host::GitHub,
            "bitbucket.org" | "www.bitbucket.org" => Host::Bitbucket,
            h if h == "gitlab.com" || h.split(['.', '-']).any(|p| p == "gitlab") => Host::GitLab,
            _ => return None,
        };
        let path = url.path().trim_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path);
        // owner/repo at least (GitLab has groups: group/sub/repo).
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        if parts.len() < 2 || (host != Host::GitLab && parts.len() != 2) {
            return None;
        }
        // The web page is https on the same host (an ssh port is not the web's).
        let mut web = Url::parse("https://example.invalid/").ok()?;
        web.set_host(Some(&host_name)).ok()?;
        web.set_path(&parts.join("/"));
        Some(RepoWeb {
            host,
            base: web.as_str().trim_end_matches('/').to_string(),
        })
    }

    /// The page of one commit.
    pub fn commit(&self, sha: &str) -> String {
        match self.host {
            Host::GitHub => format!("{}/commit/{sha}", self.base),
            Host::GitLab => format!("{}/-/commit/{sha}", self.base),
            Host::Bitbucket => format!("{}/commits/{sha}", self.base),
        }
    }

    /// The page comparing `from` with `to` (what a deploy brought).
    pub fn compare(&self, from: &str, to: &str) -> String {
        match self.host {
            Host::GitHub => format!("{}/compare/{from}...{to}", self.base),
            Host::GitLab => format!("{}/-/compare/{from}...{to}", self.base),
            // Bitbucket puts the newer side first, separated by a carriage return.
            Host::Bitbucket => format!("{}/branches/compare/{to}%0D{from}#diff", self.base),
        }
    }
}

/// Parses a remote URL; the scp-like `user@host:path` form becomes `ssh://user@host/path`.
fn parse_remote(remote: &str) -> Option<Url> {
    if let Ok(u) = Url::parse(remote) {
        return matches!(u.scheme(), "https" | "http" | "ssh" | "git" | "git+ssh").then_some(u);
    }
    let (user_host, path) = remote.split_once(':')?;
    if user_host.contains('/') || path.starts_with("//") {
        return None;
    }
    Url::parse(&format!(
        "ssh://{user_host}/{}",
        path.trim_start_matches('/')
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_and_ssh_forms_of_the_three_hosts() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        for remote in [
            "https://github.com/acme/site.git",
            "https://github.com/acme/site",
            "https://user@github.com/acme/site/",
            "git@github.com:acme/site.git",
            "ssh://git@github.com/acme/site.git",
            "ssh://git@github.com:22/acme/site.git",
        ] {
            let w = RepoWeb::from_remote(remote).unwrap_or_else(|| panic!("{remote}"));
            assert_eq!(
                w.commit(sha),
                format!("https://github.com/acme/site/commit/{sha}"),
                "{remote}"
            );
            assert_eq!(
                w.compare("aaa", "bbb"),
                "https://github.com/acme/site/compare/aaa...bbb"
            );
        }
        let gl = RepoWeb::from_remote("git@gitlab.com:group/sub/site.git").unwrap();
        assert_eq!(
            gl.commit("abc"),
            "https://gitlab.com/group/sub/site/-/commit/abc"
        );
        assert_eq!(
            gl.compare("a", "b"),
            "https://gitlab.com/group/sub/site/-/compare/a...b"
        );
        let own = RepoWeb::from_remote("https://gitlab.example.com/web/site.git").unwrap();
        assert_eq!(
            own.commit("abc"),
            "https://gitlab.example.com/web/site/-/commit/abc"
        );
        let bb = RepoWeb::from_remote("git@bitbucket.org:acme/site.git").unwrap();
        assert_eq!(
            bb.commit("abc"),
            "https://bitbucket.org/acme/site/commits/abc"
        );
        assert_eq!(
            bb.compare("old", "new"),
            "https://bitbucket.org/acme/site/branches/compare/new%0Dold#diff"
        );
    }

    #[test]
    fn other_remotes_have_no_links() {
        for remote in [
            "/srv/git/site.git",
            "file:///srv/git/site.git",
            "https://git.example.com/acme/site.git",
            "https://github.com/acme",
            "https://github.com/acme/site/extra",
            "",
            "C:/repo",
        ] {
            assert_eq!(RepoWeb::from_remote(remote), None, "{remote}");
        }
    }
}
