//! Browser sessions: stored by the SHA-256 of their token, with idle and absolute expiry and a
//! stage (`second_factor` until the second factor is passed; such a session opens nothing else).

use chrono::{DateTime, Utc};
use rampart_core::{SessionId, UserId};
use serde::Serialize;
use sqlx::Row;

use crate::conn::{Conn, execute, fetch_all, fetch_optional, id};
use crate::error::corrupt;
use crate::{Store, StoreError, db_time};

/// How far a session has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStage {
    /// Fully signed in.
    Active,
    /// Password accepted; the second factor is still owed.
    SecondFactor,
}

impl SessionStage {
    fn as_str(self) -> &'static str {
        match self {
            SessionStage::Active => "active",
            SessionStage::SecondFactor => "second_factor",
        }
    }

    fn parse(raw: &str) -> Result<Self, StoreError> {
        match raw {
            "active" => Ok(SessionStage::Active),
            "second_factor" => Ok(SessionStage::SecondFactor),
            other => Err(corrupt(format!("unknown session stage `{other}`"))),
        }
    }
}

/// A session to create; the token itself never reaches the store.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The user.
    pub user: UserId,
    /// SHA-256 of the cookie token, hex.
    pub token_hash: String,
    /// SHA-256 of the CSRF token, hex.
    pub csrf_hash: String,
    /// Stage.
    pub stage: SessionStage,
    /// Idle expiry.
    pub idle_expires_at: DateTime<Utc>,
    /// Absolute expiry.
    pub absolute_expires_at: DateTime<Utc>,
    /// Truncated client address.
    pub client_ip: Option<String>,
    /// The browser's User-Agent, cut to 200 characters.
    pub user_agent: Option<String>,
}

/// A live session as stored.
#[derive(Debug, Clone, Serialize)]
pub struct SessionRecord {
    /// Id.
    pub id: SessionId,
    /// Owner.
    pub user: UserId,
    /// Stage.
    pub stage: SessionStage,
    /// SHA-256 of the CSRF token, hex (never serialized to clients).
    #[serde(skip)]
    pub csrf_hash: String,
    /// Failed second-factor codes so far.
    #[serde(skip)]
    pub second_factor_failures: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last request seen.
    pub last_seen_at: DateTime<Utc>,
    /// Idle expiry.
    pub idle_expires_at: DateTime<Utc>,
    /// Absolute expiry.
    pub absolute_expires_at: DateTime<Utc>,
    /// Truncated client address at sign-in.
    pub client_ip: Option<String>,
    /// Browser at sign-in.
    pub user_agent: Option<String>,
    /// The person has no second factor but an organization of theirs requires one: the
    /// session reaches only what enrolling needs (read with the session, so it follows the
    /// policy and the enrolment at once).
    #[serde(skip)]
    pub two_factor_required: bool,
}

const COLUMNS: &str = "id, user_id, stage, csrf_hash, second_factor_failures, created_at, \
     last_seen_at, idle_expires_at, absolute_expires_at, client_ip, user_agent";

macro_rules! session {
    ($r:expr) => {{
        let r = $r;
        let e = StoreError::from_sqlx;
        Ok::<_, StoreError>(SessionRecord {
            id: id(r.try_get("id").map_err(e)?)?,
            user: id(r.try_get("user_id").map_err(e)?)?,
            stage: SessionStage::parse(&r.try_get::<String, _>("stage").map_err(e)?)?,
            csrf_hash: r.try_get("csrf_hash").map_err(e)?,
            second_factor_failures: r.try_get("second_factor_failures").map_err(e)?,
            created_at: r.try_get("created_at").map_err(e)?,
            last_seen_at: r.try_get("last_seen_at").map_err(e)?,
            idle_expires_at: r.try_get("idle_expires_at").map_err(e)?,
            absolute_expires_at: r.try_get("absolute_expires_at").map_err(e)?,
            client_ip: r.try_get("client_ip").map_err(e)?,
            user_agent: r.try_get("user_agent").map_err(e)?,
            two_factor_required: false,
        })
    }};
}

/// Ends every live session of `user` but `keep`; returns how many.
pub(crate) async fn end_all_on(
    c: &mut Conn,
    user: UserId,
    keep: Option<SessionId>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    execute!(
        c,
        "UPDATE sessions SET ended_at = $2, end_reason = $3 WHERE user_id = $1 AND ended_at IS NULL AND id <> $4",
        user.to_string(),
        db_time(now),
        reason,
        keep.map(|k| k.to_string()).unwrap_or_default()
    )
    .map_err(StoreError::from_sqlx)
}

