//! Where our binaries are: beside the running test executable, in the
//! target directory cargo built it into.
//!
//! `env!("CARGO_BIN_EXE_…")` only exists inside the binary's own package,
//! and cargo builds another package's binaries only for a whole-workspace
//! build. So each binary is looked up once per test process and built here
//! when a narrower `cargo test -p` did not build it, or left one older than
//! a source file its dep-info names (a stale binary would make source
//! changes look ineffective). A binary that is still missing after that
//! fails loudly, with the command that builds it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

/// The gateway binary, `gatehouse-gateway`.
pub fn gateway() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built("gatehouse-gateway", "gatehouse-gateway"))
}

/// The scheduler binary, `gatehouse-scheduler`.
pub fn scheduler() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built("gatehouse-scheduler", "gatehouse-scheduler"))
}

fn built(package: &str, bin: &str) -> PathBuf {
    let profile_dir = profile_dir();
    let path = profile_dir.join(bin);
    if let Some(why) = staleness(&path, &profile_dir.join(format!("{bin}.d"))) {
        let mut command = Command::new(env!("CARGO"));
        command
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .args(["build", "--locked", "-p", package, "--bin", bin]);
        let profile = profile_dir.file_name().and_then(|n| n.to_str());
        if let Some(profile) = profile.filter(|p| *p != "debug") {
            command.args(["--profile", profile]);
        }
        // Straight to stderr, past the test harness's capture: a build
        // inside a test run should be seen.
        let note = format!("gatehouse-tests: building {bin} ({why}): {command:?}\n");
        let _ = std::io::stderr().write_all(note.as_bytes());
        let status = command
            .status()
            .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
        assert!(status.success(), "{command:?} failed");
    }
    assert!(
        path.is_file(),
        "{} is missing after building it; build it with \
         `cargo build -p {package} --bin {bin}` into this target directory",
        path.display()
    );
    path
}

/// The `target/<profile>` directory the running test executable is in
/// (test executables live in its `deps/`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the executable is in a directory");
    let dir = if deps.ends_with("deps") {
        deps.parent().expect("deps/ has a parent")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// Why `bin` needs building: it is missing, or older than a source file
/// its cargo dep-info (`bin.d`, "bin: source source …") names, or there is
/// no dep-info to tell. `None` when it is up to date.
fn staleness(bin: &Path, dep_info: &Path) -> Option<String> {
    let Some(built) = modified(bin) else {
        return Some(format!("{} is missing", bin.display()));
    };
    let Ok(text) = std::fs::read_to_string(dep_info) else {
        return Some(format!("{} is missing", dep_info.display()));
    };
    let sources = text.split_once(": ").map_or("", |(_, sources)| sources);
    sources
        .split_whitespace()
        .find(|source| modified(Path::new(source)).is_none_or(|m| m > built))
        .map(|source| format!("{source} is newer"))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
