//! The cron parser and its fire-time search, on arbitrary expressions,
//! time zones and start times.
//!
//! Input: the expression on the first line, the time zone on the second, the
//! start (Unix seconds) on the third. Besides "never panics": the next fire
//! time is after the start, it is the latest one in `(start, next]` and
//! nothing fires in between, and upcoming times strictly increase.
#![no_main]

use chrono::{DateTime, Duration, Utc};
use gatehouse_policy::cron::Schedule;
use libfuzzer_sys::fuzz_target;

/// Fire times are searched from "now"; keep starts within 1970..2200.
const LATEST_START: i64 = 7_258_118_400;
const DEFAULT_START: i64 = 1_750_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let expr = lines.next().unwrap_or_default();
    let timezone = lines.next().unwrap_or("UTC");
    let start = lines
        .next()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(DEFAULT_START)
        .clamp(0, LATEST_START);
    let Ok(schedule) = Schedule::parse(expr, timezone) else {
        return;
    };
    let _ = schedule.describe();
    let Some(start) = DateTime::<Utc>::from_timestamp(start, 0) else {
        return;
    };
    let Some(next) = schedule.next_after(start) else {
        return;
    };
    assert!(
        next > start,
        "{expr:?} in {timezone}: next {next} is not after {start}"
    );
    assert_eq!(
        schedule.latest_between(start, next),
        Some(next),
        "{expr:?} in {timezone}: the latest fire time in ({start}, {next}] is not {next}"
    );
    let just_before = next - Duration::seconds(1);
    if just_before > start {
        assert_eq!(
            schedule.latest_between(start, just_before),
            None,
            "{expr:?} in {timezone}: something fires between {start} and next {next}"
        );
    }
    let upcoming = schedule.upcoming(start, 4);
    assert_eq!(upcoming.first().map(|t| t.with_timezone(&Utc)), Some(next));
    for pair in upcoming.windows(2) {
        assert!(
            pair[0] < pair[1],
            "{expr:?} in {timezone}: upcoming times do not increase: {upcoming:?}"
        );
    }
});
