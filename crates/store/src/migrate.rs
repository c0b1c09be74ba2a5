//! Plain-SQL migrations, one folder per backend, embedded in the binary and applied in order.
//! Versions 1 to 6 are the same change on both backends, under the same names; from 7 on each
//! backend numbers its own (PostgreSQL's 7 seals the audit chain inside COMMIT and its 8 lets
//! only that seal write the chain; SQLite's 7 makes the database refuse an event that does not
//! follow its chain head). From 9 on, a change has the same number and file name on both (9:
//! identity hardening; 10: the job queue; SQLite has no 8). Each is recorded with a SHA-256 of
//! its text: a migration edited after it ran, or a database newer than the binary, stops
//! start-up instead of drifting.

use sha2::{Digest, Sha256};
use sqlx::{PgPool, SqlitePool};

use crate::StoreError;

/// (version, name, SQL) for SQLite.
pub const MIGRATIONS_SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "spine",
        include_str!("../migrations/sqlite/0001_spine.sql"),
    ),
    (
        2,
        "audit",
        include_str!("../migrations/sqlite/0002_audit.sql"),
    ),
    (
        3,
        "keys",
        include_str!("../migrations/sqlite/0003_keys.sql"),
    ),
    (
        4,
        "identity",
        include_str!("../migrations/sqlite/0004_identity.sql"),
    ),
    (
        5,
        "audit_append",
        include_str!("../migrations/sqlite/0005_audit_append.sql"),
    ),
    (
        6,
        "audit_head_once",
        include_str!("../migrations/sqlite/0006_audit_head_once.sql"),
    ),
    (
        7,
        "audit_follow_head",
        include_str!("../migrations/sqlite/0007_audit_follow_head.sql"),
    ),
    (
        9,
        "identity_hardening",
        include_str!("../migrations/sqlite/0009_identity_hardening.sql"),
    ),
    (
        10,
        "jobs",
        include_str!("../migrations/sqlite/0010_jobs.sql"),
    ),
];

/// (version, name, SQL) for PostgreSQL.
pub const MIGRATIONS_POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "spine",
        include_str!("../migrations/postgres/0001_spine.sql"),
    ),
    (
        2,
        "audit",
        include_str!("../migrations/postgres/0002_audit.sql"),
    ),
    (
        3,
        "keys",
        include_str!("../migrations/postgres/0003_keys.sql"),
    ),
    (
        4,
        "identity",
        include_str!("../migrations/postgres/0004_identity.sql"),
    ),
    (
        5,
        "audit_append",
        include_str!("../migrations/postgres/0005_audit_append.sql"),
    ),
    (
        6,
        "audit_head_once",
        include_str!("../migrations/postgres/0006_audit_head_once.sql"),
    ),
    (
        7,
        "audit_seal_at_commit",
        include_str!("../migrations/postgres/0007_audit_seal_at_commit.sql"),
    ),
    (
        8,
        "audit_sealed_by_owner",
        include_str!("../migrations/postgres/0008_audit_sealed_by_owner.sql"),
    ),
    (
        9,
        "identity_hardening",
        include_str!("../migrations/postgres/0009_identity_hardening.sql"),
    ),
    (
        10,
        "jobs",
        include_str!("../migrations/postgres/0010_jobs.sql"),
    ),
];

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

