//! Provider credentials: write-only over the API, stored only as ciphertext bound to their
//! row, audited with the secret redacted, and never in a response body, a ledger event or a
//! log line.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::{Db, Org, TestApp, error_of, events, owner_sql};
use rampart::routes::credentials::reveal;
use rampart_core::{OperatorGrant, Role};
use rampart_store::credentials::{self, COLUMN, TABLE};
use rampart_store::{KeyScope, Mode};
use reqwest::Method;
use serde_json::{Value, json};

both_backends!(
    a_secret_is_write_only_and_never_leaks,
    a_ciphertext_moved_to_another_row_column_or_org_does_not_open,
    only_owners_and_admins_manage_credentials,
    concurrent_first_writes_leave_a_secret_that_opens
);

/// Every log line any test in this binary produces, at debug level.
fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || SharedWriter(sink.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buf
    })
    .clone()
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn path(org: &Org, provider: &str) -> String {
    format!("/v1/workspaces/{}/credentials/{provider}", org.ws)
}

async fn put(
    app: &TestApp,
    org: &Org,
    provider: &str,
    key: &str,
    body: Value,
) -> reqwest::Response {
    app.req(Method::PUT, &path(org, provider), key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The stored bytes of a workspace's credential, read straight from the database.
async fn stored_bytes(app: &TestApp, org: &Org, provider: &str) -> Vec<u8> {
    let sql = "SELECT secret FROM credentials WHERE workspace_id = $1 AND provider = $2";
    match &app.db {
        Db::Sqlite(p) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", p.display()))
                .await
                .unwrap();
            let (b,): (Vec<u8>,) = sqlx::query_as(sql)
                .bind(org.ws.to_string())
                .bind(provider)
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            b
        }
        Db::Postgres { owner_url, .. } => {
            let pool = sqlx::PgPool::connect(owner_url).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("SELECT set_config('rampart.workspace_id', $1, true)")
                .bind(org.ws.to_string())
                .execute(&mut *tx)
                .await
                .unwrap();
            let (b,): (Vec<u8>,) = sqlx::query_as(sql)
                .bind(org.ws.to_string())
                .bind(provider)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            b
        }
    }
}

/// Opens the workspace's credential for `provider` as a provider client would.
async fn open_credential(
    app: &TestApp,
    org: &Org,
    provider: &str,
) -> Result<Vec<u8>, rampart_store::VaultError> {
    let mut tx = app
        .store
        .tenant(
            &OperatorGrant::new(org.org).in_workspace(org.ws),
            Mode::Read,
        )
        .await
        .unwrap();
    let stored = credentials::get(&mut tx, provider).await.unwrap().unwrap();
    reveal(&app.vault, org.org, &stored)
        .await
        .map(|s| s.expose().clone())
}

async fn a_secret_is_write_only_and_never_leaks(app: TestApp) {
    let log = log_buffer();
    let org = app.org("Acme").await;
    let secret = format!("sk-live-{}", ulid::Ulid::new());
    let mut bodies = Vec::new();

    let r = put(
        &app,
        &org,
        "twilio",
        &org.owner_key,
        json!({"secret": secret}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let set: Value = r.json().await.unwrap();
    bodies.push(set.to_string());
    assert_eq!(set["provider"], "twilio");
    assert_eq!(set["set"], true);
    assert_eq!(set["last4"], secret[secret.len() - 4..]);
    assert!(set["updated_at"].is_string());
    assert_eq!(
        set.as_object().unwrap().len(),
        4,
        "provider, set, last4, updated_at and nothing else: {set}"
    );

    let r = app.get(&path(&org, "twilio"), &org.owner_key).await;
    assert_eq!(r.status(), 200);
    let got: Value = r.json().await.unwrap();
    bodies.push(got.to_string());
    assert_eq!(got, set);

    // Stored only as ciphertext; the plaintext is produced only by the call that opens it.
    let raw = stored_bytes(&app, &org, "twilio").await;
    assert!(!raw.windows(secret.len()).any(|w| w == secret.as_bytes()));
    assert_eq!(
        open_credential(&app, &org, "twilio").await.unwrap(),
        secret.as_bytes()
    );

    // A failed attempt carrying the secret (unknown field) leaks it nowhere either.
    let r = put(
        &app,
        &org,
        "twilio",
        &org.owner_key,
        json!({"secret": secret, "label": "x"}),
    )
    .await;
    let (status, code, body) = error_of(r).await;
    assert_eq!((status, code.as_str()), (422, "INVALID"));
    bodies.push(body.to_string());
    let (status, code, body) = error_of(
        put(
            &app,
            &org,
            "twilio",
            &org.owner_key,
            json!({"secret": "short"}),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (422, "INVALID"), "{body}");

    // Replacing keeps the row (and so its binding), changes the value.
    let second = format!("sk-live-{}", ulid::Ulid::new());
    let r = put(
        &app,
        &org,
        "twilio",
        &org.owner_key,
        json!({"secret": second}),
    )
    .await;
    assert_eq!(r.status(), 200);
    bodies.push(r.text().await.unwrap());
    assert_eq!(
        open_credential(&app, &org, "twilio").await.unwrap(),
        second.as_bytes()
    );

    // Unknown provider: the error envelope, 404.
    let (status, code, _) = error_of(
        put(
            &app,
            &org,
            "myspace",
            &org.owner_key,
            json!({"secret": secret}),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));

    let r = app.delete(&path(&org, "twilio"), &org.owner_key).await;
    assert_eq!(r.status(), 204);
    let (status, code, _) = error_of(app.get(&path(&org, "twilio"), &org.owner_key).await).await;
    assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
    let (status, _, _) = error_of(app.delete(&path(&org, "twilio"), &org.owner_key).await).await;
    assert_eq!(status, 404);

    // The ledger has each attempt, with the secret redacted.
    let ledger = events(&app, &org.ws, &org.owner_key).await;
    let sets: Vec<&Value> = ledger
        .iter()
        .filter(|e| e["action"] == "credential.set")
        .collect();
    assert!(sets.len() >= 4, "every PUT is recorded: {ledger:?}");
    assert!(
        sets.iter()
            .any(|e| e["args"].to_string().contains("[redacted]")),
        "{sets:?}"
    );
    assert!(ledger.iter().any(|e| e["action"] == "credential.delete"));
    for s in [&secret, &second] {
        let text = serde_json::to_string(&ledger).unwrap();
        assert!(
            !text.contains(s.as_str()),
            "a ledger event holds the secret"
        );
        for b in &bodies {
            assert!(!b.contains(s.as_str()), "a response holds the secret: {b}");
        }
        let logged = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
        assert!(
            logged.contains("credentials/{provider}"),
            "the requests' log lines were captured"
        );
        assert!(!logged.contains(s.as_str()), "a log line holds the secret");
    }
}

async fn a_ciphertext_moved_to_another_row_column_or_org_does_not_open(app: TestApp) {
    let a = app.org("Alpha").await;
    let b = app.org("Beta").await;
    for (org, provider) in [(&a, "twilio"), (&a, "smtp"), (&b, "twilio")] {
        let r = put(
            &app,
            org,
            provider,
            &org.owner_key,
            json!({"secret": format!("{provider}-secret-of-{}", org.org)}),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    let twilio = stored_bytes(&app, &a, "twilio").await;
    let hex = hex::encode(&twilio);
    let literal = match app.backend {
        common::Backend::Sqlite => format!("X'{hex}'"),
        common::Backend::Postgres => format!("'\\x{hex}'::bytea"),
    };

    // Another row of the same table, column and organization.
    owner_sql(
        &app,
        &a.org.to_string(),
        &a.ws.to_string(),
        &[&format!(
            "UPDATE credentials SET secret = {literal} WHERE workspace_id = '{}' AND provider = 'smtp'",
            a.ws
        )],
    )
    .await
    .unwrap();
    assert!(open_credential(&app, &a, "smtp").await.is_err());
    assert!(open_credential(&app, &a, "twilio").await.is_ok());

    // Another organization's row.
    owner_sql(
        &app,
        &b.org.to_string(),
        &b.ws.to_string(),
        &[&format!(
            "UPDATE credentials SET secret = {literal} WHERE workspace_id = '{}' AND provider = 'twilio'",
            b.ws
        )],
    )
    .await
    .unwrap();
    assert!(open_credential(&app, &b, "twilio").await.is_err());

    // Another column or table, same row id.
    let mut tx = app
        .store
        .tenant(&OperatorGrant::new(a.org).in_workspace(a.ws), Mode::Read)
        .await
        .unwrap();
    let stored = credentials::get(&mut tx, "twilio").await.unwrap().unwrap();
    drop(tx);
    let row = stored.info.id.to_string();
    let scope = KeyScope::Org(a.org);
    assert!(
        app.vault
            .open(scope, TABLE, COLUMN, &row, &stored.secret)
            .await
            .is_ok()
    );
    assert!(
        app.vault
            .open(scope, TABLE, "last4", &row, &stored.secret)
            .await
            .is_err()
    );
    assert!(
        app.vault
            .open(scope, "contacts", COLUMN, &row, &stored.secret)
            .await
            .is_err()
    );
    assert!(
        app.vault
            .open(KeyScope::Platform, TABLE, COLUMN, &row, &stored.secret)
            .await
            .is_err()
    );
}

async fn only_owners_and_admins_manage_credentials(app: TestApp) {
    let org = app.org("Acme").await;
    // The secret stored now (none yet), read back with the vault after every attempt.
    let mut stored: Option<String> = None;
    for role in Role::ALL {
        let key = app.key(org.ws, role).await;
        // A secret of this role's own, so a refused write that happened anyway shows.
        let secret = format!("sk-role-test-{role}-000000");
        let r = put(&app, &org, "openai", &key, json!({ "secret": secret })).await;
        // README: owner and admin "both manage provider credentials"; no other role does.
        let allowed = common::readme::can(role, "credentials:manage");
        assert_eq!(allowed, matches!(role, Role::Owner | Role::Admin));
        if allowed {
            assert_eq!(r.status(), 200, "{role}");
            stored = Some(secret);
        } else {
            let (status, code, _) = error_of(r).await;
            assert_eq!((status, code.as_str()), (403, "FORBIDDEN"), "{role}");
            let (status, _, _) = error_of(app.get(&path(&org, "openai"), &key).await).await;
            assert_eq!(status, 403, "{role} cannot even see whether one is set");
        }
        let now = open_credential(&app, &org, "openai")
            .await
            .map(|b| String::from_utf8(b).unwrap());
        assert_eq!(now.ok(), stored, "the stored secret after {role}'s PUT");
    }
}

async fn concurrent_first_writes_leave_a_secret_that_opens(app: TestApp) {
    let org = app.org("Acme").await;
    let app = std::sync::Arc::new(app);
    let mut writers = Vec::new();
    for n in 0..6 {
        let (app, org) = (app.clone(), org.clone());
        writers.push(tokio::spawn(async move {
            put(
                &app,
                &org,
                "retell",
                &org.owner_key,
                json!({"secret": format!("concurrent-secret-{n}")}),
            )
            .await
            .status()
            .as_u16()
        }));
    }
    for w in writers {
        assert_eq!(w.await.unwrap(), 200);
    }
    let opened = String::from_utf8(open_credential(&app, &org, "retell").await.unwrap()).unwrap();
    assert!(opened.starts_with("concurrent-secret-"), "{opened}");
}
