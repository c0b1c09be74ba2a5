//! The bulk seeder for scenario 3: writes contacts straight into a migrated database (after
//! `rampart migrate`, before `serve`), because creating a million of them over HTTP would take
//! longer than the rest of the suite. The rows are what Rampart itself would write for the
//! same contacts: `ct_` + lower-case ULID ids in time order, times as sqlx encodes a
//! `DateTime<Utc>` truncated to microseconds (the same encoding `rampart-store` binds), an
//! `email_lower` beside the email, E.164 phones, one or two tags per contact and
//! `custom_fields` left to its default `'{}'`.
//!
//! Layout: the measured workspace holds `big` contacts; each of the other workspaces (up to
//! 100) holds `big / 100`, and their rows are interleaved with the big one's in id order, as
//! tenants writing at the same time would leave them.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, PgPool, QueryBuilder};

use crate::progress::progress;
use crate::stats::mix;

/// Rows per INSERT statement (9 parameters each: well inside both backends' limits).
const ROWS_PER_STATEMENT: usize = 500;
/// Rows per transaction.
const ROWS_PER_TRANSACTION: usize = 20_000;
/// 2026-01-01T00:00:00Z: seeded contacts are one millisecond apart from here.
const BASE_SECONDS: i64 = 1_767_225_600;
const TAGS: [&str; 5] = ["lead", "customer", "vip", "newsletter", "churned"];
const STATES: [&str; 8] = ["CA", "NY", "TX", "WA", "FL", "IL", "MA", "CO"];

/// What to seed.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Contacts in the measured workspace.
    pub big: u64,
    /// Workspaces in all, the measured one included (2 to 101).
    pub workspaces: u64,
}

impl Spec {
    fn others(&self) -> u64 {
        self.workspaces.saturating_sub(1).min(100)
    }

    /// Contacts in all workspaces together.
    pub fn total(&self) -> u64 {
        let others = self.others();
        self.big + (0..self.big).filter(|i| i % 100 < others).count() as u64
    }
}

/// What the seeder wrote, and how long it took.
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    pub contacts: u64,
    pub tags: u64,
    pub elapsed: Duration,
}

struct Row {
    id: String,
    ws: usize,
    name: String,
    email: String,
    phone: String,
    state: &'static str,
    at: DateTime<Utc>,
    tags: Vec<&'static str>,
}

/// The rows in insertion (= id) order: `(workspace index, sequence in that workspace)`, with
/// workspace 0 the measured one.
fn layout(spec: Spec) -> impl Iterator<Item = (usize, u64)> {
    let others = spec.others();
    (0..spec.big).flat_map(move |i| {
        let r = i % 100;
        let other = (r < others).then_some((r as usize + 1, i / 100));
        std::iter::once((0, i)).chain(other)
    })
}

fn row(global: u64, ws: usize, seq: u64) -> Result<Row> {
    let ms = u64::try_from(BASE_SECONDS)? * 1000 + global;
    let random = (u128::from(mix(global)) << 16) ^ u128::from(mix(!global));
    let id = format!(
        "ct_{}",
        ulid::Ulid::from_parts(ms, random)
            .to_string()
            .to_ascii_lowercase()
    );
    let micros = i64::try_from(ms)? * 1000 + i64::try_from(mix(global) % 1000)?;
    let Some(at) = DateTime::<Utc>::from_timestamp_micros(micros) else {
        bail!("time out of range");
    };
    let domain = if ws == 0 {
        "big.example.com".to_owned()
    } else {
        format!("ws{ws}.example.com")
    };
    let idx = usize::try_from(global)?;
    let mut tags = vec![TAGS[idx % TAGS.len()]];
    let second = TAGS[(idx / TAGS.len()) % TAGS.len()];
    if idx % 3 == 0 && second != tags[0] {
        tags.push(second);
        tags.sort_unstable();
    }
    Ok(Row {
        id,
        ws,
        name: format!("Contact {seq}"),
        email: format!("c{seq}@{domain}"),
        phone: format!("+1415{:07}", mix(global ^ 0x5eed) % 10_000_000),
        state: STATES[idx % STATES.len()],
        at,
        tags,
    })
}

