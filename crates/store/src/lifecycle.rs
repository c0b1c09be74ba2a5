//! Organization-wide key work: erasing an organization's data (its key is destroyed in the
//! keyring by the caller) and re-encrypting its fields under a new data key version.

use chrono::{DateTime, Utc};
use rampart_core::{OrgId, WorkspaceId};
use rampart_crypto::KeyScope;
use sqlx::Row;

use crate::audit::NewEvent;
use crate::conn::{execute, fetch_all, id};
use crate::vault::{Encrypted, Vault, VaultError};
use crate::{Mode, Store, StoreError, credentials, db_time};

/// A column of an organization's tenant table holding [`Encrypted`] values sealed with the
/// organization's key for `(table, column, id)`.
#[derive(Debug, Clone, Copy)]
pub struct EncryptedColumn {
    /// The table.
    pub table: &'static str,
    /// The column.
    pub column: &'static str,
}

/// Every organization-scoped encrypted column; a data key rotation re-encrypts each.
pub const ORG_ENCRYPTED_COLUMNS: &[EncryptedColumn] = &[EncryptedColumn {
    table: credentials::TABLE,
    column: credentials::COLUMN,
}];

/// Tenant tables emptied when an organization is deleted, children first.
const TENANT_TABLES: &[&str] = &[
    "credentials",
    "contact_tags",
    "contacts",
    "api_keys",
    "idempotency_keys",
    "object_versions",
];

/// Progress of a re-encryption.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reencrypted {
    /// Values looked at.
    pub scanned: u64,
    /// Values rewritten under the target version.
    pub rewritten: u64,
    /// Values still under another version (changed concurrently; run again).
    pub remaining: u64,
}

impl Store {
    /// The workspaces of an organization.
    pub async fn org_workspaces(&self, org: OrgId) -> Result<Vec<WorkspaceId>, StoreError> {
        let mut c = self.platform_read().await?;
        fetch_all!(
            &mut c,
            "SELECT id FROM workspaces WHERE org_id = $1 ORDER BY id",
            [org.to_string()],
            |r| id(r
                .try_get::<String, _>("id")
                .map_err(StoreError::from_sqlx)?)
        )
    }

    /// Marks an organization deleted (name replaced, `deleted_at` set) and records `event` in
    /// its ledger, which stays (it holds no plaintext secret and needs no key to verify).
    pub async fn tombstone_org(
        &self,
        org: OrgId,
        now: DateTime<Utc>,
        event: NewEvent,
    ) -> Result<(), StoreError> {
        let mut c = self.platform_write().await?;
        let n = execute!(
            &mut c,
            "UPDATE organizations SET name = '[deleted]', deleted_at = COALESCE(deleted_at, $1) WHERE id = $2",
            db_time(now),
            org.to_string()
        )
        .map_err(StoreError::from_sqlx)?;
        if n == 0 {
            return Err(StoreError::NotFound("organization"));
        }
        crate::platform::append_in_platform(&mut c, org, event, now).await?;
        c.commit().await
    }

    /// Deletes every tenant row of the organization's workspaces and its memberships; the
    /// workspaces and the organization stay as tombstones for the ledger. Safe to run again.
    pub async fn erase_org_data(&self, org: OrgId) -> Result<u64, StoreError> {
        let mut removed = 0;
        for ws in self.org_workspaces(org).await? {
            let mut tx = self.bind(ws, Some(org), Mode::Write).await?;
            for table in TENANT_TABLES {
                let sql = format!("DELETE FROM {table} WHERE workspace_id = $1");
                removed += execute!(&mut tx.conn, sqlx::AssertSqlSafe(sql), ws.to_string())
                    .map_err(StoreError::from_sqlx)?;
            }
            tx.commit().await?;
            let mut c = self.platform_write().await?;
            removed += execute!(
                &mut c,
                "DELETE FROM memberships WHERE workspace_id = $1",
                ws.to_string()
            )
            .map_err(StoreError::from_sqlx)?;
            c.commit().await?;
        }
        Ok(removed)
    }

