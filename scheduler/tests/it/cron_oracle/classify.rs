//! Recognising the documented differences from cronsim (see the parent
//! module's docs): each class removes exactly the times its rule predicts
//! from one side, and what remains must then agree.

use chrono::{DateTime, Duration, LocalResult, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use super::Case;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Class {
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
pub(super) fn cronsim_one_value_ranges(expr: &str) -> Option<String> {
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
pub(super) fn classify(case: &Case, ours: &[i64], theirs: &[i64]) -> Option<Class> {
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
