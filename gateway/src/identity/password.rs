//! Where password hashes are checked: a few dedicated threads, one per
//! core, each with its own argon2 memory that it keeps and reuses.
//!
//! argon2id is slow and memory-hard on purpose (19 MiB and about 34 ms per
//! check with the OWASP parameters). Run on tokio's blocking pool, every
//! concurrent guess got its own thread and its own 19 MiB, which glibc then
//! kept: 40 concurrent wrong passwords took the gateway from 57 MB to
//! 819 MB. Here at most `workers` checks run at once, the memory they use
//! is allocated once per worker, and a check that cannot get a worker
//! within [`QUEUE_WAIT`] is refused as busy instead of queueing without end.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{oneshot, Semaphore};
use zeroize::Zeroizing;

/// How long a check may wait for a free worker before it is refused.
pub const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Argon2 memory above this is refused rather than allocated per worker.
const MAX_ARGON2_BLOCKS: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("every password worker is busy")]
pub struct PoolBusy;

struct Job {
    hash: Arc<str>,
    password: Zeroizing<String>,
    reply: oneshot::Sender<bool>,
}

/// The process's password workers; shared by every policy snapshot.
pub struct PasswordPool {
    jobs: SyncSender<Job>,
    permits: Semaphore,
}

impl PasswordPool {
    /// Starts `workers` threads (at least one).
    pub fn start(workers: usize) -> std::io::Result<Arc<Self>> {
        let workers = workers.max(1);
        // Never more jobs than permits, so a send never blocks.
        let (jobs, queue) = mpsc::sync_channel(workers);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..workers {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("password-{n}"))
                .spawn(move || work(&queue))?;
        }
        Ok(Arc::new(PasswordPool {
            jobs,
            permits: Semaphore::new(workers),
        }))
    }

    /// One worker per core: checks are CPU-bound.
    pub fn per_core() -> std::io::Result<Arc<Self>> {
        Self::start(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// Whether `password` matches `hash` (argon2 PHC string or bcrypt).
    pub async fn matches(&self, hash: Arc<str>, password: &str) -> Result<bool, PoolBusy> {
        let permit = tokio::time::timeout(QUEUE_WAIT, self.permits.acquire())
            .await
            .map_err(|_| PoolBusy)?
            .map_err(|_| PoolBusy)?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            hash,
            password: Zeroizing::new(password.to_owned()),
            reply,
        };
        self.jobs.try_send(job).map_err(|_| PoolBusy)?;
        let matched = answer.await.unwrap_or(false);
        drop(permit);
        Ok(matched)
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = match queue.lock() {
            Ok(receiver) => receiver.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else { return };
        let matched = password_matches(&job.hash, &job.password, &mut memory);
        // The requester may have gone; nothing to do then.
        let _ = job.reply.send(matched);
    }
}

/// Constant-time comparison is in `Output`'s `PartialEq` (argon2) and in
/// bcrypt's verify.
fn password_matches(hash: &str, password: &str, memory: &mut Vec<Block>) -> bool {
    if hash.starts_with("$argon2") {
        argon2_matches(hash, password.as_bytes(), memory).unwrap_or(false)
    } else {
        bcrypt::verify(password, hash).unwrap_or(false)
    }
}

/// argon2's own `verify_password`, but filling memory this worker keeps
/// instead of allocating it for every check.
fn argon2_matches(hash: &str, password: &[u8], memory: &mut Vec<Block>) -> Option<bool> {
    let parsed = PasswordHash::new(hash).ok()?;
    let (salt, expected) = (parsed.salt?, parsed.hash?);
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).ok()?;
    let blocks = params.block_count();
    if blocks > MAX_ARGON2_BLOCKS {
        return None;
    }
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut salt_bytes = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_bytes).ok()?;
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut out, &mut memory[..blocks])
        .ok()?;
    Some(Output::new(&out).ok()? == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::hash_password;

    #[tokio::test]
    async fn argon2_and_bcrypt_hashes_are_checked_with_reused_memory() {
        let pool = PasswordPool::start(1).unwrap();
        let argon: Arc<str> = hash_password("correct horse").unwrap().into();
        assert_eq!(pool.matches(argon.clone(), "correct horse").await, Ok(true));
        assert_eq!(
            pool.matches(argon.clone(), "correct horsf").await,
            Ok(false)
        );
        assert_eq!(pool.matches(argon, "correct horse").await, Ok(true));
        let bcrypt: Arc<str> = bcrypt::hash("hunter2", 4).unwrap().into();
        assert_eq!(pool.matches(bcrypt.clone(), "hunter2").await, Ok(true));
        assert_eq!(pool.matches(bcrypt, "hunter3").await, Ok(false));
    }

    #[tokio::test]
    async fn garbage_hashes_never_match() {
        let pool = PasswordPool::start(1).unwrap();
        for hash in ["", "$argon2id$v=19$m=19456", "$2b$12$short", "plain"] {
            assert_eq!(pool.matches(hash.into(), "").await, Ok(false), "{hash}");
        }
    }

    #[test]
    fn huge_memory_costs_are_refused_not_allocated() {
        let mut memory = Vec::new();
        let hash = "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
        assert_eq!(argon2_matches(hash, b"x", &mut memory), None);
        assert!(memory.is_empty());
    }
}
