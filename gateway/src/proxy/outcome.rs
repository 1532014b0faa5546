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

/// Status labels come from a fixed set so a hostile upstream cannot grow
/// the metric's cardinality.
pub fn status_label(status: u16) -> &'static str {
    const KNOWN: [(u16, &str); 20] = [
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (206, "206"),
        (301, "301"),
        (302, "302"),
        (304, "304"),
        (308, "308"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (408, "408"),
        (413, "413"),
        (429, "429"),
        (431, "431"),
        (500, "500"),
        (502, "502"),
        (504, "504"),
    ];
    KNOWN
        .iter()
        .find(|(code, _)| *code == status)
        .map(|(_, label)| *label)
        .unwrap_or(match status {
            0 => "none",
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        })
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

    #[test]
    fn unusual_statuses_share_a_class_label() {
        assert_eq!(status_label(404), "404");
        assert_eq!(status_label(418), "4xx");
        assert_eq!(status_label(0), "none");
    }
}
