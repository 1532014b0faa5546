//! A job's environment, read when a run starts (so secret files rotate
//! without a reload), and checked all at once by `check`.
//!
//! Secret files are opened beneath the `secret_dirs` entry the policy
//! matched them to ([`beneath::read`]): a symlink in there may not lead to
//! a file the scheduler happens to be able to read, such as its own keys.

use std::path::Path;

use gatehouse_policy::scheduler::{EnvSource, Job, JobEnv};
use gatehouse_policy::Policy;

use crate::beneath::{self, Symlinks};

/// Reads the job's env now, so secret files can rotate without a reload.
/// Errors name the variable, never its value.
pub(crate) fn resolve_all(job: &Job) -> Result<Vec<(String, String)>, String> {
    job.env
        .iter()
        .map(|e| Ok((e.name.clone(), resolve(e)?)))
        .collect()
}

/// The value of one variable; the error names the variable, never a value.
pub fn resolve(e: &JobEnv) -> Result<String, String> {
    let value = match &e.value {
        EnvSource::Literal(v) => v.clone(),
        EnvSource::Env(var) => {
            std::env::var(var).map_err(|_| format!("env {}: variable {var} is not set", e.name))?
        }
        EnvSource::File(path) => read_secret(e, path)?,
    };
    if value.contains('\0') {
        return Err(format!("env {}: the value contains NUL", e.name));
    }
    Ok(value)
}

fn read_secret(e: &JobEnv, path: &Path) -> Result<String, String> {
    let cannot = |why: String| format!("env {}: cannot read {}: {why}", e.name, path.display());
    // The policy only accepts files below a secret directory; without one
    // nothing is read (fail closed).
    let dir = e
        .secret_dir
        .as_deref()
        .ok_or_else(|| cannot("it is outside [scheduler] secret_dirs".to_owned()))?;
    let relative = path
        .strip_prefix(dir)
        .map_err(|_| cannot("it is outside [scheduler] secret_dirs".to_owned()))?;
    let bytes = beneath::read(dir, relative, Symlinks::StayBeneath).map_err(|err| {
        cannot(match err.kind() {
            std::io::ErrorKind::PermissionDenied => {
                format!("{err} (a symlink may not lead out of {})", dir.display())
            }
            _ => err.kind().to_string(),
        })
    })?;
    let mut text = String::from_utf8(bytes).map_err(|_| cannot("it is not UTF-8".to_owned()))?;
    while text.ends_with('\n') || text.ends_with('\r') {
        text.pop();
    }
    Ok(text)
}

/// Every variable of every job that cannot be read now, each as
/// `file:line:col: job `name`: reason`, in file order.
pub fn problems(policy: &Policy) -> Vec<String> {
    let file = &policy.origin.path;
    policy
        .jobs
        .iter()
        .flat_map(|job| {
            job.env.iter().filter_map(move |e| {
                resolve(e).err().map(|reason| {
                    format!(
                        "{}:{}:{}: job `{}`: {reason}",
                        file.display(),
                        e.at.line,
                        e.at.column,
                        job.name
                    )
                })
            })
        })
        .collect()
}
