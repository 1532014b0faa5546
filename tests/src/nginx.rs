//! A real nginx (Debian's package) as a child process: its own prefix,
//! config and temp directories in a temp dir, one `server` on a free
//! loopback port, in the foreground without workers so the handle owns the
//! only process. Tests put it in front of the gateway, as deployments do.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::process::{free_port, wait_for_port, ChildProcess};

pub struct Nginx {
    pub process: ChildProcess,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx with `server` (directives such as `location` blocks)
    /// inside a `server` that listens on a free loopback port. Fails with
    /// nginx's own log when the config is refused or it does not listen.
    pub fn start(server: &str) -> Result<Nginx> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let root = dir.path().display().to_string();
        let config = format!(
            r#"daemon off;
master_process off;
pid {root}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port};
{server}
    }}
}}
"#
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config)?;
        let mut command = Command::new(binary());
        command
            .arg("-p")
            .arg(format!("{root}/"))
            .arg("-c")
            .arg(&conf)
            .args(["-e", "stderr"]);
        let process = ChildProcess::spawn(command, &dir.path().join("nginx.log"))
            .context("nginx runs (apt-get install nginx)")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for_port(addr, Duration::from_secs(10))
            .with_context(|| format!("--- nginx log ---\n{}", process.log_text()))?;
        Ok(Nginx { process, addr, dir })
    }
}

/// `nginx` from PATH, or where Debian installs it (root's PATH has
/// /usr/sbin; other users' may not).
fn binary() -> String {
    let sbin = "/usr/sbin/nginx";
    if std::path::Path::new(sbin).exists() {
        sbin.to_owned()
    } else {
        "nginx".to_owned()
    }
}
