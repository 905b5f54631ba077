//! The FastCGI client: one request to php-fpm, no body, and its reply.
//!
//! The client is the `fastcgi-client` crate, driven by a single-threaded
//! tokio runtime that lives for one request: rootswap asks php-fpm a
//! handful of questions per deploy, none of them on a hot path.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use super::endpoint::Endpoint;

/// How long one FastCGI exchange with php-fpm may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// php-fpm's answer to one FastCGI request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status (`Status:` header, 200 when absent).
    pub status: u16,
    /// CGI response headers.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
    /// What php-fpm sent on FastCGI's stderr stream (PHP warnings, "Primary script unknown").
    pub stderr: String,
}

/// Sends one FastCGI request (no body) and returns php-fpm's reply.
pub fn request(ep: &Endpoint, params: &[(&str, String)], timeout: Duration) -> Result<Reply> {
    let mut p = fastcgi_client::Params::default();
    for (k, v) in params {
        p = p.custom(k.to_string(), v.clone());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the FastCGI client's runtime")?;
    let out = rt.block_on(async {
        tokio::time::timeout(timeout, exchange(ep, p))
            .await
            .map_err(|_| {
                anyhow!(
                    "php-fpm at {ep} did not answer within {}s",
                    timeout.as_secs_f32()
                )
            })?
    })?;
    let stdout = out.stdout.unwrap_or_default();
    let stderr = String::from_utf8_lossy(&out.stderr.unwrap_or_default())
        .trim()
        .to_string();
    let (head, body) = split_head(&stdout);
    let (status, headers) = read_head(head);
    Ok(Reply {
        status,
        headers,
        body: body.to_vec(),
        stderr,
    })
}

/// Connects to `ep` and runs the request once.
async fn exchange(
    ep: &Endpoint,
    p: fastcgi_client::Params<'static>,
) -> Result<fastcgi_client::Response> {
    use fastcgi_client::{io, Client, Request};
    match ep {
        Endpoint::Unix(path) => {
            let s = tokio::net::UnixStream::connect(path)
                .await
                .with_context(|| format!("cannot connect to php-fpm at {ep}"))?;
            Client::new_tokio(s)
                .execute_once(Request::new(p, io::empty()))
                .await
                .map_err(|e| anyhow!("FastCGI request to {ep} failed: {e}"))
        }
        Endpoint::Tcp(addr) => {
            let s = tokio::net::TcpStream::connect(addr.as_str())
                .await
                .with_context(|| format!("cannot connect to php-fpm at {ep}"))?;
            Client::new_tokio(s)
                .execute_once(Request::new(p, io::empty()))
                .await
                .map_err(|e| anyhow!("FastCGI request to {ep} failed: {e}"))
        }
    }
}

/// The status (`Status:` header, 200 when absent) and headers of a CGI head.
fn read_head(head: &[u8]) -> (u16, Vec<(String, String)>) {
    let mut status = 200;
    let mut headers = Vec::new();
    for line in String::from_utf8_lossy(head).lines() {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_string(), v.trim().to_string());
            if k.eq_ignore_ascii_case("status") {
                status = v
                    .split_whitespace()
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(500);
            }
            headers.push((k, v));
        }
    }
    (status, headers)
}

fn split_head(out: &[u8]) -> (&[u8], &[u8]) {
    for (sep, len) in [(&b"\r\n\r\n"[..], 4), (&b"\n\n"[..], 2)] {
        if let Some(i) = out.windows(len).position(|w| w == sep) {
            return (&out[..i], &out[i + len..]);
        }
    }
    (&[], out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cgi_headers() {
        let (h, b) = split_head(
            b"Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nFile not found.\n",
        );
        assert_eq!(h, b"Status: 404 Not Found\r\nContent-type: text/html");
        assert_eq!(b, b"File not found.\n");
    }
}
