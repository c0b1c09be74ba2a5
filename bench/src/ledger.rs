//! Scenario 5's seeder: chained audit events written straight into an organization's ledger
//! (after `rampart migrate` and the CLI's own first events, before `rampart audit verify`).
//!
//! The encoding is this crate's own implementation of the published specification,
//! `docs/audit-chain.md` (`rampart.audit.v1`: length-prefixed fields, `SHA-256(prev ‖ bytes)`),
//! not a call into Rampart's code: a verify that passes over these events is also a check that
//! the specification and Rampart's implementation agree.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, PgPool, QueryBuilder};

use crate::progress::progress;
use crate::stats::mix;

const VERSION_TAG: &str = "rampart.audit.v1";
/// 19 parameters a row: 500 rows stay inside both backends' parameter limits.
const ROWS_PER_STATEMENT: usize = 500;
const ROWS_PER_TRANSACTION: usize = 20_000;
/// 2026-02-01T00:00:00Z: seeded events are one millisecond apart from here.
const BASE_SECONDS: i64 = 1_769_904_000;

/// One event, with the fields in the specification's order.
struct Event {
    seq: i64,
    at: DateTime<Utc>,
    target: String,
    args: String,
    idempotency_key: String,
    request_id: String,
    prev_hash: String,
    hash: String,
}

/// Where the events go: the organization and its workspace, and the actor that made them.
pub struct Ledger<'a> {
    pub org: &'a str,
    pub workspace: &'a str,
    pub actor: &'a str,
}

impl Ledger<'_> {
    fn path(&self) -> String {
        format!("/v1/workspaces/{}/contacts", self.workspace)
    }
}

fn field(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
        Some(v) => {
            let len = u32::try_from(v.len()).unwrap_or(u32::MAX - 1);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
    }
}

const METHOD: &str = "POST";
const ACTION: &str = "contact.create";
const AUTH_METHOD: &str = "api_key";
const STATUS: u16 = 201;
const DURATION_MS: i64 = 2;
const CLIENT_IP: &str = "127.0.0.0";

/// `SHA-256(prev ‖ canonical bytes)`, the canonical bytes being the version tag then fields
/// 1 to 17 of `docs/audit-chain.md` in order, each length-prefixed, `None` for an absent one.
fn link(prev: &[u8; 32], fields: &[Option<&str>; 17]) -> [u8; 32] {
    let mut bytes = Vec::with_capacity(512);
    field(&mut bytes, Some(VERSION_TAG));
    for f in fields {
        field(&mut bytes, *f);
    }
    let mut h = Sha256::new();
    h.update(prev);
    h.update(&bytes);
    h.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        bail!("a chain hash is not 64 hex digits: {text}");
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .with_context(|| format!("a chain hash is not hex: {text}"))?;
    }
    Ok(out)
}

/// Builds the next event of the chain after `prev`.
fn next(l: &Ledger<'_>, path: &str, seq: i64, prev: &[u8; 32]) -> Result<(Event, [u8; 32])> {
    let n = u64::try_from(seq)?;
    let micros = BASE_SECONDS * 1_000_000 + seq * 1000 + i64::try_from(mix(n) % 1000)?;
    let at = DateTime::<Utc>::from_timestamp_micros(micros).context("time out of range")?;
    let id = |prefix: &str, salt: u64| {
        let body = ulid::Ulid::from_parts(
            u64::try_from(micros / 1000).unwrap_or(0),
            (u128::from(mix(n ^ salt)) << 16) ^ u128::from(mix(!n ^ salt)),
        );
        format!("{prefix}_{}", body.to_string().to_ascii_lowercase())
    };
    let mut event = Event {
        seq,
        at,
        target: id("ct", 1),
        args: format!(
            r#"{{"email":"sha256:{:016x}","name":"sha256:{:016x}","phone":"sha256:{:016x}","tags":["bench","lead"],"us_state":"CA"}}"#,
            mix(n ^ 2),
            mix(n ^ 3),
            mix(n ^ 4)
        ),
        idempotency_key: format!("bench-audit-{seq}"),
        request_id: id("req", 5),
        prev_hash: hex(prev),
        hash: String::new(),
    };
    let (seq_text, at_text) = (
        seq.to_string(),
        at.to_rfc3339_opts(SecondsFormat::Micros, true),
    );
    let (status, duration) = (STATUS.to_string(), DURATION_MS.to_string());
    let linked = link(
        prev,
        &[
            Some(l.org),
            Some(&seq_text),
            Some(l.workspace),
            Some(&at_text),
            Some(l.actor),
            Some(AUTH_METHOD),
            Some(METHOD),
            Some(path),
            Some(ACTION),
            Some(&event.target),
            Some(&event.args),
            Some(&status),
            None,
            Some(&duration),
            Some(&event.idempotency_key),
            Some(&event.request_id),
            Some(CLIENT_IP),
        ],
    );
    event.hash = hex(&linked);
    Ok((event, linked))
}

