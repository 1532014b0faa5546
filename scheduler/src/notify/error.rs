//! Why one delivery attempt failed, for every channel alike.

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
    #[error("the receiver answered with a redirect ({0}), which is not followed")]
    Redirect(u16),
    #[error("the receiver answered {0}")]
    Status(u16),
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
            DeliveryError::Status(code) => *code >= 500 || *code == 408 || *code == 429,
            DeliveryError::Smtp { transient, .. } => *transient,
            _ => false,
        }
    }
}
