//! A topic's outcomes: every vector is evaluated, a one-line summary goes
//! to stderr, then the topic fails listing each vector that did not hold.

use std::io::Write;
use std::time::Instant;

/// The outcomes of one topic's vectors.
pub struct Report {
    topic: &'static str,
    outcomes: Vec<(String, Result<(), String>)>,
    started: Instant,
}

impl Report {
    pub fn new(topic: &'static str) -> Report {
        Report {
            topic,
            outcomes: Vec::new(),
            started: Instant::now(),
        }
    }

    pub fn record(&mut self, name: impl Into<String>, outcome: Result<(), String>) {
        self.outcomes.push((name.into(), outcome));
    }

    /// Takes over another report's outcomes (a part run concurrently).
    pub fn absorb(&mut self, other: Report) {
        self.outcomes.extend(other.outcomes);
    }

    /// Every vector in `names` fails for one reason (its gateway did not
    /// start, say): counted, never skipped.
    pub fn fail_all(&mut self, names: &[&str], why: &str) {
        for name in names {
            self.record(*name, Err(why.to_owned()));
        }
    }

    /// Prints the summary and every failure, then fails if any vector did
    /// not hold.
    pub fn finish(self) {
        let total = self.outcomes.len();
        let failures: Vec<String> = self
            .outcomes
            .iter()
            .filter_map(|(name, outcome)| outcome.as_ref().err().map(|e| format!("{name}: {e}")))
            .collect();
        let mut stderr = std::io::stderr().lock();
        for failure in &failures {
            let _ = writeln!(stderr, "attack/{} FAILED {failure}", self.topic);
        }
        let _ = writeln!(
            stderr,
            "attack/{}: {total} vectors, {} hold ({:.1} s)",
            self.topic,
            total - failures.len(),
            self.started.elapsed().as_secs_f64()
        );
        assert!(
            failures.is_empty(),
            "attack/{}: {} of {total} vectors did not hold:\n{}",
            self.topic,
            failures.len(),
            failures.join("\n")
        );
    }
}

/// Topics hold this shared while they run; the password-guessing flood
/// holds it alone, so its CPU and memory load cannot make another topic's
/// vectors time out (the test harness runs topics on parallel threads).
static HEAVY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Taken once, at the start of a topic's test (never nested: a waiting
/// writer would block the second read).
pub async fn shared() -> tokio::sync::RwLockReadGuard<'static, ()> {
    HEAVY.read().await
}

pub async fn exclusive() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    HEAVY.write().await
}
