//! Rampart's compliance room, pure part: may this one message go to this one recipient now?
//!
//! [`decide`] takes plain facts (the contact's address, consent, suppressions, DNC standing, time
//! zone and state, all read from the store by the caller), the channel, the instant, and the
//! sending context (calling-hours table, workspace flags, the sending number's 10DLC status, the
//! campaign window), and answers [`Verdict::Allow`], [`Verdict::Defer`] with the next allowed
//! instant, or [`Verdict::Deny`], with **every** reason that applied. This crate does no I/O: no
//! clock (the instant is an argument), no database, no network, no files (the built-in
//! calling-hours table is compiled in; an operator's replacement is handed in as text).
//!
//! What a decision guarantees:
//!
//! - **Fail closed.** Anything unknown denies: no consent with evidence (SMS and voice always;
//!   email when the workspace requires it), a revoked consent, any suppression of the address on
//!   the channel, a DNC hit, a DNC scrub older than 31 days or never made, a failed DNC provider,
//!   no DNC source without an acknowledgment, an SMS sender outside an approved 10DLC
//!   registration, a missing or malformed address, and an unknown or invalid time zone whenever
//!   local time matters. None of these is ever an allow, whatever else holds.
//! - **Calling hours** (SMS and voice): inside the federal 08:00–21:00 *and* the recipient
//!   state's window for that local day (day-of-week bans and holiday bans included), in the
//!   recipient's local time; end exclusive (21:00:00 is outside). The zone is the contact's
//!   `timezone` when set (an invalid IANA name is `UNKNOWN_TIMEZONE`, never a guess), otherwise
//!   its state's; a state with several zones and no explicit `timezone` must be inside the
//!   window in all of them. A state the table does not know is `UNKNOWN_TIMEZONE` too, even
//!   with a valid zone: its rules would be unknown. DST comes from the IANA database (chrono-tz). Holidays are the US
//!   federal calendar, computed for any year ([`holidays`]).
//! - **All the reasons.** `Allow` has no reasons; `Defer` and `Deny` have at least one, in the
//!   order of [`ReasonCode::ALL`]. Deny wins over defer: a decision is a defer only when every
//!   reason is time-based (quiet hours, campaign window), and then `until` is the first instant
//!   at which all of them clear together, searched up to [`DEFER_HORIZON_DAYS`] ahead; with no
//!   such instant the decision is a deny.
//! - **No personal data in messages.** Reason messages describe rules, never the address, the
//!   zone or the state of the person.
//!
//! Also here: inbound SMS keyword classification ([`keyword::classify`]) and the calling-hours
//! table ([`CallingRules`]), shipped as data (`data/calling_windows.json`) that an operator can
//! replace.

#![deny(missing_docs)]

mod decision;
mod facts;
pub mod holidays;
mod hours;
pub mod keyword;
mod rules;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

pub use decision::{Decision, Reason, ReasonCode, Verdict, Warning};
pub use facts::{
    CampaignWindow, CampaignWindowSpec, Channel, ChannelConsents, Consent, ContactFacts, DncStatus,
    SendingContext, Suppression, SuppressionSource, TenDlcStatus, WindowError,
};
pub use keyword::Keyword;
pub use rules::{BUILTIN_JSON, CallingRules, FORMAT, KNOWN_STATES, RulesError};

use hours::{Calling, CampaignClock, Plan};

/// A DNC scrub older than this many days must be repeated before a send.
pub const DNC_MAX_AGE_DAYS: i64 = 31;

/// How far ahead a defer looks for the next allowed instant; beyond it the decision is a deny.
pub const DEFER_HORIZON_DAYS: i64 = 14;

/// The longest email address (RFC 5321 path limit).
const EMAIL_MAX: usize = 254;

/// Whether `s` is an E.164 number: `+`, then 7 to 15 digits, the first not 0.
fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// A structural check of a normalised email address (the store validated it in full on entry):
/// one `@`, a non-empty local part of at most 64 bytes, a dotted domain, no spaces or controls.
fn is_plausible_email(s: &str) -> bool {
    if s.is_empty() || s.len() > EMAIL_MAX || s.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with(['.', '-'])
        && !domain.ends_with(['.', '-'])
        && !domain.contains("..")
}

fn address_reason(facts: &ContactFacts, channel: Channel) -> Option<Reason> {
    let (value, what) = match channel {
        Channel::Sms | Channel::Voice => (facts.phone.as_deref(), "phone number"),
        Channel::Email => (facts.email.as_deref(), "email address"),
    };
    let message = match value.map(str::trim) {
        None | Some("") => format!("the contact has no {what} for {}", channel.as_str()),
        Some(v) => {
            let valid = match channel {
                Channel::Email => is_plausible_email(v),
                _ => is_e164(v),
            };
            if valid {
                return None;
            }
            format!("the contact's {what} is not valid for {}", channel.as_str())
        }
    };
    Some(Reason::new(ReasonCode::InvalidAddress, message))
}

