//! The computed federal calendar against dates checked by hand (calendar arithmetic from each
//! year's January 1 weekday, and OPM's published observed days), not against this crate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::NaiveDate;
use common::date;
use rampart_comply::holidays::{
    FederalHoliday as H, NamedHoliday, easter, federal_holiday_on, federal_holidays,
};

#[rustfmt::skip]
const KNOWN: &[(i32, [(u32, u32); 11])] = &[
    // NY      MLK     Pres    Memorial Juneteenth July4 Labor   Columbus Veterans Thanksg. Xmas
    (2024, [(1, 1), (1, 15), (2, 19), (5, 27), (6, 19), (7, 4), (9, 2), (10, 14), (11, 11), (11, 28), (12, 25)]),
    (2025, [(1, 1), (1, 20), (2, 17), (5, 26), (6, 19), (7, 4), (9, 1), (10, 13), (11, 11), (11, 27), (12, 25)]),
    (2026, [(1, 1), (1, 19), (2, 16), (5, 25), (6, 19), (7, 4), (9, 7), (10, 12), (11, 11), (11, 26), (12, 25)]),
    (2027, [(1, 1), (1, 18), (2, 15), (5, 31), (6, 19), (7, 4), (9, 6), (10, 11), (11, 11), (11, 25), (12, 25)]),
    (2028, [(1, 1), (1, 17), (2, 21), (5, 29), (6, 19), (7, 4), (9, 4), (10, 9), (11, 11), (11, 23), (12, 25)]),
];

const ORDER: [H; 11] = [
    H::NewYearsDay,
    H::MartinLutherKingDay,
    H::PresidentsDay,
    H::MemorialDay,
    H::Juneteenth,
    H::IndependenceDay,
    H::LaborDay,
    H::ColumbusDay,
    H::VeteransDay,
    H::Thanksgiving,
    H::Christmas,
];

#[test]
fn federal_holidays_on_known_dates() {
    for (year, dates) in KNOWN {
        let expected: Vec<(NaiveDate, H)> = dates
            .iter()
            .zip(ORDER)
            .map(|(&(m, d), h)| (date(*year, m, d), h))
            .collect();
        assert_eq!(federal_holidays(*year), expected, "{year}");
        for (d, h) in expected {
            assert_eq!(federal_holiday_on(d), Some(h), "{d}");
        }
    }
}

#[test]
fn the_brief_s_examples() {
    assert_eq!(
        federal_holiday_on(date(2026, 11, 26)),
        Some(H::Thanksgiving)
    );
    assert_eq!(federal_holiday_on(date(2027, 5, 31)), Some(H::MemorialDay));
}

#[test]
fn observed_days() {
    for (d, h) in [
        (date(2021, 12, 31), H::NewYearsDay), // 2022-01-01 was a Saturday
        (date(2022, 12, 26), H::Christmas),   // 2022-12-25 was a Sunday
        (date(2023, 1, 2), H::NewYearsDay),   // 2023-01-01 was a Sunday
        (date(2023, 11, 10), H::VeteransDay), // 2023-11-11 was a Saturday
        (date(2026, 7, 3), H::IndependenceDay),
        (date(2027, 6, 18), H::Juneteenth),
        (date(2027, 12, 24), H::Christmas),
        (date(2027, 12, 31), H::NewYearsDay), // 2028-01-01 is a Saturday
    ] {
        assert_eq!(federal_holiday_on(d), Some(h), "{d}");
    }
    // The date itself stays a holiday (the stricter reading for a calling ban).
    assert_eq!(
        federal_holiday_on(date(2026, 7, 4)),
        Some(H::IndependenceDay)
    );
    // Not holidays: the Monday after a Saturday holiday, an ordinary Friday, the day after
    // Thanksgiving, and Juneteenth before it was enacted.
    for d in [
        date(2026, 7, 6),
        date(2026, 7, 5),
        date(2026, 11, 27),
        date(2026, 9, 18),
        date(2020, 6, 19),
    ] {
        assert_eq!(federal_holiday_on(d), None, "{d}");
    }
}

#[test]
fn every_year_has_its_holidays_on_the_right_weekdays() {
    use chrono::{Datelike, Weekday};
    for year in 1990..=2100 {
        for (d, h) in federal_holidays(year) {
            let expected = match h {
                H::MartinLutherKingDay
                | H::PresidentsDay
                | H::MemorialDay
                | H::LaborDay
                | H::ColumbusDay => Some(Weekday::Mon),
                H::Thanksgiving => Some(Weekday::Thu),
                _ => None,
            };
            if let Some(w) = expected {
                assert_eq!(d.weekday(), w, "{h:?} {year}");
            }
            assert_eq!(d.year(), year);
        }
        // Memorial Day is the last Monday: a week later is June.
        let memorial = federal_holidays(year)
            .into_iter()
            .find(|(_, h)| *h == H::MemorialDay)
            .unwrap()
            .0;
        assert_eq!((memorial + chrono::Duration::days(7)).month(), 6);
    }
}

#[test]
fn easter_and_the_named_state_holidays() {
    for (y, m, d) in [
        (2000, 4, 23),
        (2019, 4, 21),
        (2024, 3, 31),
        (2025, 4, 20),
        (2026, 4, 5),
        (2027, 3, 28),
    ] {
        assert_eq!(easter(y), Some(date(y, m, d)), "{y}");
    }
    assert_eq!(NamedHoliday::GoodFriday.date(2026), Some(date(2026, 4, 3)));
    assert_eq!(NamedHoliday::MardiGras.date(2026), Some(date(2026, 2, 17)));
    assert_eq!(NamedHoliday::MardiGras.date(2025), Some(date(2025, 3, 4)));
    assert_eq!(NamedHoliday::MardiGras.date(2024), Some(date(2024, 2, 13)));
    assert_eq!(
        NamedHoliday::ElectionDay.date(2024),
        Some(date(2024, 11, 5))
    );
    assert_eq!(
        NamedHoliday::ElectionDay.date(2026),
        Some(date(2026, 11, 3))
    );
    assert_eq!(
        NamedHoliday::ElectionDay.date(2027),
        Some(date(2027, 11, 2))
    );
    assert_eq!(
        NamedHoliday::DayAfterThanksgiving.date(2026),
        Some(date(2026, 11, 27))
    );
    assert_eq!(NamedHoliday::VictoryDay.date(2026), Some(date(2026, 8, 10)));
}
