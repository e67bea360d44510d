//! "Every N days at HH:MM" schedules in a local account's time zone (CSSM sync, device pull).
//!
//! Cron cannot say "every 3 days" across month ends, so a schedule stores its next run time and
//! moves it forward after each run; the cron job only checks which schedules are due.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Longest interval between runs.
pub const MAX_EVERY_DAYS: u16 = 365;

/// A validated schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Days between runs, 1 to 365.
    pub every_days: u16,
    /// Local hour, 0 to 23.
    pub hour: u8,
    /// Local minute, 0 to 59.
    pub minute: u8,
    /// IANA time zone, e.g. `Europe/Paris`.
    pub time_zone: Tz,
}

impl Schedule {
    /// Builds a schedule, refusing out-of-range values with a message naming the field.
    pub fn new(every_days: u16, hour: u8, minute: u8, time_zone: &str) -> Result<Self, String> {
        if !(1..=MAX_EVERY_DAYS).contains(&every_days) {
            return Err(format!("every_days must be between 1 and {MAX_EVERY_DAYS}"));
        }
        if hour > 23 {
            return Err("hour must be between 0 and 23".into());
        }
        if minute > 59 {
            return Err("minute must be between 0 and 59".into());
        }
        let time_zone: Tz = time_zone
            .parse()
            .map_err(|_| format!("time_zone '{time_zone}' is not an IANA time zone"))?;
        Ok(Self {
            every_days,
            hour,
            minute,
            time_zone,
        })
    }

    /// `HH:MM` on `date` in the schedule's zone; a time skipped by a DST change runs an hour
    /// later, a repeated one at its first occurrence.
    fn at(&self, date: NaiveDate) -> DateTime<Utc> {
        let time = NaiveTime::from_hms_opt(self.hour.into(), self.minute.into(), 0)
            .unwrap_or(NaiveTime::MIN);
        let local = date.and_time(time);
        let resolved = self
            .time_zone
            .from_local_datetime(&local)
            .earliest()
            .or_else(|| {
                self.time_zone
                    .from_local_datetime(&(local + chrono::Duration::hours(1)))
                    .earliest()
            });
        match resolved {
            Some(t) => t.with_timezone(&Utc),
            // No zone skips two hours; fall back to reading the wall time as UTC.
            None => Utc.from_utc_datetime(&local),
        }
    }

    /// The first run of a new schedule: the next `HH:MM` strictly after `now`.
    pub fn first_run_after(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let today = now.with_timezone(&self.time_zone).date_naive();
        let candidate = self.at(today);
        if candidate > now {
            candidate
        } else {
            self.at(today + Days::new(1))
        }
    }

    /// The run after one that was due at `previous`: `every_days` later at `HH:MM`, skipping
    /// runs missed while Outpost was down so a backlog never piles up.
    pub fn next_run_after(&self, previous: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        let mut date = previous.with_timezone(&self.time_zone).date_naive();
        loop {
            date = date + Days::new(self.every_days.into());
            let next = self.at(date);
            if next > now {
                return next;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn first_run_is_today_or_tomorrow_in_local_time() {
        let s = Schedule::new(1, 2, 30, "Europe/Paris").unwrap();
        // 00:00 UTC is 01:00 in Paris (winter): 02:30 Paris is still ahead today.
        assert_eq!(
            s.first_run_after(utc("2026-01-10T00:00:00Z")),
            utc("2026-01-10T01:30:00Z")
        );
        assert_eq!(
            s.first_run_after(utc("2026-01-10T01:30:00Z")),
            utc("2026-01-11T01:30:00Z")
        );
    }

    #[test]
    fn every_three_days_crosses_month_end_and_skips_missed_runs() {
        let s = Schedule::new(3, 6, 0, "UTC").unwrap();
        let prev = utc("2026-01-30T06:00:00Z");
        assert_eq!(s.next_run_after(prev, prev), utc("2026-02-02T06:00:00Z"));
        // Down for ten days: the next run is the first one still ahead, not a backlog.
        assert_eq!(
            s.next_run_after(prev, utc("2026-02-09T12:00:00Z")),
            utc("2026-02-11T06:00:00Z")
        );
    }

    #[test]
    fn dst_gap_runs_an_hour_later() {
        // 2026-03-29 02:30 does not exist in Paris.
        let s = Schedule::new(1, 2, 30, "Europe/Paris").unwrap();
        assert_eq!(
            s.first_run_after(utc("2026-03-28T23:00:00Z")),
            utc("2026-03-29T01:30:00Z")
        );
    }

    #[test]
    fn refuses_bad_fields() {
        assert!(
            Schedule::new(0, 1, 1, "UTC")
                .unwrap_err()
                .contains("every_days")
        );
        assert!(Schedule::new(1, 24, 1, "UTC").unwrap_err().contains("hour"));
        assert!(
            Schedule::new(1, 1, 60, "UTC")
                .unwrap_err()
                .contains("minute")
        );
        assert!(
            Schedule::new(1, 1, 1, "Mars/Olympus")
                .unwrap_err()
                .contains("time_zone")
        );
    }

    proptest! {
        #[test]
        fn next_run_is_always_ahead_and_at_most_a_period_away(
            every in 1u16..=30, hour in 0u8..24, minute in 0u8..60,
            prev_secs in 1_700_000_000i64..1_900_000_000, lag in 0i64..10_000_000,
        ) {
            let s = Schedule::new(every, hour, minute, "America/New_York").unwrap();
            let prev = DateTime::from_timestamp(prev_secs, 0).unwrap();
            let now = prev + chrono::Duration::seconds(lag);
            let next = s.next_run_after(prev, now);
            prop_assert!(next > now);
            // One period from the previous run's day, plus a day for its time of day and a DST hour.
            prop_assert!(next - prev <= chrono::Duration::days(i64::from(every) + 1) + chrono::Duration::hours(1) || next - now <= chrono::Duration::days(every.into()) + chrono::Duration::hours(1));
            let first = s.first_run_after(now);
            prop_assert!(first > now && first - now <= chrono::Duration::hours(25));
        }
    }
}
