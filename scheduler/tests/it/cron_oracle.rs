//! Differential test: `Schedule` against Python's cronsim (tests/tools/cronsim-oracle).
//!
//! Thousands of seeded random expressions, in zones with and without DST,
//! from start times clustered around DST transitions, go to cronsim in one
//! batch; its next fire times must equal `Schedule::upcoming`.
//!
//! Both follow Vixie cron's DST rule for 5-field expressions: "wildcard"
//! jobs (minute or hour starting with `*`) run on real time (both passes of
//! a repeated hour, nothing for a skipped one), fixed-time jobs fire once
//! per wall-clock time (a skipped time at the end of the gap, a repeated
//! one in its first pass). So any difference is a bug, except the
//! documented ones below, each recognised by its exact shape and counted.
//! Where cronsim is wrong, it is against Vixie cron and against its own
//! rule, and Gatehouse is right:
//!
//! * `CronsimBeforeStart` (cronsim bug): for fixed-time jobs started in the
//!   second pass of a repeated hour, cronsim answers with the first-pass
//!   instant, which is *before* the start (its search runs on naive local
//!   time). That time already fired; we skip it.
//! * `CronsimSubHourDst` (cronsim bug): in a zone whose clocks shift by 30
//!   minutes (Australia/Lord_Howe), cronsim, for wildcard jobs, advances
//!   hours by adding 3600 s of absolute time; after a transition that lands
//!   it on the half hour, so it *skips* fire times for the rest of that
//!   local day (until its next day starts at midnight again). Every time it
//!   does answer is one of ours; we fire every matching wall-clock time.
//! * `MidnightGapHour` (cronsim bug): where midnight itself falls in a
//!   spring-forward gap (America/Sao_Paulo until 2019: 00:00 -03 -> 01:00
//!   -02), cronsim, for wildcard jobs, starts the day at the imaginary 00:00,
//!   which is the instant 01:00, still reads its hour as 0, and its next
//!   hour step lands on 02:00: times in the first real hour of that day
//!   (01:xx) are dropped. We fire them.
//! * `OneValueRangeStep` (cronsim bug): cronsim reads a stepped one-value
//!   range `a-a/n` like `a/n`, that is `a-MAX/n` (every n-th value from a to
//!   the field's maximum); we, croner and Vixie cron read it as just `a`.
//!   Recognised by evaluating our `Schedule` on cronsim's reading (each
//!   `a-a/n` rewritten to `a-MAX/n`), which must then agree exactly (or up
//!   to the classes above).
//! * `SixFieldFixedTime` (a design difference, not a bug): cronsim gives the
//!   fixed-time treatment to 5-field expressions only, and runs every
//!   6-field one on real time. Vixie cron has no seconds field; we classify
//!   a 6-field expression by its minute and hour like any other, so
//!   `0 30 2 * * *` is the job `30 2 * * *` and fires once. Recognised when
//!   cronsim's extra second-pass times, or our gap times it drops, are the
//!   whole difference.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use chrono::{DateTime, Duration, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use gatehouse_scheduler::cron::Schedule;
use serde::{Deserialize, Serialize};

mod classify;
use classify::{classify, cronsim_one_value_ranges, Class};

const SEED: u64 = 0x6a7e_4f0c_5eed;
const CASES: usize = 4000;
const COUNT: usize = 5;
const ZONES: [&str; 7] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "Australia/Lord_Howe",
];

#[derive(Serialize)]
struct Request<'a> {
    id: usize,
    expr: &'a str,
    tz: &'a str,
    start: String,
    count: usize,
}

#[derive(Deserialize)]
struct Answer {
    id: usize,
    #[serde(default)]
    epochs: Vec<i64>,
    #[serde(default)]
    exhausted: bool,
    error: Option<String>,
}

struct Case {
    expr: String,
    zone: &'static str,
    start: DateTime<Utc>,
}

fn oracle_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/tools/cronsim-oracle")
}

// ---------------------------------------------------------------- generator