/// Ids for the extra workspaces (the measured one already exists: the CLI made it).
fn workspace_ids(spec: Spec, big_ws: &str) -> Vec<String> {
    let mut ids = vec![big_ws.to_owned()];
    for _ in 0..spec.others() {
        ids.push(format!(
            "ws_{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        ));
    }
    ids
}

fn base_time() -> Result<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(BASE_SECONDS, 0).context("base time")
}

/// Inserts one batch of contacts and their tags through `$conn` on backend `$db`.
macro_rules! insert_batch {
    ($db:ty, $conn:expr, $batch:expr, $ws_ids:expr) => {{
        let mut contacts = QueryBuilder::<$db>::new(
            "INSERT INTO contacts (id, workspace_id, name, email, email_lower, phone, us_state, created_at, updated_at) ",
        );
        contacts.push_values($batch.iter(), |mut b, r: &Row| {
            b.push_bind(r.id.clone())
                .push_bind($ws_ids[r.ws].clone())
                .push_bind(r.name.clone())
                .push_bind(r.email.clone())
                .push_bind(r.email.to_lowercase())
                .push_bind(r.phone.clone())
                .push_bind(r.state)
                .push_bind(r.at)
                .push_bind(r.at);
        });
        contacts.build().execute(&mut *$conn).await?;
        let pairs: Vec<(&Row, &str)> = $batch
            .iter()
            .flat_map(|r| r.tags.iter().map(move |t| (r, *t)))
            .collect();
        let mut tags = QueryBuilder::<$db>::new("INSERT INTO contact_tags (workspace_id, contact_id, tag) ");
        tags.push_values(pairs.iter(), |mut b, (r, t)| {
            b.push_bind($ws_ids[r.ws].clone()).push_bind(r.id.clone()).push_bind(*t);
        });
        tags.build().execute(&mut *$conn).await?;
        pairs.len() as u64
    }};
}

/// Seeds every row, in transactions of [`ROWS_PER_TRANSACTION`], on backend `$db` through
/// `$pool`, and evaluates to `Result<Seeded>`.
macro_rules! seed_all {
    ($db:ty, $pool:expr, $spec:expr, $org:expr, $big_ws:expr) => {{
        let started = Instant::now();
        let ws_ids = workspace_ids($spec, $big_ws);
        let now = base_time()?;
        let mut tx = $pool.begin().await?;
        for (i, ws) in ws_ids.iter().enumerate().skip(1) {
            sqlx::query(
                "INSERT INTO workspaces (id, org_id, name, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(ws.clone())
            .bind($org.to_owned())
            .bind(format!("Bench tenant {i}"))
            .bind(now)
            .execute(&mut *tx)
            .await
            .context("inserting the other workspaces")?;
        }
        tx.commit().await?;
        let total = $spec.total();
        let (mut contacts, mut tags, mut in_tx) = (0u64, 0u64, 0usize);
        let mut batch: Vec<Row> = Vec::with_capacity(ROWS_PER_STATEMENT);
        let mut tx = $pool.begin().await?;
        for (global, (ws, seq)) in layout($spec).enumerate() {
            batch.push(row(global as u64, ws, seq)?);
            if batch.len() == ROWS_PER_STATEMENT {
                tags += insert_batch!($db, tx, batch, ws_ids);
                contacts += batch.len() as u64;
                in_tx += batch.len();
                batch.clear();
                if in_tx >= ROWS_PER_TRANSACTION {
                    tx.commit().await?;
                    tx = $pool.begin().await?;
                    in_tx = 0;
                }
                if contacts % 100_000 == 0 {
                    progress(format_args!("  seeded {contacts} of {total} contacts"));
                }
            }
        }
        if !batch.is_empty() {
            tags += insert_batch!($db, tx, batch, ws_ids);
            contacts += batch.len() as u64;
        }
        tx.commit().await?;
        Ok::<Seeded, anyhow::Error>(Seeded {
            contacts,
            tags,
            elapsed: started.elapsed(),
        })
    }};
}

/// Seeds a migrated SQLite database that no server has open.
pub async fn sqlite(path: &Path, spec: Spec, org: &str, big_ws: &str) -> Result<Seeded> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        // Test data: a crash during seeding just means running the bench again.
        .synchronous(SqliteSynchronous::Off)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let seeded = seed_all!(sqlx::Sqlite, pool, spec, org, big_ws)?;
    // Fold the WAL into the database file so the server starts as it would after a restart.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(seeded)
}

/// Seeds a migrated PostgreSQL database through a superuser pool (which bypasses RLS), then
/// runs `ANALYZE` as autovacuum would soon after a load this size.
pub async fn postgres(pool: &PgPool, spec: Spec, org: &str, big_ws: &str) -> Result<Seeded> {
    let seeded = seed_all!(sqlx::Postgres, pool, spec, org, big_ws)?;
    for table in ["workspaces", "contacts", "contact_tags"] {
        sqlx::raw_sql(AssertSqlSafe(format!("ANALYZE {table}")))
            .execute(pool)
            .await?;
    }
    Ok(seeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_interleaves_the_other_workspaces() {
        let spec = Spec {
            big: 1000,
            workspaces: 100,
        };
        let rows: Vec<(usize, u64)> = layout(spec).collect();
        assert_eq!(rows.len() as u64, spec.total());
        assert_eq!(rows.iter().filter(|(ws, _)| *ws == 0).count(), 1000);
        assert_eq!(rows.iter().filter(|(ws, _)| *ws == 7).count(), 10);
        assert_eq!(&rows[..3], &[(0, 0), (1, 0), (0, 1)]);
    }

    #[test]
    fn ids_are_prefixed_lower_case_ulids_in_order() {
        let a = row(1, 0, 1).unwrap();
        let b = row(2, 0, 2).unwrap();
        assert!(a.id.starts_with("ct_") && a.id.len() == 29);
        assert_eq!(a.id, a.id.to_ascii_lowercase());
        assert!(a.id < b.id);
        assert!(a.at < b.at);
        assert!(a.phone.starts_with("+1415") && a.phone.len() == 12);
    }
}
