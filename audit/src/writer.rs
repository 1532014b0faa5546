//! The one writer of an audit log: a thread that owns the file, assigns
//! the chain, batches fsyncs, rotates by size and applies retention
//! (`retention.rs`) at start, after each rotation and hourly.
//!
//! Why a thread and not a task: the file calls block, and both programs
//! must be able to flush it from a signal path on shutdown. Callers only
//! ever `try_send` into a bounded channel, so a slow disk never stalls a
//! request; a full channel counts as a write failure.
//!
//! Crash safety: a batch goes out in one `write` of whole lines. If a
//! write fails halfway (disk full), the file is cut back to its last whole
//! record before anything else is written, so a failure never leaves a torn
//! line in the middle of the chain. A crash can leave one torn line at the
//! end; on the next start that file is rotated away untouched (so `verify`
//! can report it) and the chain continues from the last whole record.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use gatehouse_policy::{AuditSettings, OnAuditFailure};

use crate::record::{line_hash, AuditEvent, AuditRecord, GENESIS};
use crate::retention;
use crate::rotated::{rotated_files, rotated_name};

/// Records waiting in the channel before `record` counts a failure.
const CHANNEL_CAPACITY: usize = 65_536;
/// Records kept for a retry while the file cannot be written.
const MAX_PENDING: usize = 100_000;
/// How far back from the end the tail of a file is read on start.
const TAIL_BYTES: u64 = 1024 * 1024;
/// Retention also runs this often, so `max_age` holds without traffic.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit log {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the audit log {path} ends in something that is not an audit record; run `audit verify` on it and move it aside")]
    Corrupt { path: PathBuf },
}

/// Counters for the programs' metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStats {
    pub written: u64,
    pub write_failures: u64,
    pub dropped: u64,
    /// Rotated files deleted by retention (`max_age`, `max_total_size`).
    pub files_deleted: u64,
}

#[derive(Default)]
struct Shared {
    healthy: AtomicBool,
    written: AtomicU64,
    write_failures: AtomicU64,
    dropped: AtomicU64,
    files_deleted: AtomicU64,
}

enum Message {
    Event(Box<AuditEvent>),
    Flush(SyncSender<bool>),
}

/// The handle programs hold. Dropping it (or [`AuditLog::close`]) lets the
/// writer finish what is queued, fsync and stop.
pub struct AuditLog {
    sender: Mutex<Option<SyncSender<Message>>>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    settings: AuditSettings,
}

impl AuditLog {
    /// Opens (or creates) the log, recovers the chain from what is on disk
    /// and starts the writer thread.
    pub fn open(settings: &AuditSettings) -> Result<AuditLog, AuditError> {
        let open_error = |source| AuditError::Open {
            path: settings.path.clone(),
            source,
        };
        if let Some(dir) = settings.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(open_error)?;
        }
        let chain = recover_chain(&settings.path)?;
        let file = open_append(&settings.path).map_err(open_error)?;
        let len = file.metadata().map_err(open_error)?.len();
        let shared = Arc::new(Shared::default());
        shared.healthy.store(true, Ordering::Relaxed);
        let (sender, receiver) = mpsc::sync_channel(CHANNEL_CAPACITY);
        let writer = Writer {
            settings: settings.clone(),
            file,
            len,
            first_seq_in_file: chain.first_seq_in_active,
            next_seq: chain.next_seq,
            prev: chain.prev,
            pending: VecDeque::new(),
            last_sync: Instant::now(),
            unsynced: false,
            retention_due: true,
            last_retention: Instant::now(),
            shared: shared.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(open_error)?;
        Ok(AuditLog {
            sender: Mutex::new(Some(sender)),
            shared,
            thread: Mutex::new(Some(thread)),
            settings: settings.clone(),
        })
    }

    pub fn settings(&self) -> &AuditSettings {
        &self.settings
    }

    /// Queues a record without blocking.
    pub fn record(&self, event: AuditEvent) {
        let sent = match self.sender.lock() {
            Ok(guard) => guard
                .as_ref()
                .map(|s| s.try_send(Message::Event(Box::new(event)))),
            Err(_) => None,
        };
        match sent {
            Some(Ok(())) => {}
            Some(Err(TrySendError::Full(_))) | Some(Err(TrySendError::Disconnected(_))) | None => {
                self.shared.healthy.store(false, Ordering::Relaxed);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!("audit record dropped: the audit writer is not keeping up");
            }
        }
    }

