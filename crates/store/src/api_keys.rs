//! API keys: a tenant table. Only the SHA-256 of a key is stored.

use chrono::{DateTime, Utc};
use rampart_core::{ApiKeyId, Membership, Role, WorkspaceId};
use rampart_crypto::{ApiKeyHash, ApiKeyToken};
use serde::Serialize;
use sqlx::Row;

use crate::conn::{execute, fetch_all, fetch_optional, id};
use crate::error::corrupt;
use crate::{Mode, Store, StoreError, TenantTx, db_time};

/// An API key as listings show it: never the secret, never the hash.
#[derive(Debug, Clone, Serialize)]
pub struct ApiKeyRecord {
    /// The key's id.
    pub id: ApiKeyId,
    /// A human label.
    pub name: String,
    /// The role it acts with.
    pub role: Role,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it last authenticated a request (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A key that authenticated: who it is and what it may do where.
#[derive(Debug, Clone, Copy)]
pub struct AuthenticatedKey {
    /// The key.
    pub id: ApiKeyId,
    /// Its workspace, role, organization and plan.
    pub membership: Membership,
}

macro_rules! record {
    ($r:expr) => {{
        let r = $r;
        let g = |c: &str| r.try_get::<String, _>(c).map_err(StoreError::from_sqlx);
        Ok(ApiKeyRecord {
            id: id(g("id")?)?,
            name: g("name")?,
            role: g("role")?.parse().map_err(corrupt)?,
            prefix: g("display_prefix")?,
            created_at: r.try_get("created_at").map_err(StoreError::from_sqlx)?,
            last_used_at: r.try_get("last_used_at").map_err(StoreError::from_sqlx)?,
        })
    }};
}

/// Stores a new key in the transaction's workspace, minted by the operator.
pub async fn create(
    tx: &mut TenantTx,
    name: &str,
    role: Role,
    hash: &ApiKeyHash,
    display_prefix: &str,
    now: DateTime<Utc>,
) -> Result<ApiKeyRecord, StoreError> {
    create_by(tx, name, role, hash, display_prefix, None, now).await
}

/// Stores a new key in the transaction's workspace, recording who minted it (`usr_…` or
/// `key_…`), so that it can be revoked with its minter's membership.
pub async fn create_by(
    tx: &mut TenantTx,
    name: &str,
    role: Role,
    hash: &ApiKeyHash,
    display_prefix: &str,
    minted_by: Option<&str>,
    now: DateTime<Utc>,
) -> Result<ApiKeyRecord, StoreError> {
    let key = ApiKeyId::generate();
    let now = db_time(now);
    let ws = tx.ws();
    execute!(&mut tx.conn,
        "INSERT INTO api_keys (id, workspace_id, name, role, key_hash, display_prefix, created_at, minted_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        key.to_string(), ws, name, role.as_str(), hash.to_hex(), display_prefix, now, minted_by)
    .map_err(StoreError::from_sqlx)?;
    Ok(ApiKeyRecord {
        id: key,
        name: name.to_owned(),
        role,
        prefix: display_prefix.to_owned(),
        created_at: now,
        last_used_at: None,
    })
}

/// The workspace's active keys, newest first.
pub async fn list(tx: &mut TenantTx) -> Result<Vec<ApiKeyRecord>, StoreError> {
    let ws = tx.ws();
    fetch_all!(
        &mut tx.conn,
        "SELECT id, name, role, display_prefix, created_at, last_used_at FROM api_keys \
         WHERE workspace_id = $1 AND revoked_at IS NULL ORDER BY id DESC",
        [ws],
        |r| record!(r)
    )
}

/// An active key of this workspace.
pub async fn get(tx: &mut TenantTx, key: ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
    let ws = tx.ws();
    fetch_optional!(
        &mut tx.conn,
        "SELECT id, name, role, display_prefix, created_at, last_used_at FROM api_keys \
         WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL",
        [ws, key.to_string()],
        |r| record!(r)
    )
}

/// Revokes an active key of this workspace; `false` when there is none with that id.
pub async fn revoke(
    tx: &mut TenantTx,
    key: ApiKeyId,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let ws = tx.ws();
    let n = execute!(&mut tx.conn,
        "UPDATE api_keys SET revoked_at = $1 WHERE workspace_id = $2 AND id = $3 AND revoked_at IS NULL",
        db_time(now), ws, key.to_string())
    .map_err(StoreError::from_sqlx)?;
    Ok(n == 1)
}

/// Revokes every active key of this workspace that `minter` (`usr_…`) minted, and every key
/// those keys minted, however deep; returns their hashes (for cache eviction).
pub async fn revoke_minted_by(
    tx: &mut TenantTx,
    minter: &str,
    now: DateTime<Utc>,
) -> Result<Vec<ApiKeyHash>, StoreError> {
    let ws = tx.ws();
    fetch_all!(
        &mut tx.conn,
        "WITH RECURSIVE minted (id) AS ( \
             SELECT id FROM api_keys WHERE workspace_id = $1 AND minted_by = $2 \
             UNION SELECT k.id FROM api_keys k JOIN minted m ON k.minted_by = m.id WHERE k.workspace_id = $1 \
         ) \
         UPDATE api_keys SET revoked_at = $3 \
         WHERE workspace_id = $1 AND revoked_at IS NULL AND id IN (SELECT id FROM minted) \
         RETURNING key_hash",
        [ws, minter.to_owned(), db_time(now)],
        |r| ApiKeyHash::from_hex(
            &r.try_get::<String, _>("key_hash")
                .map_err(StoreError::from_sqlx)?
        )
        .ok_or_else(|| corrupt("bad key hash"))
    )
}

/// Reads the hash of a key (for cache eviction after revocation).
pub async fn hash_of(tx: &mut TenantTx, key: ApiKeyId) -> Result<Option<ApiKeyHash>, StoreError> {
    let ws = tx.ws();
    fetch_optional!(
        &mut tx.conn,
        "SELECT key_hash FROM api_keys WHERE workspace_id = $1 AND id = $2",
        [ws, key.to_string()],
        |r| ApiKeyHash::from_hex(
            &r.try_get::<String, _>("key_hash")
                .map_err(StoreError::from_sqlx)?
        )
        .ok_or_else(|| corrupt("bad key hash"))
    )
}

impl Store {
    /// Resolves a presented key. The lookup runs bound to the workspace the token names, so on
    /// PostgreSQL row-level security applies to it like to any other tenant query; the hash
    /// covers the whole token, so the named workspace cannot be altered.
    pub async fn authenticate_api_key(
        &self,
        token: &ApiKeyToken,
    ) -> Result<Option<AuthenticatedKey>, StoreError> {
        let workspace: WorkspaceId = token.workspace();
        let mut tx = self.bind(workspace, None, Mode::Read).await?;
        let ws = tx.ws();
        fetch_optional!(
            &mut tx.conn,
            "SELECT k.id, k.role, w.org_id, o.plan FROM api_keys k \
             JOIN workspaces w ON w.id = k.workspace_id JOIN organizations o ON o.id = w.org_id \
             WHERE k.workspace_id = $1 AND k.key_hash = $2 AND k.revoked_at IS NULL",
            [ws, token.hash().to_hex()],
            |r| {
                let g = |c: &str| r.try_get::<String, _>(c).map_err(StoreError::from_sqlx);
                Ok(AuthenticatedKey {
                    id: id(g("id")?)?,
                    membership: Membership {
                        org: id(g("org_id")?)?,
                        workspace,
                        role: g("role")?.parse().map_err(corrupt)?,
                        plan: g("plan")?.parse().map_err(corrupt)?,
                    },
                })
            }
        )
    }

    /// Records that a key was used. Best effort: callers throttle it and ignore failures.
    pub async fn touch_api_key(
        &self,
        workspace: WorkspaceId,
        key: ApiKeyId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.bind(workspace, None, Mode::Write).await?;
        let ws = tx.ws();
        execute!(
            &mut tx.conn,
            "UPDATE api_keys SET last_used_at = $1 WHERE workspace_id = $2 AND id = $3",
            db_time(now),
            ws,
            key.to_string()
        )
        .map_err(StoreError::from_sqlx)?;
        tx.commit().await
    }
}
