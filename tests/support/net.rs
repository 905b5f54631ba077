//! Loopback networking for tests: a free port, and the one HTTP/1.1 client
//! every test uses (a keep-alive GET for load against nginx, one-shot
//! requests with any method, headers and body for rootswap's listener).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A port nobody listens on (bind 127.0.0.1:0, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// An HTTP/1.1 client of one port on 127.0.0.1. [`Http::get`] keeps one
/// connection alive across requests (a load generator's); [`Http::send`]
/// makes each request on a connection of its own (`Connection: close`).
/// Bodies are read by `Content-Length`, chunked, or to the end.
pub struct Http {
    addr: SocketAddr,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
}

/// `Host` of [`Http::get`]: the `--server-name` of the harness's nginx.
pub const SITE_HOST: &str = "site.test";

impl Http {
    /// A client of `127.0.0.1:port`, reads timing out after 20 s.
    pub fn new(port: u16) -> Http {
        Http {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            timeout: Duration::from_secs(20),
            conn: None,
        }
    }

    /// A client of `addr` (a node in a network namespace of its own).
    pub fn at(addr: SocketAddr) -> Http {
        Http {
            addr,
            timeout: Duration::from_secs(20),
            conn: None,
        }
    }

    /// The same with reads timing out after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Http {
        self.timeout = timeout;
        self
    }

    /// GET `path` on the kept-alive connection (opened on first use, again
    /// after an error or `Connection: close`): status and body.
    pub fn get(&mut self, path: &str) -> Result<(u16, String), String> {
        let r = self.get_inner(path);
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    fn get_inner(&mut self, path: &str) -> Result<(u16, String), String> {
        if self.conn.is_none() {
            let s = self.connect()?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut().ok_or("no connection")?;
        conn.get_mut()
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: {SITE_HOST}\r\n\r\n").as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let (status, body, close) = read_response(conn)?;
        if close {
            self.conn = None;
        }
        Ok((status, body))
    }

    fn connect(&self) -> Result<TcpStream, String> {
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .map_err(|e| format!("connect to {}: {e}", self.addr))?;
        s.set_read_timeout(Some(self.timeout))
            .map_err(|e| e.to_string())?;
        Ok(s)
    }

    /// One request on a connection of its own: the whole response as it
    /// came (status line, headers, body), as much as arrived before the
    /// server closed or the read timed out. `Host` is `127.0.0.1:PORT`
    /// unless `headers` has one. Err only when the connection fails.
    pub fn exchange(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<u8>, String> {
        let mut s = self.connect()?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req.push_str(&format!("Host: {}\r\n", self.addr));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        // A server may answer (and close) before it has read the body.
        let _ = s.write_all(req.as_bytes());
        let _ = s.write_all(body);
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        Ok(buf)
    }

    /// [`Http::exchange`]'s status and body (status 0 when the response is
    /// not HTTP).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, String), String> {
        let raw = self.exchange(method, path, headers, body)?;
        if let Ok((status, body, _)) = read_response(&mut &raw[..]) {
            return Ok((status, body));
        }
        let text = String::from_utf8_lossy(&raw);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }
}

/// One request to `127.0.0.1:port` on its own connection: status and body;
/// fails the test when nothing listens there.
#[track_caller]
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    Http::new(port)
        .send(method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Reads one response: status, body, and whether the server closes the
/// connection after it.
fn read_response(conn: &mut impl BufRead) -> Result<(u16, String, bool), String> {
    let mut line = String::new();
    conn.read_line(&mut line)
        .map_err(|e| format!("read status: {e}"))?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let (mut len, mut chunked, mut close) = (None, false, false);
    loop {
        line.clear();
        conn.read_line(&mut line)
            .map_err(|e| format!("read header: {e}"))?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match k.as_str() {
                "content-length" => len = v.parse::<usize>().ok(),
                "transfer-encoding" => chunked = v.contains("chunked"),
                "connection" => close = v.contains("close"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        read_chunks(conn, &mut body)?;
    } else if let Some(n) = len {
        body.resize(n, 0);
        conn.read_exact(&mut body)
            .map_err(|e| format!("read body: {e}"))?;
    } else {
        conn.read_to_end(&mut body)
            .map_err(|e| format!("read body: {e}"))?;
        close = true;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned(), close))
}

/// Reads a chunked body into `body`.
fn read_chunks(conn: &mut impl BufRead, body: &mut Vec<u8>) -> Result<(), String> {
    let mut line = String::new();
    loop {
        line.clear();
        conn.read_line(&mut line)
            .map_err(|e| format!("read chunk size: {e}"))?;
        let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| format!("bad chunk size {line:?}"))?;
        let mut chunk = vec![0; n + 2];
        conn.read_exact(&mut chunk)
            .map_err(|e| format!("read chunk: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&chunk[..n]);
    }
}
