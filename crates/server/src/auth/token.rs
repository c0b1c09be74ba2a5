//! High-entropy bearer tokens (session cookies, CSRF tokens, emailed links, invitations):
//! 256 bits from the OS CSPRNG, URL-safe base64; stored only as SHA-256 hex.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rampart_core::Secret;
use rampart_crypto::random::{self, RandomError};
use sha2::{Digest, Sha256};

/// A fresh token and its stored hash.
pub struct Minted {
    /// What the client receives, once.
    pub token: Secret<String>,
    /// What the store keeps.
    pub hash: String,
}

/// Draws a new 256-bit token from the crypto room's CSPRNG.
pub fn mint() -> Result<Minted, RandomError> {
    let token = URL_SAFE_NO_PAD.encode(random::bytes::<32>()?);
    let hash = hash(&token);
    Ok(Minted {
        token: Secret::new(token),
        hash,
    })
}

/// The stored form of a presented token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether a presented token has the shape of one we mint (cheap rejection of junk).
pub fn well_formed(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hash_stably() {
        let a = mint().unwrap();
        let b = mint().unwrap();
        assert_ne!(a.token.expose(), b.token.expose());
        assert!(well_formed(a.token.expose()));
        assert_eq!(hash(a.token.expose()), a.hash);
        assert_eq!(format!("{:?}", a.token), "[redacted]");
    }
}
