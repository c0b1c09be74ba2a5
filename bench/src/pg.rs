//! A fresh PostgreSQL database per phase, set up as production runs it and exactly as the
//! integration tests do (`crates/server/tests/common/mod.rs`): the schema is owned by a
//! migration role, and `rampart serve` connects as an application role that is neither
//! superuser nor `BYPASSRLS`, so row-level security applies to every request measured.
//!
//! `RAMPART_BENCH_POSTGRES_URL` names a superuser connection; it is used only to create the
//! roles and the database, to bulk-seed scenario 3 (a superuser bypasses RLS, which is what a
//! seeder wants) and to drop the database afterwards.

use std::sync::Mutex;

use anyhow::{Context, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};

pub const OWNER_ROLE: &str = "rampart_bench_owner";
pub const APP_ROLE: &str = "rampart_bench_app";

/// The databases this run has created and not yet dropped, as (superuser URL, name): what
/// [`drop_leftovers`] removes when the bench is stopped by a signal mid-phase.
static LIVE: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<(String, String)>> {
    // A panic while the list was held leaves it whole (a push or a retain), so poison is moot.
    LIVE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A database created for one phase of the suite.
pub struct PgDb {
    admin_url: String,
    pub name: String,
    pub owner_url: String,
    pub app_url: String,
}

async fn admin_pool(admin_url: &str) -> Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(1)
        .connect(admin_url)
        .await
        .context("RAMPART_BENCH_POSTGRES_URL is set but PostgreSQL is unreachable")
}

fn url_for(admin_url: &str, user: &str, password: &str, db: &str) -> Result<String> {
    let opts: PgConnectOptions = admin_url
        .parse()
        .context("RAMPART_BENCH_POSTGRES_URL is not a PostgreSQL URL")?;
    let host = opts.get_host();
    let port = opts.get_port();
    Ok(if host.starts_with('/') {
        format!("postgres://{user}:{password}@localhost:{port}/{db}?host={host}")
    } else {
        format!("postgres://{user}:{password}@{host}:{port}/{db}")
    })
}

impl PgDb {
    /// Creates (or re-keys) the two roles and a new database owned by the owner role.
    pub async fn create(admin_url: &str) -> Result<Self> {
        let pool = admin_pool(admin_url).await?;
        // A fresh password per run: the roles work whether the server trusts loopback or not.
        let password = ulid::Ulid::new().to_string().to_ascii_lowercase();
        for role in [OWNER_ROLE, APP_ROLE] {
            let create = format!(
                "DO $$ BEGIN CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE; \
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            );
            sqlx::raw_sql(AssertSqlSafe(create)).execute(&pool).await?;
            let alter =
                format!("ALTER ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '{password}'");
            sqlx::raw_sql(AssertSqlSafe(alter)).execute(&pool).await?;
        }
        let name = format!(
            "rampart_bench_{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        );
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE DATABASE {name} OWNER {OWNER_ROLE}"
        )))
        .execute(&pool)
        .await
        .context("creating the benchmark database")?;
        pool.close().await;
        live().push((admin_url.to_owned(), name.clone()));
        Ok(Self {
            admin_url: admin_url.to_owned(),
            owner_url: url_for(admin_url, OWNER_ROLE, &password, &name)?,
            app_url: url_for(admin_url, APP_ROLE, &password, &name)?,
            name,
        })
    }

    /// A superuser pool on this database (for the bulk seeder).
    pub async fn superuser_pool(&self) -> Result<PgPool> {
        superuser_pool_on(&self.admin_url, &self.name).await
    }

    /// A superuser URL for this database (the baseline server's: no row-level security).
    pub fn superuser_url(&self) -> Result<String> {
        let mut url = reqwest::Url::parse(&self.admin_url)
            .context("RAMPART_BENCH_POSTGRES_URL is not a URL")?;
        url.set_path(&self.name);
        Ok(url.into())
    }

    /// Drops the database (ending any connection still open to it).
    pub async fn drop_database(self) -> Result<()> {
        drop_named(&self.admin_url, &self.name).await
    }
}

/// A one-connection superuser pool on database `name` of the server `admin_url` names.
async fn superuser_pool_on(admin_url: &str, name: &str) -> Result<PgPool> {
    let opts: PgConnectOptions = admin_url.parse()?;
    Ok(PgPoolOptions::new()
        .max_connections(1)
        .connect_with(opts.database(name))
        .await?)
}

async fn drop_named(admin_url: &str, name: &str) -> Result<()> {
    let pool = admin_pool(admin_url).await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&pool)
    .await?;
    pool.close().await;
    live().retain(|(_, n)| n != name);
    Ok(())
}

