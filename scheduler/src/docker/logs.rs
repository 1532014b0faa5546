//! A container's output, kept to its last bytes in bounded memory.

use std::collections::VecDeque;

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
