//! Who is calling: every API request must carry the gateway's signed
//! `X-Gatehouse-Assertion` (an EdDSA JWT), verified against the key the
//! gateway publishes. Without one the answer is 401, even from localhost:
//! being able to reach the port proves nothing.
//!
//! An assertion is accepted once, for the request it was signed for:
//! the audience must be a route that reaches this scheduler, the method
//! and path must be exactly this request's, and its `jti` must not have
//! been accepted before ([`replay`]). The gateway signs a new assertion for
//! every request it proxies, so a legitimate caller never repeats one.
//! The replay cache lives in memory, so an assertion issued before this
//! process started (beyond the clock leeway) is refused too: a restart
//! does not reopen replays of what the previous process accepted.
//!
//! The keys follow the gateway ([`jwks`]): refreshed periodically, and
//! fetched again at once (single-flight, rate-limited) when an assertion
//! names a key id the scheduler does not know, as after a gateway restart
//! with a newly generated key.
//!
//! A route with its own `assertion_key` in the policy both read gets
//! HS256 assertions instead: the header's `kid` names the route, only that
//! route's key verifies it, and its audience must be that route. EdDSA is
//! then accepted only for the scheduler's routes without a key, so an
//! assertion cannot pick the weaker check by choosing its algorithm.

mod jwks;
mod replay;

use gatehouse_policy::RoleName;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

pub use jwks::{
    fetch_keys, jwks_client, JwksError, JwksSource, MIN_REFETCH_INTERVAL, STALE_AFTER_REFRESHES,
};
pub use replay::{ReplayCache, ReplayError};

use jwks::KeyStatus;

pub const ASSERTION_HEADER: &str = "x-gatehouse-assertion";

/// Clock steps between the gateway's and the scheduler's containers.
const LEEWAY_SECS: u64 = 5;
/// Live assertions remembered for the replay check. About 150 bytes each
/// (15 MB at most); with the default 60 s lifetime that is over 1,500
/// requests a second, far beyond what the scheduler's API serves.
pub const REPLAY_CACHE_CAPACITY: usize = 100_000;
/// The gateway's `jti` is 22 characters; anything far longer is not ours.
const MAX_JTI_LEN: usize = 64;

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    pub email: Option<String>,
    pub roles: BTreeSet<RoleName>,
    /// How the gateway identified them: oidc, jwt, api_key or basic.
    pub auth: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no gateway assertion")]
    Missing,
    #[error("the gateway's keys are not loaded yet")]
    KeysUnavailable,
    #[error("the assertion is not valid")]
    Invalid,
    /// Signed with a key id the loaded set does not have (yet).
    #[error("the assertion names a key the scheduler does not know")]
    UnknownKey,
    #[error("the assertion was issued for another request")]
    WrongRequest,
    #[error("the assertion was already used (a replay)")]
    Replayed,
    /// Issued before this process started: the previous one may have
    /// accepted it, and its replay cache is gone.
    #[error("the assertion was issued before the scheduler started")]
    IssuedBeforeStart,
    /// Fail closed: the replay check cannot take another assertion now.
    #[error("too many live assertions to check this one for replay")]
    ReplayCacheFull,
}

impl AuthError {
    /// The `reason` label of `gatehouse_scheduler_api_denials_total`.
    pub fn metric_reason(self) -> &'static str {
        match self {
            AuthError::Replayed => "replayed",
            AuthError::ReplayCacheFull => "replay_cache_full",
            _ => "unauthenticated",
        }
    }
}

/// The assertion a request was accepted with: what another scheduler
/// sharing the database must not accept again (`Store::first_use`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub jti: String,
    /// Unix seconds after which it could not be accepted anyway.
    pub forget_after: u64,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    auth: String,
    method: String,
    path: String,
}

/// A route whose assertions are HS256 under its own key.
pub struct RouteKey {
    pub route: String,
    pub key: Vec<u8>,
}

struct KeyedRoute {
    route: String,
    key: DecodingKey,
    /// HS256 only, audience this route only.
    validation: Validation,
}

/// Checks assertions; the key set is refreshed in the background and on
/// an unknown key id.
pub struct Verifier {
    keys: RwLock<Option<Arc<JwkSet>>>,
    /// Bumped on every key set installed, so a request that waited for an
    /// on-demand fetch knows whether another one already brought new keys.
    generation: AtomicU64,
    status: Mutex<KeyStatus>,
    /// None in unit tests that install keys by hand.
    source: Option<JwksSource>,
    /// EdDSA, audiences the routes without a key of their own; `None` when
    /// every route has one.
    validation: Option<Validation>,
    issuer: String,
    audiences: Vec<String>,
    keyed: RwLock<Arc<Vec<KeyedRoute>>>,
    replays: ReplayCache,
    /// Unix seconds when this verifier (this process) started.
    started_at: u64,
}

