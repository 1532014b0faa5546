//! Startup, reload and shutdown of `gatehouse-scheduler run`, in order:
//! load the policy, bind both listeners (fail fast), open the run history,
//! and serve the API and history at once; meanwhile connect to Docker (with
//! backoff, for as long as it takes: `/readyz` says why it is not ready),
//! reconcile, catch up, then schedule, until SIGTERM. On SIGTERM scheduling
//! stops and running containers are left to be adopted by the next start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gatehouse_audit::{AuditEvent, EventKind, Outcome};
use gatehouse_policy::scheduler::SchedulerSettings;
use gatehouse_policy::Policy;
use notify::{RecursiveMode, Watcher};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::audit::{self as audit_records, Audit};
use crate::auth::{self, Verifier};
use crate::docker;
use crate::engine::{self, RunEngine};
use crate::http::access::Api;
use crate::http::admin::{self, Admin};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::ticker;

/// How often old runs are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Loads and validates a policy, reporting problems as miette diagnostics
/// with file, line and column.
pub fn load_policy(path: &Path) -> anyhow::Result<Policy> {
    gatehouse_policy::load(path).map_err(|e| anyhow::anyhow!("{:?}", e.report()))
}

/// Checks what `run` would need from a policy, without running anything.
pub fn check(policy: &Policy) -> anyhow::Result<()> {
    let settings = policy
        .scheduler
        .as_ref()
        .context("the policy has no [scheduler] section")?;
    let env = crate::job_env::problems(policy);
    if !env.is_empty() {
        anyhow::bail!(
            "{} env value{} cannot be read:\n  {}",
            env.len(),
            if env.len() == 1 { "" } else { "s" },
            env.join("\n  ")
        );
    }
    for job in &policy.jobs {
        if !job.image_pinned {
            tracing::warn!(job = %job.name, image = %job.image, "image is not pinned by digest (@sha256:…)");
        }
    }
    crate::notify::check(&settings.notify)?;
    for warning in gatehouse_policy::weakening::mount_warnings(&policy.jobs) {
        tracing::warn!("{warning}");
    }
    Ok(())
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({what})"))
}

pub async fn run(policy_path: PathBuf) -> anyhow::Result<()> {
    let policy = load_policy(&policy_path)?;
    check(&policy)?;
    let settings = policy
        .scheduler
        .clone()
        .context("the policy has no [scheduler] section")?;
    // Before the port is ours: assertions issued from here on cannot have
    // been accepted by a previous process, and older ones are refused.
    let verifier = gateway_verifier(&policy, &settings)?;
    let (api_listener, admin_listener) = bind_listeners(&settings).await?;
    let store = Arc::new(Store::open(&settings.database).await?);
    // Only a DOCKER_HOST we cannot use stops the start; a daemon that does
    // not answer yet is waited for (see `start_scheduling`).
    let docker = docker::DockerClient::from_env()
        .context("the Docker engine (DOCKER_HOST or /var/run/docker.sock)")?;
    let executor = Arc::new(docker::Executor::new(docker, &settings));
    let audit = Audit::open(&policy).context("opening the audit log")?;
    let metrics = Metrics::new();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let engine = RunEngine::new(
        settings.clone(),
        &policy.jobs,
        store.clone(),
        executor,
        metrics.clone(),
        audit.clone(),
        shutdown_rx.clone(),
    );
    record_startup(&audit, &policy_path, &policy);

    let (reloaded_tx, reloaded_rx) = watch::channel(0u64);
    tokio::spawn(start_scheduling(
        engine.clone(),
        reloaded_rx,
        shutdown_rx.clone(),
    ));
    tokio::spawn(crate::engine::follow_other_schedulers(
        engine.clone(),
        shutdown_rx.clone(),
    ));

    tokio::spawn(auth::keep_keys_fresh(verifier.clone()));
    tokio::spawn(prune_loop(
        store.clone(),
        settings.keep_runs,
        settings.keep_for,
    ));
    spawn_reloader(
        policy_path.clone(),
        policy,
        engine.clone(),
        metrics.clone(),
        audit.clone(),
        reloaded_tx,
        verifier.clone(),
    )?;

    let api_router = crate::http::router(Api {
        engine: engine.clone(),
        verifier: verifier.clone(),
        metrics: metrics.clone(),
    });
    let api_server = serve(api_listener, api_router, shutdown_rx.clone());
    if let Some(listener) = admin_listener {
        let router = admin::router(Admin {
            engine: engine.clone(),
            verifier,
            metrics,
        });
        serve(listener, router, shutdown_rx.clone());
    }
    tracing::info!(api = %settings.listen, admin = ?settings.admin, "gatehouse-scheduler is running");

    // Losing its membership of a shared database (PostgreSQL) ends this
    // process as a SIGTERM would: its runs are, or are about to be,
    // another scheduler's. Their containers keep running for it.
    let lost = tokio::select! {
        result = wait_for_termination() => {
            result?;
            false
        }
        () = store.membership_lost() => true,
    };
    if lost {
        tracing::error!(
            "this scheduler lost its lease on the shared PostgreSQL database: stopping"
        );
    }
    tracing::info!(
        "stopping: no new runs; running containers are left for the next start to adopt"
    );
    let _ = shutdown_tx.send(true);
    audit.record(audit_records::lifecycle(
        EventKind::Shutdown,
        &[("running_runs", engine.active_count().into())],
    ));
    if !lost {
        // Other schedulers sharing the database adopt this one's runs at
        // once, rather than when its lease runs out.
        if let Err(e) = store.leave().await {
            tracing::warn!(error = %e, "cannot leave the shared database's schedulers; its runs are adopted when the lease runs out");
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), api_server).await;
    audit.close();
    if lost {
        anyhow::bail!("the lease on the shared PostgreSQL database was lost");
    }
    Ok(())
}