fn consent_reason(
    facts: &ContactFacts,
    channel: Channel,
    ctx: &SendingContext<'_>,
) -> Option<Reason> {
    let required = channel.is_phone() || ctx.email_requires_consent;
    if !required {
        return None;
    }
    let ch = channel.as_str();
    match facts.consent.get(channel) {
        Consent::Granted { evidence: true } => None,
        Consent::Granted { evidence: false } => Some(Reason::new(
            ReasonCode::NoConsent,
            format!("{ch} consent is recorded without evidence, which counts as no consent"),
        )),
        Consent::None => Some(Reason::new(
            ReasonCode::NoConsent,
            format!("no {ch} consent with evidence is on record"),
        )),
        Consent::Revoked => Some(Reason::new(
            ReasonCode::ConsentRevoked,
            format!("the recipient revoked {ch} consent"),
        )),
    }
}

fn suppression_reasons(facts: &ContactFacts, channel: Channel, out: &mut Vec<Reason>) {
    let mut sources: Vec<SuppressionSource> = facts
        .suppressions
        .iter()
        .filter(|s| s.channel == channel)
        .map(|s| s.source)
        .collect();
    sources.sort_unstable();
    sources.dedup();
    for source in sources {
        let why = match source {
            SuppressionSource::StopKeyword => "the recipient texted an opt-out keyword",
            SuppressionSource::StopCalling => "the recipient asked not to be called",
            SuppressionSource::Unsubscribe => "the recipient unsubscribed",
            SuppressionSource::Bounce => "mail to the address bounced",
            SuppressionSource::Complaint => "the recipient reported a message as spam",
            SuppressionSource::Manual => "an operator suppressed the address",
        };
        out.push(Reason {
            code: ReasonCode::Suppressed,
            source: Some(source),
            message: format!("the address is suppressed for {} ({why})", channel.as_str()),
        });
    }
}

fn dnc_reason(facts: &ContactFacts, at: DateTime<Utc>) -> Option<Reason> {
    match facts.dnc {
        DncStatus::Listed => Some(Reason::new(
            ReasonCode::DncListed,
            "the number is on a Do-Not-Call list",
        )),
        DncStatus::Clear { scrubbed_at } => {
            let age = at.signed_duration_since(scrubbed_at);
            (age > Duration::days(DNC_MAX_AGE_DAYS)).then(|| {
                Reason::new(
                    ReasonCode::DncStale,
                    format!(
                        "the last Do-Not-Call scrub is older than {DNC_MAX_AGE_DAYS} days: re-scrub first"
                    ),
                )
            })
        }
        DncStatus::NotScrubbed => Some(Reason::new(
            ReasonCode::DncStale,
            "the number was never scrubbed against Do-Not-Call: scrub first",
        )),
        DncStatus::ProviderUnavailable => Some(Reason::new(
            ReasonCode::DncUnavailable,
            "the Do-Not-Call provider could not be reached or failed; no send until it answers",
        )),
        DncStatus::NotConfigured => Some(Reason::new(
            ReasonCode::DncNotConfigured,
            "no Do-Not-Call provider or registry data is configured and running without one \
             has not been acknowledged",
        )),
        DncStatus::Acknowledged => None,
    }
}

/// The recipient's zones and state rule, or why they are unknown. With `calling` (a phone
/// channel), a state the table does not know fails closed even when the zone is known: its
/// calling rules would be unknown.
fn resolve_zones<'r>(
    facts: &ContactFacts,
    rules: &'r CallingRules,
    calling: bool,
) -> Result<(Vec<Tz>, Option<&'r rules::StateRule>), &'static str> {
    let state = facts
        .state
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let state_rule = state.and_then(|s| rules.state(s));
    if calling && state.is_some() && state_rule.is_none() {
        return Err(
            "the contact's state is not in the calling-hours table: its calling rules are unknown, \
             so no call or text",
        );
    }
    match facts
        .timezone
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(name) => name
            .parse::<Tz>()
            .map(|tz| (vec![tz], state_rule))
            .map_err(|_| {
                "the contact's timezone is not an IANA time zone name: its local time is unknown, \
                 so no time-bound send"
            }),
        None => match (state, state_rule) {
            (Some(_), Some(rule)) => Ok((rule.zones.clone(), Some(rule))),
            (Some(_), None) => Err(
                "the contact's state is not in the calling-hours table: its local time is \
                 unknown, so no time-bound send",
            ),
            (None, _) => Err(
                "the contact has neither a time zone nor a US state: its local time is unknown, \
                 so no time-bound send",
            ),
        },
    }
}

