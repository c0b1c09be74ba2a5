//! Every list filter reaches its rows through an index on both backends, read from the
//! databases' own plans (`EXPLAIN`) of the exact statements the store runs, over a workspace
//! big enough (and analyzed) for the planners to care: a filter that cannot use its index
//! grows with the workspace (issue 31: `?email=` took 14 ms at 80k contacts against 1 ms by id).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use common::{Backend, Db, TestApp, owner_sql};
use rampart_core::{Email, Tag};
use rampart_store::audit::{EventFilter, NewEvent};
use rampart_store::contacts::{ContactFilter, list_sql};

both_backends!(
    contact_filters_use_their_indexes,
    audit_pages_walk_the_ledger_by_key
);

const CONTACTS: usize = 5_000;

/// An argument of a planned statement.
#[derive(Clone)]
enum Bind {
    Text(String),
    Int(i64),
    Time(chrono::DateTime<chrono::Utc>),
}

macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b.clone() {
                Bind::Text(t) => q.bind(t),
                Bind::Int(i) => q.bind(i),
                Bind::Time(t) => q.bind(t),
            };
        }
        q
    }};
}

fn text(v: &str) -> Bind {
    Bind::Text(v.to_owned())
}

/// `sql`'s plan, one line per step, with `binds` in order and `limit` last.
async fn plan(app: &TestApp, org: &str, ws: &str, sql: &str, binds: &[Bind], limit: i64) -> String {
    match &app.db {
        Db::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            let q = bind_all!(
                sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}"))),
                binds
            );
            let rows = q.bind(limit).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows.iter()
                .map(|r| sqlx::Row::get::<String, _>(r, "detail"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Db::Postgres { app_url, .. } => {
            // As the application role, under row-level security, as `serve` runs it.
            let pool = sqlx::PgPool::connect(app_url).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("SELECT set_config('rampart.org_id', $1, true), set_config('rampart.workspace_id', $2, true)")
                .bind(org)
                .bind(ws)
                .execute(&mut *tx)
                .await
                .unwrap();
            // The plan a long-lived connection ends up with: after five runs PostgreSQL may
            // keep a generic plan, made without the arguments' values, so a predicate such as
            // `$3 IS NULL OR …` can no longer be folded away there.
            sqlx::query("SET LOCAL plan_cache_mode = force_generic_plan")
                .execute(&mut *tx)
                .await
                .unwrap();
            let q = bind_all!(
                sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}"))),
                binds
            );
            let rows = q.bind(limit).fetch_all(&mut *tx).await.unwrap();
            tx.rollback().await.unwrap();
            pool.close().await;
            rows.iter()
                .map(|r| sqlx::Row::get::<String, _>(r, 0))
                .collect::<Vec<_>>()
                .join("\n")
        }
    }
}

/// Fills `ws` with [`CONTACTS`] contacts, every tenth tagged `vip`, and updates the planners'
/// statistics.
async fn fill(app: &TestApp, org: &str, ws: &str) {
    let (series, time) = match app.backend {
        Backend::Sqlite => (
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {CONTACTS}) SELECT i FROM n"
            ),
            "'2026-01-01T00:00:00.000000Z'",
        ),
        Backend::Postgres => (
            format!("SELECT i FROM generate_series(1, {CONTACTS}) AS i"),
            "now()",
        ),
    };
    let contacts = format!(
        "INSERT INTO contacts (id, workspace_id, name, email, email_lower, created_at, updated_at) \
         SELECT 'ct_' || printf_id, '{ws}', 'Person ' || i, 'p' || i || '@example.com', 'p' || i || '@example.com', {time}, {time} \
         FROM (SELECT i, {pad} AS printf_id FROM ({series}) AS s) AS t",
        pad = match app.backend {
            Backend::Sqlite => "printf('%026d', i)",
            Backend::Postgres => "lpad(i::text, 26, '0')",
        }
    );
    let tags = format!(
        "INSERT INTO contact_tags (workspace_id, contact_id, tag) \
         SELECT workspace_id, id, 'vip' FROM contacts WHERE workspace_id = '{ws}' AND name LIKE '%0'"
    );
    owner_sql(app, org, ws, &[&contacts, &tags]).await.unwrap();
    owner_sql(app, org, ws, &["ANALYZE"]).await.unwrap();
}