    /// Waits until everything queued before this call is on disk. Returns
    /// false when it is not (a write failed, or `timeout` passed).
    pub fn flush(&self, timeout: Duration) -> bool {
        let (ack, done) = mpsc::sync_channel(1);
        let sent = self
            .sender
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|s| s.send(Message::Flush(ack)).is_ok()));
        sent == Some(true) && done.recv_timeout(timeout).unwrap_or(false)
    }

    /// Writes what is queued, fsyncs and stops the writer.
    pub fn close(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        if let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = thread.join();
        }
    }

    /// False while records cannot be written.
    pub fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed)
    }

    /// Whether requests must be refused now: the log is failing and the
    /// policy says to fail closed.
    pub fn must_refuse(&self) -> bool {
        self.settings.on_failure == OnAuditFailure::Deny && !self.is_healthy()
    }

    pub fn stats(&self) -> AuditStats {
        AuditStats {
            written: self.shared.written.load(Ordering::Relaxed),
            write_failures: self.shared.write_failures.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            files_deleted: self.shared.files_deleted.load(Ordering::Relaxed),
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

struct Writer {
    settings: AuditSettings,
    file: File,
    /// Bytes of whole records in the active file.
    len: u64,
    first_seq_in_file: u64,
    next_seq: u64,
    prev: String,
    pending: VecDeque<AuditEvent>,
    last_sync: Instant,
    unsynced: bool,
    /// Set at start and by each rotation.
    retention_due: bool,
    last_retention: Instant,
    shared: Arc<Shared>,
}

impl Writer {
    fn run(mut self, receiver: Receiver<Message>) {
        let mut acks = Vec::new();
        self.retain_if_due();
        loop {
            let wait = if self.pending.is_empty() && !self.unsynced {
                Duration::from_secs(3600)
            } else {
                self.settings
                    .fsync_interval
                    .saturating_sub(self.last_sync.elapsed())
                    .max(Duration::from_millis(10))
            };
            let mut stop = false;
            match receiver.recv_timeout(wait) {
                Ok(message) => {
                    self.take(message, &mut acks);
                    // Batch whatever else is already queued.
                    while self.pending.len() < 4096 {
                        match receiver.try_recv() {
                            Ok(message) => self.take(message, &mut acks),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            let critical = self.pending.iter().any(|e| e.kind().is_critical());
            self.write_pending();
            self.retain_if_due();
            let due = self.last_sync.elapsed() >= self.settings.fsync_interval;
            if self.unsynced && (critical || due || stop || !acks.is_empty()) {
                self.sync();
            }
            let durable = self.pending.is_empty() && !self.unsynced;
            for ack in acks.drain(..) {
                let _ = ack.send(durable);
            }
            if stop {
                return;
            }
        }
    }

    fn take(&mut self, message: Message, acks: &mut Vec<SyncSender<bool>>) {
        match message {
            Message::Event(event) => {
                if self.pending.len() >= MAX_PENDING {
                    self.pending.pop_front();
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                }
                self.pending.push_back(*event);
            }
            Message::Flush(ack) => acks.push(ack),
        }
    }

    /// Serialises the pending records onto the chain and writes them, a
    /// batch per file (rotating when the next record would not fit); on a
    /// failure the chain and the file stay as they were.
    fn write_pending(&mut self) {
        while !self.pending.is_empty() {
            let room = self.settings.max_file_size.saturating_sub(self.len);
            let mut batch = Vec::new();
            let mut count = 0;
            let mut seq = self.next_seq;
            let mut prev = self.prev.clone();
            for event in &self.pending {
                let record = event.clone().into_record(seq, prev.clone());
                let Ok(mut line) = serde_json::to_vec(&record) else {
                    // Cannot happen for these types; never write half a record.
                    tracing::error!("audit record could not be serialised");
                    return;
                };
                let fits = (batch.len() + line.len() + 1) as u64 <= room;
                // A record larger than a whole file still goes into one.
                let alone_in_new_file = count == 0 && self.len == 0;
                if !(fits || alone_in_new_file) {
                    break;
                }
                prev = line_hash(&line);
                seq += 1;
                count += 1;
                line.push(b'\n');
                batch.extend_from_slice(&line);
            }
            if count == 0 {
                if let Err(e) = self.rotate() {
                    self.failed("rotate", &e);
                    return;
                }
                continue;
            }
            if let Err(e) = self.file.write_all(&batch) {
                // Cut any partial line off so the next write starts clean.
                let _ = self.file.set_len(self.len);
                self.failed("write", &e);
                return;
            }
            self.len += batch.len() as u64;
            self.next_seq = seq;
            self.prev = prev;
            self.unsynced = true;
            if self.settings.stdout {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&batch).and_then(|()| out.flush());
            }
            self.pending.drain(..count);
            self.shared
                .written
                .fetch_add(count as u64, Ordering::Relaxed);
            self.shared.healthy.store(true, Ordering::Relaxed);
        }
    }

    /// Retention, when due, and only while the active file holds a record:
    /// the next start then recovers the chain from it alone, whatever
    /// retention deleted.
    fn retain_if_due(&mut self) {
        let due = self.retention_due || self.last_retention.elapsed() >= RETENTION_EVERY;
        if !due || self.len == 0 {
            return;
        }
        let deleted = retention::enforce(&self.settings, self.len, SystemTime::now());
        self.shared
            .files_deleted
            .fetch_add(deleted, Ordering::Relaxed);
        self.retention_due = false;
        self.last_retention = Instant::now();
    }

    fn sync(&mut self) {
        match self.file.sync_data() {
            Ok(()) => {
                self.unsynced = false;
                self.last_sync = Instant::now();
            }
            Err(e) => self.failed("fsync", &e),
        }
    }

    fn failed(&mut self, what: &str, error: &std::io::Error) {
        self.shared.healthy.store(false, Ordering::Relaxed);
        self.shared.write_failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(path = %self.settings.path.display(), error = %error, "audit log {what} failed");
        if self.settings.on_failure == OnAuditFailure::Continue {
            // Keep serving and keep the chain whole: these records are lost,
            // and say so in the count.
            let lost = self.pending.len() as u64;
            self.pending.clear();
            self.shared.dropped.fetch_add(lost, Ordering::Relaxed);
        }
        // Under `deny`, the records stay pending and are retried on the next
        // tick; the gateway serves 503 until one succeeds.
        self.last_sync = Instant::now();
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.sync_data()?;
        let rotated = rotated_name(&self.settings.path, self.first_seq_in_file);
        std::fs::rename(&self.settings.path, &rotated)?;
        self.file = open_append(&self.settings.path)?;
        self.len = 0;
        self.first_seq_in_file = self.next_seq;
        self.unsynced = false;
        self.retention_due = true;
        if let Some(dir) = self.settings.path.parent() {
            // Make the rename itself durable.
            if let Ok(dir) = File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

struct Chain {
    next_seq: u64,
    prev: String,
    first_seq_in_active: u64,
}

/// Where the chain continues: after the last whole record in the active
/// file, or in the newest rotated file when the active one has none.
fn recover_chain(path: &Path) -> Result<Chain, AuditError> {
    let mut files = rotated_files(path);
    let active_exists = path.exists();
    if active_exists {
        files.push(path.to_path_buf());
    }
    let mut last: Option<AuditRecord> = None;
    let mut last_hash = GENESIS.to_owned();
    for file in files.iter().rev() {
        let tail = read_tail(file).map_err(|source| AuditError::Open {
            path: file.clone(),
            source,
        })?;
        if let Some(line) = last_whole_line(&tail) {
            let record: AuditRecord = serde_json::from_slice(line)
                .map_err(|_| AuditError::Corrupt { path: file.clone() })?;
            last_hash = line_hash(line);
            last = Some(record);
            break;
        }
    }
    let next_seq = last.as_ref().map_or(1, |r| r.seq + 1);
    let mut first_seq_in_active = next_seq;
    if active_exists {
        let content_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let tail = read_tail(path).map_err(|source| AuditError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let torn = content_len > 0 && !tail.ends_with(b"\n");
        let first = first_record_seq(path);
        if torn {
            // Keep the torn line where `verify` will find and report it.
            let rotated = rotated_name(path, first.unwrap_or(next_seq));
            std::fs::rename(path, &rotated).map_err(|source| AuditError::Open {
                path: path.to_path_buf(),
                source,
            })?;
            tracing::warn!(file = %rotated.display(), "audit log ended in an incomplete record (a crash during a write?); rotated it and continued the chain");
        } else if let Some(first) = first {
            first_seq_in_active = first;
        }
    }
    Ok(Chain {
        next_seq,
        prev: last_hash,
        first_seq_in_active,
    })
}

fn read_tail(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    Ok(tail)
}

/// The last line that ends in a newline, without it.
fn last_whole_line(tail: &[u8]) -> Option<&[u8]> {
    let end = tail.iter().rposition(|&b| b == b'\n')?;
    let start = tail[..end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    Some(&tail[start..end])
}

fn first_record_seq(path: &Path) -> Option<u64> {
    let mut head = vec![0; 64 * 1024];
    let n = File::open(path).and_then(|mut f| f.read(&mut head)).ok()?;
    let line_end = head[..n].iter().position(|&b| b == b'\n')?;
    serde_json::from_slice::<AuditRecord>(&head[..line_end])
        .ok()
        .map(|r| r.seq)
}
