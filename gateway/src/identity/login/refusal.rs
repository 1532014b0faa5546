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
    /// The flow's `state` completed a login already (on any replica).
    FlowReused,
    /// `[shared_state]` says to refuse while Redis is down, and whether the
    /// flow was used before cannot be known.
    SharedStateUnavailable,
}

impl LoginRefusal {
    pub const ALL: [LoginRefusal; 12] = [
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
        LoginRefusal::FlowReused,
        LoginRefusal::SharedStateUnavailable,
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
            LoginRefusal::FlowReused => "login-flow-reused",
            LoginRefusal::SharedStateUnavailable => "login-shared-state-unavailable",
        }
    }

    pub fn status(self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            LoginRefusal::UnknownProvider
            | LoginRefusal::NoFlow
            | LoginRefusal::StateMismatch
            | LoginRefusal::FlowReused => StatusCode::BAD_REQUEST,
            LoginRefusal::DeniedByProvider
            | LoginRefusal::CodeRejected
            | LoginRefusal::NoIdToken
            | LoginRefusal::IdTokenInvalid => StatusCode::UNAUTHORIZED,
            LoginRefusal::EmailNotAllowed => StatusCode::FORBIDDEN,
            LoginRefusal::SealFailed => StatusCode::INTERNAL_SERVER_ERROR,
            LoginRefusal::ProviderUnavailable | LoginRefusal::SharedStateUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// A refusal that is the caller's failed login (and counts towards the
    /// lockout), not the provider or the gateway failing.
    pub fn is_login_failure(self) -> bool {
        self.status().is_client_error()
    }
}
