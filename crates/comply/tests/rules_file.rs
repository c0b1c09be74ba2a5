//! The calling-hours table as operator data: the built-in file parses, a replacement is
//! validated whole, and a valid replacement changes decisions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use rampart_comply::{BUILTIN_JSON, CallingRules, Channel, RulesError, SendingContext, decide};
use serde_json::Value;

fn builtin_value() -> Value {
    serde_json::from_str(BUILTIN_JSON).unwrap()
}

/// The built-in table with `edit` applied to it.
fn edited(edit: impl FnOnce(&mut Value)) -> Result<CallingRules, RulesError> {
    let mut v = builtin_value();
    edit(&mut v);
    CallingRules::from_json(&v.to_string())
}

fn state_mut<'a>(v: &'a mut Value, code: &str) -> &'a mut Value {
    v["states"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["state"] == code)
        .unwrap()
}

#[test]
fn the_builtin_table_parses_and_says_where_it_comes_from() {
    let rules = CallingRules::builtin().unwrap();
    assert_eq!(rules.version(), "2026-11-23.1");
    assert_eq!(rules.states().count(), 56);
    let v = builtin_value();
    assert!(
        v["provenance"]["derived_from"]
            .as_str()
            .unwrap()
            .contains("tcpa_calling_windows.json")
    );
}

type Edit = Box<dyn FnOnce(&mut Value)>;

#[test]
fn malformed_values_are_refused_with_a_clear_error() {
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|v| state_mut(v, "CT")["weekday"] = "25:00-26:00".into()),
            "state CT, weekday \"25:00-26:00\": start is not a time",
        ),
        (
            Box::new(|v| state_mut(v, "CT")["sunday"] = "20:00-09:00".into()),
            "state CT, sunday \"20:00-09:00\": start must be before end",
        ),
        (
            Box::new(|v| state_mut(v, "CT")["saturday"] = "9am-8pm".into()),
            "state CT, saturday \"9am-8pm\"",
        ),
        (
            Box::new(|v| state_mut(v, "CT")["state"] = "XX".into()),
            "unknown state code \"XX\"",
        ),
        (
            Box::new(|v| state_mut(v, "CT")["state"] = "NY".into()),
            "state NY appears more than once",
        ),
        (
            Box::new(|v| {
                v["states"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|s| s["state"] != "WY")
            }),
            "state WY is missing",
        ),
        (
            Box::new(|v| state_mut(v, "CT")["zones"] = serde_json::json!(["America/Hartford"])),
            "state CT: \"America/Hartford\" is not an IANA time zone",
        ),
        (
            Box::new(|v| state_mut(v, "CT")["zones"] = serde_json::json!([])),
            "state CT lists no time zone",
        ),
        (
            Box::new(|v| state_mut(v, "UT")["extra_holidays"] = serde_json::json!(["pioneer_day"])),
            "state UT, extra holiday \"pioneer_day\"",
        ),
        (
            // A misspelt field must not silently mean "federal hours".
            Box::new(|v| state_mut(v, "AL")["sundays"] = "none".into()),
            "unknown field `sundays`",
        ),
        (
            Box::new(|v| v["federal"]["window"] = "07:00-21:00".into()),
            "never widen it",
        ),
        (
            Box::new(|v| v["federal"]["window"] = "08:00-21:30".into()),
            "never widen it",
        ),
        (
            Box::new(|v| v["format"] = 2.into()),
            "format 2 is not supported",
        ),
        (
            Box::new(|v| v["version"] = " ".into()),
            "non-empty \"version\"",
        ),
    ];
    for (edit, expected) in cases {
        let err = edited(edit).unwrap_err().to_string();
        assert!(
            err.contains(expected),
            "{err:?} should contain {expected:?}"
        );
    }
    assert!(matches!(
        CallingRules::from_json("{not json"),
        Err(RulesError::Json(_))
    ));
}

#[test]
fn an_operator_table_replaces_the_builtin_one() {
    // California closed on Sundays and the federal window narrowed to 09:00-20:00.
    let rules = edited(|v| {
        v["version"] = "operator-1".into();
        v["federal"]["window"] = "09:00-20:00".into();
        state_mut(v, "CA")["sunday"] = "none".into();
        state_mut(v, "NY")["extra_holidays"] = serde_json::json!(["2026-09-16"]);
        state_mut(v, "NY")["holidays"] = "10:00-12:00".into();
    })
    .unwrap();
    assert_eq!(rules.version(), "operator-1");
    let c = SendingContext {
        rules: &rules,
        ..ctx()
    };
    // Sunday 2026-09-20 noon in Los Angeles.
    let at = local("America/Los_Angeles", date(2026, 9, 20), 12, 0, 0);
    let f = reachable(Some("CA"), None, at);
    assert!(decide(&f, Channel::Sms, at, &ctx()).is_allowed());
    assert!(!decide(&f, Channel::Sms, at, &c).is_allowed());
    // 08:30 on a Wednesday in Denver: allowed federally, not under the operator's window.
    let at = local("America/Denver", date(2026, 9, 16), 8, 30, 0);
    let f = reachable(Some("CO"), None, at);
    assert!(decide(&f, Channel::Voice, at, &ctx()).is_allowed());
    let d = decide(&f, Channel::Voice, at, &c);
    assert_eq!(
        d.next_allowed_at(),
        Some(local("America/Denver", date(2026, 9, 16), 9, 0, 0))
    );
    // A one-off holiday with a holiday window in New York on 2026-09-16: 10:00-12:00 only.
    let f = reachable(Some("NY"), None, at);
    let at = local("America/New_York", date(2026, 9, 16), 12, 0, 0);
    let d = decide(&f, Channel::Sms, at, &c);
    assert!(
        d.reasons()[0].message.contains("holiday window"),
        "{:?}",
        d.reasons()
    );
    assert_eq!(
        rules.restricted_holiday("NY", date(2026, 9, 16)),
        Some("a state holiday")
    );
    let at = local("America/New_York", date(2026, 9, 16), 11, 0, 0);
    assert!(decide(&f, Channel::Sms, at, &c).is_allowed());
}
