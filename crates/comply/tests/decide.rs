//! `decide` beyond calling hours: every non-time reason, all reasons listed, deny over defer,
//! the campaign window (with DST gaps and overlaps), warnings and the wire shape.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::{Duration, NaiveTime, Weekday};
use common::*;
use rampart_comply::{
    CampaignWindow, Channel, Consent, DncStatus, ReasonCode as R, SendingContext, Suppression,
    SuppressionSource as S, TenDlcStatus, Verdict, Warning, decide,
};

/// Wednesday 2026-09-16 12:00 EDT: inside every window.
fn noon() -> chrono::DateTime<chrono::Utc> {
    utc(2026, 9, 16, 16, 0, 0)
}

fn ny() -> rampart_comply::ContactFacts {
    reachable(Some("NY"), None, noon())
}

#[test]
fn a_reachable_contact_is_allowed_on_every_channel() {
    for channel in Channel::ALL {
        let d = decide(&ny(), channel, noon(), &ctx());
        assert_eq!(
            d.verdict(),
            Verdict::Allow,
            "{channel:?}: {:?}",
            d.reasons()
        );
        assert!(d.reasons().is_empty() && d.warnings().is_empty());
    }
}

#[test]
fn consent() {
    for (consent, code) in [
        (Consent::None, R::NoConsent),
        (Consent::Granted { evidence: false }, R::NoConsent),
        (Consent::Revoked, R::ConsentRevoked),
    ] {
        let mut f = ny();
        f.consent.sms = consent;
        f.consent.voice = consent;
        f.consent.email = consent;
        for channel in [Channel::Sms, Channel::Voice] {
            let d = decide(&f, channel, noon(), &ctx());
            assert_eq!(d.verdict(), Verdict::Deny);
            assert_eq!(d.codes(), vec![code]);
        }
        // Email needs consent only where the workspace says so.
        assert!(decide(&f, Channel::Email, noon(), &ctx()).is_allowed());
        let eu = SendingContext {
            email_requires_consent: true,
            ..ctx()
        };
        assert_eq!(decide(&f, Channel::Email, noon(), &eu).codes(), vec![code]);
    }
    // Consent is per channel.
    let mut f = ny();
    f.consent.voice = Consent::Revoked;
    assert!(decide(&f, Channel::Sms, noon(), &ctx()).is_allowed());
    assert!(!decide(&f, Channel::Voice, noon(), &ctx()).is_allowed());
}

#[test]
fn suppressions_name_their_sources_and_stay_on_their_channel() {
    let mut f = ny();
    f.suppressions = vec![
        Suppression {
            channel: Channel::Sms,
            source: S::StopKeyword,
        },
        Suppression {
            channel: Channel::Sms,
            source: S::Manual,
        },
        Suppression {
            channel: Channel::Sms,
            source: S::StopKeyword,
        },
        Suppression {
            channel: Channel::Email,
            source: S::Bounce,
        },
    ];
    let d = decide(&f, Channel::Sms, noon(), &ctx());
    assert_eq!(d.verdict(), Verdict::Deny);
    let sources: Vec<_> = d.reasons().iter().map(|r| (r.code, r.source)).collect();
    assert_eq!(
        sources,
        vec![
            (R::Suppressed, Some(S::StopKeyword)),
            (R::Suppressed, Some(S::Manual))
        ]
    );
    assert!(decide(&f, Channel::Voice, noon(), &ctx()).is_allowed());
    let d = decide(&f, Channel::Email, noon(), &ctx());
    assert_eq!(d.reasons()[0].source, Some(S::Bounce));
}

#[test]
fn dnc() {
    let cases = [
        (DncStatus::Listed, Some(R::DncListed)),
        (DncStatus::NotScrubbed, Some(R::DncStale)),
        (DncStatus::ProviderUnavailable, Some(R::DncUnavailable)),
        (DncStatus::NotConfigured, Some(R::DncNotConfigured)),
        (DncStatus::Acknowledged, None),
        (
            DncStatus::Clear {
                scrubbed_at: noon() - Duration::days(31),
            },
            None,
        ),
        (
            DncStatus::Clear {
                scrubbed_at: noon() - Duration::days(31) - Duration::seconds(1),
            },
            Some(R::DncStale),
        ),
    ];
    for (status, code) in cases {
        let mut f = ny();
        f.dnc = status;
        for channel in [Channel::Sms, Channel::Voice] {
            let d = decide(&f, channel, noon(), &ctx());
            assert_eq!(
                d.codes(),
                code.into_iter().collect::<Vec<_>>(),
                "{status:?}"
            );
        }
        // DNC does not apply to email.
        assert!(decide(&f, Channel::Email, noon(), &ctx()).is_allowed());
    }
}

