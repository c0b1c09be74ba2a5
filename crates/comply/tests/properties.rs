//! Property tests: whatever the facts, no allow with an unknown zone, a suppression, a DNC hit
//! or missing consent on a phone channel; reasons are empty exactly when allowed; a defer names
//! the first instant at which every time-based reason clears.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use common::rules;
use proptest::prelude::*;
use rampart_comply::{
    CampaignWindow, Channel, ChannelConsents, Consent, ContactFacts, DEFER_HORIZON_DAYS, DncStatus,
    KNOWN_STATES, SendingContext, Suppression, SuppressionSource, TenDlcStatus, Verdict, decide,
    keyword,
};

const ZONES: &[&str] = &[
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "America/St_Johns",
    "Europe/London",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "EST5EDT",
];

const BAD_ZONES: &[&str] = &[
    "Mars/Olympus_Mons",
    "Eastern",
    "EST-5",
    "america/new_york",
    "+05:00",
    "  ",
];

fn channel() -> impl Strategy<Value = Channel> {
    prop_oneof![
        Just(Channel::Sms),
        Just(Channel::Voice),
        Just(Channel::Email)
    ]
}

fn consent() -> impl Strategy<Value = Consent> {
    prop_oneof![
        Just(Consent::None),
        Just(Consent::Revoked),
        any::<bool>().prop_map(|evidence| Consent::Granted { evidence }),
        Just(Consent::Granted { evidence: true }),
    ]
}

fn source() -> impl Strategy<Value = SuppressionSource> {
    prop_oneof![
        Just(SuppressionSource::StopKeyword),
        Just(SuppressionSource::StopCalling),
        Just(SuppressionSource::Unsubscribe),
        Just(SuppressionSource::Bounce),
        Just(SuppressionSource::Complaint),
        Just(SuppressionSource::Manual),
    ]
}

fn zone_name() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        3 => proptest::sample::select(ZONES).prop_map(|z| Some(z.to_owned())),
        1 => proptest::sample::select(BAD_ZONES).prop_map(|z| Some(z.to_owned())),
    ]
}

fn state() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        4 => proptest::sample::select(&KNOWN_STATES[..]).prop_map(|s| Some(s.to_owned())),
        1 => proptest::sample::select(&["XX", "ny", " tx ", "", "Texas"][..]).prop_map(|s| Some(s.to_owned())),
    ]
}

/// DNC status, with a scrub age in seconds for `Clear`.
fn dnc() -> impl Strategy<Value = (u8, i64)> {
    (0u8..6, 0i64..(60 * 86_400))
}

fn make_dnc((kind, age): (u8, i64), at: DateTime<Utc>) -> DncStatus {
    match kind {
        0 => DncStatus::Listed,
        1 => DncStatus::NotScrubbed,
        2 => DncStatus::ProviderUnavailable,
        3 => DncStatus::NotConfigured,
        4 => DncStatus::Acknowledged,
        _ => DncStatus::Clear {
            scrubbed_at: at - Duration::seconds(age),
        },
    }
}

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    // 2020-01-01 .. 2036-01-01
    (1_577_836_800i64..2_082_758_400).prop_map(|s| Utc.timestamp_opt(s, 0).unwrap())
}

fn window() -> impl Strategy<Value = Option<CampaignWindow>> {
    let w = (
        1u8..128,
        0u32..96,
        0u32..96,
        proptest::option::of(proptest::sample::select(ZONES)),
    )
        .prop_filter_map("empty window", |(mask, s, e, tz)| {
            let days: Vec<Weekday> = (0..7)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| Weekday::try_from(i as u8).unwrap())
                .collect();
            let t = |q: u32| NaiveTime::from_num_seconds_from_midnight_opt(q * 900, 0).unwrap();
            CampaignWindow::new(&days, t(s), t(e), tz).ok()
        });
    prop_oneof![2 => Just(None), 1 => w.prop_map(Some)]
}

#[derive(Debug, Clone)]
struct Case {
    facts: ContactFacts,
    dnc: (u8, i64),
    channel: Channel,
    at: DateTime<Utc>,
    email_requires_consent: bool,
    ten_dlc: TenDlcStatus,
    window: Option<CampaignWindow>,
}

fn case() -> impl Strategy<Value = Case> {
    let facts = (
        prop_oneof![
            Just(None),
            Just(Some("+14155552671".to_owned())),
            Just(Some("+442071838750".to_owned())),
            "[+0-9 a-z]{0,16}".prop_map(Some)
        ],
        prop_oneof![
            Just(None),
            Just(Some("ann@example.com".to_owned())),
            "[a-z@. ]{0,12}".prop_map(Some)
        ],
        (consent(), consent(), consent()),
        proptest::collection::vec((channel(), source()), 0..3),
        zone_name(),
        state(),
    );
    (
        facts,
        dnc(),
        channel(),
        instant(),
        any::<bool>(),
        prop_oneof![
            3 => Just(TenDlcStatus::Approved),
            1 => Just(TenDlcStatus::Pending),
            1 => Just(TenDlcStatus::Rejected),
            1 => Just(TenDlcStatus::NotRegistered),
        ],
        window(),
    )
        .prop_map(
            |(
                (phone, email, (sms, voice, mail), sup, timezone, state),
                dnc,
                channel,
                at,
                email_requires_consent,
                ten_dlc,
                window,
            )| Case {
                facts: ContactFacts {
                    phone,
                    email,
                    consent: ChannelConsents {
                        sms,
                        voice,
                        email: mail,
                    },
                    suppressions: sup
                        .into_iter()
                        .map(|(channel, source)| Suppression { channel, source })
                        .collect(),
                    dnc: DncStatus::NotConfigured,
                    timezone,
                    state,
                },
                dnc,
                channel,
                at,
                email_requires_consent,
                ten_dlc,
                window,
            },
        )
}

