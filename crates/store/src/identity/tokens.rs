//! Single-use emailed tokens (confirmation, password reset, magic link), stored as hashes and
//! consumed atomically: of two requests presenting the same token, exactly one succeeds.

use chrono::{DateTime, Utc};
use rampart_core::{AuthTokenId, UserId};
use sqlx::Row;

use crate::conn::{execute, fetch_optional, id};
use crate::{Store, StoreError, db_time};

/// What a token is for; a token of one purpose never works for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    /// Confirms the email address after sign-up.
    Confirm,
    /// Sets a new password.
    Reset,
    /// Signs in without a password.
    MagicLink,
}

impl TokenPurpose {
    fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::Confirm => "confirm",
            TokenPurpose::Reset => "reset",
            TokenPurpose::MagicLink => "magic_link",
        }
    }
}

impl Store {
    /// Stores a token hash for `user`; earlier unused tokens of the same purpose stop working,
    /// so only the newest link mailed is valid. With `browser_hash`, the token can be consumed
    /// only by a request presenting the browser nonce with that hash.
    pub async fn create_auth_token(
        &self,
        user: UserId,
        purpose: TokenPurpose,
        token_hash: &str,
        browser_hash: Option<&str>,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<AuthTokenId, StoreError> {
        let now = db_time(now);
        let mut c = self.platform(true).await?;
        execute!(
            &mut c,
            "UPDATE auth_tokens SET used_at = $3 WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
            user.to_string(),
            purpose.as_str(),
            now
        )
        .map_err(StoreError::from_sqlx)?;
        let tid = AuthTokenId::generate();
        execute!(
            &mut c,
            "INSERT INTO auth_tokens (id, user_id, purpose, token_hash, created_at, expires_at, browser_hash) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            tid.to_string(),
            user.to_string(),
            purpose.as_str(),
            token_hash,
            now,
            db_time(expires_at),
            browser_hash
        )
        .map_err(StoreError::from_sqlx)?;
        c.commit().await?;
        Ok(tid)
    }

    /// Uses up the token if it is of this purpose, unused, unexpired and, when it is bound to a
    /// browser, presented with that browser's nonce (`browser_hash`); returns its user. A token
    /// presented without its browser is left unused.
    pub async fn consume_auth_token(
        &self,
        purpose: TokenPurpose,
        token_hash: &str,
        browser_hash: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>, StoreError> {
        let mut c = self.platform(true).await?;
        let user = fetch_optional!(
            &mut c,
            "UPDATE auth_tokens SET used_at = $3 WHERE token_hash = $1 AND purpose = $2 \
             AND used_at IS NULL AND expires_at > $3 \
             AND (browser_hash IS NULL OR browser_hash = $4) RETURNING user_id",
            [
                token_hash,
                purpose.as_str(),
                db_time(now),
                browser_hash.unwrap_or_default()
            ],
            |r| id::<UserId>(r.try_get("user_id").map_err(StoreError::from_sqlx)?)
        )?;
        c.commit().await?;
        Ok(user)
    }
}
