//! nginx started by a test: its own configuration, pid file, logs and
//! temporary directories in a directory of the test's own, serving the
//! server blocks it is given on 127.0.0.1 ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::fpm::tails;
use super::net::free_port;
use super::proc::{wait_listening, Proc};
use super::tools::whoami;
use super::world::{fastcgi_unix, printed_config};

/// A running nginx master (stopped with its workers when dropped).
pub struct Nginx {
    /// The master process.
    pub proc: Proc,
    /// Where its configuration and logs are.
    pub dir: PathBuf,
    /// The ports its server blocks listen on, in the order given.
    pub ports: Vec<u16>,
}

impl Nginx {
    /// Starts `bin` in the foreground with `server_blocks` inside its
    /// `http {}`; returns once every one of `ports` accepts connections
    /// (fails the test with nginx's output when it exits first or takes
    /// over 15 s). `include fastcgi_params` finds Debian's file (or a
    /// minimal copy) beside the configuration.
    pub fn start(bin: &Path, dir: &Path, server_blocks: &str, ports: &[u16]) -> Nginx {
        Nginx::start_with(bin, dir, server_blocks, ports, 2)
    }

    /// [`Nginx::start`] with `workers` worker processes.
    pub fn start_with(
        bin: &Path,
        dir: &Path,
        server_blocks: &str,
        ports: &[u16],
        workers: u32,
    ) -> Nginx {
        let (user, group, root) = whoami();
        std::fs::create_dir_all(dir).expect("nginx's directory");
        let params = std::fs::read_to_string("/etc/nginx/fastcgi_params")
            .unwrap_or_else(|_| FASTCGI_PARAMS.to_string());
        std::fs::write(dir.join("fastcgi_params"), params).expect("fastcgi_params");
        let tmp = dir.join("nginx-tmp");
        std::fs::create_dir_all(&tmp).expect("nginx-tmp");
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes {workers};\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log warn;\n{user_line}\
             events {{ worker_connections 1024; }}\n\
             http {{\n    access_log off;\n    keepalive_requests 1000000;\n    client_body_temp_path {t}/body;\n    fastcgi_temp_path {t}/fastcgi;\n\
             proxy_temp_path {t}/proxy;\n    uwsgi_temp_path {t}/uwsgi;\n    scgi_temp_path {t}/scgi;\n    fastcgi_read_timeout 60s;\n\n{server_blocks}}}\n",
            d = dir.display(),
            t = tmp.display(),
            user_line = if root { format!("user {user} {group};\n") } else { String::new() },
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
        let out = dir.join("nginx.out");
        let mut cmd = Command::new(bin);
        cmd.arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("nginx-error.log"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&out).expect("nginx.out"));
        let mut proc = Proc::spawn("nginx", &mut cmd);
        for &port in ports {
            wait_listening(&mut proc, SocketAddr::from(([127, 0, 0, 1], port)), &out);
        }
        Nginx {
            proc,
            dir: dir.to_path_buf(),
            ports: ports.to_vec(),
        }
    }

    /// nginx on a free port serving the server block `rootswap nginx` prints
    /// for the site of config `cfg`, passing PHP to php-fpm at `socket`.
    pub fn for_site(bin: &Path, dir: &Path, cfg: &Path, socket: &Path) -> Nginx {
        let port = free_port();
        Nginx::start(bin, dir, &server_block(cfg, port, socket), &[port])
    }

    /// [`Nginx::for_site`] with one worker process, as the application
    /// tests (Laravel, Symfony, DokuWiki, WordPress) have always run it.
    pub fn for_app(bin: &Path, dir: &Path, cfg: &Path, socket: &Path) -> Nginx {
        let port = free_port();
        Nginx::start_with(bin, dir, &server_block(cfg, port, socket), &[port], 1)
    }

    /// The first port.
    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    /// True while the master runs.
    pub fn alive(&mut self) -> bool {
        self.proc.alive()
    }

    /// The last lines of nginx's error log.
    pub fn logs(&self) -> String {
        tails(&self.dir, &["nginx-error.log"])
    }
}

/// The server block `rootswap nginx` prints for config `cfg`, listening on
/// 127.0.0.1:`port` as [`SITE_HOST`](super::net::SITE_HOST), passing PHP to `socket`.
pub fn server_block(cfg: &Path, port: u16, socket: &Path) -> String {
    printed_config(cfg, "nginx", port, &fastcgi_unix(socket))
}

/// Used when the system has no /etc/nginx/fastcgi_params.
const FASTCGI_PARAMS: &str = "\
fastcgi_param QUERY_STRING $query_string;
fastcgi_param REQUEST_METHOD $request_method;
fastcgi_param CONTENT_TYPE $content_type;
fastcgi_param CONTENT_LENGTH $content_length;
fastcgi_param SCRIPT_NAME $fastcgi_script_name;
fastcgi_param REQUEST_URI $request_uri;
fastcgi_param DOCUMENT_URI $document_uri;
fastcgi_param DOCUMENT_ROOT $document_root;
fastcgi_param SERVER_PROTOCOL $server_protocol;
fastcgi_param REQUEST_SCHEME $scheme;
fastcgi_param GATEWAY_INTERFACE CGI/1.1;
fastcgi_param SERVER_SOFTWARE nginx/$nginx_version;
fastcgi_param REMOTE_ADDR $remote_addr;
fastcgi_param REMOTE_PORT $remote_port;
fastcgi_param SERVER_ADDR $server_addr;
fastcgi_param SERVER_PORT $server_port;
fastcgi_param SERVER_NAME $server_name;
fastcgi_param REDIRECT_STATUS 200;
";
