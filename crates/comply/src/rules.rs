//! The calling-hours table: the federal window, each state's windows by day, its holiday bans
//! and its time zones. It is data, not code: the built-in table is `data/calling_windows.json`
//! (embedded at compile time), and an operator can load a replacement with
//! [`CallingRules::from_json`]. A file is checked whole before it is used: a bad time, an
//! unknown state code, an unknown zone, a missing state or a federal window wider than the
//! law's 08:00–21:00 is a [`RulesError`], never a silently looser rule.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{Datelike, NaiveDate, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::holidays::{self, NamedHoliday};

/// The built-in table's JSON text (`crates/comply/data/calling_windows.json`), for operators who
/// want a starting point for their own file.
pub const BUILTIN_JSON: &str = include_str!("../data/calling_windows.json");

/// The only table format this version reads.
pub const FORMAT: u32 = 1;

/// Seconds in a day: a window's end may be 24:00.
const DAY: u32 = 86_400;

/// The law's own window (47 CFR 64.1200(c)(1)), which a table may narrow but never widen.
const FEDERAL_START: u32 = 8 * 3600;
const FEDERAL_END: u32 = 21 * 3600;

/// USPS codes of the states, the District and the territories a table may name.
pub const KNOWN_STATES: [&str; 56] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", "DC", "PR", "GU", "VI", "AS", "MP",
];

/// The 50 states and the District: a table must cover each (a dropped state would silently turn
/// its contacts into unknown time zones). Territories are optional.
const REQUIRED_STATES: usize = 51;

/// Why a calling-hours table was refused. Messages name the offending state and value (operator
/// data, never a contact's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// The text is not JSON of the table's shape (unknown or misspelt fields included).
    #[error("calling-hours table is not valid: {0}")]
    Json(String),
    /// The `format` field names a format this version cannot read.
    #[error("calling-hours table format {0} is not supported (this version reads format 1)")]
    UnsupportedFormat(u32),
    /// The `version` field is empty.
    #[error("calling-hours table needs a non-empty \"version\"")]
    MissingVersion,
    /// The federal window is malformed or wider than 08:00–21:00.
    #[error("federal window {value:?}: {reason}")]
    FederalWindow {
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A state code that is not a USPS state, district or territory code.
    #[error("unknown state code {0:?}")]
    UnknownState(String),
    /// The same state appears twice.
    #[error("state {0} appears more than once")]
    DuplicateState(String),
    /// One of the 50 states or DC is missing.
    #[error("state {0} is missing (every state and DC must be listed)")]
    MissingState(&'static str),
    /// A state lists no time zone.
    #[error("state {0} lists no time zone")]
    NoZones(String),
    /// A state lists a name that is not an IANA time zone.
    #[error("state {state}: {zone:?} is not an IANA time zone")]
    UnknownZone {
        /// The state.
        state: String,
        /// The name as written.
        zone: String,
    },
    /// A day's or the holidays' window is malformed.
    #[error("state {state}, {field} {value:?}: {reason}")]
    BadWindow {
        /// The state.
        state: String,
        /// `weekday`, `saturday`, `sunday` or `holidays`.
        field: &'static str,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `extra_holidays` entry that is neither `MM-DD`, `YYYY-MM-DD` nor a known name.
    #[error(
        "state {state}, extra holiday {value:?}: expected MM-DD, YYYY-MM-DD or one of good_friday, mardi_gras, election_day, day_after_thanksgiving, victory_day"
    )]
    BadHoliday {
        /// The state.
        state: String,
        /// The value as written.
        value: String,
    },
}

/// A half-open window of the local day, in seconds from midnight: `start <= t < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Window {
    pub(crate) fn contains(self, secs: u32) -> bool {
        self.start <= secs && secs < self.end
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hm = |s: u32| (s / 3600, (s % 3600) / 60);
        let (sh, sm) = hm(self.start);
        let (eh, em) = hm(self.end);
        write!(f, "{sh:02}:{sm:02}-{eh:02}:{em:02}")
    }
}

/// What a state allows on one kind of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DayRule {
    /// Sends only inside this window.
    Open(Window),
    /// No sends that day.
    Closed,
}

/// A holiday a state adds to the federal calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExtraHoliday {
    /// A computed holiday.
    Named(NamedHoliday),
    /// The same date every year (kept on its federal observed day too).
    Annual { month: u32, day: u32 },
    /// One date.
    Once(NaiveDate),
}

