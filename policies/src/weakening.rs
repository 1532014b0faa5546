//! What a validated policy lets its jobs do beyond the hardened defaults,
//! in words, for `gatehouse-scheduler check`: every loosening the policy
//! accepted is printed, and layouts that are valid but risky are warned
//! about.

use crate::scheduler::{
    EnvSource, Job, Network, DEFAULT_CONTAINER_USER, DEFAULT_CPUS, DEFAULT_MEMORY, DEFAULT_PIDS,
    DEFAULT_SHM_SIZE, DEFAULT_TMP_SIZE,
};

/// Layouts that pass validation but let one job influence another's
/// container: a writable mount that holds another mount's source. A run
/// of the writing job can replace a directory on that path by a symlink;
/// the scheduler refuses such a source before each create, but a swap
/// between that check and the container's start is still possible.
pub fn mount_warnings(jobs: &[Job]) -> Vec<String> {
    let mut out = Vec::new();
    for writer in jobs {
        for outer in writer.container.mounts.iter().filter(|m| m.writable) {
            for other in jobs {
                for inner in &other.container.mounts {
                    if inner.source != outer.source && inner.source.starts_with(&outer.source) {
                        out.push(format!(
                            "job `{}` may write {}, which holds the source {} that job `{}` mounts: a run of `{}` can replace part of that path (the scheduler refuses symlinks there before each run, but not a swap while the other starts); mount disjoint directories",
                            writer.name,
                            outer.source.display(),
                            inner.source.display(),
                            other.name,
                            writer.name,
                        ));
                    }
                }
            }
        }
    }
    out
}

/// What `job` gets beyond the hardened defaults, one item per loosening
/// (empty when it runs with every default).
pub fn weakenings(job: &Job) -> Vec<String> {
    let c = &job.container;
    let mut out = Vec::new();
    if c.user != DEFAULT_CONTAINER_USER {
        out.push(format!(
            "runs as {} instead of {DEFAULT_CONTAINER_USER}",
            c.user
        ));
    }
    if !c.read_only_rootfs {
        out.push("a writable root filesystem".to_owned());
    }
    if !c.cap_add.is_empty() {
        out.push(format!("capabilities {}", c.cap_add.join(", ")));
    }
    if let Network::Named(network) = &c.network {
        out.push(format!("network {network}"));
    }
    let bigger = [
        ("memory", c.memory, DEFAULT_MEMORY),
        ("/tmp", c.tmp_size, DEFAULT_TMP_SIZE),
        ("/dev/shm", c.shm_size, DEFAULT_SHM_SIZE),
    ];
    for (what, size, default) in bigger {
        if size > default {
            out.push(format!(
                "{what} {} (default {})",
                bytes(size),
                bytes(default)
            ));
        }
    }
    if c.cpus > DEFAULT_CPUS {
        out.push(format!("{} CPUs (default {DEFAULT_CPUS})", c.cpus));
    }
    if c.pids > DEFAULT_PIDS {
        out.push(format!("{} pids (default {DEFAULT_PIDS})", c.pids));
    }
    for m in &c.mounts {
        let mode = if m.writable { "writable" } else { "read-only" };
        out.push(format!(
            "mounts {} at {} ({mode})",
            m.source.display(),
            m.target
        ));
    }
    for e in &job.env {
        match &e.value {
            EnvSource::File(path) => {
                out.push(format!("env {} reads the file {}", e.name, path.display()))
            }
            EnvSource::Env(var) => out.push(format!(
                "env {} copies the scheduler's variable {var}",
                e.name
            )),
            EnvSource::Literal(_) => {}
        }
    }
    out
}

fn bytes(n: u64) -> String {
    bytesize::ByteSize(n).display().iec().to_string()
}
