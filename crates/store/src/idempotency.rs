//! Idempotency keys, scoped to (workspace, caller, key). The stored response is written in the
//! same transaction as the change it belongs to, so a replay never returns a response for work
//! that did not happen. An expired key counts as unused, and expired keys are purged by every
//! 64th claim.
//!
//! The claim is made inside the change's own write transaction
//! ([`Store::idempotency_claim_for_work`]), so one commit holds the claim, the change and the
//! stored response, and a request that fails leaves no claim behind. What a concurrent
//! duplicate sees differs by backend. On SQLite every write transaction runs on the one writer
//! connection, so a duplicate waits for the writer and is replayed. On PostgreSQL the claim
//! first takes a transaction-scoped advisory lock on the key without waiting (in the claim's own
//! statement), so a duplicate arriving on another connection while the first is still running
//! is refused at once with "in use" rather than left holding a connection while it waits on a
//! row lock.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, Utc};
use rampart_core::TenantGrant;
use sqlx::Row;

use crate::conn::{execute, fetch_optional};
use crate::{Mode, Store, StoreError, TenantTx, db_time};

/// How long a key is remembered.
pub const RETENTION: Duration = Duration::hours(24);
/// How long an in-flight claim blocks duplicates before it is presumed abandoned (a crash).
pub const LOCK: Duration = Duration::seconds(60);

/// One claim in this many (per process) also deletes its workspace's expired keys. A claim
/// never needs the purge to be correct (it takes an expired record of its own key over), so
/// the purge, a write of its own, only keeps the table from growing.
const PURGE_EVERY: u64 = 64;
static PURGE_TURN: AtomicU64 = AtomicU64::new(0);

/// A response stored for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers worth replaying (e.g. `location`), as a JSON object text.
    pub headers: String,
    /// The body.
    pub body: String,
}

/// The outcome of claiming a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First use (or an abandoned claim taken over): run the request.
    Claimed,
    /// Seen and finished: replay this response.
    Replay(StoredResponse),
    /// Seen with the same request, still running.
    InUse,
    /// Seen with a different request.
    Reused,
}

