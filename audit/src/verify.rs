//! Checking a chain of audit files: every record parses, the sequence
//! numbers run without gaps or reordering, and each `prev` is the hash of
//! the record before it, across rotated files.
//!
//! A chain may start after seq 1: retention deletes the oldest rotated
//! files, so what is left starts at its first remaining record, whose
//! `prev` names a record that is gone and cannot be checked. The report
//! says where it starts (`first_seq`). A rotated file is named after its
//! first record (`<path>.<seq, 20 digits>`), so lines cut from the head of
//! the oldest remaining file are still found: its first record must be the
//! one its name says.

use std::path::{Path, PathBuf};

use crate::record::{line_hash, AuditRecord, GENESIS};
use crate::rotated::rotated_seq;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// A line that is not an audit record (edited into invalid JSON, or
    /// not a record at all).
    Unreadable,
    /// A record whose bytes changed after it was written.
    Altered,
    /// Records missing between two that are present.
    Missing,
    /// A record out of its place.
    Reordered,
}

/// The first place the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainProblem {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    pub kind: ProblemKind,
    pub message: String,
}

impl std::fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// A last line without its newline: a write cut short by a crash, or a
/// file truncated mid-record. The records before it still verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornRecord {
    pub file: PathBuf,
    pub line: usize,
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub files: usize,
    pub records: u64,
    /// Above 1 when older records were deleted by retention (or their
    /// files not given); the chain is verified from here on.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub problem: Option<ChainProblem>,
    pub torn: Vec<TornRecord>,
}

struct Line<'a> {
    file: &'a Path,
    /// The seq in a rotated file's name, which its first record must have.
    named_seq: Option<u64>,
    number: usize,
    bytes: &'a [u8],
    /// False for a last line without its newline.
    whole: bool,
}

/// Verifies `files` as one chain. They may be given in any order: they are
/// put in chain order by their first record's sequence number.
pub fn verify(files: &[PathBuf]) -> std::io::Result<VerifyReport> {
    let mut contents = Vec::new();
    for file in files {
        contents.push((file.clone(), std::fs::read(file)?));
    }
    contents.sort_by_key(|(path, bytes)| chain_position(path, bytes));
    let mut lines = Vec::new();
    for (file, bytes) in &contents {
        let named_seq = rotated_seq(file);
        let mut rest: &[u8] = bytes;
        let mut number = 0;
        while !rest.is_empty() {
            number += 1;
            let (bytes, whole, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(end) => (&rest[..end], true, &rest[end + 1..]),
                None => (rest, false, &rest[rest.len()..]),
            };
            lines.push(Line {
                file,
                named_seq,
                number,
                bytes,
                whole,
            });
            rest = next;
        }
    }
    let mut report = VerifyReport {
        files: files.len(),
        ..VerifyReport::default()
    };
    report.problem = walk(&lines, &mut report);
    Ok(report)
}

fn walk(lines: &[Line<'_>], report: &mut VerifyReport) -> Option<ChainProblem> {
    let mut expected: Option<u64> = None;
    let mut prev_hash = GENESIS.to_owned();
    let mut previous: Option<&Line<'_>> = None;
    let whole: Vec<(usize, u64)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.whole)
        .filter_map(|(i, l)| Some((i, serde_json::from_slice::<AuditRecord>(l.bytes).ok()?.seq)))
        .collect();
    for (index, line) in lines.iter().enumerate() {
        if !line.whole {
            report.torn.push(TornRecord {
                file: line.file.to_path_buf(),
                line: line.number,
            });
            continue;
        }
        let Ok(record) = serde_json::from_slice::<AuditRecord>(line.bytes) else {
            return Some(problem(
                line,
                ProblemKind::Unreadable,
                "not an audit record (edited or corrupted)".into(),
            ));
        };
        // The first record starts the chain wherever retention left it,
        // but never after where its file's name says the file starts.
        let want = match (expected, line.named_seq) {
            (Some(next), _) => next,
            (None, Some(named)) if line.number == 1 => named,
            (None, _) => record.seq,
        };
        if record.seq != want {
            let later = whole
                .iter()
                .find(|(i, seq)| *i > index && *seq == want)
                .map(|(i, _)| &lines[*i]);
            return Some(out_of_place(line, record.seq, want, later));
        }
        // A chain that starts after seq 1 has lost its first record's
        // predecessor; it is checked from here on.
        let starts_midway = expected.is_none() && record.seq > 1;
        if !starts_midway && record.prev != prev_hash {
            return Some(altered(previous, line, record.seq));
        }
        prev_hash = line_hash(line.bytes);
        expected = Some(record.seq.saturating_add(1));
        report.records += 1;
        report.first_seq.get_or_insert(record.seq);
        report.last_seq = Some(record.seq);
        previous = Some(line);
    }
    None
}

fn problem(line: &Line<'_>, kind: ProblemKind, message: String) -> ChainProblem {
    ChainProblem {
        file: line.file.to_path_buf(),
        line: line.number,
        kind,
        message,
    }
}

/// Record `seq` stands where record `want` belongs; `later` is where
/// `want` is, if anywhere after.
fn out_of_place(line: &Line<'_>, seq: u64, want: u64, later: Option<&Line<'_>>) -> ChainProblem {
    match later {
        Some(found) => problem(
            line,
            ProblemKind::Reordered,
            format!(
                "record {seq} is out of order: record {want} should come here, and is at {}:{}",
                found.file.display(),
                found.number
            ),
        ),
        None if seq > want => problem(
            line,
            ProblemKind::Missing,
            format!(
                "records {want} to {} are missing before this line (deleted, or a file not given)",
                seq - 1
            ),
        ),
        None => problem(
            line,
            ProblemKind::Reordered,
            format!("record {seq} appears again or out of order (expected {want})"),
        ),
    }
}

/// Record `seq`'s `prev` does not match the line before it: that line
/// changed (or, without one, the chain does not start at the genesis).
fn altered(previous: Option<&Line<'_>>, line: &Line<'_>, seq: u64) -> ChainProblem {
    match previous {
        Some(before) => problem(
            before,
            ProblemKind::Altered,
            format!(
                "record {} was altered: its hash no longer matches `prev` of record {seq} at {}:{}",
                seq - 1,
                line.file.display(),
                line.number
            ),
        ),
        None => problem(
            line,
            ProblemKind::Altered,
            "the first record does not start a chain (`prev` is not the genesis hash)".into(),
        ),
    }
}

/// Files sort by their first whole record's `seq`; a file with none (only
/// a torn line) by the number in its rotated name, else last.
fn chain_position(path: &Path, bytes: &[u8]) -> u64 {
    let first = bytes
        .iter()
        .position(|&b| b == b'\n')
        .and_then(|end| serde_json::from_slice::<AuditRecord>(&bytes[..end]).ok())
        .map(|r| r.seq);
    first
        .or_else(|| {
            path.extension()
                .and_then(|e| e.to_str())
                .and_then(|e| e.parse().ok())
        })
        .unwrap_or(u64::MAX)
}