#[test]
fn the_acknowledgment_warns_on_every_decision() {
    let mut f = ny();
    f.dnc = DncStatus::Acknowledged;
    for channel in Channel::ALL {
        let d = decide(&f, channel, noon(), &ctx());
        assert!(d.is_allowed());
        assert_eq!(d.warnings(), &[Warning::DncNotConfiguredAcknowledged]);
    }
}

#[test]
fn ten_dlc_applies_to_sms_only() {
    for status in [
        TenDlcStatus::NotRegistered,
        TenDlcStatus::Pending,
        TenDlcStatus::Rejected,
    ] {
        let c = SendingContext {
            sender_10dlc: status,
            ..ctx()
        };
        let d = decide(&ny(), Channel::Sms, noon(), &c);
        assert_eq!(d.codes(), vec![R::Unregistered10Dlc]);
        assert_eq!(d.verdict(), Verdict::Deny);
        assert!(decide(&ny(), Channel::Voice, noon(), &c).is_allowed());
        assert!(decide(&ny(), Channel::Email, noon(), &c).is_allowed());
    }
    // The strict default context has no registration.
    let d = decide(&ny(), Channel::Sms, noon(), &SendingContext::new(rules()));
    assert!(d.has(R::Unregistered10Dlc));
}

#[test]
fn addresses() {
    let mut f = ny();
    f.phone = None;
    assert_eq!(
        decide(&f, Channel::Sms, noon(), &ctx()).codes(),
        vec![R::InvalidAddress]
    );
    f.phone = Some("4155552671".into());
    assert_eq!(
        decide(&f, Channel::Voice, noon(), &ctx()).codes(),
        vec![R::InvalidAddress]
    );
    assert!(decide(&f, Channel::Email, noon(), &ctx()).is_allowed());
    let mut f = ny();
    f.email = Some("not an address".into());
    let d = decide(&f, Channel::Email, noon(), &ctx());
    assert_eq!(d.codes(), vec![R::InvalidAddress]);
    assert!(!d.reasons()[0].message.contains("not an address"));
}

#[test]
fn unknown_time_zones_fail_closed() {
    for (state, tz) in [
        (None, None),
        (Some("XX"), None),
        (None, Some("Mars/Olympus_Mons")),
        // An invalid explicit zone is not replaced by the state's.
        (Some("NY"), Some("Eastern")),
        (Some(""), Some("  ")),
        // A known zone with a state the table does not know: the state's rules are unknown.
        (Some("XX"), Some("America/New_York")),
        (Some("Texas"), Some("America/Chicago")),
    ] {
        let f = reachable(state, tz, noon());
        for channel in [Channel::Sms, Channel::Voice] {
            let d = decide(&f, channel, noon(), &ctx());
            assert_eq!(d.verdict(), Verdict::Deny, "{state:?} {tz:?}");
            assert_eq!(d.codes(), vec![R::UnknownTimezone]);
        }
        // Email without a campaign window does not need local time.
        assert!(decide(&f, Channel::Email, noon(), &ctx()).is_allowed());
    }
    // Lower case and padding are fine for states.
    let f = reachable(Some(" ny "), None, noon());
    assert!(decide(&f, Channel::Sms, noon(), &ctx()).is_allowed());
}

#[test]
fn every_reason_is_listed_and_deny_wins_over_defer() {
    let night = utc(2026, 9, 16, 6, 0, 0); // 02:00 EDT
    let mut f = ny();
    f.phone = Some("bogus".into());
    f.consent.sms = Consent::Revoked;
    f.suppressions = vec![Suppression {
        channel: Channel::Sms,
        source: S::StopKeyword,
    }];
    f.dnc = DncStatus::Listed;
    let c = SendingContext {
        sender_10dlc: TenDlcStatus::Pending,
        campaign_window: Some(
            CampaignWindow::new(
                &[Weekday::Mon],
                NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
                NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
                None,
            )
            .unwrap(),
        ),
        ..ctx()
    };
    let d = decide(&f, Channel::Sms, night, &c);
    assert_eq!(d.verdict(), Verdict::Deny);
    assert_eq!(
        d.codes(),
        vec![
            R::InvalidAddress,
            R::ConsentRevoked,
            R::Suppressed,
            R::DncListed,
            R::Unregistered10Dlc,
            R::QuietHours,
            R::OutsideCampaignWindow
        ]
    );
    assert_eq!(d.next_allowed_at(), None);
}

