//! A container's output, kept to its last bytes in bounded memory.

use std::collections::VecDeque;

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::LogsOptions;
use futures_util::{Stream, StreamExt};

use super::DockerError;
use crate::mask::Masker;

/// The tail of a container's combined stdout and stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedLogs {
    pub bytes: Vec<u8>,
    /// More output existed than `bytes` holds.
    pub truncated: bool,
}

/// Keeps the last `cap` bytes of a stream in bounded memory.
pub(super) struct TailBuffer {
    buf: VecDeque<u8>,
    cap: usize,
    truncated: bool,
}

impl TailBuffer {
    pub(super) fn new(cap: usize) -> Self {
        TailBuffer {
            buf: VecDeque::with_capacity(cap.min(64 * 1024)),
            cap,
            truncated: false,
        }
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        // Only the last `cap` bytes of this chunk can survive anyway.
        let keep = &bytes[bytes.len().saturating_sub(self.cap)..];
        if keep.len() < bytes.len() {
            self.truncated = true;
        }
        let overflow = (self.buf.len() + keep.len()).saturating_sub(self.cap);
        if overflow > 0 {
            self.buf.drain(..overflow);
            self.truncated = true;
        }
        self.buf.extend(keep);
    }

    pub(super) fn finish(self) -> CapturedLogs {
        CapturedLogs {
            bytes: self.buf.into(),
            truncated: self.truncated,
        }
    }
}

/// All of a run's stdout and stderr so far, without following.
pub(super) fn all_output() -> LogsOptions {
    LogsOptions {
        follow: false,
        stdout: true,
        stderr: true,
        timestamps: false,
        tail: "all".to_owned(),
        ..Default::default()
    }
}

/// Reads a container's or a service's log `stream` to its end, masked as
/// it streams (before the cut, so no value is half-kept), keeping the
/// last `cap` bytes. `id` names it in a not-found error.
pub(super) async fn capture(
    mut stream: impl Stream<Item = Result<LogOutput, BollardError>> + Unpin,
    id: &str,
    cap: usize,
    mask: &Masker,
) -> Result<CapturedLogs, DockerError> {
    let mut tail = TailBuffer::new(cap);
    let mut masked = mask.stream();
    while let Some(item) = stream.next().await {
        let output = item.map_err(|err| DockerError::for_container(err, id))?;
        tail.push(&masked.push(output.as_ref()));
    }
    tail.push(&masked.finish());
    Ok(tail.finish())
}

/// Output already read (`raw`), masked and cut to its last `cap` bytes.
pub(super) fn masked_tail(raw: &[u8], cap: usize, mask: &Masker) -> CapturedLogs {
    let mut tail = TailBuffer::new(cap);
    let mut masked = mask.stream();
    tail.push(&masked.push(raw));
    tail.push(&masked.finish());
    tail.finish()
}
