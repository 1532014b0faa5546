use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn next_n(expr: &str, tz: &str, after: &str, n: usize) -> Vec<String> {
    Schedule::parse(expr, tz)
        .unwrap()
        .upcoming(utc(after), n)
        .iter()
        .map(|t| t.to_rfc3339())
        .collect()
}

fn reason(expr: &str) -> String {
    match Schedule::parse(expr, "UTC") {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{expr:?} was accepted"),
    }
}

#[test]
fn spring_forward_gap_fires_once_at_the_next_valid_instant() {
    // Europe/Berlin jumps 02:00 CET -> 03:00 CEST on 2025-03-30.
    assert_eq!(
        next_n("30 2 * * *", "Europe/Berlin", "2025-03-29T12:00:00Z", 3),
        [
            "2025-03-30T03:00:00+02:00",
            "2025-03-31T02:30:00+02:00",
            "2025-04-01T02:30:00+02:00"
        ]
    );
    // New York jumps 02:00 EST -> 03:00 EDT on 2025-03-09. Every gap time
    // maps to 03:00, which fires once, and 03:00 itself is not repeated.
    assert_eq!(
        next_n(
            "0,30 2,3 * * *",
            "America/New_York",
            "2025-03-09T06:00:00Z",
            3
        ),
        [
            "2025-03-09T03:00:00-04:00",
            "2025-03-09T03:30:00-04:00",
            "2025-03-10T02:00:00-04:00"
        ]
    );
}

#[test]
fn wildcard_jobs_make_up_nothing_for_the_skipped_hour() {
    // Vixie cron runs wildcard jobs on real time: 02:30 never happens on
    // 2025-03-30 in Berlin, so nothing runs for it (no extra 03:00 run).
    assert_eq!(
        next_n("30 * * * *", "Europe/Berlin", "2025-03-30T00:10:00Z", 3),
        [
            "2025-03-30T01:30:00+01:00",
            "2025-03-30T03:30:00+02:00",
            "2025-03-30T04:30:00+02:00"
        ]
    );
    assert_eq!(
        next_n("*/15 * * * *", "Europe/Berlin", "2025-03-30T00:40:00Z", 3),
        [
            "2025-03-30T01:45:00+01:00",
            "2025-03-30T03:00:00+02:00",
            "2025-03-30T03:15:00+02:00"
        ]
    );
}

#[test]
fn wildcard_jobs_run_in_both_passes_of_the_repeated_hour() {
    // Berlin repeats 02:00-03:00 on 2025-10-26: every 15 minutes of real
    // time, not a 75-minute pause.
    assert_eq!(
        next_n("*/15 * * * *", "Europe/Berlin", "2025-10-26T00:40:00Z", 6),
        [
            "2025-10-26T02:45:00+02:00",
            "2025-10-26T02:00:00+01:00",
            "2025-10-26T02:15:00+01:00",
            "2025-10-26T02:30:00+01:00",
            "2025-10-26T02:45:00+01:00",
            "2025-10-26T03:00:00+01:00"
        ]
    );
    for hourly in ["0 * * * *", "@hourly"] {
        assert_eq!(
            next_n(hourly, "Europe/Berlin", "2025-10-25T23:30:00Z", 3),
            [
                "2025-10-26T02:00:00+02:00",
                "2025-10-26T02:00:00+01:00",
                "2025-10-26T03:00:00+01:00"
            ],
            "{hourly}"
        );
    }
    // The hour field alone starting with `*` makes a wildcard job too.
    assert_eq!(
        next_n("0 */2 * * *", "Europe/Berlin", "2025-10-25T23:30:00Z", 3),
        [
            "2025-10-26T02:00:00+02:00",
            "2025-10-26T02:00:00+01:00",
            "2025-10-26T04:00:00+01:00"
        ]
    );
    let classified = |e: &str| Schedule::parse(e, "UTC").unwrap().runs_on_real_time();
    assert!(classified("*/15 * * * *") && classified("0 */2 * * *") && classified("@hourly"));
    assert!(classified("*/30 1 * * *") && classified("0 0 * * * *"));
    assert!(!classified("30 2 * * *") && !classified("@daily") && !classified("*/10 30 2 * * *"));
}

