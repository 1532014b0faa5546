//! Opening a path below a trusted directory without letting anything
//! inside that directory redirect the lookup elsewhere.
//!
//! Jobs may write into the directories the policy lets them mount, so a
//! name below such a directory is attacker-controlled: a job can replace
//! `allowed/nightly` by a symlink to `/`. Checking the path as text and
//! handing it to Docker (which follows symlinks) would mount the host's
//! root. Here the lookup is done by the kernel, from a descriptor of the
//! trusted directory, with `openat2(RESOLVE_BENEATH)` (Linux 5.6+), or,
//! where that is missing, one `O_PATH|O_NOFOLLOW` component at a time.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Whether symlinks below the trusted directory may be followed (they must
/// then still stay below it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symlinks {
    /// Any symlink below the root refuses the path (bind-mount sources:
    /// a job could have made it).
    Refuse,
    /// Symlinks that stay below the root are followed (secret directories,
    /// which tools such as Kubernetes fill with `..data` links).
    StayBeneath,
}

/// Opens `root/relative` as an `O_PATH` descriptor, refusing `..`,
/// absolute symlinks and, with [`Symlinks::Refuse`], any symlink below
/// `root`. `root` itself is the operator's and may be reached through
/// symlinks.
pub fn open_path(root: &Path, relative: &Path, symlinks: Symlinks) -> io::Result<OwnedFd> {
    open(root, relative, symlinks, OFlags::PATH)
}

/// Reads the file `root/relative` under the same rules as [`open_path`].
pub fn read(root: &Path, relative: &Path, symlinks: Symlinks) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let fd = open(root, relative, symlinks, OFlags::RDONLY)?;
    let mut file = File::from(fd);
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Where the kernel says `fd` is: the path that was actually opened, with
/// every symlink resolved.
pub fn path_of(fd: &OwnedFd) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn open(root: &Path, relative: &Path, symlinks: Symlinks, access: OFlags) -> io::Result<OwnedFd> {
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path must stay below its directory",
        ));
    }
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let relative = if relative.as_os_str().is_empty() {
        Path::new(".")
    } else {
        relative
    };
    let mut resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    if symlinks == Symlinks::Refuse {
        resolve |= ResolveFlags::NO_SYMLINKS;
    }
    let flags = access | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let fd = match rustix::fs::openat2(&root_fd, relative, flags, Mode::empty(), resolve) {
        Err(Errno::NOSYS) => step_by_step(root_fd, relative, access)?,
        Err(Errno::XDEV) | Err(Errno::LOOP) => return Err(escapes()),
        other => other?,
    };
    // O_PATH|O_NOFOLLOW on a final symlink opens the link itself.
    if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) == FileType::Symlink {
        return Err(escapes());
    }
    Ok(fd)
}

/// Without openat2: one component at a time, never following a symlink
/// (so even links that stay below the root are refused here: fail closed).
fn step_by_step(root: OwnedFd, relative: &Path, access: OFlags) -> io::Result<OwnedFd> {
    let names: Vec<_> = relative
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    let mut dir = root;
    for (i, name) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        let flags = if last { access } else { OFlags::PATH } | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let next = rustix::fs::openat(dir.as_fd(), *name, flags, Mode::empty()).map_err(|e| {
            if e == Errno::LOOP {
                escapes()
            } else {
                e.into()
            }
        })?;
        let kind = FileType::from_raw_mode(rustix::fs::fstat(&next)?.st_mode);
        if kind == FileType::Symlink || (!last && kind != FileType::Directory) {
            return Err(escapes());
        }
        dir = next;
    }
    if names.is_empty() && access != OFlags::PATH {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a file"));
    }
    Ok(dir)
}

fn escapes() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "a symlink on the way leads elsewhere",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_symlink_below_the_root_is_refused_and_plain_paths_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
        symlink("/", root.join("escape")).expect("symlink");
        symlink("a", root.join("inside")).expect("symlink");
        std::fs::write(root.join("a/secret"), "s3cret\n").expect("write");

        let fd = open_path(root, Path::new("a/b"), Symlinks::Refuse).expect("plain path");
        let real = std::fs::canonicalize(root.join("a/b")).expect("canonical");
        assert_eq!(path_of(&fd).expect("path"), real);
        for (path, symlinks) in [
            ("escape", Symlinks::Refuse),
            ("escape/etc", Symlinks::Refuse),
            ("inside/b", Symlinks::Refuse),
            ("escape/etc/hostname", Symlinks::StayBeneath),
        ] {
            let err = open_path(root, Path::new(path), symlinks).expect_err(path);
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{path}: {err}");
        }
        assert!(open_path(root, Path::new("../x"), Symlinks::Refuse).is_err());
        assert_eq!(
            read(root, Path::new("inside/secret"), Symlinks::StayBeneath).expect("read"),
            b"s3cret\n"
        );
    }

    #[test]
    fn the_fallback_refuses_symlinks_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir(root.join("a")).expect("mkdir");
        symlink("/", root.join("escape")).expect("symlink");
        let open_root = || {
            rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).expect("root")
        };
        assert!(step_by_step(open_root(), Path::new("a"), OFlags::PATH).is_ok());
        for path in ["escape", "escape/etc"] {
            let err = step_by_step(open_root(), Path::new(path), OFlags::PATH).expect_err(path);
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{path}");
        }
    }
}