/// One state's rules, validated.
#[derive(Debug, Clone)]
pub(crate) struct StateRule {
    pub(crate) zones: Vec<Tz>,
    pub(crate) weekday: Option<DayRule>,
    pub(crate) saturday: Option<DayRule>,
    pub(crate) sunday: Option<DayRule>,
    /// `None`: holidays are ordinary days.
    pub(crate) holidays: Option<DayRule>,
    pub(crate) extra_holidays: Vec<ExtraHoliday>,
    pub(crate) saturday_holiday_also_monday: bool,
    pub(crate) standard_time: bool,
}

impl StateRule {
    /// The rule for the day of week of `date` (`None`: only the federal window).
    pub(crate) fn day_rule(&self, date: NaiveDate) -> Option<DayRule> {
        match date.weekday() {
            Weekday::Sat => self.saturday,
            Weekday::Sun => self.sunday,
            _ => self.weekday,
        }
    }

    /// The name of the holiday `date` is under this state's calendar, when the state restricts
    /// holidays at all.
    pub(crate) fn holiday_on(&self, date: NaiveDate) -> Option<&'static str> {
        self.holidays?;
        if let Some(h) = holidays::federal_holiday_on(date) {
            return Some(h.name());
        }
        if self.saturday_holiday_also_monday && date.weekday() == Weekday::Mon {
            // The Monday after a Saturday holiday.
            if let Some(sat) = date.checked_sub_days(chrono::Days::new(2))
                && let Some(name) = self.fixed_holiday_name(sat)
            {
                return Some(name);
            }
        }
        self.extra_holiday_on(date)
    }

    /// The name of a fixed-date holiday (federal or annual extra) falling on exactly `date`.
    fn fixed_holiday_name(&self, date: NaiveDate) -> Option<&'static str> {
        let federal = holidays::federal_holidays(date.year())
            .into_iter()
            .find(|(d, h)| *d == date && h.is_fixed_date())
            .map(|(_, h)| h.name());
        federal.or_else(|| {
            self.extra_holidays.iter().find_map(|e| match *e {
                ExtraHoliday::Annual { month, day }
                    if date.month() == month && date.day() == day =>
                {
                    Some("a state holiday")
                }
                _ => None,
            })
        })
    }

    fn extra_holiday_on(&self, date: NaiveDate) -> Option<&'static str> {
        for extra in &self.extra_holidays {
            let hit = match *extra {
                ExtraHoliday::Named(named) => named.date(date.year()) == Some(date),
                ExtraHoliday::Once(day) => day == date,
                ExtraHoliday::Annual { month, day } => {
                    // This year's and next year's dates (an observed day can cross the year).
                    [date.year(), date.year().saturating_add(1)]
                        .into_iter()
                        .filter_map(|y| NaiveDate::from_ymd_opt(y, month, day))
                        .any(|actual| actual == date || holidays::observed(actual) == date)
                }
            };
            if hit {
                return Some("a state holiday");
            }
        }
        None
    }

    /// Every window start this rule uses (the search for the next allowed instant tries them).
    pub(crate) fn starts(&self, out: &mut Vec<u32>) {
        for rule in [self.weekday, self.saturday, self.sunday, self.holidays]
            .into_iter()
            .flatten()
        {
            if let DayRule::Open(w) = rule {
                out.push(w.start);
            }
        }
    }
}

/// The calling-hours table in force: the federal window plus each state's rules and zones.
/// Built only by [`CallingRules::from_json`] (or [`CallingRules::builtin`]), so every value in
/// it has been validated.
#[derive(Debug, Clone)]
pub struct CallingRules {
    version: String,
    pub(crate) federal: Window,
    pub(crate) states: BTreeMap<String, StateRule>,
}

static BUILTIN: LazyLock<Result<CallingRules, RulesError>> =
    LazyLock::new(|| CallingRules::from_json(BUILTIN_JSON));

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    format: u32,
    version: String,
    #[serde(default)]
    #[allow(dead_code)]
    provenance: IgnoredAny,
    federal: RawFederal,
    states: Vec<RawState>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFederal {
    window: String,
    #[serde(default)]
    #[allow(dead_code)]
    cite: IgnoredAny,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    state: String,
    zones: Vec<String>,
    #[serde(default)]
    weekday: Option<String>,
    #[serde(default)]
    saturday: Option<String>,
    #[serde(default)]
    sunday: Option<String>,
    #[serde(default)]
    holidays: Option<String>,
    #[serde(default)]
    extra_holidays: Vec<String>,
    #[serde(default)]
    saturday_holiday_also_monday: bool,
    #[serde(default)]
    standard_time: bool,
    // Documentation only.
    #[serde(default)]
    #[allow(dead_code)]
    sources_agree: IgnoredAny,
    #[serde(default)]
    #[allow(dead_code)]
    note: IgnoredAny,
    #[serde(default)]
    #[allow(dead_code)]
    cite: IgnoredAny,
    #[serde(default)]
    #[allow(dead_code)]
    zones_note: IgnoredAny,
}