#[test]
fn fall_back_repeated_hour_fires_once_at_the_first_occurrence() {
    // Europe/Berlin repeats 02:00-03:00 on 2025-10-26.
    assert_eq!(
        next_n("30 2 * * *", "Europe/Berlin", "2025-10-25T12:00:00Z", 2),
        ["2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"]
    );
    // New York repeats 01:00-02:00 on 2025-11-02.
    assert_eq!(
        next_n(
            "0,30 1 * * *",
            "America/New_York",
            "2025-11-02T04:00:00Z",
            3
        ),
        [
            "2025-11-02T01:00:00-04:00",
            "2025-11-02T01:30:00-04:00",
            "2025-11-03T01:00:00-05:00"
        ]
    );
    // Started inside the second pass: the repeated times already fired.
    assert_eq!(
        next_n(
            "15,45 1,2 * * *",
            "America/New_York",
            "2025-11-02T06:10:00Z",
            2
        ),
        ["2025-11-02T02:15:00-05:00", "2025-11-02T02:45:00-05:00"]
    );
    // A wildcard job started there runs on through the second pass.
    assert_eq!(
        next_n(
            "*/15 * * * *",
            "America/New_York",
            "2025-11-02T06:10:00Z",
            2
        ),
        ["2025-11-02T01:15:00-05:00", "2025-11-02T01:30:00-05:00"]
    );
}

#[test]
fn day_of_month_and_day_of_week_are_ored_when_both_restricted() {
    // The 13th or any Friday, in June 2025 (Fridays: 6, 13, 20, 27).
    assert_eq!(
        next_n("0 0 13 * FRI", "UTC", "2025-06-01T00:00:00Z", 4),
        [
            "2025-06-06T00:00:00+00:00",
            "2025-06-13T00:00:00+00:00",
            "2025-06-20T00:00:00+00:00",
            "2025-06-27T00:00:00+00:00"
        ]
    );
    assert_eq!(
        next_n("0 0 1,15 * MON", "UTC", "2025-06-01T00:00:00Z", 3),
        [
            "2025-06-02T00:00:00+00:00",
            "2025-06-09T00:00:00+00:00",
            "2025-06-15T00:00:00+00:00"
        ]
    );
    // One field '*': only the other restricts.
    assert_eq!(
        next_n("0 0 * * FRI", "UTC", "2025-06-01T00:00:00Z", 1),
        ["2025-06-06T00:00:00+00:00"]
    );
    assert_eq!(
        next_n("0 0 13 * *", "UTC", "2025-06-01T00:00:00Z", 1),
        ["2025-06-13T00:00:00+00:00"]
    );
    // Vixie cron: a field starting with '*' (a step) is ANDed.
    assert_eq!(
        next_n("0 0 */2 * FRI", "UTC", "2025-06-01T00:00:00Z", 2),
        ["2025-06-13T00:00:00+00:00", "2025-06-27T00:00:00+00:00"]
    );
}

#[test]
fn weekdays_zero_and_seven_are_sunday() {
    let want = ["2025-06-01T00:00:00+00:00", "2025-06-08T00:00:00+00:00"];
    for dow in ["0", "7", "SUN", "sun", "5-7"] {
        let got = next_n(&format!("0 0 * * {dow}"), "UTC", "2025-05-31T12:00:00Z", 2);
        if dow == "5-7" {
            assert_eq!(
                got,
                ["2025-06-01T00:00:00+00:00", "2025-06-06T00:00:00+00:00"]
            );
        } else {
            assert_eq!(got, want, "{dow}");
        }
    }
}

