//! Where wrapped data keys live. Never in the same file as the ciphertext they open: on SQLite
//! a separate database, `keyring.db` beside the data file ([`keyring_path_for`]); on
//! PostgreSQL the `key_ring` table, which data backups exclude and which is backed up apart.
//! Rows hold only wrapped keys ([`WrappedKey`]), each labelled with the master key that
//! wrapped it. A destroyed scope is remembered, so no key is ever made for it again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rampart_crypto::{KeyScope, WrappedKey};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::{Backend, Store, StoreError, db_time};

/// The keyring file of the SQLite database at `db_path`: `keyring.db` in the same directory.
pub fn keyring_path_for(db_path: &Path) -> PathBuf {
    db_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("keyring.db")
}

const SQLITE_SCHEMA: &str = include_str!("../keyring/sqlite.sql");

#[derive(Debug, Clone)]
enum Pools {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A handle on the keyring; cheap to clone.
#[derive(Debug, Clone)]
pub struct Keyring(Pools);

/// One stored data key: its scope, and the key wrapped by a master key.
#[derive(Debug, Clone)]
pub struct KeyRow {
    /// Whose key it is.
    pub scope: KeyScope,
    /// The wrapped key with its version and master key id.
    pub wrapped: WrappedKey,
    /// When this version was made.
    pub created_at: DateTime<Utc>,
}

/// Runs `$body` with `$p` bound to the pool of either backend (expanded once per backend).
macro_rules! on_pool {
    ($ring:expr, $p:ident => $body:expr) => {
        match &$ring.0 {
            Pools::Sqlite($p) => $body,
            Pools::Postgres($p) => $body,
        }
    };
}

type Row = (String, i64, String, Vec<u8>, DateTime<Utc>);

fn key_row(r: Row) -> Result<KeyRow, StoreError> {
    let (scope, version, kek_id, bytes, created_at) = r;
    Ok(KeyRow {
        scope: scope
            .parse()
            .map_err(|_| crate::error::corrupt("bad keyring scope"))?,
        wrapped: WrappedKey {
            kek_id,
            dek_version: u32::try_from(version)
                .map_err(|_| crate::error::corrupt("bad key version"))?,
            bytes,
        },
        created_at,
    })
}

const COLUMNS: &str = "scope, version, kek_id, wrapped, created_at";

impl Keyring {
    /// Opens (creating if needed, mode 0600) the SQLite keyring at `path` (see
    /// [`keyring_path_for`]). Deleted keys are overwritten in the file (`secure_delete`).
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        // Create the file private before SQLite does; its -wal and -shm take the same mode.
        crate::private_file::create(path).map_err(|e| StoreError::Keyring(e.to_string()))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .pragma("secure_delete", "ON")
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(StoreError::unavailable)?;
        sqlx::raw_sql(SQLITE_SCHEMA)
            .execute(&pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(Self(Pools::Sqlite(pool)))
    }

    /// The keyring of a PostgreSQL store: its `key_ring` table (migration 0003).
    pub fn in_postgres(store: &Store) -> Result<Self, StoreError> {
        match &*store.0 {
            Backend::Postgres { pool, .. } => Ok(Self(Pools::Postgres(pool.clone()))),
            Backend::Sqlite { .. } => Err(StoreError::Keyring(
                "a SQLite store keeps its keyring in keyring.db; use Keyring::open_sqlite".into(),
            )),
        }
    }

