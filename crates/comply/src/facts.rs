//! What a decision is made from: plain data the caller reads from the store (the contact's
//! facts) and from the workspace and campaign (the sending context). Nothing here reads
//! anything; every field says what an absent or unknown value means, and each such value
//! fails closed.

use chrono::{DateTime, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::rules::CallingRules;

/// A channel a message goes out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A text message to the contact's phone.
    Sms,
    /// A call to the contact's phone.
    Voice,
    /// A message to the contact's email address.
    Email,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Self; 3] = [Self::Sms, Self::Voice, Self::Email];

    /// Whether the channel reaches a phone (and so calling hours and DNC apply).
    pub fn is_phone(self) -> bool {
        matches!(self, Self::Sms | Self::Voice)
    }

    /// The serde name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Voice => "voice",
            Self::Email => "email",
        }
    }
}

/// The consent on record for one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Consent {
    /// No consent was ever recorded.
    #[default]
    None,
    /// Consent was recorded; `evidence` says whether its evidence is on file. Consent without
    /// evidence counts as no consent.
    Granted {
        /// Whether evidence (source, capture time, the form or recording) is kept.
        evidence: bool,
    },
    /// Consent was given and later revoked.
    Revoked,
}

/// The consent on record for each channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChannelConsents {
    /// For text messages.
    #[serde(default)]
    pub sms: Consent,
    /// For calls.
    #[serde(default)]
    pub voice: Consent,
    /// For email (needed only where the workspace requires it).
    #[serde(default)]
    pub email: Consent,
}

impl ChannelConsents {
    /// The consent for `channel`.
    pub fn get(&self, channel: Channel) -> Consent {
        match channel {
            Channel::Sms => self.sms,
            Channel::Voice => self.voice,
            Channel::Email => self.email,
        }
    }
}

/// Why an address is suppressed. The serde names are stable (snake_case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionSource {
    /// The recipient texted an opt-out keyword (STOP and the like).
    StopKeyword,
    /// The recipient asked on a call to stop calling.
    StopCalling,
    /// The recipient used an unsubscribe link or List-Unsubscribe.
    Unsubscribe,
    /// Mail to the address bounced permanently.
    Bounce,
    /// The recipient marked a message as spam.
    Complaint,
    /// An operator suppressed the address.
    Manual,
}

impl SuppressionSource {
    /// The serde name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StopKeyword => "stop_keyword",
            Self::StopCalling => "stop_calling",
            Self::Unsubscribe => "unsubscribe",
            Self::Bounce => "bounce",
            Self::Complaint => "complaint",
            Self::Manual => "manual",
        }
    }
}

/// A suppression row matching the contact's address on one channel (suppressions are keyed by
/// channel and normalised address, not by contact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// The channel suppressed.
    pub channel: Channel,
    /// Why.
    pub source: SuppressionSource,
}

/// The contact's Do-Not-Call standing, as the store last recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DncStatus {
    /// On a DNC list (national registry, provider, or the workspace's internal list).
    Listed,
    /// Scrubbed and not listed at `scrubbed_at`; older than 31 days needs a re-scrub.
    Clear {
        /// When the scrub ran.
        scrubbed_at: DateTime<Utc>,
    },
    /// A DNC source is configured but this number was never scrubbed.
    NotScrubbed,
    /// The provider failed (error or timeout) on the last attempt: never read as "not listed".
    ProviderUnavailable,
    /// No provider, no registry data, and no acknowledgment.
    #[default]
    NotConfigured,
    /// No provider and no registry data, and an owner or admin has acknowledged running without
    /// one (audited): sends proceed with a warning on every decision.
    Acknowledged,
}

/// The 10DLC registration status of the number an SMS is sent from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenDlcStatus {
    /// In an approved brand and campaign registration.
    Approved,
    /// Submitted, not yet approved.
    Pending,
    /// Rejected.
    Rejected,
    /// In no registration (or no sending number is known).
    #[default]
    NotRegistered,
}

