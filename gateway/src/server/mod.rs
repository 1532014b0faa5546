//! Assembles the Pingora server from a loaded snapshot: the TLS proxy, the
//! redirect and admin listeners, reload, and graceful shutdown.

pub mod connection;
pub mod proxy_protocol;
pub mod redirect;
mod shared_state;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use arc_swap::ArcSwap;
use gatehouse_audit::{AuditEvent, EventKind, Outcome};
use pingora::apps::http_app::{HttpServer, ServeHttp};
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::Listeners;
use pingora::proxy::HttpProxy;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::audit::Audit;
use crate::admin::endpoints::Admin;
use crate::edge::client_addr::PerNetwork;
use crate::identity::assertion::AssertionSigner;
use crate::identity::IdentityState;
use connection::ConnectionCap;
use proxy_protocol::ProxyProtocolHook;
use redirect::RedirectToHttps;

use crate::admin::metrics::{InFlight, Metrics};
use crate::admin::reload::{ReloadService, Reloader};
use crate::edge::request_id::RequestIds;
use crate::edge::tls::{self, SniResolver};
use crate::proxy::Gateway;
use crate::snapshot::Snapshot;

/// How long SIGTERM waits before trusting the in-flight counters.
const DRAIN_SETTLE: Duration = Duration::from_millis(500);

pub fn run(policy_path: PathBuf, threads: Option<usize>, metrics: Arc<Metrics>) -> Result<()> {
    let identity = IdentityState::new().context("starting the password workers")?;
    let snapshot = Snapshot::load(&policy_path, &identity, None).map_err(|e| match e {
        crate::snapshot::SnapshotError::Policy(p) => anyhow::anyhow!("{p}"),
        other => anyhow::Error::new(other),
    })?;
    let policy = &snapshot.policy;
    tls::install_crypto_provider(policy.tls.min_version)?;
    check_listeners_free(policy)?;
    warn_about_risky_settings(policy);

    let assertion = Arc::new(
        AssertionSigner::new(
            policy.identities.assertion.key_file.as_deref(),
            &policy.identities.assertion.publish_key_files,
            policy.listen.public_origin.as_str(),
            policy.identities.assertion.lifetime,
        )
        .context("loading the assertion signing key")?,
    );
    let audit = Audit::open(policy).context("opening the audit log")?;
    let grace = policy.limits.shutdown_grace;
    let listen = policy.listen.clone();
    let limits = HttpsLimits {
        max_connections: policy.limits.max_connections,
        h2_idle_timeout: policy.limits.client_read_timeout,
    };

    metrics.set_cert_expiries(&snapshot.certs.not_after);
    let certs = Arc::new(ArcSwap::new(snapshot.certs.clone()));
    let snapshot = Arc::new(ArcSwap::from_pointee(snapshot));
    let shared_state = shared_state::connect(
        &snapshot.load().policy,
        &metrics,
        &audit,
        &snapshot,
        &identity,
    )?;
    let in_flight = Arc::new(InFlight::new(metrics.requests_in_flight.clone()));
    let open_connections = Arc::new(AtomicUsize::new(0));

    let mut server = Server::new_with_opt_and_conf(None, server_conf(threads, grace));
    let gateway = Gateway {
        snapshot: snapshot.clone(),
        metrics: metrics.clone(),
        request_ids: RequestIds::new(),
        in_flight: in_flight.clone(),
        assertion: assertion.clone(),
        oidc: Arc::new(
            crate::identity::login::OidcClients::new(shared_state.clone())
                .context("building the OIDC HTTP client")?,
        ),
        audit: audit.clone(),
        shared_state,
    };
    let (mut https, tls_settings) = https_service(
        &server.configuration,
        gateway,
        SniResolver::new(certs.clone()),
        limits,
        open_connections.clone(),
    )?;
    https.add_tls_with_settings(&listen.https.to_string(), None, tls_settings);
    server.add_service(https);
    add_plain_listeners(&mut server, &listen, &snapshot, &metrics, assertion, &audit);

    let reloader = Arc::new(Reloader {
        policy_path,
        snapshot: snapshot.clone(),
        certs,
        metrics,
        identity: identity.clone(),
        audit: audit.clone(),
    });
    server.add_service(background_service(
        "reload",
        ReloadService::new(reloader).context("installing reload triggers")?,
    ));
    spawn_drain_watcher(in_flight, open_connections, grace, audit.clone())?;
    spawn_sweeper(snapshot.clone(), identity.clone(), audit.clone())?;

    server.bootstrap();
    audit.record(
        AuditEvent::new(EventKind::Startup, Outcome::Success)
            .actor("gateway", "system")
            .detail("version", env!("CARGO_PKG_VERSION"))
            .detail(
                "policy_sha256",
                snapshot.load().policy.origin.sha256.as_str(),
            ),
    );
    tracing::info!(https = %listen.https, "gatehouse gateway started");
    server.run_forever()
}

