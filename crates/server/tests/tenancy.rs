//! Tenancy rules 1–4 of ARCHITECTURE §3, each shown directly against the database.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use common::{APP_ROLE, Backend, Db, OWNER_ROLE, TestApp, error_of};
use rampart_core::{ContactId, OperatorGrant, Role};
use rampart_store::contacts::{self, ContactPatch};
use rampart_store::{Mode, Store, StoreError};
use serde_json::json;

both_backends!(
    composite_foreign_keys_refuse_cross_workspace_references,
    a_tenant_transaction_cannot_see_another_workspace,
    foreign_and_missing_workspaces_answer_identically,
);

/// Rule 1: the database itself refuses a row in workspace B pointing at a row in workspace A.
async fn composite_foreign_keys_refuse_cross_workspace_references(app: TestApp) {
    let a = app.org("Alpha").await;
    let b = app.org("Beta").await;
    let c = app.contact(&a, json!({"name": "In A"})).await;
    let contact: ContactId = c["id"].as_str().unwrap().parse().unwrap();
    let mut tx = app
        .store
        .tenant(&OperatorGrant::new(b.org).in_workspace(b.ws), Mode::Write)
        .await
        .unwrap();
    let err = contacts::insert_raw_tag_for_test(&mut tx, b.ws, contact)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::BadReference), "{err:?}");
    drop(tx);
    let after = app
        .get(
            &format!("/v1/workspaces/{}/contacts/{contact}", a.ws),
            &a.owner_key,
        )
        .await;
    assert_eq!(
        after.json::<serde_json::Value>().await.unwrap()["tags"],
        json!([])
    );
}

/// Rule 2: a transaction opened for workspace B finds nothing of A's, by any verb.
async fn a_tenant_transaction_cannot_see_another_workspace(app: TestApp) {
    let a = app.org("Alpha").await;
    let b = app.org("Beta").await;
    let c = app
        .contact(&a, json!({"name": "In A", "email": "a@a.example.com"}))
        .await;
    let contact: ContactId = c["id"].as_str().unwrap().parse().unwrap();
    let mut tx = app
        .store
        .tenant(&OperatorGrant::new(b.org).in_workspace(b.ws), Mode::Write)
        .await
        .unwrap();
    assert!(contacts::get(&mut tx, contact).await.unwrap().is_none());
    let patch = ContactPatch {
        name: Some(None),
        ..ContactPatch::default()
    };
    assert!(
        contacts::update(&mut tx, contact, patch, chrono::Utc::now())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !contacts::delete(&mut tx, contact, chrono::Utc::now())
            .await
            .unwrap()
    );
    let (page, _) = contacts::list(&mut tx, &Default::default(), 200)
        .await
        .unwrap();
    assert!(page.is_empty());
    tx.commit().await.unwrap();
    let read = app
        .get(
            &format!("/v1/workspaces/{}/contacts/{contact}", a.ws),
            &a.owner_key,
        )
        .await;
    assert_eq!(read.json::<serde_json::Value>().await.unwrap(), c);
}