fn window(
    days: &[Weekday],
    start: (u32, u32),
    end: (u32, u32),
    tz: Option<&str>,
) -> CampaignWindow {
    CampaignWindow::new(
        days,
        NaiveTime::from_hms_opt(start.0, start.1, 0).unwrap(),
        NaiveTime::from_hms_opt(end.0, end.1, 0).unwrap(),
        tz,
    )
    .unwrap()
}

#[test]
fn campaign_window_intersects_calling_hours() {
    // Weekdays 18:00-23:00 recipient time: with calling hours, 18:00-21:00.
    let c = SendingContext {
        campaign_window: Some(window(
            &[
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            (18, 0),
            (23, 0),
            None,
        )),
        ..ctx()
    };
    let d = decide(&ny(), Channel::Sms, noon(), &c);
    assert_eq!(d.codes(), vec![R::OutsideCampaignWindow]);
    assert_eq!(d.next_allowed_at(), Some(utc(2026, 9, 16, 22, 0, 0))); // 18:00 EDT
    // 21:30 EDT Wednesday: inside the campaign's window, outside calling hours.
    let late = utc(2026, 9, 17, 1, 30, 0);
    let d = decide(&ny(), Channel::Sms, late, &c);
    assert_eq!(d.codes(), vec![R::QuietHours]);
    assert_eq!(d.next_allowed_at(), Some(utc(2026, 9, 17, 22, 0, 0)));
    // Email follows only the campaign window.
    assert!(decide(&ny(), Channel::Email, late, &c).is_allowed());
    // Friday 21:30 EDT: both reasons; the next instant is Monday 18:00 EDT.
    let fri = utc(2026, 9, 19, 1, 30, 0);
    assert!(decide(&ny(), Channel::Sms, fri - Duration::hours(1), &c).is_allowed());
    let sat = utc(2026, 9, 19, 14, 0, 0); // Saturday 10:00 EDT
    let d = decide(&ny(), Channel::Voice, sat, &c);
    assert_eq!(d.codes(), vec![R::OutsideCampaignWindow]);
    assert_eq!(d.next_allowed_at(), Some(utc(2026, 9, 21, 22, 0, 0)));
}

#[test]
fn campaign_window_in_its_own_zone() {
    // 09:00-17:00 Los Angeles, every day, to a New York recipient: 12:00-20:00 EDT.
    let all = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];
    let c = SendingContext {
        campaign_window: Some(window(&all, (9, 0), (17, 0), Some("America/Los_Angeles"))),
        ..ctx()
    };
    let at = utc(2026, 9, 16, 15, 0, 0); // 11:00 EDT, 08:00 PDT
    let d = decide(&ny(), Channel::Email, at, &c);
    assert_eq!(d.next_allowed_at(), Some(utc(2026, 9, 16, 16, 0, 0)));
    // A recipient with no zone: email can still be planned in the campaign's zone, SMS cannot.
    let nowhere = reachable(None, None, at);
    let d = decide(&nowhere, Channel::Email, at, &c);
    assert_eq!(d.codes(), vec![R::OutsideCampaignWindow]);
    let d = decide(&nowhere, Channel::Sms, at, &c);
    assert_eq!(
        d.codes(),
        vec![R::UnknownTimezone, R::OutsideCampaignWindow]
    );
    assert_eq!(d.verdict(), Verdict::Deny);
    // A recipient-time window needs the recipient's zone even for email.
    let c = SendingContext {
        campaign_window: Some(window(&all, (9, 0), (17, 0), None)),
        ..ctx()
    };
    assert_eq!(
        decide(&nowhere, Channel::Email, at, &c).codes(),
        vec![R::UnknownTimezone]
    );
}

