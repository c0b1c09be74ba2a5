//! A rough timing of `decide` per recipient (issue 34's target: at most 5 µs), without a
//! benchmark framework: `cargo run --release -p rampart-comply --example decide_timing`.
//! The measured numbers belong in `bench/` once the dispatch issue wires the crate there.

use std::hint::black_box;
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rampart_comply::{
    CallingRules, Channel, ChannelConsents, Consent, ContactFacts, DncStatus, SendingContext,
    TenDlcStatus, decide,
};

fn facts(state: &str, timezone: Option<&str>, at: DateTime<Utc>) -> ContactFacts {
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
            scrubbed_at: at - Duration::days(3),
        },
        timezone: timezone.map(str::to_owned),
        state: Some(state.into()),
    }
}

fn time(label: &str, n: u32, mut f: impl FnMut()) {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    let per = start.elapsed() / n;
    println!("{label:<58} {per:>10.2?} per decision");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rules = CallingRules::builtin()?;
    let ctx = SendingContext {
        sender_10dlc: TenDlcStatus::Approved,
        ..SendingContext::new(rules)
    };
    let noon = Utc
        .with_ymd_and_hms(2026, 9, 16, 16, 0, 0)
        .single()
        .ok_or("bad instant")?;
    let night = noon - Duration::hours(10);
    let ny = facts("NY", None, noon);
    let tx = facts("TX", None, noon);
    let al = facts("AL", Some("America/Chicago"), noon);
    let sat_night = noon + Duration::days(3) + Duration::hours(10);

    time("allow (NY, one zone)", 200_000, || {
        black_box(decide(black_box(&ny), Channel::Sms, noon, &ctx));
    });
    time("allow (TX, two zones, no timezone)", 200_000, || {
        black_box(decide(black_box(&tx), Channel::Voice, noon, &ctx));
    });
    time("allow (AL, holiday rules)", 200_000, || {
        black_box(decide(black_box(&al), Channel::Sms, noon, &ctx));
    });
    time("defer at night (NY, next morning searched)", 20_000, || {
        black_box(decide(black_box(&ny), Channel::Sms, night, &ctx));
    });
    time(
        "defer Saturday night (AL, Sunday and holidays)",
        20_000,
        || {
            black_box(decide(black_box(&al), Channel::Sms, sat_night, &ctx));
        },
    );
    Ok(())
}