/// Appends `$batch` through `$conn` on backend `$db`.
macro_rules! insert_events {
    ($db:ty, $conn:expr, $batch:expr, $l:expr, $path:expr) => {{
        let mut q = QueryBuilder::<$db>::new(
            "INSERT INTO audit_events (org_id, seq, workspace_id, at, actor, auth_method, method, path, action, target, \
             args, status, error_code, duration_ms, idempotency_key, request_id, client_ip, prev_hash, hash) ",
        );
        q.push_values($batch.iter(), |mut b, e: &Event| {
            b.push_bind($l.org.to_owned())
                .push_bind(e.seq)
                .push_bind($l.workspace.to_owned())
                .push_bind(e.at)
                .push_bind($l.actor.to_owned())
                .push_bind(AUTH_METHOD)
                .push_bind(METHOD)
                .push_bind($path.clone())
                .push_bind(ACTION)
                .push_bind(e.target.clone())
                .push_bind(e.args.clone())
                .push_bind(i32::from(STATUS))
                .push_bind(None::<String>)
                .push_bind(DURATION_MS)
                .push_bind(e.idempotency_key.clone())
                .push_bind(e.request_id.clone())
                .push_bind(CLIENT_IP)
                .push_bind(e.prev_hash.clone())
                .push_bind(e.hash.clone());
        });
        q.build().execute(&mut *$conn).await?;
    }};
}

/// Continues the organization's chain from its recorded head with `count` events, then moves
/// the head; evaluates to `Result<Duration>`.
macro_rules! seed_events {
    ($db:ty, $pool:expr, $l:expr, $count:expr) => {{
        let started = Instant::now();
        let path = $l.path();
        let (head_seq, head_hash): (i64, String) =
            sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE org_id = $1")
                .bind($l.org.to_owned())
                .fetch_one(&$pool)
                .await
                .context("reading the ledger's head (was the organization made by the CLI?)")?;
        let mut prev = unhex(&head_hash)?;
        let mut batch: Vec<Event> = Vec::with_capacity(ROWS_PER_STATEMENT);
        let mut tx = $pool.begin().await?;
        let mut in_tx = 0usize;
        let last = head_seq + i64::try_from($count)?;
        for seq in head_seq + 1..=last {
            let (event, link) = next(&$l, &path, seq, &prev)?;
            prev = link;
            batch.push(event);
            if batch.len() == ROWS_PER_STATEMENT {
                insert_events!($db, tx, batch, $l, path);
                in_tx += batch.len();
                batch.clear();
                if in_tx >= ROWS_PER_TRANSACTION {
                    tx.commit().await?;
                    tx = $pool.begin().await?;
                    in_tx = 0;
                }
                if (seq - head_seq) % 200_000 == 0 {
                    progress(format_args!(
                        "  appended {} of {} events",
                        seq - head_seq,
                        $count
                    ));
                }
            }
        }
        if !batch.is_empty() {
            insert_events!($db, tx, batch, $l, path);
        }
        sqlx::query("UPDATE audit_heads SET seq = $1, hash = $2 WHERE org_id = $3")
            .bind(last)
            .bind(hex(&prev))
            .bind($l.org.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok::<Duration, anyhow::Error>(started.elapsed())
    }};
}

/// Seeds a migrated SQLite database that no server has open.
pub async fn sqlite(path: &std::path::Path, ledger: &Ledger<'_>, count: u64) -> Result<Duration> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .synchronous(SqliteSynchronous::Off)
                .foreign_keys(true),
        )
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let took = seed_events!(sqlx::Sqlite, pool, ledger, count)?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(took)
}

/// Seeds through a superuser pool (which bypasses row-level security).
pub async fn postgres(pool: &PgPool, ledger: &Ledger<'_>, count: u64) -> Result<Duration> {
    // The head is moved once at the end: the trigger that advances it per event would make
    // each of a transaction's 20,000 events walk the head row's versions made before it.
    let trigger =
        |on: &str| format!("ALTER TABLE audit_events {on} TRIGGER audit_events_advance_head");
    sqlx::raw_sql(AssertSqlSafe(trigger("DISABLE")))
        .execute(pool)
        .await?;
    let took = seed_events!(sqlx::Postgres, pool.clone(), ledger, count);
    sqlx::raw_sql(AssertSqlSafe(trigger("ENABLE")))
        .execute(pool)
        .await?;
    let took = took?;
    sqlx::raw_sql("ANALYZE audit_events").execute(pool).await?;
    Ok(took)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The known answer of `crates/core/src/audit.rs`, computed there by the independent
    /// verifier of `docs/audit-chain.md`: if the format changes, this fails before the suite
    /// seeds a chain Rampart would reject.
    #[test]
    fn encodes_the_specifications_known_answer() {
        let link = link(
            &[0u8; 32],
            &[
                Some("org_01jdv0000000000000000000aa"),
                Some("1"),
                None,
                Some("2026-11-23T10:00:00.500000Z"),
                Some("operator"),
                Some("cli"),
                Some("CLI"),
                Some("rampart admin create-org"),
                Some("org.create"),
                None,
                Some("{}"),
                Some("200"),
                None,
                Some("3"),
                None,
                Some("req_x"),
                None,
            ],
        );
        assert_eq!(
            hex(&link),
            "59a2fc83a99c660152df3e8484ec631185b295cd511264a163ba3bf9e4af4a7f"
        );
    }

    #[test]
    fn each_event_links_to_the_one_before() {
        let l = Ledger {
            org: "org_01jdv0000000000000000000aa",
            workspace: "ws_01jdv0000000000000000000ab",
            actor: "key_01jdv0000000000000000000ac",
        };
        let path = l.path();
        let (a, link_a) = next(&l, &path, 1, &[0u8; 32]).unwrap();
        let (b, _) = next(&l, &path, 2, &link_a).unwrap();
        assert_eq!(a.prev_hash, "0".repeat(64));
        assert_eq!(b.prev_hash, a.hash);
        assert_eq!(unhex(&a.hash).unwrap(), link_a);
    }
}
