//! What an audit event may hold of a request's arguments. Emails and phone numbers become
//! `sha256:<first 12 hex>` of their normalised form, so events can be correlated without
//! identities; secrets become `[redacted]`; everything else is kept.

use std::net::IpAddr;

use rampart_core::{Email, Phone};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Field names whose values are secrets, compared case-insensitively on the whole name or its
/// last `_`-separated word (so `api_key`, `client_secret`, `reset_token` all match).
const SECRET_NAMES: &[&str] = &[
    "password",
    "passphrase",
    "secret",
    "token",
    "key",
    "credential",
    "credentials",
    "authorization",
    "code",
    "otp",
    "cookie",
    "session",
    "pin",
    "ssn",
    "iban",
    "account_number",
    "routing_number",
];

fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let last = lower.rsplit(['_', '-']).next().unwrap_or(&lower);
    SECRET_NAMES.iter().any(|s| lower == *s || last == *s)
}

/// `sha256:` and the first 12 hex digits of the SHA-256 of `value`.
pub fn pseudonym(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    format!("sha256:{}", &hex::encode(digest)[..12])
}

const PHONE_CHARS: &str = "0123456789 +-().";

fn digit_count(s: &str) -> usize {
    s.chars().filter(char::is_ascii_digit).count()
}

/// A run of phone characters is a phone number when it has 10–15 digits, or 7–15 after a `+`
/// (so dates like 2026-11-23 and short numbers are left alone).
fn is_phone_run(run: &str) -> bool {
    let t = run.trim();
    let digits = digit_count(t);
    (10..=15).contains(&digits) || (t.starts_with('+') && (7..=15).contains(&digits))
}

fn phone_pseudonym(raw: &str) -> String {
    let normal = Phone::parse(raw)
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|_| raw.trim().to_owned());
    pseudonym(&normal)
}

/// Replaces emails and phone numbers embedded in free text.
fn scrub_text(s: &str) -> String {
    // Emails: whitespace- and bracket-separated words that parse as an address.
    let mut out = String::with_capacity(s.len());
    for (i, word) in s.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let core = word.trim_matches(|c: char| "<>()[]\"',;:.!?".contains(c));
        match Email::parse(core) {
            Ok(email) if core.contains('@') => {
                out.push_str(&word.replacen(core, &pseudonym(&email.normalized()), 1))
            }
            _ => out.push_str(word),
        }
    }
    // Phone numbers: maximal runs of phone characters.
    let mut result = String::with_capacity(out.len());
    let mut run = String::new();
    let flush = |run: &mut String, result: &mut String| {
        if is_phone_run(run) {
            let lead = run.len() - run.trim_start().len();
            let trail = run.len() - run.trim_end().len();
            result.push_str(&run[..lead]);
            result.push_str(&phone_pseudonym(run));
            result.push_str(&run[run.len() - trail..]);
        } else {
            result.push_str(run);
        }
        run.clear();
    };
    for c in out.chars() {
        if PHONE_CHARS.contains(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut result);
            result.push(c);
        }
    }
    flush(&mut run, &mut result);
    result
}

fn redact_string(key: Option<&str>, s: &str) -> Value {
    if key.is_some_and(is_secret_name) {
        return Value::String("[redacted]".into());
    }
    if let Ok(email) = Email::parse(s) {
        return Value::String(pseudonym(&email.normalized()));
    }
    let phone_field = key.is_some_and(|k| k.to_ascii_lowercase().contains("phone"));
    let all_phone_chars = !s.trim().is_empty() && s.chars().all(|c| PHONE_CHARS.contains(c));
    if phone_field
        || (all_phone_chars && (is_phone_run(s) || Phone::parse(s).is_ok() && digit_count(s) >= 7))
    {
        return Value::String(phone_pseudonym(s));
    }
    Value::String(scrub_text(s))
}

