//! Loosenings that need an explicit `[scheduler]` allowance: a job cannot
//! weaken a hardened default, or read a secret from anywhere the scheduler
//! can read, just by asking in its own table.
//!
//! - `read_only = false` needs `allow_writable_rootfs = true`;
//! - `tmp_size` above the default needs `max_tmp_size`;
//! - an env `file` must be below one of `secret_dirs` (none by default).

use std::path::{Component, Path, PathBuf};

use crate::convert::context::Converter;
use crate::raw::scheduler::RawContainer;
use crate::scheduler::SchedulerSettings;
use toml::Spanned;

impl SchedulerSettings {
    /// The outermost `secret_dirs` entry holding `path`, if any.
    pub fn secret_dir_of(&self, path: &Path) -> Option<PathBuf> {
        self.secret_dirs
            .iter()
            .filter(|dir| path.starts_with(dir) && path != dir.as_path())
            .min_by_key(|dir| dir.components().count())
            .cloned()
    }
}

fn is_plain_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path != Path::new("/")
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

impl Converter<'_> {
    /// Whether the container's loosenings stay within what `s` allows;
    /// each one beyond is reported at its key.
    pub(crate) fn within_allowances(
        &mut self,
        r: &RawContainer,
        s: &SchedulerSettings,
        tmp_size: u64,
    ) -> bool {
        let mut ok = true;
        if let Some(read_only) = &r.read_only {
            if !*read_only.get_ref() && !s.allow_writable_rootfs {
                self.problems.add_hint(
                    Some(read_only.span()),
                    "read_only = false needs [scheduler] allow_writable_rootfs = true",
                    "jobs write to /tmp or a mount; the operator allows a writable root filesystem explicitly",
                );
                ok = false;
            }
        }
        if let Some(raw) = &r.tmp_size {
            if tmp_size > s.max_tmp_size {
                self.problems.add_hint(
                    Some(raw.span()),
                    format!(
                        "tmp_size is above [scheduler] max_tmp_size ({} bytes)",
                        s.max_tmp_size
                    ),
                    "/tmp is memory; raise max_tmp_size in [scheduler] to allow more",
                );
                ok = false;
            }
        }
        ok
    }

    /// `shm_size` within `max_shm_size`.
    pub(crate) fn shm_within(
        &mut self,
        r: &RawContainer,
        s: &SchedulerSettings,
        shm_size: u64,
    ) -> bool {
        match &r.shm_size {
            Some(raw) if shm_size > s.max_shm_size => {
                self.problems.add_hint(
                    Some(raw.span()),
                    format!(
                        "shm_size is above [scheduler] max_shm_size ({} bytes)",
                        s.max_shm_size
                    ),
                    "/dev/shm is memory; raise max_shm_size in [scheduler] to allow more",
                );
                false
            }
            _ => true,
        }
    }

    /// `secret_dirs`: absolute (or relative to the policy's directory),
    /// without `..`, never `/`.
    pub(crate) fn secret_dirs(&mut self, raw: &[Spanned<String>]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in raw {
            let path = self.file_path(dir);
            if is_plain_absolute(&path) {
                out.push(path);
            } else {
                self.problems.add_hint(
                    Some(dir.span()),
                    format!("`{}` cannot be a secret directory", dir.get_ref()),
                    "a directory other than /, without `..`, such as \"/run/secrets\"",
                );
            }
        }
        out
    }

    /// An env `file`: below one of `secret_dirs`, without `..`.
    pub(crate) fn secret_file(
        &mut self,
        raw: &Spanned<String>,
        s: &SchedulerSettings,
    ) -> Option<PathBuf> {
        let path = self.file_path(raw);
        if !is_plain_absolute(&path) {
            self.problems.add_hint(
                Some(raw.span()),
                format!("`{}` is not a plain file path", raw.get_ref()),
                "an absolute path (or relative to the policy) without `..`",
            );
            return None;
        }
        if s.secret_dir_of(&path).is_none() {
            self.problems.add_hint(
                Some(raw.span()),
                format!(
                    "env file {} is outside [scheduler] secret_dirs",
                    path.display()
                ),
                "list the directory of job secrets in [scheduler] secret_dirs, e.g. secret_dirs = [\"/run/secrets\"]",
            );
            return None;
        }
        Some(path)
    }
}
