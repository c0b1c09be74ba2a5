//! One transaction on either backend, and the macros that run the same SQL text on both.
//! Queries use `$1`-style placeholders, which SQLite and PostgreSQL both accept; where the
//! dialects differ the migration files differ, never the queries. The exceptions, all for
//! fewer round trips on a write: a contact create is one command of three statements on SQLite
//! and one statement of data-modifying CTEs on PostgreSQL (`contacts::create`); the audit append
//! links the event in Rust on SQLite (to the head the writer last moved, which SQLite's migration
//! 7 checks, in one command with a key's stored response and the hand-over of the writer) while
//! PostgreSQL seals it inside COMMIT (its migration 7), the key's response going with the event's
//! insert (`audit::append_with`); and on PostgreSQL the idempotency claim takes its advisory lock
//! in the same statement (`idempotency::claim`). The tests run both paths.

use sqlx::{Postgres, Sqlite, SqliteConnection, Transaction};

use crate::StoreError;
use crate::writer::{Lease, Writer};

pub(crate) enum Conn {
    Sqlite(SqliteTx),
    Pg(Transaction<'static, Postgres>),
}

/// A SQLite transaction: a reader's own, or a turn on the shared writer's.
pub(crate) enum SqliteTx {
    Read(Transaction<'static, Sqlite>),
    Write(Lease),
}

impl std::ops::Deref for SqliteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        match self {
            SqliteTx::Read(tx) => tx,
            SqliteTx::Write(lease) => lease,
        }
    }
}

impl std::ops::DerefMut for SqliteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match self {
            SqliteTx::Read(tx) => tx,
            SqliteTx::Write(lease) => lease,
        }
    }
}

impl Conn {
    /// A reader's transaction on SQLite.
    pub(crate) fn sqlite_read(tx: Transaction<'static, Sqlite>) -> Self {
        Conn::Sqlite(SqliteTx::Read(tx))
    }

    /// A write transaction on SQLite: a turn on the shared writer.
    pub(crate) async fn sqlite_write(writes: &Writer) -> Result<Self, StoreError> {
        Ok(Conn::Sqlite(SqliteTx::Write(writes.lease().await?)))
    }

    /// Commits; on SQLite's writer, returns once the shared transaction has committed.
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(SqliteTx::Read(tx)) => tx.commit().await.map_err(StoreError::from_sqlx),
            Conn::Sqlite(SqliteTx::Write(lease)) => lease.commit().await,
            Conn::Pg(tx) => tx.commit().await.map_err(StoreError::from_sqlx),
        }
    }

    /// Rolls back; on SQLite's writer, returns once the shared transaction has ended, `Err`
    /// if it failed to commit (so what this one read may not have been stored).
    pub(crate) async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(SqliteTx::Read(tx)) => tx.rollback().await.map_err(StoreError::from_sqlx),
            Conn::Sqlite(SqliteTx::Write(lease)) => lease.rollback().await,
            Conn::Pg(tx) => tx.rollback().await.map_err(StoreError::from_sqlx),
        }
    }
}

/// Executes a statement; evaluates to `Result<u64 rows affected, sqlx::Error>`.
macro_rules! execute {
    ($conn:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $conn {
            $crate::conn::Conn::Sqlite(c) => sqlx::query($sql)$(.bind($arg))*.execute(&mut **c).await.map(|r| r.rows_affected()),
            $crate::conn::Conn::Pg(c) => sqlx::query($sql)$(.bind($arg))*.execute(&mut **c).await.map(|r| r.rows_affected()),
        }
    };
}

/// Fetches at most one row and maps it with the closure-like `|row| body` (expanded once per
/// backend); evaluates to `Result<Option<T>, StoreError>`.
macro_rules! fetch_optional {
    ($conn:expr, $sql:expr, [$($arg:expr),* $(,)?], |$r:ident| $body:expr) => {
        match $conn {
            $crate::conn::Conn::Sqlite(c) => match sqlx::query($sql)$(.bind($arg))*.fetch_optional(&mut **c).await {
                Ok(Some(row)) => { let $r = &row; $body }.map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err($crate::StoreError::from_sqlx(e)),
            },
            $crate::conn::Conn::Pg(c) => match sqlx::query($sql)$(.bind($arg))*.fetch_optional(&mut **c).await {
                Ok(Some(row)) => { let $r = &row; $body }.map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err($crate::StoreError::from_sqlx(e)),
            },
        }
    };
}

/// Fetches every row and maps each with `$map`; evaluates to `Result<Vec<T>, StoreError>`.
macro_rules! fetch_all {
    ($conn:expr, $sql:expr, [$($arg:expr),* $(,)?], $map:expr) => {
        match $conn {
            $crate::conn::Conn::Sqlite(c) => match sqlx::query($sql)$(.bind($arg))*.fetch_all(&mut **c).await {
                Ok(rows) => rows.iter().map($map).collect::<Result<Vec<_>, $crate::StoreError>>(),
                Err(e) => Err($crate::StoreError::from_sqlx(e)),
            },
            $crate::conn::Conn::Pg(c) => match sqlx::query($sql)$(.bind($arg))*.fetch_all(&mut **c).await {
                Ok(rows) => rows.iter().map($map).collect::<Result<Vec<_>, $crate::StoreError>>(),
                Err(e) => Err($crate::StoreError::from_sqlx(e)),
            },
        }
    };
}

pub(crate) use {execute, fetch_all, fetch_optional};

/// Reads a typed id column.
pub(crate) fn id<T: std::str::FromStr>(raw: String) -> Result<T, StoreError> {
    parse_id(&raw)
}

/// Reads a typed id column borrowed from its row.
pub(crate) fn parse_id<T: std::str::FromStr>(raw: &str) -> Result<T, StoreError> {
    raw.parse()
        .map_err(|_| crate::error::corrupt(format!("bad id `{raw}`")))
}