fn walk(key: Option<&str>, v: &Value) -> Value {
    match v {
        Value::String(s) => redact_string(key, s),
        Value::Object(m) => {
            let mut out = Map::with_capacity(m.len());
            for (k, v) in m {
                let redacted = if is_secret_name(k) && !v.is_null() {
                    Value::String("[redacted]".into())
                } else {
                    walk(Some(k), v)
                };
                out.insert(k.clone(), redacted);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| walk(key, i)).collect()),
        Value::Number(_) if key.is_some_and(is_secret_name) => Value::String("[redacted]".into()),
        other => other.clone(),
    }
}

/// The redacted form of a request body, as the JSON text the ledger stores. A body that is not
/// JSON is recorded only by its size.
pub fn redact_args(body: &[u8]) -> String {
    if body.is_empty() {
        return "{}".to_owned();
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => walk(None, &v).to_string(),
        Err(_) => serde_json::json!({ "unparsed_bytes": body.len() }).to_string(),
    }
}

/// The client address with its host part dropped: the last octet of IPv4, the last 80 bits of
/// IPv6 (IPv4-mapped addresses count as IPv4).
pub fn truncate_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0")
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => truncate_ip(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string()
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn emails_and_phones_become_pseudonyms_and_secrets_disappear() {
        let body = json!({
            "name": "Ann Lee",
            "email": "Ann@Example.com",
            "phone": "(415) 555-2671",
            "notes": ["call +1 415 555 2671", "backup: ann@example.com"],
            "custom_fields": {"alt": "ann@example.com", "mobile": "+14155552671"},
            "password": "hunter2hunter2",
            "api_key": "rk_live_x",
            "nested": {"client_secret": {"deep": 1}},
            "tags": ["vip"]
        });
        let out: Value = serde_json::from_str(&redact_args(body.to_string().as_bytes())).unwrap();
        let want_email = pseudonym("ann@example.com");
        assert_eq!(
            out["email"],
            want_email.as_str(),
            "case-insensitive, so events correlate"
        );
        assert_eq!(out["custom_fields"]["alt"], want_email.as_str());
        assert_eq!(out["phone"], pseudonym("+14155552671").as_str());
        assert_eq!(
            out["custom_fields"]["mobile"],
            pseudonym("+14155552671").as_str()
        );
        assert_eq!(out["password"], "[redacted]");
        assert_eq!(out["api_key"], "[redacted]");
        assert_eq!(out["nested"]["client_secret"], "[redacted]");
        assert_eq!(out["name"], "Ann Lee");
        assert_eq!(out["tags"], json!(["vip"]));
        let text = out.to_string();
        for leak in [
            "Ann@Example.com",
            "ann@example.com",
            "555-2671",
            "4155552671",
            "555 2671",
            "hunter2",
            "rk_live",
        ] {
            assert!(!text.contains(leak), "{leak} leaked: {text}");
        }
        assert_eq!(out["notes"][1], format!("backup: {want_email}").as_str());
        assert!(
            out["notes"][0]
                .as_str()
                .unwrap()
                .starts_with("call sha256:")
        );
        assert!(want_email.starts_with("sha256:") && want_email.len() == 7 + 12);
    }

    #[test]
    fn ordinary_text_numbers_and_dates_are_kept() {
        let body = json!({"note": "renewal on 2026-11-23 at 10:00, order 12345", "count": 3, "send_at": "2026-11-23T10:00:00Z"});
        let out: Value = serde_json::from_str(&redact_args(body.to_string().as_bytes())).unwrap();
        assert_eq!(out, body);
    }

    #[test]
    fn non_json_bodies_are_recorded_by_size_only() {
        assert_eq!(redact_args(b"password=hunter2"), r#"{"unparsed_bytes":16}"#);
        assert_eq!(redact_args(b""), "{}");
    }

    #[test]
    fn addresses_lose_their_host_part() {
        assert_eq!(truncate_ip("203.0.113.77".parse().unwrap()), "203.0.113.0");
        assert_eq!(
            truncate_ip("2001:db8:abcd:1234:5678::1".parse().unwrap()),
            "2001:db8:abcd::"
        );
        assert_eq!(
            truncate_ip("::ffff:198.51.100.9".parse().unwrap()),
            "198.51.100.0"
        );
    }
}
