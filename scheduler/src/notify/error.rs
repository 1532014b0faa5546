//! Why one delivery attempt failed, for every channel alike.

use reqwest::StatusCode;

use super::guard::Refusal;

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    // Not `#[from]`: that would also make the refusal the error's source,
    // and reports that print the chain would say it twice.
    #[error("refused by the SSRF guard: {0}")]
    Refused(Refusal),
    #[error("cannot read the channel's secret: {0}")]
    Secret(String),
    #[error("the receiver answered with a redirect ({}), which is not followed", .0.as_u16())]
    Redirect(StatusCode),
    #[error("the receiver answered {}", .0.as_u16())]
    Status(StatusCode),
    #[error("{0}")]
    Transport(String),
    #[error("SMTP: {message}")]
    Smtp { message: String, transient: bool },
    #[error("{0}")]
    Invalid(String),
}

impl From<Refusal> for DeliveryError {
    fn from(refusal: Refusal) -> Self {
        DeliveryError::Refused(refusal)
    }
}

impl DeliveryError {
    /// Whether trying again may help: network trouble, 5xx, 408 and 429.
    pub(super) fn is_transient(&self) -> bool {
        match self {
            DeliveryError::Transport(_) => true,
            DeliveryError::Status(code) => {
                code.as_u16() >= 500
                    || *code == StatusCode::REQUEST_TIMEOUT
                    || *code == StatusCode::TOO_MANY_REQUESTS
            }
            DeliveryError::Smtp { transient, .. } => *transient,
            _ => false,
        }
    }
}
