//! Provider credentials: a tenant table whose secret is stored only as [`Encrypted`] (the
//! organization's data key, bound to `credentials.secret` of the row). Reads return the
//! ciphertext; the plaintext exists only inside the call that opens it.

use chrono::{DateTime, Utc};
use rampart_core::CredentialId;
use serde::Serialize;
use sqlx::Row;

use crate::conn::{execute, fetch_optional, id};
use crate::vault::Encrypted;
use crate::{StoreError, TenantTx, db_time};

/// The table, as bound into every sealed secret.
pub const TABLE: &str = "credentials";
/// The encrypted column, as bound into every sealed secret.
pub const COLUMN: &str = "secret";
/// The providers a workspace can hold a credential for.
pub const PROVIDERS: &[&str] = &["twilio", "smtp", "retell", "elevenlabs", "dnc", "openai"];

/// What the API may show of a credential: never the secret.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialInfo {
    /// The row id (bound into the ciphertext).
    #[serde(skip)]
    pub id: CredentialId,
    /// The provider.
    pub provider: String,
    /// Always true for a stored credential.
    pub set: bool,
    /// The last four characters of the secret, as entered.
    pub last4: String,
    /// When it was last set.
    pub updated_at: DateTime<Utc>,
}

/// A stored credential with its ciphertext, for the call that uses it.
#[derive(Debug, Clone)]
pub struct StoredCredential {
    /// What may be shown.
    pub info: CredentialInfo,
    /// The sealed secret.
    pub secret: Encrypted,
}

/// The id of the workspace's credential for `provider`, if one is set (the row keeps its id
/// when replaced, so the value is sealed for that id before it is written).
pub async fn id_for(tx: &mut TenantTx, provider: &str) -> Result<Option<CredentialId>, StoreError> {
    let ws = tx.ws();
    fetch_optional!(
        &mut tx.conn,
        "SELECT id FROM credentials WHERE workspace_id = $1 AND provider = $2",
        [ws, provider],
        |r| id(r
            .try_get::<String, _>("id")
            .map_err(StoreError::from_sqlx)?)
    )
}

/// Sets (inserting or replacing) the workspace's credential for `provider`; `secret` must have
/// been sealed for row `id`. The row takes `id` along with the secret, so even two concurrent
/// first writes leave a row whose id matches the binding of its ciphertext.
pub async fn put(
    tx: &mut TenantTx,
    id: CredentialId,
    provider: &str,
    secret: &Encrypted,
    last4: &str,
    now: DateTime<Utc>,
) -> Result<CredentialInfo, StoreError> {
    let ws = tx.ws();
    let now = db_time(now);
    execute!(
        &mut tx.conn,
        "INSERT INTO credentials (id, workspace_id, provider, secret, last4, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) \
         ON CONFLICT (workspace_id, provider) DO UPDATE SET id = excluded.id, \
         secret = excluded.secret, last4 = excluded.last4, updated_at = excluded.updated_at",
        id.to_string(),
        ws,
        provider,
        secret,
        last4,
        now
    )
    .map_err(StoreError::from_sqlx)?;
    Ok(CredentialInfo {
        id,
        provider: provider.to_owned(),
        set: true,
        last4: last4.to_owned(),
        updated_at: now,
    })
}

/// The workspace's credential for `provider`, with its ciphertext.
pub async fn get(
    tx: &mut TenantTx,
    provider: &str,
) -> Result<Option<StoredCredential>, StoreError> {
    let ws = tx.ws();
    fetch_optional!(
        &mut tx.conn,
        "SELECT id, provider, secret, last4, updated_at FROM credentials WHERE workspace_id = $1 AND provider = $2",
        [ws, provider],
        |r| {
            let e = StoreError::from_sqlx;
            Ok(StoredCredential {
                info: CredentialInfo {
                    id: id(r.try_get::<String, _>("id").map_err(e)?)?,
                    provider: r.try_get("provider").map_err(e)?,
                    set: true,
                    last4: r.try_get("last4").map_err(e)?,
                    updated_at: r.try_get("updated_at").map_err(e)?,
                },
                secret: r.try_get("secret").map_err(e)?,
            })
        }
    )
}

/// Removes the workspace's credential for `provider`; `false` when none was set.
pub async fn delete(tx: &mut TenantTx, provider: &str) -> Result<bool, StoreError> {
    let ws = tx.ws();
    let n = execute!(
        &mut tx.conn,
        "DELETE FROM credentials WHERE workspace_id = $1 AND provider = $2",
        ws,
        provider
    )
    .map_err(StoreError::from_sqlx)?;
    Ok(n == 1)
}
