//! Calling hours, table-driven: every state at the federal edges (07:59, 08:00, 20:59, 21:00
//! local) and at its own edges on a weekday, a Saturday and a Sunday; every multi-zone state
//! without a time zone; both DST transitions; holiday bans and Sundays.
//!
//! The expected windows below are written out by hand from the reference vector
//! (shared/reference/vectors/tcpa_calling_windows.json, stricter reading where sources
//! disagree) and the zone offsets, not read from the crate's table.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::{Duration, NaiveDate};
use common::*;
use rampart_comply::{Channel, ReasonCode, Verdict, decide};

/// `(state, zone used, weekday, saturday, sunday)`: the effective window (already intersected
/// with the federal one) on Wed 2026-09-16, Sat 2026-09-19 and Sun 2026-09-20 (no holiday, DST
/// in force), or "none". Multi-zone states are given their first zone explicitly.
#[rustfmt::skip]
const EXPECTED: &[(&str, &str, &str, &str, &str)] = &[
    ("AL", "America/Chicago", "08:00-20:00", "08:00-20:00", "none"),
    ("AK", "America/Anchorage", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("AZ", "America/Phoenix", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("AR", "America/Chicago", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("CA", "America/Los_Angeles", "09:00-21:00", "09:00-21:00", "09:00-21:00"),
    ("CO", "America/Denver", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("CT", "America/New_York", "09:00-20:00", "09:00-20:00", "09:00-20:00"),
    ("DE", "America/New_York", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("FL", "America/New_York", "08:00-20:00", "08:00-20:00", "08:00-20:00"),
    ("GA", "America/New_York", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("HI", "Pacific/Honolulu", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("ID", "America/Boise", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("IL", "America/Chicago", "09:00-21:00", "09:00-21:00", "09:00-21:00"),
    ("IN", "America/Indiana/Indianapolis", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("IA", "America/Chicago", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("KS", "America/Chicago", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("KY", "America/New_York", "10:00-21:00", "10:00-21:00", "10:00-21:00"),
    ("LA", "America/Chicago", "08:00-20:00", "08:00-20:00", "none"),
    ("ME", "America/New_York", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("MD", "America/New_York", "08:00-20:00", "08:00-20:00", "08:00-20:00"),
    ("MA", "America/New_York", "08:00-20:00", "08:00-20:00", "08:00-20:00"),
    ("MI", "America/Detroit", "09:00-21:00", "09:00-21:00", "09:00-21:00"),
    ("MN", "America/Chicago", "09:00-21:00", "09:00-21:00", "09:00-21:00"),
    // 08:00-20:00 "CST" read both in local time and in standard time: with DST in force,
    // 08:00 CST is 09:00 CDT.
    ("MS", "America/Chicago", "09:00-20:00", "09:00-20:00", "none"),
    ("MO", "America/Chicago", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("MT", "America/Denver", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("NE", "America/Chicago", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("NV", "America/Los_Angeles", "09:00-20:00", "09:00-20:00", "09:00-20:00"),
    ("NH", "America/New_York", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("NJ", "America/New_York", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("NM", "America/Denver", "09:00-21:00", "09:00-21:00", "09:00-21:00"),
    ("NY", "America/New_York", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("NC", "America/New_York", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("ND", "America/Chicago", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("OH", "America/New_York", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("OK", "America/Chicago", "08:00-20:00", "08:00-20:00", "08:00-20:00"),
    ("OR", "America/Los_Angeles", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("PA", "America/New_York", "08:00-21:00", "08:00-12:00", "13:30-21:00"),
    ("RI", "America/New_York", "09:00-18:00", "10:00-17:00", "none"),
    ("SC", "America/New_York", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("SD", "America/Chicago", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("TN", "America/New_York", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("TX", "America/Chicago", "09:00-21:00", "09:00-21:00", "12:00-21:00"),
    ("UT", "America/Denver", "08:00-21:00", "08:00-21:00", "none"),
    ("VT", "America/New_York", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("VA", "America/New_York", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("WA", "America/Los_Angeles", "08:00-20:00", "08:00-20:00", "08:00-20:00"),
    ("WV", "America/New_York", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("WI", "America/Chicago", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("WY", "America/Denver", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("DC", "America/New_York", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("PR", "America/Puerto_Rico", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("GU", "Pacific/Guam", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("VI", "America/St_Thomas", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("AS", "Pacific/Pago_Pago", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
    ("MP", "Pacific/Saipan", "08:00-21:00", "08:00-21:00", "08:00-21:00"),
];

/// The multi-zone states of the reference vector, with their zones.
const MULTI_ZONE: &[(&str, &[&str])] = &[
    ("AK", &["America/Anchorage", "America/Adak"]),
    ("FL", &["America/New_York", "America/Chicago"]),
    ("ID", &["America/Boise", "America/Los_Angeles"]),
    ("IN", &["America/Indiana/Indianapolis", "America/Chicago"]),
    ("KS", &["America/Chicago", "America/Denver"]),
    ("KY", &["America/New_York", "America/Chicago"]),
    ("MI", &["America/Detroit", "America/Menominee"]),
    ("NE", &["America/Chicago", "America/Denver"]),
    ("NV", &["America/Los_Angeles", "America/Denver"]),
    ("ND", &["America/Chicago", "America/Denver"]),
    ("OR", &["America/Los_Angeles", "America/Boise"]),
    ("SD", &["America/Chicago", "America/Denver"]),
    ("TN", &["America/New_York", "America/Chicago"]),
    ("TX", &["America/Chicago", "America/Denver"]),
    ("AZ", &["America/Phoenix", "America/Denver"]),
];

fn secs(hhmm: &str) -> u32 {
    let (h, m) = hhmm.split_once(':').unwrap();
    h.parse::<u32>().unwrap() * 3600 + m.parse::<u32>().unwrap() * 60
}

fn window(spec: &str) -> Option<(u32, u32)> {
    (spec != "none").then(|| {
        let (a, b) = spec.split_once('-').unwrap();
        (secs(a), secs(b))
    })
}

fn is_multi(state: &str) -> bool {
    MULTI_ZONE.iter().any(|(s, _)| *s == state)
}

#[test]
fn the_expected_table_covers_every_state_in_the_builtin_table() {
    let mut listed: Vec<&str> = EXPECTED.iter().map(|e| e.0).collect();
    listed.sort_unstable();
    let table: Vec<&str> = rules().states().collect();
    assert_eq!(listed, table);
}

#[test]
fn zones_match_the_reference() {
    for &(state, zone, ..) in EXPECTED {
        let zones = rules().zones(state).unwrap();
        match MULTI_ZONE.iter().find(|(s, _)| *s == state) {
            Some((_, expected)) => {
                let expected: Vec<_> = expected.iter().map(|z| tz(z)).collect();
                assert_eq!(zones, expected.as_slice(), "{state}");
            }
            None => assert_eq!(zones, &[tz(zone)], "{state}"),
        }
    }
}

#[test]
fn every_state_at_the_federal_and_its_own_edges() {
    let days = [
        (date(2026, 9, 16), 2usize), // Wednesday
        (date(2026, 9, 19), 3),      // Saturday
        (date(2026, 9, 20), 4),      // Sunday
    ];
    let mut checked = 0;
    for row in EXPECTED {
        let (state, zone) = (row.0, row.1);
        let explicit = is_multi(state).then_some(zone);
        for &(day, col) in &days {
            let spec = [row.2, row.3, row.4][col - 2];
            let effective = window(spec);
            let mut times = vec![
                secs("07:59"),
                secs("08:00"),
                secs("12:00"),
                secs("20:59"),
                secs("21:00"),
            ];
            if let Some((s, e)) = effective {
                times.extend([s - 60, s - 1, s, s + 1, e - 60, e - 1, e]);
            }
            for t in times {
                let at = local(zone, day, t / 3600, (t % 3600) / 60, t % 60);
                let facts = reachable(Some(state), explicit, at);
                for channel in [Channel::Sms, Channel::Voice] {
                    let d = decide(&facts, channel, at, &ctx());
                    let expect_allow = effective.is_some_and(|(s, e)| s <= t && t < e);
                    assert_eq!(
                        d.is_allowed(),
                        expect_allow,
                        "{state} {channel:?} {day} {:02}:{:02}:{:02} {zone}: {:?}",
                        t / 3600,
                        (t % 3600) / 60,
                        t % 60,
                        d.reasons()
                    );
                    if !expect_allow {
                        assert_eq!(d.codes(), vec![ReasonCode::QuietHours], "{state} {day}");
                        let until = d.next_allowed_at().expect("a defer");
                        assert!(until > at);
                        // The instant named is allowed, and a second before it is not.
                        assert!(
                            decide(&facts, channel, until, &ctx()).is_allowed(),
                            "{state}"
                        );
                        assert!(
                            !decide(&facts, channel, until - Duration::seconds(1), &ctx())
                                .is_allowed(),
                            "{state}"
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 56 * 3 * 5 * 2);
}

/// A day of June 2026 and an hour, UTC.
type DayHour = (u32, u32);

/// `(state, first allowed instant, first refused instant after it)` on Wed 2026-06-10 (DST in
/// force: Eastern UTC-4, Central -5, Mountain -6, Arizona -7, Pacific -7, Alaska -8, Adak -9),
/// worked out by hand as the latest zone's opening and the earliest zone's closing.
const MULTI_ZONE_WINDOWS: &[(&str, DayHour, DayHour)] = &[
    ("AK", (10, 17), (11, 5)), // 08:00 HDT (-9) .. 21:00 AKDT (-8)
    ("FL", (10, 13), (11, 0)), // 08:00 CDT .. 20:00 EDT (state 08-20)
    ("ID", (10, 15), (11, 3)), // 08:00 PDT .. 21:00 MDT
    ("IN", (10, 13), (11, 1)), // 08:00 CDT .. 21:00 EDT
    ("KS", (10, 14), (11, 2)), // 08:00 MDT .. 21:00 CDT
    ("KY", (10, 15), (11, 1)), // 10:00 CDT .. 21:00 EDT (state 10-21)
    ("MI", (10, 14), (11, 1)), // 09:00 CDT .. 21:00 EDT (state 09-21)
    ("NE", (10, 14), (11, 2)), // 08:00 MDT .. 21:00 CDT
    ("NV", (10, 16), (11, 2)), // 09:00 PDT .. 20:00 MDT (state 09-20)
    ("ND", (10, 14), (11, 2)), // 08:00 MDT .. 21:00 CDT
    ("OR", (10, 15), (11, 3)), // 08:00 PDT .. 21:00 MDT
    ("SD", (10, 14), (11, 2)), // 08:00 MDT .. 21:00 CDT
    ("TN", (10, 13), (11, 1)), // 08:00 CDT .. 21:00 EDT
    ("TX", (10, 15), (11, 2)), // 09:00 MDT .. 21:00 CDT (state 09-21)
    ("AZ", (10, 15), (11, 3)), // 08:00 MST (-7) .. 21:00 MDT (-6, Navajo Nation)
];

#[test]
fn every_multi_zone_state_without_a_timezone_gets_the_intersection() {
    assert_eq!(MULTI_ZONE_WINDOWS.len(), MULTI_ZONE.len());
    for &(state, (sd, sh), (ed, eh)) in MULTI_ZONE_WINDOWS {
        let start = utc(2026, 6, sd, sh, 0, 0);
        let end = utc(2026, 6, ed, eh, 0, 0);
        let facts = reachable(Some(state), None, start);
        for channel in [Channel::Sms, Channel::Voice] {
            let before = decide(&facts, channel, start - Duration::seconds(1), &ctx());
            assert_eq!(before.verdict(), Verdict::Defer { until: start }, "{state}");
            assert!(before.reasons()[0].message.contains("every time zone"));
            assert!(
                decide(&facts, channel, start, &ctx()).is_allowed(),
                "{state}"
            );
            let last = end - Duration::seconds(1);
            assert!(
                decide(&facts, channel, last, &ctx()).is_allowed(),
                "{state}"
            );
            // Thursday 2026-06-11 has the same rules: the next opening is a day later.
            assert_eq!(
                decide(&facts, channel, end, &ctx()).verdict(),
                Verdict::Defer {
                    until: start + Duration::days(1)
                },
                "{state}"
            );
        }
    }
}

#[test]
fn an_explicit_timezone_wins_over_the_state_zones() {
    // TN with America/Chicago: 08:00 CDT = 13:00Z opens, 21:00 CDT = 02:00Z closes (the
    // intersection would close at 01:00Z).
    let at = utc(2026, 6, 11, 1, 30, 0);
    let facts = reachable(Some("TN"), Some("America/Chicago"), at);
    assert!(decide(&facts, Channel::Sms, at, &ctx()).is_allowed());
    let facts = reachable(Some("TN"), None, at);
    assert!(!decide(&facts, Channel::Sms, at, &ctx()).is_allowed());
}

fn new_york(at: chrono::DateTime<chrono::Utc>) -> rampart_comply::ContactFacts {
    reachable(None, Some("America/New_York"), at)
}

#[test]
fn spring_forward_in_new_york() {
    // 2026-03-08: 02:00 EST jumps to 03:00 EDT at 07:00Z. 08:00 EDT = 12:00Z.
    let at = utc(2026, 3, 8, 11, 59, 59);
    let d = decide(&new_york(at), Channel::Sms, at, &ctx());
    assert_eq!(
        d.verdict(),
        Verdict::Defer {
            until: utc(2026, 3, 8, 12, 0, 0)
        }
    );
    assert!(
        decide(
            &new_york(at),
            Channel::Sms,
            utc(2026, 3, 8, 12, 0, 0),
            &ctx()
        )
        .is_allowed()
    );
    // The day before, 12:30Z is 07:30 EST: opens at 13:00Z.
    let at = utc(2026, 3, 7, 12, 30, 0);
    assert_eq!(
        decide(&new_york(at), Channel::Sms, at, &ctx()).next_allowed_at(),
        Some(utc(2026, 3, 7, 13, 0, 0))
    );
    // Saturday 21:30 EST (02:30Z Sunday) searches across the transition: Sunday 08:00 EDT.
    let at = utc(2026, 3, 8, 2, 30, 0);
    assert_eq!(
        decide(&new_york(at), Channel::Voice, at, &ctx()).next_allowed_at(),
        Some(utc(2026, 3, 8, 12, 0, 0))
    );
    // 21:00 EDT on the Sunday is 01:00Z Monday: outside.
    let at = utc(2026, 3, 9, 1, 0, 0);
    assert!(!decide(&new_york(at), Channel::Sms, at, &ctx()).is_allowed());
    assert!(
        decide(
            &new_york(at),
            Channel::Sms,
            at - Duration::seconds(1),
            &ctx()
        )
        .is_allowed()
    );
}

#[test]
fn fall_back_in_new_york() {
    // 2026-11-01: 02:00 EDT falls back to 01:00 EST at 06:00Z. 08:00 EST = 13:00Z.
    let at = utc(2026, 11, 1, 12, 30, 0); // 07:30 EST
    assert_eq!(
        decide(&new_york(at), Channel::Sms, at, &ctx()).next_allowed_at(),
        Some(utc(2026, 11, 1, 13, 0, 0))
    );
    // The day before, 08:00 EDT = 12:00Z.
    let at = utc(2026, 10, 31, 12, 0, 0);
    assert!(decide(&new_york(at), Channel::Sms, at, &ctx()).is_allowed());
    // Saturday 21:30 EDT (01:30Z Sunday) searches across the transition: Sunday 08:00 EST.
    let at = utc(2026, 11, 1, 1, 30, 0);
    assert_eq!(
        decide(&new_york(at), Channel::Voice, at, &ctx()).next_allowed_at(),
        Some(utc(2026, 11, 1, 13, 0, 0))
    );
    // Sunday evening: 20:59:59 EST = 01:59:59Z Monday is in, 21:00 EST = 02:00Z is out.
    assert!(
        decide(
            &new_york(at),
            Channel::Sms,
            utc(2026, 11, 2, 1, 59, 59),
            &ctx()
        )
        .is_allowed()
    );
    let d = decide(
        &new_york(at),
        Channel::Sms,
        utc(2026, 11, 2, 2, 0, 0),
        &ctx(),
    );
    assert_eq!(d.next_allowed_at(), Some(utc(2026, 11, 2, 13, 0, 0)));
}

#[test]
fn a_state_rule_across_both_transitions() {
    // TX Sunday window 12:00-21:00 (America/Chicago).
    let tx = |at| reachable(Some("TX"), Some("America/Chicago"), at);
    // Saturday 2026-03-07 21:00 CST = 03:00Z Sunday; Sunday noon CDT = 17:00Z.
    let at = utc(2026, 3, 8, 3, 0, 0);
    assert_eq!(
        decide(&tx(at), Channel::Sms, at, &ctx()).next_allowed_at(),
        Some(utc(2026, 3, 8, 17, 0, 0))
    );
    // Saturday 2026-10-31 21:00 CDT = 02:00Z Sunday; Sunday noon CST = 18:00Z.
    let at = utc(2026, 11, 1, 2, 0, 0);
    let d = decide(&tx(at), Channel::Sms, at, &ctx());
    assert_eq!(d.next_allowed_at(), Some(utc(2026, 11, 1, 18, 0, 0)));
    // 11:59:59 CST Sunday is still closed, with the state's Sunday window as the reason.
    let d = decide(&tx(at), Channel::Sms, utc(2026, 11, 1, 17, 59, 59), &ctx());
    assert!(
        d.reasons()[0].message.contains("12:00-21:00"),
        "{:?}",
        d.reasons()
    );
}

#[test]
fn mississippi_reads_its_cst_window_in_standard_time_too() {
    // Winter (CST in force): 08:00-20:00 local = 14:00Z-02:00Z.
    let ms = |at| reachable(Some("MS"), None, at);
    let wed = date(2026, 1, 14);
    let open = local("America/Chicago", wed, 8, 0, 0);
    assert!(decide(&ms(open), Channel::Sms, open, &ctx()).is_allowed());
    assert_eq!(open, utc(2026, 1, 14, 14, 0, 0));
    // Summer (CDT): 08:30 CDT = 07:30 CST is closed; 09:00 CDT = 08:00 CST opens.
    let wed = date(2026, 7, 15);
    let at = local("America/Chicago", wed, 8, 30, 0);
    let d = decide(&ms(at), Channel::Sms, at, &ctx());
    assert_eq!(
        d.next_allowed_at(),
        Some(local("America/Chicago", wed, 9, 0, 0))
    );
    assert!(d.reasons()[0].message.contains("standard time"));
}

#[test]
fn sundays_and_holidays() {
    let al = |at| reachable(Some("AL"), None, at);
    // Thanksgiving 2026-11-26 (Thursday), noon in Alabama: closed; Friday 08:00 CST = 14:00Z.
    let at = local("America/Chicago", date(2026, 11, 26), 12, 0, 0);
    let d = decide(&al(at), Channel::Sms, at, &ctx());
    assert!(
        d.reasons()[0].message.contains("Thanksgiving"),
        "{:?}",
        d.reasons()
    );
    assert_eq!(d.next_allowed_at(), Some(utc(2026, 11, 27, 14, 0, 0)));
    // Connecticut has no holiday ban.
    let at = local("America/New_York", date(2026, 11, 26), 12, 0, 0);
    assert!(decide(&reachable(Some("CT"), None, at), Channel::Sms, at, &ctx()).is_allowed());
    // Louisiana also keeps the day after Thanksgiving: next is Saturday 08:00 CST.
    let at = local("America/Chicago", date(2026, 11, 26), 12, 0, 0);
    let d = decide(&reachable(Some("LA"), None, at), Channel::Voice, at, &ctx());
    assert_eq!(d.next_allowed_at(), Some(utc(2026, 11, 28, 14, 0, 0)));
    // Alabama, Saturday before Labor Day (2026-09-07) 20:30 CDT: Sunday and Monday closed,
    // next is Tuesday 08:00 CDT = 13:00Z.
    let at = local("America/Chicago", date(2026, 9, 5), 20, 30, 0);
    let d = decide(&al(at), Channel::Sms, at, &ctx());
    assert_eq!(d.next_allowed_at(), Some(utc(2026, 9, 8, 13, 0, 0)));
    // Sunday noon in Alabama: closed, says Sundays.
    let at = local("America/Chicago", date(2026, 9, 6), 12, 0, 0);
    let d = decide(&al(at), Channel::Sms, at, &ctx());
    assert!(d.reasons()[0].message.contains("Sundays"));
}

#[test]
fn observed_holidays() {
    // Independence Day 2026 is a Saturday: observed Friday 2026-07-03.
    let noon = |zone, d: NaiveDate| local(zone, d, 12, 0, 0);
    let ut = |at| reachable(Some("UT"), None, at);
    let ri = |at| reachable(Some("RI"), None, at);
    let fri = date(2026, 7, 3);
    let mon = date(2026, 7, 6);
    for (facts, zone) in [
        (ut(noon("America/Denver", fri)), "America/Denver"),
        (ri(noon("America/New_York", fri)), "America/New_York"),
    ] {
        let at = noon(zone, fri);
        assert!(!decide(&facts, Channel::Sms, at, &ctx()).is_allowed());
    }
    // Utah opens again on Monday; Rhode Island also keeps the Monday after a Saturday holiday.
    let at = noon("America/Denver", mon);
    assert!(decide(&ut(at), Channel::Sms, at, &ctx()).is_allowed());
    let at = noon("America/New_York", mon);
    let d = decide(&ri(at), Channel::Sms, at, &ctx());
    assert!(!d.is_allowed());
    assert_eq!(
        d.next_allowed_at(),
        Some(local("America/New_York", date(2026, 7, 7), 9, 0, 0))
    );
    // New Year's Day 2028 is a Saturday: Friday 2027-12-31 is closed in Mississippi.
    let at = noon("America/Chicago", date(2027, 12, 31));
    let d = decide(&reachable(Some("MS"), None, at), Channel::Sms, at, &ctx());
    assert!(
        d.reasons()[0].message.contains("New Year"),
        "{:?}",
        d.reasons()
    );
    // Utah's Pioneer Day (07-24) 2027 is a Saturday: Friday 07-23 is closed too.
    let at = noon("America/Denver", date(2027, 7, 23));
    assert!(!decide(&ut(at), Channel::Sms, at, &ctx()).is_allowed());
}

#[test]
fn pennsylvania_extra_holidays() {
    let pa = |at| reachable(Some("PA"), None, at);
    // Good Friday 2026 is April 3; Election Day 2026 is November 3; Flag Day 2026-06-14 is a
    // Sunday, observed Monday 06-15.
    for d in [date(2026, 4, 3), date(2026, 11, 3), date(2026, 6, 15)] {
        let at = local("America/New_York", d, 12, 0, 0);
        assert!(
            !decide(&pa(at), Channel::Sms, at, &ctx()).is_allowed(),
            "{d}"
        );
    }
    let at = local("America/New_York", date(2026, 4, 2), 12, 0, 0);
    assert!(decide(&pa(at), Channel::Sms, at, &ctx()).is_allowed());
}

#[test]
fn email_ignores_calling_hours() {
    let at = local("America/Chicago", date(2026, 9, 6), 3, 0, 0); // Sunday 03:00 in AL
    let facts = reachable(Some("AL"), None, at);
    assert!(decide(&facts, Channel::Email, at, &ctx()).is_allowed());
    assert!(!decide(&facts, Channel::Sms, at, &ctx()).is_allowed());
}
