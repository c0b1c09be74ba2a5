//! SQLite file-level operations for backup and restore: a consistent online snapshot of a live
//! database (`VACUUM INTO`, which reads inside one transaction, so concurrent writers are
//! neither blocked for long nor half-copied, unlike a byte copy of a WAL database), and the
//! checks a restored copy must pass before it is put in place.
//!
//! These open their own single connection to a named file; they never see the server's pools.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use crate::StoreError;
use crate::migrate::{MIGRATIONS_SQLITE, check_known};

async fn connect(path: &Path) -> Result<SqliteConnection, StoreError> {
    if !path.is_file() {
        return Err(StoreError::NotFound("database file"));
    }
    // No journal mode is set: the file keeps its own (WAL for a live database), and changing
    // it would need a write lock on a database that is serving.
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(StoreError::unavailable)
}

/// Writes a transactionally consistent copy of the SQLite database at `src` into `dest`, while
/// other connections keep reading and writing `src`. `dest` must not exist or must be an empty
/// file (create it first with the permissions the copy should have).
pub async fn vacuum_into(src: &Path, dest: &Path) -> Result<(), StoreError> {
    let dest = dest
        .to_str()
        .ok_or_else(|| StoreError::Corrupt("snapshot path is not UTF-8".into()))?;
    let mut conn = connect(src).await?;
    let result = sqlx::query("VACUUM INTO $1")
        .bind(dest)
        .execute(&mut conn)
        .await
        .map_err(StoreError::from_sqlx);
    let _ = conn.close().await;
    result.map(|_| ())
}

/// `PRAGMA integrity_check` on the SQLite file at `path`: the problems it reports, empty when
/// the file is sound. A file that is not an SQLite database is an error.
pub async fn integrity_problems(path: &Path) -> Result<Vec<String>, StoreError> {
    let mut conn = connect(path).await?;
    let rows: Result<Vec<(String,)>, _> = sqlx::query_as("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await;
    let _ = conn.close().await;
    let rows = rows.map_err(StoreError::from_sqlx)?;
    Ok(rows
        .into_iter()
        .map(|(line,)| line)
        .filter(|line| line != "ok")
        .collect())
}

/// Checks that every migration recorded in the Rampart SQLite database at `path` is one this
/// binary knows, with the same text; returns the highest version applied. A database with no
/// migration record is not a Rampart database.
pub async fn known_migrations(path: &Path) -> Result<i64, StoreError> {
    let mut conn = connect(path).await?;
    let applied: Result<Vec<(i64, String)>, _> =
        sqlx::query_as("SELECT version, checksum FROM rampart_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await;
    let _ = conn.close().await;
    let applied = applied.map_err(|_| {
        StoreError::Corrupt("no migration record: this is not a Rampart database".into())
    })?;
    check_known(&applied, MIGRATIONS_SQLITE)?;
    Ok(applied.iter().map(|(v, _)| *v).max().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{PoolSettings, Store};

    #[tokio::test]
    async fn snapshot_of_a_live_database_passes_its_checks() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("rampart.db");
        let store = Store::open_sqlite(&db, PoolSettings::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let snap = dir.path().join("snap.db");
        std::fs::File::create(&snap).unwrap();
        vacuum_into(&db, &snap).await.unwrap();
        store.close().await;
        assert!(integrity_problems(&snap).await.unwrap().is_empty());
        // The highest version, not the count: a version may be skipped on one backend (SQLite
        // has no 8, which only PostgreSQL needed).
        assert_eq!(
            known_migrations(&snap).await.unwrap(),
            MIGRATIONS_SQLITE.iter().map(|(v, _, _)| *v).max().unwrap()
        );
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![7u8; 8192]).unwrap();
        assert!(integrity_problems(&junk).await.is_err());
        assert!(known_migrations(&junk).await.is_err());
        assert!(matches!(
            vacuum_into(&dir.path().join("missing.db"), &junk).await,
            Err(StoreError::NotFound(_))
        ));
    }
}
