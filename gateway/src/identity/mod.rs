//! Who is calling. The only place a [`Principal`] is built, from exactly one
//! credential: an API key, a JWT bearer token, basic auth or the session
//! cookie of an OIDC login. A present but bad credential is an error, never
//! "anonymous".

mod api_key;
pub mod assertion;
mod basic;
pub mod claims;
pub mod jwt;
pub mod login;
pub mod password;
pub mod revocation;
pub mod session;

use gatehouse_policy::RoleName;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use gatehouse_policy::{IdentityKind, Policy};
use http::HeaderMap;

pub use api_key::{new_api_key, API_KEY_PREFIX};
pub use basic::hash_password;
pub use jwt::JwksCache;
pub use password::PasswordPool;
pub use revocation::SessionRevocations;

/// Identity state that outlives any one policy: fetched keys, the password
/// workers and the sessions logged out. Each reload builds a new
/// [`Authenticator`] around the same state.
#[derive(Clone)]
pub struct IdentityState {
    pub jwks: Arc<JwksCache>,
    pub passwords: Arc<PasswordPool>,
    pub revocations: Arc<SessionRevocations>,
}

impl IdentityState {
    pub fn new() -> std::io::Result<Self> {
        Ok(IdentityState {
            jwks: Arc::new(JwksCache::new()),
            passwords: PasswordPool::per_core()?,
            revocations: Arc::new(SessionRevocations::default()),
        })
    }
}

/// Counts a password check against the caller's login allowance as it
/// starts. `false` refuses the attempt (the address is locked out).
pub trait LoginAttempts: Send + Sync {
    fn start(&self) -> bool;
}

/// An authenticated caller. Only this module can build one, so holding a
/// `Principal` proves a credential was verified.
#[derive(Debug, Clone)]
// The private field keeps construction inside this module, which
// #[non_exhaustive] would not (it only binds other crates).
#[allow(clippy::manual_non_exhaustive)]
pub struct Principal {
    /// Namespaced by where the identity comes from: `oidc:<provider>:<sub>`,
    /// `jwt:<issuer>:<sub>`, `basic:<user>`, `api_key:<name>`. A token whose
    /// `sub` is `admin` is never the basic user `admin`.
    pub subject: String,
    /// Only an address the provider or token says is verified.
    pub email: Option<String>,
    pub roles: BTreeSet<RoleName>,
    pub kind: IdentityKind,
    /// The configured source: API key name, JWT issuer name or user name.
    pub source: String,
    /// A session whose cookie is due for a re-seal (its idle timeout
    /// slides with use), as it was opened: the refresh needs it whole, and
    /// carrying it spares opening the cookie a second time. `None` for
    /// every other principal, and for most session requests.
    session_due: Option<Box<session::SessionData>>,
    _verified: (),
}

impl Principal {
    fn new(
        subject: String,
        email: Option<String>,
        roles: BTreeSet<RoleName>,
        kind: IdentityKind,
        source: String,
    ) -> Self {
        Principal {
            subject,
            email,
            roles,
            kind,
            source,
            session_due: None,
            _verified: (),
        }
    }

    /// A principal for `explain`: what a caller with these roles, signed
    /// in as `kind`, could do. It authenticates nothing.
    pub fn hypothetical(roles: BTreeSet<RoleName>, kind: IdentityKind) -> Self {
        Principal::new("explain".into(), None, roles, kind, "explain".into())
    }
}

/// Why a presented credential was refused. Clients only ever see 401; the
/// reason goes to logs, metrics and (later) the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("credential is malformed")]
    Malformed,
    #[error("credential is not known")]
    Unknown,
    #[error("credential has expired")]
    Expired,
    #[error("credential is not valid yet")]
    NotYetValid,
    #[error("credential signature or claims are invalid")]
    Invalid,
    #[error("credential used from an address it is not allowed from")]
    AddressNotAllowed,
    #[error("wrong password")]
    WrongPassword,
    #[error("this kind of credential is not accepted here")]
    KindNotAccepted,
    #[error("signing keys are unavailable")]
    KeysUnavailable,
    #[error("the session was ended by logout")]
    Revoked,
    #[error("the address used up its login attempts")]
    AttemptRefused,
    #[error("too many password checks in flight")]
    Busy,
}

