//! Cron schedules for jobs: parsing, next fire times and catch-up. (The
//! scheduler's settings and jobs are `scheduler.rs`; this module only
//! answers "when does this expression fire next".)
//!
//! Expressions are evaluated by the `croner` crate on *naive* local times;
//! the DST rules are ours, and they are Vixie cron's (cron.c), which split
//! jobs in two by their minute and hour fields:
//!
//! * **Fixed-time jobs** (neither field starts with `*`: `30 2 * * *`,
//!   `0 9-17 * * 1-5`): a schedule is a set of wall-clock times, and each
//!   fires exactly once. A time that does not exist (spring-forward gap)
//!   fires at the first instant after the gap (02:30 Europe/Berlin → 03:00
//!   CEST); a time that exists twice (fall-back) fires at its first
//!   occurrence only. [`Schedule::resolve`] maps each matching local time to
//!   an instant; that map never goes backwards in time, which is what lets
//!   the searches below stay simple.
//! * **Wildcard jobs** (minute or hour starts with `*`: `*/15 * * * *`,
//!   `0 * * * *`, `@hourly`, `0 */2 * * *`) run on real time: at every
//!   instant whose wall-clock time matches, so both passes of a repeated
//!   hour and nothing for the skipped one (see `cron/real_time.rs`).
//!
//! A 6-field expression is classified by its minute and hour too: Vixie
//! has no seconds field, and `0 30 2 * * *` is the job `30 2 * * *`.
//!
//! Day matching follows Vixie cron: when the day-of-month and day-of-week
//! fields are both restricted a day matches if *either* does; a field that
//! starts with `*` (like `*/2`) counts as unrestricted for that rule, so the
//! two are then combined with AND.

use std::fmt::Write as _;

use chrono::{
    DateTime, Duration, FixedOffset, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

mod real_time;
#[cfg(test)]
mod tests;

/// The zone a job uses when it names none.
pub fn default_timezone() -> &'static str {
    "UTC"
}

/// Why an expression or time zone was refused. The messages are shown to
/// users, so they say what is wrong and, where it helps, what to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron expression {expr:?}: {reason}")]
    InvalidExpression { expr: String, reason: String },
    #[error("unknown time zone {name:?}: use an IANA name such as \"UTC\" or \"Europe/Berlin\"")]
    UnknownTimezone { name: String },
    #[error("cron expression {expr:?} never fires: {reason}")]
    NeverFires { expr: String, reason: String },
}

/// A parsed cron schedule in one IANA time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
    expr: String,
    timezone: String,
    /// The six normalised fields (seconds first, names replaced by numbers),
    /// kept for [`Schedule::describe`].
    fields: [String; 6],
    /// A Vixie "wildcard" job (minute or hour starts with `*`): fires on
    /// real time around DST changes, see the module docs.
    real_time: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl Field {
    const ALL: [Field; 6] = [
        Field::Second,
        Field::Minute,
        Field::Hour,
        Field::DayOfMonth,
        Field::Month,
        Field::DayOfWeek,
    ];

    fn name(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        }
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn macro_fields(name: &str) -> Result<&'static str, String> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        "@reboot" => {
            return Err(
                "@reboot is not supported: the scheduler runs jobs on a time \
                 schedule and has no notion of a machine boot; use a time-based \
                 expression such as @daily"
                    .to_string(),
            )
        }
        _ => {
            return Err(format!(
                "unknown macro {name:?} (known: @yearly, @annually, @monthly, @weekly, \
                 @daily, @midnight, @hourly)"
            ))
        }
    })
}