/// Parses `HH:MM` (00:00–24:00) into seconds from midnight.
pub(crate) fn parse_hhmm(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' {
        return None;
    }
    let digit = |c: u8| c.is_ascii_digit().then(|| u32::from(c - b'0'));
    let h = digit(b[0])? * 10 + digit(b[1])?;
    let m = digit(b[3])? * 10 + digit(b[4])?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 3600 + m * 60)
}

/// Parses `HH:MM-HH:MM` into a window; the error says why not.
pub(crate) fn parse_window(s: &str) -> Result<Window, &'static str> {
    let (a, b) = s
        .split_once('-')
        .ok_or("expected HH:MM-HH:MM or \"none\"")?;
    let start = parse_hhmm(a.trim()).ok_or("start is not a time HH:MM (00:00-23:59)")?;
    let end = parse_hhmm(b.trim()).ok_or("end is not a time HH:MM (00:00-24:00)")?;
    if start >= DAY {
        return Err("start is not a time HH:MM (00:00-23:59)");
    }
    if start >= end {
        return Err("start must be before end (windows cannot cross midnight)");
    }
    Ok(Window { start, end })
}

fn parse_day_rule(
    state: &str,
    field: &'static str,
    value: Option<&str>,
) -> Result<Option<DayRule>, RulesError> {
    let Some(value) = value else {
        return Ok(None);
    };
    if value.trim().eq_ignore_ascii_case("none") {
        return Ok(Some(DayRule::Closed));
    }
    parse_window(value)
        .map(|w| Some(DayRule::Open(w)))
        .map_err(|reason| RulesError::BadWindow {
            state: state.to_owned(),
            field,
            value: value.to_owned(),
            reason,
        })
}

fn parse_extra(state: &str, value: &str) -> Result<ExtraHoliday, RulesError> {
    let bad = || RulesError::BadHoliday {
        state: state.to_owned(),
        value: value.to_owned(),
    };
    if let Some(named) = NamedHoliday::ALL.into_iter().find(|n| n.key() == value) {
        return Ok(ExtraHoliday::Named(named));
    }
    let digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    let parts: Vec<&str> = value.split('-').collect();
    match parts.as_slice() {
        [m, d] if m.len() == 2 && d.len() == 2 && digits(m) && digits(d) => {
            let month: u32 = m.parse().map_err(|_| bad())?;
            let day: u32 = d.parse().map_err(|_| bad())?;
            // 2024 is a leap year: 02-29 is accepted (and is a holiday only in leap years).
            NaiveDate::from_ymd_opt(2024, month, day).ok_or_else(bad)?;
            Ok(ExtraHoliday::Annual { month, day })
        }
        [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
            let date = NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| bad())?;
            Ok(ExtraHoliday::Once(date))
        }
        _ => Err(bad()),
    }
}

