//! A user's sign-in state: password hash, confirmation, disablement, the failed-attempt counter
//! and the lock, read and changed atomically.

use chrono::{DateTime, Utc};
use rampart_core::{Email, OrgId, Plan, Role, UserId, WorkspaceId};
use sqlx::Row;

use crate::audit::NewEvent;
use crate::conn::{execute, fetch_all, fetch_optional, id};
use crate::platform::{append_in_platform, insert_membership};
use crate::{Store, StoreError, db_time};

/// What sign-in needs to know about a user.
#[derive(Debug, Clone)]
pub struct UserAuth {
    /// The user.
    pub id: UserId,
    /// The address as entered at sign-up.
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// PHC string (argon2id, or an imported bcrypt hash); none until a password is set.
    pub password_hash: Option<String>,
    /// When the address was confirmed.
    pub email_confirmed_at: Option<DateTime<Utc>>,
    /// When an operator disabled the account.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Sign-in attempts counted since the last success or lock expiry.
    pub failed_signins: i64,
    /// Refuse every sign-in until then.
    pub locked_until: Option<DateTime<Utc>>,
    /// Whether TOTP is enrolled and confirmed.
    pub totp_enabled: bool,
}

impl UserAuth {
    /// Whether the lock is in force at `now`.
    pub fn locked_at(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|t| t > now)
    }
}

/// Which lock a mail about it concerns; each kind is limited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMail {
    /// Password sign-in locked after failed attempts.
    Password,
    /// The second factor locked after failed codes.
    SecondFactor,
}

/// Where a sign-in lock applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockScope {
    /// One source (a client IP or IPv6 /64) for this account.
    Source,
    /// The account, from everywhere (the backstop).
    Account,
}

impl LockScope {
    /// `source` or `account`, for events.
    pub fn as_str(self) -> &'static str {
        match self {
            LockScope::Source => "source",
            LockScope::Account => "account",
        }
    }
}

/// Whether a password may be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigninClaim {
    /// Counted; evaluate it.
    Counted,
    /// Refused unevaluated: locked (or at the count) for this scope.
    Locked(LockScope),
}

/// What sign-up did.
#[derive(Debug, Clone, Copy)]
pub enum SignupOutcome {
    /// A new user, organization and workspace.
    Created {
        /// The user.
        user: UserId,
        /// The organization.
        org: OrgId,
        /// Its first workspace.
        workspace: WorkspaceId,
    },
    /// The email already belongs to a confirmed user; nothing was changed.
    Existing(UserId),
    /// The email belonged to a user who never confirmed it: that sign-up was replaced by this
    /// one (password, name), its second factor and sessions cleared. Whoever signed up first
    /// may not have owned the address, so only a link mailed for this sign-up confirms it.
    Replaced(UserId),
}

/// Clears what an unconfirmed sign-up may have set (its password, becoming `password_hash`,
/// second factor, backup codes, sessions and failure counters), marks the address confirmed
/// when `confirm` is given, and optionally renames the user. Only while the address is
/// unconfirmed; true when it was (and so was cleared).
pub(crate) async fn replace_unconfirmed(
    c: &mut crate::conn::Conn,
    user: UserId,
    password_hash: Option<&str>,
    name: Option<&str>,
    confirm: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = execute!(
        &mut *c,
        "UPDATE users SET password_hash = $2, name = COALESCE($3, name), email_confirmed_at = $4, \
         totp_secret = NULL, totp_pending_secret = NULL, totp_enabled_at = NULL, totp_last_step = NULL, \
         failed_signins = 0, locked_until = NULL, signin_locks = 0 \
         WHERE id = $1 AND email_confirmed_at IS NULL",
        user.to_string(),
        password_hash,
        name,
        confirm.map(db_time)
    )
    .map_err(StoreError::from_sqlx)?;
    if n == 0 {
        return Ok(false);
    }
    for table in ["backup_codes", "signin_failures"] {
        execute!(
            &mut *c,
            sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE user_id = $1")),
            user.to_string()
        )
        .map_err(StoreError::from_sqlx)?;
    }
    super::sessions::end_all_on(c, user, None, "address_claimed", db_time(now)).await?;
    Ok(true)
}

