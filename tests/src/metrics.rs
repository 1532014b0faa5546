//! Reading Prometheus text exposition (what `/metrics` serves).
//!
//! A dozen lines of our own rather than a parser crate: tests look up one
//! sample by its exact series text, as the exporter prints it, and the
//! crates on offer (`prometheus-parse`, unmaintained since 2023) would make
//! them compare label sets instead.

/// The value of one sample, `series` being its name with labels exactly as
/// exported (`name` or `name{label="value",…}`). An optional timestamp
/// after the value is ignored.
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::metric_value;

    const TEXT: &str = "\
# HELP gatehouse_requests_total Requests.
# TYPE gatehouse_requests_total counter
gatehouse_requests_total{route=\"app\",status=\"200\"} 3
gatehouse_requests_total{route=\"app\",status=\"404\"} 1
gatehouse_up 1
gatehouse_up_since 1.7e9
gatehouse_scrape_age 2.5 1712345678000
gatehouse_ratio NaN
gatehouse_limit +Inf
";

    #[test]
    fn finds_plain_and_labelled_samples() {
        assert_eq!(metric_value(TEXT, "gatehouse_up"), Some(1.0));
        assert_eq!(
            metric_value(
                TEXT,
                r#"gatehouse_requests_total{route="app",status="404"}"#
            ),
            Some(1.0)
        );
        assert_eq!(metric_value(TEXT, "gatehouse_up_since"), Some(1.7e9));
    }

    #[test]
    fn a_longer_name_with_the_same_prefix_is_another_series() {
        assert_eq!(metric_value(TEXT, "gatehouse_requests"), None);
        assert_eq!(metric_value(TEXT, "gatehouse_requests_total"), None);
        assert_eq!(metric_value(TEXT, "gatehouse_missing"), None);
    }

    #[test]
    fn reads_the_value_before_a_timestamp_and_the_special_values() {
        assert_eq!(metric_value(TEXT, "gatehouse_scrape_age"), Some(2.5));
        assert!(metric_value(TEXT, "gatehouse_ratio").is_some_and(f64::is_nan));
        assert_eq!(metric_value(TEXT, "gatehouse_limit"), Some(f64::INFINITY));
    }
}