impl IdentityError {
    pub fn reason(self) -> &'static str {
        match self {
            IdentityError::Malformed => "credential-malformed",
            IdentityError::Unknown => "credential-unknown",
            IdentityError::Expired => "credential-expired",
            IdentityError::NotYetValid => "credential-not-yet-valid",
            IdentityError::Invalid => "credential-invalid",
            IdentityError::AddressNotAllowed => "credential-address-not-allowed",
            IdentityError::WrongPassword => "credential-wrong-password",
            IdentityError::KindNotAccepted => "credential-kind-not-accepted",
            IdentityError::KeysUnavailable => "credential-keys-unavailable",
            IdentityError::Revoked => "credential-revoked",
            IdentityError::AttemptRefused => "login-attempts-exhausted",
            IdentityError::Busy => "password-checks-busy",
        }
    }

    pub const ALL: [IdentityError; 12] = [
        IdentityError::Malformed,
        IdentityError::Unknown,
        IdentityError::Expired,
        IdentityError::NotYetValid,
        IdentityError::Invalid,
        IdentityError::AddressNotAllowed,
        IdentityError::WrongPassword,
        IdentityError::KindNotAccepted,
        IdentityError::KeysUnavailable,
        IdentityError::Revoked,
        IdentityError::AttemptRefused,
        IdentityError::Busy,
    ];
}

/// Longest credential we look at; anything longer is malformed, not parsed.
const MAX_CREDENTIAL_BYTES: usize = 8 * 1024;

/// A credential as presented, before verification. Its `Debug` never
/// shows the secret.
#[derive(PartialEq, Eq)]
pub enum Credential<'a> {
    ApiKey(&'a str),
    Bearer(&'a str),
    Basic {
        user: String,
        password: String,
    },
    /// The sealed `__Host-gatehouse` cookie of an OIDC login.
    Session(&'a str),
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { user, .. } => write!(f, "Basic({user:?}, ***)"),
            other => write!(f, "{}(***)", other.kind().as_str()),
        }
    }
}

impl Credential<'_> {
    pub fn kind(&self) -> IdentityKind {
        match self {
            Credential::ApiKey(_) => IdentityKind::ApiKey,
            Credential::Bearer(_) => IdentityKind::Jwt,
            Credential::Basic { .. } => IdentityKind::Basic,
            Credential::Session(_) => IdentityKind::Oidc,
        }
    }
}

/// Finds the one credential in a request: `X-API-Key`, or `Authorization`
/// as `Bearer gh_…` (API key), `Bearer …` (JWT) or `Basic …`, or else the
/// session cookie. Several headers at once are refused as malformed rather
/// than guessed at; an explicit header wins over the cookie.
pub fn credential(headers: &HeaderMap) -> Result<Option<Credential<'_>>, IdentityError> {
    let mut found = None;
    let mut authorizations = headers.get_all(http::header::AUTHORIZATION).iter();
    let mut api_keys = headers.get_all("x-api-key").iter();
    let (authorization, api_key) = (authorizations.next(), api_keys.next());
    if authorizations.next().is_some() || api_keys.next().is_some() {
        return Err(IdentityError::Malformed);
    }
    if let Some(value) = api_key {
        found = Some(Credential::ApiKey(text(value)?));
    }
    if let Some(value) = authorization {
        if found.is_some() {
            return Err(IdentityError::Malformed);
        }
        let value = text(value)?;
        let (scheme, rest) = value.split_once(' ').ok_or(IdentityError::Malformed)?;
        let rest = rest.trim();
        found = Some(if scheme.eq_ignore_ascii_case("bearer") {
            if rest.starts_with(API_KEY_PREFIX) {
                Credential::ApiKey(rest)
            } else {
                Credential::Bearer(rest)
            }
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| IdentityError::Malformed)?;
            let decoded = String::from_utf8(decoded).map_err(|_| IdentityError::Malformed)?;
            let (user, password) = decoded.split_once(':').ok_or(IdentityError::Malformed)?;
            Credential::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            }
        } else {
            return Err(IdentityError::Malformed);
        });
    }
    if found.is_none() {
        found = session::cookie_value(headers, session::SESSION_COOKIE).map(Credential::Session);
    }
    Ok(found)
}

fn text(value: &http::HeaderValue) -> Result<&str, IdentityError> {
    if value.len() > MAX_CREDENTIAL_BYTES {
        return Err(IdentityError::Malformed);
    }
    value.to_str().map_err(|_| IdentityError::Malformed)
}

/// Verifies credentials against one policy's identity sources. Built per
/// snapshot around the [`IdentityState`] that outlives it.
pub struct Authenticator {
    api_keys: api_key::ApiKeys,
    basic: basic::BasicUsers,
    jwt: jwt::JwtVerifier,
    sessions: Option<(session::Sealer, gatehouse_policy::SessionSettings)>,
    revocations: Arc<SessionRevocations>,
}

