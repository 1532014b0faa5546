//! Assembles the Pingora server from a loaded snapshot: the TLS proxy, the
//! redirect and admin listeners, reload, and graceful shutdown.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use arc_swap::ArcSwap;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::assertion::AssertionSigner;
use crate::identity::JwksCache;
use crate::listeners::{Admin, ConnectionCap, RedirectToHttps};
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::reload::{ReloadService, Reloader};
use crate::request_id::RequestIds;
use crate::snapshot::Snapshot;
use crate::tls::{self, SniResolver};

/// Requests in flight, so SIGTERM can exit as soon as they are done instead
/// of always waiting the whole grace period.
#[derive(Default)]
pub struct InFlight(AtomicUsize);

impl InFlight {
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.clone())
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub fn run(policy_path: PathBuf, threads: Option<usize>, metrics: Arc<Metrics>) -> Result<()> {
    let jwks = Arc::new(JwksCache::new());
    let snapshot = Snapshot::load(&policy_path, jwks.clone()).map_err(|e| match e {
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
            policy.listen.public_origin.as_str(),
            policy.identities.assertion.lifetime,
        )
        .context("loading the assertion signing key")?,
    );
    let grace = policy.limits.shutdown_grace;
    let max_connections = policy.limits.max_connections;
    let listen = policy.listen.clone();

    metrics.set_cert_expiries(&snapshot.certs.not_after);
    let certs = Arc::new(ArcSwap::new(snapshot.certs.clone()));
    let snapshot = Arc::new(ArcSwap::from_pointee(snapshot));
    let in_flight = Arc::new(InFlight::default());

    let conf = ServerConf {
        threads: threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }),
        grace_period_seconds: Some(grace.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let conf = server.configuration.clone();

    // The TLS proxy.
    let gateway = Gateway {
        snapshot: snapshot.clone(),
        metrics: metrics.clone(),
        request_ids: RequestIds::new(),
        in_flight: in_flight.clone(),
        assertion: assertion.clone(),
        oidc: Arc::new(crate::login::OidcClients::new()),
    };
    let mut proxy = pingora::proxy::http_proxy(&conf, gateway);
    let mut options = HttpServerOptions::default();
    options.h2c = false;
    proxy.server_options = Some(options);
    let mut tls_settings = TlsSettings::with_callbacks(Box::new(tls::NoHandshakeCallbacks))
        .context("building TLS settings")?;
    tls_settings.set_cert_resolver(Arc::new(SniResolver::new(certs.clone())));
    tls_settings.enable_h2();
    let capped = ConnectionCap {
        inner: Arc::new(proxy),
        max: max_connections,
        open: AtomicUsize::new(0),
        metrics: metrics.clone(),
    };
    let mut https = Service::new("https".into(), capped);
    https.add_tls_with_settings(&listen.https.to_string(), None, tls_settings);
    server.add_service(https);

    if let Some(addr) = listen.http_redirect {
        let mut redirect = Service::new(
            "http-redirect".into(),
            pingora::apps::http_app::HttpServer::new_app(RedirectToHttps {
                snapshot: snapshot.clone(),
            }),
        );
        redirect.add_tcp(&addr.to_string());
        server.add_service(redirect);
    }
    if let Some(addr) = listen.admin {
        let mut admin = Service::new(
            "admin".into(),
            pingora::apps::http_app::HttpServer::new_app(Admin {
                snapshot: snapshot.clone(),
                metrics: metrics.clone(),
                assertion,
            }),
        );
        admin.add_tcp(&addr.to_string());
        server.add_service(admin);
    }

    let reloader = Arc::new(Reloader {
        policy_path,
        snapshot: snapshot.clone(),
        certs,
        metrics,
        jwks,
    });
    server.add_service(background_service(
        "reload",
        ReloadService::new(reloader).context("installing reload triggers")?,
    ));
    spawn_drain_watcher(in_flight, grace)?;

    server.bootstrap();
    tracing::info!(https = %listen.https, "gatehouse gateway started");
    server.run_forever()
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

/// On SIGTERM Pingora stops accepting and then sleeps the whole grace
/// period. This exits as soon as in-flight requests are done, or when the
/// grace period ends, whichever comes first.
fn spawn_drain_watcher(in_flight: Arc<InFlight>, grace: Duration) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM])
        .context("listening for SIGTERM")?;
    std::thread::Builder::new()
        .name("drain-watcher".into())
        .spawn(move || {
            if signals.forever().next().is_none() {
                return;
            }
            let deadline = Instant::now() + grace;
            // Give Pingora a moment to close its listeners first.
            std::thread::sleep(Duration::from_millis(100));
            while in_flight.count() > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            tracing::info!(unfinished = in_flight.count(), "graceful shutdown complete");
            #[allow(clippy::disallowed_methods)] // the one sanctioned exit: see clippy.toml
            std::process::exit(0);
        })
        .context("starting the drain watcher")?;
    Ok(())
}
