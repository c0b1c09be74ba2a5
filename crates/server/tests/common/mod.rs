//! The test harness: a real Rampart on a random loopback port over a fresh database, spoken to
//! over real HTTP. SQLite gets a fresh file; PostgreSQL (when `RAMPART_TEST_POSTGRES_URL`
//! names a superuser connection) gets a fresh database owned by a migration role, and the
//! server connects as a restricted application role, exactly as in production, because a
//! superuser would bypass row-level security and prove nothing.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rampart::AppState;
use rampart::auth::{AuthSettings, Identity};
use rampart_core::{Email, ManualClock, OperatorGrant, Plan, Role, WorkspaceId};
use rampart_crypto::{MasterKey, NewApiKey};
use rampart_store::{Keyring, Mode, PoolSettings, Store, Vault, api_keys, keyring_path_for};
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;
use tokio::sync::OnceCell;

pub mod binary;
pub mod people;
pub mod readme;

pub const OWNER_ROLE: &str = "rampart_test_owner";

/// How the tests open a store: production's pool sizes, but a connection wait of a minute
/// instead of 5 s. CI machines are shared: a SQLite open (which syncs the new file) once
/// waited over 5 s behind another process's disk writeback and failed a test that measures
/// nothing about the wait (`PoolTimedOut` in the Server-Timing test, whose binary took 34 s
/// against under 1 s here). A real stall still fails, a minute later.
pub fn pool_settings() -> PoolSettings {
    PoolSettings {
        acquire_timeout: Duration::from_secs(60),
        ..PoolSettings::default()
    }
}
pub const APP_ROLE: &str = "rampart_test_app";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where a test database lives.
pub enum Db {
    Sqlite(std::path::PathBuf),
    Postgres {
        admin_url: String,
        owner_url: String,
        app_url: String,
        name: String,
    },
}

pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub store: Store,
    pub vault: Vault,
    pub master: MasterKey,
    pub backend: Backend,
    pub clock: ManualClock,
    pub db: Db,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    /// The state the app serves (its key cache, its clock).
    pub state: AppState,
    /// Stops the app's account-mail worker when the app is dropped.
    _mail_worker: tokio::sync::watch::Sender<bool>,
}

/// An organization with its first workspace and an owner key.
#[derive(Clone)]
pub struct Org {
    pub org: rampart_core::OrgId,
    pub ws: WorkspaceId,
    pub owner_key: String,
}

pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("RAMPART_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
                panic!(
                    "CI is set but RAMPART_TEST_POSTGRES_URL is not: PostgreSQL tests must not skip in CI"
                );
            }
            announce_skip(
                "the PostgreSQL tests",
                "set RAMPART_TEST_POSTGRES_URL to run them",
            );
            None
        }
    }
}

/// Says that this test binary skipped `what`, once per binary and kind, on the real standard
/// error: the harness captures `eprintln!` of a passing test, so a skip said that way hid
/// behind "ok" and a run without the services looked like a full one.
pub fn announce_skip(what: &str, how_to_run: &str) {
    use std::io::Write;
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
    if said.iter().any(|s| s == what) {
        return;
    }
    said.push(what.to_owned());
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| {
            s.rsplit_once('-')
                .map_or(s.clone(), |(name, _)| name.to_owned())
        })
        .unwrap_or_default();
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED in {binary}: {what} pass without running; {how_to_run}"
    );
}

/// The Redis the shared-limit tests use (`RAMPART_TEST_REDIS_URL`); `None`, after saying so,
/// when there is none, except in CI, where a Redis test must not skip.
pub fn redis_url() -> Option<String> {
    match std::env::var("RAMPART_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
                panic!(
                    "CI is set but RAMPART_TEST_REDIS_URL is not: the Redis tests must not skip in CI"
                );
            }
            announce_skip("the Redis tests", "set RAMPART_TEST_REDIS_URL to run them");
            None
        }
    }
}

/// Deletes every key under `prefix` from the Redis at `url`: a test's quota counters would
/// otherwise stay in the shared Redis for two days.
pub async fn delete_redis_keys(url: &str, prefix: &str) {
    use redis::AsyncCommands;
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = Vec::new();
    {
        let mut iter = con
            .scan_match::<_, String>(format!("{prefix}:*"))
            .await
            .unwrap();
        while let Some(k) = iter.next_item().await {
            keys.push(k.unwrap());
        }
    }
    if !keys.is_empty() {
        let _: u64 = con.del(keys).await.unwrap();
    }
}