impl Store {
    /// Claims `key` inside a new write transaction of `grant`'s workspace (see the module
    /// documentation). A successful claim comes with that transaction, for the change to run
    /// in; any other outcome rolls it back.
    pub async fn idempotency_claim_for_work(
        &self,
        grant: &TenantGrant,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<(Claim, Option<TenantTx>), StoreError> {
        let mut tx = self.tenant(grant, Mode::Write).await?;
        Ok(
            match claim(&mut tx, key, request_hash, now, KeyLock::Try).await? {
                Claim::Claimed => (Claim::Claimed, Some(tx)),
                other => {
                    // Nothing to keep, but a replay must not answer before the response it
                    // replays is stored: on SQLite it may be another request's in the same
                    // uncommitted group, so the rollback waits for that group to commit.
                    tx.rollback().await?;
                    (other, None)
                }
            },
        )
    }

    /// Claims `key` for `grant`'s caller in its workspace, in a transaction of its own.
    pub async fn idempotency_claim(
        &self,
        grant: &TenantGrant,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut tx = self.tenant(grant, Mode::Write).await?;
        let claim = claim(&mut tx, key, request_hash, now, KeyLock::None).await?;
        tx.commit().await?;
        Ok(claim)
    }

    /// Records the final response of a request whose own transaction rolled back (a 4xx), or
    /// releases the claim (`None`: a 5xx or a refusal a retry may get past) so a retry can run.
    /// The response is stored even where the claim rolled back with the change (SQLite), but
    /// never over a response a duplicate has meanwhile completed.
    pub async fn idempotency_settle(
        &self,
        grant: &TenantGrant,
        key: &str,
        request_hash: &str,
        response: Option<&StoredResponse>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant(grant, Mode::Write).await?;
        let (ws, actor) = (tx.ws(), grant.principal().actor.label());
        match response {
            Some(r) => {
                let now = db_time(now);
                execute!(&mut tx.conn,
                    "INSERT INTO idempotency_keys (workspace_id, actor, key, request_hash, state, status, response_headers, response_body, created_at, expires_at, locked_until) \
                     VALUES ($1, $2, $3, $4, 'done', $5, $6, $7, $8, $9, $8) \
                     ON CONFLICT (workspace_id, actor, key) DO UPDATE SET request_hash = excluded.request_hash, state = 'done', \
                     status = excluded.status, response_headers = excluded.response_headers, response_body = excluded.response_body, \
                     created_at = excluded.created_at, expires_at = excluded.expires_at, locked_until = excluded.locked_until \
                     WHERE (idempotency_keys.state = 'in_flight' AND idempotency_keys.request_hash = excluded.request_hash) \
                     OR idempotency_keys.expires_at < excluded.created_at",
                    ws, actor, key, request_hash, i32::from(r.status), r.headers.clone(), r.body.clone(), now, now + RETENTION)
                .map_err(StoreError::from_sqlx)?;
            }
            None => {
                execute!(&mut tx.conn, "DELETE FROM idempotency_keys WHERE workspace_id = $1 AND actor = $2 AND key = $3 AND state = 'in_flight'", ws, actor, key)
                    .map_err(StoreError::from_sqlx)?;
            }
        }
        tx.commit().await
    }
}

/// Whether a claim on PostgreSQL first takes the lock that serializes the requests of one key:
/// a transaction-scoped advisory lock on a 64-bit hash of (workspace, caller, key), released by
/// the commit or rollback. (Two different keys in flight at once share a lock only on a hash
/// collision, about 2^-64.) SQLite needs no lock: its single writer connection already runs one
/// write at a time.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyLock {
    /// Take it without waiting; when another transaction holds it, the key is in use.
    Try,
    /// Claim without it (a claim in a transaction of its own).
    None,
}

/// The claim's insert: a new key, or one expired taken over as if it were not there. Its rows
/// come from `$from` (`VALUES` with the eight parameters, or a `SELECT` of them).
macro_rules! claim_insert {
    ($from:literal) => {
        concat!(
            "INSERT INTO idempotency_keys (workspace_id, actor, key, request_hash, state, created_at, expires_at, locked_until) ",
            $from,
            " ON CONFLICT (workspace_id, actor, key) DO UPDATE SET \
             request_hash = excluded.request_hash, state = 'in_flight', status = NULL, response_headers = NULL, \
             response_body = NULL, created_at = excluded.created_at, expires_at = excluded.expires_at, \
             locked_until = excluded.locked_until WHERE idempotency_keys.expires_at < excluded.created_at"
        )
    };
}

/// The claim's insert on PostgreSQL behind the key's advisory lock (`$8` names the lock), in one
/// statement: whether the lock was taken, and how many rows were claimed.
const LOCKED_CLAIM: &str = concat!(
    "WITH lock AS (SELECT pg_try_advisory_xact_lock(hashtextextended($8, 0)) AS got), claimed AS (",
    claim_insert!("SELECT $1, $2, $3, $4, 'in_flight', $5, $6, $7 FROM lock WHERE got"),
    " RETURNING 1) SELECT (SELECT got FROM lock) AS got, (SELECT count(*) FROM claimed) AS claimed"
);

