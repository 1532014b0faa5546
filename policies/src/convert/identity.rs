//! Converting `[roles]`, the identity sources and route access rules.
//! Every role a rule names must exist; a route is public or says what it
//! requires; secrets are resolved and checked for strength here.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use crate::convert::context::Converter;
use crate::identity::*;
use crate::raw::*;
use crate::secret::{Secret, SecretSource};

const MIN_KEY_BYTES: usize = 32;
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(60);
const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(30);
const MAX_JWT_LEEWAY: Duration = Duration::from_secs(300);
const DEFAULT_JWKS_REFETCH_COOLDOWN: Duration = Duration::from_secs(30);
pub(crate) const HTTP_METHODS: [&str; 7] =
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

pub(crate) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Converter<'_> {
    pub(crate) fn roles(&mut self, raw: &BTreeMap<Spanned<String>, Vec<Spanned<String>>>) -> Roles {
        let mut roles = Roles::default();
        for (name, permissions) in raw {
            if !is_plain_name(name.get_ref()) {
                self.problems.add_hint(
                    Some(name.span()),
                    format!("role name `{}` is not allowed", name.get_ref()),
                    "use lower-case letters, digits, '-' and '_'",
                );
            }
            let mut set = BTreeSet::new();
            for p in permissions {
                let text = p.get_ref();
                if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic()) {
                    self.problems.add(
                        Some(p.span()),
                        format!("permission `{text}` is not allowed"),
                    );
                }
                set.insert(Permission::new(text.as_str()));
            }
            roles.0.insert(RoleName::new(name.get_ref().as_str()), set);
        }
        roles
    }

    /// Role names that must exist in `roles`.
    pub(crate) fn role_refs(
        &mut self,
        roles: &Roles,
        raw: &[Spanned<String>],
    ) -> BTreeSet<RoleName> {
        let mut out = BTreeSet::new();
        for r in raw {
            if roles.0.contains_key(r.get_ref().as_str()) {
                out.insert(RoleName::new(r.get_ref().as_str()));
            } else {
                self.problems.add_hint(
                    Some(r.span()),
                    format!("unknown role `{}`", r.get_ref()),
                    "declare it under [roles]",
                );
            }
        }
        out
    }

    pub(super) fn secret(
        &mut self,
        key: &str,
        value: &Option<Spanned<String>>,
        file: &Option<Spanned<String>>,
        min_bytes: usize,
        anchor: std::ops::Range<usize>,
    ) -> Option<Secret> {
        let file_path = file.as_ref().map(|f| self.file_path(f));
        let span = value
            .as_ref()
            .map(|v| v.span())
            .or(file.as_ref().map(|f| f.span()))
            .unwrap_or(anchor);
        let source = match SecretSource::from_keys(
            key,
            value.as_ref().map(|v| v.get_ref().as_str()),
            file_path.as_deref(),
        ) {
            Ok(Some(source)) => source,
            Ok(None) => {
                self.problems.add_hint(
                    Some(span),
                    format!("`{key}` is required"),
                    format!(
                        "set `{key} = \"${{ENV_VAR}}\"` or `{key}_file = \"/run/secrets/...\"`"
                    ),
                );
                return None;
            }
            Err(e) => {
                self.problems.add(Some(span), e.to_string());
                return None;
            }
        };
        match source.resolve(|var| (self.env)(var)) {
            Ok(secret) if secret.len() >= min_bytes => Some(secret),
            Ok(secret) => {
                self.problems.add_hint(
                    Some(span),
                    format!(
                        "`{key}` is {} bytes; at least {min_bytes} are required",
                        secret.len()
                    ),
                    "generate one with: head -c 32 /dev/urandom | base64",
                );
                None
            }
            Err(e) => {
                self.problems.add(Some(span), format!("`{key}`: {e}"));
                None
            }
        }
    }

    pub(crate) fn identities(&mut self, raw: &RawPolicy, roles: &Roles) -> Identities {
        let session = raw.session.as_ref().map(|s| self.session(s));
        // OIDC providers and JWT issuers share one namespace.
        let mut names = BTreeSet::new();
        let oidc: Vec<OidcProvider> = raw
            .oidc
            .iter()
            .filter_map(|p| self.oidc_provider(p, &mut names, roles))
            .collect();
        if !oidc.is_empty() && session.is_none() {
            self.problems.add_hint(
                raw.oidc.first().map(|p| p.span()),
                "OIDC login needs [session] keys to seal its cookie",
                "add [session] with keys = [\"${GATEHOUSE_SESSION_KEY}\"]",
            );
        }
        let jwt = raw
            .jwt
            .iter()
            .filter_map(|j| self.jwt_issuer(j, &mut names, roles))
            .collect();
        let mut key_names = BTreeSet::new();
        let api_keys = raw
            .api_keys
            .iter()
            .map(|k| self.api_key(k, &mut key_names, roles))
            .collect();
        let mut user_names = BTreeSet::new();
        let basic_users = raw
            .basic_users
            .iter()
            .filter_map(|u| self.basic_user(u, &mut user_names, roles))
            .collect();

        if let (None, Some(first)) = (
            &raw.assertion.key_file,
            raw.assertion.publish_key_files.first(),
        ) {
            self.problems.add_hint(
                Some(first.span()),
                "publish_key_files needs key_file",
                "without key_file the signing key is generated at each start, so no \
                 other key can be rotated to or from it; set key_file",
            );
        }
        Identities {
            session,
            oidc,
            jwt,
            api_keys,
            basic_users,
            assertion: AssertionSettings {
                key_file: raw.assertion.key_file.as_ref().map(|f| self.file_path(f)),
                publish_key_files: raw
                    .assertion
                    .publish_key_files
                    .iter()
                    .map(|f| self.file_path(f))
                    .collect(),
                lifetime: self.duration(&raw.assertion.lifetime, DEFAULT_ASSERTION_LIFETIME),
            },
        }
    }

    /// `[session]`: the keys that seal cookies, and their lifetimes.
    fn session(&mut self, s: &Spanned<RawSession>) -> SessionSettings {
        let span = s.span();
        let s = s.get_ref();
        let mut keys = Vec::new();
        for value in &s.keys {
            keys.extend(self.secret(
                "keys",
                &Some(value.clone()),
                &None,
                MIN_KEY_BYTES,
                span.clone(),
            ));
        }
        for file in &s.keys_file {
            keys.extend(self.secret(
                "keys",
                &None,
                &Some(file.clone()),
                MIN_KEY_BYTES,
                span.clone(),
            ));
        }
        if s.keys.is_empty() && s.keys_file.is_empty() {
            self.problems.add_hint(
                Some(span.clone()),
                "[session] needs at least one key",
                "keys = [\"${GATEHOUSE_SESSION_KEY}\"] with 32 or more random bytes",
            );
        }
        SessionSettings {
            keys,
            idle_timeout: self.duration(&s.idle_timeout, DEFAULT_IDLE_TIMEOUT),
            lifetime: self.duration(&s.lifetime, DEFAULT_SESSION_LIFETIME),
        }
    }

    /// One `[[oidc]]` provider; `None` when it cannot be used at all.
    fn oidc_provider(
        &mut self,
        p: &Spanned<RawOidc>,
        names: &mut BTreeSet<String>,
        roles: &Roles,
    ) -> Option<OidcProvider> {
        let span = p.span();
        let p = p.get_ref();
        self.unique_name(names, &p.name, "identity source");
        let issuer = self.issuer_url(&p.issuer)?;
        let client_secret = self.secret(
            "client_secret",
            &p.client_secret,
            &p.client_secret_file,
            1,
            span.clone(),
        )?;
        let mut scopes: Vec<String> = p.scopes.iter().map(|s| s.get_ref().clone()).collect();
        if scopes.is_empty() {
            scopes = vec!["openid".into(), "email".into(), "profile".into()];
        }
        if !scopes.iter().any(|s| s == "openid") {
            self.problems
                .add(Some(span.clone()), "OIDC scopes must include `openid`");
        }
        Some(OidcProvider {
            name: p.name.get_ref().clone(),
            issuer,
            client_id: p.client_id.get_ref().clone(),
            client_secret,
            scopes,
            allowed_domains: p
                .allowed_domains
                .iter()
                .map(|d| d.get_ref().to_ascii_lowercase())
                .collect(),
            allowed_emails: p
                .allowed_emails
                .iter()
                .map(|e| e.get_ref().to_ascii_lowercase())
                .collect(),
            claims: self.claim_mapping(&p.claims, roles),
        })
    }

    /// One `[[jwt]]` issuer; `None` when it cannot be used at all.
    fn jwt_issuer(
        &mut self,
        j: &Spanned<RawJwt>,
        names: &mut BTreeSet<String>,
        roles: &Roles,
    ) -> Option<JwtIssuer> {
        let span = j.span();
        let j = j.get_ref();
        self.unique_name(names, &j.name, "identity source");
        let algorithms = self.jwt_algorithms(j, &span);
        let symmetric = algorithms.iter().any(|a| a.is_symmetric());
        let keys = self.jwt_keys(j, &span, symmetric)?;
        let leeway = self.duration(&j.leeway, DEFAULT_JWT_LEEWAY);
        if leeway > MAX_JWT_LEEWAY {
            self.problems
                .add(j.leeway.as_ref().map(|l| l.span()), "leeway is at most 5m");
        }
        if j.audience.is_empty() {
            self.problems.add(
                Some(span.clone()),
                "a JWT issuer needs at least one audience",
            );
        }
        Some(JwtIssuer {
            name: j.name.get_ref().clone(),
            issuer: j.issuer.get_ref().clone(),
            audiences: j.audience.iter().map(|a| a.get_ref().clone()).collect(),
            algorithms,
            keys,
            leeway,
            claims: self.claim_mapping(&j.claims, roles),
        })
    }

    /// A JWT issuer's `algorithms`: each one known, and no HMAC mixed with
    /// public-key algorithms.
    fn jwt_algorithms(&mut self, j: &RawJwt, span: &Range<usize>) -> BTreeSet<JwtAlgorithm> {
        let mut algorithms = BTreeSet::new();
        for a in &j.algorithms {
            match JwtAlgorithm::parse(a.get_ref()) {
                Some(alg) => {
                    algorithms.insert(alg);
                }
                None => self.problems.add_hint(
                    Some(a.span()),
                    format!("unsupported JWT algorithm `{}`", a.get_ref()),
                    "use RS256, RS384, RS512, PS256, ES256, ES384, EdDSA or HS256; `none` is never accepted",
                ),
            }
        }
        if algorithms.is_empty() {
            self.problems.add(
                Some(span.clone()),
                "a JWT issuer needs at least one algorithm",
            );
        }
        if algorithms.iter().any(|a| a.is_symmetric()) && algorithms.len() > 1 {
            // One issuer, one kind of key: no RS256 -> HS256 confusion.
            self.problems.add_hint(
                Some(span.clone()),
                "HS256 cannot be combined with public-key algorithms in one issuer",
                "declare a separate [[jwt]] for the HMAC-signed tokens",
            );
        }
        algorithms
    }

    /// Where a JWT issuer's keys come from: exactly one source, of the
    /// algorithms' kind.
    fn jwt_keys(&mut self, j: &RawJwt, span: &Range<usize>, symmetric: bool) -> Option<JwtKeys> {
        let sources = usize::from(j.jwks_url.is_some())
            + usize::from(!j.public_keys.is_empty())
            + usize::from(j.hs256_secret.is_some() || j.hs256_secret_file.is_some());
        if sources != 1 {
            self.problems.add_hint(
                Some(span.clone()),
                "a JWT issuer needs exactly one of jwks_url, public_keys or hs256_secret",
                "keys and algorithms must be of the same kind",
            );
            return None;
        }
        if let Some(url) = &j.jwks_url {
            if symmetric {
                self.problems
                    .add(Some(url.span()), "jwks_url cannot serve HS256 keys");
            }
            self.issuer_url(url).map(|url| JwtKeys::Jwks {
                url,
                refetch_cooldown: self
                    .duration(&j.jwks_refetch_cooldown, DEFAULT_JWKS_REFETCH_COOLDOWN),
            })
        } else if !j.public_keys.is_empty() {
            if symmetric {
                self.problems
                    .add(Some(span.clone()), "public_keys cannot verify HS256");
            }
            Some(JwtKeys::Static {
                files: j.public_keys.iter().map(|f| self.file_path(f)).collect(),
            })
        } else {
            if !symmetric {
                self.problems.add(
                    Some(span.clone()),
                    "hs256_secret needs algorithms = [\"HS256\"]",
                );
            }
            self.secret(
                "hs256_secret",
                &j.hs256_secret,
                &j.hs256_secret_file,
                MIN_KEY_BYTES,
                span.clone(),
            )
            .map(|secret| JwtKeys::Hs256 { secret })
        }
    }

    /// One `[[api_key]]`.
    fn api_key(
        &mut self,
        k: &Spanned<RawApiKey>,
        key_names: &mut BTreeSet<String>,
        roles: &Roles,
    ) -> ApiKey {
        let k = k.get_ref();
        self.unique_name(key_names, &k.name, "api_key");
        let mut sha256 = [0u8; 32];
        if hex::decode_to_slice(k.sha256.get_ref(), &mut sha256).is_err() {
            self.problems.add_hint(
                Some(k.sha256.span()),
                "sha256 must be 64 hex characters",
                "`gatehouse-gateway api-key new --name NAME` prints the line to paste",
            );
        }
        let expires =
            k.expires
                .as_ref()
                .and_then(|e| match humantime::parse_rfc3339(e.get_ref()) {
                    Ok(t) => Some(t),
                    Err(_) => {
                        self.problems.add_hint(
                            Some(e.span()),
                            "expires must be an RFC 3339 time",
                            "for example \"2027-01-01T00:00:00Z\"",
                        );
                        None
                    }
                });
        ApiKey {
            name: k.name.get_ref().clone(),
            sha256,
            roles: self.role_refs(roles, &k.roles),
            allow: self.cidrs(&k.allow),
            expires,
        }
    }

    /// One `[[basic_user]]`; `None` when its hash cannot be read.
    fn basic_user(
        &mut self,
        u: &Spanned<RawBasicUser>,
        user_names: &mut BTreeSet<String>,
        roles: &Roles,
    ) -> Option<BasicUser> {
        let user_span = u.span();
        let u = u.get_ref();
        self.unique_name(user_names, &u.name, "basic_user");
        if u.name.get_ref().contains(':') {
            self.problems.add(
                Some(u.name.span()),
                "a basic-auth user name cannot contain ':'",
            );
        }
        let hash_span = u
            .password_hash
            .as_ref()
            .or(u.password_hash_file.as_ref())
            .map(|h| h.span())
            .unwrap_or(user_span.clone());
        let hash = self.secret(
            "password_hash",
            &u.password_hash,
            &u.password_hash_file,
            1,
            user_span,
        )?;
        // A hash is ASCII; anything else cannot be one, and must not be
        // echoed back in a diagnostic either.
        let hash = String::from_utf8(hash.expose().to_vec()).unwrap_or_default();
        if !password_hash_is_strong(&hash) {
            self.problems.add_hint(
                Some(hash_span),
                "password_hash must be argon2id or bcrypt with cost 12 or more",
                "`gatehouse-gateway hash-password` makes one",
            );
        }
        Some(BasicUser {
            name: u.name.get_ref().clone(),
            password_hash: hash,
            roles: self.role_refs(roles, &u.roles),
        })
    }

    fn unique_name(&mut self, seen: &mut BTreeSet<String>, name: &Spanned<String>, what: &str) {
        if !is_plain_name(name.get_ref()) {
            self.problems.add_hint(
                Some(name.span()),
                format!("{what} name `{}` is not allowed", name.get_ref()),
                "use lower-case letters, digits, '-' and '_'",
            );
        } else if !seen.insert(name.get_ref().clone()) {
            self.problems.add(
                Some(name.span()),
                format!("{what} name `{}` is used twice", name.get_ref()),
            );
        }
    }

    /// An https URL, or http on a loopback host (for local providers).
    fn issuer_url(&mut self, raw: &Spanned<String>) -> Option<String> {
        let ok = url::Url::parse(raw.get_ref()).ok().filter(|u| {
            u.scheme() == "https"
                || (u.scheme() == "http"
                    && matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")))
        });
        if ok.is_none() {
            self.problems.add_hint(
                Some(raw.span()),
                format!("`{}` is not an https URL", raw.get_ref()),
                "plain http is accepted only for localhost and 127.0.0.1",
            );
        }
        ok.map(|_| raw.get_ref().trim_end_matches('/').to_owned())
    }

    fn claim_mapping(&mut self, raw: &RawClaimMapping, roles: &Roles) -> ClaimMapping {
        let mut role_map = BTreeMap::new();
        for (value, targets) in &raw.role_map {
            role_map.insert(value.clone(), self.role_refs(roles, targets));
        }
        ClaimMapping {
            roles_claim: raw
                .roles_claim
                .as_ref()
                .map(|c| c.get_ref().clone())
                .unwrap_or_else(|| "groups".into()),
            role_map,
            default_roles: self.role_refs(roles, &raw.default_roles),
        }
    }
}

/// argon2id, or bcrypt with cost 12 or more.
fn password_hash_is_strong(hash: &str) -> bool {
    if hash.starts_with("$argon2id$") {
        return true;
    }
    let parts: Vec<&str> = hash.split('$').collect();
    match parts.as_slice() {
        ["", "2a" | "2b" | "2y", cost, rest] if rest.len() == 53 => {
            cost.parse::<u32>().is_ok_and(|c| c >= 12)
        }
        _ => false,
    }
}
