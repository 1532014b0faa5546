//! What a validated policy lets its jobs do beyond the hardened defaults,
//! in words, for `gatehouse-scheduler check`: every loosening the policy
//! accepted is printed, and layouts that are valid but risky are warned
//! about.

use crate::scheduler::Job;

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
