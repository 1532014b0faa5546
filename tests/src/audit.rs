//! Reading an audit log (JSON Lines) the way an operator would: the active
//! file as it is on disk, polled until the records a test waits for have
//! been written (the writer is a thread, so records land a moment later).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How often [`AuditLog::wait_for`] reads the file again.
const POLL: Duration = Duration::from_millis(50);

#[derive(Clone, Debug)]
pub struct AuditLog {
    pub path: PathBuf,
}

impl AuditLog {
    pub fn at(path: impl AsRef<Path>) -> AuditLog {
        AuditLog {
            path: path.as_ref().to_path_buf(),
        }
    }

    /// The records of the active file now; lines that are not JSON (a
    /// record being written) are left out.
    pub fn records(&self) -> Vec<Value> {
        self.text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The file's text now, empty if it does not exist yet.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }

    /// Waits up to `timeout` until `count` records have `event`; returns
    /// them all, or panics showing the file.
    pub async fn wait_for(&self, event: &str, count: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<Value> = self
                .records()
                .into_iter()
                .filter(|r| r["event"] == event)
                .collect();
            if found.len() >= count {
                return found;
            }
            if Instant::now() >= deadline {
                panic!(
                    "fewer than {count} `{event}` records in {}:\n{}",
                    self.path.display(),
                    self.text()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
