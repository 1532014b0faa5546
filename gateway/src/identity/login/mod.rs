//! OpenID Connect login for browsers, at the gateway's reserved paths:
//!
//! - `GET /.gatehouse/login?rd=/path[&idp=name]`: a chooser page when several
//!   providers exist, else a redirect to the provider (authorization code
//!   flow with PKCE S256, `state` and `nonce` kept in a sealed, short-lived
//!   `__Host-gatehouse-flow` cookie).
//! - `GET /.gatehouse/callback`: checks `state`, exchanges the code, verifies
//!   the id_token (signature via the provider's JWKS, iss, aud, exp, nonce),
//!   applies `allowed_domains` / `allowed_emails`, maps claims to roles and
//!   sets the session cookie.
//! - `GET|POST /.gatehouse/logout`: clears the session and, when the
//!   provider supports it, continues to its end_session_endpoint with
//!   `id_token_hint`.
//!
//! Return paths are same-origin relative paths only: no open redirect.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use gatehouse_audit::{AuditEvent, EventKind, Outcome};
use gatehouse_policy::{OidcProvider, Policy, SessionSettings};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreIdTokenClaims, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreResponseMode,
    CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl, Scope,
};
use serde::{Deserialize, Serialize};

use crate::identity::claims::roles_from;
use crate::identity::session::{
    clear_cookie, cookie_value, new_session_id, set_cookie, unix_now, Sealer, SessionData,
    FLOW_COOKIE, MAX_SEALED_BYTES, SESSION_COOKIE,
};
use crate::identity::Authenticator;
use crate::shared_state::{Listed, SharedState};

mod completed;
mod refusal;
use completed::CompletedFlows;
pub use refusal::LoginRefusal;

pub const LOGIN_PATH: &str = "/.gatehouse/login";
pub const CALLBACK_PATH: &str = "/.gatehouse/callback";
pub const LOGOUT_PATH: &str = "/.gatehouse/logout";
const FLOW_LIFETIME: Duration = Duration::from_secs(600);
/// Provider metadata (and its JWKS) is refreshed this often, and at once
/// when an id_token is signed by a key we do not know yet.
const METADATA_MAX_AGE: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct LogoutMetadata {
    end_session_endpoint: Option<String>,
}
impl AdditionalProviderMetadata for LogoutMetadata {}

type Metadata = ProviderMetadata<
    LogoutMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type OidcClient = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// What the login endpoints answer.
pub enum LoginResponse {
    Redirect {
        location: String,
        cookies: Vec<String>,
        /// A login or logout to record in the audit log.
        event: Option<AuditEvent>,
    },
    Page {
        html: String,
    },
    /// A refusal with a stable reason (for logs and metrics), never a cause.
    Refused {
        reason: LoginRefusal,
        cookies: Vec<String>,
    },
}

/// Discovery documents by issuer, and the flows that completed a login,
/// shared across policy reloads.
pub struct OidcClients {
    http: reqwest::Client,
    discovered: RwLock<HashMap<String, (Arc<Metadata>, Instant)>>,
    /// Each flow's `state` completes one login (`completed.rs`).
    completed: CompletedFlows,
    shared: Option<Arc<SharedState>>,
}

#[derive(Serialize, Deserialize)]
struct Flow {
    idp: String,
    state: String,
    nonce: String,
    verifier: String,
    rd: String,
}

impl OidcClients {
    /// Fails rather than fall back to a default client, which would follow
    /// redirects.
    pub fn new(shared: Option<Arc<SharedState>>) -> Result<Self, reqwest::Error> {
        Ok(OidcClients {
            // Redirects are refused: a token endpoint that redirects could
            // leak the code exchange (openidconnect's own advice).
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                // Below the 5 s keep-alive of Node and Apache servers: a
                // pooled connection the provider closes just as the code
                // exchange is sent on it fails the login, and a POST is
                // not retried. Logins are rare; a new connection is cheap.
                .pool_idle_timeout(Duration::from_secs(4))
                .build()?,
            discovered: RwLock::new(HashMap::new()),
            completed: CompletedFlows::default(),
            shared,
        })
    }

