//! Bind-mount sources, checked on the host right before each create.
//!
//! The policy checks a mount's source as text against `allowed_mounts`;
//! that cannot see what is on disk. A job that may write below an allowed
//! directory can plant `allowed/nightly -> /`, and a later job mounting
//! `allowed/nightly` would get the host's root, because Docker follows
//! symlinks. So before each create every source is opened again from its
//! allowed directory with no symlink followed ([`beneath::open_path`]),
//! and the container gets the path the kernel reports for what was opened
//! (the canonical one): what was checked is what is mounted.
//!
//! What remains: Docker resolves the path again when the container starts
//! (runc mounts by path). Between this check and that mount, a job running
//! at the same moment with write access to a directory on the way could
//! still swap a checked directory for a symlink. Only a writable mount that
//! contains another job's mount allows that; `check` warns about exactly
//! that layout.

use std::path::{Path, PathBuf};

use gatehouse_policy::scheduler::Mount;

use super::BindMount;
use crate::beneath::{self, Symlinks};

/// Why a mount's source was refused; the run fails with this reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("mount {} refused: {reason}", path.display())]
pub struct MountRefused {
    pub path: PathBuf,
    pub reason: String,
}

/// The bind mounts for `mounts`, each source opened below its allowed
/// directory without following symlinks, as the canonical path opened.
pub fn confine(mounts: &[Mount]) -> Result<Vec<BindMount>, MountRefused> {
    mounts
        .iter()
        .map(|m| {
            Ok(BindMount {
                source: checked_source(&m.source, &m.allowed_root)?,
                target: m.target.clone(),
                read_only: !m.writable,
            })
        })
        .collect()
}

fn checked_source(source: &Path, root: &Path) -> Result<PathBuf, MountRefused> {
    let refused = |reason: String| MountRefused {
        path: source.to_path_buf(),
        reason,
    };
    let relative = source.strip_prefix(root).map_err(|_| {
        refused(format!(
            "it is not below its allowed directory {}",
            root.display()
        ))
    })?;
    let fd = beneath::open_path(root, relative, Symlinks::Refuse).map_err(|e| {
        refused(match e.kind() {
            std::io::ErrorKind::NotFound => "it does not exist".to_owned(),
            std::io::ErrorKind::PermissionDenied => format!(
                "a symlink below {} leads elsewhere (a job may have planted it)",
                root.display()
            ),
            _ => e.to_string(),
        })
    })?;
    let opened = beneath::path_of(&fd).map_err(|e| refused(e.to_string()))?;
    let canonical_root = std::fs::canonicalize(root).map_err(|e| refused(e.to_string()))?;
    if !opened.starts_with(&canonical_root) {
        return Err(refused(format!(
            "it resolved to {} outside {}",
            opened.display(),
            canonical_root.display()
        )));
    }
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mount(source: &Path, root: &Path) -> Mount {
        Mount {
            source: source.to_path_buf(),
            target: "/data".to_owned(),
            writable: false,
            allowed_root: root.to_path_buf(),
        }
    }

    #[test]
    fn a_planted_symlink_is_refused_and_real_directories_mount_canonically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("allowed");
        std::fs::create_dir_all(root.join("real")).expect("mkdir");
        symlink("/", root.join("nightly")).expect("symlink");
        // The operator's own path to the allowed directory may be a link.
        let via_link = dir.path().join("link-to-allowed");
        symlink(&root, &via_link).expect("symlink");

        let ok = confine(&[mount(&via_link.join("real"), &via_link)]).expect("real directory");
        let canonical = std::fs::canonicalize(root.join("real")).expect("canonical");
        assert_eq!(ok[0].source, canonical);
        assert!(ok[0].read_only);

        let err = confine(&[mount(&root.join("nightly"), &root)]).expect_err("symlink");
        assert!(err.reason.contains("symlink"), "{err}");
        let err = confine(&[mount(&root.join("missing"), &root)]).expect_err("missing");
        assert!(err.reason.contains("does not exist"), "{err}");
    }
}