/// Rule 4: a workspace you are not in answers exactly like one that does not exist.
async fn foreign_and_missing_workspaces_answer_identically(app: TestApp) {
    let a = app.org("Alpha").await;
    let b = app.org("Beta").await;
    let missing = rampart_core::WorkspaceId::generate();
    for path in ["/contacts", "/api-keys"] {
        let foreign = error_of(
            app.get(&format!("/v1/workspaces/{}{path}", a.ws), &b.owner_key)
                .await,
        )
        .await;
        let nowhere = error_of(
            app.get(&format!("/v1/workspaces/{missing}{path}"), &b.owner_key)
                .await,
        )
        .await;
        assert_eq!((foreign.0, &foreign.1), (404, &"NOT_FOUND".to_owned()));
        assert_eq!((foreign.0, &foreign.1), (nowhere.0, &nowhere.1));
        assert_eq!(foreign.2["error"]["message"], nowhere.2["error"]["message"]);
    }
    // A second workspace of the same organization is still another tenant for a key.
    let ws2 = app
        .store
        .create_workspace(a.org, "Second", chrono::Utc::now(), None)
        .await
        .unwrap();
    let (status, code, _) = error_of(
        app.get(&format!("/v1/workspaces/{ws2}/contacts"), &a.owner_key)
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
    let key2 = app.key(ws2, Role::Viewer).await;
    assert_eq!(
        app.get(&format!("/v1/workspaces/{ws2}/contacts"), &key2)
            .await
            .status(),
        200
    );
}

async fn postgres_app() -> Option<TestApp> {
    TestApp::spawn(Backend::Postgres).await
}

fn pg_urls(app: &TestApp) -> (String, String, String) {
    match &app.db {
        Db::Postgres {
            admin_url,
            owner_url,
            app_url,
            name,
        } => {
            let admin: sqlx::postgres::PgConnectOptions = admin_url.parse().unwrap();
            let admin_here = format!(
                "postgres://{}@{}:{}/{name}",
                admin.get_username(),
                admin.get_host(),
                admin.get_port()
            );
            (admin_here, owner_url.clone(), app_url.clone())
        }
        Db::Sqlite(_) => unreachable!(),
    }
}

/// Rule 3: the application role cannot bypass row-level security, every tenant table forces
/// it, and a statement on a tenant table without a bound workspace raises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_row_level_security_is_forced_and_fails_closed() {
    let Some(app) = postgres_app().await else {
        return;
    };
    let a = app.org("Alpha").await;
    app.contact(&a, json!({"name": "Row"})).await;
    let (admin_url, owner_url, app_url) = pg_urls(&app);

    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1")
            .bind(APP_ROLE)
            .fetch_one(&admin)
            .await
            .unwrap();
    assert!(
        !superuser && !bypass,
        "the application role neither is superuser nor bypasses RLS"
    );
    let tables: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind = 'r' AND EXISTS ( \
           SELECT 1 FROM information_schema.columns col WHERE col.table_name = c.relname AND col.column_name = 'workspace_id')",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    // Platform tables that name a workspace without holding its data: memberships (who may
    // enter which workspace, read before one is bound) and jobs (claimed across every
    // organization before any workspace is bound; payloads carry ids only, migration 0010).
    let platform = ["memberships", "jobs"];
    let tenant: Vec<_> = tables
        .iter()
        .filter(|(t, _, _)| !platform.contains(&t.as_str()))
        .collect();
    assert!(tenant.len() >= 3, "{tables:?}");
    for (table, rls, force) in &tenant {
        assert!(
            *rls && *force,
            "{table} has ENABLE and FORCE ROW LEVEL SECURITY"
        );
    }

    for url in [&app_url, &owner_url] {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .unwrap();
        // Never bound on this connection: raises.
        let err = sqlx::query("SELECT count(*) FROM contacts")
            .fetch_one(&pool)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("rampart.workspace_id is not set"),
            "{err}"
        );
        // Bound in an earlier transaction on the same connection, which then ended: raises too.
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SELECT set_config('rampart.workspace_id', $1, true)")
            .bind(a.ws.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM contacts")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(n, 1);
        tx.commit().await.unwrap();
        let err = sqlx::query("SELECT count(*) FROM contacts")
            .fetch_one(&pool)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("rampart.workspace_id is not set"),
            "{err}"
        );
        // Bound to another workspace: A's rows are invisible and cannot be written into.
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SELECT set_config('rampart.workspace_id', 'ws_other', true)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM contacts")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(n, 0);
        let err = sqlx::query("INSERT INTO contacts (id, workspace_id, custom_fields, created_at, updated_at) VALUES ('ct_x', $1, '{}', now(), now())")
            .bind(a.ws.to_string())
            .execute(&mut *tx)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("row-level security"), "{err}");
        drop(tx);
        pool.close().await;
    }

    // The application role cannot switch the policy off.
    // (Refused because it does not own the table, not for some other reason: a policy that
    // does not exist, say, would also be an error.)
    let pool = sqlx::PgPool::connect(&app_url).await.unwrap();
    for (sql, refusal) in [
        (
            "ALTER TABLE contacts DISABLE ROW LEVEL SECURITY",
            "must be owner of table contacts",
        ),
        (
            "DROP POLICY tenant_isolation ON contacts",
            "must be owner of relation contacts",
        ),
    ] {
        let err = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(refusal), "{sql}: {err}");
    }

    // And the server refuses to run as a role that would bypass the policies.
    let privileged = Store::connect_postgres(&admin_url, common::pool_settings())
        .await
        .unwrap();
    let err = privileged.ensure_restricted_role().await.unwrap_err();
    assert!(matches!(err, StoreError::PrivilegedRole(_)), "{err}");
    assert!(err.to_string().contains("BYPASSRLS"));
    let _ = OWNER_ROLE;
}