#[test]
fn campaign_window_across_a_dst_gap_and_overlap() {
    let every = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];
    // 02:30-04:00 New York: on 2026-03-08 02:30 does not exist; the window is reached at the
    // jump, 07:00Z (03:00 EDT).
    let c = SendingContext {
        campaign_window: Some(window(&every, (2, 30), (4, 0), None)),
        ..ctx()
    };
    let f = reachable(None, Some("America/New_York"), noon());
    let at = utc(2026, 3, 8, 6, 0, 0); // 01:00 EST
    assert_eq!(
        decide(&f, Channel::Email, at, &c).next_allowed_at(),
        Some(utc(2026, 3, 8, 7, 0, 0))
    );
    // 01:30-01:45 New York on 2026-11-01 happens twice: 05:30Z (EDT) and 06:30Z (EST).
    let c = SendingContext {
        campaign_window: Some(window(&every, (1, 30), (1, 45), None)),
        ..ctx()
    };
    let at = utc(2026, 11, 1, 5, 0, 0); // 01:00 EDT
    assert_eq!(
        decide(&f, Channel::Email, at, &c).next_allowed_at(),
        Some(utc(2026, 11, 1, 5, 30, 0))
    );
    let at = utc(2026, 11, 1, 5, 50, 0); // 01:50 EDT
    assert_eq!(
        decide(&f, Channel::Email, at, &c).next_allowed_at(),
        Some(utc(2026, 11, 1, 6, 30, 0))
    );
}

#[test]
fn overnight_campaign_windows_belong_to_the_day_they_open() {
    // Fridays 22:00-02:00 New York (email): Saturday 01:00 is in, Friday 01:00 is not.
    let c = SendingContext {
        campaign_window: Some(window(&[Weekday::Fri], (22, 0), (2, 0), None)),
        ..ctx()
    };
    let f = reachable(None, Some("America/New_York"), noon());
    assert!(decide(&f, Channel::Email, utc(2026, 9, 19, 5, 0, 0), &c).is_allowed()); // Sat 01:00
    let d = decide(&f, Channel::Email, utc(2026, 9, 18, 5, 0, 0), &c); // Fri 01:00
    assert_eq!(d.next_allowed_at(), Some(utc(2026, 9, 19, 2, 0, 0))); // Fri 22:00 EDT
}

#[test]
fn no_allowed_instant_within_the_horizon_is_a_deny() {
    // A Sunday-only window for an Alabama contact (no calls on Sundays): never.
    let c = SendingContext {
        campaign_window: Some(window(&[Weekday::Sun], (9, 0), (17, 0), None)),
        ..ctx()
    };
    let f = reachable(Some("AL"), None, noon());
    let d = decide(&f, Channel::Sms, noon(), &c);
    assert_eq!(d.verdict(), Verdict::Deny);
    assert_eq!(d.codes(), vec![R::OutsideCampaignWindow]);
    assert!(d.reasons()[0].message.contains("14 days"));
    // Email is not bound by Alabama's Sundays.
    assert_eq!(
        decide(&f, Channel::Email, noon(), &c).verdict(),
        Verdict::Defer {
            until: utc(2026, 9, 20, 14, 0, 0)
        }
    );
}

