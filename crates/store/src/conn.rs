//! One transaction on either backend, and the macros that run the same SQL text on both.
//! Queries use `$1`-style placeholders, which SQLite and PostgreSQL both accept; where the
//! dialects differ the migration files differ, never the queries.

use sqlx::{Postgres, Sqlite, Transaction};

use crate::StoreError;

pub(crate) enum Conn {
    Sqlite(Transaction<'static, Sqlite>),
    Pg(Transaction<'static, Postgres>),
}

impl Conn {
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(tx) => tx.commit().await,
            Conn::Pg(tx) => tx.commit().await,
        }
        .map_err(StoreError::from_sqlx)
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
