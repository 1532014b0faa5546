//! Policy and certificate reload: build a whole new snapshot off the request
//! path, then swap it in. A policy that does not load is logged and counted,
//! and the old one stays in force.
//!
//! Triggers: SIGHUP, or a change to the policy file or any certificate or
//! key it names (watched through their directories, so editors that replace
//! files by rename and Kubernetes' symlink swaps are seen too).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;

use gatehouse_audit::{AuditEvent, EventKind, Outcome};

use crate::admin::audit::Audit;
use crate::admin::metrics::Metrics;
use crate::edge::tls::CertStore;
use crate::identity::IdentityState;
use crate::snapshot::{Snapshot, SnapshotError};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Invalid(#[from] SnapshotError),
    #[error("{0} cannot change while running; restart the gateway to apply it")]
    NeedsRestart(&'static str),
}

pub struct Reloader {
    pub policy_path: PathBuf,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub certs: Arc<ArcSwap<CertStore>>,
    pub metrics: Arc<Metrics>,
    pub identity: IdentityState,
    pub audit: Audit,
}

impl Reloader {
    /// Loads the policy again and swaps it in, or keeps the old one.
    pub fn reload(&self) -> Result<(), ReloadError> {
        let before = self.snapshot.load().policy.origin.sha256.clone();
        let result = self.try_reload();
        let outcome = if result.is_ok() {
            "accepted"
        } else {
            "rejected"
        };
        self.metrics
            .policy_reloads
            .with_label_values(&[outcome])
            .inc();
        // The digest of what is on disk now, even when it was refused.
        let after = std::fs::read(&self.policy_path)
            .map(|bytes| gatehouse_audit::line_hash(&bytes))
            .unwrap_or_else(|_| "unreadable".to_owned());
        let mut event = AuditEvent::new(
            EventKind::PolicyReload,
            if result.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
        )
        .actor("gateway", "system")
        .detail("policy", self.policy_path.display().to_string())
        .detail("sha256_before", before)
        .detail("sha256_after", after);
        if let Err(e) = &result {
            event = event.detail("error", reload_error_summary(e));
        }
        self.audit.record(event);
        result
    }

    fn try_reload(&self) -> Result<(), ReloadError> {
        let current = self.snapshot.load();
        let next = Snapshot::load(&self.policy_path, &self.identity, Some(&current))?;
        let (old, new) = (&current.policy, &next.policy);
        // Listeners are bound, the crypto provider is process-wide, and the
        // connection cap is fixed at start; accepting a change we cannot
        // honour would leave users believing it is in force.
        if old.listen.https != new.listen.https
            || old.listen.http_redirect != new.listen.http_redirect
            || old.listen.admin != new.listen.admin
        {
            return Err(ReloadError::NeedsRestart("[listen]"));
        }
        if old.tls.min_version != new.tls.min_version {
            return Err(ReloadError::NeedsRestart("tls.min_version"));
        }
        if old.identities.assertion != new.identities.assertion {
            return Err(ReloadError::NeedsRestart("[assertion]"));
        }
        if old.shared_state != new.shared_state {
            return Err(ReloadError::NeedsRestart("[shared_state]"));
        }
        if old.limits.max_connections != new.limits.max_connections {
            return Err(ReloadError::NeedsRestart("limits.max_connections"));
        }
        if old.audit != new.audit {
            return Err(ReloadError::NeedsRestart("[audit]"));
        }
        tracing::info!(
            before = %old.origin.sha256,
            after = %new.origin.sha256,
            "policy reloaded"
        );
        self.certs.store(next.certs.clone());
        self.metrics.set_cert_expiries(&next.certs.not_after);
        self.snapshot.store(Arc::new(next));
        Ok(())
    }

    /// The files whose change triggers a reload.
    fn watched_files(&self) -> HashSet<PathBuf> {
        let snapshot = self.snapshot.load();
        let mut files: HashSet<PathBuf> = snapshot.certs.files.iter().cloned().collect();
        files.insert(self.policy_path.clone());
        files.into_iter().map(|f| absolute(&f)).collect()
    }
}

/// One line for the audit record: what was wrong, without the policy's
/// text (which may hold secrets inline).
fn reload_error_summary(error: &ReloadError) -> String {
    match error {
        ReloadError::Invalid(SnapshotError::Policy(gatehouse_policy::PolicyError::Invalid {
            problems,
            ..
        })) => format!("{} problem(s) in the policy", problems.len()),
        ReloadError::Invalid(SnapshotError::Policy(_)) => "the policy could not be read".into(),
        ReloadError::Invalid(_) => "a certificate or key could not be loaded".into(),
        ReloadError::NeedsRestart(what) => format!("{what} cannot change while running"),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// What asked for a reload.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Hangup,
    FileChanged,
}

/// Runs reloads until shutdown. Its triggers (a SIGHUP handler and the file
/// watcher) are installed when it is built, before the server starts, so a
/// SIGHUP or an edit right after startup is never lost, and an early SIGHUP
/// cannot fall through to the default action, which ends the process.
pub struct ReloadService {
    reloader: Arc<Reloader>,
    tx: mpsc::Sender<Trigger>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Trigger>>>,
    watcher: std::sync::Mutex<Option<notify::RecommendedWatcher>>,
}

impl ReloadService {
    pub fn new(reloader: Arc<Reloader>) -> anyhow::Result<Self> {
        let (tx, rx) = mpsc::channel(8);
        let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
        let hangup_tx = tx.clone();
        std::thread::Builder::new()
            .name("sighup".into())
            .spawn(move || {
                for _ in signals.forever() {
                    if hangup_tx.blocking_send(Trigger::Hangup).is_err() {
                        return;
                    }
                }
            })?;
        let watcher = start_watcher(&reloader.watched_files(), tx.clone());
        Ok(ReloadService {
            reloader,
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            watcher: std::sync::Mutex::new(watcher),
        })
    }
}

#[async_trait]
impl BackgroundService for ReloadService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut rx) = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let reloader = self.reloader.clone();
        let mut watched = reloader.watched_files();
        loop {
            tokio::select! {
                Some(trigger) = rx.recv() => {
                    if let Trigger::FileChanged = trigger {
                        // Let a burst of writes (editor save, cert + key) settle.
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    while rx.try_recv().is_ok() {}
                    tracing::info!(?trigger, "reloading policy");
                }
                _ = shutdown.changed() => return,
            }
            let r = reloader.clone();
            let result = tokio::task::spawn_blocking(move || r.reload()).await;
            match result {
                Ok(Ok(())) => {
                    let now = reloader.watched_files();
                    if now != watched {
                        watched = now;
                        let watcher = start_watcher(&watched, self.tx.clone());
                        *self.watcher.lock().unwrap_or_else(|e| e.into_inner()) = watcher;
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "policy reload rejected; the previous policy stays in force")
                }
                Err(e) => tracing::error!(error = %e, "policy reload task failed"),
            }
        }
    }
}

/// Watches the directories holding `files` and signals when one of them
/// changes. Returns the watcher, which stops watching when dropped.
fn start_watcher(
    files: &HashSet<PathBuf>,
    tx: mpsc::Sender<Trigger>,
) -> Option<notify::RecommendedWatcher> {
    let wanted = files.clone();
    let dirs: HashSet<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        // Kubernetes swaps a `..data` symlink; treat any change to a dot
        // entry in a watched directory as a change to our files.
        let relevant = event.paths.iter().any(|p| {
            wanted.contains(p)
                || p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(".."))
        });
        if relevant {
            // A full channel already holds a pending reload.
            let _ = tx.try_send(Trigger::FileChanged);
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch files; reload with SIGHUP");
            return None;
        }
    };
    for dir in dirs {
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory");
        }
    }
    Some(watcher)
}