/// The API listener and, when configured, the admin one.
async fn bind_listeners(
    settings: &SchedulerSettings,
) -> anyhow::Result<(TcpListener, Option<TcpListener>)> {
    let api = bind(settings.listen, "scheduler API").await?;
    let admin = match settings.admin {
        Some(addr) => Some(bind(addr, "scheduler admin").await?),
        None => None,
    };
    Ok((api, admin))
}

fn record_startup(audit: &Audit, policy_path: &Path, policy: &Policy) {
    audit.record(audit_records::lifecycle(
        EventKind::Startup,
        &[
            ("policy", policy_path.display().to_string().into()),
            ("sha256", policy.origin.sha256.clone().into()),
            ("jobs", policy.jobs.len().into()),
        ],
    ));
}

/// The verifier of the gateway's assertions, with its key source and the
/// keys of the routes that have their own.
fn gateway_verifier(
    policy: &Policy,
    settings: &SchedulerSettings,
) -> anyhow::Result<Arc<Verifier>> {
    let jwks = auth::JwksSource::new(
        settings.gateway_jwks.clone(),
        settings.gateway_jwks_refresh,
        settings.gateway_jwks_ca.as_deref(),
    )
    .context("the gateway's JWKS ([scheduler] gateway_jwks)")?;
    let mut verifier =
        Verifier::new(&settings.gateway_issuer, &settings.gateway_routes).with_source(jwks);
    verifier.set_route_keys(route_keys(policy, settings));
    Ok(Arc::new(verifier))
}

/// The HS256 keys of the routes that reach this scheduler and have one.
fn route_keys(policy: &Policy, settings: &SchedulerSettings) -> Vec<auth::RouteKey> {
    policy
        .routes
        .iter()
        .filter(|r| settings.gateway_routes.contains(&r.name))
        .filter_map(|r| {
            r.assertion_key.as_ref().map(|key| auth::RouteKey {
                route: r.name.clone(),
                key: key.expose().to_vec(),
            })
        })
        .collect()
}

/// Which of the scheduler's routes have their own key: fixed at start
/// (it decides which routes EdDSA is accepted for).
fn keyed_routes(policy: &Policy, settings: &SchedulerSettings) -> Vec<String> {
    route_keys(policy, settings)
        .into_iter()
        .map(|k| k.route)
        .collect()
}

/// Serves `router` on `listener` until shutdown, letting requests in
/// flight finish.
fn serve(
    listener: TcpListener,
    router: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|s| *s).await;
            })
            .await
    })
}

/// Connects to Docker (retrying with backoff), reconciles, catches up what
/// passed while the scheduler was down or Docker away, then schedules and
/// is ready; then follows the daemon until shutdown.
async fn start_scheduling(
    engine: Arc<RunEngine>,
    reloaded: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
) {
    if engine::connect_and_reconcile(&engine).await.is_none() {
        return;
    }
    ticker::catch_up(&engine, chrono::Utc::now()).await;
    tokio::spawn(ticker::run(engine.clone(), reloaded, shutdown));
    engine.mark_ready();
    tracing::info!("ready: scheduling");
    engine::monitor_docker(engine).await;
}