impl CallingRules {
    /// Parses and validates a table (the format of `data/calling_windows.json`). Unknown fields
    /// are refused, so a misspelt `"sunday"` cannot silently become "federal hours on Sundays".
    pub fn from_json(text: &str) -> Result<Self, RulesError> {
        let raw: RawFile =
            serde_json::from_str(text).map_err(|e| RulesError::Json(e.to_string()))?;
        if raw.format != FORMAT {
            return Err(RulesError::UnsupportedFormat(raw.format));
        }
        if raw.version.trim().is_empty() {
            return Err(RulesError::MissingVersion);
        }
        let federal_err = |reason| RulesError::FederalWindow {
            value: raw.federal.window.clone(),
            reason,
        };
        let federal = parse_window(&raw.federal.window).map_err(federal_err)?;
        if federal.start < FEDERAL_START || federal.end > FEDERAL_END {
            return Err(federal_err(
                "may narrow the federal 08:00-21:00 window but never widen it",
            ));
        }

        let mut states = BTreeMap::new();
        for s in raw.states {
            let code = s.state.trim().to_ascii_uppercase();
            if !KNOWN_STATES.contains(&code.as_str()) {
                return Err(RulesError::UnknownState(s.state));
            }
            if states.contains_key(&code) {
                return Err(RulesError::DuplicateState(code));
            }
            if s.zones.is_empty() {
                return Err(RulesError::NoZones(code));
            }
            let mut zones = Vec::with_capacity(s.zones.len());
            for z in &s.zones {
                let tz: Tz = z.trim().parse().map_err(|_| RulesError::UnknownZone {
                    state: code.clone(),
                    zone: z.clone(),
                })?;
                if !zones.contains(&tz) {
                    zones.push(tz);
                }
            }
            let rule = StateRule {
                zones,
                weekday: parse_day_rule(&code, "weekday", s.weekday.as_deref())?,
                saturday: parse_day_rule(&code, "saturday", s.saturday.as_deref())?,
                sunday: parse_day_rule(&code, "sunday", s.sunday.as_deref())?,
                holidays: parse_day_rule(&code, "holidays", s.holidays.as_deref())?,
                extra_holidays: s
                    .extra_holidays
                    .iter()
                    .map(|e| parse_extra(&code, e.trim()))
                    .collect::<Result<_, _>>()?,
                saturday_holiday_also_monday: s.saturday_holiday_also_monday,
                standard_time: s.standard_time,
            };
            states.insert(code, rule);
        }
        if let Some(missing) = KNOWN_STATES[..REQUIRED_STATES]
            .iter()
            .find(|c| !states.contains_key(**c))
        {
            return Err(RulesError::MissingState(missing));
        }
        Ok(Self {
            version: raw.version.trim().to_owned(),
            federal,
            states,
        })
    }

    /// The built-in table, parsed once. It cannot fail in a released build (a test parses it),
    /// but the error is returned rather than panicking: callers load it at start-up and refuse
    /// to start without it.
    pub fn builtin() -> Result<&'static CallingRules, RulesError> {
        BUILTIN.as_ref().map_err(Clone::clone)
    }

    /// The table's `version` string, to record beside decisions made under it.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The state codes the table covers, sorted.
    pub fn states(&self) -> impl Iterator<Item = &str> {
        self.states.keys().map(String::as_str)
    }

    /// The time zones a state spans (the first is its main zone); `None` for a code the table
    /// does not have. Case-insensitive.
    pub fn zones(&self, state: &str) -> Option<&[Tz]> {
        self.state(state).map(|r| r.zones.as_slice())
    }

    /// Whether `date` is a holiday on which `state` restricts sends, and which; `None` when it is
    /// not or the state does not restrict holidays.
    pub fn restricted_holiday(&self, state: &str, date: NaiveDate) -> Option<&'static str> {
        self.state(state)?.holiday_on(date)
    }

    pub(crate) fn state(&self, code: &str) -> Option<&StateRule> {
        let code = code.trim();
        if code.len() != 2 {
            return None;
        }
        self.states.get(&code.to_ascii_uppercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hhmm() {
        assert_eq!(parse_hhmm("00:00"), Some(0));
        assert_eq!(parse_hhmm("08:30"), Some(8 * 3600 + 1800));
        assert_eq!(parse_hhmm("24:00"), Some(DAY));
        for bad in [
            "24:01", "8:00", "08:60", "0800", "ab:cd", "08:0 ", "+8:00", "25:00",
        ] {
            assert_eq!(parse_hhmm(bad), None, "{bad}");
        }
    }

    #[test]
    fn windows() {
        assert!(parse_window("09:00-20:00").is_ok());
        assert!(parse_window("00:00-24:00").is_ok());
        assert!(parse_window("20:00-09:00").is_err());
        assert!(parse_window("09:00-09:00").is_err());
        assert!(parse_window("24:00-24:00").is_err());
        assert!(parse_window("9-5").is_err());
    }

    #[test]
    fn extras() {
        assert_eq!(
            parse_extra("UT", "07-24"),
            Ok(ExtraHoliday::Annual { month: 7, day: 24 })
        );
        assert!(parse_extra("UT", "02-29").is_ok());
        assert!(parse_extra("UT", "02-30").is_err());
        assert!(parse_extra("UT", "2027-01-08").is_ok());
        assert!(parse_extra("UT", "2027-02-30").is_err());
        assert!(parse_extra("UT", "easter_monday").is_err());
        assert!(parse_extra("UT", "7-24").is_err());
    }
}
