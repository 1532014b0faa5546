//! Converting `[scheduler]` and `[[job]]`: every job is checked against
//! the scheduler's allowlists here, so a job that would loosen a hardened
//! default beyond what the operator allowed never reaches Docker.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use crate::convert::context::{listeners_overlap, Converter};
use crate::convert::identity::is_plain_name;
use crate::convert::job::{is_docker_name, MAX_JOB_NAME};
use crate::identity::Roles;
use crate::model::{Listen, Route};
use crate::raw::scheduler::*;
use crate::scheduler::*;
use toml::Spanned;

const DEFAULT_MAX_CONCURRENT_RUNS: usize = 4;
const DEFAULT_MAX_QUEUED_RUNS: usize = 100;
const DEFAULT_MAX_MEMORY: u64 = 2 * 1024 * 1024 * 1024;
const DEFAULT_MAX_CPUS: f64 = 2.0;
const DEFAULT_MAX_PIDS: i64 = 1024;
const DEFAULT_LOG_CAP: u64 = 1024 * 1024;
const MAX_LOG_CAP: u64 = 64 * 1024 * 1024;
const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_KEEP_RUNS: usize = 100;
const DEFAULT_KEEP_FOR: Duration = Duration::from_secs(30 * 86_400);
/// Often enough that a rotation arrives soon; an unknown key id triggers
/// a fetch at once anyway.
const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);
const MAX_JWKS_REFRESH: Duration = Duration::from_secs(86_400);

