//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use rampart_comply::{
    CallingRules, ChannelConsents, Consent, ContactFacts, DncStatus, SendingContext, TenDlcStatus,
};

pub fn rules() -> &'static CallingRules {
    CallingRules::builtin().unwrap()
}

/// An approved-sender context under the built-in table.
pub fn ctx() -> SendingContext<'static> {
    SendingContext {
        sender_10dlc: TenDlcStatus::Approved,
        ..SendingContext::new(rules())
    }
}

/// A contact that may receive anything at any permitted time, located by `state` and/or `tz`.
pub fn reachable(state: Option<&str>, tz: Option<&str>, at: DateTime<Utc>) -> ContactFacts {
    let granted = Consent::Granted { evidence: true };
    ContactFacts {
        phone: Some("+14155552671".into()),
        email: Some("ann@example.com".into()),
        consent: ChannelConsents {
            sms: granted,
            voice: granted,
            email: granted,
        },
        suppressions: vec![],
        dnc: DncStatus::Clear {
            scrubbed_at: at - chrono::Duration::days(1),
        },
        timezone: tz.map(str::to_owned),
        state: state.map(str::to_owned),
    }
}

pub fn tz(name: &str) -> Tz {
    name.parse().unwrap()
}

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// The one instant at which `zone` reads `date hh:mm:ss` (panics on a gap or an overlap: tests
/// pick unambiguous times).
pub fn local(zone: &str, date: NaiveDate, h: u32, m: u32, s: u32) -> DateTime<Utc> {
    tz(zone)
        .from_local_datetime(&date.and_hms_opt(h, m, s).unwrap())
        .single()
        .unwrap_or_else(|| panic!("{zone} {date} {h}:{m}:{s} is not a single instant"))
        .to_utc()
}

pub fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}
