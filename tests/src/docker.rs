//! A private Docker daemon for tests.
//!
//! Each [`PrivateDocker`] is a real `dockerd` with its own socket, data root,
//! exec root and pidfile under a fresh temp dir, started without touching the
//! host's networking (`--bridge none --iptables=false`), and seeded with
//! [`TEST_IMAGE`]: a busybox-static rootfs imported with `docker import`,
//! since no image can be pulled in CI.
//!
//! A daemon outlives a panicking or exiting test process unless someone stops
//! it, and a `static` is never dropped; so every daemon gets a watchdog shell
//! that cleans up after the test process once it is gone.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::process::ChildProcess;

/// The image every private daemon starts with: busybox with all applets in
/// /bin, `nobody` (65534) in /etc/passwd, a 1777 /tmp, and PATH=/bin.
pub const TEST_IMAGE: &str = "gatehouse-test/busybox:latest";

/// How long dockerd may take to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long dockerd may take to stop (it stops running containers first,
/// each with up to its 10 s stop timeout).
const STOP_TIMEOUT: Duration = Duration::from_secs(45);

/// Cleans up after the test process: waits until `$owner` has exited, then
/// force-removes all containers, stops dockerd (pid from its pidfile), unmounts
/// whatever is left under the temp dir and deletes it (and, for a Swarm
/// node, the `docker_gwbridge` it made). A normal `Drop` does all this
/// first and then kills the watchdog.
const WATCHDOG: &str = r#"
owner=$1 dir=$2 docker=$3
while kill -0 "$owner" 2>/dev/null; do sleep 0.5; done
swarm=0; [ -e "$dir/swarm" ] && swarm=1
pid=$(cat "$dir/pid" 2>/dev/null)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  ids=$(DOCKER_HOST="unix://$dir/docker.sock" "$docker" ps -aq 2>/dev/null)
  [ -n "$ids" ] && DOCKER_HOST="unix://$dir/docker.sock" "$docker" rm -f $ids >/dev/null 2>&1
  kill -TERM "$pid"
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 90 ]; do sleep 0.5; i=$((i+1)); done
  kill -KILL "$pid" 2>/dev/null
fi
awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
rm -rf "$dir"
# A Swarm node's bridge to the host lives on in the host's namespace.
[ $swarm = 1 ] && ip link del docker_gwbridge 2>/dev/null
exit 0
"#;

/// A running private `dockerd`; stopped and cleaned up on drop.
pub struct PrivateDocker {
    dockerd: Option<ChildProcess>,
    watchdog: Option<ChildProcess>,
    dockerd_bin: PathBuf,
    docker_bin: PathBuf,
    /// Kept as a path, not a `TempDir`: removal has to wait until the daemon
    /// is down and its mounts are gone.
    dir: PathBuf,
}

impl PrivateDocker {
    /// Starts a daemon and seeds [`TEST_IMAGE`].
    pub fn start() -> Result<PrivateDocker> {
        Self::start_with("{}\n")
    }

    /// A daemon that is a one-node Swarm manager (advertising 127.0.0.1),
    /// with `--no-new-privileges` for every container, as the Swarm
    /// executor requires of nodes before API 1.44.
    pub fn start_swarm() -> Result<PrivateDocker> {
        let docker = Self::start_with("{\"no-new-privileges\": true}\n")?;
        std::fs::write(docker.dir.join("swarm"), "")?;
        let output = docker
            .docker_cli()
            .args(["swarm", "init", "--advertise-addr", "127.0.0.1"])
            .output()
            .context("docker swarm init")?;
        if !output.status.success() {
            bail!(
                "docker swarm init failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(docker)
    }

    /// Starts a daemon with `daemon_json` as its configuration file.
    fn start_with(daemon_json: &str) -> Result<PrivateDocker> {
        if !is_root() {
            bail!("PrivateDocker needs root: dockerd cannot run unprivileged here");
        }
        let dockerd_bin = find_program("dockerd")?;
        let docker_bin = find_program("docker")?;
        let busybox = find_busybox()?;

        // Short path under /tmp: the socket path must fit in 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("ghdd-")
            .tempdir_in("/tmp")
            .context("creating the daemon's temp dir")?
            .keep();
        let mut docker = PrivateDocker {
            dockerd: None,
            watchdog: None,
            dockerd_bin,
            docker_bin,
            dir,
        };
        // From here on, Drop cleans up whatever got started.
        docker.spawn_watchdog()?;
        std::fs::write(docker.dir.join("daemon.json"), daemon_json)?;
        docker.spawn_dockerd()?;
        docker.seed_image(&busybox)?;
        Ok(docker)
    }

    /// One daemon for the whole test binary, started on first use. It is
    /// never dropped; its watchdog removes it after the process exits.
    pub fn shared() -> Result<&'static PrivateDocker> {
        static SHARED: OnceLock<std::result::Result<PrivateDocker, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| PrivateDocker::start().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("starting the shared private dockerd failed: {e}"))
    }

