//! Who may call, and what each route requires: roles, identities and the
//! access rules of routes. Parsed and cross-checked like the rest of the
//! policy; role references are resolved at parse time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;

use crate::secret::Secret;

/// Declares a name newtype: compared, ordered and hashed as its text,
/// serialized as a plain string, and looked up in sets by `&str`.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(name: impl Into<String>) -> Self {
                $name(name.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(name: &str) -> Self {
                $name(name.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(name: String) -> Self {
                $name(name)
            }
        }
    };
}

name_type!(
    /// A role name declared under `[roles]`, or one a claim mapping,
    /// API key or basic user grants.
    RoleName
);

name_type!(
    /// A permission a role grants under `[roles]` and a route may require.
    /// `*` in a role grants every permission.
    Permission
);

impl Permission {
    /// Whether this is `*`, which grants every permission.
    pub fn is_every_permission(&self) -> bool {
        self.0 == "*"
    }
}

/// `[roles]`: role → permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles(pub BTreeMap<RoleName, BTreeSet<Permission>>);

impl Roles {
    /// Whether any of `roles` grants `permission`.
    pub fn grants(&self, roles: &BTreeSet<RoleName>, permission: &Permission) -> bool {
        roles.iter().any(|role| {
            self.0.get(role).is_some_and(|perms| {
                perms.contains(permission) || perms.iter().any(Permission::is_every_permission)
            })
        })
    }
}

/// The kinds of identity a route can accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdentityKind {
    Oidc,
    Jwt,
    ApiKey,
    Basic,
}

impl IdentityKind {
    pub const ALL: [IdentityKind; 4] = [
        IdentityKind::Oidc,
        IdentityKind::Jwt,
        IdentityKind::ApiKey,
        IdentityKind::Basic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Oidc => "oidc",
            IdentityKind::Jwt => "jwt",
            IdentityKind::ApiKey => "api_key",
            IdentityKind::Basic => "basic",
        }
    }
}

/// What a caller needs to pass: one of `any_role` (when not empty) and
/// every permission in `all_permissions`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirement {
    pub any_role: BTreeSet<RoleName>,
    pub all_permissions: BTreeSet<Permission>,
}

/// A route's access rule. There is no "allow everyone authenticated"
/// shortcut: a restricted route names what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Public,
    Restricted {
        default: Requirement,
        /// Per-method requirements replace `default` for that method.
        per_method: BTreeMap<String, Requirement>,
        /// Identity kinds this route accepts.
        accept: BTreeSet<IdentityKind>,
    },
}

/// How claims of an OIDC id_token or a JWT become roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    /// Claim holding a string or an array of strings (default `groups`).
    pub roles_claim: String,
    /// Claim value → roles.
    pub role_map: BTreeMap<String, BTreeSet<RoleName>>,
    /// Roles every identity from this source gets.
    pub default_roles: BTreeSet<RoleName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcProvider {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scopes: Vec<String>,
    pub allowed_domains: BTreeSet<String>,
    pub allowed_emails: BTreeSet<String>,
    pub claims: ClaimMapping,
}

/// JWS algorithms a JWT issuer may use. `none` cannot be expressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JwtAlgorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Es256,
    Es384,
    EdDsa,
    Hs256,
}

impl JwtAlgorithm {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => JwtAlgorithm::Rs256,
            "RS384" => JwtAlgorithm::Rs384,
            "RS512" => JwtAlgorithm::Rs512,
            "PS256" => JwtAlgorithm::Ps256,
            "ES256" => JwtAlgorithm::Es256,
            "ES384" => JwtAlgorithm::Es384,
            "EdDSA" => JwtAlgorithm::EdDsa,
            "HS256" => JwtAlgorithm::Hs256,
            _ => return None,
        })
    }

    pub fn is_symmetric(self) -> bool {
        self == JwtAlgorithm::Hs256
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKeys {
    /// Fetched and cached; refetched on an unknown `kid` at most once per
    /// `refetch_cooldown`.
    Jwks {
        url: String,
        refetch_cooldown: Duration,
    },
    /// PEM public keys (RSA, EC or Ed25519).
    Static { files: Vec<PathBuf> },
    /// A shared HMAC secret of at least 32 bytes.
    Hs256 { secret: Secret },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIssuer {
    pub name: String,
    pub issuer: String,
    pub audiences: BTreeSet<String>,
    pub algorithms: BTreeSet<JwtAlgorithm>,
    pub keys: JwtKeys,
    pub leeway: Duration,
    pub claims: ClaimMapping,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub name: String,
    /// SHA-256 of the key; the key itself is never stored.
    pub sha256: [u8; 32],
    pub roles: BTreeSet<RoleName>,
    /// Empty: any address the network rules allow.
    pub allow: Vec<IpNet>,
    pub expires: Option<SystemTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicUser {
    pub name: String,
    /// A bcrypt (`$2b$`, cost ≥ 12) or argon2id (`$argon2id$`) hash.
    pub password_hash: String,
    pub roles: BTreeSet<RoleName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// The first key seals new cookies; every key opens them (rotation).
    pub keys: Vec<Secret>,
    pub idle_timeout: Duration,
    pub lifetime: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionSettings {
    /// Ed25519 PKCS#8 PEM; when absent a key is generated at start and
    /// published in the JWKS (fine for one replica).
    pub key_file: Option<PathBuf>,
    /// More Ed25519 PKCS#8 PEM keys whose public halves are published in
    /// the JWKS beside the signing key's, signing nothing: the next key
    /// before a rotation, so every replica's JWKS already has it, and the
    /// previous one after, so assertions signed with it still verify.
    pub publish_key_files: Vec<PathBuf>,
    pub lifetime: Duration,
}

/// Every identity source the policy declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identities {
    pub session: Option<SessionSettings>,
    pub oidc: Vec<OidcProvider>,
    pub jwt: Vec<JwtIssuer>,
    pub api_keys: Vec<ApiKey>,
    pub basic_users: Vec<BasicUser>,
    pub assertion: AssertionSettings,
}

impl Identities {
    /// The kinds some source is configured for.
    pub fn configured_kinds(&self) -> BTreeSet<IdentityKind> {
        let mut kinds = BTreeSet::new();
        if !self.oidc.is_empty() {
            kinds.insert(IdentityKind::Oidc);
        }
        if !self.jwt.is_empty() {
            kinds.insert(IdentityKind::Jwt);
        }
        if !self.api_keys.is_empty() {
            kinds.insert(IdentityKind::ApiKey);
        }
        if !self.basic_users.is_empty() {
            kinds.insert(IdentityKind::Basic);
        }
        kinds
    }
}