impl Verifier {
    pub fn new(issuer: &str, audiences: &[String]) -> Verifier {
        Self::with_replay_capacity(issuer, audiences, REPLAY_CACHE_CAPACITY)
    }

    pub fn with_replay_capacity(issuer: &str, audiences: &[String], capacity: usize) -> Verifier {
        Verifier {
            keys: RwLock::new(None),
            generation: AtomicU64::new(0),
            status: Mutex::new(KeyStatus::default()),
            source: None,
            validation: Some(validation(Algorithm::EdDSA, issuer, audiences)),
            issuer: issuer.to_owned(),
            audiences: audiences.to_vec(),
            keyed: RwLock::new(Arc::new(Vec::new())),
            replays: ReplayCache::new(capacity),
            started_at: unix_now().unwrap_or(u64::MAX),
        }
    }

    /// Installs the HS256 keys of the scheduler's routes that have one (at
    /// start). A route keyed at start stays out of the EdDSA audiences for
    /// the life of the process: which routes are keyed is fixed at start,
    /// and a reload that changes it is refused (`server::spawn_reloader`).
    pub fn set_route_keys(&mut self, keys: Vec<RouteKey>) {
        let unkeyed: Vec<String> = self
            .audiences
            .iter()
            .filter(|a| !keys.iter().any(|k| &k.route == *a))
            .cloned()
            .collect();
        self.validation =
            (!unkeyed.is_empty()).then(|| validation(Algorithm::EdDSA, &self.issuer, &unkeyed));
        self.replace_route_keys(keys);
    }

    /// Replaces the keys of keyed routes (a reload); see
    /// [`set_route_keys`](Self::set_route_keys).
    pub fn replace_route_keys(&self, keys: Vec<RouteKey>) {
        let keyed = keys
            .into_iter()
            .filter(|k| self.audiences.contains(&k.route))
            .map(|k| KeyedRoute {
                validation: validation(
                    Algorithm::HS256,
                    &self.issuer,
                    std::slice::from_ref(&k.route),
                ),
                key: DecodingKey::from_secret(&k.key),
                route: k.route,
            })
            .collect();
        if let Ok(mut slot) = self.keyed.write() {
            *slot = Arc::new(keyed);
        }
    }

    /// Whether any route's assertions are EdDSA, so the gateway's JWKS is
    /// needed at all.
    pub fn uses_gateway_keys(&self) -> bool {
        self.validation.is_some()
    }

    /// Where [`keep_keys_fresh`] and the unknown-kid refetch get the keys.
    pub fn with_source(mut self, source: JwksSource) -> Verifier {
        self.source = Some(source);
        self
    }

    pub fn set_keys(&self, keys: JwkSet) {
        if let Ok(mut slot) = self.keys.write() {
            *slot = Some(Arc::new(keys));
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut status) = self.status.lock() {
            *status = KeyStatus {
                loaded_at: Some(Instant::now()),
                ..KeyStatus::default()
            };
        }
    }

    /// `Err(reason)` when the keys are missing or stale (see
    /// [`STALE_AFTER_REFRESHES`]); `/readyz` reports it.
    pub fn key_readiness(&self) -> Result<(), String> {
        if !self.uses_gateway_keys() {
            return Ok(());
        }
        let refresh = self
            .source
            .as_ref()
            .map_or(Duration::from_secs(300), |s| s.refresh);
        self.status
            .lock()
            .map_err(|_| "the key status is unavailable".to_owned())?
            .readiness(refresh, Instant::now())
    }

    /// [`Verifier::verify`], and when the assertion names a key id that is
    /// not loaded, one on-demand fetch of the gateway's keys (shared with
    /// concurrent requests, rate-limited) and a second try. Nothing of the
    /// assertion is used up by the first try: the replay check comes after
    /// the signature.
    pub async fn verify_or_refetch(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
    ) -> Result<(Caller, Accepted), AuthError> {
        let seen = self.generation.load(Ordering::Acquire);
        match self.accept(token, method, path) {
            Err(AuthError::UnknownKey | AuthError::KeysUnavailable)
                if self.refetch_after(seen).await =>
            {
                self.accept(token, method, path)
            }
            other => other,
        }
    }

    /// Fetches the keys unless another request did since generation
    /// `seen`, or one was fetched on demand less than
    /// [`MIN_REFETCH_INTERVAL`] ago. True when new keys may be there.
    async fn refetch_after(&self, seen: u64) -> bool {
        let Some(source) = &self.source else {
            return false;
        };
        // Waiting here is the single flight: whoever holds the lock is
        // fetching, and the others see its result below.
        let mut last = source.on_demand.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return true;
        }
        if last.is_some_and(|at| at.elapsed() < MIN_REFETCH_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        match fetch_keys(&source.client, &source.url).await {
            Ok(keys) => {
                tracing::info!(url = %source.url, "fetched the gateway's keys again for an unknown key id");
                self.set_keys(keys);
                true
            }
            Err(e) => {
                jwks::note_failure(&self.status, &source.url, &e);
                false
            }
        }
    }