static ROLES: OnceCell<()> = OnceCell::const_new();

async fn admin_pool(admin_url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(admin_url)
        .await
        .unwrap_or_else(|e| {
            panic!("RAMPART_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {e}")
        })
}

fn with_user_and_db(admin_url: &str, user: &str, db: &str) -> String {
    let opts: sqlx::postgres::PgConnectOptions = admin_url.parse().unwrap();
    format!(
        "postgres://{user}@{}:{}/{db}",
        opts.get_host(),
        opts.get_port()
    )
}

/// A fresh PostgreSQL database, migrated by the owner role; returns (owner url, app url, name).
/// Every test database's name starts with this, followed by a ULID.
const TEST_DB_PREFIX: &str = "rampart_t_";

/// A test database outlives its test: dropping it would need an async `Drop`, and
/// `rampart serve` tests hold it from another process. So that they do not pile up on a
/// developer's server (64 per run of the suite), each test binary's first PostgreSQL test drops
/// the test databases made over an hour ago, a time read from the ULID in the name: no run of
/// the suite takes that long, so none of them belongs to a test still running.
async fn drop_stale_databases(pool: &sqlx::PgPool) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(TEST_DB_PREFIX)
            .fetch_all(pool)
            .await
            .unwrap();
    let cutoff = std::time::SystemTime::now() - Duration::from_secs(60 * 60);
    for name in names {
        let made = name
            .strip_prefix(TEST_DB_PREFIX)
            .and_then(|id| ulid::Ulid::from_string(&id.to_ascii_uppercase()).ok())
            .map(|id| id.datetime());
        if made.is_some_and(|t| t < cutoff) {
            // Another binary's sweep may have dropped it first.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(pool)
            .await
            .unwrap();
        }
    }
}

pub async fn fresh_postgres(admin_url: &str) -> (String, String, String) {
    let pool = admin_pool(admin_url).await;
    ROLES
        .get_or_init(|| async {
            for (role, extra) in [(OWNER_ROLE, ""), (APP_ROLE, "")] {
                let sql = format!(
                    "DO $$ BEGIN CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE {extra}; \
                     EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
                );
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
            }
            drop_stale_databases(&pool).await;
        })
        .await;
    let name = format!(
        "{TEST_DB_PREFIX}{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {name} OWNER {OWNER_ROLE}"
    )))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let owner_url = with_user_and_db(admin_url, OWNER_ROLE, &name);
    let app_url = with_user_and_db(admin_url, APP_ROLE, &name);
    rampart_store::migrate_postgres_as_owner(&owner_url, Some(APP_ROLE))
        .await
        .unwrap();
    (owner_url, app_url, name)
}

