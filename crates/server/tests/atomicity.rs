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

both_backends!(
    a_failure_midway_rolls_back_everything,
    concurrent_writes_each_stand_or_fall_alone
);

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

/// Many creates at once (on SQLite they share commits): the ones that fail midway leave
/// nothing, of two with one email exactly one is created, every other one is stored, each is
/// answered by what was stored, and every request's event is in an intact ledger.
async fn concurrent_writes_each_stand_or_fall_alone(app: TestApp) {
    let org = app.org("Acme").await;
    install_failing_trigger(&app).await;
    let base = format!("/v1/workspaces/{}/contacts", org.ws);
    let before = app.store.write_stats();
    let requests = (0..32).map(|i| {
        let body = match i % 4 {
            0 => json!({"name": format!("Boom {i}"), "tags": ["ok", "explode"]}),
            // Requests 1 and 2, 5 and 6, … ask for the same email.
            1 | 2 => json!({"name": format!("Twin {i}"), "email": format!("twin{}@example.com", i / 4)}),
            _ => json!({"name": format!("Plain {i}"), "email": format!("plain{i}@example.com"), "tags": ["fine"]}),
        };
        let request = app
            .req(reqwest::Method::POST, &base, &org.owner_key)
            .header("idempotency-key", format!("k{i}"));
        tokio::spawn(async move {
            let r = request
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap();
            (i, status, body)
        })
    });
    let mut answers = Vec::new();
    for task in requests.collect::<Vec<_>>() {
        answers.push(task.await.unwrap());
    }

    let mut created = Vec::new();
    for pair in 0..8 {
        let twins: Vec<_> = answers
            .iter()
            .filter(|(i, ..)| i / 4 == pair && matches!(i % 4, 1 | 2))
            .map(|(_, s, _)| *s)
            .collect();
        let mut sorted = twins.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![201, 409], "pair {pair}: {twins:?}");
    }
    for (i, status, body) in &answers {
        match i % 4 {
            0 => assert_eq!(*status, 500, "request {i}: {body}"),
            3 => assert_eq!(*status, 201, "request {i}: {body}"),
            _ => {}
        }
        if *status == 201 {
            created.push(body["id"].as_str().unwrap().to_owned());
        }
    }
    let mut stored: Vec<String> = app
        .all_contacts(&org)
        .await
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    stored.sort();
    created.sort();
    assert_eq!(stored, created, "exactly the answered creates are stored");

    let events = common::events(&app, &org.ws, &org.owner_key).await;
    for (i, status, _) in &answers {
        let key = format!("k{i}");
        let mine: Vec<_> = events
            .iter()
            .filter(|e| e["idempotency_key"] == key.as_str())
            .map(|e| e["status"].as_u64().unwrap())
            .collect();
        assert_eq!(mine, vec![u64::from(*status)], "request {i}'s event");
    }
    rampart_audit::verify_org(&app.store, &rampart_core::OperatorGrant::new(org.org))
        .await
        .unwrap();
    if let (Some(before), Some(after)) = (before, app.store.write_stats()) {
        // Every request's work and every failure's event went through the writer.
        assert!(
            after.members - before.members >= 32 + 8 + 8,
            "{before:?} {after:?}"
        );
    }
}
