//! API keys: shown once, stored only as a SHA-256 hash, bound to one workspace and one role,
//! revoked at once on the revoking node and within the cache TTL on every other node.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use std::time::Duration;

use common::{Db, TestApp, error_of};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

both_backends!(
    a_key_is_shown_once_and_listed_without_its_secret,
    revocation_is_immediate_here_and_bounded_elsewhere,
    the_key_cache_lifetime_is_capped_at_a_minute,
    a_plan_change_reaches_another_node_within_the_cache_lifetime,
    keys_cannot_escalate
);

async fn a_key_is_shown_once_and_listed_without_its_secret(app: TestApp) {
    let org = app.org("Acme").await;
    let base = format!("/v1/workspaces/{}/api-keys", org.ws);
    let r = app
        .post(
            &base,
            &org.owner_key,
            &json!({"name": "zapier", "role": "sales"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let made: Value = r.json().await.unwrap();
    let secret = made["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("rk_live_"));
    assert!(secret.starts_with(made["prefix"].as_str().unwrap()));
    assert_eq!(made["role"], "sales");

    // Works, and is recorded as used.
    assert_eq!(
        app.get(&format!("/v1/workspaces/{}/contacts", org.ws), &secret)
            .await
            .status(),
        200
    );
    // `last_used_at` is written in the background; give it a moment.
    let mut listing = Value::Null;
    for _ in 0..50 {
        listing = app.get(&base, &org.owner_key).await.json().await.unwrap();
        if listing["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == made["id"] && k["last_used_at"].is_string())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = listing.to_string();
    assert!(!text.contains(&secret), "listings never show the secret");
    let entry = listing["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == made["id"])
        .unwrap()
        .clone();
    assert_eq!(entry["name"], "zapier");
    assert_eq!(entry["prefix"], made["prefix"]);
    assert!(entry["created_at"].is_string());
    assert!(
        entry["last_used_at"].is_string(),
        "last use is recorded: {entry}"
    );
    assert!(entry.get("key").is_none() && entry.get("key_hash").is_none());

    // At rest: only the SHA-256 of the key.
    let want = hex::encode(Sha256::digest(secret.as_bytes()));
    let hashes: Vec<String> = match &app.db {
        Db::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::query_scalar("SELECT key_hash FROM api_keys")
                .fetch_all(&pool)
                .await
                .unwrap()
        }
        Db::Postgres { owner_url, .. } => {
            let pool = sqlx::PgPool::connect(owner_url).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("SELECT set_config('rampart.workspace_id', $1, true)")
                .bind(org.ws.to_string())
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query_scalar("SELECT key_hash FROM api_keys")
                .fetch_all(&mut *tx)
                .await
                .unwrap()
        }
    };
    assert!(hashes.contains(&want));
    // Nowhere in the database, read past row-level security, is the secret part of the key.
    let secret_part = &secret[secret.len() - 43..];
    let everything = common::dump_everything(&app).await;
    assert!(
        everything.contains(&want),
        "the dump reaches the api_keys rows"
    );
    assert!(
        !everything.contains(secret_part),
        "the database holds the plaintext secret"
    );
    if let Db::Sqlite(path) = &app.db {
        // And not in the file's bytes either (free pages, the WAL).
        for file in [path.clone(), path.with_extension("db-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                let hay = String::from_utf8_lossy(&bytes);
                assert!(
                    !hay.contains(secret_part),
                    "{} holds the plaintext secret",
                    file.display()
                );
            }
        }
    }
}

async fn revocation_is_immediate_here_and_bounded_elsewhere(app: TestApp) {
    let org = app.org("Acme").await;
    let other = app.second_node(Duration::from_secs(30)).await;
    let made: Value = app
        .post(
            &format!("/v1/workspaces/{}/api-keys", org.ws),
            &org.owner_key,
            &json!({"name": "ci", "role": "viewer"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let key = made["key"].as_str().unwrap();
    let list = format!("/v1/workspaces/{}/contacts", org.ws);
    // Both nodes have the key cached.
    assert_eq!(app.get(&list, key).await.status(), 200);
    assert_eq!(other.get(&list, key).await.status(), 200);

    let r = app
        .delete(
            &format!(
                "/v1/workspaces/{}/api-keys/{}",
                org.ws,
                made["id"].as_str().unwrap()
            ),
            &org.owner_key,
        )
        .await;
    assert_eq!(r.status(), 204);
    // The revoking node refuses it at once, despite its cache.
    let (status, code, _) = error_of(app.get(&list, key).await).await;
    assert_eq!((status, code.as_str()), (401, "UNAUTHENTICATED"));
    // The other node still serves it from its cache (the lag the TTL bounds), and refuses it
    // once its cache entry (30 s here) lapses: its cache's clock is moved, not waited for.
    assert_eq!(other.state.keys().ttl(), Duration::from_secs(30));
    assert_eq!(other.get(&list, key).await.status(), 200);
    other
        .state
        .keys()
        .advance_clock_for_tests(Duration::from_secs(29));
    assert_eq!(other.get(&list, key).await.status(), 200);
    other
        .state
        .keys()
        .advance_clock_for_tests(Duration::from_secs(1));
    let (status, code, _) = error_of(other.get(&list, key).await).await;
    assert_eq!((status, code.as_str()), (401, "UNAUTHENTICATED"));
    // Revoking again, or revoking from another workspace, is a 404.
    let again = app
        .delete(
            &format!(
                "/v1/workspaces/{}/api-keys/{}",
                org.ws,
                made["id"].as_str().unwrap()
            ),
            &org.owner_key,
        )
        .await;
    assert_eq!(again.status(), 404);
    let listing: Value = app
        .get(
            &format!("/v1/workspaces/{}/api-keys", org.ws),
            &org.owner_key,
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        listing["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["id"] != made["id"])
    );
}

/// README: `RAMPART_KEY_CACHE_TTL_SECS` is "capped at 60: a revocation reaches other nodes
/// within it". A node asked for an hour keeps a revoked key for under a minute.
async fn the_key_cache_lifetime_is_capped_at_a_minute(app: TestApp) {
    let org = app.org("Acme").await;
    let other = app.second_node(Duration::from_secs(3600)).await;
    assert_eq!(other.state.keys().ttl(), Duration::from_secs(60));
    let key = app.key(org.ws, rampart_core::Role::Viewer).await;
    let list = format!("/v1/workspaces/{}/contacts", org.ws);
    assert_eq!(other.get(&list, &key).await.status(), 200);
    let id = app
        .get(
            &format!("/v1/workspaces/{}/api-keys", org.ws),
            &org.owner_key,
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| key.starts_with(k["prefix"].as_str().unwrap()))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .delete(
            &format!("/v1/workspaces/{}/api-keys/{id}", org.ws),
            &org.owner_key,
        )
        .await;
    assert_eq!(r.status(), 204);
    other
        .state
        .keys()
        .advance_clock_for_tests(Duration::from_secs(59));
    assert_eq!(
        other.get(&list, &key).await.status(),
        200,
        "cached for 59 s"
    );
    other
        .state
        .keys()
        .advance_clock_for_tests(Duration::from_secs(1));
    let (status, code, _) = error_of(other.get(&list, &key).await).await;
    assert_eq!(
        (status, code.as_str()),
        (401, "UNAUTHENTICATED"),
        "after 60 s"
    );
}

/// README: "A plan change reaches every node within the API-key cache TTL". An upgrade made
/// elsewhere (the operator's `set_plan`) opens a plan-gated route on a node that had cached
/// the key under the old plan once its entry lapses, and a downgrade closes it again.
async fn a_plan_change_reaches_another_node_within_the_cache_lifetime(app: TestApp) {
    let org = app.org_on("Acme", rampart_core::Plan::Free).await;
    let other = app.second_node(Duration::from_secs(30)).await;
    let audit = format!("/v1/workspaces/{}/audit-events", org.ws);
    let (status, code, _) = error_of(other.get(&audit, &org.owner_key).await).await;
    assert_eq!((status, code.as_str()), (403, "PLAN_UPGRADE_REQUIRED"));
    let now = app.clock.now_for_tests();
    for (plan, want) in [
        (rampart_core::Plan::Starter, 200),
        (rampart_core::Plan::Free, 403),
    ] {
        app.store.set_plan(org.org, plan, now, None).await.unwrap();
        other
            .state
            .keys()
            .advance_clock_for_tests(Duration::from_secs(30));
        assert_eq!(
            other.get(&audit, &org.owner_key).await.status(),
            want,
            "on {plan:?}, one cache lifetime after the change"
        );
    }
}

async fn keys_cannot_escalate(app: TestApp) {
    let org = app.org("Acme").await;
    let admin = app.key(org.ws, rampart_core::Role::Admin).await;
    let base = format!("/v1/workspaces/{}/api-keys", org.ws);
    let (status, code, _) = error_of(
        app.post(&base, &admin, &json!({"name": "x", "role": "owner"}))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "FORBIDDEN"));
    assert_eq!(
        app.post(&base, &admin, &json!({"name": "x", "role": "viewer"}))
            .await
            .status(),
        201
    );
    let (status, code, body) = error_of(
        app.post(&base, &admin, &json!({"name": "x", "role": "root"}))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (422, "INVALID"), "{body}");
    assert_eq!(body["error"]["field"], "role");
    let (status, _, _) = error_of(
        app.post(&base, &admin, &json!({"name": " ", "role": "viewer"}))
            .await,
    )
    .await;
    assert_eq!(status, 422);
}