/// Claims `key` for the transaction's caller in its workspace, inside `tx`: the claim stands
/// or falls with whatever else `tx` commits.
async fn claim(
    tx: &mut TenantTx,
    key: &str,
    request_hash: &str,
    now: DateTime<Utc>,
    lock: KeyLock,
) -> Result<Claim, StoreError> {
    let now = db_time(now);
    let actor = tx.actor_label();
    let ws = tx.ws();
    if PURGE_TURN
        .fetch_add(1, Ordering::Relaxed)
        .is_multiple_of(PURGE_EVERY)
    {
        execute!(
            &mut tx.conn,
            "DELETE FROM idempotency_keys WHERE workspace_id = $1 AND expires_at < $2",
            ws.clone(),
            now
        )
        .map_err(StoreError::from_sqlx)?;
    }
    let inserted = match (&mut tx.conn, lock) {
        // The lock and the insert in one round trip.
        (crate::conn::Conn::Pg(c), KeyLock::Try) => {
            let name = format!("rampart.idempotency\n{ws}\n{actor}\n{key}");
            let (got, claimed): (bool, i64) = sqlx::query_as(LOCKED_CLAIM)
                .bind(ws.as_str())
                .bind(actor.as_str())
                .bind(key)
                .bind(request_hash)
                .bind(now)
                .bind(now + RETENTION)
                .bind(now + LOCK)
                .bind(name)
                .fetch_one(&mut **c)
                .await
                .map_err(StoreError::from_sqlx)?;
            if !got {
                return Ok(Claim::InUse);
            }
            u64::try_from(claimed).unwrap_or(0)
        }
        (conn, _) => execute!(
            conn,
            claim_insert!("VALUES ($1, $2, $3, $4, 'in_flight', $5, $6, $7)"),
            ws.clone(),
            actor.clone(),
            key,
            request_hash,
            now,
            now + RETENTION,
            now + LOCK
        )
        .map_err(StoreError::from_sqlx)?,
    };
    let claim = if inserted == 1 {
        Claim::Claimed
    } else {
        type Existing = (
            String,
            String,
            Option<i32>,
            Option<String>,
            Option<String>,
            DateTime<Utc>,
        );
        let row: Option<Existing> = fetch_optional!(
            &mut tx.conn,
            "SELECT request_hash, state, status, response_headers, response_body, locked_until FROM idempotency_keys \
                 WHERE workspace_id = $1 AND actor = $2 AND key = $3",
            [ws.clone(), actor.clone(), key],
            |r| {
                let e = StoreError::from_sqlx;
                Ok((
                    r.try_get("request_hash").map_err(e)?,
                    r.try_get("state").map_err(e)?,
                    r.try_get("status").map_err(e)?,
                    r.try_get("response_headers").map_err(e)?,
                    r.try_get("response_body").map_err(e)?,
                    r.try_get("locked_until").map_err(e)?,
                ))
            }
        )?;
        match row {
            // Deleted between our insert and select (expired by a concurrent claim): retry later.
            None => Claim::InUse,
            Some((hash, ..)) if hash != request_hash => Claim::Reused,
            Some((_, state, Some(status), headers, body, _)) if state == "done" => {
                Claim::Replay(StoredResponse {
                    status: u16::try_from(status).unwrap_or(500),
                    headers: headers.unwrap_or_else(|| "{}".to_owned()),
                    body: body.unwrap_or_default(),
                })
            }
            Some((_, _, _, _, _, locked_until)) if locked_until > now => Claim::InUse,
            Some(_) => {
                execute!(&mut tx.conn,
                        "UPDATE idempotency_keys SET locked_until = $1 WHERE workspace_id = $2 AND actor = $3 AND key = $4",
                        now + LOCK, ws, actor, key)
                    .map_err(StoreError::from_sqlx)?;
                Claim::Claimed
            }
        }
    };
    Ok(claim)
}

/// The update that stores a key's response in the change's own transaction, its six
/// parameters (status, headers, body; workspace, actor, key) numbered as given: it is sent
/// with the audit event of the same change (`audit::commit_with_event`), one round trip for
/// both.
macro_rules! complete_sql {
    ($status:literal, $headers:literal, $body:literal, $ws:literal, $actor:literal, $key:literal) => {
        concat!(
            "UPDATE idempotency_keys SET state = 'done', status = ",
            $status,
            ", response_headers = ",
            $headers,
            ", response_body = ",
            $body,
            " WHERE workspace_id = ",
            $ws,
            " AND actor = ",
            $actor,
            " AND key = ",
            $key
        )
    };
}
pub(crate) use complete_sql;
