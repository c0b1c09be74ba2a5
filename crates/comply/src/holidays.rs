//! The US federal holiday calendar (5 U.S.C. 6103), computed for any year, and the few named
//! state holidays the calling-hours table may add. Nothing here is a list of years.
//!
//! **Observed dates.** A fixed-date federal holiday (New Year's Day, Juneteenth, Independence
//! Day, Veterans Day, Christmas) that falls on a Saturday is observed on the Friday before, and
//! on a Sunday on the Monday after. For a calling ban the stricter reading is kept: both the
//! date itself and its observed day are holidays ([`federal_holiday_on`] answers for both). So
//! 2027-12-31 (the Friday before New Year's Day 2028, a Saturday) is a holiday of 2028's
//! calendar, and [`federal_holiday_on`] looks at the next year's New Year's Day for it.
//! The Monday holidays (MLK, Presidents, Memorial, Labor, Columbus) and Thanksgiving always fall
//! on their weekday and need no observance. Juneteenth counts from 2021, the year it was enacted.
//! Inauguration Day (a holiday only around Washington, D.C.) is not included.

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use serde::Serialize;

/// A US federal holiday. The serde name is stable (snake_case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FederalHoliday {
    /// January 1.
    NewYearsDay,
    /// Birthday of Martin Luther King, Jr.: third Monday of January.
    MartinLutherKingDay,
    /// Washington's Birthday (Presidents Day): third Monday of February.
    PresidentsDay,
    /// Last Monday of May.
    MemorialDay,
    /// Juneteenth National Independence Day: June 19 (from 2021).
    Juneteenth,
    /// July 4.
    IndependenceDay,
    /// First Monday of September.
    LaborDay,
    /// Second Monday of October.
    ColumbusDay,
    /// November 11.
    VeteransDay,
    /// Fourth Thursday of November.
    Thanksgiving,
    /// December 25.
    Christmas,
}

impl FederalHoliday {
    /// Whether the holiday has a fixed calendar date (and so an observed day when that date is
    /// a Saturday or a Sunday).
    pub fn is_fixed_date(self) -> bool {
        matches!(
            self,
            Self::NewYearsDay
                | Self::Juneteenth
                | Self::IndependenceDay
                | Self::VeteransDay
                | Self::Christmas
        )
    }

    /// Its English name, for reason messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::NewYearsDay => "New Year's Day",
            Self::MartinLutherKingDay => "Martin Luther King Jr. Day",
            Self::PresidentsDay => "Washington's Birthday",
            Self::MemorialDay => "Memorial Day",
            Self::Juneteenth => "Juneteenth",
            Self::IndependenceDay => "Independence Day",
            Self::LaborDay => "Labor Day",
            Self::ColumbusDay => "Columbus Day",
            Self::VeteransDay => "Veterans Day",
            Self::Thanksgiving => "Thanksgiving Day",
            Self::Christmas => "Christmas Day",
        }
    }
}

/// The `n`-th (1-based) `weekday` of `month` in `year`; `None` if the month has no such day.
pub fn nth_weekday(year: i32, month: u32, weekday: Weekday, n: u8) -> Option<NaiveDate> {
    NaiveDate::from_weekday_of_month_opt(year, month, weekday, n)
}

