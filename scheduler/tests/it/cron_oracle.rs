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

use chrono::{DateTime, Duration, LocalResult, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use gatehouse_scheduler::schedule::Schedule;
use serde::{Deserialize, Serialize};

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

// ----------------------------------------------------------- classification

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    CronsimBeforeStart,
    CronsimSubHourDst,
    MidnightGapHour,
    OneValueRangeStep,
    SixFieldFixedTime,
}

/// Whether `t` is in the first hour of a local day whose midnight falls in a
/// spring-forward gap (America/Sao_Paulo until 2019: 00:00 -03 -> 01:00 -02).
fn in_hour_after_midnight_gap(tz: Tz, t: DateTime<Utc>) -> bool {
    let local = t.with_timezone(&tz).naive_local();
    let midnight = local.date().and_hms_opt(0, 0, 0).unwrap();
    if !matches!(tz.from_local_datetime(&midnight), LocalResult::None) {
        return false;
    }
    let Some(day_start) = (1..=180)
        .map(|m| midnight + Duration::minutes(m))
        .find(|l| !matches!(tz.from_local_datetime(l), LocalResult::None))
    else {
        return false;
    };
    local < day_start + Duration::hours(1)
}

/// cronsim's reading of `expr`: a one-value range with a step, `a-a/n`,
/// becomes `a-MAX/n` (cronsim treats any one-value term before '/' as a
/// start, like `a/n`). None when `expr` has no such term.
fn cronsim_one_value_ranges(expr: &str) -> Option<String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    // The largest value cronsim allows in each field, seconds first.
    const MAX: [u32; 6] = [59, 59, 23, 31, 12, 7];
    let skip = 6 - fields.len();
    let mut changed = false;
    let rewritten: Vec<String> = fields
        .iter()
        .zip(&MAX[skip..])
        .map(|(field, max)| {
            field
                .split(',')
                .map(|t| {
                    let Some((range, step)) = t.split_once('/') else {
                        return t.to_string();
                    };
                    match range.split_once('-') {
                        Some((a, b)) if a == b && a.parse::<u32>().is_ok() => {
                            changed = true;
                            format!("{a}-{max}/{step}")
                        }
                        _ => t.to_string(),
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    changed.then(|| rewritten.join(" "))
}

/// cronsim (like Debian cron) gives its DST treatment only to 5-field
/// expressions whose minute and hour fields do not start with `*`.
fn cronsim_fixed_time(expr: &str) -> bool {
    let f: Vec<&str> = expr.split_whitespace().collect();
    f.len() == 5 && !f[0].starts_with('*') && !f[1].starts_with('*')
}

/// Vixie cron's fixed-time jobs, and ours: minute and hour do not start
/// with `*` (the last five fields of a 6-field expression).
fn vixie_fixed_time(expr: &str) -> bool {
    let f: Vec<&str> = expr.split_whitespace().collect();
    let skip = f.len().saturating_sub(5);
    f.len() >= 5 && !f[skip].starts_with('*') && !f[skip + 1].starts_with('*')
}

fn is_second_pass(tz: Tz, t: DateTime<Utc>) -> bool {
    let local = t.with_timezone(&tz).naive_local();
    matches!(tz.from_local_datetime(&local), LocalResult::Ambiguous(first, _) if first.with_timezone(&Utc) < t)
}

fn is_first_pass(tz: Tz, t: DateTime<Utc>) -> bool {
    let local = t.with_timezone(&tz).naive_local();
    matches!(tz.from_local_datetime(&local), LocalResult::Ambiguous(first, _) if first.with_timezone(&Utc) == t)
}

fn is_spring_forward(tz: Tz, t: DateTime<Utc>) -> bool {
    let before = tz
        .offset_from_utc_datetime(&(t - Duration::seconds(1)).naive_utc())
        .fix();
    let at = tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    at.local_minus_utc() > before.local_minus_utc()
}

/// Explains a difference by one documented class, or returns None (a bug).
/// Each class removes exactly the times its rule predicts from one side;
/// what remains must then agree.
fn classify(case: &Case, ours: &[i64], theirs: &[i64]) -> Option<Class> {
    let tz: Tz = case.zone.parse().ok()?;
    let at = |e: i64| DateTime::<Utc>::from_timestamp(e, 0).expect("epoch in range");
    let agree = |a: &[i64], b: &[i64]| {
        let n = a.len().min(b.len());
        n > 0 && a[..n] == b[..n]
    };
    let cronsim_fixed = cronsim_fixed_time(&case.expr);

    if !cronsim_fixed {
        if cronsim_skips_after_sub_hour_shift(tz, ours, theirs) {
            return Some(Class::CronsimSubHourDst);
        }
        let ours_m: Vec<i64> = ours
            .iter()
            .copied()
            .filter(|&e| theirs.contains(&e) || !in_hour_after_midnight_gap(tz, at(e)))
            .collect();
        if ours_m.len() < ours.len() && agree(&ours_m, theirs) {
            return Some(Class::MidnightGapHour);
        }
    }
    if !cronsim_fixed && vixie_fixed_time(&case.expr) {
        // cronsim on real time, we once per wall-clock time.
        let theirs_f: Vec<i64> = theirs
            .iter()
            .copied()
            .filter(|&e| !is_second_pass(tz, at(e)))
            .collect();
        if theirs_f.len() < theirs.len() && agree(ours, &theirs_f) {
            return Some(Class::SixFieldFixedTime);
        }
        let ours_f: Vec<i64> = ours
            .iter()
            .copied()
            .filter(|&e| !is_spring_forward(tz, at(e)) || theirs.contains(&e))
            .collect();
        if ours_f.len() < ours.len() && agree(&ours_f, theirs) {
            return Some(Class::SixFieldFixedTime);
        }
    }
    if cronsim_fixed {
        let start = case.start;
        let theirs_f: Vec<i64> = theirs
            .iter()
            .copied()
            .filter(|&e| !(at(e) <= start && is_first_pass(tz, at(e)) && is_second_pass(tz, start)))
            .collect();
        if theirs_f.len() < theirs.len() && agree(ours, &theirs_f) {
            return Some(Class::CronsimBeforeStart);
        }
    }
    None
}

/// cronsim's Lord Howe bug: within a day after a 30-minute clock shift it
/// only ever *drops* fire times. True when the first difference is there
/// and every time cronsim answers (up to our last) is one of ours.
fn cronsim_skips_after_sub_hour_shift(tz: Tz, ours: &[i64], theirs: &[i64]) -> bool {
    let at = |e: i64| DateTime::<Utc>::from_timestamp(e, 0).expect("epoch in range");
    let Some(first_diff) = ours
        .iter()
        .zip(theirs)
        .find(|(a, b)| a != b)
        .map(|(a, b)| *a.min(b))
    else {
        return false;
    };
    let t = at(first_diff);
    let shift = |u: DateTime<Utc>| {
        tz.offset_from_utc_datetime(&u.naive_utc())
            .fix()
            .local_minus_utc()
    };
    let near_sub_hour_transition = (0..=24).any(|h| {
        let (a, b) = (t - Duration::hours(h + 1), t - Duration::hours(h));
        shift(a) != shift(b) && (shift(a) - shift(b)) % 3600 != 0
    });
    let last = ours.last().copied().unwrap_or(i64::MIN);
    near_sub_hour_transition
        && theirs
            .iter()
            .filter(|&&e| e <= last)
            .all(|e| ours.contains(e))
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
            None => {
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
                mismatches.push(format!(
                    "{:?} in {} after {} ({}):\n    ours:    {}\n    cronsim: {}",
                    case.expr,
                    case.zone,
                    case.start.to_rfc3339(),
                    case.start.with_timezone(&tz).to_rfc3339(),
                    show(&ours),
                    show(theirs)
                ));
            }
        }
    }

    eprintln!(
        "cronsim oracle: {compared} of {} cases compared, explained differences: {classes:?}",
        cases.len()
    );
    for (class, example) in &examples {
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