/// Everything about the recipient a decision needs. Filled by the caller from the store.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ContactFacts {
    /// The phone number in E.164 (`+14155552671`), as the store normalised it.
    #[serde(default)]
    pub phone: Option<String>,
    /// The email address, as the store normalised it.
    #[serde(default)]
    pub email: Option<String>,
    /// Consent per channel.
    #[serde(default)]
    pub consent: ChannelConsents,
    /// Every suppression matching the contact's addresses (any channel; the decision picks the
    /// ones for its channel).
    #[serde(default)]
    pub suppressions: Vec<Suppression>,
    /// The DNC standing of the phone number.
    #[serde(default)]
    pub dnc: DncStatus,
    /// The contact's IANA time zone, when known (wins over the state's).
    #[serde(default)]
    pub timezone: Option<String>,
    /// The contact's US state (USPS code), when known.
    #[serde(default)]
    pub state: Option<String>,
}

/// A campaign's own sending window, in the recipient's local time unless it names a zone.
/// Built by [`CampaignWindow::new`] (or deserialised through it), so it is always valid.
///
/// `start < end` is a window within each allowed day; `start > end` runs overnight, from
/// `start` on an allowed day to `end` the next morning. The end is exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CampaignWindowSpec", into = "CampaignWindowSpec")]
pub struct CampaignWindow {
    /// Bit `n` set: the window opens on the day `n` days after Monday.
    days: u8,
    start: u32,
    end: u32,
    timezone: Option<Tz>,
}

/// Why a campaign window was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// No day of the week is allowed.
    #[error("a campaign window needs at least one day")]
    NoDays,
    /// A day name that is not one (`mon` … `sun`, or the full name).
    #[error("{0:?} is not a day of the week")]
    BadDay(String),
    /// A time that is not `HH:MM`.
    #[error("{0:?} is not a time HH:MM")]
    BadTime(String),
    /// Start equals end.
    #[error("a campaign window's start and end must differ")]
    Empty,
    /// The zone is not an IANA time zone name.
    #[error("the campaign window's timezone is not an IANA time zone")]
    UnknownTimezone,
}

/// The serde shape of a campaign window:
/// `{"days":["mon","tue"],"start":"09:00","end":"17:00","timezone":"America/New_York"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignWindowSpec {
    /// Days the window opens on.
    pub days: Vec<String>,
    /// `HH:MM`.
    pub start: String,
    /// `HH:MM` (exclusive; `24:00` allowed).
    pub end: String,
    /// An IANA zone; absent means the recipient's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

impl CampaignWindow {
    /// A window open on `days` from `start` to `end` (exclusive), in `timezone` or, when `None`,
    /// in the recipient's local time. Seconds below the minute are kept.
    pub fn new(
        days: &[Weekday],
        start: NaiveTime,
        end: NaiveTime,
        timezone: Option<&str>,
    ) -> Result<Self, WindowError> {
        let start = start.num_seconds_from_midnight();
        let end = end.num_seconds_from_midnight();
        Self::from_parts(days, start, end, timezone)
    }

    fn from_parts(
        days: &[Weekday],
        start: u32,
        end: u32,
        timezone: Option<&str>,
    ) -> Result<Self, WindowError> {
        let mask = days
            .iter()
            .fold(0u8, |m, d| m | (1 << d.num_days_from_monday()));
        if mask == 0 {
            return Err(WindowError::NoDays);
        }
        // 24:00 as an end is midnight of the next day.
        let end = if end == 86_400 { 0 } else { end };
        if start == end && !(start == 0 && end == 0) {
            return Err(WindowError::Empty);
        }
        let timezone = match timezone.map(str::trim) {
            None | Some("") => None,
            Some(name) => Some(
                name.parse::<Tz>()
                    .map_err(|_| WindowError::UnknownTimezone)?,
            ),
        };
        Ok(Self {
            days: mask,
            start,
            end,
            timezone,
        })
    }

