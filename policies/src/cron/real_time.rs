//! Fire times of "wildcard" jobs, which run on real time (Vixie cron).
//!
//! Vixie cron calls a job *wildcard* when its minute or hour field starts
//! with `*` (`*/15 * * * *`, `0 * * * *`, `@hourly`, `0 */2 * * *`; cron's
//! entry.c sets `MIN_STAR`/`HR_STAR`), and its main loop (cron.c) treats
//! those differently when the clock jumps:
//!
//! * forward (spring-forward): "run wildcard jobs once" for the current
//!   minute: the wall-clock times the clock skipped are not made up;
//! * backward (fall-back): "just run the wildcard jobs": they run again in
//!   the second pass of the repeated hour, so `*/15` keeps its 15-minute
//!   rhythm in real time instead of pausing for 75 minutes.
//!
//! Fixed-time jobs (neither field starts with `*`) keep the wall-clock rule
//! of the parent module: every matching time fires exactly once.
//!
//! So here a job fires at every instant whose wall-clock time in the zone
//! matches: times in a gap match no instant, times in a fold match two.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use super::{truncate, Schedule};

/// Which pass of a repeated wall-clock time.
#[derive(Clone, Copy)]
enum Pass {
    First,
    Second,
}

impl Schedule {
    /// The first instant strictly after `after` whose wall-clock time
    /// matches, both passes of a repeated hour included.
    pub(super) fn next_real_time(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = truncate(after.with_timezone(&self.tz).naive_local());
        let (mut cursor, mut inclusive) = (local, false);
        if let LocalResult::Ambiguous(first, second) = self.tz.from_local_datetime(&local) {
            let (fold_start, fold_end) = self.fold_bounds(local, first, second);
            let in_fold = |l: &NaiveDateTime| *l < fold_end;
            if first.timestamp() == after.timestamp() {
                // The rest of the first pass, then all of the second.
                if let Some(l) = self.next_local(local, false).filter(in_fold) {
                    return self.at(l, Pass::First);
                }
                if let Some(l) = self.next_local(fold_start, true).filter(in_fold) {
                    return self.at(l, Pass::Second);
                }
            } else if let Some(l) = self.next_local(local, false).filter(in_fold) {
                return self.at(l, Pass::Second);
            }
            (cursor, inclusive) = (fold_end, true);
        }
        loop {
            let l = self.next_local(cursor, inclusive)?;
            match self.tz.from_local_datetime(&l) {
                LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
                // `after` is before the fold: its first pass comes first.
                LocalResult::Ambiguous(first, _) => return Some(first.with_timezone(&Utc)),
                // Skipped by the clock: no instant has this time.
                LocalResult::None => (cursor, inclusive) = (l, false),
            }
        }
    }

    /// The latest instant in `(from, to]` whose wall-clock time matches.
    pub(super) fn latest_real_time(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if to <= from {
            return None;
        }
        self.previous_real_time(to)
            .filter(|t| *t > from && *t <= to)
    }

    /// The latest matching instant at or before `to`.
    fn previous_real_time(&self, to: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = truncate(to.with_timezone(&self.tz).naive_local());
        let (mut cursor, mut inclusive) = (local, true);
        if let LocalResult::Ambiguous(first, second) = self.tz.from_local_datetime(&local) {
            let (fold_start, fold_end) = self.fold_bounds(local, first, second);
            let in_fold = |l: &NaiveDateTime| *l >= fold_start;
            if first.timestamp() == to.timestamp() {
                if let Some(l) = self.previous_local(local, true).filter(in_fold) {
                    return self.at(l, Pass::First);
                }
            } else {
                // Back through the second pass, then all of the first.
                if let Some(l) = self.previous_local(local, true).filter(in_fold) {
                    return self.at(l, Pass::Second);
                }
                if let Some(l) = self.previous_local(fold_end, false).filter(in_fold) {
                    return self.at(l, Pass::First);
                }
            }
            (cursor, inclusive) = (fold_start, false);
        }
        loop {
            let l = self.previous_local(cursor, inclusive)?;
            match self.tz.from_local_datetime(&l) {
                LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
                // `to` is after the fold: its second pass came last.
                LocalResult::Ambiguous(_, second) => return Some(second.with_timezone(&Utc)),
                LocalResult::None => (cursor, inclusive) = (l, false),
            }
        }
    }

    fn next_local(&self, from: NaiveDateTime, inclusive: bool) -> Option<NaiveDateTime> {
        self.cron.find_next_occurrence(&from, inclusive).ok()
    }

    fn previous_local(&self, from: NaiveDateTime, inclusive: bool) -> Option<NaiveDateTime> {
        self.cron.find_previous_occurrence(&from, inclusive).ok()
    }

    /// The instant of wall-clock time `local` in a fold, in `pass`.
    fn at(&self, local: NaiveDateTime, pass: Pass) -> Option<DateTime<Utc>> {
        match (self.tz.from_local_datetime(&local), pass) {
            (LocalResult::Single(t), _) => Some(t.with_timezone(&Utc)),
            (LocalResult::Ambiguous(first, _), Pass::First) => Some(first.with_timezone(&Utc)),
            (LocalResult::Ambiguous(_, second), Pass::Second) => Some(second.with_timezone(&Utc)),
            (LocalResult::None, _) => None,
        }
    }

    /// The repeated wall-clock range `[start, end)` holding `local`, whose
    /// two instants are `first` and `second`.
    fn fold_bounds(
        &self,
        local: NaiveDateTime,
        first: DateTime<Tz>,
        second: DateTime<Tz>,
    ) -> (NaiveDateTime, NaiveDateTime) {
        let end = self.end_of_fold(local);
        let repeated =
            first.offset().fix().local_minus_utc() - second.offset().fix().local_minus_utc();
        (end - chrono::Duration::seconds(i64::from(repeated)), end)
    }
}
