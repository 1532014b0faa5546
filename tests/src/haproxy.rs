//! A real HAProxy in TCP mode in front of gateway replicas, as an L4
//! balancer: TLS passes through, and each connection to a replica starts
//! with a PROXY protocol v2 header naming the client.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{free_port, wait_for_port, ChildProcess};

pub struct Balancer {
    _process: ChildProcess,
    /// One entry port per backend, in the order given: a test chooses the
    /// replica by the port it connects to.
    pub ports: Vec<u16>,
}

impl Balancer {
    /// One frontend per backend on a free port, each connecting to its
    /// backend from `source` (the address the replicas trust for PROXY
    /// headers).
    pub fn start(dir: &Path, backends: &[SocketAddr], source: IpAddr) -> Balancer {
        let entries: Vec<(u16, SocketAddr)> = backends.iter().map(|b| (free_port(), *b)).collect();
        Self::start_on(dir, &entries, source)
    }

    /// Like [`Self::start`], on entry ports chosen beforehand (so that the
    /// replicas' policies can name the public origin before they start).
    pub fn start_on(dir: &Path, entries: &[(u16, SocketAddr)], source: IpAddr) -> Balancer {
        let mut config = String::from(
            "global\n  maxconn 200\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n",
        );
        for (n, (port, backend)) in entries.iter().enumerate() {
            config.push_str(&format!(
                "frontend entry{n}\n  bind 127.0.0.1:{port}\n  default_backend replica{n}\n\
                 backend replica{n}\n  server gw{n} {backend} send-proxy-v2 source {source}\n"
            ));
        }
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).expect("write haproxy.cfg");
        let mut command = Command::new("haproxy");
        command.arg("-db").arg("-f").arg(&path);
        let process = ChildProcess::spawn(command, &dir.join("haproxy.log"))
            .expect("haproxy (apt install haproxy)");
        for (port, _) in entries {
            wait_for_port(
                SocketAddr::from(([127, 0, 0, 1], *port)),
                Duration::from_secs(10),
            )
            .expect("haproxy listens");
        }
        Balancer {
            _process: process,
            ports: entries.iter().map(|(port, _)| *port).collect(),
        }
    }
}