/// One term of a numeric field: a value, a range, or a stepped range.
fn term(rng: &mut fastrand::Rng, lo: u32, hi: u32) -> String {
    match rng.u8(..10) {
        0..=4 => rng.u32(lo..=hi).to_string(),
        5..=7 => {
            let a = rng.u32(lo..=hi);
            let b = rng.u32(a..=hi);
            format!("{a}-{b}")
        }
        _ => {
            // Now and then a one-value range "a-a/n", which cronsim reads
            // differently (`OneValueRangeStep` in the module docs).
            let a = rng.u32(lo..hi);
            let b = if rng.u8(..32) == 0 {
                a
            } else {
                rng.u32(a + 1..=hi)
            };
            format!("{a}-{b}/{}", rng.u32(1..=(hi - lo) / 2 + 1))
        }
    }
}

fn numeric_field(rng: &mut fastrand::Rng, lo: u32, hi: u32, star_weight: u8) -> String {
    let roll = rng.u8(..100);
    if roll < star_weight {
        return "*".into();
    }
    match rng.u8(..10) {
        0..=1 => format!("*/{}", rng.u32(2..=(hi - lo + 1).div_ceil(2))),
        2..=3 => {
            let n = rng.usize(2..=3);
            (0..n)
                .map(|_| term(rng, lo, hi))
                .collect::<Vec<_>>()
                .join(",")
        }
        _ => term(rng, lo, hi),
    }
}

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn month_field(rng: &mut fastrand::Rng) -> String {
    match rng.u8(..10) {
        0..=5 => "*".into(),
        6 => MONTH_NAMES[rng.usize(..12)].to_string(),
        7 => {
            let a = rng.usize(..12);
            let b = rng.usize(a..12);
            format!("{}-{}", MONTH_NAMES[a], MONTH_NAMES[b])
        }
        _ => numeric_field(rng, 1, 12, 0),
    }
}

fn dom_field(rng: &mut fastrand::Rng) -> String {
    match rng.u8(..20) {
        0..=9 => "*".into(),
        10 => "L".into(),
        11 => "LW".into(),
        12 => format!("{},L", rng.u32(1..=28)),
        // Mostly days every month has, so cronsim accepts the expression.
        _ => numeric_field(rng, 1, 28, 0),
    }
}

fn dow_field(rng: &mut fastrand::Rng) -> String {
    match rng.u8(..20) {
        0..=8 => "*".into(),
        9 => DAY_NAMES[rng.usize(..7)].to_string(),
        10 => {
            let a = rng.usize(..7);
            let b = rng.usize(a..7);
            format!("{}-{}", DAY_NAMES[a], DAY_NAMES[b])
        }
        11 => format!("{}#{}", rng.u32(0..=7), rng.u32(1..=5)),
        12 => format!("{}#{}", DAY_NAMES[rng.usize(..7)], rng.u32(1..=5)),
        13 => format!("{}L", rng.u32(0..=7)),
        14 => format!("{},{}", rng.u32(0..=7), rng.u32(0..=7)),
        _ => numeric_field(rng, 0, 7, 0),
    }
}

fn expression(rng: &mut fastrand::Rng) -> String {
    // Fixed times of day are the common case, and the one DST rules target.
    let minute = if rng.bool() {
        rng.u32(0..60).to_string()
    } else {
        numeric_field(rng, 0, 59, 20)
    };
    let hour = if rng.bool() {
        rng.u32(0..24).to_string()
    } else {
        numeric_field(rng, 0, 23, 20)
    };
    let five = format!(
        "{minute} {hour} {} {} {}",
        dom_field(rng),
        month_field(rng),
        dow_field(rng)
    );
    match rng.u8(..10) {
        0 => format!("{} {five}", numeric_field(rng, 0, 59, 10)),
        1 => format!("0 {five}"),
        _ => five,
    }
}

