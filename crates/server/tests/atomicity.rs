//! A request that fails half-way through its writes leaves nothing behind, and its error is
//! the generic envelope: no SQL, no database message.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use common::{Db, TestApp, error_of};
use serde_json::json;

both_backends!(a_failure_midway_rolls_back_everything);

/// Makes inserting the tag `explode` fail inside the database, after the contact row of the
/// same request has already been written.
async fn install_failing_trigger(app: &TestApp) {
    match &app.db {
        Db::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::raw_sql(
                "CREATE TRIGGER explode BEFORE INSERT ON contact_tags WHEN NEW.tag = 'explode' \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        Db::Postgres { owner_url, .. } => {
            let pool = sqlx::PgPool::connect(owner_url).await.unwrap();
            sqlx::raw_sql(
                "CREATE FUNCTION explode() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                   IF NEW.tag = 'explode' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$; \
                 CREATE TRIGGER explode BEFORE INSERT ON contact_tags FOR EACH ROW EXECUTE FUNCTION explode();",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
    }
}

async fn a_failure_midway_rolls_back_everything(app: TestApp) {
    let org = app.org("Acme").await;
    let kept = app
        .contact(&org, json!({"name": "Kept", "tags": ["fine"]}))
        .await;
    install_failing_trigger(&app).await;
    let before = app.all_contacts(&org).await;

    let base = format!("/v1/workspaces/{}/contacts", org.ws);
    let (status, code, body) = error_of(
        app.post(
            &base,
            &org.owner_key,
            &json!({"name": "Half", "email": "half@example.com", "tags": ["ok", "explode"]}),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (500, "INTERNAL"));
    let text = body.to_string();
    assert!(
        !text.contains("injected") && !text.contains("contact_tags") && !text.contains("INSERT"),
        "{text}"
    );

    let one = format!("{base}/{}", kept["id"].as_str().unwrap());
    let (status, _, _) = error_of(
        app.patch(
            &one,
            &org.owner_key,
            &json!({"name": "Renamed", "tags": ["explode"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 500);

    assert_eq!(
        app.all_contacts(&org).await,
        before,
        "neither the new row nor the rename survived"
    );
    // The email of the failed create is still free.
    app.contact(&org, json!({"name": "Half", "email": "half@example.com"}))
        .await;
}