    /// `unix:///…/docker.sock`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The daemon's temp dir (socket, data root, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The daemon's log so far, for failure messages.
    pub fn log_text(&self) -> String {
        self.dockerd
            .as_ref()
            .map(ChildProcess::log_text)
            .unwrap_or_default()
    }

    /// The `docker` CLI talking to this daemon.
    pub fn docker_cli(&self) -> Command {
        let mut command = Command::new(&self.docker_bin);
        command.env("DOCKER_HOST", self.host());
        command
    }

    /// Stops the daemon (SIGTERM, wait for exit) and starts it again on the
    /// same socket and data root. Without live-restore, the stop kills every
    /// running container.
    pub fn restart(&mut self) -> Result<()> {
        self.stop_dockerd()?;
        self.spawn_dockerd()
    }

    /// Stops the daemon (SIGTERM, wait for exit) and leaves it stopped: its
    /// socket is gone until [`PrivateDocker::start_again`].
    pub fn stop(&mut self) -> Result<()> {
        self.stop_dockerd()
    }

    /// Starts a stopped daemon again on the same socket and data root, and
    /// waits until it answers.
    pub fn start_again(&mut self) -> Result<()> {
        if self.dockerd.is_some() {
            bail!("dockerd is already running");
        }
        self.spawn_dockerd()
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    fn spawn_watchdog(&mut self) -> Result<()> {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(std::process::id().to_string())
            .arg(&self.dir)
            .arg(&self.docker_bin);
        self.watchdog = Some(ChildProcess::spawn(
            command,
            &self.dir.join("watchdog.log"),
        )?);
        Ok(())
    }

    fn spawn_dockerd(&mut self) -> Result<()> {
        let socket = self.socket();
        if socket.as_os_str().len() > 107 {
            bail!("socket path {} is too long", socket.display());
        }
        let dir = &self.dir;
        let mut command = Command::new(&self.dockerd_bin);
        command
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("pid"))
            // An empty config, so the host's /etc/docker/daemon.json (hosts,
            // registries, ...) cannot interfere.
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            // No bridge, no iptables rules, no sysctl changes on the host.
            .arg("--bridge")
            .arg("none")
            .arg("--iptables=false")
            .arg("--ip-forward=false")
            .arg("--ip-masq=false")
            // Containers die with the daemon (no live-restore) without each
            // waiting out the default 10 s stop timeout.
            .arg("--shutdown-timeout")
            .arg("2")
            .env_remove("DOCKER_HOST");
        // A restart appends to the same log so the history stays readable.
        let log = dir.join(format!(
            "dockerd-{}.log",
            std::fs::read_dir(dir)?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("dockerd-"))
                .count()
        ));
        let mut child = ChildProcess::spawn(command, &log)?;
        let ready = wait_for_ping(&socket, &mut child, START_TIMEOUT);
        // Store it before failing, so Drop stops whatever did start.
        let log_text = child.log_text();
        self.dockerd = Some(child);
        ready.with_context(|| format!("dockerd did not come up; its log:\n{log_text}"))
    }

    fn stop_dockerd(&mut self) -> Result<()> {
        let Some(mut child) = self.dockerd.take() else {
            return Ok(());
        };
        if child.try_exit().is_some() {
            return Ok(());
        }
        child.signal("TERM")?;
        if child.wait_exit(STOP_TIMEOUT).is_none() {
            // Dropping kills it; containerd then dies with it (pdeathsig).
            drop(child);
            bail!("dockerd did not stop within {STOP_TIMEOUT:?} of SIGTERM");
        }
        Ok(())
    }

    fn seed_image(&self, busybox: &Path) -> Result<()> {
        let rootfs = self.dir.join("rootfs");
        let bin = rootfs.join("bin");
        std::fs::create_dir_all(&bin)?;
        for dir in ["etc", "tmp", "proc", "sys", "dev"] {
            std::fs::create_dir_all(rootfs.join(dir))?;
        }
        set_mode(&rootfs.join("tmp"), 0o1777)?;
        std::fs::copy(busybox, bin.join("busybox"))
            .with_context(|| format!("copying {}", busybox.display()))?;
        set_mode(&bin.join("busybox"), 0o755)?;

        // Every applet as a symlink, so tests can use any of them.
        let list = Command::new(busybox)
            .arg("--list")
            .output()
            .context("busybox --list")?;
        if !list.status.success() {
            bail!("busybox --list failed");
        }
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            let applet = applet.trim();
            if applet.is_empty() || applet == "busybox" || applet.contains('/') {
                continue;
            }
            std::os::unix::fs::symlink("busybox", bin.join(applet))?;
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )?;
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;

        let tarball = self.dir.join("rootfs.tar");
        run(Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("--numeric-owner")
            .arg("-cf")
            .arg(&tarball)
            .arg("."))
        .context("packing the test rootfs")?;
        run(self
            .docker_cli()
            .arg("import")
            .arg("-c")
            .arg("ENV PATH=/bin")
            .arg(&tarball)
            .arg(TEST_IMAGE))
        .context("docker import of the test image")?;
        std::fs::remove_dir_all(&rootfs)?;
        std::fs::remove_file(&tarball)?;
        Ok(())
    }

    /// Force-removes every container; best effort.
    fn remove_all_containers(&self) {
        let Ok(out) = self.docker_cli().args(["ps", "-aq"]).output() else {
            return;
        };
        let ids = String::from_utf8_lossy(&out.stdout);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = self
                .docker_cli()
                .args(["rm", "-f"])
                .args(&ids)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for PrivateDocker {
    fn drop(&mut self) {
        if self
            .dockerd
            .as_mut()
            .is_some_and(|d| d.try_exit().is_none())
        {
            self.remove_all_containers();
        }
        if let Err(err) = self.stop_dockerd() {
            eprintln!("PrivateDocker: {err:#}");
        }
        let swarm = self.dir.join("swarm").exists();
        unmount_below(&self.dir);
        if swarm {
            let _ = Command::new("ip")
                .args(["link", "del", "docker_gwbridge"])
                .status();
        }
        if let Err(err) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("PrivateDocker: removing {}: {err}", self.dir.display());
        }
        // Only now: the watchdog is the fallback for everything above.
        self.watchdog.take();
    }
}