impl Authenticator {
    pub fn new(policy: &Policy, state: &IdentityState) -> Result<Self, jwt::KeyLoadError> {
        Ok(Authenticator {
            api_keys: api_key::ApiKeys::new(&policy.identities.api_keys),
            basic: basic::BasicUsers::new(
                &policy.identities.basic_users,
                state.passwords.clone(),
                &policy.rate_limits,
            ),
            jwt: jwt::JwtVerifier::new(&policy.identities.jwt, state.jwks.clone())?,
            sessions: policy
                .identities
                .session
                .as_ref()
                .map(|s| (session::Sealer::new(&s.keys), s.clone())),
            revocations: state.revocations.clone(),
        })
    }

    /// Logged-out sessions still remembered (for the metrics).
    pub fn revoked_sessions(&self) -> usize {
        self.revocations.len()
    }

    /// The sealer for session and login-flow cookies, when sessions exist.
    pub fn sealer(&self) -> Option<&session::Sealer> {
        self.sessions.as_ref().map(|(sealer, _)| sealer)
    }

    /// A fresh `Set-Cookie` when the caller's session should be re-sealed
    /// with a new last-seen time (sliding idle timeout).
    pub fn refreshed_session_cookie(&self, principal: &Principal) -> Option<String> {
        let (sealer, settings) = self.sessions.as_ref()?;
        let mut data = principal.session_due.as_deref()?.clone();
        let now = session::unix_now();
        if !data.is_current(settings, now) {
            return None;
        }
        data.seen = now;
        let resealed = sealer.seal(session::SESSION_COOKIE, &serde_json::to_vec(&data).ok()?)?;
        let remaining = settings
            .lifetime
            .saturating_sub(std::time::Duration::from_secs(now - data.iat.min(now)));
        Some(session::set_cookie(
            session::SESSION_COOKIE,
            &resealed,
            remaining,
        ))
    }

    /// Logout: the request's session, now revoked so that no copy of its
    /// cookie works again.
    pub fn end_session(&self, headers: &HeaderMap) -> Option<session::SessionData> {
        let (_, settings) = self.sessions.as_ref()?;
        let data = self.open_session(headers)?;
        let until = data.iat.saturating_add(settings.lifetime.as_secs());
        self.revocations
            .revoke(&data.sid, until, session::unix_now());
        Some(data)
    }

    fn open_session(&self, headers: &HeaderMap) -> Option<session::SessionData> {
        let (sealer, _) = self.sessions.as_ref()?;
        let sealed = session::cookie_value(headers, session::SESSION_COOKIE)?;
        serde_json::from_slice(&sealer.open(session::SESSION_COOKIE, sealed)?).ok()
    }

    fn verify_session(&self, sealed: &str) -> Result<Principal, IdentityError> {
        let (sealer, settings) = self.sessions.as_ref().ok_or(IdentityError::Unknown)?;
        let bytes = sealer
            .open(session::SESSION_COOKIE, sealed)
            .ok_or(IdentityError::Invalid)?;
        let data: session::SessionData =
            serde_json::from_slice(&bytes).map_err(|_| IdentityError::Malformed)?;
        if !data.is_current(settings, session::unix_now()) {
            return Err(IdentityError::Expired);
        }
        if self.revocations.is_revoked(&data.sid) {
            return Err(IdentityError::Revoked);
        }
        let subject = format!("oidc:{}:{}", data.idp, data.sub);
        if self.revocations.is_user_revoked(&subject, data.iat) {
            return Err(IdentityError::Revoked);
        }
        let session_due = data
            .needs_refresh(session::unix_now())
            .then(|| Box::new(data.clone()));
        let mut principal = Principal::new(
            subject,
            data.email,
            data.roles.into_iter().map(RoleName::from).collect(),
            IdentityKind::Oidc,
            data.idp,
        );
        principal.session_due = session_due;
        Ok(principal)
    }

