//! Rampart's storage room: SQLite and PostgreSQL behind one API.
//!
//! The raw pools never leave this crate. Tenant tables are reached only through a
//! [`TenantTx`], which can only be opened from a [`rampart_core::TenantGrant`] (an
//! authorization decision) and which carries its workspace into every query; on PostgreSQL it
//! also binds `rampart.workspace_id` so row-level security filters every statement, and a
//! statement without that binding raises. Platform tables (organizations, workspaces, users,
//! memberships) are reached through narrow [`Store`] methods used to authenticate, to authorize
//! and by the operator CLI.

mod conn;
mod error;
mod head_hints;
mod keyring;
mod ledger_scan;
mod lifecycle;
mod migrate;
mod platform;
mod private_file;
mod tenant;
mod writer;

pub mod api_keys;
pub mod audit;
pub mod contacts;
pub mod credentials;
pub mod idempotency;
pub mod identity;
pub mod jobs;
pub mod snapshot;
pub mod vault;
pub mod versions;

pub use error::StoreError;
pub use keyring::{KeyRow, Keyring, keyring_path_for};
pub use lifecycle::{EncryptedColumn, ORG_ENCRYPTED_COLUMNS, Reencrypted};
pub use migrate::{MIGRATIONS_POSTGRES, MIGRATIONS_SQLITE};
pub use platform::{CreatedOrg, OrgSummary};
pub use rampart_crypto::{KeyScope, MasterKey};
pub use tenant::{Mode, TenantTx};
pub use vault::{Encrypted, Vault, VaultError};
pub use writer::{
    MAX_AGE as GROUP_COMMIT_MAX_AGE, MAX_MEMBERS as GROUP_COMMIT_MAX_MEMBERS, WriteStats,
};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, PgPool, SqlitePool};

/// Connections of the pool that whole-chain scans use (`Store::chain_reader`), on either
/// backend. Opened on first use: most processes never scan a chain, and those that do (audit
/// verify, restore's chain check) scan one organization at a time.
const SCAN_CONNECTIONS: u32 = 2;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// The embedded default.
    Sqlite,
    /// The scale-out store with row-level security.
    Postgres,
}

#[derive(Debug)]
enum Backend {
    Sqlite {
        /// The pool of the one writer connection, used directly only to migrate.
        writer: SqlitePool,
        /// Every write transaction, through group commit ([`writer`]).
        writes: writer::Writer,
        readers: SqlitePool,
        /// Read-only connections for whole-chain scans, which buffer one row ahead of their
        /// reader rather than sqlx's default of 50 ([`ledger_scan`] says why).
        scans: SqlitePool,
    },
    Postgres {
        pool: PgPool,
        /// Connections for whole-chain scans ([`Store::chain_reader`]): one statement that
        /// runs as long as the chain is long, so sqlx's slow-statement warning is off for them.
        scans: PgPool,
    },
}

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store(Arc<Backend>);

/// Pool sizes and timeouts.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Most connections to PostgreSQL, or SQLite readers.
    pub max_connections: u32,
    /// How long a request waits for a connection before the store reports itself unavailable.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Times are stored with microsecond precision on both backends, so a value reads back