/// Drops every database this run created and has not dropped yet; returns how many it
/// dropped. Called after the suite was cut short, once its servers are gone.
pub async fn drop_leftovers() -> Result<usize> {
    let leftovers = live().clone();
    for (admin_url, name) in &leftovers {
        drop_named(admin_url, name)
            .await
            .with_context(|| format!("dropping the benchmark database {name}"))?;
    }
    Ok(leftovers.len())
}

/// Whether the server's autovacuum daemon is on, asked as `rampart serve` asks it.
pub async fn autovacuum_on(admin_url: &str) -> Result<bool> {
    let settings = rampart_store::PoolSettings {
        max_connections: 1,
        ..rampart_store::PoolSettings::default()
    };
    let store = rampart_store::Store::connect_postgres(admin_url, settings)
        .await
        .context("RAMPART_BENCH_POSTGRES_URL is set but PostgreSQL is unreachable")?;
    Ok(store.postgres_autovacuum().await? != Some(false))
}

/// How often [`AnalyzeStandIn`] looks for tables that autovacuum would analyze.
pub const STAND_IN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Stands in for autovacuum's `ANALYZE` on a server where autovacuum is off: every
/// [`STAND_IN_EVERY`] it analyzes, in each database this run has created and not yet dropped,
/// the tables autovacuum would analyze now, by autovacuum's own rule: those changed by more
/// than `autovacuum_analyze_threshold` rows plus `autovacuum_analyze_scale_factor` of their
/// size since they were last analyzed (the server's settings; 50 rows and a tenth by default).
///
/// Without it, tables that start empty are never analyzed, and PostgreSQL keeps using plans
/// made when they were empty: the foreign-key check of `contact_tags` and the import's
/// taken-emails query then tie between the right unique index and `contacts_by_updated`, pick
/// the latter, and read the whole workspace per row, so every write run is slower than the one
/// before. An earlier version analyzed whole databases every 10 s whatever had changed, so
/// read-only scenarios paid for statistics of tables nobody wrote (sampling the 2,000,000
/// contacts of scenario 3 during its runs), which autovacuum never does.
/// The task stops when the value is dropped.
pub struct AnalyzeStandIn {
    task: tokio::task::JoinHandle<()>,
    /// Tables analyzed so far.
    analyzed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl AnalyzeStandIn {
    /// Starts the task.
    pub fn start(admin_url: &str) -> Self {
        let admin_url = admin_url.to_owned();
        let analyzed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let count = analyzed.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(STAND_IN_EVERY).await;
                let names: Vec<String> = live()
                    .iter()
                    .filter(|(url, _)| *url == admin_url)
                    .map(|(_, name)| name.clone())
                    .collect();
                for name in names {
                    // A database dropped since the list was read fails to connect: skip it.
                    if let Ok(tables) = analyze_due(&admin_url, &name).await {
                        count.fetch_add(tables, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        });
        Self { task, analyzed }
    }

    /// The report's Method line on what the stand-in did, with the tables it has analyzed.
    pub fn method_note(&self) -> String {
        format!(
            "PostgreSQL's autovacuum was off on this server (it is on by default, and Rampart's production setting), so every {} s the suite ran `ANALYZE` in its place on each table of its databases that autovacuum would have analyzed by then, by autovacuum's own rule (more rows changed since the last analysis than `autovacuum_analyze_threshold` plus `autovacuum_analyze_scale_factor` of the table: 50 plus a tenth by default); it analyzed {} tables in this run. Without statistics PostgreSQL keeps the plans it made while the tables were empty: the foreign-key check of every tag row and the import's taken-emails query then pick the `(workspace_id, updated_at)` index over the unique one and read the whole workspace per row, so each write run was slower than the one before (baseline included: 647, 344, 335 writes/s in three 10 s runs) and figures measured the missing statistics, not the server. Until 2026-12-04 the stand-in analyzed whole databases every 10 s, changed or not, so it also sampled scenario 3's 2,000,000 contacts during its read-only runs, which autovacuum never does (see scenario 3's notes).",
            STAND_IN_EVERY.as_secs(),
            self.analyzed.load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

impl Drop for AnalyzeStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Analyzes the tables of database `name` that autovacuum would analyze now; returns how many.
async fn analyze_due(admin_url: &str, name: &str) -> Result<u64> {
    let pool = superuser_pool_on(admin_url, name).await?;
    // `reltuples` is -1 for a table never analyzed (PostgreSQL 14 and later): its size then
    // counts as 0, as autovacuum counts it.
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(s.schemaname) || '.' || quote_ident(s.relname) \
         FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
         WHERE s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float8 \
             + current_setting('autovacuum_analyze_scale_factor')::float8 * greatest(c.reltuples, 0)",
    )
    .fetch_all(&pool)
    .await?;
    if !due.is_empty() {
        sqlx::raw_sql(AssertSqlSafe(format!("ANALYZE {}", due.join(", "))))
            .execute(&pool)
            .await?;
    }
    pool.close().await;
    Ok(due.len() as u64)
}
