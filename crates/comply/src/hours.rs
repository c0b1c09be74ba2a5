//! Time-based checks: calling hours (federal and state, with day-of-week and holiday bans) and
//! the campaign window, evaluated in each of the recipient's zones, and the search for the next
//! instant at which all of them hold.
//!
//! **Correctness of the search.** Every check is a union of half-open windows of some clock's
//! local day (the recipient's wall clock in each zone, the zone's standard time for a state whose
//! statute is written in standard time, or the campaign's own zone). A check can only turn from
//! false to true where its clock reaches a window start, where its clock passes midnight (a new
//! day with different rules), or where its clock jumps (a DST transition). The search tries
//! exactly those instants (every window start and midnight of every local day in the horizon,
//! both instants of an ambiguous local time, and every offset transition, found by bisection),
//! in order, and returns the first at which everything holds. A local time that does not exist
//! (inside a spring-forward gap) is reached at the transition instant, which is tried.

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset,
};
use chrono::{TimeZone, Timelike, Utc, Weekday};
use chrono_tz::{OffsetComponents, Tz};

use crate::facts::CampaignWindow;
use crate::rules::{DayRule, StateRule, Window};

/// A clock a check is read on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clock {
    /// The zone's wall-clock time (DST included).
    Wall(Tz),
    /// The zone's standard time (DST ignored).
    Standard(Tz),
}

impl Clock {
    /// The clock's reading at `at`; `None` past the ends of chrono's calendar (no decision can
    /// be made there, so the caller treats it as outside every window).
    fn local(self, at: DateTime<Utc>) -> Option<NaiveDateTime> {
        let offset = self.tz().offset_from_utc_datetime(&at.naive_utc());
        let shift = match self {
            Clock::Wall(_) => offset.fix(),
            Clock::Standard(_) => {
                FixedOffset::east_opt(i32::try_from(offset.base_utc_offset().num_seconds()).ok()?)?
            }
        };
        at.naive_utc().checked_add_offset(shift)
    }

    /// The instants at which this clock reads `local`.
    fn instants(self, local: NaiveDateTime, out: &mut Vec<DateTime<Utc>>) {
        match self {
            Clock::Wall(tz) => match tz.from_local_datetime(&local) {
                chrono::LocalResult::Single(t) => out.push(t.to_utc()),
                chrono::LocalResult::Ambiguous(a, b) => {
                    out.push(a.to_utc());
                    out.push(b.to_utc());
                }
                // In a gap: reached at the transition, which `transitions` adds.
                chrono::LocalResult::None => {}
            },
            Clock::Standard(tz) => {
                let base = tz.offset_from_utc_datetime(&local).base_utc_offset();
                if let Some(utc) = local.checked_sub_signed(base) {
                    out.push(utc.and_utc());
                }
            }
        }
    }

    fn tz(self) -> Tz {
        match self {
            Clock::Wall(tz) | Clock::Standard(tz) => tz,
        }
    }
}

fn offset_secs(tz: Tz, at: DateTime<Utc>) -> i32 {
    tz.offset_from_utc_datetime(&at.naive_utc())
        .fix()
        .local_minus_utc()
}

/// Every instant in `(from, to]` at which `tz`'s UTC offset changes (a DST transition), to the
/// second. Assumes at most one change in any six hours, true of every real zone.
fn transitions(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>, out: &mut Vec<DateTime<Utc>>) {
    let step = Duration::hours(6);
    let mut lo = from;
    let mut lo_off = offset_secs(tz, lo);
    while lo < to {
        let hi = lo.checked_add_signed(step).unwrap_or(to).min(to);
        let hi_off = offset_secs(tz, hi);
        if hi_off != lo_off {
            // Bisect in whole seconds (lo has the old offset, hi the new): transitions fall on
            // whole seconds.
            let (mut a, mut b) = (lo.timestamp(), hi.timestamp());
            while b - a > 1 {
                let mid = a + (b - a) / 2;
                match DateTime::from_timestamp(mid, 0) {
                    Some(t) if offset_secs(tz, t) == lo_off => a = mid,
                    Some(_) => b = mid,
                    None => break,
                }
            }
            if let Some(t) = DateTime::from_timestamp(b, 0) {
                out.push(t);
            }
        }
        if hi <= lo {
            break;
        }
        lo = hi;
        lo_off = hi_off;
    }
}

