//! Fernet (`rampart_crypto::fernet`): any key text and any token, at any time and TTL, is
//! accepted or refused without a panic; a token the `fernet` crate makes at any time reads back
//! to its plaintext within its TTL; and a token with any one byte changed is refused.

#![no_main]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use chrono::DateTime;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use rampart_crypto::fernet::{FernetKey, MAX_CLOCK_SKEW_SECS, decrypt};

/// The latest second chrono can represent, with margin (year 262,000).
const LATEST: i64 = 8_000_000_000_000;

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    // Hostile text: neither call may panic.
    let key_text: String = u.arbitrary()?;
    let token_text: String = u.arbitrary()?;
    let now = DateTime::from_timestamp(u.int_in_range(-LATEST..=LATEST)?, 0).unwrap_or_default();
    let ttl = u.arbitrary::<Option<u64>>()?.map(Duration::from_secs);
    let _ = FernetKey::from_base64(&key_text);
    let key_bytes: [u8; 32] = u.arbitrary()?;
    let key_b64 = URL_SAFE.encode(key_bytes);
    let key = FernetKey::from_base64(&key_b64).unwrap_or_else(|e| panic!("{key_b64}: {e}"));
    let _ = decrypt(&key, &token_text, ttl, now);

    // A real token, made at `made`, read at `made + age`.
    let plain: Vec<u8> = u.arbitrary()?;
    let made = u.int_in_range(0..=LATEST as u64 - 100_000)?;
    let age = u.int_in_range(-(MAX_CLOCK_SKEW_SECS as i64) - 5..=100_000)?;
    let read_at = DateTime::from_timestamp(made as i64 + age, 0).unwrap_or_default();
    let token = fernet::Fernet::new(&key_b64)
        .unwrap_or_else(|| panic!("the fernet crate refuses {key_b64}"))
        .encrypt_at_time(&plain, made);
    let got = decrypt(&key, &token, ttl, read_at);
    // Before 1970 no Fernet time can be compared: refused whatever the token.
    let in_time = made as i64 + age >= 0
        && age >= -(MAX_CLOCK_SKEW_SECS as i64)
        && ttl.is_none_or(|t| made.saturating_add(t.as_secs()) >= (made as i64 + age) as u64);
    if in_time {
        let got =
            got.unwrap_or_else(|e| panic!("made at {made}, read at +{age}, ttl {ttl:?}: {e}"));
        assert_eq!(got.expose(), &plain);
    } else {
        assert!(
            got.is_err(),
            "made at {made}, read at +{age}, ttl {ttl:?}: accepted"
        );
    }

    // One byte changed anywhere: refused.
    let mut raw = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .unwrap_or_else(|e| panic!("{token}: {e}"));
    let at = u.choose_index(raw.len())?;
    let flip = u.int_in_range(1..=255u8)?;
    raw[at] ^= flip;
    let altered = URL_SAFE.encode(&raw);
    assert!(
        decrypt(&key, &altered, None, read_at).is_err(),
        "byte {at} changed ^{flip:#x} and still accepted"
    );
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