/// Upper-cases one field, replaces month and weekday names by numbers and
/// checks that every letter left is one croner should see there. Croner
/// itself replaces names anywhere in the pattern (so `MON` in the month
/// field would silently mean January), hence the per-field pass here.
fn normalize_field(field: Field, raw: &str) -> Result<String, String> {
    let upper = raw.to_ascii_uppercase();
    if upper.split(',').any(str::is_empty) {
        return Err(format!("empty list item in the {} field", field.name()));
    }
    if upper.contains('+') {
        return Err(format!(
            "'+' is not supported in the {} field (day-of-month and day-of-week \
             combine as in Vixie cron)",
            field.name()
        ));
    }
    let mut out = String::with_capacity(upper.len());
    let mut chars = upper.chars().peekable();
    while let Some(c) = chars.next() {
        if !c.is_ascii_alphabetic() {
            if c == '?' && !matches!(field, Field::DayOfMonth | Field::DayOfWeek) {
                return Err(format!("'?' is not allowed in the {} field", field.name()));
            }
            out.push(c);
            continue;
        }
        let mut word = String::from(c);
        while let Some(&next) = chars.peek() {
            if !next.is_ascii_alphabetic() {
                break;
            }
            word.push(next);
            chars.next();
        }
        let replaced = match field {
            Field::Month => MONTHS
                .iter()
                .position(|m| *m == word)
                .map(|i| (i + 1).to_string())
                .ok_or_else(|| format!("unknown month name {word:?} (use JAN-DEC or 1-12)"))?,
            Field::DayOfWeek => {
                // A name may carry croner's "last" suffix: FRIL = 5L.
                let (name, last) = match word.strip_suffix('L') {
                    Some(stem) if stem.len() == 3 => (stem, "L"),
                    _ => (word.as_str(), ""),
                };
                if let Some(i) = WEEKDAYS.iter().position(|d| *d == name) {
                    format!("{i}{last}")
                } else if word == "L"
                    && out
                        .chars()
                        .last()
                        .is_some_and(|p| p.is_ascii_digit() || p == '#')
                {
                    word.clone()
                } else {
                    return Err(format!(
                        "unknown weekday name {word:?} (use SUN-SAT or 0-7, with \
                         an optional #N or L suffix)"
                    ));
                }
            }
            Field::DayOfMonth if matches!(word.as_str(), "L" | "W" | "LW") => word.clone(),
            _ => return Err(format!("unexpected {word:?} in the {} field", field.name())),
        };
        out.push_str(&replaced);
    }
    // Quartz-style "?" means "no restriction"; treat it as "*" so the
    // day-of-month/day-of-week rule below sees it as unrestricted.
    if out == "?" {
        out = "*".to_string();
    }
    Ok(out)
}

