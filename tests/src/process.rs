//! Child processes that die with their handle, and port helpers.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A free loopback port for a child process to listen on.
///
/// Ports come from just below the kernel's ephemeral range, because a port
/// the kernel hands out for `bind(0)` can also become the source port of
/// any outgoing connection before the child binds it (CI saw exactly that:
/// "Address already in use"). Below the range only explicit binds compete,
/// and a process-wide counter keeps this process's picks distinct.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = below_ephemeral_range();
    let span = u32::from(high - low);
    // Start where a concurrently running test binary is unlikely to be.
    let seed = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let offset = (seed + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = low + u16::try_from(offset).expect("span fits in u16");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high}");
}

/// The 10,000 ports below the kernel's ephemeral range.
fn below_ephemeral_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let high = ephemeral_low.max(11_024);
    (high - 10_000, high)
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!("nothing listens on {addr} after {timeout:?}")
}

/// A running child whose stderr goes to a log file; killed on drop.
pub struct ChildProcess {
    child: Child,
    pub log: std::path::PathBuf,
}

impl ChildProcess {
    pub fn spawn(mut command: Command, log: &Path) -> Result<Self> {
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = command
            .spawn()
            .with_context(|| format!("spawning {command:?}"))?;
        Ok(ChildProcess {
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the child has ended.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once it contains `needle`, or as it is after `timeout`. A
    /// program's log writer runs on a thread of its own, so what it logs
    /// can reach the file after effects the test saw (a metric, an answer).
    pub async fn log_once_it_has(&self, needle: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let text = self.log_text();
            if text.contains(needle) || std::time::Instant::now() >= deadline {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a signal by name (`TERM`, `HUP`, ...) with kill(1).
    pub fn signal(&self, name: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{name} failed");
        }
        Ok(())
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How much of a child's log a failing test shows.
const LOG_TAIL_LINES: usize = 40;

/// When the current thread is panicking (a test is failing), prints the
/// last lines of `process`'s log to stderr, which the test harness shows
/// with the failure. `what` names the program.
pub fn show_log_on_failure(what: &str, process: &ChildProcess) {
    if !std::thread::panicking() {
        return;
    }
    let log = process.log_text();
    let lines: Vec<&str> = log.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    eprintln!(
        "--- last {} lines of the {what} log ({}) ---\n{}",
        tail.len(),
        process.log.display(),
        tail.join("\n")
    );
}

/// Running a command with bytes on its stdin (which the caller set to
/// `Stdio::piped()`), collecting its stdout and stderr.
pub trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::io::Result<std::process::Output>;
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::io::Result<std::process::Output> {
        use std::io::Write;
        let mut child = self.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input)?;
        child.wait_with_output()
    }
}
