//! API keys: `rk_live_<workspace>_<secret>`.
//!
//! The secret is 256 bits from the OS CSPRNG (43 base64url characters). The workspace body
//! is part of the token so that authentication can bind its lookup to that workspace before
//! touching a tenant table (row-level security stays on for the lookup), and because the hash
//! covers the whole token, a key can never be re-pointed at another workspace: changing the
//! workspace part changes the hash. Only the SHA-256 hash is stored; the token is shown once.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rampart_core::{Secret, WorkspaceId};
use sha2::{Digest, Sha256};

use crate::random::{self, RandomError};

/// The fixed, recognisable prefix of every live key (secret scanners can match on it).
pub const PREFIX: &str = "rk_live_";
const SECRET_BYTES: usize = 32;
const SECRET_CHARS: usize = 43;
/// How many secret characters the displayable prefix keeps.
const SHOWN_SECRET_CHARS: usize = 6;

/// Why a bearer token is not an API key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    /// Not of the `rk_live_<workspace>_<secret>` form.
    #[error("not a Rampart API key")]
    Malformed,
}

/// SHA-256 of a full API key token: what the database stores and looks up.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiKeyHash([u8; 32]);

impl ApiKeyHash {
    /// Lower-case hex, the stored form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the stored hex form.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Debug for ApiKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeyHash({}…)", &self.to_hex()[..8])
    }
}

/// A presented bearer token that has the shape of an API key. Holds the token as a secret.
#[derive(Debug)]
pub struct ApiKeyToken {
    workspace: WorkspaceId,
    token: Secret<String>,
}

impl ApiKeyToken {
    /// Checks the shape of a presented token; says nothing about whether it is valid.
    pub fn parse(presented: &str) -> Result<Self, ApiKeyError> {
        let rest = presented
            .strip_prefix(PREFIX)
            .ok_or(ApiKeyError::Malformed)?;
        let (ws_body, secret) = rest.split_once('_').ok_or(ApiKeyError::Malformed)?;
        if secret.len() != SECRET_CHARS
            || !secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ApiKeyError::Malformed);
        }
        let workspace = WorkspaceId::parse(&format!("{}_{ws_body}", WorkspaceId::PREFIX))
            .map_err(|_| ApiKeyError::Malformed)?;
        // Only the canonical lower-case spelling is a key; anything else would hash differently.
        if ws_body != workspace.body() {
            return Err(ApiKeyError::Malformed);
        }
        Ok(Self {
            workspace,
            token: Secret::new(presented.to_owned()),
        })
    }

    /// The workspace the token claims; authentication checks the claim against the stored row.
    pub fn workspace(&self) -> WorkspaceId {
        self.workspace
    }

    /// The hash to look up.
    pub fn hash(&self) -> ApiKeyHash {
        hash_token(self.token.expose())
    }
}

/// A freshly minted key: the token (shown once), its hash and its displayable prefix.
#[derive(Debug)]
pub struct NewApiKey {
    /// The full token; hand it to the caller once and drop it.
    pub token: Secret<String>,
    /// What to store.
    pub hash: ApiKeyHash,
    /// What listings show: enough to recognise the key, too little to use it.
    pub display_prefix: String,
}

impl NewApiKey {
    /// Mints a key for `workspace` with 256 bits of fresh randomness.
    pub fn generate(workspace: WorkspaceId) -> Result<Self, RandomError> {
        let secret_bytes = random::bytes::<SECRET_BYTES>()?;
        let secret = URL_SAFE_NO_PAD.encode(secret_bytes);
        let token = format!("{PREFIX}{}_{secret}", workspace.body());
        let display_prefix = format!(
            "{PREFIX}{}_{}",
            workspace.body(),
            &secret[..SHOWN_SECRET_CHARS]
        );
        let hash = hash_token(&token);
        Ok(Self {
            token: Secret::new(token),
            hash,
            display_prefix,
        })
    }
}

fn hash_token(token: &str) -> ApiKeyHash {
    ApiKeyHash(Sha256::digest(token.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back_to_their_workspace_and_hash() {
        let ws = WorkspaceId::generate();
        let key = NewApiKey::generate(ws).unwrap_or_else(|_| unreachable!());
        let token = key.token.expose().clone();
        assert!(token.starts_with(PREFIX));
        let parsed = ApiKeyToken::parse(&token).unwrap_or_else(|_| unreachable!());
        assert_eq!(parsed.workspace(), ws);
        assert_eq!(parsed.hash(), key.hash);
        assert!(token.starts_with(&key.display_prefix));
        assert_eq!(format!("{:?}", key.token), "[redacted]");
        assert!(!format!("{parsed:?}").contains(&token));
    }

    #[test]
    fn carries_256_bits_of_fresh_randomness() {
        let ws = WorkspaceId::generate();
        let a = NewApiKey::generate(ws).unwrap_or_else(|_| unreachable!());
        let b = NewApiKey::generate(ws).unwrap_or_else(|_| unreachable!());
        assert_ne!(a.hash, b.hash);
        // The secret is the fixed-length tail: base64url may itself contain `_`.
        let token = a.token.expose();
        let secret = token[token.len() - SECRET_CHARS..].to_owned();
        let decoded = URL_SAFE_NO_PAD.decode(secret).unwrap_or_default();
        assert_eq!(decoded.len() * 8, 256);
    }

    #[test]
    fn re_pointing_a_key_at_another_workspace_changes_its_hash() {
        let ws = WorkspaceId::generate();
        let key = NewApiKey::generate(ws).unwrap_or_else(|_| unreachable!());
        let other = WorkspaceId::generate();
        let forged = key.token.expose().replace(&ws.body(), &other.body());
        let parsed = ApiKeyToken::parse(&forged).unwrap_or_else(|_| unreachable!());
        assert_eq!(parsed.workspace(), other);
        assert_ne!(parsed.hash(), key.hash);
    }

    #[test]
    fn rejects_what_is_not_a_key() {
        for bad in [
            "",
            "rk_live_",
            "rk_test_abc_def",
            "Bearer rk_live_x",
            "rk_live_01jabcdefghjkmnpqrstvwxyz0_short",
        ] {
            assert_eq!(
                ApiKeyToken::parse(bad).map(|_| ()),
                Err(ApiKeyError::Malformed),
                "{bad}"
            );
        }
        let ws = WorkspaceId::generate();
        let key = NewApiKey::generate(ws).unwrap_or_else(|_| unreachable!());
        let upper = key
            .token
            .expose()
            .replace(&ws.body(), &ws.body().to_ascii_uppercase());
        assert!(
            ApiKeyToken::parse(&upper).is_err(),
            "non-canonical spelling is refused"
        );
    }
}