impl Schedule {
    /// Parses 5 fields (minute precision) or 6 fields (leading seconds), with
    /// month and weekday names, `L`, `W`, `#` and the macros `@yearly`,
    /// `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`.
    pub fn parse(expr: &str, timezone: &str) -> Result<Schedule, ScheduleError> {
        let invalid = |reason: String| ScheduleError::InvalidExpression {
            expr: expr.to_string(),
            reason,
        };
        let tz: Tz = timezone
            .parse()
            .map_err(|_| ScheduleError::UnknownTimezone {
                name: timezone.to_string(),
            })?;

        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err(invalid("the expression is empty".to_string()));
        }
        let source = if trimmed.starts_with('@') {
            macro_fields(trimmed).map_err(invalid)?
        } else {
            trimmed
        };
        let raw: Vec<&str> = source.split_whitespace().collect();
        let raw: Vec<&str> = match raw.len() {
            5 => std::iter::once("0").chain(raw).collect(),
            6 => raw,
            n => {
                return Err(invalid(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) \
                     or 6 (with leading seconds), got {n}"
                )))
            }
        };
        let mut fields: [String; 6] = Default::default();
        for ((slot, field), text) in fields.iter_mut().zip(Field::ALL).zip(&raw) {
            *slot = normalize_field(field, text).map_err(invalid)?;
        }

        // Vixie cron: a day field starting with '*' is "unrestricted", and an
        // unrestricted field is combined with AND (so it restricts nothing
        // unless it is a step like */2). Croner only treats a bare "*" that
        // way and ORs everything else, so ask for AND explicitly with its '+'.
        let (dom, dow) = (&fields[3], &fields[5]);
        let and_days = (dom.starts_with('*') || dow.starts_with('*')) && dom != "*" && dow != "*";
        let dow_for_croner = if and_days {
            format!("+{dow}")
        } else {
            dow.clone()
        };
        let pattern = format!(
            "{} {} {} {} {} {}",
            fields[0], fields[1], fields[2], fields[3], fields[4], dow_for_croner
        );
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Disallowed)
            .build()
            .parse(&pattern)
            .map_err(|e| invalid(e.to_string()))?;

        check_days_exist(&cron, &fields).map_err(|reason| ScheduleError::NeverFires {
            expr: expr.to_string(),
            reason,
        })?;

        let real_time = fields[1].starts_with('*') || fields[2].starts_with('*');
        Ok(Schedule {
            cron,
            tz,
            expr: expr.to_string(),
            timezone: timezone.to_string(),
            fields,
            real_time,
        })
    }

    pub fn expression(&self) -> &str {
        &self.expr
    }

    pub fn timezone_name(&self) -> &str {
        &self.timezone
    }

    /// Whether this is a Vixie "wildcard" job, which runs on real time
    /// across DST changes (both passes of a repeated hour, nothing for a
    /// skipped one) rather than once per wall-clock time.
    pub fn runs_on_real_time(&self) -> bool {
        self.real_time
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.real_time {
            return self.next_real_time(after);
        }
        let mut cursor = truncate(after.with_timezone(&self.tz).naive_local());
        loop {
            let local = self.cron.find_next_occurrence(&cursor, false).ok()?;
            let instant = self.resolve(local)?;
            // Only when `after` lies in the second pass of a repeated hour can
            // a later wall-clock time map to an earlier instant: those times
            // fired in the first pass, so skip them.
            if instant > after {
                return Some(instant);
            }
            cursor = local;
        }
    }

    /// The next `count` fire times strictly after `after`, with the zone's
    /// UTC offset at each.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<FixedOffset>> {
        let mut out = Vec::with_capacity(count);
        let mut at = after;
        while out.len() < count {
            let Some(next) = self.next_after(at) else {
                break;
            };
            out.push(next.with_timezone(&self.tz).fixed_offset());
            at = next;
        }
        out
    }

    /// The latest fire time in `(from, to]`, for catch-up after downtime.
    /// One backward search, however long the interval.
    pub fn latest_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.real_time {
            return self.latest_real_time(from, to);
        }
        if to <= from {
            return None;
        }
        let to_local = truncate(to.with_timezone(&self.tz).naive_local());
        // A fire time is at or before `to` exactly when its wall-clock time
        // is at or before `to`'s, except when `to` is in the second pass of a
        // repeated hour: then the rest of that hour already fired, in the
        // first pass, so search back from the end of the repeated hour.
        let (start, inclusive) = match self.tz.from_local_datetime(&to_local) {
            LocalResult::Ambiguous(first, _) if first < to => (self.end_of_fold(to_local), false),
            _ => (to_local, true),
        };
        let local = self.cron.find_previous_occurrence(&start, inclusive).ok()?;
        let instant = self.resolve(local)?;
        (instant > from && instant <= to).then_some(instant)
    }

    /// Maps a matching wall-clock time to the instant it fires at.
    fn resolve(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
            LocalResult::None => {
                let end = first_valid_local_after(&self.tz, local)?;
                self.tz
                    .from_local_datetime(&end)
                    .earliest()
                    .map(|t| t.with_timezone(&Utc))
            }
        }
    }

    /// The first wall-clock second after the repeated range holding `local`.
    fn end_of_fold(&self, local: NaiveDateTime) -> NaiveDateTime {
        let ambiguous = |t: &NaiveDateTime| {
            matches!(self.tz.from_local_datetime(t), LocalResult::Ambiguous(..))
        };
        first_where(local, |t| !ambiguous(t)).unwrap_or(local)
    }

    /// A short English description for the dashboard; the expression itself
    /// when it is too intricate to say briefly.
    pub fn describe(&self) -> String {
        describe_fields(&self.fields).unwrap_or_else(|| self.expr.trim().to_string())
    }
}

fn truncate(t: NaiveDateTime) -> NaiveDateTime {
    t.with_nanosecond(0).unwrap_or(t)
}

fn first_valid_local_after(tz: &Tz, local: NaiveDateTime) -> Option<NaiveDateTime> {
    first_where(local, |t| {
        !matches!(tz.from_local_datetime(t), LocalResult::None)
    })
}

/// The first second after `start` where `pred` holds, assuming it holds from
/// some point on within two days (DST gaps and folds last an hour or two;
/// the longest in the tz database, a skipped day, lasts 24 hours).
fn first_where(
    start: NaiveDateTime,
    pred: impl Fn(&NaiveDateTime) -> bool,
) -> Option<NaiveDateTime> {
    // Coarse minute steps, then back off second by second: transitions are
    // nearly always on a minute, but historical ones need not be.
    let mut t = start;
    for _ in 0..(48 * 60) {
        t += Duration::minutes(1);
        if pred(&t) {
            let mut best = t;
            for _ in 0..60 {
                let earlier = best - Duration::seconds(1);
                if earlier <= start || !pred(&earlier) {
                    break;
                }
                best = earlier;
            }
            return Some(best);
        }
    }
    None
}

