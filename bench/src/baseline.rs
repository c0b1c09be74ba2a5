//! The security-tax baseline: the same query and JSON work as Rampart's contact read and
//! create, behind a bare axum router with no edge (request ids, body limit), no
//! authentication, no tenancy binding, no validation, no audit and no idempotency.
//!
//! On SQLite it opens the database exactly as `rampart-store` does
//! (`rampart_store::sqlite_connect_options`; one writer connection taking `BEGIN IMMEDIATE`,
//! a pool of eight read-only readers). On PostgreSQL it opens a pool of
//! eight, as `rampart serve` does, but as a superuser, so that row-level security (Rampart's
//! tenancy binding at the database) is not evaluated: that is part of the tax it measures.
//! Either way the database is one `rampart migrate` created, so the schema is Rampart's own.
//! It runs as its own process (`rampart-bench baseline-server`), so it competes with the load
//! generator for the CPU exactly as Rampart does.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::types::Json as SqlJson;
use sqlx::{PgPool, Row, SqlitePool};

/// Connections in a pool: Rampart's default `RAMPART_DATABASE_MAX_CONNECTIONS`.
const CONNECTIONS: u32 = 8;

/// Where the baseline keeps its rows.
pub enum Database<'a> {
    /// A SQLite file.
    Sqlite(&'a Path),
    /// A PostgreSQL URL (a superuser's: row-level security is not evaluated).
    Postgres(&'a str),
}

enum Pools {
    Sqlite {
        writer: SqlitePool,
        readers: SqlitePool,
    },
    Postgres(PgPool),
}

impl Pools {
    async fn open(db: &Database<'_>) -> Result<Self> {
        Ok(match db {
            Database::Sqlite(path) => {
                let base = rampart_store::sqlite_connect_options(path);
                let writer = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(base.clone())
                    .await
                    .with_context(|| format!("opening {}", path.display()))?;
                let readers = SqlitePoolOptions::new()
                    .max_connections(CONNECTIONS)
                    .connect_with(base.read_only(true))
                    .await?;
                Self::Sqlite { writer, readers }
            }
            Database::Postgres(url) => Self::Postgres(
                PgPoolOptions::new()
                    .max_connections(CONNECTIONS)
                    .connect(url)
                    .await
                    .context("connecting to PostgreSQL")?,
            ),
        })
    }
}

/// A contact, serialized with the same fields as Rampart's.
#[derive(Serialize)]
struct Contact {
    id: String,
    workspace_id: String,
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    us_state: Option<String>,
    tags: Vec<String>,
    custom_fields: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// The body of a create, parsed as strictly as Rampart parses it (unknown fields refused),
/// but not validated.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    us_state: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    custom_fields: Map<String, Value>,
}

/// The wall clock (the baseline has no injected clock: it is not the product).
#[expect(
    clippy::disallowed_methods,
    reason = "the baseline stamps rows with the wall clock, as a bare server would"
)]
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Serves until SIGTERM or Ctrl-C.
pub async fn serve(db: Database<'_>, listen: SocketAddr) -> Result<()> {
    let pools = Pools::open(&db).await?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/v1/workspaces/{ws}/contacts", post(create))
        .route("/v1/workspaces/{ws}/contacts/{id}", get(read))
        .with_state(Arc::new(pools));
    // The same HTTP server `rampart serve` runs (axum-server over hyper, HTTP/1 and HTTP/2), so
    // the tax measures Rampart's controls rather than a choice of server library.
    let listener =
        std::net::TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    listener.set_nonblocking(true)?;
    let handle: axum_server::Handle<SocketAddr> = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        stopped().await;
        stopping.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    axum_server::from_tcp(listener)?
        .handle(handle)
        .serve(app.into_make_service())
        .await?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C (as `rampart serve` does).
pub async fn stopped() {
    rampart::cli::serve::shutdown_signal().await;
}

/// The read's statements in an open transaction `$tx` (one body for both backends: the
/// queries are the same text, only the transaction's type differs).
macro_rules! read_in {
    ($tx:ident, $ws:ident, $id:ident) => {{
        let Some(row) = sqlx::query(
            "SELECT id, name, email, phone, us_state, custom_fields, created_at, updated_at \
             FROM contacts WHERE workspace_id = $1 AND id = $2",
        )
        .bind(&$ws)
        .bind(&$id)
        .fetch_optional(&mut *$tx)
        .await?
        else {
            return Ok(None);
        };
        let tags: Vec<String> = sqlx::query_scalar(
            "SELECT tag FROM contact_tags WHERE workspace_id = $1 AND contact_id = $2 ORDER BY tag",
        )
        .bind(&$ws)
        .bind(&$id)
        .fetch_all(&mut *$tx)
        .await?;
        $tx.commit().await?;
        Ok(Some(Contact {
            id: row.try_get("id")?,
            workspace_id: $ws,
            name: row.try_get("name")?,
            email: row.try_get("email")?,
            phone: row.try_get("phone")?,
            us_state: row.try_get("us_state")?,
            tags,
            custom_fields: row.try_get::<SqlJson<Value>, _>("custom_fields")?.0,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        }))
    }};
}

/// Writes contact `$c` and its tags in an open transaction `$tx`, then commits.
macro_rules! insert_in {
    ($tx:ident, $c:ident) => {{
        sqlx::query(
            "INSERT INTO contacts (id, workspace_id, name, email, email_lower, phone, us_state, custom_fields, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&$c.id)
        .bind(&$c.workspace_id)
        .bind(&$c.name)
        .bind(&$c.email)
        .bind($c.email.as_ref().map(|e| e.to_lowercase()))
        .bind(&$c.phone)
        .bind(&$c.us_state)
        .bind(SqlJson(&$c.custom_fields))
        .bind($c.created_at)
        .bind($c.updated_at)
        .execute(&mut *$tx)
        .await?;
        for tag in &$c.tags {
            sqlx::query("INSERT INTO contact_tags (workspace_id, contact_id, tag) VALUES ($1, $2, $3)")
                .bind(&$c.workspace_id)
                .bind(&$c.id)
                .bind(tag)
                .execute(&mut *$tx)
                .await?;
        }
        $tx.commit().await?;
    }};
}

fn failed(e: &sqlx::Error) -> Response {
    let status = match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (
        status,
        Json(serde_json::json!({"error": {"message": e.to_string()}})),
    )
        .into_response()
}

/// `GET /v1/workspaces/{ws}/contacts/{id}`: the row and its tags in one read transaction.
async fn read(
    State(pools): State<Arc<Pools>>,
    UrlPath((ws, id)): UrlPath<(String, String)>,
) -> Response {
    match read_inner(&pools, ws, id).await {
        Ok(Some(c)) => Json(c).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => failed(&e),
    }
}

async fn read_inner(pools: &Pools, ws: String, id: String) -> Result<Option<Contact>, sqlx::Error> {
    match pools {
        Pools::Sqlite { readers, .. } => {
            let mut tx = readers.begin().await?;
            read_in!(tx, ws, id)
        }
        Pools::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            read_in!(tx, ws, id)
        }
    }
}

/// `POST /v1/workspaces/{ws}/contacts`: one write transaction, 201 with `Location`.
async fn create(
    State(pools): State<Arc<Pools>>,
    UrlPath(ws): UrlPath<String>,
    Json(body): Json<CreateBody>,
) -> Response {
    match create_inner(&pools, ws, body).await {
        Ok(c) => {
            let location = format!("/v1/workspaces/{}/contacts/{}", c.workspace_id, c.id);
            (StatusCode::CREATED, [(header::LOCATION, location)], Json(c)).into_response()
        }
        Err(e) => failed(&e),
    }
}

async fn create_inner(pools: &Pools, ws: String, body: CreateBody) -> Result<Contact, sqlx::Error> {
    let at = now();
    let mut tags = body.tags;
    tags.sort();
    tags.dedup();
    let contact = Contact {
        id: format!("ct_{}", ulid::Ulid::new().to_string().to_ascii_lowercase()),
        workspace_id: ws,
        name: body.name,
        email: body.email,
        phone: body.phone,
        us_state: body.us_state,
        tags,
        custom_fields: Value::Object(body.custom_fields),
        created_at: at,
        updated_at: at,
    };
    match pools {
        Pools::Sqlite { writer, .. } => {
            let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
            insert_in!(tx, contact);
        }
        Pools::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            insert_in!(tx, contact);
        }
    }
    Ok(contact)
}