    /// Whether the window opens on `day`.
    pub fn opens_on(&self, day: Weekday) -> bool {
        self.days & (1 << day.num_days_from_monday()) != 0
    }

    /// The zone the window is read in; `None`: the recipient's.
    pub fn timezone(&self) -> Option<Tz> {
        self.timezone
    }

    pub(crate) fn start(&self) -> u32 {
        self.start
    }

    /// Whether a local time (the day it falls on, seconds from midnight) is inside the window.
    pub(crate) fn contains(&self, day: Weekday, secs: u32) -> bool {
        if self.start < self.end {
            self.opens_on(day) && self.start <= secs && secs < self.end
        } else {
            // Overnight (or all day when start == end == 0): the tail belongs to the day before.
            (self.opens_on(day) && secs >= self.start)
                || (self.opens_on(day.pred()) && secs < self.end)
        }
    }

    /// The days it opens on, Monday first.
    fn open_days(&self) -> impl Iterator<Item = Weekday> + '_ {
        [
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
            Weekday::Sat,
            Weekday::Sun,
        ]
        .into_iter()
        .filter(|d| self.opens_on(*d))
    }

    /// A short description for reason messages (`mon,tue 09:00-17:00`).
    pub(crate) fn describe(&self) -> String {
        let days: Vec<&str> = self.open_days().map(day_key).collect();
        format!(
            "{} {}-{}",
            days.join(","),
            hhmm(self.start),
            if self.end == 0 {
                "24:00".to_owned()
            } else {
                hhmm(self.end)
            }
        )
    }
}

fn day_key(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    }
}

fn hhmm(secs: u32) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if s == 0 {
        format!("{h:02}:{m:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

impl TryFrom<CampaignWindowSpec> for CampaignWindow {
    type Error = WindowError;

    fn try_from(spec: CampaignWindowSpec) -> Result<Self, WindowError> {
        let days = spec
            .days
            .iter()
            .map(|d| {
                d.trim()
                    .parse::<Weekday>()
                    .map_err(|_| WindowError::BadDay(d.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let time = |s: &str| {
            crate::rules::parse_hhmm(s.trim()).ok_or_else(|| WindowError::BadTime(s.to_owned()))
        };
        let start = time(&spec.start)?;
        if start >= 86_400 {
            return Err(WindowError::BadTime(spec.start));
        }
        let end = time(&spec.end)?;
        Self::from_parts(&days, start, end, spec.timezone.as_deref())
    }
}

impl From<CampaignWindow> for CampaignWindowSpec {
    fn from(w: CampaignWindow) -> Self {
        let days = w.open_days().map(|d| day_key(d).to_owned()).collect();
        Self {
            days,
            start: hhmm(w.start),
            end: if w.end == 0 {
                "24:00".to_owned()
            } else {
                hhmm(w.end)
            },
            timezone: w.timezone.map(|tz| tz.name().to_owned()),
        }
    }
}

/// The workspace's and campaign's side of a decision.
#[derive(Debug, Clone, Copy)]
pub struct SendingContext<'a> {
    /// The calling-hours table in force ([`CallingRules::builtin`] or an operator's file).
    pub rules: &'a CallingRules,
    /// The workspace requires consent for email too (EU customers).
    pub email_requires_consent: bool,
    /// The 10DLC status of the number an SMS would be sent from (ignored for voice and email).
    pub sender_10dlc: TenDlcStatus,
    /// The campaign's own sending window, if it has one (applies to every channel).
    pub campaign_window: Option<CampaignWindow>,
}

impl<'a> SendingContext<'a> {
    /// A context under `rules` with the strict defaults: email needs no consent, the sending
    /// number is not registered, no campaign window.
    pub fn new(rules: &'a CallingRules) -> Self {
        Self {
            rules,
            email_requires_consent: false,
            sender_10dlc: TenDlcStatus::NotRegistered,
            campaign_window: None,
        }
    }
}