    async fn metadata(&self, issuer: &str, force: bool) -> Option<Arc<Metadata>> {
        if !force {
            let cached = self.discovered.read().unwrap_or_else(|e| e.into_inner());
            if let Some((m, at)) = cached.get(issuer) {
                if at.elapsed() < METADATA_MAX_AGE {
                    return Some(m.clone());
                }
            }
        }
        let url = IssuerUrl::new(issuer.to_owned()).ok()?;
        match Metadata::discover_async(url, &self.http).await {
            Ok(m) => {
                let m = Arc::new(m);
                self.discovered
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(issuer.to_owned(), (m.clone(), Instant::now()));
                Some(m)
            }
            Err(e) => {
                tracing::warn!(issuer, error = %e, "OIDC discovery failed");
                let cached = self.discovered.read().unwrap_or_else(|e| e.into_inner());
                cached.get(issuer).map(|(m, _)| m.clone())
            }
        }
    }

    /// Handles a request to one of the login paths; `None` for other paths
    /// or when the policy has no sessions.
    pub async fn handle(
        &self,
        policy: &Policy,
        authenticator: &Authenticator,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
        headers: &http::HeaderMap,
    ) -> Option<LoginResponse> {
        let params: HashMap<String, String> = query
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let settings = policy.identities.session.as_ref()?;
        let sealer = authenticator.sealer()?;
        Some(match (method.as_str(), path) {
            ("GET", LOGIN_PATH) => self.login(policy, sealer, &params).await,
            ("GET", CALLBACK_PATH) => {
                self.callback(policy, sealer, settings, &params, headers)
                    .await
            }
            ("GET" | "POST", LOGOUT_PATH) => self.logout(policy, authenticator, headers).await,
            _ => return None,
        })
    }

