//! Idempotency keys, scoped to (workspace, caller, key). A claim is committed on its own
//! before the request runs, so a concurrent duplicate sees it; the stored response is written
//! in the same transaction as the change it belongs to, so a replay never returns a response
//! for work that did not happen. Expired keys of a workspace are purged on each claim there.

use chrono::{DateTime, Duration, Utc};
use rampart_core::TenantGrant;
use sqlx::Row;

use crate::conn::{execute, fetch_optional};
use crate::{Mode, Store, StoreError, TenantTx, db_time};

/// How long a key is remembered.
pub const RETENTION: Duration = Duration::hours(24);
/// How long an in-flight claim blocks duplicates before it is presumed abandoned (a crash).
pub const LOCK: Duration = Duration::seconds(60);

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
    /// Claims `key` for `grant`'s caller in its workspace, in a transaction of its own.
    pub async fn idempotency_claim(
        &self,
        grant: &TenantGrant,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let now = db_time(now);
        let actor = grant.principal().actor.label();
        let mut tx = self.tenant(grant, Mode::Write).await?;
        let ws = tx.ws();
        execute!(
            &mut tx.conn,
            "DELETE FROM idempotency_keys WHERE workspace_id = $1 AND expires_at < $2",
            ws.clone(),
            now
        )
        .map_err(StoreError::from_sqlx)?;
        let inserted = execute!(&mut tx.conn,
            "INSERT INTO idempotency_keys (workspace_id, actor, key, request_hash, state, created_at, expires_at, locked_until) \
             VALUES ($1, $2, $3, $4, 'in_flight', $5, $6, $7) ON CONFLICT (workspace_id, actor, key) DO NOTHING",
            ws.clone(), actor.clone(), key, request_hash, now, now + RETENTION, now + LOCK)
        .map_err(StoreError::from_sqlx)?;
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
        tx.commit().await?;
        Ok(claim)
    }

    /// Records the final response of a request whose own transaction rolled back (a 4xx), or
    /// releases the claim (`None`: a 5xx or a refusal a retry may get past) so a retry can run.
    pub async fn idempotency_settle(
        &self,
        grant: &TenantGrant,
        key: &str,
        response: Option<&StoredResponse>,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant(grant, Mode::Write).await?;
        match response {
            Some(r) => complete(&mut tx, key, r).await?,
            None => {
                let (ws, actor) = (tx.ws(), grant.principal().actor.label());
                execute!(&mut tx.conn, "DELETE FROM idempotency_keys WHERE workspace_id = $1 AND actor = $2 AND key = $3", ws, actor, key)
                    .map_err(StoreError::from_sqlx)?;
            }
        }
        tx.commit().await
    }
}

/// Stores the response in `tx`, the transaction of the change itself.
pub async fn complete(
    tx: &mut TenantTx,
    key: &str,
    response: &StoredResponse,
) -> Result<(), StoreError> {
    let (ws, actor) = (tx.ws(), tx.actor_label());
    execute!(&mut tx.conn,
        "UPDATE idempotency_keys SET state = 'done', status = $1, response_headers = $2, response_body = $3 \
         WHERE workspace_id = $4 AND actor = $5 AND key = $6",
        i32::from(response.status), response.headers.clone(), response.body.clone(), ws, actor, key)
    .map_err(StoreError::from_sqlx)?;
    Ok(())
}