impl Converter<'_> {
    pub(crate) fn scheduler(
        &mut self,
        raw: &Option<Spanned<RawScheduler>>,
        listen: Option<&Listen>,
        routes: &[Route],
    ) -> Option<SchedulerSettings> {
        let spanned = raw.as_ref()?;
        let raw = spanned.get_ref();
        let (addr, admin) = self.scheduler_listeners(raw, listen);
        let gateway_jwks = self.gateway_jwks(spanned, listen);
        let gateway_jwks_refresh = self.gateway_jwks_refresh(raw);
        let gateway_jwks_ca = raw.gateway_jwks_ca.as_ref().map(|ca| {
            if gateway_jwks.as_ref().is_some_and(|u| u.scheme() != "https") {
                self.problems.add_hint(
                    Some(ca.span()),
                    "gateway_jwks_ca is only used for an https gateway_jwks",
                    "remove it, or make gateway_jwks an https:// URL",
                );
            }
            self.file_path(ca)
        });
        let gateway_routes = self.gateway_routes(spanned, addr, routes);
        let allowed_images = self.allowed_images(raw);
        let allowed_mounts = self.allowed_mounts(raw);
        let allowed_networks = self.allowed_networks(raw);
        let allowed_capabilities = raw
            .allowed_capabilities
            .iter()
            .filter_map(|c| self.capability(c))
            .collect();
        let max_cpus = self.max_cpus(raw);
        let log_cap = self.log_cap(raw);
        Some(SchedulerSettings {
            listen: addr?,
            admin,
            database: self.database(raw),
            executor: self.executor(raw),
            max_concurrent_runs: self.count(
                &raw.max_concurrent_runs,
                DEFAULT_MAX_CONCURRENT_RUNS,
                1,
                256,
            ),
            max_queued_runs: self.count(&raw.max_queued_runs, DEFAULT_MAX_QUEUED_RUNS, 0, 100_000),
            allowed_images,
            allowed_mounts,
            allowed_networks,
            allowed_capabilities,
            max_memory: self.size(&raw.max_memory, DEFAULT_MAX_MEMORY),
            max_cpus,
            max_pids: self.count(&raw.max_pids, DEFAULT_MAX_PIDS as usize, 1, 1 << 22) as i64,
            allow_writable_rootfs: raw
                .allow_writable_rootfs
                .as_ref()
                .is_some_and(|b| *b.get_ref()),
            max_tmp_size: self.size(&raw.max_tmp_size, crate::scheduler::DEFAULT_TMP_SIZE),
            max_shm_size: self.size(&raw.max_shm_size, crate::scheduler::DEFAULT_SHM_SIZE),
            secret_dirs: self.secret_dirs(&raw.secret_dirs),
            log_cap,
            stop_grace: self.duration(&raw.stop_grace, DEFAULT_STOP_GRACE),
            keep_runs: self.count(&raw.keep_runs, DEFAULT_KEEP_RUNS, 1, 1_000_000),
            keep_for: self.duration(&raw.keep_for, DEFAULT_KEEP_FOR),
            gateway_jwks: gateway_jwks?,
            gateway_jwks_refresh,
            gateway_jwks_ca,
            gateway_issuer: listen?.public_origin.as_str().to_owned(),
            gateway_routes,
            notify: self.notify_settings(&raw.notify),
        })
    }

    /// The scheduler's listen and admin addresses, neither of which may
    /// overlap a gateway listener.
    fn scheduler_listeners(
        &mut self,
        raw: &RawScheduler,
        listen: Option<&Listen>,
    ) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let addr = self.socket_addr(&raw.listen);
        let admin = raw.admin.as_ref().and_then(|a| self.socket_addr(a));
        if let (Some(addr), Some(listen)) = (addr, listen) {
            let gateway = [Some(listen.https), listen.http_redirect, listen.admin];
            for ours in [Some(addr), admin].into_iter().flatten() {
                if gateway
                    .iter()
                    .flatten()
                    .any(|g| listeners_overlap(*g, ours))
                {
                    self.problems.add_hint(
                        Some(raw.listen.span()),
                        format!("the scheduler's {ours} overlaps a gateway listener"),
                        "give the scheduler its own ports",
                    );
                }
            }
        }
        (addr, admin)
    }

    /// Where the gateway's public key is: `gateway_jwks`, or else the
    /// gateway's admin listener.
    fn gateway_jwks(
        &mut self,
        spanned: &Spanned<RawScheduler>,
        listen: Option<&Listen>,
    ) -> Option<url::Url> {
        match (
            &spanned.get_ref().gateway_jwks,
            listen.and_then(|l| l.admin),
        ) {
            (Some(url), _) => match url::Url::parse(url.get_ref()) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
                _ => {
                    self.problems.add_hint(
                        Some(url.span()),
                        "gateway_jwks is not an http(s) URL",
                        "for example \"http://127.0.0.1:9090/jwks.json\" (the gateway's admin listener)",
                    );
                    None
                }
            },
            (None, Some(admin)) => url::Url::parse(&format!("http://{admin}/jwks.json")).ok(),
            (None, None) => {
                self.problems.add_hint(
                    Some(spanned.span()),
                    "the scheduler cannot find the gateway's public key",
                    "set [listen] admin (it serves /jwks.json) or [scheduler] gateway_jwks",
                );
                None
            }
        }
    }

    /// How often the gateway's keys are fetched again: 1s to 1d.
    fn gateway_jwks_refresh(&mut self, raw: &RawScheduler) -> Duration {
        let refresh = self.duration(&raw.gateway_jwks_refresh, DEFAULT_JWKS_REFRESH);
        if refresh < Duration::from_secs(1) || refresh > MAX_JWKS_REFRESH {
            if let Some(r) = &raw.gateway_jwks_refresh {
                self.problems.add(
                    Some(r.span()),
                    "gateway_jwks_refresh must be between 1s and 1d",
                );
            }
        }
        refresh
    }

    fn allowed_mounts(&mut self, raw: &RawScheduler) -> Vec<AllowedMount> {
        raw.allowed_mounts
            .iter()
            .filter_map(|m| {
                let source = self.host_path(&m.get_ref().source)?;
                Some(AllowedMount {
                    source,
                    writable: m.get_ref().writable,
                })
            })
            .collect()
    }

    /// Bytes of output kept per run: at most 64MiB.
    fn log_cap(&mut self, raw: &RawScheduler) -> u64 {
        let log_cap = self.size(&raw.log_cap, DEFAULT_LOG_CAP);
        if log_cap > MAX_LOG_CAP {
            if let Some(r) = &raw.log_cap {
                self.problems
                    .add(Some(r.span()), "log_cap may be at most 64MiB");
            }
        }
        log_cap
    }

    fn allowed_images(&mut self, raw: &RawScheduler) -> Vec<ImagePattern> {
        raw.allowed_images
            .iter()
            .filter_map(|p| {
                let text = p.get_ref().trim();
                if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    self.problems.add(
                        Some(p.span()),
                        "an image pattern must be non-empty, without spaces",
                    );
                    None
                } else {
                    Some(ImagePattern(text.to_owned()))
                }
            })
            .collect()
    }

    /// User-defined Docker networks only: `host` and `container:` would
    /// share a namespace with something else.
    fn allowed_networks(&mut self, raw: &RawScheduler) -> Vec<String> {
        let mut allowed_networks = Vec::new();
        for n in &raw.allowed_networks {
            let name = n.get_ref();
            if name == "host" || name.starts_with("container:") || !is_docker_name(name) {
                self.problems.add_hint(
                    Some(n.span()),
                    format!("network `{name}` cannot be allowed"),
                    "name a user-defined Docker network; host and container: networks share a namespace with something else",
                );
            } else {
                allowed_networks.push(name.clone());
            }
        }
        allowed_networks
    }

    /// `database`: a SQLite file, or a `postgres://` URL (its password in
    /// `database_password[_file]`, never in the URL). The URL must say how
    /// it is reached: `sslmode=verify-full` (TLS, certificate and host name
    /// checked) or `sslmode=disable` (plaintext, the operator's stated
    /// choice). libpq's other modes (`prefer`, `require`, `verify-ca`)
    /// can be downgraded or accept any certificate, so they are refused.
    fn database(&mut self, raw: &RawScheduler) -> Database {
        let text = raw.database.get_ref();
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            if raw.database_password.is_some() || raw.database_password_file.is_some() {
                self.problems.add(
                    Some(raw.database.span()),
                    "database_password is only for a postgres:// database",
                );
            }
            if let Some(ca) = &raw.database_ca {
                self.problems.add(
                    Some(ca.span()),
                    "database_ca is only for a postgres:// database",
                );
            }
            return Database::Sqlite(self.file_path(&raw.database));
        }
        let (url, tls) = match url::Url::parse(text) {
            Ok(url) if url.host().is_some() => {
                if url.password().is_some() {
                    self.problems.add_hint(
                        Some(raw.database.span()),
                        "the database URL holds a password",
                        "use `database_password_file` (or `database_password = \"${PGPASSWORD}\"`), so the policy file holds no secret",
                    );
                }
                self.postgres_tls(raw, url)
            }
            _ => {
                self.problems.add_hint(
                    Some(raw.database.span()),
                    "`database` is not a PostgreSQL URL",
                    "postgres://user@host:port/dbname?sslmode=verify-full",
                );
                (text.clone(), PostgresTls::Disabled)
            }
        };
        let password = (raw.database_password.is_some() || raw.database_password_file.is_some())
            .then(|| {
                self.secret(
                    "database_password",
                    &raw.database_password,
                    &raw.database_password_file,
                    1,
                    raw.database.span(),
                )
            })
            .flatten();
        Database::Postgres { url, password, tls }
    }

    /// The URL's `sslmode` (taken out of the URL) and `database_ca`.
    fn postgres_tls(&mut self, raw: &RawScheduler, mut url: url::Url) -> (String, PostgresTls) {
        let mode = url
            .query_pairs()
            .find(|(k, _)| k == "sslmode")
            .map(|(_, v)| v.into_owned());
        let rest: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "sslmode")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.set_query(None);
        if !rest.is_empty() {
            url.query_pairs_mut().extend_pairs(rest);
        }
        let ca = raw.database_ca.as_ref().map(|ca| self.file_path(ca));
        let tls = match mode.as_deref() {
            Some("verify-full") => PostgresTls::VerifyFull { ca },
            Some("disable") => {
                if let Some(ca) = &raw.database_ca {
                    self.problems.add(
                        Some(ca.span()),
                        "database_ca is only used with sslmode=verify-full",
                    );
                }
                PostgresTls::Disabled
            }
            other => {
                let said = other.map_or_else(
                    || "the database URL does not say how to reach PostgreSQL".to_owned(),
                    |mode| format!("sslmode={mode} can be downgraded or accepts any certificate"),
                );
                self.problems.add_hint(
                    Some(raw.database.span()),
                    said,
                    "add `?sslmode=verify-full` (TLS; `database_ca` for a private CA), or `?sslmode=disable` over a trusted network (loopback, a private link)",
                );
                PostgresTls::Disabled
            }
        };
        (url.to_string(), tls)
    }

    /// `executor`: `docker` (the default) or `swarm`; the Swarm's
    /// no-new-privileges promise only with `swarm`.
    fn executor(&mut self, raw: &RawScheduler) -> Executor {
        let promise = raw.swarm_nodes_enforce_no_new_privileges.as_ref();
        let executor = match raw.executor.as_ref().map(|e| (e, e.get_ref().as_str())) {
            None | Some((_, "docker")) => Executor::Docker,
            Some((_, "swarm")) => Executor::Swarm {
                nodes_enforce_no_new_privileges: promise.is_some_and(|p| *p.get_ref()),
            },
            Some((e, other)) => {
                self.problems.add_hint(
                    Some(e.span()),
                    format!("unknown executor `{other}`"),
                    "use \"docker\" (the default) or \"swarm\"",
                );
                Executor::Docker
            }
        };
        if let (Executor::Docker, Some(p)) = (executor, promise) {
            self.problems.add_hint(
                Some(p.span()),
                "swarm_nodes_enforce_no_new_privileges is only for executor = \"swarm\"",
                "remove it, or set executor = \"swarm\"",
            );
        }
        executor
    }

    fn max_cpus(&mut self, raw: &RawScheduler) -> f64 {
        match &raw.max_cpus {
            None => DEFAULT_MAX_CPUS,
            Some(c) if *c.get_ref() > 0.0 && *c.get_ref() <= 1024.0 => *c.get_ref(),
            Some(c) => {
                self.problems
                    .add(Some(c.span()), "max_cpus must be between 0 and 1024");
                DEFAULT_MAX_CPUS
            }
        }
    }

    /// The routes whose assertions the scheduler accepts: those named, or
    /// else every route whose upstream host and port reach the scheduler's
    /// listen address ([`upstream_reaches`]); the port alone would accept
    /// assertions signed for another host's service on the same port.
    fn gateway_routes(
        &mut self,
        raw: &Spanned<RawScheduler>,
        addr: Option<std::net::SocketAddr>,
        routes: &[Route],
    ) -> Vec<String> {
        let named = &raw.get_ref().gateway_routes;
        if !named.is_empty() {
            let mut out = Vec::new();
            for n in named {
                if routes.iter().any(|r| &r.name == n.get_ref()) {
                    out.push(n.get_ref().clone());
                } else {
                    self.problems.add_hint(
                        Some(n.span()),
                        format!("no [[route]] is named `{}`", n.get_ref()),
                        "gateway_routes names the routes that proxy to the scheduler",
                    );
                }
            }
            return out;
        }
        let Some(addr) = addr else { return Vec::new() };
        let found: Vec<String> = routes
            .iter()
            .filter(|r| upstream_reaches(&r.upstream.host, r.upstream.port, addr))
            .map(|r| r.name.clone())
            .collect();
        if found.is_empty() {
            self.problems.add_hint(
                Some(raw.span()),
                format!("no [[route]] proxies to the scheduler at {addr}"),
                "add a route whose upstream is the listen address (a loopback address or localhost when it is 0.0.0.0 or ::); for a host name such as \"http://scheduler:PORT\", name the route in gateway_routes",
            );
        }
        found
    }

    pub(crate) fn jobs(
        &mut self,
        raw: &[Spanned<RawJob>],
        scheduler: Option<&SchedulerSettings>,
        roles: &Roles,
    ) -> Vec<Job> {
        if raw.is_empty() {
            return Vec::new();
        }
        let Some(scheduler) = scheduler else {
            self.problems.add_hint(
                Some(raw[0].span()),
                "jobs need a [scheduler] section",
                "add [scheduler] with listen, database and allowed_images",
            );
            return Vec::new();
        };
        let mut names = HashSet::new();
        let mut jobs = Vec::new();
        for spanned in raw {
            let r = spanned.get_ref();
            let name = r.name.get_ref();
            if !is_plain_name(name) || name.len() > MAX_JOB_NAME {
                self.problems.add_hint(
                    Some(r.name.span()),
                    format!("job name `{name}` is not allowed"),
                    "use up to 48 lower-case letters, digits, '-' and '_'",
                );
            } else if !names.insert(name.clone()) {
                self.problems.add(
                    Some(r.name.span()),
                    format!("job `{name}` is declared twice"),
                );
            }
            if let Some(job) = self.job(r, scheduler, roles) {
                jobs.push(job);
            }
        }
        jobs
    }

    fn count(
        &mut self,
        raw: &Option<Spanned<i64>>,
        default: usize,
        min: usize,
        max: usize,
    ) -> usize {
        let Some(n) = raw else { return default };
        match usize::try_from(*n.get_ref()) {
            Ok(v) if (min..=max).contains(&v) => v,
            _ => {
                self.problems
                    .add(Some(n.span()), format!("must be between {min} and {max}"));
                default
            }
        }
    }
}