fn server_conf(threads: Option<usize>, grace: Duration) -> ServerConf {
    ServerConf {
        threads: threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }),
        // One runtime per thread, each connection staying on the thread
        // that accepted it: no cross-thread wakeups or task stealing on
        // the request path (a bare Pingora proxy measured +10% rps). The
        // request path never blocks: password hashing has its own
        // threads (`IdentityState`).
        work_stealing: false,
        grace_period_seconds: Some(grace.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    }
}

/// HTTP/2 on the public listener. Pingora's bounded defaults (64 KiB of
/// decoded headers, 100 concurrent streams, the RFC 9113 minimum a client
/// may count on) are kept; the windows are h2's 64 KiB. The connection
/// window bounds how much request body one client can make the gateway
/// hold (64 KiB per connection, times `max_connections`); larger windows
/// only help uploads over long round trips, and the benchmark's requests
/// (no bodies, 100-byte responses) are unaffected by them (bench/README.md).
fn h2_options() -> pingora::protocols::http::v2::server::H2Options {
    let mut options = pingora::protocols::http::v2::server::default_h2_options();
    options
        .initial_window_size(H2_WINDOW)
        .initial_connection_window_size(H2_WINDOW)
        .max_concurrent_streams(H2_MAX_STREAMS);
    options
}

const H2_WINDOW: u32 = 65_535;
const H2_MAX_STREAMS: u32 = 100;

/// The policy's bounds on the HTTPS listener's connections.
struct HttpsLimits {
    max_connections: usize,
    /// An HTTP/2 connection without a complete request is closed after
    /// this long: HTTP/2's bound on slow or idle clients (HTTP/1 heads
    /// have `request_head_timeout`, see `edge/head_deadline.rs`).
    h2_idle_timeout: Duration,
}

/// The TLS proxy on the public listener (h2 and HTTP/1.1, certificates by
/// SNI), inside the connection cap. The caller adds the listening address.
fn https_service(
    conf: &Arc<ServerConf>,
    gateway: Gateway,
    certs: SniResolver,
    limits: HttpsLimits,
    open_connections: Arc<AtomicUsize>,
) -> Result<(Service<ConnectionCap<HttpProxy<Gateway>>>, TlsSettings)> {
    let snapshot = gateway.snapshot.clone();
    let metrics = gateway.metrics.clone();
    let mut proxy = pingora::proxy::http_proxy(conf, gateway);
    let mut options = HttpServerOptions::default();
    options.h2c = false;
    options.h2_idle_timeout = Some(limits.h2_idle_timeout);
    proxy.server_options = Some(options);
    proxy.h2_options = Some(h2_options());
    let mut tls_settings = TlsSettings::with_callbacks(Box::new(tls::SniCallbacks))
        .context("building TLS settings")?;
    tls_settings.set_cert_resolver(Arc::new(certs));
    tls_settings.enable_h2();
    // Before TLS: the PROXY protocol header from the balancers the policy
    // trusts for it (read from no one else).
    let mut listeners = Listeners::new();
    listeners.set_pre_tls_callback(Arc::new(ProxyProtocolHook {
        snapshot: snapshot.clone(),
        metrics: metrics.clone(),
    }));
    let capped = ConnectionCap {
        inner: Arc::new(proxy),
        snapshot,
        max: limits.max_connections,
        open: open_connections,
        per_address: PerNetwork::default(),
        metrics,
    };
    Ok((
        Service::with_listeners("https".into(), listeners, capped),
        tls_settings,
    ))
}

