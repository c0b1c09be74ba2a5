//! Scheduled jobs (UTC): "daily at HH:MM" and "every N minutes". Each schedule divides time
//! into slots; every worker enqueues the current slot's job under a dedup key naming the kind
//! and the slot, so however many nodes run, each slot's job is stored once and runs once. A
//! slot missed while no worker ran (the nodes were down at 03:00) is run when one starts.
//! Full cron syntax is not needed yet; if it is, take a maintained parser (`croner`).

use chrono::{DateTime, Duration, NaiveTime, Timelike, Utc};
use rampart_store::jobs::JobSubject;

use crate::job::Job;
use crate::job::QueueError;

/// When a scheduled job runs, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Once a day at this time (UTC).
    DailyAt(NaiveTime),
    /// Every so many minutes, in slots counted from the Unix epoch (so every node agrees).
    EveryMinutes(u32),
}

/// Why a schedule is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not a `HH:MM` time of day.
    #[error("`{0}` is not a time of day: expected HH:MM (24-hour, UTC), e.g. 03:00")]
    BadTime(String),
    /// Minutes out of range.
    #[error("a schedule runs every 1 to 1440 minutes")]
    BadInterval,
}

impl Schedule {
    /// Daily at `HH:MM` UTC.
    pub fn daily_at(text: &str) -> Result<Self, ScheduleError> {
        NaiveTime::parse_from_str(text.trim(), "%H:%M")
            .map(Schedule::DailyAt)
            .map_err(|_| ScheduleError::BadTime(text.to_owned()))
    }

    /// Every `minutes` minutes (1 to 1440).
    pub fn every_minutes(minutes: u32) -> Result<Self, ScheduleError> {
        if (1..=1440).contains(&minutes) {
            Ok(Schedule::EveryMinutes(minutes))
        } else {
            Err(ScheduleError::BadInterval)
        }
    }

    /// The slot that `now` falls in: the latest scheduled time at or before `now`.
    pub fn slot_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let now = now.with_nanosecond(0).unwrap_or(now);
        match *self {
            Schedule::DailyAt(at) => {
                let today = now.date_naive().and_time(at).and_utc();
                if today <= now {
                    today
                } else {
                    today - Duration::days(1)
                }
            }
            Schedule::EveryMinutes(minutes) => {
                let period = i64::from(minutes.max(1)) * 60;
                let secs = now.timestamp();
                DateTime::from_timestamp(secs - secs.rem_euclid(period), 0).unwrap_or(now)
            }
        }
    }

    /// The slot after `slot`.
    pub fn next_after(&self, slot: DateTime<Utc>) -> DateTime<Utc> {
        match *self {
            Schedule::DailyAt(_) => self.slot_at(slot + Duration::days(1)),
            Schedule::EveryMinutes(m) => self.slot_at(slot + Duration::minutes(i64::from(m))),
        }
    }
}

/// A job kind on a schedule, as a worker enqueues it.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub(crate) kind: &'static str,
    pub(crate) payload: String,
    pub(crate) subject: JobSubject,
    pub(crate) max_attempts: u32,
    pub(crate) schedule: Schedule,
}

impl Scheduled {
    /// `job` on `schedule`.
    pub fn new<J: Job>(job: &J, schedule: Schedule) -> Result<Self, QueueError> {
        Ok(Self {
            kind: J::KIND,
            payload: crate::job::payload(job)?,
            subject: job.subject(),
            max_attempts: J::MAX_ATTEMPTS,
            schedule,
        })
    }

    /// The dedup key of this schedule's run in `slot`: the same on every node.
    pub fn dedup_key(&self, slot: DateTime<Utc>) -> String {
        format!(
            "schedule:{}@{}",
            self.kind,
            slot.format("%Y-%m-%dT%H:%M:%SZ")
        )
    }

    /// The schedule.
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// The job kind.
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn daily_slots_fall_on_the_time_of_day_today_or_yesterday() {
        let s = Schedule::daily_at("03:00").unwrap();
        assert_eq!(
            s.slot_at(at("2026-12-08T10:00:00Z")),
            at("2026-12-08T03:00:00Z")
        );
        assert_eq!(
            s.slot_at(at("2026-12-08T03:00:00Z")),
            at("2026-12-08T03:00:00Z")
        );
        assert_eq!(
            s.slot_at(at("2026-12-08T02:59:59.9Z")),
            at("2026-12-07T03:00:00Z")
        );
        assert_eq!(
            s.slot_at(at("2027-01-01T00:30:00Z")),
            at("2026-12-31T03:00:00Z")
        );
        assert_eq!(
            s.next_after(at("2026-12-08T03:00:00Z")),
            at("2026-12-09T03:00:00Z")
        );
    }

    #[test]
    fn interval_slots_are_counted_from_the_epoch() {
        let s = Schedule::every_minutes(15).unwrap();
        assert_eq!(
            s.slot_at(at("2026-12-08T10:14:59Z")),
            at("2026-12-08T10:00:00Z")
        );
        assert_eq!(
            s.slot_at(at("2026-12-08T10:15:00Z")),
            at("2026-12-08T10:15:00Z")
        );
        assert_eq!(
            s.next_after(at("2026-12-08T23:45:00Z")),
            at("2026-12-09T00:00:00Z")
        );
    }

    #[test]
    fn bad_schedules_are_refused_with_the_reason() {
        for bad in ["3am", "24:00", "03:60", "", "03:00:00"] {
            let e = Schedule::daily_at(bad).unwrap_err();
            assert!(e.to_string().contains("HH:MM"), "{bad}: {e}");
        }
        assert_eq!(Schedule::every_minutes(0), Err(ScheduleError::BadInterval));
        assert_eq!(
            Schedule::every_minutes(1441),
            Err(ScheduleError::BadInterval)
        );
    }
}
