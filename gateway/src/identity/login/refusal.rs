//! Why a login endpoint refused: one reason each, with its status.

/// Why a login endpoint refused, each with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefusal {
    UnknownProvider,
    ProviderUnavailable,
    SealFailed,
    NoFlow,
    StateMismatch,
    DeniedByProvider,
    CodeRejected,
    NoIdToken,
    IdTokenInvalid,
    EmailNotAllowed,
}

impl LoginRefusal {
    pub const ALL: [LoginRefusal; 10] = [
        LoginRefusal::UnknownProvider,
        LoginRefusal::ProviderUnavailable,
        LoginRefusal::SealFailed,
        LoginRefusal::NoFlow,
        LoginRefusal::StateMismatch,
        LoginRefusal::DeniedByProvider,
        LoginRefusal::CodeRejected,
        LoginRefusal::NoIdToken,
        LoginRefusal::IdTokenInvalid,
        LoginRefusal::EmailNotAllowed,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            LoginRefusal::UnknownProvider => "login-unknown-provider",
            LoginRefusal::ProviderUnavailable => "login-provider-unavailable",
            LoginRefusal::SealFailed => "login-seal-failed",
            LoginRefusal::NoFlow => "login-no-flow",
            LoginRefusal::StateMismatch => "login-state-mismatch",
            LoginRefusal::DeniedByProvider => "login-denied-by-provider",
            LoginRefusal::CodeRejected => "login-code-rejected",
            LoginRefusal::NoIdToken => "login-no-id-token",
            LoginRefusal::IdTokenInvalid => "login-id-token-invalid",
            LoginRefusal::EmailNotAllowed => "login-email-not-allowed",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            LoginRefusal::UnknownProvider | LoginRefusal::NoFlow | LoginRefusal::StateMismatch => {
                400
            }
            LoginRefusal::DeniedByProvider
            | LoginRefusal::CodeRejected
            | LoginRefusal::NoIdToken
            | LoginRefusal::IdTokenInvalid => 401,
            LoginRefusal::EmailNotAllowed => 403,
            LoginRefusal::SealFailed => 500,
            LoginRefusal::ProviderUnavailable => 503,
        }
    }

    /// A refusal that is the caller's failed login (and counts towards the
    /// lockout), not the provider or the gateway failing.
    pub fn is_login_failure(self) -> bool {
        (400..500).contains(&self.status())
    }
}