/// The recipient's zones by an independent reading of the facts, for a phone channel: `None`
/// when unknown (an unknown state makes the state's rules unknown even with a zone).
fn oracle_zones(f: &ContactFacts) -> Option<Vec<Tz>> {
    let state = f.state.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let known_state = state.map(|s| rules().zones(&s.to_ascii_uppercase()));
    if matches!(known_state, Some(None)) {
        return None;
    }
    match f
        .timezone
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(name) => name.parse::<Tz>().ok().map(|tz| vec![tz]),
        None => known_state.flatten().map(<[Tz]>::to_vec),
    }
}

/// The same for a channel that needs only the zone (email with a recipient-time window).
fn oracle_zone_only(f: &ContactFacts) -> Option<Vec<Tz>> {
    match f
        .timezone
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(name) => name.parse::<Tz>().ok().map(|tz| vec![tz]),
        None => {
            let code = f.state.as_deref()?.trim().to_ascii_uppercase();
            rules().zones(&code).map(<[Tz]>::to_vec)
        }
    }
}

fn is_time_based(code: rampart_comply::ReasonCode) -> bool {
    use rampart_comply::ReasonCode as R;
    matches!(code, R::QuietHours | R::OutsideCampaignWindow)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn no_unsafe_allow_and_reasons_match_the_verdict(mut c in case()) {
        c.facts.dnc = make_dnc(c.dnc, c.at);
        let ctx = SendingContext {
            rules: rules(),
            email_requires_consent: c.email_requires_consent,
            sender_10dlc: c.ten_dlc,
            campaign_window: c.window,
        };
        let d = decide(&c.facts, c.channel, c.at, &ctx);
        let f = &c.facts;

        // Reasons are empty exactly when allowed; a defer has only time-based reasons.
        prop_assert_eq!(d.reasons().is_empty(), d.is_allowed());
        match d.verdict() {
            Verdict::Allow | Verdict::Deny => {}
            Verdict::Defer { until } => {
                prop_assert!(d.reasons().iter().all(|r| is_time_based(r.code)));
                prop_assert!(until > c.at);
                prop_assert!(until <= c.at + Duration::days(DEFER_HORIZON_DAYS));
            }
        }
        if d.verdict() == Verdict::Deny {
            prop_assert!(!d.reasons().is_empty());
        }

        if d.is_allowed() {
            // Never with a suppression on the channel.
            prop_assert!(!f.suppressions.iter().any(|s| s.channel == c.channel));
            if c.channel.is_phone() {
                // Never with an unknown zone, missing consent, or a DNC hit or doubt.
                let zones = oracle_zones(f);
                prop_assert!(zones.is_some());
                prop_assert_eq!(f.consent.get(c.channel), Consent::Granted { evidence: true });
                let dnc_ok = match f.dnc {
                    DncStatus::Acknowledged => true,
                    DncStatus::Clear { scrubbed_at } => c.at - scrubbed_at <= Duration::days(31),
                    _ => false,
                };
                prop_assert!(dnc_ok, "{:?}", f.dnc);
                prop_assert!(f.phone.as_deref().is_some_and(|p| p.starts_with('+')));
                if c.channel == Channel::Sms {
                    prop_assert_eq!(c.ten_dlc, TenDlcStatus::Approved);
                }
                // Inside 08:00-21:00 in every one of the recipient's zones.
                for tz in zones.unwrap_or_default() {
                    let local = c.at.with_timezone(&tz);
                    let secs = local.num_seconds_from_midnight();
                    prop_assert!((8 * 3600..21 * 3600).contains(&secs), "{} in {}", local, tz);
                }
            } else if c.email_requires_consent {
                prop_assert_eq!(f.consent.get(c.channel), Consent::Granted { evidence: true });
            }
            // A campaign window in the recipient's time needs a known zone, on any channel.
            if c.window.is_some_and(|w| w.timezone().is_none()) {
                prop_assert!(oracle_zone_only(f).is_some());
            }
        }
    }

    #[test]
    fn keywords_survive_case_padding_and_trailing_punctuation(
        word in proptest::sample::select(&["STOP", "stopall", "Unsubscribe", "cancel", "END", "quit", "revoke", "optout", "opt out", "help", "INFO", "start", "unstop"][..]),
        upper in proptest::collection::vec(any::<bool>(), 16),
        pad in "[ \t\n]{0,3}",
        punct in "[.!?]{0,3}",
    ) {
        let mixed: String = word
            .chars()
            .zip(upper.iter().cycle())
            .map(|(ch, up)| if *up { ch.to_ascii_uppercase() } else { ch.to_ascii_lowercase() })
            .collect();
        let body = format!("{pad}{mixed}{punct}{pad}");
        prop_assert_eq!(keyword::classify(&body), keyword::classify(word));
        prop_assert!(keyword::classify(word).is_some());
        // A word before it makes it a sentence, not a keyword.
        let sentence = format!("please {mixed}");
        prop_assert_eq!(keyword::classify(&sentence), None);
    }

    #[test]
    fn any_instant_chrono_can_hold_is_decided_without_panicking(
        c in reachable_case(),
        secs in (DateTime::<Utc>::MIN_UTC.timestamp()..=DateTime::<Utc>::MAX_UTC.timestamp()),
    ) {
        let at = DateTime::from_timestamp(secs, 0).unwrap();
        let ctx = SendingContext {
            rules: rules(),
            email_requires_consent: c.email_requires_consent,
            sender_10dlc: c.ten_dlc,
            campaign_window: c.window,
        };
        let d = decide(&c.facts, c.channel, at, &ctx);
        prop_assert_eq!(d.reasons().is_empty(), d.is_allowed());
    }

    #[test]
    fn classify_and_from_json_never_panic(s in "\\PC{0,80}") {
        let _ = keyword::classify(&s);
        let _ = rampart_comply::CallingRules::from_json(&s);
    }
}