/// The redirect and the admin listener, where the policy asks for them.
fn add_plain_listeners(
    server: &mut Server,
    listen: &gatehouse_policy::Listen,
    snapshot: &Arc<ArcSwap<Snapshot>>,
    metrics: &Arc<Metrics>,
    assertion: Arc<AssertionSigner>,
    audit: &Audit,
) {
    if let Some(addr) = listen.http_redirect {
        let redirect = RedirectToHttps {
            snapshot: snapshot.clone(),
        };
        server.add_service(plain_http_service("http-redirect", addr, redirect));
    }
    if let Some(addr) = listen.admin {
        let admin = Admin {
            snapshot: snapshot.clone(),
            metrics: metrics.clone(),
            assertion,
            audit: audit.clone(),
        };
        server.add_service(plain_http_service("admin", addr, admin));
    }
}

/// A plain-HTTP listener (the redirect and the admin listener).
fn plain_http_service<A: ServeHttp + Send + Sync + 'static>(
    name: &str,
    addr: SocketAddr,
    app: A,
) -> Service<HttpServer<A>> {
    let mut service = Service::new(name.into(), HttpServer::new_app(app));
    service.add_tcp(&addr.to_string());
    // Light traffic: one thread each, not one per core.
    service.threads = Some(1);
    service
}

/// Pingora panics the thread of a listener that cannot bind and keeps the
/// process running without it. Binding each address first turns that into a
/// clear error and a non-zero exit before anything starts.
fn check_listeners_free(policy: &gatehouse_policy::Policy) -> Result<()> {
    let listeners: [(&str, Option<SocketAddr>); 3] = [
        ("https", Some(policy.listen.https)),
        ("http_redirect", policy.listen.http_redirect),
        ("admin", policy.listen.admin),
    ];
    for (name, addr) in listeners {
        let Some(addr) = addr else { continue };
        if let Err(e) = TcpListener::bind(addr) {
            bail!("cannot listen on {addr} (listen.{name}): {e}");
        }
    }
    Ok(())
}

fn warn_about_risky_settings(policy: &gatehouse_policy::Policy) {
    for route in &policy.routes {
        if route.upstream.insecure_skip_verify {
            tracing::warn!(
                route = %route.name,
                "insecure_skip_verify is set: the upstream's certificate is not checked"
            );
        }
    }
    if policy.network.allow.is_empty() {
        tracing::info!("network.allow is empty: every client address not denied may connect");
    }
}

/// On SIGTERM Pingora stops accepting, closes idle keep-alive connections,
/// and then sleeps the whole grace period. This exits as soon as no request
/// is in flight and no client connection is open (or when the grace period
/// ends), after a short settle so connections still in their TLS handshake
/// reach the counters first.
fn spawn_drain_watcher(
    in_flight: Arc<InFlight>,
    open_connections: Arc<AtomicUsize>,
    grace: Duration,
    audit: Audit,
) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM])
        .context("listening for SIGTERM")?;
    std::thread::Builder::new()
        .name("drain-watcher".into())
        .spawn(move || {
            if signals.forever().next().is_none() {
                return;
            }
            let deadline = Instant::now() + grace;
            std::thread::sleep(DRAIN_SETTLE.min(grace));
            let busy = || in_flight.count() > 0 || open_connections.load(Ordering::Acquire) > 0;
            while busy() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            tracing::info!(
                unfinished_requests = in_flight.count(),
                open_connections = open_connections.load(Ordering::Acquire),
                "graceful shutdown complete"
            );
            audit.record(
                AuditEvent::new(EventKind::Shutdown, Outcome::Success)
                    .actor("gateway", "system")
                    .detail("unfinished_requests", in_flight.count()),
            );
            audit.close();
            crate::admin::logging::flush();
            #[allow(clippy::disallowed_methods)] // the one sanctioned exit: see clippy.toml
            std::process::exit(0);
        })
        .context("starting the drain watcher")?;
    Ok(())
}

/// Every two seconds: drop idle rate-limit keys and write the summary of
/// each engagement whose window has passed, summarise anonymous denials,
/// and forget logged-out sessions that have expired by now.
fn spawn_sweeper(
    snapshot: Arc<ArcSwap<Snapshot>>,
    identity: IdentityState,
    audit: Audit,
) -> Result<()> {
    std::thread::Builder::new()
        .name("sweeper".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(2));
            for ended in snapshot.load().rate_limits.sweep() {
                audit.record(crate::admin::audit::rate_limit_ended(&ended));
            }
            audit.summarise_anonymous_denials(false);
            identity
                .revocations
                .sweep(crate::identity::session::unix_now());
        })
        .context("starting the sweeper")?;
    Ok(())
}
