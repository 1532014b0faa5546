//! A network namespace of the test's own (`ip netns`): another host on
//! this machine, with its own loopback and addresses, deleted on drop.
//! Needs root, like the private dockerd.

use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// A fresh namespace with its loopback up.
    pub fn new(label: &str) -> Result<NetNs> {
        let name = format!("gh-{label}-{}", std::process::id());
        // A namespace left by a killed run of this same test.
        let _ = Command::new("ip").args(["netns", "delete", &name]).output();
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NAME ARGS...`.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args)).map(drop)
    }

    /// Adds `address` (with its prefix length) to the namespace's loopback.
    pub fn add_address(&self, address: &str) -> Result<()> {
        self.ip(&["addr", "add", address, "dev", "lo"])
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

fn run(command: &mut Command) -> Result<Output> {
    let out = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}