const USER_COLUMNS: &str = "id, email, name, password_hash, email_confirmed_at, disabled_at, \
     failed_signins, locked_until, totp_enabled_at";

macro_rules! user_auth {
    ($r:expr) => {{
        let r = $r;
        let e = StoreError::from_sqlx;
        Ok::<_, StoreError>(UserAuth {
            id: id(r.try_get("id").map_err(e)?)?,
            email: r.try_get("email").map_err(e)?,
            name: r.try_get("name").map_err(e)?,
            password_hash: r.try_get("password_hash").map_err(e)?,
            email_confirmed_at: r.try_get("email_confirmed_at").map_err(e)?,
            disabled_at: r.try_get("disabled_at").map_err(e)?,
            failed_signins: r.try_get("failed_signins").map_err(e)?,
            locked_until: r.try_get("locked_until").map_err(e)?,
            totp_enabled: r
                .try_get::<Option<DateTime<Utc>>, _>("totp_enabled_at")
                .map_err(e)?
                .is_some(),
        })
    }};
}

impl Store {
    /// Creates a user with a password, an organization and its first workspace with the user
    /// as owner, and records `event` in the new organization's ledger; or, when the email is
    /// taken, changes nothing and says so (the caller must answer alike either way).
    #[allow(clippy::too_many_arguments)]
    pub async fn signup(
        &self,
        email: &Email,
        name: &str,
        password_hash: &str,
        org_name: &str,
        plan: Plan,
        now: DateTime<Utc>,
        event: NewEvent,
    ) -> Result<SignupOutcome, StoreError> {
        let now = db_time(now);
        let mut c = self.platform(true).await?;
        let existing: Option<UserId> = fetch_optional!(
            &mut c,
            "SELECT id FROM users WHERE email_lower = $1",
            [email.normalized()],
            |r| id(r.try_get("id").map_err(StoreError::from_sqlx)?)
        )?;
        if let Some(user) = existing {
            if replace_unconfirmed(&mut c, user, Some(password_hash), Some(name), None, now).await?
            {
                c.commit().await?;
                return Ok(SignupOutcome::Replaced(user));
            }
            return Ok(SignupOutcome::Existing(user));
        }
        let user = UserId::generate();
        execute!(
            &mut c,
            "INSERT INTO users (id, email, email_lower, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            user.to_string(),
            email.as_str(),
            email.normalized(),
            name,
            password_hash,
            now
        )
        .map_err(|e| StoreError::classify(e, "a user with this email already exists"))?;
        let (org, workspace) = crate::platform::insert_org(&mut c, org_name, plan, now).await?;
        insert_membership(&mut c, workspace, user, Role::Owner, now).await?;
        crate::platform::bind_org(&mut c, org).await?;
        crate::audit::create_head(&mut c, org).await?;
        let mut event = event;
        event.workspace = Some(workspace);
        event.actor = rampart_core::Actor::User(user).into();
        event.target.get_or_insert_with(|| user.to_string());
        append_in_platform(&mut c, org, event, now).await?;
        c.commit().await?;
        Ok(SignupOutcome::Created {
            user,
            org,
            workspace,
        })
    }