impl TestApp {
    /// Starts an app on `backend`; `None` (after saying so) when PostgreSQL is not configured.
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with_ttl(backend, Duration::from_secs(30)).await
    }

    pub async fn spawn_with_ttl(backend: Backend, ttl: Duration) -> Option<Self> {
        Self::spawn_configured(backend, ttl, |s| s).await
    }

    /// An app whose state `configure` adjusts (limits, edge settings) before it serves.
    pub async fn spawn_configured(
        backend: Backend,
        ttl: Duration,
        configure: impl FnOnce(AppState) -> AppState,
    ) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let (store, db) = match backend {
            Backend::Sqlite => {
                let path = dir.path().join("rampart.db");
                let store = Store::open_sqlite(&path, pool_settings()).await.unwrap();
                store.migrate().await.unwrap();
                (store, Db::Sqlite(path))
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url()?;
                let (owner_url, app_url, name) = fresh_postgres(&admin_url).await;
                let store = Store::connect_postgres(&app_url, pool_settings())
                    .await
                    .unwrap();
                store.ensure_restricted_role().await.unwrap();
                (
                    store,
                    Db::Postgres {
                        admin_url,
                        owner_url,
                        app_url,
                        name,
                    },
                )
            }
        };
        Some(Self::serve(store, backend, db, dir, ttl, configure).await)
    }

    /// A second node over the same database (its own key cache), as behind a load balancer.
    pub async fn second_node(&self, ttl: Duration) -> TestApp {
        let (store, db) = match &self.db {
            Db::Sqlite(path) => (
                Store::open_sqlite(path, pool_settings()).await.unwrap(),
                Db::Sqlite(path.clone()),
            ),
            Db::Postgres {
                admin_url,
                owner_url,
                app_url,
                name,
            } => (
                Store::connect_postgres(app_url, pool_settings())
                    .await
                    .unwrap(),
                Db::Postgres {
                    admin_url: admin_url.clone(),
                    owner_url: owner_url.clone(),
                    app_url: app_url.clone(),
                    name: name.clone(),
                },
            ),
        };
        Self::serve_with_master(
            store,
            self.backend,
            db,
            tempfile::tempdir().unwrap(),
            ttl,
            |s| s,
            self.master.clone(),
        )
        .await
    }

    async fn serve(
        store: Store,
        backend: Backend,
        db: Db,
        dir: tempfile::TempDir,
        ttl: Duration,
        configure: impl FnOnce(AppState) -> AppState,
    ) -> TestApp {
        Self::serve_with_master(store, backend, db, dir, ttl, configure, test_master_key()).await
    }

    async fn serve_with_master(
        store: Store,
        backend: Backend,
        db: Db,
        dir: tempfile::TempDir,
        ttl: Duration,
        configure: impl FnOnce(AppState) -> AppState,
        master: MasterKey,
    ) -> TestApp {
        let clock = ManualClock::new(chrono::Utc::now());
        let vault = test_vault(&store, &db, master.clone(), Arc::new(clock.clone())).await;
        let state = configure(
            AppState::new(store.clone(), vault.clone(), Arc::new(clock.clone()), ttl)
                .with_identity(test_identity(dir.path(), AuthSettings::default())),
        );
        let mail_worker = mail_worker(&state, &store, &clock);
        let app = rampart::app::build(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        TestApp {
            base: format!("http://{addr}"),
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            store,
            vault,
            master,
            backend,
            clock,
            db,
            dir,
            addr,
            state,
            _mail_worker: mail_worker,
        }
    }

    pub async fn org(&self, name: &str) -> Org {
        self.org_on(name, Plan::Growth).await
    }

    pub async fn org_on(&self, name: &str, plan: Plan) -> Org {
        let email = Email::parse(&format!("owner@{}.example.com", name.to_lowercase())).unwrap();
        let made = self
            .store
            .create_org(name, plan, &email, chrono::Utc::now(), None)
            .await
            .unwrap();
        let owner_key = self.key(made.workspace_id, Role::Owner).await;
        Org {
            org: made.org_id,
            ws: made.workspace_id,
            owner_key,
        }
    }

    /// Mints a key as the operator CLI does.
    pub async fn key(&self, ws: WorkspaceId, role: Role) -> String {
        let (org, _) = self.store.workspace_org(ws).await.unwrap().unwrap();
        let minted = NewApiKey::generate(ws).unwrap();
        let mut tx = self
            .store
            .tenant(&OperatorGrant::new(org).in_workspace(ws), Mode::Write)
            .await
            .unwrap();
        api_keys::create(
            &mut tx,
            "test",
            role,
            &minted.hash,
            &minted.display_prefix,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        minted.token.expose().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn req(&self, method: Method, path: &str, key: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(key)
    }

    pub async fn get(&self, path: &str, key: &str) -> Response {
        self.req(Method::GET, path, key).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> Response {
        self.req(Method::POST, path, key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(&self, path: &str, key: &str, body: &Value) -> Response {
        self.req(Method::PATCH, path, key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str, key: &str) -> Response {
        self.req(Method::DELETE, path, key).send().await.unwrap()
    }

    /// Creates a contact and returns its JSON.
    pub async fn contact(&self, org: &Org, body: Value) -> Value {
        let r = self
            .post(
                &format!("/v1/workspaces/{}/contacts", org.ws),
                &org.owner_key,
                &body,
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        r.json().await.unwrap()
    }

    /// Every contact of a workspace, all pages, as the owner sees them.
    pub async fn all_contacts(&self, org: &Org) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/workspaces/{}/contacts?limit=200", org.ws);
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page: Value = self.get(&path, &org.owner_key).await.json().await.unwrap();
            out.extend(page["data"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }
}

/// A fresh random master key.
pub fn test_master_key() -> MasterKey {
    MasterKey::generate().unwrap()
}

/// The keyring of a test database (SQLite: `keyring.db` beside it).
pub async fn test_keyring(store: &Store, db: &Db) -> Keyring {
    match db {
        Db::Sqlite(path) => Keyring::open_sqlite(&keyring_path_for(path)).await.unwrap(),
        Db::Postgres { .. } => Keyring::in_postgres(store).unwrap(),
    }
}

/// A vault over the test database's keyring with a short cache lifetime (1 s).
pub async fn test_vault(
    store: &Store,
    db: &Db,
    master: MasterKey,
    clock: Arc<dyn rampart_core::Clock>,
) -> Vault {
    Vault::with_cache_ttl(
        test_keyring(store, db).await,
        master,
        Vec::new(),
        clock,
        Duration::from_secs(1),
    )
}

/// Reads an error envelope, checking its shape, and returns (status, code).
pub async fn error_of(r: Response) -> (u16, String, Value) {
    let status = r.status().as_u16();
    let header_id = r
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = r.json().await.unwrap();
    let err = &body["error"];
    assert!(err["message"].is_string(), "envelope has a message: {body}");
    assert_eq!(
        err["request_id"].as_str(),
        header_id.as_deref(),
        "envelope carries the request id"
    );
    (
        status,
        err["code"].as_str().unwrap_or_default().to_owned(),
        body,
    )
}

/// Declares each listed `async fn name(app: TestApp)` as a test on SQLite and on PostgreSQL.
/// Like `both_backends!`, with the app's state adjusted by `$configure` before it serves.
#[macro_export]
macro_rules! both_backends_with {
    ($configure:ident; $($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::common::TestApp::spawn_configured(
                        $crate::common::Backend::Sqlite,
                        std::time::Duration::from_secs(30),
                        super::$configure,
                    ).await.unwrap();
                    super::$name(app).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::common::TestApp::spawn_configured(
                        $crate::common::Backend::Postgres,
                        std::time::Duration::from_secs(30),
                        super::$configure,
                    ).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}

#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::common::TestApp::spawn($crate::common::Backend::Sqlite).await.unwrap();
                    super::$name(app).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::common::TestApp::spawn($crate::common::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}

/// Runs SQL statements directly against the database, as the schema owner (SQLite: the file
/// itself), in one transaction bound to `org` and `ws` (for row-level security on PostgreSQL).
/// For tests that play an attacker with database access, or inspect what is stored.
pub async fn owner_sql(
    app: &TestApp,
    org: &str,
    ws: &str,
    statements: &[&str],
) -> Result<(), String> {
    match &app.db {
        Db::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            let mut tx = pool.begin().await.unwrap();
            for s in statements {
                sqlx::raw_sql(sqlx::AssertSqlSafe(s.to_string()))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            tx.commit().await.map_err(|e| e.to_string())?;
            pool.close().await;
        }
        Db::Postgres { owner_url, .. } => {
            let pool = sqlx::PgPool::connect(owner_url).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("SELECT set_config('rampart.org_id', $1, true), set_config('rampart.workspace_id', $2, true)")
                .bind(org)
                .bind(ws)
                .execute(&mut *tx)
                .await
                .unwrap();
            for s in statements {
                sqlx::raw_sql(sqlx::AssertSqlSafe(s.to_string()))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            tx.commit().await.map_err(|e| e.to_string())?;
            pool.close().await;
        }
    }
    Ok(())
}

/// Like [`owner_sql`] but as the restricted application role on PostgreSQL (on SQLite there is
/// only the file).
pub async fn app_sql(app: &TestApp, org: &str, ws: &str, statement: &str) -> Result<(), String> {
    match &app.db {
        Db::Sqlite(_) => owner_sql(app, org, ws, &[statement]).await,
        Db::Postgres { app_url, .. } => {
            let pool = sqlx::PgPool::connect(app_url).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("SELECT set_config('rampart.org_id', $1, true), set_config('rampart.workspace_id', $2, true)")
                .bind(org)
                .bind(ws)
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())
        }
    }
}

/// Statements that switch off the ledger's append-only triggers (an attacker with owner access);
/// running them again is harmless.
pub fn disable_ledger_triggers(app: &TestApp) -> Vec<&'static str> {
    match app.backend {
        Backend::Sqlite => vec![
            "DROP TRIGGER IF EXISTS audit_events_no_update",
            "DROP TRIGGER IF EXISTS audit_events_delete_behind_checkpoint_only",
        ],
        Backend::Postgres => vec!["ALTER TABLE audit_events DISABLE TRIGGER USER"],
    }
}

/// Every event of the organization's ledger visible to `key` in `ws`, oldest first.
pub async fn events(app: &TestApp, ws: &WorkspaceId, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/workspaces/{ws}/audit-events?limit=200");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = app.get(&path, key).await;
        assert_eq!(r.status(), 200);
        let page: Value = r.json().await.unwrap();
        out.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    out.reverse();
    out
}

/// Waits (up to 10 s) until a session of `pool`'s database is blocked waiting for a lock on
/// `table`: the sign that a request under test has reached the statement a test is holding
/// back. Only that database and that table count: tests run side by side, each in a database
/// of its own, and their writes wait on locks too (every write of an organization waits for
/// its audit chain's head at commit), so any ungranted lock in the cluster is no sign at all.
pub async fn wait_until_blocked_on(pool: &sqlx::PgPool, table: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_locks \
             WHERE NOT granted AND locktype = 'relation' AND relation = to_regclass($1) \
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .bind(table)
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the request under test never reached the held lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A job worker for the app's account mail only (as `serve` runs one), polling often so a
/// test's wait for mail stays short; it stops when the returned sender is dropped. The jobs
/// tests run workers of their own for the other kinds.
fn mail_worker(
    state: &AppState,
    store: &Store,
    clock: &ManualClock,
) -> tokio::sync::watch::Sender<bool> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    if let Some(identity) = state.identity() {
        let mut registry = rampart_jobs::Registry::new();
        registry.register(rampart::auth::account_mail::AccountMailHandler::new(
            store.clone(),
            identity.clone(),
            Arc::new(clock.clone()),
        ));
        let worker = rampart_jobs::Worker::new(
            state.jobs().clone(),
            registry,
            rampart_jobs::WorkerSettings {
                poll_min: Duration::from_millis(10),
                poll_max: Duration::from_millis(100),
                ..Default::default()
            },
        );
        tokio::spawn(worker.run(stopped));
    }
    stop
}

/// Identity services for a test app: mail as `.eml` files in `DIR/mail`, an http public URL
/// (so cookies are not `Secure`: the test client speaks plain HTTP).
pub fn test_identity(dir: &std::path::Path, settings: AuthSettings) -> Identity {
    let mailer = rampart::auth::mail::Mailer::from_url(
        &format!("file:{}", dir.join("mail").display()),
        "Rampart <no-reply@example.com>",
    )
    .unwrap();
    let hasher = rampart::auth::password::Hasher::for_this_machine().unwrap();
    Identity::new(settings, hasher, mailer, "http://rampart.test")
}

/// Every row of `tables`, as text, read past row-level security (SQLite: the file; PostgreSQL:
/// as the superuser, since the schema's owner is subject to `FORCE ROW LEVEL SECURITY` too):
/// what a stolen copy of the database would show.
pub async fn dump_tables(app: &TestApp, tables: &[&str]) -> String {
    let mut out = String::new();
    for table in tables {
        match &app.db {
            Db::Sqlite(path) => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                let cols: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT name FROM pragma_table_info('{table}')"
                )))
                .fetch_all(&pool)
                .await
                .unwrap();
                let expr = cols
                    .iter()
                    .map(|(c,)| format!("quote({c})"))
                    .collect::<Vec<_>>()
                    .join(" || ',' || ");
                let rows: Vec<(String,)> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {expr} FROM {table}")))
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                for (r,) in rows {
                    out.push_str(&r);
                    out.push('\n');
                }
                pool.close().await;
            }
            Db::Postgres {
                admin_url, name, ..
            } => {
                let opts: sqlx::postgres::PgConnectOptions = admin_url.parse().unwrap();
                let pool = sqlx::PgPool::connect_with(opts.database(name))
                    .await
                    .unwrap();
                let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT t::text FROM {table} t"
                )))
                .fetch_all(&pool)
                .await
                .unwrap();
                for (r,) in rows {
                    out.push_str(&r);
                    out.push('\n');
                }
                pool.close().await;
            }
        }
    }
    out
}

/// Every row of every table of the test database as text, read past row-level security (a
/// superuser on PostgreSQL, whose tenant tables force their policies even on their owner; the
/// file on SQLite): what a stolen copy of the whole database would show.
pub async fn dump_everything(app: &TestApp) -> String {
    match &app.db {
        Db::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            pool.close().await;
            let names: Vec<&str> = tables.iter().map(String::as_str).collect();
            dump_tables(app, &names).await
        }
        Db::Postgres {
            admin_url, name, ..
        } => {
            let opts: sqlx::postgres::PgConnectOptions = admin_url.parse().unwrap();
            let pool = sqlx::PgPool::connect_with(opts.database(name))
                .await
                .unwrap();
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables \
                 WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            pool.close().await;
            let names: Vec<&str> = tables.iter().map(String::as_str).collect();
            dump_tables(app, &names).await
        }
    }
}