/// Refuses day-of-month values that no chosen month has (`0 0 30 2 *`), when
/// the day-of-month alone decides the day. Croner would otherwise search for
/// thousands of years before giving up, on every call.
fn check_days_exist(cron: &Cron, fields: &[String; 6]) -> Result<(), String> {
    let p = &cron.pattern;
    // With day-of-week unrestricted or ANDed (Vixie), the day-of-month must occur.
    let dom_alone = fields[5].starts_with('*');
    if !dom_alone || p.days.has_modifiers() {
        return Ok(());
    }
    const LONGEST: [u16; 13] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let longest = p
        .months
        .values()
        .iter()
        .map(|&m| LONGEST.get(usize::from(m)).copied().unwrap_or(0))
        .max()
        .unwrap_or(0);
    match p.days.values().first() {
        Some(&first) if first > longest => Err(format!(
            "day {first} does not occur in the selected month(s), which have at most {longest} days"
        )),
        None => Err("no day of the month is selected".to_string()),
        _ => Ok(()),
    }
}

fn plain_number(s: &str) -> Option<u32> {
    s.parse().ok()
}

fn every_n(s: &str) -> Option<u32> {
    s.strip_prefix("*/").and_then(plain_number)
}

fn weekday_name(n: u32) -> &'static str {
    const NAMES: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    NAMES[(n % 7) as usize]
}

fn month_name(n: u32) -> Option<&'static str> {
    const NAMES: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    NAMES.get(usize::try_from(n.checked_sub(1)?).ok()?).copied()
}

fn plural(n: u32, unit: &str) -> String {
    if n == 1 {
        format!("every {unit}")
    } else {
        format!("every {n} {unit}s")
    }
}

/// The common shapes only; `None` means "show the expression instead".
fn describe_fields(f: &[String; 6]) -> Option<String> {
    let [sec, min, hour, dom, month, dow] = f.each_ref().map(String::as_str);
    let any_day = dom == "*" && month == "*" && dow == "*";

    // Sub-daily repetition, only on schedules that run every day.
    if any_day {
        match (sec, min, hour) {
            ("*", "*", "*") => return Some("every second".into()),
            (s, "*", "*") if every_n(s).is_some() => {
                return every_n(s).map(|n| plural(n, "second"))
            }
            ("0", "*", "*") => return Some("every minute".into()),
            ("0", m, "*") if every_n(m).is_some() => {
                return every_n(m).map(|n| plural(n, "minute"))
            }
            ("0", m, "*") => return plain_number(m).map(|m| format!("every hour at minute {m}")),
            ("0", m, h) if every_n(h).is_some() => {
                let (m, n) = (plain_number(m)?, every_n(h)?);
                return Some(format!("{} at minute {m}", plural(n, "hour")));
            }
            _ => {}
        }
    }

    // Otherwise: fixed times of day on some days.
    let minute = plain_number(min)?;
    let sec = plain_number(sec)?;
    let mut times = Vec::new();
    for h in hour.split(',') {
        let h = plain_number(h)?;
        times.push(if sec == 0 {
            format!("{h:02}:{minute:02}")
        } else {
            format!("{h:02}:{minute:02}:{sec:02}")
        });
    }
    let mut out = format!("at {}", times.join(" and "));
    let days = match (dom, month, dow) {
        ("*", "*", "*") => "every day".to_string(),
        ("*", "*", "1-5") => "on weekdays".to_string(),
        ("*", "*", "0,6" | "6,0" | "6,7") => "on weekends".to_string(),
        ("*", "*", d) => {
            let names: Option<Vec<_>> = d
                .split(',')
                .map(|x| plain_number(x).map(weekday_name))
                .collect();
            format!("every {}", names?.join(" and "))
        }
        ("L", "*", "*") => "on the last day of every month".to_string(),
        (d, "*", "*") => format!("on day {} of every month", plain_number(d)?),
        (d, m, "*") => format!("on {} {}", month_name(plain_number(m)?)?, plain_number(d)?),
        _ => return None,
    };
    let _ = write!(out, " {days}");
    Some(out)
}
