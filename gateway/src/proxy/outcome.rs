//! How a failed request is answered and counted: the status for each
//! Pingora error, and a bounded set of status labels for metrics.

use pingora::prelude::*;
use pingora::ErrorType;

/// The status to answer and, for upstream failures, the metric kind.
pub fn classify_failure(e: &Error) -> (u16, Option<&'static str>) {
    match e.etype() {
        ErrorType::HTTPStatus(code) => (*code, None),
        ErrorType::ConnectTimedout => (504, Some("connect-timeout")),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            (504, Some("read-timeout"))
        }
        ErrorType::ReadTimedout => (408, None),
        _ => match e.esource() {
            ErrorSource::Upstream => (502, Some("upstream-error")),
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                    (0, None)
                }
                _ => (400, None),
            },
            ErrorSource::Internal | ErrorSource::Unset => (500, None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_timeouts_are_504_and_refusals_502() {
        let timeout = Error::new(ErrorType::ConnectTimedout).into_up();
        assert_eq!(classify_failure(&timeout).0, 504);
        let refused = Error::new(ErrorType::ConnectRefused).into_up();
        assert_eq!(classify_failure(&refused).0, 502);
        let read = Error::new(ErrorType::ReadTimedout).into_up();
        assert_eq!(classify_failure(&read).0, 504);
        let limit = Error::new(ErrorType::HTTPStatus(413));
        assert_eq!(classify_failure(&limit).0, 413);
    }
}