#[test]
fn special_characters_and_names() {
    assert_eq!(
        next_n("0 0 L FEB *", "UTC", "2024-01-01T00:00:00Z", 1),
        ["2024-02-29T00:00:00+00:00"]
    );
    // 2025-06-15 is a Sunday: 15W is Monday the 16th.
    assert_eq!(
        next_n("0 9 15W * *", "UTC", "2025-06-01T00:00:00Z", 1),
        ["2025-06-16T09:00:00+00:00"]
    );
    assert_eq!(
        next_n("0 9 * * MON#2", "UTC", "2025-06-01T00:00:00Z", 1),
        ["2025-06-09T09:00:00+00:00"]
    );
    assert_eq!(
        next_n("0 9 * * 5L", "UTC", "2025-06-01T00:00:00Z", 1),
        ["2025-06-27T09:00:00+00:00"]
    );
    assert_eq!(
        next_n("0 9 * * FRIL", "UTC", "2025-06-01T00:00:00Z", 1),
        ["2025-06-27T09:00:00+00:00"]
    );
    assert_eq!(
        next_n("*/20 * * * * *", "UTC", "2025-06-01T00:00:00Z", 2),
        ["2025-06-01T00:00:20+00:00", "2025-06-01T00:00:40+00:00"]
    );
}

#[test]
fn macros() {
    let at = "2025-06-01T10:00:00Z";
    assert_eq!(
        next_n("@daily", "UTC", at, 1),
        ["2025-06-02T00:00:00+00:00"]
    );
    assert_eq!(
        next_n("@midnight", "UTC", at, 1),
        ["2025-06-02T00:00:00+00:00"]
    );
    assert_eq!(
        next_n("@hourly", "UTC", at, 1),
        ["2025-06-01T11:00:00+00:00"]
    );
    assert_eq!(
        next_n("@weekly", "UTC", at, 1),
        ["2025-06-08T00:00:00+00:00"]
    );
    assert_eq!(
        next_n("@monthly", "UTC", at, 1),
        ["2025-07-01T00:00:00+00:00"]
    );
    assert_eq!(
        next_n("@YEARLY", "UTC", at, 1),
        ["2026-01-01T00:00:00+00:00"]
    );
    assert_eq!(
        next_n("@annually", "UTC", at, 1),
        ["2026-01-01T00:00:00+00:00"]
    );
    assert!(reason("@reboot").contains("@reboot is not supported"));
    assert!(reason("@often").contains("unknown macro"));
}

#[test]
fn errors_say_why() {
    assert!(reason("").contains("empty"));
    assert!(reason("   ").contains("empty"));
    assert!(reason("* * * *").contains("got 4"));
    assert!(reason("* * * * * * *").contains("got 7"));
    assert!(reason("60 * * * *").contains("60 * * * *"));
    for bad in [
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * 32 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "5-1 * * * *",
    ] {
        assert!(
            matches!(
                Schedule::parse(bad, "UTC"),
                Err(ScheduleError::InvalidExpression { .. })
            ),
            "{bad}"
        );
    }
    assert!(reason("* * * JNU *").contains("unknown month name \"JNU\""));
    assert!(reason("* * * * FUN").contains("unknown weekday name"));
    assert!(reason("* * * MON *").contains("unknown month name \"MON\""));
    assert!(reason("* * * * JAN").contains("unknown weekday name"));
    assert!(reason("1,,2 * * * *").contains("empty list item"));
    assert!(reason("0 0 1 * +MON").contains("'+'"));
    assert!(reason("0 0 30 2 *").contains("never fires"));
    assert_eq!(
        Schedule::parse("* * * * *", "Mars/Olympus").unwrap_err(),
        ScheduleError::UnknownTimezone {
            name: "Mars/Olympus".into()
        }
    );
}

