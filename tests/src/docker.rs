//! A private Docker daemon for tests: its own socket, data root and exec
//! root under a temp dir, so tests never touch (or depend on) a system
//! daemon, and one test may restart its daemon without disturbing others.
//! The test image is built without any registry: busybox-static from apt,
//! packed into a rootfs and loaded with `docker import`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::process::ChildProcess;

/// The image every scheduler test runs: busybox with all its applets.
pub const TEST_IMAGE: &str = "gatehouse-test/busybox:latest";

pub struct PrivateDocker {
    daemon: Option<ChildProcess>,
    root: tempfile::TempDir,
    restarts: u32,
}

impl PrivateDocker {
    /// Starts dockerd and seeds [`TEST_IMAGE`]. Needs root, `dockerd`
    /// (docker.io) and a static `/bin/busybox` (busybox-static).
    pub fn start() -> Result<PrivateDocker> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .context("running id -u")?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            bail!("a private dockerd needs root");
        }
        for tool in ["dockerd", "docker"] {
            if !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()?
                .success()
            {
                bail!("{tool} is missing: apt-get install docker.io");
            }
        }
        // Short paths: a unix socket path may not exceed 107 bytes.
        let root = tempfile::Builder::new().prefix("ghd").tempdir_in("/tmp")?;
        let mut docker = PrivateDocker {
            daemon: None,
            root,
            restarts: 0,
        };
        docker.spawn_daemon()?;
        docker.seed_image()?;
        Ok(docker)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// `unix:///…/docker.sock`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.path("docker.sock").display())
    }

    /// `docker` talking to this daemon.
    pub fn docker_cli(&self) -> Command {
        let mut command = Command::new("docker");
        command.env("DOCKER_HOST", self.host());
        command
    }

    fn spawn_daemon(&mut self) -> Result<()> {
        self.restarts += 1;
        // dockerd runs under a small shell that stops it when this test
        // process is gone: a daemon held in a `static` is never dropped.
        // SIGTERM to the shell stops dockerd and waits for it.
        let watcher = r#"
            dockerd "$@" & d=$!
            trap 'kill -TERM $d 2>/dev/null; wait $d; exit 0' TERM
            while kill -0 "$OWNER" 2>/dev/null && kill -0 $d 2>/dev/null; do sleep 1; done
            kill -TERM $d 2>/dev/null; wait $d
        "#;
        let mut command = Command::new("sh");
        command
            .args(["-c", watcher, "sh"])
            .env("OWNER", std::process::id().to_string())
            .arg("--host")
            .arg(self.host())
            .arg("--data-root")
            .arg(self.path("data"))
            .arg("--exec-root")
            .arg(self.path("exec"))
            .arg("--pidfile")
            .arg(self.path("dockerd.pid"))
            // No bridge and no iptables: the daemon changes nothing on the
            // host's network, and jobs run with network "none" anyway.
            .args(["--bridge", "none", "--iptables=false"])
            // Containers die with the daemon (no live-restore), quickly.
            .args(["--shutdown-timeout", "2"]);
        let log = self.path(&format!("dockerd-{}.log", self.restarts));
        self.daemon = Some(ChildProcess::spawn(command, &log)?);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ok = self
                .docker_cli()
                .args(["version", "--format", "{{.Server.Version}}"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            if let Some(status) = self.daemon.as_mut().and_then(|d| d.try_exit()) {
                bail!(
                    "dockerd exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "dockerd did not answer within 30 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    }

    fn seed_image(&self) -> Result<()> {
        let busybox = Path::new("/bin/busybox");
        if !busybox.exists() {
            bail!("/bin/busybox is missing: apt-get install busybox-static");
        }
        let rootfs = self.path("rootfs");
        for dir in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
            std::fs::create_dir_all(rootfs.join(dir))?;
        }
        std::fs::copy(busybox, rootfs.join("bin/busybox"))?;
        let list = Command::new(busybox)
            .arg("--list")
            .output()
            .context("busybox --list")?;
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if !applet.is_empty() && applet != "busybox" {
                std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
            }
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
        )?;
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .context("tar")?;
        let imported = self
            .docker_cli()
            .args(["import", "-c", "ENV PATH=/bin", "-", TEST_IMAGE])
            .stdin(tar.stdout.context("tar stdout")?)
            .output()
            .context("docker import")?;
        if !imported.status.success() {
            bail!(
                "docker import failed: {}",
                String::from_utf8_lossy(&imported.stderr)
            );
        }
        Ok(())
    }

    /// Stops dockerd (SIGTERM; running containers are killed, as a real
    /// daemon restart without live-restore does) and starts it again on
    /// the same socket and data root.
    pub fn restart(&mut self) -> Result<()> {
        self.stop_daemon();
        self.spawn_daemon()
    }

    fn stop_daemon(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.signal("TERM");
            if daemon.wait_exit(Duration::from_secs(30)).is_none() {
                let _ = daemon.signal("KILL");
                let _ = daemon.wait_exit(Duration::from_secs(5));
            }
        }
    }
}

impl Drop for PrivateDocker {
    fn drop(&mut self) {
        // Remove what tests left, stop the daemon, then unmount whatever
        // overlay mounts it left so the temp dir can be deleted.
        if let Ok(out) = self.docker_cli().args(["ps", "-aq"]).output() {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let _ = self.docker_cli().args(["rm", "-f"]).args(&ids).output();
            }
        }
        self.stop_daemon();
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {0}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
                self.root.path().display()
            ))
            .status();
    }
}