    /// Verifies `credential` if `accept` allows its kind. Password checks
    /// count against the address's login allowance through `attempts`.
    pub async fn verify(
        &self,
        credential: Credential<'_>,
        client_ip: IpAddr,
        accept: &BTreeSet<IdentityKind>,
        attempts: &dyn LoginAttempts,
    ) -> Result<Principal, IdentityError> {
        if !accept.contains(&credential.kind()) {
            return Err(IdentityError::KindNotAccepted);
        }
        match credential {
            Credential::ApiKey(key) => self.api_keys.verify(key, client_ip),
            Credential::Bearer(token) => self.jwt.verify(token).await,
            Credential::Basic { user, password } => {
                self.basic
                    .verify(&user, &password, client_ip, attempts)
                    .await
            }
            Credential::Session(sealed) => self.verify_session(sealed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn credentials_are_recognised_by_scheme() {
        let key = format!("{API_KEY_PREFIX}abc");
        assert_eq!(
            credential(&headers(&[("authorization", &format!("Bearer {key}"))])).unwrap(),
            Some(Credential::ApiKey(&key))
        );
        assert_eq!(
            credential(&headers(&[("x-api-key", &key)])).unwrap(),
            Some(Credential::ApiKey(&key))
        );
        assert_eq!(
            credential(&headers(&[("authorization", "Bearer e.y.j")])).unwrap(),
            Some(Credential::Bearer("e.y.j"))
        );
        assert_eq!(
            credential(&headers(&[("authorization", "Basic YWxpY2U6czNjcmV0")])).unwrap(),
            Some(Credential::Basic {
                user: "alice".into(),
                password: "s3cret".into()
            })
        );
        assert_eq!(credential(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn credentials_never_print_their_secret() {
        let map = headers(&[("authorization", "Basic YWxpY2U6czNjcmV0")]);
        let basic = credential(&map).unwrap().unwrap();
        assert_eq!(format!("{basic:?}"), "Basic(\"alice\", ***)");
        let key = format!("{API_KEY_PREFIX}secret");
        let api_key = Credential::ApiKey(&key);
        assert!(!format!("{api_key:?}").contains("secret"));
    }

    #[test]
    fn ambiguous_or_odd_credentials_are_malformed() {
        for pairs in [
            &[("authorization", "Bearer a"), ("authorization", "Bearer b")][..],
            &[("authorization", "Bearer a"), ("x-api-key", "gh_x")][..],
            &[("authorization", "Digest abc")][..],
            &[("authorization", "Basic !!!")][..],
            &[("authorization", "Basic bm9jb2xvbg==")][..],
            &[("authorization", "Bearer")][..],
        ] {
            assert_eq!(
                credential(&headers(pairs)),
                Err(IdentityError::Malformed),
                "{pairs:?}"
            );
        }
        let huge = format!("Bearer {}", "a".repeat(MAX_CREDENTIAL_BYTES));
        assert_eq!(
            credential(&headers(&[("authorization", &huge)])),
            Err(IdentityError::Malformed)
        );
    }

    const SESSION_KEY: &str = "a-session-key-for-unit-tests-that-is-long-enough-0123456789";

    fn session_authenticator() -> Authenticator {
        let text = format!(
            "{head}\n[roles]\nviewer = [\"view\"]\n[session]\nkeys = [\"{SESSION_KEY}\"]\n\
             idle_timeout = \"10m\"\n\
             [[route]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\npublic = true\n",
            head = gatehouse_policy::testing::LISTEN_AND_TLS
        );
        let policy = gatehouse_policy::parse(std::path::Path::new("t.toml"), &text).unwrap();
        Authenticator::new(&policy, &IdentityState::new().unwrap()).unwrap()
    }

    fn sealed_session(authenticator: &Authenticator, seen: u64) -> String {
        let (sealer, _) = authenticator.sessions.as_ref().unwrap();
        let now = session::unix_now();
        let data = session::SessionData {
            sid: "session-1".into(),
            sub: "user-1".into(),
            email: None,
            roles: vec!["viewer".into()],
            idp: "corp".into(),
            iat: now - 300,
            seen,
            idt: None,
        };
        sealer
            .seal(session::SESSION_COOKIE, &serde_json::to_vec(&data).unwrap())
            .unwrap()
    }

    #[test]
    fn a_session_is_resealed_once_its_refresh_is_due_and_only_then() {
        let authenticator = session_authenticator();
        let now = session::unix_now();

        let fresh = authenticator
            .verify_session(&sealed_session(&authenticator, now))
            .unwrap();
        assert!(authenticator.refreshed_session_cookie(&fresh).is_none());

        let seen = now - session::REFRESH_AFTER.as_secs() - 5;
        let due = authenticator
            .verify_session(&sealed_session(&authenticator, seen))
            .unwrap();
        let cookie = authenticator
            .refreshed_session_cookie(&due)
            .expect("a session last seen past REFRESH_AFTER is re-sealed");
        let value = cookie
            .strip_prefix(&format!("{}=", session::SESSION_COOKIE))
            .and_then(|rest| rest.split(';').next())
            .unwrap();
        let (sealer, _) = authenticator.sessions.as_ref().unwrap();
        let opened: session::SessionData =
            serde_json::from_slice(&sealer.open(session::SESSION_COOKIE, value).unwrap()).unwrap();
        assert!(
            opened.seen >= now,
            "seen {} moved to now {now}",
            opened.seen
        );
        assert_eq!((opened.sid.as_str(), opened.iat), ("session-1", now - 300));
        assert!(cookie.contains("HttpOnly") && cookie.contains("Secure"));

        // Other principals never carry a session to re-seal.
        let other = Principal::hypothetical(["viewer".into()].into(), IdentityKind::ApiKey);
        assert!(authenticator.refreshed_session_cookie(&other).is_none());
    }
}