/// The instants in [from, to) where `tz`'s UTC offset changes.
fn transitions(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let offset = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    let mut out = Vec::new();
    let step = Duration::hours(6);
    let mut t = from;
    while t < to {
        let u = t + step;
        if offset(t) != offset(u) {
            // Binary search for the first second with the new offset.
            let (mut lo, mut hi) = (t, u);
            while hi - lo > Duration::seconds(1) {
                let mid = lo + Duration::seconds((hi - lo).num_seconds() / 2);
                if offset(mid) == offset(t) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            out.push(hi);
        }
        t = u;
    }
    out
}

fn cases() -> Vec<Case> {
    let mut rng = fastrand::Rng::with_seed(SEED);
    let from = Utc.with_ymd_and_hms(2015, 1, 1, 0, 0, 0).unwrap();
    let to = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    let zone_transitions: BTreeMap<&str, Vec<DateTime<Utc>>> = ZONES
        .iter()
        .map(|z| (*z, transitions(z.parse().unwrap(), from, to)))
        .collect();
    let span = (to - from).num_seconds();
    let random = (0..CASES).map(|_| {
        let zone = ZONES[rng.usize(..ZONES.len())];
        let near = &zone_transitions[zone];
        let start = if !near.is_empty() && rng.u8(..10) < 7 {
            // Up to two days either side of a transition, to the second.
            let t = near[rng.usize(..near.len())];
            t + Duration::seconds(rng.i64(-2 * 86_400..=2 * 86_400))
        } else {
            from + Duration::seconds(rng.i64(0..span))
        };
        Case {
            expr: expression(&mut rng),
            zone,
            start,
        }
    });
    let mut cases: Vec<Case> = random.collect();
    cases.extend(dst_cases(&zone_transitions));
    cases
}

/// The DST rule itself, case by case: wildcard and fixed-time jobs started
/// 90 minutes before each transition of 2024-2026 in every zone, and from
/// inside each repeated hour. `@hourly` is `0 * * * *` (cronsim has no
/// macros).
fn dst_cases(zone_transitions: &BTreeMap<&'static str, Vec<DateTime<Utc>>>) -> Vec<Case> {
    const EXPRS: [&str; 7] = [
        "*/15 * * * *",
        "0 * * * *",
        "0 */2 * * *",
        "30 * * * *",
        "*/20 2 * * *",
        "30 2 * * *",
        "0,30 1,2 * * *",
    ];
    let (from, to) = (
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap(),
    );
    let mut out = Vec::new();
    for (&zone, transitions) in zone_transitions {
        for t in transitions.iter().filter(|t| **t >= from && **t < to) {
            for offset in [-90, 20] {
                for expr in EXPRS {
                    out.push(Case {
                        expr: expr.to_owned(),
                        zone,
                        start: *t + Duration::minutes(offset),
                    });
                }
            }
        }
    }
    out
}

// -------------------------------------------------------------------- test

fn run_oracle(cases: &[Case]) -> Vec<Answer> {
    let path = oracle_path();
    let mut child = Command::new(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    let mut input = Vec::new();
    for (id, c) in cases.iter().enumerate() {
        let req = Request {
            id,
            expr: &c.expr,
            tz: c.zone,
            start: c.start.to_rfc3339(),
            count: COUNT,
        };
        serde_json::to_writer(&mut input, &req).unwrap();
        input.push(b'\n');
    }
    // Write from a thread so a full stdout pipe cannot deadlock us.
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    // If the oracle died, say so (its stderr is above) rather than report
    // the broken pipe it left us.
    let written = writer.join().unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        path.display(),
        out.status
    );
    written.unwrap();
    let answers: Vec<Answer> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        answers.len(),
        cases.len(),
        "cronsim answered {} of {} cases",
        answers.len(),
        cases.len()
    );
    answers
}

