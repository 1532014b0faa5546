//! How rotated files are named: `<path>.<first seq, 20 digits>`. The
//! writer names them, retention lists them, `verify` reads the number back;
//! all three go through here so they cannot disagree.

use std::path::{Path, PathBuf};

/// `audit.jsonl` → `audit.jsonl.00000000000000000042` for a file whose
/// first record is seq 42; names sort in chain order.
pub(crate) fn rotated_name(path: &Path, first_seq: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{first_seq:020}"));
    PathBuf::from(name)
}

/// The rotated files of `path`, oldest first.
pub(crate) fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(base)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", base.to_string_lossy());
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let seq = name.strip_prefix(&prefix)?.parse::<u64>().ok()?;
            Some((seq, entry.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// `audit.jsonl.00000000000000000042` → 42: the name the writer gives a
/// rotated file after its first record. Other names (the active file, a
/// copy) say nothing.
pub(crate) fn rotated_seq(path: &Path) -> Option<u64> {
    let ext = path.extension()?.to_str()?;
    (ext.len() == 20 && ext.bytes().all(|b| b.is_ascii_digit()))
        .then(|| ext.parse().ok())
        .flatten()
}