    /// The sign-in state of the user with this email, if any.
    pub async fn user_by_email(&self, email: &Email) -> Result<Option<UserAuth>, StoreError> {
        let mut c = self.platform(false).await?;
        fetch_optional!(
            &mut c,
            sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE email_lower = $1"
            )),
            [email.normalized()],
            |r| user_auth!(r)
        )
    }

    /// The sign-in state of a user.
    pub async fn user_auth(&self, user: UserId) -> Result<Option<UserAuth>, StoreError> {
        let mut c = self.platform(false).await?;
        fetch_optional!(
            &mut c,
            sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")),
            [user.to_string()],
            |r| user_auth!(r)
        )
    }

    /// Reserves one password attempt on `user` from `source` before the password is evaluated:
    /// counted atomically on the (account, source) pair and on the account, so parallel
    /// attempts never evaluate more passwords than either allows. A source is refused once
    /// `source_max` are counted since its last success or while it is locked; the account,
    /// once `account_max` are counted from all sources together or while it is locked. An
    /// expired lock is cleared here and its count restarts (the backoff remembers it).
    pub async fn claim_signin_attempt(
        &self,
        user: UserId,
        source: &str,
        source_max: u32,
        account_max: u32,
        now: DateTime<Utc>,
    ) -> Result<SigninClaim, StoreError> {
        let now = db_time(now);
        let mut c = self.platform(true).await?;
        let counted = fetch_optional!(
            &mut c,
            "INSERT INTO signin_failures (user_id, source, failures, locks, updated_at) VALUES ($1, $2, 1, 0, $3) \
             ON CONFLICT (user_id, source) DO UPDATE SET \
               failures = CASE WHEN signin_failures.locked_until IS NOT NULL AND signin_failures.locked_until <= $3 \
                 THEN 1 ELSE signin_failures.failures + 1 END, \
               locked_until = CASE WHEN signin_failures.locked_until IS NOT NULL AND signin_failures.locked_until <= $3 \
                 THEN NULL ELSE signin_failures.locked_until END, \
               updated_at = $3 \
             WHERE (signin_failures.locked_until IS NOT NULL AND signin_failures.locked_until <= $3) \
               OR (signin_failures.locked_until IS NULL AND signin_failures.failures < $4) \
             RETURNING failures",
            [
                user.to_string(),
                source.to_owned(),
                now,
                i64::from(source_max)
            ],
            |r| r
                .try_get::<i64, _>("failures")
                .map_err(StoreError::from_sqlx)
        )?;
        if counted.is_none() {
            c.commit().await?;
            return Ok(SigninClaim::Locked(LockScope::Source));
        }
        let claimed = fetch_optional!(
            &mut c,
            "UPDATE users SET \
               failed_signins = CASE WHEN locked_until IS NOT NULL AND locked_until <= $2 THEN 1 ELSE failed_signins + 1 END, \
               locked_until = CASE WHEN locked_until IS NOT NULL AND locked_until <= $2 THEN NULL ELSE locked_until END \
             WHERE id = $1 AND ( (locked_until IS NOT NULL AND locked_until <= $2) \
                  OR (locked_until IS NULL AND failed_signins < $3) ) \
             RETURNING failed_signins",
            [user.to_string(), now, i64::from(account_max)],
            |r| r
                .try_get::<i64, _>("failed_signins")
                .map_err(StoreError::from_sqlx)
        )?;
        c.commit().await?;
        Ok(match claimed {
            Some(_) => SigninClaim::Counted,
            None => SigninClaim::Locked(LockScope::Account),
        })
    }

    /// After a wrong password: locks the source once it has `source_max` failures, and the
    /// account once it has `account_max`, each for `backoff` of its locks in a row so far.
    /// Exactly one caller per lock is told of it.
    #[allow(clippy::too_many_arguments)]
    pub async fn signin_failed(
        &self,
        user: UserId,
        source: &str,
        source_max: u32,
        account_max: u32,
        base: chrono::Duration,
        max: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<(LockScope, DateTime<Utc>)>, StoreError> {
        let now = db_time(now);
        let mut c = self.platform(true).await?;
        let locks: i64 = fetch_optional!(
            &mut c,
            "SELECT locks FROM signin_failures WHERE user_id = $1 AND source = $2",
            [user.to_string(), source.to_owned()],
            |r| r.try_get::<i64, _>("locks").map_err(StoreError::from_sqlx)
        )?
        .unwrap_or(0);
        let until = db_time(now + super::second_factor::backoff(base, max, locks));
        let source_locked = execute!(
            &mut c,
            "UPDATE signin_failures SET locked_until = $3, locks = locks + 1 \
             WHERE user_id = $1 AND source = $2 AND locked_until IS NULL AND failures >= $4",
            user.to_string(),
            source,
            until,
            i64::from(source_max)
        )
        .map_err(StoreError::from_sqlx)?
            == 1;
        let account_locks: i64 = fetch_optional!(
            &mut c,
            "SELECT signin_locks FROM users WHERE id = $1",
            [user.to_string()],
            |r| r
                .try_get::<i64, _>("signin_locks")
                .map_err(StoreError::from_sqlx)
        )?
        .unwrap_or(0);
        let account_until = db_time(now + super::second_factor::backoff(base, max, account_locks));
        let account_locked = execute!(
            &mut c,
            "UPDATE users SET locked_until = $2, signin_locks = signin_locks + 1 \
             WHERE id = $1 AND locked_until IS NULL AND failed_signins >= $3",
            user.to_string(),
            account_until,
            i64::from(account_max)
        )
        .map_err(StoreError::from_sqlx)?
            == 1;
        c.commit().await?;
        Ok(if account_locked {
            Some((LockScope::Account, account_until))
        } else if source_locked {
            Some((LockScope::Source, until))
        } else {
            None
        })
    }

    /// After a correct password from `source`: that source's count and backoff, and the
    /// account's count, start again. Other sources keep theirs. An account-wide lock in force
    /// stays (only time, a reset or the operator lifts it).
    pub async fn signin_succeeded(&self, user: UserId, source: &str) -> Result<(), StoreError> {
        let mut c = self.platform(true).await?;
        execute!(
            &mut c,
            "DELETE FROM signin_failures WHERE user_id = $1 AND source = $2",
            user.to_string(),
            source
        )
        .map_err(StoreError::from_sqlx)?;
        execute!(
            &mut c,
            "UPDATE users SET failed_signins = 0, signin_locks = 0 WHERE id = $1 AND locked_until IS NULL",
            user.to_string()
        )
        .map_err(StoreError::from_sqlx)?;
        c.commit().await
    }

    /// Whether to mail the owner about a `lock` now: true at most once per `every` for each
    /// kind of lock (a lock kept up by an attacker must not become a mail bomb).
    pub async fn claim_lock_mail(
        &self,
        user: UserId,
        lock: LockMail,
        every: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = match lock {
            LockMail::Password => {
                "UPDATE users SET lock_mailed_at = $2 WHERE id = $1 \
                 AND (lock_mailed_at IS NULL OR lock_mailed_at <= $3)"
            }
            LockMail::SecondFactor => {
                "UPDATE users SET second_factor_lock_mailed_at = $2 WHERE id = $1 \
                 AND (second_factor_lock_mailed_at IS NULL OR second_factor_lock_mailed_at <= $3)"
            }
        };
        let now = db_time(now);
        let mut c = self.platform(true).await?;
        let n = execute!(&mut c, sql, user.to_string(), now, now - every)
            .map_err(StoreError::from_sqlx)?;
        c.commit().await?;
        Ok(n == 1)
    }

    /// Replaces the password hash if it is still `old` (a re-hash on sign-in must not undo a
    /// password change that happened meanwhile). True when replaced.
    pub async fn rehash_password(
        &self,
        user: UserId,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let mut c = self.platform(true).await?;
        let n = execute!(
            &mut c,
            "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
            user.to_string(),
            old,
            new
        )
        .map_err(StoreError::from_sqlx)?;
        c.commit().await?;
        Ok(n == 1)
    }

    /// Sets a new password and ends every session of the user except `keep`, atomically.
    /// Returns how many sessions ended.
    pub async fn set_password(
        &self,
        user: UserId,
        hash: &str,
        keep: Option<rampart_core::SessionId>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let now = db_time(now);
        let mut c = self.platform(true).await?;
        execute!(
            &mut c,
            "UPDATE users SET password_hash = $2, failed_signins = 0, locked_until = NULL, signin_locks = 0 WHERE id = $1",
            user.to_string(),
            hash
        )
        .map_err(StoreError::from_sqlx)?;
        // Guesses at the old password say nothing about the new one.
        execute!(
            &mut c,
            "DELETE FROM signin_failures WHERE user_id = $1",
            user.to_string()
        )
        .map_err(StoreError::from_sqlx)?;
        let ended = super::sessions::end_all_on(&mut c, user, keep, reason, now).await?;
        c.commit().await?;
        Ok(ended)
    }

    /// The address is proven by something other than its sign-up's own link (a magic link, a
    /// password reset, an invitation): if it was never confirmed, whatever the sign-up set is
    /// cleared first (its password, replaced by `password_hash`; second factor; sessions), since
    /// whoever signed up may not own the address. Then it is marked confirmed. True when an
    /// unconfirmed sign-up was cleared.
    pub async fn confirm_by_other_proof(
        &self,
        user: UserId,
        password_hash: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut c = self.platform(true).await?;
        let cleared =
            replace_unconfirmed(&mut c, user, password_hash, None, Some(now), now).await?;
        c.commit().await?;
        Ok(cleared)
    }

    /// Marks the user's email confirmed (idempotent).
    pub async fn confirm_email(&self, user: UserId, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut c = self.platform(true).await?;
        execute!(
            &mut c,
            "UPDATE users SET email_confirmed_at = $2 WHERE id = $1 AND email_confirmed_at IS NULL",
            user.to_string(),
            db_time(now)
        )
        .map_err(StoreError::from_sqlx)?;
        c.commit().await
    }

    /// Disables the account (or enables it again) and, when disabling, ends its sessions.
    pub async fn set_user_disabled(
        &self,
        user: UserId,
        disabled: bool,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let now = db_time(now);
        let mut c = self.platform(true).await?;
        let n = execute!(
            &mut c,
            "UPDATE users SET disabled_at = $2 WHERE id = $1",
            user.to_string(),
            disabled.then_some(now)
        )
        .map_err(StoreError::from_sqlx)?;
        if n == 0 {
            return Err(StoreError::NotFound("user"));
        }
        let ended = if disabled {
            super::sessions::end_all_on(&mut c, user, None, "account_disabled", now).await?
        } else {
            0
        };
        c.commit().await?;
        Ok(ended)
    }

    /// Sets a password hash directly (operator import of a bcrypt hash, or the CLI).
    pub async fn import_password_hash(
        &self,
        user: UserId,
        hash: &str,
        confirmed: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut c = self.platform(true).await?;
        let n = execute!(
            &mut c,
            "UPDATE users SET password_hash = $2, email_confirmed_at = CASE WHEN $3 THEN COALESCE(email_confirmed_at, $4) ELSE email_confirmed_at END WHERE id = $1",
            user.to_string(),
            hash,
            confirmed,
            db_time(now)
        )
        .map_err(StoreError::from_sqlx)?;
        if n == 0 {
            return Err(StoreError::NotFound("user"));
        }
        c.commit().await
    }

    /// Appends `event` to the ledger of every organization `user` belongs to (one transaction
    /// each, naming that organization's workspace and, unless set, the user as target). Tries
    /// every organization; returns the last failure, if any.
    pub async fn record_for_user(
        &self,
        user: UserId,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut outcome = Ok(());
        for (org, workspace) in self.user_orgs(user).await? {
            let mut event = event.clone();
            event.workspace = Some(workspace);
            event.target.get_or_insert_with(|| user.to_string());
            let appended = async {
                let mut ledger = self.org_ledger(org, crate::Mode::Write).await?;
                ledger.append(event, now).await?;
                ledger.commit().await
            }
            .await;
            if let Err(e) = appended {
                outcome = Err(e);
            }
        }
        outcome
    }

    /// Every organization the user belongs to, with one of its workspaces: where the user's
    /// sign-in events are recorded.
    pub async fn user_orgs(&self, user: UserId) -> Result<Vec<(OrgId, WorkspaceId)>, StoreError> {
        let mut c = self.platform(false).await?;
        fetch_all!(
            &mut c,
            "SELECT w.org_id AS org_id, MIN(w.id) AS workspace_id FROM memberships m \
             JOIN workspaces w ON w.id = m.workspace_id WHERE m.user_id = $1 \
             GROUP BY w.org_id ORDER BY w.org_id",
            [user.to_string()],
            |r| Ok((
                id(r.try_get("org_id").map_err(StoreError::from_sqlx)?)?,
                id(r.try_get("workspace_id").map_err(StoreError::from_sqlx)?)?,
            ))
        )
    }
}
