//! Retention: the writer deletes rotated files (`<path>.<first seq>`)
//! beyond `max_age` or `max_total_size`, oldest first, and never the
//! active file.
//!
//! Only ever from the oldest end, and it stops at the first file it keeps
//! or cannot delete: what is left is always one unbroken chain, which
//! `verify` accepts as starting at its first remaining record. A deletion
//! writes nothing into the chain (it would grow the log it is shrinking);
//! it is logged and counted (`AuditStats::files_deleted`).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use gatehouse_policy::AuditSettings;

use crate::rotated::rotated_files;

/// Why a file went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    MaxAge,
    MaxTotalSize,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::MaxAge => "max_age",
            Reason::MaxTotalSize => "max_total_size",
        }
    }
}

struct Rotated {
    path: PathBuf,
    len: u64,
    /// The time of its last write, i.e. of its newest record.
    modified: Option<SystemTime>,
}

/// Deletes what the limits no longer allow and returns how many files
/// went. `active_len` is the active file's size now; it is counted at
/// `max_file_size` at least, since it grows to that before it rotates, so
/// the log on disk never exceeds `max_total_size` (a single record larger
/// than a file aside).
///
/// Callers run this only while the active file holds a record, so the chain
/// can always be recovered from the active file without any rotated one.
pub(crate) fn enforce(settings: &AuditSettings, active_len: u64, now: SystemTime) -> u64 {
    let files: Vec<Rotated> = rotated_files(&settings.path)
        .into_iter()
        .filter_map(|path| {
            let meta = std::fs::metadata(&path).ok()?;
            Some(Rotated {
                len: meta.len(),
                modified: meta.modified().ok(),
                path,
            })
        })
        .collect();
    let budget = settings
        .max_total_size
        .saturating_sub(active_len.max(settings.max_file_size));
    let mut rotated_total: u64 = files.iter().map(|f| f.len).sum();
    let mut deleted = 0;
    for file in &files {
        let Some(reason) = reason_to_delete(file, rotated_total, budget, settings.max_age, now)
        else {
            break;
        };
        match std::fs::remove_file(&file.path) {
            Ok(()) => {
                deleted += 1;
                tracing::info!(
                    file = %file.path.display(),
                    bytes = file.len,
                    reason = reason.as_str(),
                    "deleted a rotated audit file (retention)"
                );
            }
            // Gone already (an operator archived it): the chain is the same.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                // Deleting a newer file after this one would leave a gap.
                tracing::warn!(file = %file.path.display(), error = %e, "cannot delete a rotated audit file; retention stops here");
                break;
            }
        }
        rotated_total = rotated_total.saturating_sub(file.len);
    }
    if deleted > 0 {
        sync_dir(&settings.path);
    }
    deleted
}

fn reason_to_delete(
    file: &Rotated,
    rotated_total: u64,
    budget: u64,
    max_age: Duration,
    now: SystemTime,
) -> Option<Reason> {
    let age = file.modified.and_then(|m| now.duration_since(m).ok());
    if age.is_some_and(|age| age > max_age) {
        Some(Reason::MaxAge)
    } else if rotated_total > budget {
        Some(Reason::MaxTotalSize)
    } else {
        None
    }
}

/// Makes the deletions durable, as rotation does for its rename.
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
}
