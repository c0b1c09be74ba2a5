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
    if let Db::Sqlite(path) = &app.db {
        for file in [path.clone(), path.with_extension("db-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                let hay = String::from_utf8_lossy(&bytes);
                let secret_part = &secret[secret.len() - 43..];
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
    let other = app.second_node(Duration::from_secs(1)).await;
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
    // The other node refuses it once its cache entry (TTL 1 s here, ≤ 60 s in production) lapses.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, _) = error_of(other.get(&list, key).await).await;
    assert_eq!(status, 401);
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