async fn contact_filters_use_their_indexes(app: TestApp) {
    let org = app.org("Acme").await;
    let (org_s, ws_s) = (org.org.to_string(), org.ws.to_string());
    fill(&app, &org_s, &ws_s).await;
    // The filters work (and the fill is what the plans are about).
    let page: serde_json::Value = app
        .get(
            &format!("/v1/workspaces/{}/contacts?email=P42@example.com", org.ws),
            &org.owner_key,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");

    let t = "2026-01-01T00:00:00Z".parse().unwrap();
    let none = ContactFilter::default();
    let email = ContactFilter {
        email: Some(Email::parse("p42@example.com").unwrap()),
        ..ContactFilter::default()
    };
    let tag = ContactFilter {
        tag: Some(Tag::parse("vip").unwrap()),
        ..ContactFilter::default()
    };
    let since = ContactFilter {
        updated_since: Some(t),
        ..ContactFilter::default()
    };
    let start = vec![text(&ws_s), text("")];
    let with = |v: Bind| {
        let mut b = start.clone();
        b.push(v);
        b
    };
    let cases = [
        ("no filter", list_sql(&none), start.clone()),
        ("email", list_sql(&email), with(text("p42@example.com"))),
        ("tag", list_sql(&tag), with(text("vip"))),
        ("updated_since", list_sql(&since), with(Bind::Time(t))),
    ];
    for (name, sql, binds) in cases {
        let p = plan(&app, &org_s, &ws_s, &sql, &binds, 51).await;
        match app.backend {
            Backend::Sqlite => {
                assert!(
                    !p.lines()
                        .any(|l| l.starts_with("SCAN c") || l.starts_with("SCAN t")),
                    "{name} reads a whole table:\n{p}"
                );
                match name {
                    "email" => assert!(p.contains("email_lower=?"), "{name}:\n{p}"),
                    "tag" => assert!(p.contains("contact_tags_by_tag"), "{name}:\n{p}"),
                    _ => assert!(p.contains("SEARCH c USING"), "{name}:\n{p}"),
                }
            }
            Backend::Postgres => {
                assert!(!p.contains("Seq Scan"), "{name} reads a whole table:\n{p}");
                match name {
                    "email" => assert!(
                        p.contains("Index Cond") && p.contains("email_lower = "),
                        "{name}:\n{p}"
                    ),
                    "tag" => assert!(p.contains("contact_tags_by_tag"), "{name}:\n{p}"),
                    _ => assert!(p.contains("Index Scan"), "{name}:\n{p}"),
                }
            }
        }
    }
}

async fn audit_pages_walk_the_ledger_by_key(app: TestApp) {
    let org = app.org("Acme").await;
    let (org_s, ws_s) = (org.org.to_string(), org.ws.to_string());
    let mut ledger = app
        .store
        .ledger(
            &rampart_core::OperatorGrant::new(org.org),
            rampart_store::Mode::Write,
        )
        .await
        .unwrap();
    for i in 0..2_000 {
        ledger
            .append(
                NewEvent {
                    workspace: Some(org.ws),
                    actor: rampart_core::Actor::ApiKey(rampart_core::ApiKeyId::generate()).into(),
                    method: "POST".into(),
                    path: "/seed".into(),
                    action: "contact.create".into(),
                    args: "{}".into(),
                    status: 201,
                    request_id: format!("req_{i}"),
                    ..NewEvent::default()
                },
                chrono::Utc::now(),
            )
            .await
            .unwrap();
    }
    ledger.commit().await.unwrap();
    owner_sql(&app, &org_s, &ws_s, &["ANALYZE"]).await.unwrap();
    let base = vec![text(&org_s), text(&ws_s), Bind::Int(i64::MAX)];
    // Actor, action and status have no index of their own: migration 5 dropped them to keep
    // the append fast, so such a filter reads the organization's events until it has a page
    // (see `rampart_store::audit::list_sql`). The walk by key and the time range are indexed.
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let cases: [(&str, EventFilter, Vec<Bind>); 2] = [
        ("no filter", EventFilter::default(), base.clone()),
        (
            "since",
            EventFilter {
                since: Some(since),
                ..EventFilter::default()
            },
            [base.clone(), vec![Bind::Time(since)]].concat(),
        ),
    ];
    for (name, filter, binds) in cases {
        let sql = rampart_store::audit::list_sql(&filter);
        let p = plan(&app, &org_s, &ws_s, &sql, &binds, 51).await;
        match app.backend {
            Backend::Sqlite => assert!(
                p.contains("SEARCH audit_events USING") && !p.contains("TEMP B-TREE"),
                "{name}: the page walks the key backwards, unsorted:\n{p}"
            ),
            Backend::Postgres => assert!(
                !p.contains("Seq Scan") && !p.contains("Sort"),
                "{name}: the page walks the key backwards, unsorted:\n{p}"
            ),
        }
    }
}
