//! Fernet tokens, for importing values that Python systems encrypted with
//! `cryptography.fernet`. Decryption only: Rampart stores what it imports with field
//! encryption. Built on the `fernet` crate (RustCrypto backend); the time checks are done
//! here first with saturating arithmetic, so a hostile timestamp cannot overflow inside it.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rampart_core::Secret;

/// How far in the future a token's timestamp may be, as in pyca/cryptography.
pub const MAX_CLOCK_SKEW_SECS: u64 = 60;
/// The version byte every Fernet token starts with.
const VERSION: u8 = 0x80;
/// Base64 characters that encode exactly the version byte and the 8-byte timestamp.
const HEADER_CHARS: usize = 12;

/// Why a Fernet key or token was refused; like Fernet itself, says no more than that.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FernetError {
    /// Not url-safe base64 of exactly 32 bytes.
    #[error("not a Fernet key (url-safe base64 of 32 bytes)")]
    BadKey,
    /// Malformed, altered, signed with another key, expired, or dated too far in the future.
    #[error("invalid or expired Fernet token")]
    InvalidToken,
    /// The clock given reads before 1970, where no Fernet timestamp can be compared.
    #[error("current time is before the Unix epoch")]
    ClockBeforeEpoch,
}

/// A Fernet key (signing and encryption halves); prints as `[redacted]`, zeroized on drop.
#[derive(Clone)]
pub struct FernetKey(::fernet::Fernet);

impl FernetKey {
    /// Parses a key as Python's `Fernet.generate_key()` writes it (url-safe base64, 32 bytes).
    pub fn from_base64(key: &str) -> Result<Self, FernetError> {
        ::fernet::Fernet::new(key.trim())
            .map(Self)
            .ok_or(FernetError::BadKey)
    }
}

impl fmt::Debug for FernetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FernetKey([redacted])")
    }
}

/// The timestamp a token claims, if it starts like a Fernet token; not authenticated.
fn claimed_timestamp(token: &str) -> Option<u64> {
    let header = URL_SAFE_NO_PAD.decode(token.get(..HEADER_CHARS)?).ok()?;
    let (version, rest) = header.split_first()?;
    if *version != VERSION {
        return None;
    }
    rest.first_chunk::<8>().map(|ts| u64::from_be_bytes(*ts))
}