    pub fn has_keys(&self) -> bool {
        self.keys.read().map(|k| k.is_some()).unwrap_or(false)
    }

    /// Verifies `token` for a request of `method` to `path` (the path as
    /// received, without the query). An assertion is bound to the request
    /// it was issued for, so one captured for a GET cannot start a run,
    /// and it is good for one request only.
    pub fn verify(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
    ) -> Result<Caller, AuthError> {
        self.accept(token, method, path).map(|(caller, _)| caller)
    }

    /// [`Verifier::verify`], saying which assertion was accepted.
    fn accept(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
    ) -> Result<(Caller, Accepted), AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let claims = self.decode(token)?;
        let asserted_path = claims.path.split('?').next().unwrap_or_default();
        // Exact: HTTP methods are case-sensitive, and `post` is not `POST`
        // to every framework.
        if claims.method != method || asserted_path != path {
            return Err(AuthError::WrongRequest);
        }
        let jti = claims
            .jti
            .as_deref()
            .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
            .ok_or(AuthError::Invalid)?;
        if claims.iat.saturating_add(LEEWAY_SECS) < self.started_at {
            return Err(AuthError::IssuedBeforeStart);
        }
        // Last, so only an assertion that is valid for this very request
        // uses up its jti.
        let now = unix_now().ok_or(AuthError::ReplayCacheFull)?;
        let forget_after = claims.exp.saturating_add(LEEWAY_SECS);
        self.replays
            .first_use(jti, forget_after, now)
            .map_err(|e| match e {
                ReplayError::Replayed => AuthError::Replayed,
                ReplayError::Full => AuthError::ReplayCacheFull,
            })?;
        let accepted = Accepted {
            jti: jti.to_owned(),
            forget_after,
        };
        let caller = Caller {
            subject: claims.sub,
            email: claims.email,
            roles: claims.roles.into_iter().map(RoleName::from).collect(),
            auth: claims.auth,
        };
        Ok((caller, accepted))
    }

    /// The signature, algorithm, issuer, audience and lifetime.
    fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let (key, validation);
        let keyed;
        match header.alg {
            Algorithm::HS256 => {
                keyed = self.keyed.read().map_err(|_| AuthError::Invalid)?.clone();
                // The kid names the route; a route without a key has none
                // to check against, so HS256 for it is simply invalid.
                let route = header
                    .kid
                    .as_deref()
                    .and_then(|kid| keyed.iter().find(|r| r.route == kid))
                    .ok_or(AuthError::Invalid)?;
                (key, validation) = (route.key.clone(), &route.validation);
            }
            Algorithm::EdDSA => {
                validation = self.validation.as_ref().ok_or(AuthError::Invalid)?;
                let keys = self
                    .keys
                    .read()
                    .ok()
                    .and_then(|k| k.clone())
                    .ok_or(AuthError::KeysUnavailable)?;
                let jwk = match &header.kid {
                    Some(kid) => keys.find(kid).ok_or(AuthError::UnknownKey)?,
                    None => keys.keys.first().ok_or(AuthError::Invalid)?,
                };
                key = DecodingKey::from_jwk(jwk).map_err(|_| AuthError::Invalid)?;
            }
            _ => return Err(AuthError::Invalid),
        }
        jsonwebtoken::decode::<Claims>(token, &key, validation)
            .map(|data| data.claims)
            .map_err(|_| AuthError::Invalid)
    }

    /// Assertions remembered for the replay check now.
    pub fn live_assertions(&self) -> usize {
        self.replays.len()
    }
}

fn validation(algorithm: Algorithm, issuer: &str, audiences: &[String]) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[issuer]);
    validation.set_audience(audiences);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = LEEWAY_SECS;
    validation
}

fn unix_now() -> Option<u64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Fetches the gateway's JWKS until it succeeds, then refreshes it every
/// refresh interval of the verifier's source, so a gateway key rotation
/// reaches the scheduler even when no request names the new key.
pub async fn keep_keys_fresh(verifier: Arc<Verifier>) {
    let Some(source) = verifier
        .source
        .as_ref()
        .filter(|_| verifier.uses_gateway_keys())
    else {
        return;
    };
    let mut delay = Duration::from_millis(200);
    loop {
        match fetch_keys(&source.client, &source.url).await {
            Ok(keys) => {
                let first = !verifier.has_keys();
                verifier.set_keys(keys);
                if first {
                    tracing::info!(url = %source.url, "loaded the gateway's assertion keys");
                }
                delay = Duration::from_millis(200);
                tokio::time::sleep(source.refresh).await;
            }
            Err(e) => {
                jwks::note_failure(&verifier.status, &source.url, &e);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10)).min(source.refresh);
            }
        }
    }
}

#[cfg(test)]
mod tests;