    async fn login(
        &self,
        policy: &Policy,
        sealer: &Sealer,
        params: &HashMap<String, String>,
    ) -> LoginResponse {
        let rd = safe_return_path(params.get("rd").map(String::as_str));
        let providers = &policy.identities.oidc;
        let provider = match params.get("idp") {
            Some(name) => providers.iter().find(|p| &p.name == name),
            None if providers.len() == 1 => providers.first(),
            None => {
                return LoginResponse::Page {
                    html: chooser(providers, &rd),
                }
            }
        };
        let Some(provider) = provider else {
            return refused(LoginRefusal::UnknownProvider);
        };
        let Some(client) = self.client(policy, provider, false).await else {
            return refused(LoginRefusal::ProviderUnavailable);
        };
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in provider.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        let flow = Flow {
            idp: provider.name.clone(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            rd,
        };
        let sealed = serde_json::to_vec(&flow)
            .ok()
            .and_then(|f| sealer.seal(FLOW_COOKIE, &f));
        match sealed {
            Some(sealed) => LoginResponse::Redirect {
                location: url.to_string(),
                cookies: vec![set_cookie(FLOW_COOKIE, &sealed, FLOW_LIFETIME)],
                event: None,
            },
            None => refused(LoginRefusal::SealFailed),
        }
    }

    async fn client(
        &self,
        policy: &Policy,
        provider: &OidcProvider,
        force_discovery: bool,
    ) -> Option<OidcClient> {
        let metadata = self.metadata(&provider.issuer, force_discovery).await?;
        let redirect = RedirectUrl::new(format!(
            "{}{CALLBACK_PATH}",
            policy.listen.public_origin.as_str()
        ))
        .ok()?;
        let secret = String::from_utf8(provider.client_secret.expose().to_vec()).ok()?;
        Some(
            CoreClient::from_provider_metadata(
                (*metadata).clone(),
                ClientId::new(provider.client_id.clone()),
                Some(ClientSecret::new(secret)),
            )
            .set_redirect_uri(redirect),
        )
    }

    async fn callback(
        &self,
        policy: &Policy,
        sealer: &Sealer,
        settings: &SessionSettings,
        params: &HashMap<String, String>,
        headers: &http::HeaderMap,
    ) -> LoginResponse {
        match self
            .complete_login(policy, sealer, settings, params, headers)
            .await
        {
            Ok(response) => response,
            Err(reason) => LoginResponse::Refused {
                reason,
                cookies: vec![clear_cookie(FLOW_COOKIE)],
            },
        }
    }

    /// The callback's checks in order: our flow cookie, its state, the
    /// code, the provider, the verified ID token, the email rule; then the
    /// session cookie and the redirect back to where the login started.
    async fn complete_login(
        &self,
        policy: &Policy,
        sealer: &Sealer,
        settings: &SessionSettings,
        params: &HashMap<String, String>,
        headers: &http::HeaderMap,
    ) -> Result<LoginResponse, LoginRefusal> {
        let flow = cookie_value(headers, FLOW_COOKIE)
            .and_then(|v| sealer.open(FLOW_COOKIE, v))
            .and_then(|bytes| serde_json::from_slice::<Flow>(&bytes).ok())
            .ok_or(LoginRefusal::NoFlow)?;
        if params.get("state").map(String::as_bytes) != Some(flow.state.as_bytes()) {
            return Err(LoginRefusal::StateMismatch);
        }
        let code = params.get("code").ok_or(LoginRefusal::DeniedByProvider)?;
        let provider = policy
            .identities
            .oidc
            .iter()
            .find(|p| p.name == flow.idp)
            .ok_or(LoginRefusal::UnknownProvider)?;
        // Before the code goes to the provider: a replayed callback never
        // reaches it.
        self.first_completion(&flow.state).await?;
        let (claims, raw) = self
            .verified_id_token(policy, provider, &flow, code)
            .await?;
        let email = claims.email().map(|e| e.as_str().to_ascii_lowercase());
        if !email_allowed(provider, email.as_deref(), claims.email_verified()) {
            return Err(LoginRefusal::EmailNotAllowed);
        }
        let now = unix_now();
        let session = SessionData {
            sid: new_session_id().ok_or(LoginRefusal::SealFailed)?,
            sub: claims.subject().as_str().to_owned(),
            // Upstreams get an address only when the provider vouches for it.
            email: email.filter(|_| claims.email_verified() == Some(true)),
            roles: roles_from(&token_payload(&raw), &provider.claims)
                .into_iter()
                .map(|role| role.as_str().to_owned())
                .collect(),
            idp: provider.name.clone(),
            iat: now,
            seen: now,
            idt: Some(raw),
        };
        let event = AuditEvent::new(EventKind::LoginSuccess, Outcome::Success)
            .actor(
                format!("oidc:{}:{}", session.idp, session.sub).as_str(),
                "oidc",
            )
            .detail("provider", provider.name.as_str())
            .detail("roles", session.roles.clone());
        let sealed = seal_session(sealer, session).ok_or(LoginRefusal::SealFailed)?;
        Ok(LoginResponse::Redirect {
            location: flow.rd,
            cookies: vec![
                set_cookie(SESSION_COOKIE, &sealed, settings.lifetime),
                clear_cookie(FLOW_COOKIE),
            ],
            event: Some(event),
        })
    }

    /// Exchanges the code (with the flow's PKCE verifier) and verifies the
    /// ID token against the flow's nonce; on a failed signature check the
    /// provider is rediscovered once, since it may have rotated its keys.
    /// Returns the verified claims and the token as received.
    async fn verified_id_token(
        &self,
        policy: &Policy,
        provider: &OidcProvider,
        flow: &Flow,
        code: &str,
    ) -> Result<(CoreIdTokenClaims, String), LoginRefusal> {
        let client = self
            .client(policy, provider, false)
            .await
            .ok_or(LoginRefusal::ProviderUnavailable)?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| LoginRefusal::ProviderUnavailable)?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| {
                tracing::warn!(provider = %provider.name, error = %e, "OIDC code exchange failed");
                LoginRefusal::CodeRejected
            })?;
        let id_token = tokens
            .extra_fields()
            .id_token()
            .ok_or(LoginRefusal::NoIdToken)?;
        let nonce = Nonce::new(flow.nonce.clone());
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(claims) => claims.clone(),
            Err(_) => {
                let fresh = self
                    .client(policy, provider, true)
                    .await
                    .ok_or(LoginRefusal::IdTokenInvalid)?;
                let verifier = fresh.id_token_verifier();
                let claims = id_token.claims(&verifier, &nonce).map_err(|e| {
                    tracing::warn!(provider = %provider.name, error = %e, "OIDC ID token refused");
                    LoginRefusal::IdTokenInvalid
                })?;
                claims.clone()
            }
        };
        Ok((claims, id_token.to_string()))
    }

    async fn logout(
        &self,
        policy: &Policy,
        authenticator: &Authenticator,
        headers: &http::HeaderMap,
    ) -> LoginResponse {
        let cookies = vec![clear_cookie(SESSION_COOKIE)];
        // Revoked here, so a copy of the cookie stops working too; and on
        // every replica, when they share state.
        let session = authenticator.end_session(headers);
        if let (Some(session), Some(shared), Some(settings)) =
            (&session, &self.shared, policy.identities.session.as_ref())
        {
            let until_s = session.iat.saturating_add(settings.lifetime.as_secs());
            let entry = Listed::Session {
                sid: session.sid.clone(),
                until_ms: until_s.saturating_mul(1000),
            };
            Box::pin(shared.publish(entry)).await;
        }
        let after = format!("{}/", policy.listen.public_origin.as_str());
        let provider = session
            .as_ref()
            .and_then(|s| policy.identities.oidc.iter().find(|p| p.name == s.idp));
        let end_session = match (&session, provider) {
            (Some(session), Some(p)) => self
                .metadata(&p.issuer, false)
                .await
                .and_then(|m| m.additional_metadata().end_session_endpoint.clone())
                .and_then(|e| url::Url::parse(&e).ok())
                .map(|mut url| {
                    {
                        let mut q = url.query_pairs_mut();
                        if let Some(idt) = &session.idt {
                            q.append_pair("id_token_hint", idt);
                        }
                        q.append_pair("client_id", &p.client_id);
                        q.append_pair("post_logout_redirect_uri", &after);
                    }
                    url.to_string()
                }),
            _ => None,
        };
        let event = session.as_ref().map(|session| {
            AuditEvent::new(EventKind::Logout, Outcome::Success)
                .actor(
                    format!("oidc:{}:{}", session.idp, session.sub).as_str(),
                    "oidc",
                )
                .detail("provider", session.idp.as_str())
        });
        LoginResponse::Redirect {
            location: end_session.unwrap_or(after),
            cookies,
            event,
        }
    }
}

