//! Where log lines go. Each thread appends whole lines to a buffer of its
//! own; one writer thread swaps the buffers out and writes them to the
//! output every [`FLUSH_INTERVAL`], sooner when a buffer passes
//! [`WAKE_AT`] bytes or a line is marked urgent (every event other than an
//! access line: warnings, errors, startup).
//!
//! Why not a channel to a writer thread (tracing-appender's non-blocking
//! writer, used before): that hands every line over on its own, and on a
//! busy gateway each hand-over woke the writer (a futex call and a context
//! switch per request on top of a `write`). Here a request takes only its
//! own thread's lock, which the writer holds just long enough to swap two
//! `Vec`s, and the writer wakes about ten times a second. No request waits
//! on the disk or on another request.
//!
//! Bounded: a thread's buffer holds at most [`THREAD_CAP`] bytes; beyond
//! that (the output is stalled) lines are dropped and counted, rather than
//! stalling requests. The audit log, not this one, is the record that must
//! not lose entries.
//!
//! Order: each thread's lines are written in order; lines of different
//! threads are written batch by batch, so they can be up to one interval
//! out of time order (every line carries its timestamp).

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// A buffer this full wakes the writer before the interval is up.
pub const WAKE_AT: usize = 256 * 1024;
/// The most one thread's buffer holds while the output is stalled.
pub const THREAD_CAP: usize = 4 * 1024 * 1024;

type Buffer = Arc<Mutex<Vec<u8>>>;

/// A handle on one writer thread and its buffers. Cloning shares them.
#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
}

struct Shared {
    /// Tells this sink's buffers apart in a thread's list (tests make
    /// several sinks; the gateway one).
    id: usize,
    buffers: Mutex<Vec<Buffer>>,
    dropped: AtomicU64,
    stopping: AtomicBool,
    writer: Mutex<Option<JoinHandle<()>>>,
    writer_thread: Thread,
}

thread_local! {
    /// This thread's buffer in each sink it has written to.
    static LOCAL: RefCell<Vec<(usize, Buffer)>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while appending leaves at worst a partial line behind.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LogSink {
    /// Starts the writer thread, writing to `output`.
    pub fn start(output: Box<dyn Write + Send>) -> std::io::Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Arc<Shared>>();
        let writer = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                if let Ok(shared) = ready_rx.recv() {
                    write_until_stopped(&shared, output);
                }
            })?;
        let shared = Arc::new(Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            buffers: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            writer_thread: writer.thread().clone(),
            writer: Mutex::new(None),
        });
        *lock(&shared.writer) = Some(writer);
        // The writer cannot have stopped: it waits for this.
        let _ = ready_tx.send(shared.clone());
        Ok(LogSink { shared })
    }

    /// Lines dropped so far: written after [`stop`](Self::stop), over a
    /// thread's cap, or refused by the output.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Lets `write` append one or more whole lines to this thread's buffer.
    /// What it appends is dropped (and counted) if it would take the
    /// buffer past [`THREAD_CAP`].
    pub fn append_with(&self, write: impl FnOnce(&mut Vec<u8>)) {
        self.append(false, write);
    }

    /// As [`append_with`](Self::append_with), and wakes the writer now.
    pub fn append_urgent(&self, line: &[u8]) {
        self.append(true, |buffer| buffer.extend_from_slice(line));
    }

    fn append(&self, urgent: bool, write: impl FnOnce(&mut Vec<u8>)) {
        let shared = &self.shared;
        if shared.stopping.load(Ordering::Relaxed) {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let appended = LOCAL.try_with(|local| {
            let mut local = local.borrow_mut();
            let buffer = match local.iter().find(|(id, _)| *id == shared.id) {
                Some((_, buffer)) => buffer,
                None => {
                    let buffer = Buffer::default();
                    lock(&shared.buffers).push(buffer.clone());
                    local.push((shared.id, buffer));
                    &local[local.len() - 1].1
                }
            };
            let mut bytes = lock(buffer);
            let before = bytes.len();
            write(&mut bytes);
            if bytes.len() > THREAD_CAP {
                let lines = memchr::memchr_iter(b'\n', &bytes[before..]).count().max(1);
                bytes.truncate(before);
                shared.dropped.fetch_add(lines as u64, Ordering::Relaxed);
                return false;
            }
            urgent || (before < WAKE_AT && bytes.len() >= WAKE_AT)
        });
        // A thread's own buffer is gone while the thread is exiting.
        let wake = appended.unwrap_or_else(|_| {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            false
        });
        if wake {
            shared.writer_thread.unpark();
        }
    }

    /// Writes what is buffered and stops the writer thread; lines appended
    /// later are dropped. Returns once the output has been written.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.writer_thread.unpark();
        let writer = lock(&self.shared.writer).take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

/// The writer thread: sleep an interval (or until woken), write every
/// thread's buffer, repeat; a last pass once stopping.
fn write_until_stopped(shared: &Shared, mut output: Box<dyn Write + Send>) {
    let mut spare = Vec::new();
    loop {
        let stopping = shared.stopping.load(Ordering::SeqCst);
        if !stopping {
            std::thread::park_timeout(FLUSH_INTERVAL);
        }
        let buffers = lock(&shared.buffers).clone();
        for buffer in &buffers {
            std::mem::swap(&mut *lock(buffer), &mut spare);
            if spare.is_empty() {
                continue;
            }
            if output.write_all(&spare).is_err() {
                let lines = memchr::memchr_iter(b'\n', &spare).count();
                shared.dropped.fetch_add(lines as u64, Ordering::Relaxed);
            }
            spare.clear();
        }
        let _ = output.flush();
        drop(buffers);
        // A thread that has exited holds its buffer no more (the list's is
        // the only reference left); forget it once it is empty.
        lock(&shared.buffers).retain(|b| Arc::strong_count(b) > 1 || !lock(b).is_empty());
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