/// Polls `GET /_ping` on the socket until the daemon answers OK.
fn wait_for_ping(socket: &Path, child: &mut ChildProcess, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_exit() {
            bail!("dockerd exited early with {status}");
        }
        if ping(socket).unwrap_or(false) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("no answer on {} within {timeout:?}", socket.display())
}

fn ping(socket: &Path) -> Result<bool> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"))
}

/// Lazily unmounts whatever is still mounted below `dir`, deepest first.
fn unmount_below(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&prefix))
        .collect();
    points.sort_unstable_by(|a, b| b.cmp(a));
    for point in points {
        let _ = Command::new("umount").arg("-l").arg(point).status();
    }
}

fn run(command: &mut Command) -> Result<()> {
    let out = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The owner of /proc/self is the process's effective uid.
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// `name` on PATH or in the usual sbin/bin dirs (root's PATH may lack sbin).
fn find_program(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!(
                "{name} not found: install Debian's docker.io package (apt-get install docker.io)"
            )
        })
}

fn find_busybox() -> Result<PathBuf> {
    let path = ["/bin/busybox", "/usr/bin/busybox"]
        .map(PathBuf::from)
        .into_iter()
        .find(|p| p.is_file())
        .context("busybox not found: install busybox-static (apt-get install busybox-static)")?;
    // A dynamically linked busybox would not run in the bare image.
    let binary = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    // The interpreter path (PT_INTERP) sits near the start of an ELF file.
    let head = &binary[..binary.len().min(4096)];
    if contains(head, b"/lib64/ld-linux") || contains(head, b"/lib/ld-linux") {
        bail!(
            "{} is dynamically linked; install busybox-static",
            path.display()
        );
    }
    Ok(path)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