/// The claims of a (verified) ID token as JSON, for the role mapping,
/// which may name any claim, not only the standard ones.
fn token_payload(raw: &str) -> serde_json::Value {
    raw.split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .unwrap_or_default()
}

/// Seals a session cookie that browsers will keep: when the id_token makes
/// it too long, it is sealed without the token (logout then names the
/// client instead of passing `id_token_hint`).
fn seal_session(sealer: &Sealer, mut session: SessionData) -> Option<String> {
    let sealed = sealer.seal(SESSION_COOKIE, &serde_json::to_vec(&session).ok()?)?;
    if sealed.len() <= MAX_SEALED_BYTES {
        return Some(sealed);
    }
    session.idt = None;
    let sealed = sealer.seal(SESSION_COOKIE, &serde_json::to_vec(&session).ok()?)?;
    (sealed.len() <= MAX_SEALED_BYTES).then_some(sealed)
}

fn refused(reason: LoginRefusal) -> LoginResponse {
    LoginResponse::Refused {
        reason,
        cookies: Vec::new(),
    }
}

/// `allowed_emails` wins when set; otherwise `allowed_domains` when set;
/// either needs a verified email.
fn email_allowed(provider: &OidcProvider, email: Option<&str>, verified: Option<bool>) -> bool {
    if provider.allowed_emails.is_empty() && provider.allowed_domains.is_empty() {
        return true;
    }
    let Some(email) = email.filter(|_| verified == Some(true)) else {
        return false;
    };
    if !provider.allowed_emails.is_empty() {
        return provider.allowed_emails.contains(email);
    }
    email
        .rsplit_once('@')
        .is_some_and(|(_, domain)| provider.allowed_domains.contains(domain))
}

/// A same-origin relative path, or `/`. Rejects `//host`, `/\host`,
/// absolute URLs and control characters: no open redirect.
pub fn safe_return_path(rd: Option<&str>) -> String {
    match rd {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/\\")
                && p.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// A plain page listing the providers; no script, no inline style.
fn chooser(providers: &[OidcProvider], rd: &str) -> String {
    let rd: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
    let mut items = String::new();
    for p in providers {
        let name = html_escape(&p.name);
        items.push_str(&format!(
            "<li><a href=\"{LOGIN_PATH}?idp={name}&amp;rd={rd}\">Sign in with {name}</a></li>\n"
        ));
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in</title></head>\n<body><h1>Sign in</h1>\n<ul>\n{items}</ul></body></html>\n"
    )
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests;
