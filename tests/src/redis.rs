//! A real `redis-server` (Debian's) on a free loopback port, with no
//! persistence, that a test can stop and start again on the same port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{free_port, wait_for_port, ChildProcess};

pub struct Redis {
    process: Option<ChildProcess>,
    pub port: u16,
    dir: tempfile::TempDir,
    starts: u32,
}

impl Redis {
    pub fn start() -> Redis {
        let mut redis = Redis {
            process: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            starts: 0,
        };
        redis.spawn();
        redis
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL: as a crash, nothing flushed).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.signal("KILL").expect("kill redis-server");
            process.wait_exit(Duration::from_secs(10));
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("redis-{}.log", self.starts))
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        let process = ChildProcess::spawn(command, &self.log_path())
            .expect("redis-server (apt install redis-server)");
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(10),
        )
        .expect("redis-server listens");
        self.process = Some(process);
    }
}
