//! The second factor: the TOTP secret (stored only in the encrypted form the caller hands in),
//! the last accepted time step (replay protection, advanced atomically), backup codes (hashes;
//! each usable once), and the failure counts that stop guessing: every code presented is
//! counted before it is checked, on its pending session and on its person.

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

/// Whether a presented second-factor code may be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactorClaim {
    /// Counted; check it. The person's failures, this one included.
    Counted(i64),
    /// The pending session has used up its attempts (it is ended now); nothing was checked.
    SessionExhausted,
    /// The person's second factor is locked until then; nothing was checked.
    Locked(DateTime<Utc>),
}

/// What a wrong code led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecondFactorFailure {
    /// The pending session has no attempts left and was ended.
    pub session_ended: bool,
    /// This failure locked the person's second factor until then (exactly one caller per lock).
    pub locked_until: Option<DateTime<Utc>>,
}

/// How long the `locks`-th lock in a row lasts (counting from 0): `base`, doubled each time, at
/// most `max`.
pub fn backoff(base: chrono::Duration, max: chrono::Duration, locks: i64) -> chrono::Duration {
    let doublings = u32::try_from(locks.clamp(0, 30)).unwrap_or(30);
    base.checked_mul(1 << doublings)
        .map_or(max, |d| d.min(max))
        .max(base.min(max))
}

impl Store {
    /// Counts a second-factor attempt before its code is checked: on the pending `session`
    /// (refused once `session_max` are counted; the session then ends) and on `user` (refused
    /// while locked, or once `user_max` are counted; an expired lock is cleared and counting
    /// restarts). Conditional updates, so parallel attempts never check more codes than allowed.
    pub async fn claim_second_factor_attempt(
        &self,
        session: rampart_core::SessionId,
        user: UserId,
        session_max: u32,
        user_max: u32,
        now: DateTime<Utc>,
    ) -> Result<SecondFactorClaim, StoreError> {
        let now = db_time(now);
        let mut c = self.platform(true).await?;
        let counted = fetch_optional!(
            &mut c,
            "UPDATE sessions SET second_factor_failures = second_factor_failures + 1 \
             WHERE id = $1 AND user_id = $2 AND ended_at IS NULL AND stage = 'second_factor' \
             AND second_factor_failures < $3 RETURNING second_factor_failures",
            [
                session.to_string(),
                user.to_string(),
                i64::from(session_max)
            ],
            |r| r
                .try_get::<i64, _>("second_factor_failures")
                .map_err(StoreError::from_sqlx)
        )?;
        if counted.is_none() {
            execute!(
                &mut c,
                "UPDATE sessions SET ended_at = $2, end_reason = 'second_factor_failures' \
                 WHERE id = $1 AND ended_at IS NULL",
                session.to_string(),
                now
            )
            .map_err(StoreError::from_sqlx)?;
            c.commit().await?;
            return Ok(SecondFactorClaim::SessionExhausted);
        }
        let claimed = fetch_optional!(
            &mut c,
            "UPDATE users SET \
               second_factor_failures = CASE WHEN second_factor_locked_until IS NOT NULL \
                 AND second_factor_locked_until <= $2 THEN 1 ELSE second_factor_failures + 1 END, \
               second_factor_locked_until = CASE WHEN second_factor_locked_until IS NOT NULL \
                 AND second_factor_locked_until <= $2 THEN NULL ELSE second_factor_locked_until END \
             WHERE id = $1 AND ((second_factor_locked_until IS NOT NULL AND second_factor_locked_until <= $2) \
               OR (second_factor_locked_until IS NULL AND second_factor_failures < $3)) \
             RETURNING second_factor_failures",
            [user.to_string(), now, i64::from(user_max)],
            |r| r
                .try_get::<i64, _>("second_factor_failures")
                .map_err(StoreError::from_sqlx)
        )?;
        let outcome = match claimed {
            Some(n) => SecondFactorClaim::Counted(n),
            None => {
                let until = fetch_optional!(
                    &mut c,
                    "SELECT second_factor_locked_until FROM users WHERE id = $1",
                    [user.to_string()],
                    |r| r
                        .try_get::<Option<DateTime<Utc>>, _>("second_factor_locked_until")
                        .map_err(StoreError::from_sqlx)
                )?
                .flatten();
                // At the count but not yet locked: a parallel failure is about to lock it.
                SecondFactorClaim::Locked(until.unwrap_or(now))
            }
        };
        c.commit().await?;
        Ok(outcome)
    }

    /// After a wrong code: ends the pending session once it has `session_max` failures, and
    /// locks `user`'s second factor once they have `user_max` (for `backoff` of the locks in a
    /// row so far). Exactly one caller per lock is told it locked.
    #[allow(clippy::too_many_arguments)]
    pub async fn second_factor_failed(
        &self,
        session: rampart_core::SessionId,
        user: UserId,
        session_max: u32,
        user_max: u32,
        base: chrono::Duration,
        max: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<SecondFactorFailure, StoreError> {
        let now = db_time(now);
        let mut c = self.platform(true).await?;
        let session_ended = execute!(
            &mut c,
            "UPDATE sessions SET ended_at = $2, end_reason = 'second_factor_failures' \
             WHERE id = $1 AND ended_at IS NULL AND second_factor_failures >= $3",
            session.to_string(),
            now,
            i64::from(session_max)
        )
        .map_err(StoreError::from_sqlx)?
            == 1;
        let locks = fetch_optional!(
            &mut c,
            "SELECT second_factor_locks FROM users WHERE id = $1",
            [user.to_string()],
            |r| r
                .try_get::<i64, _>("second_factor_locks")
                .map_err(StoreError::from_sqlx)
        )?
        .unwrap_or(0);
        let until = db_time(now + backoff(base, max, locks));
        let locked = execute!(
            &mut c,
            "UPDATE users SET second_factor_locked_until = $2, second_factor_locks = second_factor_locks + 1 \
             WHERE id = $1 AND second_factor_locked_until IS NULL AND second_factor_failures >= $3",
            user.to_string(),
            until,
            i64::from(user_max)
        )
        .map_err(StoreError::from_sqlx)?
            == 1;
        c.commit().await?;
        Ok(SecondFactorFailure {
            session_ended,
            locked_until: locked.then_some(until),
        })
    }

    /// The second factor passed: the person's count, lock and backoff start again.
    pub async fn second_factor_passed(&self, user: UserId) -> Result<(), StoreError> {
        let mut c = self.platform(true).await?;
        execute!(
            &mut c,
            "UPDATE users SET second_factor_failures = 0, second_factor_locked_until = NULL, \
             second_factor_locks = 0 WHERE id = $1",
            user.to_string()
        )
        .map_err(StoreError::from_sqlx)?;
        c.commit().await
    }

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

#[cfg(test)]
mod tests {
    use super::backoff;
    use chrono::Duration;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (base, max) = (Duration::minutes(15), Duration::hours(24));
        assert_eq!(backoff(base, max, 0), Duration::minutes(15));
        assert_eq!(backoff(base, max, 1), Duration::minutes(30));
        assert_eq!(backoff(base, max, 6), Duration::minutes(960));
        assert_eq!(backoff(base, max, 7), Duration::hours(24));
        assert_eq!(backoff(base, max, 1_000), Duration::hours(24));
        assert_eq!(backoff(base, max, -3), Duration::minutes(15));
    }
}
