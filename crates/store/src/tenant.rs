//! The tenant-bound transaction: the only door to tenant tables.

use rampart_core::{Actor, OrgId, TenantGrant, WorkspaceId};
use sqlx::AssertSqlSafe;

use crate::conn::Conn;
use crate::{Backend, Store, StoreError};

/// Whether a transaction will write. SQLite write transactions take the write lock up front
/// (`BEGIN IMMEDIATE`) so two writers never deadlock on a lock upgrade; PostgreSQL read
/// transactions are `READ ONLY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reads only.
    Read,
    /// Reads and writes.
    Write,
}

/// A transaction bound to one workspace. Dropping it rolls back; [`TenantTx::commit`] consumes it.
pub struct TenantTx {
    workspace: WorkspaceId,
    org: Option<OrgId>,
    actor: Option<Actor>,
    pub(crate) conn: Conn,
}

impl std::fmt::Debug for TenantTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantTx")
            .field("workspace", &self.workspace)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens a transaction in the grant's workspace.
    pub async fn tenant(&self, grant: &TenantGrant, mode: Mode) -> Result<TenantTx, StoreError> {
        let mut tx = self
            .bind(grant.workspace(), Some(grant.org()), mode)
            .await?;
        tx.actor = Some(grant.principal().actor);
        Ok(tx)
    }

    /// Binds a transaction to a workspace without a grant. Private to the store: used only to
    /// authenticate a credential that names its own workspace, before any grant exists.
    pub(crate) async fn bind(
        &self,
        workspace: WorkspaceId,
        org: Option<OrgId>,
        mode: Mode,
    ) -> Result<TenantTx, StoreError> {
        let conn = match (&*self.0, mode) {
            (Backend::Sqlite { readers, .. }, Mode::Read) => {
                Conn::sqlite_read(readers.begin().await.map_err(StoreError::from_sqlx)?)
            }
            (Backend::Sqlite { writes, .. }, Mode::Write) => Conn::sqlite_write(writes).await?,
            (Backend::Postgres { pool, .. }, mode) => {
                // BEGIN and the binding in one round trip (a simple-query batch), since every
                // request pays for it.
                let tx = pool
                    .begin_with(AssertSqlSafe(bound_begin(mode, workspace, org)))
                    .await
                    .map_err(StoreError::from_sqlx)?;
                Conn::Pg(tx)
            }
        };
        Ok(TenantTx {
            workspace,
            org,
            actor: None,
            conn,
        })
    }
}

/// `BEGIN` followed by `SET LOCAL` of the workspace and organization the policies compare
/// against (the organization binds the ledger tables; '' leaves them unreachable). The values
/// are written into the SQL text because a simple-query batch takes no parameters; that is
/// safe by type: a `WorkspaceId` or `OrgId` displays only as a prefix, `_` and 26 lower-case
/// base-32 characters, never a quote.
fn bound_begin(mode: Mode, workspace: WorkspaceId, org: Option<OrgId>) -> String {
    let begin = match mode {
        Mode::Read => "BEGIN READ ONLY",
        Mode::Write => "BEGIN",
    };
    let org = org.map(|o| o.to_string()).unwrap_or_default();
    format!(
        "{begin}; SET LOCAL rampart.workspace_id = '{workspace}'; SET LOCAL rampart.org_id = '{org}'"
    )
}

impl TenantTx {
    /// The workspace every statement in this transaction is confined to.
    pub fn workspace(&self) -> WorkspaceId {
        self.workspace
    }

    /// The organization owning the workspace, when opened from a grant.
    pub fn org(&self) -> Option<OrgId> {
        self.org
    }

    /// Who acts in this transaction, as recorded in version history (`key_…`, `usr_…`, `operator`).
    pub fn actor_label(&self) -> String {
        self.actor
            .map_or_else(|| "system".to_owned(), |a| a.label())
    }

    pub(crate) fn ws(&self) -> String {
        self.workspace.to_string()
    }

    /// Commits everything done in the transaction; returns once it is stored (on SQLite,
    /// once the group it was committed with is).
    pub async fn commit(self) -> Result<(), StoreError> {
        self.conn.commit().await
    }

    /// Rolls back everything done in the transaction and returns once what it read is settled:
    /// on SQLite a write transaction shares its commit with others, and what it saw of theirs
    /// (say, an email already taken) counts only once they are stored. `Err` when they were
    /// not, so an answer built on what it read must not be given.
    pub async fn rollback(self) -> Result<(), StoreError> {
        self.conn.rollback().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_begin_holds_the_ids_as_plain_literals() {
        let (ws, org) = (WorkspaceId::generate(), OrgId::generate());
        let sql = bound_begin(Mode::Read, ws, Some(org));
        assert_eq!(
            sql,
            format!(
                "BEGIN READ ONLY; SET LOCAL rampart.workspace_id = '{ws}'; SET LOCAL rampart.org_id = '{org}'"
            )
        );
        // Between the quotes only the characters an id can display.
        for literal in sql.split('\'').skip(1).step_by(2) {
            assert!(
                literal
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{literal}"
            );
        }
        assert!(bound_begin(Mode::Write, ws, None).ends_with("rampart.org_id = ''"));
    }
}