async fn wait_for_termination() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

async fn prune_loop(store: Arc<Store>, keep: usize, max_age: Duration) {
    loop {
        match store.prune(keep, max_age).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "pruned old runs"),
            Err(e) => tracing::warn!(error = %e, "cannot prune old runs"),
        }
        tokio::time::sleep(PRUNE_EVERY).await;
    }
}

/// What asked for a reload; the audit record's `trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReloadTrigger {
    Hangup,
    FileChanged,
}

impl ReloadTrigger {
    fn as_str(self) -> &'static str {
        match self {
            ReloadTrigger::Hangup => "SIGHUP",
            ReloadTrigger::FileChanged => "file changed",
        }
    }
}

/// SIGHUP or a change to the policy file reloads the jobs and the keys of
/// keyed routes. A policy that does not load, or that changes
/// `[scheduler]` or which of its routes have a key (both need a restart),
/// is refused and the old one stays; runs in flight are never touched.
fn spawn_reloader(
    path: PathBuf,
    current: Policy,
    engine: Arc<RunEngine>,
    metrics: Arc<Metrics>,
    audit: Audit,
    reloaded: watch::Sender<u64>,
    verifier: Arc<Verifier>,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel::<ReloadTrigger>(8);
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let hup_tx = tx.clone();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let _ = hup_tx.send(ReloadTrigger::Hangup).await;
        }
    });
    let watcher = watch_file(&path, tx);
    tokio::spawn(async move {
        let _watcher = watcher;
        let mut current = current;
        let mut generation = 0u64;
        while let Some(why) = rx.recv().await {
            // Let a burst of writes (an editor's save) settle.
            tokio::time::sleep(Duration::from_millis(250)).await;
            while rx.try_recv().is_ok() {}
            let before = current.origin.sha256.clone();
            let result = load_policy(&path).and_then(|p| {
                if p.scheduler != current.scheduler {
                    anyhow::bail!("[scheduler] changed; restart the scheduler to apply it");
                }
                if let Some(settings) = &p.scheduler {
                    if keyed_routes(&p, settings) != keyed_routes(&current, settings) {
                        anyhow::bail!("which of the scheduler's routes have an assertion_key changed; restart the scheduler to apply it");
                    }
                }
                check(&p)?;
                Ok(p)
            });
            let mut event = AuditEvent::new(
                EventKind::PolicyReload,
                if result.is_ok() {
                    Outcome::Success
                } else {
                    Outcome::Failure
                },
            )
            .actor("scheduler", "system")
            .detail("trigger", why.as_str())
            .detail("sha256_before", before);
            match result {
                Ok(policy) => {
                    if policy.origin.sha256 == current.origin.sha256 {
                        continue;
                    }
                    engine.replace_jobs(&policy.jobs);
                    if let Some(settings) = &policy.scheduler {
                        verifier.replace_route_keys(route_keys(&policy, settings));
                    }
                    generation += 1;
                    let _ = reloaded.send(generation);
                    metrics
                        .policy_reloads
                        .with_label_values(&["accepted"])
                        .inc();
                    tracing::info!(jobs = policy.jobs.len(), "policy reloaded");
                    event = event.detail("sha256_after", policy.origin.sha256.clone());
                    current = policy;
                }
                Err(e) => {
                    metrics
                        .policy_reloads
                        .with_label_values(&["rejected"])
                        .inc();
                    tracing::error!(
                        "policy reload rejected; the previous policy stays in force:\n{e:#}"
                    );
                    event =
                        event.detail("error", "the policy was rejected; see the scheduler's log");
                }
            }
            audit.record(event);
        }
    });
    Ok(())
}

fn watch_file(path: &Path, tx: mpsc::Sender<ReloadTrigger>) -> Option<notify::RecommendedWatcher> {
    let file_name = path.file_name()?.to_owned();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if event
                .paths
                .iter()
                .any(|p| p.file_name() == Some(&file_name))
            {
                let _ = tx.blocking_send(ReloadTrigger::FileChanged);
            }
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "cannot watch the policy file; SIGHUP still reloads"))
    .ok()?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(
            |e| tracing::warn!(error = %e, "cannot watch the policy file; SIGHUP still reloads"),
        )
        .ok()?;
    Some(watcher)
}