#[test]
fn schedule_agrees_with_cronsim() {
    let cases = cases();
    let answers = run_oracle(&cases);

    let mut classes: BTreeMap<Class, usize> = BTreeMap::new();
    let mut examples: BTreeMap<Class, String> = BTreeMap::new();
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (case, answer) in cases.iter().zip(&answers) {
        assert_eq!(cases[answer.id].expr, case.expr, "answers out of order");
        let ours = Schedule::parse(&case.expr, case.zone);
        let (schedule, theirs) = match (&ours, &answer.error) {
            (Ok(s), None) => (s, &answer.epochs),
            (Err(_), Some(_)) => continue,
            (Ok(_), Some(e)) => {
                mismatches.push(format!("{:?} accepted by us, cronsim: {e}", case.expr));
                continue;
            }
            (Err(e), None) => {
                mismatches.push(format!("{:?} accepted by cronsim, we say: {e}", case.expr));
                continue;
            }
        };
        let want = if answer.exhausted {
            theirs.len()
        } else {
            COUNT
        };
        let ours: Vec<i64> = schedule
            .upcoming(case.start, want)
            .iter()
            .map(|t| t.timestamp())
            .collect();
        compared += 1;
        if &ours == theirs {
            continue;
        }
        // cronsim's one-value ranges: compare with its reading of the
        // expression, which must then agree (up to the DST classes).
        let ours = match cronsim_one_value_ranges(&case.expr) {
            Some(alt) => {
                let alt: Vec<i64> = Schedule::parse(&alt, case.zone)
                    .unwrap()
                    .upcoming(case.start, want)
                    .iter()
                    .map(|t| t.timestamp())
                    .collect();
                if &alt == theirs {
                    *classes.entry(Class::OneValueRangeStep).or_default() += 1;
                    continue;
                }
                alt
            }
            None => ours,
        };
        match classify(case, &ours, theirs) {
            Some(class) => {
                *classes.entry(class).or_default() += 1;
                examples.entry(class).or_insert_with(|| {
                    format!(
                        "{:?} in {} after {}: ours {:?}, cronsim {:?}",
                        case.expr,
                        case.zone,
                        case.start.to_rfc3339(),
                        ours,
                        theirs
                    )
                });
            }
            None => mismatches.push(disagreement(case, &ours, theirs)),
        }
    }

    report_and_check_agreement(&cases, compared, &classes, &examples, &mismatches);
}

/// A difference no class explains: both schedules in the case's zone.
fn disagreement(case: &Case, ours: &[i64], theirs: &[i64]) -> String {
    let tz: Tz = case.zone.parse().unwrap();
    let show = |v: &[i64]| {
        v.iter()
            .map(|&e| {
                DateTime::<Utc>::from_timestamp(e, 0)
                    .unwrap()
                    .with_timezone(&tz)
                    .to_rfc3339()
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{:?} in {} after {} ({}):\n    ours:    {}\n    cronsim: {}",
        case.expr,
        case.zone,
        case.start.to_rfc3339(),
        case.start.with_timezone(&tz).to_rfc3339(),
        show(ours),
        show(theirs)
    )
}

/// Prints what was compared and the explained classes, then fails on any
/// unexplained disagreement, too few comparisons or too many explained
/// differences.
fn report_and_check_agreement(
    cases: &[Case],
    compared: usize,
    classes: &BTreeMap<Class, usize>,
    examples: &BTreeMap<Class, String>,
    mismatches: &[String],
) {
    eprintln!(
        "cronsim oracle: {compared} of {} cases compared, explained differences: {classes:?}",
        cases.len()
    );
    for (class, example) in examples {
        eprintln!("  e.g. {class:?}: {example}");
    }
    assert!(
        mismatches.is_empty(),
        "{} disagreement(s) with cronsim; first ones:\n  {}",
        mismatches.len(),
        mismatches
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    // Nearly every generated expression must be compared, and the explained
    // classes must stay a small share (they only occur near DST transitions).
    assert!(
        compared >= cases.len() * 95 / 100,
        "only {compared} cases compared"
    );
    let explained: usize = classes.values().sum();
    assert!(
        explained * 10 <= compared,
        "{explained} explained differences is too many"
    );
}