#[test]
fn campaign_window_validation_and_serde() {
    use rampart_comply::WindowError;
    let t = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap();
    assert_eq!(
        CampaignWindow::new(&[], t(9), t(17), None),
        Err(WindowError::NoDays)
    );
    assert_eq!(
        CampaignWindow::new(&[Weekday::Mon], t(9), t(9), None),
        Err(WindowError::Empty)
    );
    assert_eq!(
        CampaignWindow::new(&[Weekday::Mon], t(9), t(17), Some("Nowhere/City")),
        Err(WindowError::UnknownTimezone)
    );
    let w: CampaignWindow = serde_json::from_str(
        r#"{"days":["mon","Tuesday"],"start":"09:00","end":"24:00","timezone":"America/Chicago"}"#,
    )
    .unwrap();
    assert_eq!(
        serde_json::to_string(&w).unwrap(),
        r#"{"days":["mon","tue"],"start":"09:00","end":"24:00","timezone":"America/Chicago"}"#
    );
    for bad in [
        r#"{"days":["someday"],"start":"09:00","end":"17:00"}"#,
        r#"{"days":["mon"],"start":"9am","end":"17:00"}"#,
        r#"{"days":["mon"],"start":"24:00","end":"17:00"}"#,
    ] {
        assert!(
            serde_json::from_str::<CampaignWindow>(bad).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn the_wire_shape() {
    let d = decide(&ny(), Channel::Sms, noon(), &ctx());
    assert_eq!(
        serde_json::to_value(&d).unwrap(),
        serde_json::json!({"decision": "allow", "reasons": [], "next_allowed_at": null, "warnings": []})
    );
    let mut f = ny();
    f.dnc = DncStatus::Acknowledged;
    let at = utc(2026, 9, 16, 11, 0, 0); // 07:00 EDT
    let d = decide(&f, Channel::Sms, at, &ctx());
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["decision"], "defer");
    assert_eq!(v["next_allowed_at"], "2026-09-16T12:00:00Z");
    assert_eq!(v["reasons"][0]["code"], "QUIET_HOURS");
    assert!(v["reasons"][0].get("source").is_none());
    assert_eq!(v["warnings"][0], "DNC_NOT_CONFIGURED_ACKNOWLEDGED");
    f.suppressions = vec![Suppression {
        channel: Channel::Sms,
        source: S::StopCalling,
    }];
    let v = serde_json::to_value(decide(&f, Channel::Sms, at, &ctx())).unwrap();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["reasons"][0]["code"], "SUPPRESSED");
    assert_eq!(v["reasons"][0]["source"], "stop_calling");
}

#[test]
fn reason_codes_are_the_documented_strings() {
    let expected = [
        "INVALID_ADDRESS",
        "NO_CONSENT",
        "CONSENT_REVOKED",
        "SUPPRESSED",
        "DNC_LISTED",
        "DNC_STALE",
        "DNC_UNAVAILABLE",
        "DNC_NOT_CONFIGURED",
        "UNREGISTERED_10DLC",
        "UNKNOWN_TIMEZONE",
        "QUIET_HOURS",
        "OUTSIDE_CAMPAIGN_WINDOW",
    ];
    for (code, name) in R::ALL.into_iter().zip(expected) {
        assert_eq!(code.as_str(), name);
        assert_eq!(serde_json::to_value(code).unwrap(), name);
        assert_eq!(serde_json::from_value::<R>(name.into()).unwrap(), code);
    }
    for (source, name) in [
        (S::StopKeyword, "stop_keyword"),
        (S::StopCalling, "stop_calling"),
        (S::Unsubscribe, "unsubscribe"),
        (S::Bounce, "bounce"),
        (S::Complaint, "complaint"),
        (S::Manual, "manual"),
    ] {
        assert_eq!(serde_json::to_value(source).unwrap(), name);
        assert_eq!(source.as_str(), name);
    }
}

#[test]
fn facts_read_from_json() {
    let f: rampart_comply::ContactFacts = serde_json::from_value(serde_json::json!({
        "phone": "+14155552671",
        "consent": {"sms": {"state": "granted", "evidence": true}},
        "suppressions": [{"channel": "email", "source": "unsubscribe"}],
        "dnc": {"status": "clear", "scrubbed_at": "2026-09-01T00:00:00Z"},
        "state": "CA"
    }))
    .unwrap();
    assert!(decide(&f, Channel::Sms, noon(), &ctx()).is_allowed());
    // Everything absent means the strictest reading.
    let empty: rampart_comply::ContactFacts = serde_json::from_str("{}").unwrap();
    let d = decide(&empty, Channel::Voice, noon(), &ctx());
    assert_eq!(
        d.codes(),
        vec![
            R::InvalidAddress,
            R::NoConsent,
            R::DncNotConfigured,
            R::UnknownTimezone
        ]
    );
}

#[test]
fn the_ends_of_time_do_not_panic() {
    use chrono::{DateTime, Utc};
    let c = SendingContext {
        campaign_window: Some(window(&[Weekday::Sun], (23, 0), (1, 0), None)),
        ..ctx()
    };
    for at in [
        DateTime::<Utc>::MIN_UTC,
        DateTime::<Utc>::MIN_UTC + Duration::days(1),
        DateTime::<Utc>::MAX_UTC - Duration::days(3),
        DateTime::<Utc>::MAX_UTC,
    ] {
        for tz in ["America/New_York", "Pacific/Chatham"] {
            let f = reachable(Some("AL"), Some(tz), noon());
            for channel in Channel::ALL {
                let d = decide(&f, channel, at, &c);
                assert_eq!(d.reasons().is_empty(), d.is_allowed());
                let d = decide(&f, channel, at, &ctx());
                assert_eq!(d.reasons().is_empty(), d.is_allowed());
            }
        }
    }
}