impl Store {
    /// Stores a new session; if `replaces` is given, that session ends in the same transaction
    /// (token rotation: the old token stops working the moment the new one exists).
    pub async fn create_session(
        &self,
        new: &NewSession,
        replaces: Option<SessionId>,
        now: DateTime<Utc>,
    ) -> Result<SessionId, StoreError> {
        let now = db_time(now);
        let mut c = self.platform(true).await?;
        if let Some(old) = replaces {
            execute!(
                &mut c,
                "UPDATE sessions SET ended_at = $2, end_reason = 'rotated' WHERE id = $1 AND ended_at IS NULL",
                old.to_string(),
                now
            )
            .map_err(StoreError::from_sqlx)?;
        }
        let sid = SessionId::generate();
        execute!(
            &mut c,
            "INSERT INTO sessions (id, user_id, token_hash, csrf_hash, stage, created_at, last_seen_at, \
             idle_expires_at, absolute_expires_at, client_ip, user_agent) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10)",
            sid.to_string(),
            new.user.to_string(),
            new.token_hash.as_str(),
            new.csrf_hash.as_str(),
            new.stage.as_str(),
            now,
            db_time(new.idle_expires_at),
            db_time(new.absolute_expires_at),
            new.client_ip.clone(),
            new.user_agent.clone()
        )
        .map_err(StoreError::from_sqlx)?;
        c.commit().await?;
        Ok(sid)
    }

    /// The live session with this token hash at `now`: not ended, not past either expiry, and
    /// its user not disabled.
    pub async fn session_by_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let mut c = self.platform(false).await?;
        fetch_optional!(
            &mut c,
            sqlx::AssertSqlSafe(format!(
                "SELECT s.{}, (u.totp_enabled_at IS NULL AND EXISTS (SELECT 1 FROM memberships m \
                   JOIN workspaces w ON w.id = m.workspace_id JOIN organizations o ON o.id = w.org_id \
                   WHERE m.user_id = s.user_id AND o.require_2fa = TRUE)) AS two_factor_required \
                 FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.token_hash = $1 AND s.ended_at IS NULL AND s.idle_expires_at > $2 \
                 AND s.absolute_expires_at > $2 AND u.disabled_at IS NULL",
                COLUMNS.replace(", ", ", s.")
            )),
            [token_hash, db_time(now)],
            |r| {
                let mut record = session!(r)?;
                record.two_factor_required = r
                    .try_get::<bool, _>("two_factor_required")
                    .map_err(StoreError::from_sqlx)?;
                Ok(record)
            }
        )
    }

    /// Moves the idle expiry forward (never past the absolute expiry).
    pub async fn touch_session(
        &self,
        session: SessionId,
        now: DateTime<Utc>,
        idle_expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut c = self.platform(true).await?;
        execute!(
            &mut c,
            // Only forward: a touch that lands late (its task waited behind others) must not
            // move a newer touch's expiry back, which ended an active session under load.
            "UPDATE sessions SET last_seen_at = $2, idle_expires_at = $3 \
             WHERE id = $1 AND ended_at IS NULL AND last_seen_at < $2",
            session.to_string(),
            db_time(now),
            db_time(idle_expires_at)
        )
        .map_err(StoreError::from_sqlx)?;
        c.commit().await
    }

    /// Ends one session of `user`; false if it is not a live session of theirs.
    pub async fn end_session(
        &self,
        user: UserId,
        session: SessionId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut c = self.platform(true).await?;
        let n = execute!(
            &mut c,
            "UPDATE sessions SET ended_at = $3, end_reason = $4 WHERE id = $1 AND user_id = $2 AND ended_at IS NULL",
            session.to_string(),
            user.to_string(),
            db_time(now),
            reason
        )
        .map_err(StoreError::from_sqlx)?;
        c.commit().await?;
        Ok(n == 1)
    }

    /// Ends every session of `user` except `keep`; returns how many ended.
    pub async fn end_user_sessions(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut c = self.platform(true).await?;
        let n = end_all_on(&mut c, user, keep, reason, now).await?;
        c.commit().await?;
        Ok(n)
    }

    /// The user's live, fully signed-in sessions, newest first.
    pub async fn list_sessions(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let mut c = self.platform(false).await?;
        fetch_all!(
            &mut c,
            sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM sessions WHERE user_id = $1 AND ended_at IS NULL \
                 AND stage = 'active' AND idle_expires_at > $2 AND absolute_expires_at > $2 \
                 ORDER BY id DESC"
            )),
            [user.to_string(), db_time(now)],
            |r| session!(r)
        )
    }
}