/// The last `weekday` of `month` in `year`.
pub fn last_weekday(year: i32, month: u32, weekday: Weekday) -> Option<NaiveDate> {
    let first_next = if month == 12 {
        NaiveDate::from_ymd_opt(year.checked_add(1)?, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    let last = first_next.pred_opt()?;
    let back = (7 + last.weekday().num_days_from_monday() - weekday.num_days_from_monday()) % 7;
    last.checked_sub_signed(Duration::days(i64::from(back)))
}

/// The federal holidays of `year` on their actual dates (not shifted for the weekend), in
/// calendar order. Empty for a year outside chrono's range.
pub fn federal_holidays(year: i32) -> Vec<(NaiveDate, FederalHoliday)> {
    use FederalHoliday as H;
    let fixed = |m, d| NaiveDate::from_ymd_opt(year, m, d);
    let mut out = Vec::with_capacity(11);
    let mut push = |date: Option<NaiveDate>, h| {
        if let Some(date) = date {
            out.push((date, h));
        }
    };
    push(fixed(1, 1), H::NewYearsDay);
    push(
        nth_weekday(year, 1, Weekday::Mon, 3),
        H::MartinLutherKingDay,
    );
    push(nth_weekday(year, 2, Weekday::Mon, 3), H::PresidentsDay);
    push(last_weekday(year, 5, Weekday::Mon), H::MemorialDay);
    if year >= 2021 {
        push(fixed(6, 19), H::Juneteenth);
    }
    push(fixed(7, 4), H::IndependenceDay);
    push(nth_weekday(year, 9, Weekday::Mon, 1), H::LaborDay);
    push(nth_weekday(year, 10, Weekday::Mon, 2), H::ColumbusDay);
    push(fixed(11, 11), H::VeteransDay);
    push(nth_weekday(year, 11, Weekday::Thu, 4), H::Thanksgiving);
    push(fixed(12, 25), H::Christmas);
    out
}

/// The federal observed day of a fixed-date holiday falling on `date`: the Friday before a
/// Saturday, the Monday after a Sunday, the date itself otherwise.
pub fn observed(date: NaiveDate) -> NaiveDate {
    let shifted = match date.weekday() {
        Weekday::Sat => date.pred_opt(),
        Weekday::Sun => date.succ_opt(),
        _ => Some(date),
    };
    shifted.unwrap_or(date)
}

/// The federal holiday that `date` is, either as the holiday's own date or as its observed day
/// (see the module docs). `None` on an ordinary day.
pub fn federal_holiday_on(date: NaiveDate) -> Option<FederalHoliday> {
    // A superset of the days that can be a holiday or an observed day, so most days are
    // answered without computing the calendar.
    let (day, monday) = (date.day(), date.weekday() == Weekday::Mon);
    let possible = match date.month() {
        1 => day <= 2 || monday,
        2 | 5 | 9 | 10 => monday,
        6 => (18..=20).contains(&day),
        7 => (3..=5).contains(&day),
        11 => (10..=12).contains(&day) || date.weekday() == Weekday::Thu,
        12 => (24..=26).contains(&day) || day == 31,
        _ => false,
    };
    if !possible {
        return None;
    }
    // The observed day of next year's New Year's Day can be December 31 of this year.
    for year in [date.year(), date.year().saturating_add(1)] {
        for (day, holiday) in federal_holidays(year) {
            if day == date || (holiday.is_fixed_date() && observed(day) == date) {
                return Some(holiday);
            }
        }
    }
    None
}

/// Easter Sunday (Gregorian calendar) of `year`, by the anonymous Gregorian algorithm
/// (Meeus/Jones/Butcher).
pub fn easter(year: i32) -> Option<NaiveDate> {
    let a = year.rem_euclid(19);
    let b = year.div_euclid(100);
    let c = year.rem_euclid(100);
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?)
}

/// A state holiday the calling-hours table can name (its `extra_holidays`), computed per year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NamedHoliday {
    /// The Friday before Easter.
    GoodFriday,
    /// Shrove Tuesday, 47 days before Easter.
    MardiGras,
    /// The Tuesday after the first Monday of November, every year.
    ElectionDay,
    /// The Friday after Thanksgiving.
    DayAfterThanksgiving,
    /// Rhode Island's Victory Day: the second Monday of August.
    VictoryDay,
}

impl NamedHoliday {
    /// Every named holiday, for parsing and documentation.
    pub const ALL: [Self; 5] = [
        Self::GoodFriday,
        Self::MardiGras,
        Self::ElectionDay,
        Self::DayAfterThanksgiving,
        Self::VictoryDay,
    ];

    /// The name used in the calling-hours table.
    pub fn key(self) -> &'static str {
        match self {
            Self::GoodFriday => "good_friday",
            Self::MardiGras => "mardi_gras",
            Self::ElectionDay => "election_day",
            Self::DayAfterThanksgiving => "day_after_thanksgiving",
            Self::VictoryDay => "victory_day",
        }
    }

    /// Its date in `year`.
    pub fn date(self, year: i32) -> Option<NaiveDate> {
        match self {
            Self::GoodFriday => easter(year)?.checked_sub_signed(Duration::days(2)),
            Self::MardiGras => easter(year)?.checked_sub_signed(Duration::days(47)),
            Self::ElectionDay => {
                nth_weekday(year, 11, Weekday::Mon, 1)?.checked_add_signed(Duration::days(1))
            }
            Self::DayAfterThanksgiving => {
                nth_weekday(year, 11, Weekday::Thu, 4)?.checked_add_signed(Duration::days(1))
            }
            Self::VictoryDay => nth_weekday(year, 8, Weekday::Mon, 2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn last_weekday_handles_december() {
        // 2026-12-31 is a Thursday.
        assert_eq!(last_weekday(2026, 12, Weekday::Thu), Some(d(2026, 12, 31)));
        assert_eq!(last_weekday(2026, 12, Weekday::Mon), Some(d(2026, 12, 28)));
    }

    #[test]
    fn a_year_has_eleven_holidays_from_2021() {
        assert_eq!(federal_holidays(2020).len(), 10);
        assert_eq!(federal_holidays(2021).len(), 11);
        assert_eq!(federal_holidays(2300).len(), 11);
    }
}