fn at_secs(date: NaiveDate, secs: u32) -> Option<NaiveDateTime> {
    Some(date.and_time(NaiveTime::from_num_seconds_from_midnight_opt(secs, 0)?))
}

fn day_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Sat => "Saturdays",
        Weekday::Sun => "Sundays",
        _ => "weekdays",
    }
}

/// The message for an instant whose local time chrono cannot represent.
const OUT_OF_RANGE: &str = "the recipient's local time is outside the supported calendar";

/// Calling hours for a phone channel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Calling<'a> {
    pub(crate) federal: Window,
    pub(crate) state: Option<&'a StateRule>,
}

/// Where the campaign window is read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CampaignClock {
    /// In the campaign's own zone.
    Own(Tz),
    /// In each of the recipient's zones.
    Recipient,
}

/// The time-based checks of one decision.
#[derive(Debug, Clone)]
pub(crate) struct Plan<'a> {
    /// The recipient's zones (all of a multi-zone state's when no explicit zone is known).
    pub(crate) zones: Vec<Tz>,
    pub(crate) calling: Option<Calling<'a>>,
    pub(crate) campaign: Option<(CampaignWindow, CampaignClock)>,
}

/// What blocked a send at an instant: a message per time-based reason.
#[derive(Debug, Default)]
pub(crate) struct Blocks {
    pub(crate) quiet: Option<String>,
    pub(crate) campaign: Option<String>,
}

impl Blocks {
    pub(crate) fn is_clear(&self) -> bool {
        self.quiet.is_none() && self.campaign.is_none()
    }
}

/// Why a state's rule blocks a local time; `None` when it does not.
fn state_block(rule: &StateRule, local: NaiveDateTime) -> Option<String> {
    let date = local.date();
    let secs = local.num_seconds_from_midnight();
    if let Some(holiday) = rule.holiday_on(date) {
        match rule.holidays {
            Some(DayRule::Closed) => {
                return Some(format!(
                    "the recipient's state allows no calls or texts on holidays ({holiday})"
                ));
            }
            Some(DayRule::Open(w)) if !w.contains(secs) => {
                return Some(format!(
                    "outside the recipient's state's holiday window ({w} local time, {holiday})"
                ));
            }
            _ => {}
        }
    }
    match rule.day_rule(date) {
        Some(DayRule::Closed) => Some(format!(
            "the recipient's state allows no calls or texts on {}",
            day_name(date.weekday())
        )),
        Some(DayRule::Open(w)) if !w.contains(secs) => Some(format!(
            "outside the recipient's state's calling window for {} ({w} local time)",
            day_name(date.weekday())
        )),
        _ => None,
    }
}

