//! php-fpm's status page (`pm.status_path`, asked with `?full&json`): the
//! pool's workers, what each runs, and the listen queue.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::endpoint::Endpoint;
use super::fastcgi;

/// One php-fpm worker as the status page shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct Proc {
    /// Worker pid.
    #[serde(default)]
    pub pid: u64,
    /// `Idle`, `Running`, `Reading headers`, `Finishing`, …
    #[serde(default)]
    pub state: String,
    /// Microseconds the current (or last) request has run.
    #[serde(rename = "request duration", default)]
    pub request_duration: u64,
    /// Request URI.
    #[serde(rename = "request uri", default)]
    pub request_uri: String,
    /// SCRIPT_FILENAME of the current (or last) request.
    #[serde(default)]
    pub script: String,
}

/// php-fpm's status page (`?full&json`), the parts rootswap reads.
#[derive(Debug, Clone, Deserialize)]
pub struct FpmStatus {
    /// Pool name.
    #[serde(default)]
    pub pool: String,
    /// Requests waiting in the socket's backlog for a free worker.
    #[serde(rename = "listen queue", default)]
    pub listen_queue: u64,
    /// Workers.
    #[serde(default)]
    pub processes: Vec<Proc>,
}

impl FpmStatus {
    /// Workers busy with a request that may run on one of `trees`: a script
    /// under it, or a request whose script is not known yet. The status
    /// request itself (URI `status_path`) is not counted.
    pub fn busy_on<'a>(&'a self, trees: &[PathBuf], status_path: &str) -> Vec<&'a Proc> {
        self.processes
            .iter()
            .filter(|p| !p.state.eq_ignore_ascii_case("idle"))
            .filter(|p| p.request_uri.split('?').next() != Some(status_path))
            .filter(|p| {
                let script = p.script.trim();
                script.is_empty()
                    || script == "-"
                    || trees.iter().any(|t| Path::new(script).starts_with(t))
            })
            .collect()
    }
}

/// Asks php-fpm's status page over FastCGI.
pub fn fpm_status(ep: &Endpoint, status_path: &str, timeout: Duration) -> Result<FpmStatus> {
    let params = [
        ("REQUEST_METHOD", "GET".to_string()),
        ("SCRIPT_NAME", status_path.to_string()),
        ("SCRIPT_FILENAME", status_path.to_string()),
        ("REQUEST_URI", format!("{status_path}?full&json")),
        ("DOCUMENT_URI", status_path.to_string()),
        ("QUERY_STRING", "full&json".to_string()),
        ("SERVER_SOFTWARE", "rootswap".to_string()),
        ("REMOTE_ADDR", "127.0.0.1".to_string()),
        ("SERVER_NAME", "localhost".to_string()),
        ("CONTENT_LENGTH", "0".to_string()),
    ];
    let r = fastcgi::request(ep, &params, timeout)?;
    let body = String::from_utf8_lossy(&r.body);
    if r.status != 200 || !body.trim_start().starts_with('{') {
        bail!(
            "php-fpm at {ep} has no status page at {status_path} (HTTP {}): set `pm.status_path = {status_path}` in the pool, or fix `opcache.status_path`",
            r.status
        );
    }
    serde_json::from_str(body.trim())
        .with_context(|| format!("cannot read php-fpm's status page at {status_path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"pool":"www","process manager":"static","start time":1700000000,"start since":10,
      "accepted conn":12,"listen queue":0,"max listen queue":0,"listen queue len":4096,"idle processes":1,
      "active processes":3,"total processes":4,"max active processes":3,"max children reached":0,"slow requests":0,
      "processes":[
        {"pid":10,"state":"Idle","start time":1,"start since":1,"requests":3,"request duration":300000,"request method":"GET","request uri":"/slow.php","content length":0,"user":"-","script":"/w/ROOT/public/slow.php","last request cpu":0,"last request memory":0},
        {"pid":11,"state":"Running","start time":1,"start since":1,"requests":3,"request duration":120,"request method":"GET","request uri":"/fpm-status?full&json","content length":0,"user":"-","script":"-","last request cpu":0,"last request memory":0},
        {"pid":12,"state":"Running","start time":1,"start since":1,"requests":3,"request duration":200000,"request method":"GET","request uri":"/slow.php","content length":0,"user":"-","script":"/w/ROOT_2026.11.22-10.15.03/public/slow.php","last request cpu":0,"last request memory":0},
        {"pid":13,"state":"Running","start time":1,"start since":1,"requests":3,"request duration":200000,"request method":"GET","request uri":"/slow.php","content length":0,"user":"-","script":"/w/ROOT/public/slow.php","last request cpu":0,"last request memory":0}
      ]}"#;

    #[test]
    fn finds_requests_running_on_a_tree() {
        let st: FpmStatus = serde_json::from_str(SAMPLE).unwrap();
        let busy = st.busy_on(&[PathBuf::from("/w/ROOT")], "/fpm-status");
        assert_eq!(busy.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![13]);
        let busy = st.busy_on(
            &[PathBuf::from("/w/ROOT_2026.11.22-10.15.03")],
            "/fpm-status",
        );
        assert_eq!(busy.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![12]);
        // A path prefix that is not a path component does not match.
        assert!(st
            .busy_on(&[PathBuf::from("/w/ROO")], "/fpm-status")
            .is_empty());
    }

    #[test]
    fn a_request_whose_script_is_not_known_yet_counts() {
        let mut st: FpmStatus = serde_json::from_str(SAMPLE).unwrap();
        st.processes[0].state = "Reading headers".into();
        st.processes[0].script = "-".into();
        st.processes[0].request_uri = "-".into();
        let busy = st.busy_on(&[PathBuf::from("/elsewhere")], "/fpm-status");
        assert_eq!(busy.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![10]);
    }
}
