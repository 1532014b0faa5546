//! The audit log both programs write: append-only JSON Lines, one record
//! per security event, each chained to the one before it.
//!
//! Tamper evidence: every record carries `seq` (1, 2, 3, ...) and `prev`,
//! the SHA-256 of the previous record's exact bytes (its line without the
//! newline); the first record's `prev` is 64 zeros. Editing, deleting or
//! reordering a record breaks the chain at that line, and [`verify`] names
//! it. What a hash chain cannot show is a cut at a line boundary at the very
//! end; ship the records elsewhere too (`stdout = true`) to anchor the tail.
//!
//! Records are built with [`AuditEvent`] and handed to an [`AuditLog`],
//! whose single writer thread assigns `seq` and `prev`, so the chain order
//! is the file order. Secrets never go in: callers put only names, reasons
//! and addresses in `details`, and the gateway's tests grep for leaks.

//!
//! This crate knows nothing of the gateway or the scheduler; it takes its
//! settings ([`AuditSettings`](gatehouse_policy::AuditSettings)) from the
//! validated policy.

mod record;
mod retention;
mod rotated;
mod verify;
mod writer;

pub use record::{line_hash, Actor, AuditEvent, AuditRecord, EventKind, Outcome, GENESIS};
pub use verify::{verify, ChainProblem, ProblemKind, TornRecord, VerifyReport};
pub use writer::{AuditError, AuditLog, AuditStats};

#[cfg(test)]
mod tests;