impl Plan<'_> {
    /// The checks at `at`.
    pub(crate) fn evaluate(&self, at: DateTime<Utc>) -> Blocks {
        let mut blocks = Blocks::default();
        let several = self.zones.len() > 1;
        let suffix = if several {
            " (checked in every time zone of the recipient's state)"
        } else {
            ""
        };
        if let Some(calling) = self.calling {
            for &tz in &self.zones {
                let Some(local) = Clock::Wall(tz).local(at) else {
                    blocks.quiet = Some(OUT_OF_RANGE.to_owned());
                    break;
                };
                let secs = local.num_seconds_from_midnight();
                let mut block = calling.state.and_then(|rule| {
                    state_block(rule, local).or_else(|| {
                        if !rule.standard_time {
                            return None;
                        }
                        let Some(standard) = Clock::Standard(tz).local(at) else {
                            return Some(OUT_OF_RANGE.to_owned());
                        };
                        state_block(rule, standard)
                            .map(|m| format!("{m} (the state's rule is read in standard time)"))
                    })
                });
                if block.is_none() && !calling.federal.contains(secs) {
                    block = Some(format!(
                        "outside the permitted calling hours ({} in the recipient's local time)",
                        calling.federal
                    ));
                }
                if let Some(message) = block {
                    blocks.quiet = Some(format!("{message}{suffix}"));
                    break;
                }
            }
        }
        if let Some((window, clock)) = self.campaign {
            let ok = |tz: Tz| {
                Clock::Wall(tz).local(at).is_some_and(|local| {
                    window.contains(local.weekday(), local.num_seconds_from_midnight())
                })
            };
            let inside = match clock {
                CampaignClock::Own(tz) => ok(tz),
                CampaignClock::Recipient => self.zones.iter().all(|tz| ok(*tz)),
            };
            if !inside {
                let whose = match clock {
                    CampaignClock::Own(_) => "in the campaign's time zone",
                    CampaignClock::Recipient => "in the recipient's local time",
                };
                blocks.campaign = Some(format!(
                    "outside the campaign's sending window ({} {whose}){}",
                    window.describe(),
                    if matches!(clock, CampaignClock::Recipient) {
                        suffix
                    } else {
                        ""
                    }
                ));
            }
        }
        blocks
    }

    fn clocks(&self) -> Vec<Clock> {
        let mut clocks: Vec<Clock> = self.zones.iter().map(|tz| Clock::Wall(*tz)).collect();
        if let Some(Calling {
            state: Some(rule), ..
        }) = self.calling
            && rule.standard_time
        {
            clocks.extend(self.zones.iter().map(|tz| Clock::Standard(*tz)));
        }
        if let Some((_, CampaignClock::Own(tz))) = self.campaign
            && !clocks.contains(&Clock::Wall(tz))
        {
            clocks.push(Clock::Wall(tz));
        }
        clocks
    }

    /// The first instant after `at`, no later than `at + horizon`, at which every check holds.
    pub(crate) fn next_allowed(
        &self,
        at: DateTime<Utc>,
        horizon: Duration,
    ) -> Option<DateTime<Utc>> {
        let limit = at.checked_add_signed(horizon)?;
        let mut starts = vec![0u32];
        if let Some(calling) = self.calling {
            starts.push(calling.federal.start);
            if let Some(rule) = calling.state {
                rule.starts(&mut starts);
            }
        }
        if let Some((window, _)) = self.campaign {
            starts.push(window.start());
        }
        starts.sort_unstable();
        starts.dedup();

        // Search one UTC day at a time, so that the usual defer (the next morning) looks at a
        // handful of candidates. A chunk's candidates are every reading of a window start or
        // midnight that falls inside it, from each clock's local dates around it, plus the
        // clocks' transitions inside it.
        let clocks = self.clocks();
        let mut candidates = Vec::new();
        let mut chunk_start = at;
        while chunk_start < limit {
            let chunk_end = chunk_start
                .checked_add_signed(Duration::days(1))
                .unwrap_or(limit)
                .min(limit);
            candidates.clear();
            for &clock in &clocks {
                let (Some(from), Some(to)) = (clock.local(chunk_start), clock.local(chunk_end))
                else {
                    continue;
                };
                let (Some(first), last) = (from.date().pred_opt(), to.date().succ_opt()) else {
                    continue;
                };
                let last = last.unwrap_or(to.date());
                let mut date = first;
                while date <= last {
                    for &secs in &starts {
                        if let Some(local) = at_secs(date, secs) {
                            clock.instants(local, &mut candidates);
                        }
                    }
                    let Some(next) = date.succ_opt() else { break };
                    date = next;
                }
                transitions(clock.tz(), chunk_start, chunk_end, &mut candidates);
            }
            // The chunk is (chunk_start, chunk_end]: the first chunk excludes `at` itself.
            candidates.retain(|c| *c > chunk_start && *c <= chunk_end);
            candidates.sort_unstable();
            candidates.dedup();
            if let Some(found) = candidates.iter().find(|c| self.evaluate(**c).is_clear()) {
                return Some(*found);
            }
            if chunk_end <= chunk_start {
                break;
            }
            chunk_start = chunk_end;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_both_2026_transitions_in_new_york() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let from = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        let mut out = Vec::new();
        transitions(tz, from, to, &mut out);
        assert_eq!(
            out,
            vec![
                // 2026-03-08 02:00 EST = 07:00Z; 2026-11-01 02:00 EDT = 06:00Z.
                Utc.with_ymd_and_hms(2026, 3, 8, 7, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(2026, 11, 1, 6, 0, 0).unwrap(),
            ]
        );
    }

    #[test]
    fn phoenix_has_no_transitions() {
        let tz: Tz = "America/Phoenix".parse().unwrap();
        let from = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        let mut out = Vec::new();
        transitions(tz, from, to, &mut out);
        assert!(out.is_empty());
    }
}