/// Facts that pass every non-time check, so most cases allow or defer.
fn reachable_case() -> impl Strategy<Value = Case> {
    case().prop_map(|mut c| {
        let granted = Consent::Granted { evidence: true };
        c.facts.phone = Some("+14155552671".to_owned());
        c.facts.email = Some("ann@example.com".to_owned());
        c.facts.consent = ChannelConsents {
            sms: granted,
            voice: granted,
            email: granted,
        };
        c.facts.suppressions.clear();
        c.dnc = (4, 0);
        c.ten_dlc = TenDlcStatus::Approved;
        c
    })
}

/// Run by hand (not `proptest!`) to count the defers: the property must not pass vacuously.
#[test]
fn a_defer_names_the_first_instant_the_time_reasons_clear() {
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config {
        cases: 1024,
        ..Config::default()
    });
    let defers = std::cell::Cell::new(0u32);
    let denied_by_horizon = std::cell::Cell::new(0u32);
    let allows = std::cell::Cell::new(0u32);
    runner
        .run(&reachable_case(), |mut c| {
            c.facts.dnc = make_dnc(c.dnc, c.at);
            let ctx = SendingContext {
                rules: rules(),
                email_requires_consent: c.email_requires_consent,
                sender_10dlc: c.ten_dlc,
                campaign_window: c.window,
            };
            let d = decide(&c.facts, c.channel, c.at, &ctx);
            let timed = |t| {
                decide(&c.facts, c.channel, t, &ctx)
                    .reasons()
                    .iter()
                    .any(|r| is_time_based(r.code))
            };
            match d.verdict() {
                Verdict::Defer { until } => {
                    defers.set(defers.get() + 1);
                    prop_assert!(!timed(until), "still blocked at {}", until);
                    let span = until - c.at;
                    for i in 1..16 {
                        let t = c.at + span * i / 16;
                        prop_assert!(timed(t), "free at {} before {}", t, until);
                    }
                    for s in [1, 60, 900] {
                        let t = until - Duration::seconds(s);
                        if t > c.at {
                            prop_assert!(timed(t), "free at {} before {}", t, until);
                        }
                    }
                }
                Verdict::Deny if d.reasons().iter().all(|r| is_time_based(r.code)) => {
                    // Only time stands in the way, yet no instant was found: check that none
                    // exists on a 15-minute grid over the horizon.
                    denied_by_horizon.set(denied_by_horizon.get() + 1);
                    let mut t = c.at;
                    while t <= c.at + Duration::days(DEFER_HORIZON_DAYS) {
                        prop_assert!(timed(t), "free at {} but denied", t);
                        t += Duration::minutes(15);
                    }
                }
                Verdict::Allow => {
                    allows.set(allows.get() + 1);
                    if c.channel.is_phone() {
                        let zones = oracle_zones(&c.facts);
                        prop_assert!(zones.is_some());
                        for tz in zones.unwrap_or_default() {
                            let local = c.at.with_timezone(&tz);
                            let secs = local.num_seconds_from_midnight();
                            prop_assert!(
                                (8 * 3600..21 * 3600).contains(&secs),
                                "{} in {}",
                                local,
                                tz
                            );
                        }
                    }
                }
                Verdict::Deny => {}
            }
            Ok(())
        })
        .unwrap();
    assert!(defers.get() > 200, "only {} defers", defers.get());
    assert!(allows.get() > 100, "only {} allows", allows.get());
    eprintln!(
        "{} allows, {} defers, {} horizon denials",
        allows.get(),
        defers.get(),
        denied_by_horizon.get()
    );
}
