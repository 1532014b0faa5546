use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::model::{AuditSettings, OnAuditFailure};

fn settings(dir: &Path, max_file_size: u64) -> AuditSettings {
    AuditSettings {
        path: dir.join("audit.jsonl"),
        fsync_interval: Duration::from_millis(50),
        max_file_size,
        on_failure: OnAuditFailure::Deny,
        stdout: false,
    }
}

fn write_events(settings: &AuditSettings, count: usize) {
    let log = AuditLog::open(settings).unwrap();
    for i in 0..count {
        log.record(
            AuditEvent::new(EventKind::AccessDenied, Outcome::Denied)
                .actor(format!("user{i}"), "basic")
                .route("app")
                .detail("reason", "forbidden"),
        );
    }
    assert!(log.flush(Duration::from_secs(5)));
    log.close();
}

fn all_files(settings: &AuditSettings) -> Vec<PathBuf> {
    let mut files = writer::rotated_files(&settings.path);
    files.push(settings.path.clone());
    files
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn rewrite(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn records_chain_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 1 << 20);
    write_events(&s, 20);
    let text = lines(&s.path);
    assert_eq!(text.len(), 20);
    let first: AuditRecord = serde_json::from_str(&text[0]).unwrap();
    let second: AuditRecord = serde_json::from_str(&text[1]).unwrap();
    assert_eq!((first.seq, first.prev.as_str()), (1, GENESIS));
    assert_eq!(second.prev, line_hash(text[0].as_bytes()));
    assert!(first.ts.ends_with('Z'), "{}", first.ts);
    let report = verify(std::slice::from_ref(&s.path)).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!((report.records, report.last_seq), (20, Some(20)));
}

#[test]
fn a_restart_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 1 << 20);
    write_events(&s, 3);
    write_events(&s, 3);
    let report = verify(std::slice::from_ref(&s.path)).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.records, 6);
}

#[test]
fn rotation_keeps_one_chain_across_files_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 2_000);
    write_events(&s, 40);
    write_events(&s, 10);
    let mut files = all_files(&s);
    assert!(files.len() > 3, "expected rotation, got {files:?}");
    files.reverse();
    let report = verify(&files).unwrap();
    assert_eq!(report.problem, None, "{:?}", report.problem);
    assert_eq!(report.records, 50);
    // A missing middle file is a gap.
    files.retain(|f| f != &all_files(&s)[1]);
    let problem = verify(&files).unwrap().problem.expect("gap found");
    assert_eq!(problem.kind, ProblemKind::Missing);
}

#[test]
fn an_edited_byte_names_the_edited_line() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 1 << 20);
    write_events(&s, 10);
    let mut text = lines(&s.path);
    // Still valid JSON: only the chain can tell.
    text[4] = text[4].replacen("user4", "user5", 1);
    rewrite(&s.path, &text);
    let problem = verify(std::slice::from_ref(&s.path))
        .unwrap()
        .problem
        .unwrap();
    assert_eq!((problem.kind, problem.line), (ProblemKind::Altered, 5));
    // Broken JSON is named at once.
    text[6] = text[6].replacen('{', "[", 1);
    rewrite(&s.path, &text);
    let problem = verify(std::slice::from_ref(&s.path))
        .unwrap()
        .problem
        .unwrap();
    assert_eq!(problem.line, 5, "the first break is still reported first");
}

#[test]
fn a_deleted_line_is_a_gap_at_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 1 << 20);
    write_events(&s, 10);
    let mut text = lines(&s.path);
    text.remove(6);
    rewrite(&s.path, &text);
    let problem = verify(std::slice::from_ref(&s.path))
        .unwrap()
        .problem
        .unwrap();
    assert_eq!((problem.kind, problem.line), (ProblemKind::Missing, 7));
}

#[test]
fn swapped_lines_are_reordered() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 1 << 20);
    write_events(&s, 10);
    let mut text = lines(&s.path);
    text.swap(2, 3);
    rewrite(&s.path, &text);
    let problem = verify(std::slice::from_ref(&s.path))
        .unwrap()
        .problem
        .unwrap();
    assert_eq!((problem.kind, problem.line), (ProblemKind::Reordered, 3));
}

#[test]
fn a_torn_last_line_is_reported_and_the_next_start_continues_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 1 << 20);
    write_events(&s, 5);
    let bytes = std::fs::read(&s.path).unwrap();
    std::fs::write(&s.path, &bytes[..bytes.len() - 30]).unwrap();
    let report = verify(std::slice::from_ref(&s.path)).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.records, 4);
    assert_eq!(report.torn.len(), 1);
    assert_eq!(report.torn[0].line, 5);

    write_events(&s, 3);
    let files = all_files(&s);
    assert_eq!(files.len(), 2, "the torn file was rotated away: {files:?}");
    let report = verify(&files).unwrap();
    assert_eq!(report.problem, None, "{:?}", report.problem);
    assert_eq!((report.records, report.last_seq), (7, Some(7)));
    assert_eq!(report.torn.len(), 1);
}

#[test]
fn a_file_that_ends_in_garbage_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 1 << 20);
    std::fs::write(&s.path, "not a record\n").unwrap();
    assert!(matches!(
        AuditLog::open(&s),
        Err(AuditError::Corrupt { .. })
    ));
}

#[test]
fn critical_events_are_the_lifecycle_login_and_policy_ones() {
    assert!(EventKind::LoginFailure.is_critical());
    assert!(EventKind::PolicyReload.is_critical());
    assert!(!EventKind::AccessDenied.is_critical());
    assert!(!EventKind::RateLimitStart.is_critical());
}
