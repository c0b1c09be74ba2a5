//! What a decision says: allow, defer until an instant, or deny, always with every reason that
//! applied (not only the first) and the warnings the workspace must see.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};

use crate::facts::SuppressionSource;

/// A reason a send may not happen now. The serde names are the stable, documented codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ReasonCode {
    /// The address is missing or malformed for the channel.
    #[serde(rename = "INVALID_ADDRESS")]
    InvalidAddress,
    /// The channel needs consent and none with evidence is on record.
    #[serde(rename = "NO_CONSENT")]
    NoConsent,
    /// Consent for the channel was revoked.
    #[serde(rename = "CONSENT_REVOKED")]
    ConsentRevoked,
    /// The address is suppressed on the channel (the reason carries the source).
    #[serde(rename = "SUPPRESSED")]
    Suppressed,
    /// The number is on a Do-Not-Call list.
    #[serde(rename = "DNC_LISTED")]
    DncListed,
    /// The last DNC scrub is older than 31 days (or never happened): re-scrub first.
    #[serde(rename = "DNC_STALE")]
    DncStale,
    /// The DNC provider failed: fail closed.
    #[serde(rename = "DNC_UNAVAILABLE")]
    DncUnavailable,
    /// No DNC provider or registry data, and no acknowledgment.
    #[serde(rename = "DNC_NOT_CONFIGURED")]
    DncNotConfigured,
    /// The SMS would go from a number not in an approved 10DLC registration.
    #[serde(rename = "UNREGISTERED_10DLC")]
    Unregistered10Dlc,
    /// The recipient's time zone is unknown or invalid: no time-bound send (fail closed).
    #[serde(rename = "UNKNOWN_TIMEZONE")]
    UnknownTimezone,
    /// Outside the permitted calling hours (federal or state) in the recipient's local time,
    /// including a state's day-of-week and holiday bans.
    #[serde(rename = "QUIET_HOURS")]
    QuietHours,
    /// Outside the campaign's own sending window.
    #[serde(rename = "OUTSIDE_CAMPAIGN_WINDOW")]
    OutsideCampaignWindow,
}

impl ReasonCode {
    /// Every code, in the order reasons are listed.
    pub const ALL: [Self; 12] = [
        Self::InvalidAddress,
        Self::NoConsent,
        Self::ConsentRevoked,
        Self::Suppressed,
        Self::DncListed,
        Self::DncStale,
        Self::DncUnavailable,
        Self::DncNotConfigured,
        Self::Unregistered10Dlc,
        Self::UnknownTimezone,
        Self::QuietHours,
        Self::OutsideCampaignWindow,
    ];

    /// The stable code (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidAddress => "INVALID_ADDRESS",
            Self::NoConsent => "NO_CONSENT",
            Self::ConsentRevoked => "CONSENT_REVOKED",
            Self::Suppressed => "SUPPRESSED",
            Self::DncListed => "DNC_LISTED",
            Self::DncStale => "DNC_STALE",
            Self::DncUnavailable => "DNC_UNAVAILABLE",
            Self::DncNotConfigured => "DNC_NOT_CONFIGURED",
            Self::Unregistered10Dlc => "UNREGISTERED_10DLC",
            Self::UnknownTimezone => "UNKNOWN_TIMEZONE",
            Self::QuietHours => "QUIET_HOURS",
            Self::OutsideCampaignWindow => "OUTSIDE_CAMPAIGN_WINDOW",
        }
    }

    /// Whether the reason clears by itself as time passes (and so can make a decision a defer
    /// rather than a deny). Every other reason needs something to change first.
    pub fn is_time_based(self) -> bool {
        matches!(self, Self::QuietHours | Self::OutsideCampaignWindow)
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason, with a message for people. Messages never contain the address, the contact's
/// name, its time zone or state: they describe the rule, not the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// The stable code.
    pub code: ReasonCode,
    /// For [`ReasonCode::Suppressed`]: why the address is suppressed; `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SuppressionSource>,
    /// A sentence for the operator or customer.
    pub message: String,
}

impl Reason {
    pub(crate) fn new(code: ReasonCode, message: impl Into<String>) -> Self {
        Self {
            code,
            source: None,
            message: message.into(),
        }
    }
}

/// A standing condition the workspace must see on every decision, even an allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Warning {
    /// The workspace runs without a DNC provider or registry data, under an acknowledgment.
    #[serde(rename = "DNC_NOT_CONFIGURED_ACKNOWLEDGED")]
    DncNotConfiguredAcknowledged,
}

/// The outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send now.
    Allow,
    /// Not now; `until` is the first instant at which every time-based reason clears (nothing
    /// else stood in the way).
    Defer {
        /// The next allowed instant.
        until: DateTime<Utc>,
    },
    /// Not without a change to the facts (consent, suppression, DNC, registration, time zone),
    /// or no allowed instant exists within the search horizon.
    Deny,
}

/// A decision: the verdict, every reason, the warnings. Built only by [`crate::decide`], which
/// guarantees that `Allow` has no reasons and that `Defer` and `Deny` have at least one, and that
/// `Defer` is given only when every reason is time-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    verdict: Verdict,
    reasons: Vec<Reason>,
    warnings: Vec<Warning>,
}

impl Decision {
    pub(crate) fn new(verdict: Verdict, reasons: Vec<Reason>, warnings: Vec<Warning>) -> Self {
        Self {
            verdict,
            reasons,
            warnings,
        }
    }

    /// Allow, defer or deny.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Whether the send may happen now.
    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }

    /// Every reason, in a fixed order (that of [`ReasonCode::ALL`]); empty exactly when allowed.
    pub fn reasons(&self) -> &[Reason] {
        &self.reasons
    }

    /// Whether a reason with `code` is among the reasons.
    pub fn has(&self, code: ReasonCode) -> bool {
        self.reasons.iter().any(|r| r.code == code)
    }

    /// The codes of the reasons, in order.
    pub fn codes(&self) -> Vec<ReasonCode> {
        self.reasons.iter().map(|r| r.code).collect()
    }

    /// Standing warnings.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The instant a deferred send becomes allowed; `None` unless deferred.
    pub fn next_allowed_at(&self) -> Option<DateTime<Utc>> {
        match self.verdict {
            Verdict::Defer { until } => Some(until),
            _ => None,
        }
    }
}

/// Serialises as the eligibility route answers:
/// `{"decision":"allow"|"defer"|"deny","reasons":[{"code","message"}],"next_allowed_at":RFC3339|null,"warnings":[…]}`.
impl Serialize for Decision {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            decision: &'static str,
            reasons: &'a [Reason],
            next_allowed_at: Option<String>,
            warnings: &'a [Warning],
        }
        let decision = match self.verdict {
            Verdict::Allow => "allow",
            Verdict::Defer { .. } => "defer",
            Verdict::Deny => "deny",
        };
        Wire {
            decision,
            reasons: &self.reasons,
            next_allowed_at: self
                .next_allowed_at()
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            warnings: &self.warnings,
        }
        .serialize(serializer)
    }
}