/// byte-identical whichever database holds it.
pub(crate) fn db_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// How every connection to the SQLite database at `path` is opened: WAL,
/// `synchronous=NORMAL`, foreign keys on, a 5 s busy timeout. Public so that the benchmark's
/// baseline opens the database exactly as the store does.
pub fn sqlite_connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5))
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` with
    /// [`sqlite_connect_options`]: one writer connection and a read-only reader pool.
    pub async fn open_sqlite(path: &Path, settings: PoolSettings) -> Result<Self, StoreError> {
        let base = sqlite_connect_options(path);
        // Contacts and the ledger are as private as the keyring beside them.
        crate::private_file::create(path)
            .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(base.clone().create_if_missing(true))
            .await
            .map_err(StoreError::unavailable)?;
        let readers = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(base.clone().read_only(true))
            .await
            .map_err(StoreError::unavailable)?;
        let scans = SqlitePoolOptions::new()
            .max_connections(SCAN_CONNECTIONS)
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(
                base.read_only(true)
                    .row_buffer_size(ledger_scan::ROWS_AHEAD)
                    .disable_statement_logging(),
            );
        let writes = writer::Writer::start(writer.clone(), settings.acquire_timeout);
        Ok(Self(Arc::new(Backend::Sqlite {
            writer,
            writes,
            readers,
            scans,
        })))
    }

    /// Connects to PostgreSQL. The server refuses a role that would bypass row-level security;
    /// see [`Store::ensure_restricted_role`].
    pub async fn connect_postgres(url: &str, settings: PoolSettings) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse().map_err(|_| StoreError::BadUrl)?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options.clone())
            .await
            .map_err(StoreError::unavailable)?;
        let scans = PgPoolOptions::new()
            .max_connections(SCAN_CONNECTIONS)
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(options.disable_statement_logging());
        Ok(Self(Arc::new(Backend::Postgres { pool, scans })))
    }

    /// On PostgreSQL, whether the server's autovacuum daemon is on; `None` on SQLite.
    /// Without it no table is ever analyzed, and PostgreSQL keeps the plans it made while a
    /// table was empty, which can read a whole workspace where one index entry would do.
    pub async fn postgres_autovacuum(&self) -> Result<Option<bool>, StoreError> {
        match &*self.0 {
            Backend::Sqlite { .. } => Ok(None),
            Backend::Postgres { pool, .. } => {
                let on: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
                    .fetch_one(pool)
                    .await
                    .map_err(StoreError::from_sqlx)?;
                Ok(Some(on == "on"))
            }
        }
    }

    /// On SQLite, how many write requests the writer has run and in how many commits (group
    /// commit puts several in one); `None` on PostgreSQL.
    pub fn write_stats(&self) -> Option<WriteStats> {
        match &*self.0 {
            Backend::Sqlite { writes, .. } => Some(writes.stats()),
            Backend::Postgres { .. } => None,
        }
    }

    /// Which backend this is.
    pub fn kind(&self) -> BackendKind {
        match &*self.0 {
            Backend::Sqlite { .. } => BackendKind::Sqlite,
            Backend::Postgres { .. } => BackendKind::Postgres,
        }
    }

    /// Applies pending migrations through this store's own connection.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        match &*self.0 {
            Backend::Sqlite { writer, .. } => migrate::sqlite(writer).await,
            Backend::Postgres { pool, .. } => migrate::postgres(pool, None).await,
        }
    }

    /// On PostgreSQL, refuses to serve as a superuser or a `BYPASSRLS` role: either would skip
    /// every row-level security policy. A no-op on SQLite.
    pub async fn ensure_restricted_role(&self) -> Result<(), StoreError> {
        if let Backend::Postgres { pool, .. } = &*self.0 {
            let (name, superuser, bypass): (String, bool, bool) = sqlx::query_as(
                "SELECT rolname::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
            )
            .fetch_one(pool)
            .await
            .map_err(StoreError::from_sqlx)?;
            if superuser || bypass {
                return Err(StoreError::PrivilegedRole(name));
            }
        }
        Ok(())
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &*self.0 {
            Backend::Sqlite { readers, .. } => {
                sqlx::query("SELECT 1")
                    .execute(readers)
                    .await
                    .map_err(StoreError::unavailable)?;
            }
            Backend::Postgres { pool, .. } => {
                sqlx::query("SELECT 1")
                    .execute(pool)
                    .await
                    .map_err(StoreError::unavailable)?;
            }
        }
        Ok(())
    }

    /// Closes every connection, waiting for checked-out ones to come back.
    pub async fn close(&self) {
        match &*self.0 {
            Backend::Sqlite {
                writer,
                readers,
                scans,
                ..
            } => {
                scans.close().await;
                readers.close().await;
                writer.close().await;
            }
            Backend::Postgres { pool, scans } => {
                scans.close().await;
                pool.close().await;
            }
        }
    }
}

/// Migrates a PostgreSQL database as its owning role and grants the application role the
/// data privileges it needs (and nothing else: it owns no table and cannot alter policies).
pub async fn migrate_postgres_as_owner(
    owner_url: &str,
    app_role: Option<&str>,
) -> Result<usize, StoreError> {
    let options: PgConnectOptions = owner_url.parse().map_err(|_| StoreError::BadUrl)?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(StoreError::unavailable)?;
    let applied = migrate::postgres(&pool, app_role).await;
    pool.close().await;
    applied
}