#[test]
fn latest_between_for_catch_up() {
    let s = Schedule::parse("0 3 * * *", "Europe/Berlin").unwrap();
    let got = s.latest_between(utc("2025-01-01T00:00:00Z"), utc("2025-06-10T12:00:00Z"));
    assert_eq!(got, Some(utc("2025-06-10T01:00:00Z")));
    // Bound inclusive on `to`, exclusive on `from`.
    assert_eq!(
        s.latest_between(utc("2025-06-10T00:00:00Z"), utc("2025-06-10T01:00:00Z")),
        Some(utc("2025-06-10T01:00:00Z"))
    );
    assert_eq!(
        s.latest_between(utc("2025-06-10T01:00:00Z"), utc("2025-06-10T12:00:00Z")),
        None
    );
    assert_eq!(
        s.latest_between(utc("2025-06-10T12:00:00Z"), utc("2025-06-10T12:00:00Z")),
        None
    );
    // A gap time fires at the end of the gap, and catch-up agrees.
    let gap = Schedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
    assert_eq!(
        gap.latest_between(utc("2025-03-29T12:00:00Z"), utc("2025-03-30T01:30:00Z")),
        Some(utc("2025-03-30T01:00:00Z"))
    );
    // `to` in the second pass of the repeated hour: 02:45 fired in the first.
    let fold = Schedule::parse("45 2 * * *", "Europe/Berlin").unwrap();
    assert_eq!(
        fold.latest_between(utc("2025-10-25T12:00:00Z"), utc("2025-10-26T01:10:00Z")),
        Some(utc("2025-10-26T00:45:00Z"))
    );
}

#[test]
fn latest_between_matches_iterating_next_after() {
    // Around a fall-back and a spring-forward, fixed-time and wildcard.
    for ((expr, tz), (from, until)) in [
        ("*/7 1-3 * * *", "America/New_York"),
        ("15,45 * * * *", "Europe/Berlin"),
        ("0 2 * * *", "Europe/Berlin"),
        ("0 * * * *", "Europe/Berlin"),
        ("*/20 * * * *", "Australia/Lord_Howe"),
        ("30 1,2 * * *", "Australia/Lord_Howe"),
    ]
    .into_iter()
    .flat_map(|case| {
        [
            ("2025-10-25T20:00:00Z", "2025-10-26T06:00:00Z"),
            ("2025-03-29T20:00:00Z", "2025-03-30T06:00:00Z"),
            ("2025-04-05T12:00:00Z", "2025-04-05T18:00:00Z"),
            ("2025-10-04T12:00:00Z", "2025-10-04T18:00:00Z"),
        ]
        .map(|window| (case, window))
    }) {
        let s = Schedule::parse(expr, tz).unwrap();
        let from = utc(from);
        let mut t = from + Duration::minutes(1);
        while t < utc(until) {
            let mut want = None;
            let mut at = from;
            while let Some(n) = s.next_after(at).filter(|n| *n <= t) {
                want = Some(n);
                at = n;
            }
            assert_eq!(s.latest_between(from, t), want, "{expr} {tz} to {t}");
            t += Duration::minutes(5);
        }
    }
}

#[test]
fn accessors_and_describe() {
    let s = Schedule::parse("0 3 * * *", "Europe/Berlin").unwrap();
    assert_eq!(s.expression(), "0 3 * * *");
    assert_eq!(s.timezone_name(), "Europe/Berlin");
    assert_eq!(default_timezone(), "UTC");
    let d = |e: &str| Schedule::parse(e, "UTC").unwrap().describe();
    assert_eq!(d("0 3 * * *"), "at 03:00 every day");
    assert_eq!(d("@daily"), "at 00:00 every day");
    assert_eq!(d("*/5 * * * *"), "every 5 minutes");
    assert_eq!(d("* * * * *"), "every minute");
    assert_eq!(d("*/10 * * * * *"), "every 10 seconds");
    assert_eq!(d("15 * * * *"), "every hour at minute 15");
    assert_eq!(d("0 */2 * * *"), "every 2 hours at minute 0");
    assert_eq!(d("30 9 * * MON-FRI"), "at 09:30 on weekdays");
    assert_eq!(d("0 9,17 * * 1"), "at 09:00 and 17:00 every Monday");
    assert_eq!(d("0 0 L * *"), "at 00:00 on the last day of every month");
    assert_eq!(d("0 0 1 JAN *"), "at 00:00 on January 1");
    assert_eq!(d("0 0 13 * FRI"), "0 0 13 * FRI");
}

#[test]
fn impossible_and_combination_is_refused() {
    assert!(matches!(
        Schedule::parse("0 0 31 4 */2", "UTC"),
        Err(ScheduleError::NeverFires { .. })
    ));
}