/// Verifies and decrypts `token` with `key` as of `now`: refuses tokens older than `ttl`
/// (when given) or dated more than [`MAX_CLOCK_SKEW_SECS`] after `now`; the plaintext comes
/// back in a zeroizing wrapper.
pub fn decrypt(
    key: &FernetKey,
    token: &str,
    ttl: Option<Duration>,
    now: DateTime<Utc>,
) -> Result<Secret<Vec<u8>>, FernetError> {
    let now = u64::try_from(now.timestamp()).map_err(|_| FernetError::ClockBeforeEpoch)?;
    let timestamp = claimed_timestamp(token).ok_or(FernetError::InvalidToken)?;
    let expired = ttl.is_some_and(|ttl| timestamp.saturating_add(ttl.as_secs()) < now);
    let from_the_future = now.saturating_add(MAX_CLOCK_SKEW_SECS) < timestamp;
    if expired || from_the_future {
        return Err(FernetError::InvalidToken);
    }
    // TTL already enforced above; the crate repeats the skew check, then checks the HMAC
    // (in constant time), the block length and the PKCS#7 padding.
    key.0
        .decrypt_at_time(token, None, now)
        .map(Secret::new)
        .map_err(|_| FernetError::InvalidToken)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    const GENERATE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../vectors/fernet_generate.json"
    ));
    const VERIFY: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../vectors/fernet_verify.json"
    ));
    const INVALID: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../vectors/fernet_invalid.json"
    ));

    fn vectors(json: &str) -> Vec<Value> {
        let doc: Value = serde_json::from_str(json).unwrap();
        let list = doc["vectors"].as_array().unwrap().clone();
        assert!(!list.is_empty());
        list
    }

    fn text<'a>(v: &'a Value, field: &str) -> &'a str {
        v[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} in {v}"))
    }

    fn now(v: &Value) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text(v, "now"))
            .unwrap()
            .with_timezone(&Utc)
    }

    fn ttl(v: &Value) -> Option<Duration> {
        v["ttl_sec"].as_u64().map(Duration::from_secs)
    }

    fn key(v: &Value) -> FernetKey {
        FernetKey::from_base64(text(v, "secret")).unwrap()
    }

    fn decode(token: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).unwrap()
    }

    /// The `fernet` crate draws the IV itself (the fixed-IV encryption is private), so the
    /// generate vectors cannot be reproduced byte for byte. Instead: the vector's token must
    /// decrypt to `src` at `now`, and a token the crate generates at `now` must carry the same
    /// version, timestamp and length as the vector's and decrypt back to `src`.
    #[test]
    fn fernet_generate_vectors() {
        for v in vectors(GENERATE) {
            let expected = text(&v, "token");
            let src = text(&v, "src").as_bytes();
            let at = now(&v);
            let k = key(&v);
            assert_eq!(decrypt(&k, expected, None, at).unwrap().expose(), src);

            let ours = ::fernet::Fernet::new(text(&v, "secret"))
                .unwrap()
                .encrypt_at_time(src, u64::try_from(at.timestamp()).unwrap());
            let (ours_raw, expected_raw) = (decode(&ours), decode(expected));
            assert_eq!(ours_raw[..9], expected_raw[..9], "version and timestamp");
            assert_eq!(ours_raw.len(), expected_raw.len());
            let iv: Vec<u8> = v["iv"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
                .collect();
            assert_eq!(expected_raw[9..25], iv[..], "vector layout");
            assert_eq!(decrypt(&k, &ours, None, at).unwrap().expose(), src);
        }
    }

    #[test]
    fn fernet_verify_vectors() {
        for v in vectors(VERIFY) {
            let plain = decrypt(&key(&v), text(&v, "token"), ttl(&v), now(&v)).unwrap();
            assert_eq!(plain.expose(), text(&v, "src").as_bytes());
        }
    }

    #[test]
    fn fernet_invalid_vectors_are_all_rejected() {
        let list = vectors(INVALID);
        assert_eq!(list.len(), 8);
        for v in list {
            let desc = text(&v, "desc");
            assert!(ttl(&v).is_some(), "{desc}");
            assert_eq!(
                decrypt(&key(&v), text(&v, "token"), ttl(&v), now(&v)).map(|_| ()),
                Err(FernetError::InvalidToken),
                "{desc}"
            );
        }
    }

    #[test]
    fn the_expired_vector_is_refused_only_for_its_age() {
        let v = vectors(INVALID)
            .into_iter()
            .find(|v| text(v, "desc") == "expired TTL")
            .unwrap();
        let k = key(&v);
        let token = text(&v, "token");
        assert!(decrypt(&k, token, None, now(&v)).is_ok());
        assert!(decrypt(&k, token, Some(Duration::from_secs(90)), now(&v)).is_ok());
        assert!(decrypt(&k, token, Some(Duration::from_secs(89)), now(&v)).is_err());
    }

    #[test]
    fn extreme_timestamps_and_ttls_do_not_overflow() {
        let v = &vectors(VERIFY)[0];
        let k = key(v);
        let mut raw = vec![VERSION];
        raw.extend_from_slice(&u64::MAX.to_be_bytes());
        raw.extend_from_slice(&[0u8; 64]);
        let far = URL_SAFE_NO_PAD.encode(raw);
        for ttl in [None, Some(Duration::from_secs(60)), Some(Duration::MAX)] {
            assert_eq!(
                decrypt(&k, &far, ttl, now(v)).map(|_| ()),
                Err(FernetError::InvalidToken)
            );
        }
        let token = text(v, "token");
        assert!(decrypt(&k, token, Some(Duration::MAX), now(v)).is_ok());
        let before_epoch = DateTime::from_timestamp(-1, 0).unwrap();
        assert_eq!(
            decrypt(&k, token, None, before_epoch).map(|_| ()),
            Err(FernetError::ClockBeforeEpoch)
        );
    }

    #[test]
    fn wrong_key_and_garbage_are_rejected() {
        let v = &vectors(VERIFY)[0];
        let other = FernetKey::from_base64(&::fernet::Fernet::generate_key()).unwrap();
        assert_eq!(
            decrypt(&other, text(v, "token"), None, now(v)).map(|_| ()),
            Err(FernetError::InvalidToken)
        );
        for garbage in ["", "gA", "gAAAAAAdwJ6w", "not base64 at all!", "ü"] {
            assert_eq!(
                decrypt(&key(v), garbage, None, now(v)).map(|_| ()),
                Err(FernetError::InvalidToken),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn bad_keys_are_refused_and_good_ones_print_redacted() {
        let short = base64::engine::general_purpose::URL_SAFE.encode([7u8; 31]);
        let long = base64::engine::general_purpose::URL_SAFE.encode([7u8; 33]);
        let standard_alphabet = base64::engine::general_purpose::STANDARD.encode([0xfbu8; 32]);
        for bad in ["", "c2hvcnQ=", "%%%%", &short, &long, &standard_alphabet] {
            assert_eq!(
                FernetKey::from_base64(bad).map(|_| ()),
                Err(FernetError::BadKey),
                "{bad:?}"
            );
        }
        let v = &vectors(VERIFY)[0];
        let k = key(v);
        assert_eq!(format!("{k:?}"), "FernetKey([redacted])");
        let plain = decrypt(&k, text(v, "token"), None, now(v)).unwrap();
        assert_eq!(format!("{plain:?}"), "[redacted]");
    }
}
