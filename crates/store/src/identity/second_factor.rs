//! The second factor: the TOTP secret (stored only in the encrypted form the caller hands in),
//! the last accepted time step (replay protection, advanced atomically) and backup codes
//! (hashes; each usable once).

use chrono::{DateTime, Utc};
use rampart_core::UserId;
use sqlx::Row;

use crate::conn::{Conn, execute, fetch_optional};
use crate::{Encrypted, Store, StoreError, db_time};

async fn replace_codes(
    c: &mut Conn,
    user: UserId,
    code_hashes: &[String],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    execute!(
        c,
        "DELETE FROM backup_codes WHERE user_id = $1",
        user.to_string()
    )
    .map_err(StoreError::from_sqlx)?;
    for hash in code_hashes {
        execute!(
            c,
            "INSERT INTO backup_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)",
            user.to_string(),
            hash.as_str(),
            now
        )
        .map_err(StoreError::from_sqlx)?;
    }
    Ok(())
}

impl Store {
    /// Stores an encrypted TOTP secret awaiting its first valid code; replaces any earlier
    /// pending one. The active secret, if any, is untouched until confirmation.
    pub async fn set_pending_totp(
        &self,
        user: UserId,
        sealed: &Encrypted,
    ) -> Result<(), StoreError> {
        let mut c = self.platform(true).await?;
        execute!(
            &mut c,
            "UPDATE users SET totp_pending_secret = $2 WHERE id = $1",
            user.to_string(),
            sealed
        )
        .map_err(StoreError::from_sqlx)?;
        c.commit().await
    }

    /// The encrypted pending (`pending = true`) or active TOTP secret.
    pub async fn totp_secret(
        &self,
        user: UserId,
        pending: bool,
    ) -> Result<Option<Encrypted>, StoreError> {
        let column = if pending {
            "totp_pending_secret"
        } else {
            "totp_secret"
        };
        let mut c = self.platform(false).await?;
        let row = fetch_optional!(
            &mut c,
            sqlx::AssertSqlSafe(format!("SELECT {column} AS s FROM users WHERE id = $1")),
            [user.to_string()],
            |r| r
                .try_get::<Option<Encrypted>, _>("s")
                .map_err(StoreError::from_sqlx)
        )?;
        Ok(row.flatten())
    }

    /// Turns the pending secret into the active one, records `step` as used (the confirming
    /// code may not be replayed at sign-in) and stores fresh backup codes, atomically. The
    /// pending secret must still be `sealed` (an enrolment restarted meanwhile wins).
    pub async fn activate_totp(
        &self,
        user: UserId,
        sealed_pending: &Encrypted,
        sealed_active: &Encrypted,
        step: i64,
        code_hashes: &[String],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = db_time(now);
        let mut c = self.platform(true).await?;
        let n = execute!(
            &mut c,
            "UPDATE users SET totp_secret = $3, totp_pending_secret = NULL, totp_enabled_at = $4, \
             totp_last_step = $5 WHERE id = $1 AND totp_pending_secret = $2",
            user.to_string(),
            sealed_pending,
            sealed_active,
            now,
            step
        )
        .map_err(StoreError::from_sqlx)?;
        if n != 1 {
            return Ok(false);
        }
        replace_codes(&mut c, user, code_hashes, now).await?;
        c.commit().await?;
        Ok(true)
    }

    /// Turns TOTP off and deletes the secret and every backup code.
    pub async fn disable_totp(&self, user: UserId) -> Result<(), StoreError> {
        let mut c = self.platform(true).await?;
        execute!(
            &mut c,
            "UPDATE users SET totp_secret = NULL, totp_pending_secret = NULL, totp_enabled_at = NULL, \
             totp_last_step = NULL WHERE id = $1",
            user.to_string()
        )
        .map_err(StoreError::from_sqlx)?;
        execute!(
            &mut c,
            "DELETE FROM backup_codes WHERE user_id = $1",
            user.to_string()
        )
        .map_err(StoreError::from_sqlx)?;
        c.commit().await
    }

    /// Records `step` as the last accepted TOTP step if it is later than the last one: true
    /// for exactly one of any number of concurrent presentations of the same code.
    pub async fn claim_totp_step(&self, user: UserId, step: i64) -> Result<bool, StoreError> {
        let mut c = self.platform(true).await?;
        let n = execute!(
            &mut c,
            "UPDATE users SET totp_last_step = $2 WHERE id = $1 AND totp_enabled_at IS NOT NULL \
             AND (totp_last_step IS NULL OR totp_last_step < $2)",
            user.to_string(),
            step
        )
        .map_err(StoreError::from_sqlx)?;
        c.commit().await?;
        Ok(n == 1)
    }

    /// Replaces every backup code with these hashes.
    pub async fn replace_backup_codes(
        &self,
        user: UserId,
        code_hashes: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut c = self.platform(true).await?;
        replace_codes(&mut c, user, code_hashes, db_time(now)).await?;
        c.commit().await
    }

    /// Uses up the backup code with this hash; true if it existed and was unused.
    pub async fn consume_backup_code(
        &self,
        user: UserId,
        code_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut c = self.platform(true).await?;
        let n = execute!(
            &mut c,
            "UPDATE backup_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
            user.to_string(),
            code_hash,
            db_time(now)
        )
        .map_err(StoreError::from_sqlx)?;
        c.commit().await?;
        Ok(n == 1)
    }

    /// How many unused backup codes the user has.
    pub async fn backup_codes_left(&self, user: UserId) -> Result<i64, StoreError> {
        let mut c = self.platform(false).await?;
        let n = fetch_optional!(
            &mut c,
            "SELECT COUNT(*) AS n FROM backup_codes WHERE user_id = $1 AND used_at IS NULL",
            [user.to_string()],
            |r| r.try_get::<i64, _>("n").map_err(StoreError::from_sqlx)
        )?;
        Ok(n.unwrap_or(0))
    }
}