/// Decides whether one message on `channel` may go to the contact described by `facts` at `at`,
/// under `ctx`. Pure: the same arguments always give the same decision. See the crate docs for
/// what the decision guarantees.
pub fn decide(
    facts: &ContactFacts,
    channel: Channel,
    at: DateTime<Utc>,
    ctx: &SendingContext<'_>,
) -> Decision {
    let mut reasons = Vec::new();
    let mut warnings = Vec::new();

    reasons.extend(address_reason(facts, channel));
    reasons.extend(consent_reason(facts, channel, ctx));
    suppression_reasons(facts, channel, &mut reasons);
    if channel.is_phone() {
        reasons.extend(dnc_reason(facts, at));
    }
    if facts.dnc == DncStatus::Acknowledged {
        warnings.push(Warning::DncNotConfiguredAcknowledged);
    }
    if channel == Channel::Sms && ctx.sender_10dlc != TenDlcStatus::Approved {
        let message = match ctx.sender_10dlc {
            TenDlcStatus::Pending => {
                "the sending number's 10DLC registration is pending approval; SMS needs an approved one"
            }
            TenDlcStatus::Rejected => {
                "the sending number's 10DLC registration was rejected; SMS needs an approved one"
            }
            _ => "the sending number is not in an approved 10DLC registration",
        };
        reasons.push(Reason::new(ReasonCode::Unregistered10Dlc, message));
    }

    // Time: calling hours for phone channels, the campaign window for any.
    let calling_needed = channel.is_phone();
    let campaign = ctx.campaign_window;
    let recipient_zone_needed = calling_needed || campaign.is_some_and(|w| w.timezone().is_none());
    let mut plan = None;
    if calling_needed || campaign.is_some() {
        let resolved = if recipient_zone_needed {
            resolve_zones(facts, ctx.rules, calling_needed).map(Some)
        } else {
            Ok(None)
        };
        match resolved {
            Err(why) => {
                reasons.push(Reason::new(ReasonCode::UnknownTimezone, why));
                // A campaign in its own zone can still be checked, for the full list.
                if let Some(w) = campaign
                    && let Some(tz) = w.timezone()
                {
                    plan = Some(Plan {
                        zones: Vec::new(),
                        calling: None,
                        campaign: Some((w, CampaignClock::Own(tz))),
                    });
                }
            }
            Ok(zones) => {
                let (zones, state) = zones.unwrap_or_default();
                plan = Some(Plan {
                    zones,
                    calling: calling_needed.then_some(Calling {
                        federal: ctx.rules.federal,
                        state,
                    }),
                    campaign: campaign.map(|w| {
                        let clock = w
                            .timezone()
                            .map_or(CampaignClock::Recipient, CampaignClock::Own);
                        (w, clock)
                    }),
                });
            }
        }
    }
    if let Some(plan) = &plan {
        let blocks = plan.evaluate(at);
        if let Some(m) = blocks.quiet {
            reasons.push(Reason::new(ReasonCode::QuietHours, m));
        }
        if let Some(m) = blocks.campaign {
            reasons.push(Reason::new(ReasonCode::OutsideCampaignWindow, m));
        }
    }

    reasons.sort_by_key(|r| r.code);
    if reasons.is_empty() {
        return Decision::new(Verdict::Allow, reasons, warnings);
    }
    if reasons.iter().any(|r| !r.code.is_time_based()) {
        return Decision::new(Verdict::Deny, reasons, warnings);
    }
    let until = plan
        .as_ref()
        .and_then(|p| p.next_allowed(at, Duration::days(DEFER_HORIZON_DAYS)));
    match until {
        Some(until) => Decision::new(Verdict::Defer { until }, reasons, warnings),
        None => {
            for r in &mut reasons {
                r.message.push_str(&format!(
                    "; no permitted time within the next {DEFER_HORIZON_DAYS} days"
                ));
            }
            Decision::new(Verdict::Deny, reasons, warnings)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164() {
        assert!(is_e164("+14155552671"));
        assert!(is_e164("+4930123456"));
        for bad in [
            "14155552671",
            "+0415555",
            "+1 415 555",
            "+123456",
            "+1234567890123456",
            "+",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn emails() {
        assert!(is_plausible_email("ann@example.com"));
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@localhost",
            "a b@example.com",
            "a@b@c.com",
            "ann@.example.com",
            "ann@example..com",
        ] {
            assert!(!is_plausible_email(bad), "{bad}");
        }
    }
}