    /// Every version of `scope`'s key, newest first.
    pub async fn versions(&self, scope: KeyScope) -> Result<Vec<KeyRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM key_ring WHERE scope = $1 ORDER BY version DESC");
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(scope.to_string())
            .fetch_all(p)
            .await)
        .map_err(StoreError::from_sqlx)?;
        rows.into_iter().map(key_row).collect()
    }

    /// Every stored key of every scope.
    pub async fn all(&self) -> Result<Vec<KeyRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM key_ring ORDER BY scope, version");
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(p)
            .await)
        .map_err(StoreError::from_sqlx)?;
        rows.into_iter().map(key_row).collect()
    }

    /// Stores a new key version unless that version exists or the scope was destroyed;
    /// `false` when nothing was stored (a concurrent writer won, or the scope is erased).
    pub async fn insert(
        &self,
        scope: KeyScope,
        wrapped: &WrappedKey,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = "INSERT INTO key_ring (scope, version, kek_id, wrapped, created_at) \
                   SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS \
                   (SELECT 1 FROM key_ring_destroyed WHERE scope = $1) \
                   ON CONFLICT (scope, version) DO NOTHING";
        let n = on_pool!(self, p => sqlx::query(sql)
            .bind(scope.to_string())
            .bind(i64::from(wrapped.dek_version))
            .bind(&wrapped.kek_id)
            .bind(&wrapped.bytes)
            .bind(db_time(now))
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(StoreError::from_sqlx)?;
        Ok(n == 1)
    }

    /// Replaces a key's wrapping (master key rotation) if it is still wrapped by `old_kek`;
    /// `false` when another run already rewrapped it.
    pub async fn rewrap(
        &self,
        scope: KeyScope,
        old_kek: &str,
        wrapped: &WrappedKey,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE key_ring SET kek_id = $1, wrapped = $2 \
                   WHERE scope = $3 AND version = $4 AND kek_id = $5";
        let n = on_pool!(self, p => sqlx::query(sql)
            .bind(&wrapped.kek_id)
            .bind(&wrapped.bytes)
            .bind(scope.to_string())
            .bind(i64::from(wrapped.dek_version))
            .bind(old_kek)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(StoreError::from_sqlx)?;
        Ok(n == 1)
    }

    /// Deletes the versions of `scope` older than `keep_from` (after a data key rotation has
    /// re-encrypted everything); returns how many were deleted.
    pub async fn retire_below(&self, scope: KeyScope, keep_from: u32) -> Result<u64, StoreError> {
        let n = on_pool!(self, p => sqlx::query("DELETE FROM key_ring WHERE scope = $1 AND version < $2")
            .bind(scope.to_string())
            .bind(i64::from(keep_from))
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(StoreError::from_sqlx)?;
        self.flush().await?;
        Ok(n)
    }

    /// Erases every version of `scope`'s key and records the scope as destroyed, in one
    /// transaction; afterwards nothing sealed under it can ever be opened again.
    pub async fn destroy(&self, scope: KeyScope, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let e = StoreError::from_sqlx;
        let n = on_pool!(self, p => {
            let mut tx = p.begin().await.map_err(e)?;
            let n = sqlx::query("DELETE FROM key_ring WHERE scope = $1")
                .bind(scope.to_string())
                .execute(&mut *tx)
                .await
                .map_err(e)?
                .rows_affected();
            sqlx::query("INSERT INTO key_ring_destroyed (scope, destroyed_at) VALUES ($1, $2) ON CONFLICT (scope) DO NOTHING")
                .bind(scope.to_string())
                .bind(db_time(now))
                .execute(&mut *tx)
                .await
                .map_err(e)?;
            tx.commit().await.map_err(e)?;
            n
        });
        self.flush().await?;
        Ok(n)
    }

    /// Whether `scope` was destroyed.
    pub async fn is_destroyed(&self, scope: KeyScope) -> Result<bool, StoreError> {
        let found: Option<(String,)> = on_pool!(self, p => sqlx::query_as("SELECT scope FROM key_ring_destroyed WHERE scope = $1")
            .bind(scope.to_string())
            .fetch_optional(p)
            .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(found.is_some())
    }

    /// On SQLite, moves the write-ahead log into the file and truncates it, so deleted keys
    /// (already zeroed in the file by `secure_delete`) leave no old page behind in the log.
    async fn flush(&self) -> Result<(), StoreError> {
        if let Pools::Sqlite(p) = &self.0 {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(p)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
        Ok(())
    }

    /// Closes the keyring's own connections (SQLite; a no-op on PostgreSQL, whose pool is the
    /// store's).
    pub async fn close(&self) {
        if let Pools::Sqlite(p) = &self.0 {
            p.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use rampart_core::OrgId;

    use super::*;

    #[test]
    fn the_keyring_sits_beside_the_database() {
        assert_eq!(
            keyring_path_for(Path::new("/srv/rampart/rampart.db")),
            PathBuf::from("/srv/rampart/keyring.db")
        );
        assert_eq!(
            keyring_path_for(Path::new("rampart.db")),
            PathBuf::from("keyring.db")
        );
    }

    #[tokio::test]
    async fn a_destroyed_scope_gets_no_new_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.db");
        let ring = Keyring::open_sqlite(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let scope = KeyScope::Org(OrgId::generate());
        let w = WrappedKey {
            kek_id: "k1".into(),
            dek_version: 1,
            bytes: vec![1; 61],
        };
        assert!(ring.insert(scope, &w, now).await.unwrap());
        assert!(!ring.insert(scope, &w, now).await.unwrap());
        assert_eq!(ring.versions(scope).await.unwrap().len(), 1);
        assert_eq!(ring.destroy(scope, now).await.unwrap(), 1);
        assert!(ring.is_destroyed(scope).await.unwrap());
        assert!(!ring.insert(scope, &w, now).await.unwrap());
        assert!(ring.versions(scope).await.unwrap().is_empty());
        ring.close().await;
    }
}