    /// Re-encrypts every organization-scoped encrypted value of `org` not yet under data key
    /// `target`, `batch` rows per transaction, reporting `(scanned, total)` after each batch.
    /// A value changed concurrently is left alone (its writer sealed it afresh) and counted in
    /// `remaining` when it is still under an old version. Safe to stop and run again.
    pub async fn reencrypt_org(
        &self,
        vault: &Vault,
        org: OrgId,
        target: u32,
        batch: u32,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<Reencrypted, VaultError> {
        let scope = KeyScope::Org(org);
        let workspaces = self.org_workspaces(org).await?;
        let mut total = 0u64;
        for ws in &workspaces {
            for col in ORG_ENCRYPTED_COLUMNS {
                let mut tx = self.bind(*ws, Some(org), Mode::Read).await?;
                let sql = format!(
                    "SELECT count(*) AS n FROM {} WHERE workspace_id = $1",
                    col.table
                );
                let n: Vec<i64> = fetch_all!(
                    &mut tx.conn,
                    sqlx::AssertSqlSafe(sql),
                    [ws.to_string()],
                    |r| r.try_get::<i64, _>("n").map_err(StoreError::from_sqlx)
                )?;
                total += n.first().copied().unwrap_or(0).max(0).unsigned_abs();
            }
        }
        let mut report = Reencrypted::default();
        for ws in &workspaces {
            for col in ORG_ENCRYPTED_COLUMNS {
                let mut after = String::new();
                loop {
                    let mut tx = self.bind(*ws, Some(org), Mode::Write).await?;
                    let select = format!(
                        "SELECT id, {c} AS v FROM {t} WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                        c = col.column,
                        t = col.table
                    );
                    let rows: Vec<(String, Encrypted)> = fetch_all!(
                        &mut tx.conn,
                        sqlx::AssertSqlSafe(select),
                        [ws.to_string(), after.clone(), i64::from(batch.max(1))],
                        |r| Ok((
                            r.try_get::<String, _>("id")
                                .map_err(StoreError::from_sqlx)?,
                            r.try_get::<Encrypted, _>("v")
                                .map_err(StoreError::from_sqlx)?
                        ))
                    )?;
                    let Some((last, _)) = rows.last() else {
                        break;
                    };
                    after = last.clone();
                    for (row, value) in rows {
                        report.scanned += 1;
                        if value.key_version() == Some(target) {
                            continue;
                        }
                        let plain = vault
                            .open(scope, col.table, col.column, &row, &value)
                            .await?;
                        let fresh = vault
                            .seal_with_version(
                                scope,
                                target,
                                col.table,
                                col.column,
                                &row,
                                plain.expose(),
                            )
                            .await?;
                        let update = format!(
                            "UPDATE {t} SET {c} = $1 WHERE workspace_id = $2 AND id = $3 AND {c} = $4",
                            c = col.column,
                            t = col.table
                        );
                        let n = execute!(
                            &mut tx.conn,
                            sqlx::AssertSqlSafe(update),
                            &fresh,
                            ws.to_string(),
                            &row,
                            &value
                        )
                        .map_err(StoreError::from_sqlx)?;
                        if n == 1 {
                            report.rewritten += 1;
                        }
                    }
                    tx.commit().await?;
                    progress(report.scanned, total);
                }
            }
        }
        report.remaining = self.count_not_under(org, target).await?;
        Ok(report)
    }

    /// How many of the organization's encrypted values are under a version other than `target`.
    pub async fn count_not_under(&self, org: OrgId, target: u32) -> Result<u64, StoreError> {
        let mut remaining = 0;
        for ws in self.org_workspaces(org).await? {
            for col in ORG_ENCRYPTED_COLUMNS {
                let mut tx = self.bind(ws, Some(org), Mode::Read).await?;
                let sql = format!(
                    "SELECT {} AS v FROM {} WHERE workspace_id = $1",
                    col.column, col.table
                );
                let values: Vec<Encrypted> = fetch_all!(
                    &mut tx.conn,
                    sqlx::AssertSqlSafe(sql),
                    [ws.to_string()],
                    |r| r
                        .try_get::<Encrypted, _>("v")
                        .map_err(StoreError::from_sqlx)
                )?;
                remaining += values
                    .iter()
                    .filter(|v| v.key_version() != Some(target))
                    .count() as u64;
            }
        }
        Ok(remaining)
    }
}