pub(crate) fn check_known(
    applied: &[(i64, String)],
    known: &[(i64, &str, &str)],
) -> Result<(), StoreError> {
    for (version, sum) in applied {
        match known.iter().find(|(v, _, _)| v == version) {
            None => return Err(StoreError::MigrationUnknown(*version)),
            Some((_, _, sql)) if checksum(sql) != *sum => {
                return Err(StoreError::MigrationChanged(*version));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

pub(crate) async fn sqlite(pool: &SqlitePool) -> Result<usize, StoreError> {
    let e = StoreError::from_sqlx;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(e)?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS rampart_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .execute(&mut *tx)
    .await
    .map_err(e)?;
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, checksum FROM rampart_migrations")
            .fetch_all(&mut *tx)
            .await
            .map_err(e)?;
    check_known(&applied, MIGRATIONS_SQLITE)?;
    let mut count = 0;
    for (version, name, sql) in MIGRATIONS_SQLITE {
        if applied.iter().any(|(v, _)| v == version) {
            continue;
        }
        sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(e)?;
        sqlx::query(
            "INSERT INTO rampart_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
        )
        .bind(version)
        .bind(name)
        .bind(checksum(sql))
            .execute(&mut *tx)
            .await
            .map_err(e)?;
        count += 1;
    }
    tx.commit().await.map_err(e)?;
    Ok(count)
}

/// A role name safe to splice into `GRANT … TO "name"` (it cannot be a bind parameter).
fn checked_role(role: &str) -> Result<&str, StoreError> {
    let ok = !role.is_empty()
        && role.len() <= 63
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(role)
    } else {
        Err(StoreError::BadUrl)
    }
}

pub(crate) async fn postgres(pool: &PgPool, grant_to: Option<&str>) -> Result<usize, StoreError> {
    let e = StoreError::from_sqlx;
    let mut tx = pool.begin().await.map_err(e)?;
    // Several nodes may start at once; one migrates, the others wait and find nothing to do.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('rampart.migrations'))")
        .execute(&mut *tx)
        .await
        .map_err(e)?;
    // The application role may not create tables; when the schema is current it needs none.
    let (exists,): (bool,) = sqlx::query_as("SELECT to_regclass('rampart_migrations') IS NOT NULL")
        .fetch_one(&mut *tx)
        .await
        .map_err(e)?;
    if !exists {
        sqlx::query(
            "CREATE TABLE rampart_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(e)?;
    }
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, checksum FROM rampart_migrations")
            .fetch_all(&mut *tx)
            .await
            .map_err(e)?;
    check_known(&applied, MIGRATIONS_POSTGRES)?;
    let mut count = 0;
    for (version, name, sql) in MIGRATIONS_POSTGRES {
        if applied.iter().any(|(v, _)| v == version) {
            continue;
        }
        sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(e)?;
        sqlx::query("INSERT INTO rampart_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, now())")
            .bind(version)
            .bind(name)
            .bind(checksum(sql))
            .execute(&mut *tx)
            .await
            .map_err(e)?;
        count += 1;
    }
    if let Some(role) = grant_to {
        let role = checked_role(role)?;
        // Data privileges on every table, less what only the owner may do: run migrations, and
        // write the audit chain, which the seal does as the owner (PostgreSQL migration 8).
        let grants = format!(
            "GRANT USAGE ON SCHEMA public TO \"{role}\";
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \"{role}\";
             REVOKE INSERT, UPDATE, DELETE ON rampart_migrations FROM \"{role}\";
             REVOKE INSERT, UPDATE ON audit_events FROM \"{role}\";
             REVOKE INSERT, UPDATE, DELETE ON audit_heads FROM \"{role}\";
             REVOKE UPDATE, DELETE ON audit_pending, audit_checkpoints FROM \"{role}\";
             GRANT EXECUTE ON FUNCTION rampart_audit_open_chain(text) TO \"{role}\";"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(grants))
            .execute(&mut *tx)
            .await
            .map_err(e)?;
    }
    tx.commit().await.map_err(e)?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use crate::{PoolSettings, Store, StoreError};

    #[tokio::test]
    async fn migrations_apply_once_and_refuse_drift() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let store = Store::open_sqlite(&path, PoolSettings::default())
            .await
            .unwrap();
        assert_eq!(
            store.migrate().await.unwrap(),
            super::MIGRATIONS_SQLITE.len()
        );
        assert_eq!(store.migrate().await.unwrap(), 0, "idempotent");
        store.close().await;

        let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE rampart_migrations SET checksum = 'x' WHERE version = 1")
            .execute(&raw)
            .await
            .unwrap();
        let store = Store::open_sqlite(&path, PoolSettings::default())
            .await
            .unwrap();
        assert!(matches!(
            store.migrate().await,
            Err(StoreError::MigrationChanged(1))
        ));
        store.close().await;

        sqlx::query("UPDATE rampart_migrations SET checksum = $1 WHERE version = 1")
            .bind(super::checksum(super::MIGRATIONS_SQLITE[0].2))
            .execute(&raw)
            .await
            .unwrap();
        sqlx::query("INSERT INTO rampart_migrations VALUES (999, 'future', 'x', '2030-01-01')")
            .execute(&raw)
            .await
            .unwrap();
        let store = Store::open_sqlite(&path, PoolSettings::default())
            .await
            .unwrap();
        assert!(matches!(
            store.migrate().await,
            Err(StoreError::MigrationUnknown(999))
        ));
    }
}
