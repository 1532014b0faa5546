use std::path::{Path, PathBuf};
use std::time::Duration;

use gatehouse_policy::{AuditSettings, OnAuditFailure};

use crate::rotated::rotated_files;
use crate::*;

fn settings(dir: &Path, max_file_size: u64) -> AuditSettings {
    AuditSettings {
        path: dir.join("audit.jsonl"),
        fsync_interval: Duration::from_millis(50),
        max_file_size,
        on_failure: OnAuditFailure::Deny,
        stdout: false,
        max_age: Duration::from_secs(365 * 86_400),
        max_total_size: 1 << 30,
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
    let mut files = rotated_files(&settings.path);
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

fn total_size(settings: &AuditSettings) -> u64 {
    all_files(settings)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum()
}

fn first_seq_of(file: &Path) -> u64 {
    let first = lines(file).into_iter().next().unwrap();
    serde_json::from_str::<AuditRecord>(&first).unwrap().seq
}

fn set_age(file: &Path, age: Duration) {
    let when = std::time::SystemTime::now() - age;
    std::fs::File::options()
        .write(true)
        .open(file)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

#[test]
fn retention_keeps_the_log_under_max_total_size_deleting_the_oldest_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), 2_000);
    s.max_total_size = 8_000;
    let log = AuditLog::open(&s).unwrap();
    for round in 0..10 {
        for i in 0..20 {
            log.record(
                AuditEvent::new(EventKind::AccessDenied, Outcome::Denied)
                    .actor(format!("user{round}-{i}"), "basic")
                    .detail("reason", "forbidden"),
            );
        }
        assert!(log.flush(Duration::from_secs(5)));
        // At every point: the active file plus what is left of the rotated
        // ones, with room for the active file to fill up.
        let rotated: u64 = rotated_files(&s.path)
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        assert!(rotated + s.max_file_size <= s.max_total_size, "{rotated}");
    }
    let deleted = log.stats().files_deleted;
    log.close();
    assert!(total_size(&s) <= s.max_total_size);
    assert!(s.path.exists(), "the active file is never deleted");
    assert!(deleted > 0);

    // What is left is one chain that starts where retention cut it.
    let files = all_files(&s);
    let oldest = first_seq_of(&files[0]);
    assert!(oldest > 1, "{files:?}");
    let report = verify(&files).unwrap();
    assert_eq!(report.problem, None, "{:?}", report.problem);
    assert_eq!(report.first_seq, Some(oldest));
    assert_eq!(report.last_seq, Some(200));
    assert_eq!(report.records, 200 - oldest + 1);
}

#[test]
fn retention_deletes_rotated_files_past_max_age_oldest_first_and_never_the_active_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), 2_000);
    write_events(&s, 60);
    let rotated = rotated_files(&s.path);
    assert!(rotated.len() >= 4, "expected rotation, got {rotated:?}");
    // The oldest and the third are past the age; the second is not, so
    // only the oldest may go: deleting the third would cut the chain.
    let day = Duration::from_secs(86_400);
    set_age(&rotated[0], 3 * day);
    set_age(&rotated[1], day / 2);
    set_age(&rotated[2], 3 * day);
    set_age(&s.path, 3 * day);
    s.max_age = day;
    // Retention runs when the log opens.
    let log = AuditLog::open(&s).unwrap();
    assert!(log.flush(Duration::from_secs(5)));
    assert_eq!(log.stats().files_deleted, 1);
    log.close();
    assert!(!rotated[0].exists());
    assert!(rotated[1..].iter().all(|f| f.exists()));
    assert!(s.path.exists(), "the active file is never deleted");

    let report = verify(&all_files(&s)).unwrap();
    assert_eq!(report.problem, None, "{:?}", report.problem);
    assert_eq!(report.first_seq, Some(first_seq_of(&rotated[1])));
    assert_eq!(report.last_seq, Some(60));
}

#[test]
fn retention_with_the_total_at_one_file_keeps_only_the_active_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), 2_000);
    s.max_total_size = 2_000;
    write_events(&s, 40);
    assert_eq!(rotated_files(&s.path), Vec::<PathBuf>::new());
    let report = verify(std::slice::from_ref(&s.path)).unwrap();
    assert_eq!(report.problem, None, "{:?}", report.problem);
    assert_eq!(report.last_seq, Some(40));
    // And the next start continues the chain from the active file alone.
    write_events(&s, 5);
    let report = verify(&all_files(&s)).unwrap();
    assert_eq!(report.problem, None, "{:?}", report.problem);
    assert_eq!(report.last_seq, Some(45));
}

#[test]
fn verify_finds_records_cut_from_the_head_of_the_oldest_rotated_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 2_000);
    write_events(&s, 40);
    let mut files = all_files(&s);
    // Retention's way: whole files from the oldest end. Verifies.
    std::fs::remove_file(&files[0]).unwrap();
    files.remove(0);
    let report = verify(&files).unwrap();
    assert_eq!(report.problem, None, "{:?}", report.problem);
    let start = first_seq_of(&files[0]);
    assert_eq!(report.first_seq, Some(start));
    // Not retention's way: the first lines of a file. Its name still says
    // where it started.
    let mut text = lines(&files[0]);
    text.drain(..2);
    rewrite(&files[0], &text);
    let problem = verify(&files).unwrap().problem.expect("the cut is found");
    assert_eq!((problem.kind, problem.line), (ProblemKind::Missing, 1));
    assert!(
        problem
            .message
            .contains(&format!("records {start} to {} are missing", start + 1)),
        "{}",
        problem.message
    );
}

#[test]
fn a_crafted_chain_at_the_largest_seq_is_reported_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crafted");
    let record = AuditEvent::new(EventKind::Startup, Outcome::Info)
        .into_record(u64::MAX, GENESIS.to_owned());
    let line = serde_json::to_string(&record).unwrap();
    std::fs::write(&path, format!("{line}\n{line}\n")).unwrap();
    let report = verify(&[path]).unwrap();
    assert_eq!(report.first_seq, Some(u64::MAX));
    assert!(report.problem.is_some());
}
