//! TOTP (RFC 6238) through `totp-rs`: 160-bit secrets, six digits, 30-second steps, SHA-1
//! (what authenticator apps support). Verification reports which step matched so the caller
//! can refuse a step that was already used (replay protection is stored, not computed here).

use rampart_core::Secret;
use totp_rs::{Algorithm, Builder, Totp};

/// The step length in seconds.
pub const STEP: u64 = 30;
const DIGITS: u8 = 6;
/// Steps of drift accepted either side of now.
const SKEW: u16 = 1;

/// Why a TOTP could not be built.
#[derive(Debug, thiserror::Error)]
#[error("invalid TOTP parameters")]
pub struct TotpError;

fn totp(secret: &[u8], issuer: &str, account: &str) -> Result<Totp, TotpError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(SKEW)
        .with_step_duration(STEP)
        .with_secret(secret.to_vec())
        .with_issuer(Some(issuer))
        .with_account_name(account)
        .build()
        .map_err(|_| TotpError)
}

/// A new 160-bit secret from the crypto room's CSPRNG.
pub fn new_secret() -> Result<Secret<Vec<u8>>, rampart_crypto::random::RandomError> {
    Ok(Secret::new(rampart_crypto::random::bytes::<20>()?.to_vec()))
}

/// The `otpauth://totp/…` URI an authenticator app scans, and the base32 secret to type in.
pub fn provisioning(
    secret: &Secret<Vec<u8>>,
    issuer: &str,
    account: &str,
) -> Result<(String, String), TotpError> {
    let t = totp(secret.expose(), issuer, account)?;
    Ok((t.to_url().map_err(|_| TotpError)?, t.secret().to_base32()))
}

/// An SVG QR code of `uri`.
pub fn qr_svg(uri: &str) -> Result<String, TotpError> {
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(|_| TotpError)?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build())
}

/// The step `code` matches at `unix_time` (within ±1 step), if any.
pub fn matching_step(secret: &Secret<Vec<u8>>, code: &str, unix_time: u64) -> Option<i64> {
    let code = code.trim();
    if code.len() != usize::from(DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret.expose(), "rampart", "user").ok()?;
    t.check(code, unix_time)
        .and_then(|step| i64::try_from(step).ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const VECTORS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../vectors/totp_rfc6238.json"
    ));

    #[test]
    fn rfc6238_appendix_b_vectors() {
        let doc: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let table = &doc["totp_rfc6238"];
        let mut checked = 0;
        for v in table["vectors"].as_array().unwrap() {
            let alg = v["algorithm"].as_str().unwrap();
            let seed = hex::decode(table["seeds"][alg]["hex"].as_str().unwrap()).unwrap();
            let algorithm = match alg {
                "SHA1" => Algorithm::SHA1,
                "SHA256" => Algorithm::SHA256,
                "SHA512" => Algorithm::SHA512,
                other => panic!("unknown algorithm {other}"),
            };
            let t = Builder::new()
                .with_algorithm(algorithm)
                .with_digits(8)
                .with_step_duration(30)
                .with_secret(seed)
                .with_account_name("vector")
                .build()
                .unwrap();
            let time = v["unix_time"].as_u64().unwrap();
            assert_eq!(
                t.generate(time).to_string(),
                v["totp_8"].as_str().unwrap(),
                "{alg} at {time}"
            );
            checked += 1;
        }
        assert_eq!(checked, 18, "RFC 6238 Appendix B has 18 rows");
    }

    /// Rampart's own TOTP (its `totp()` with the parameters it ships: SHA-1, six digits,
    /// 30-second steps) against RFC 6238 Appendix B: the SHA-1 rows, whose six-digit codes are
    /// the last six digits of the table's eight (both are the same truncated value mod 10^d).
    #[test]
    fn rampart_totp_gives_the_rfc6238_sha1_codes() {
        let doc: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let table = &doc["totp_rfc6238"];
        let seed = hex::decode(table["seeds"]["SHA1"]["hex"].as_str().unwrap()).unwrap();
        let secret = Secret::new(seed.clone());
        let t = totp(&seed, "Rampart", "vector@example.com").unwrap();
        let mut checked = 0;
        for v in table["vectors"].as_array().unwrap() {
            if v["algorithm"] != "SHA1" {
                continue;
            }
            let time = v["unix_time"].as_u64().unwrap();
            let eight = v["totp_8"].as_str().unwrap();
            let six = &eight[eight.len() - 6..];
            assert_eq!(
                t.generate(time).to_string(),
                six,
                "Rampart's code at {time}"
            );
            // And the verifier accepts it at exactly that step.
            assert_eq!(
                matching_step(&secret, six, time),
                Some(i64::try_from(time / STEP).unwrap()),
                "the step of {six} at {time}"
            );
            checked += 1;
        }
        assert_eq!(checked, 6, "RFC 6238 Appendix B has six SHA-1 rows");
    }

    #[test]
    fn drift_of_one_step_is_accepted_two_is_not() {
        let secret = new_secret().unwrap();
        assert_eq!(secret.expose().len(), 20);
        let t = totp(secret.expose(), "rampart", "a@example.com").unwrap();
        let now = 1_800_000_000u64;
        let code = t.generate(now).to_string();
        let step = i64::try_from(now / STEP).unwrap();
        assert_eq!(matching_step(&secret, &code, now), Some(step));
        assert_eq!(matching_step(&secret, &code, now + STEP), Some(step));
        assert_eq!(matching_step(&secret, &code, now - STEP), Some(step));
        assert_eq!(matching_step(&secret, &code, now + 2 * STEP), None);
        assert_eq!(matching_step(&secret, "12345", now), None);
        assert_eq!(matching_step(&secret, "abcdef", now), None);
    }

    #[test]
    fn uri_names_issuer_and_account() {
        let secret = new_secret().unwrap();
        let (uri, b32) = provisioning(&secret, "Rampart", "a@example.com").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/Rampart:a%40example.com?"),
            "{uri}"
        );
        assert!(uri.contains(&format!("secret={b32}")));
        assert!(qr_svg(&uri).unwrap().starts_with("<?xml"));
    }
}
