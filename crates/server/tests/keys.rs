//! Key management end to end over a real database and keyring: crypto-erasure of a deleted
//! organization (a copy of the database taken before the deletion stays unreadable with the
//! master key in hand), master key rotation, data key rotation under concurrent writes and
//! after a crash, and the Fernet import.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Db, Org, TestApp, test_keyring};
use rampart::cli::import::{ImportCredentials, credentials as import_credentials};
use rampart::cli::keys::{RotateOrg, rotate_master, rotate_org};
use rampart::cli::org::{DeleteOrg, delete_org};
use rampart::routes::credentials::reveal;
use rampart_core::OperatorGrant;
use rampart_store::audit::NewEvent;
use rampart_store::credentials;
use rampart_store::{KeyScope, MasterKey, Mode, Store, Vault, VaultError};
use reqwest::Method;
use serde_json::json;

both_backends!(
    deleting_an_org_destroys_its_key_and_rows,
    master_rotation_rewraps_every_key_resumably,
    org_rotation_reencrypts_under_concurrent_writes,
    org_rotation_resumes_after_a_crash,
    fernet_values_import_under_the_org_key
);

const PROVIDERS: &[&str] = &["twilio", "smtp", "openai"];

fn secret_of(org: &Org, provider: &str, n: u32) -> String {
    format!("{provider}-{n}-secret-of-{}", org.org)
}

async fn set(app: &TestApp, org: &Org, provider: &str, secret: &str) {
    let r = app
        .req(
            Method::PUT,
            &format!("/v1/workspaces/{}/credentials/{provider}", org.ws),
            &org.owner_key,
        )
        .json(&json!({ "secret": secret }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

/// Opens a credential of `org` stored in `store` with `vault`.
async fn open(
    store: &Store,
    vault: &Vault,
    org: &Org,
    provider: &str,
) -> Result<String, VaultError> {
    let mut tx = store
        .tenant(
            &OperatorGrant::new(org.org).in_workspace(org.ws),
            Mode::Read,
        )
        .await
        .unwrap();
    let stored = credentials::get(&mut tx, provider).await.unwrap().unwrap();
    reveal(vault, org.org, &stored)
        .await
        .map(|s| String::from_utf8(s.expose().clone()).unwrap())
}

async fn stored_versions(app: &TestApp, org: &Org) -> Vec<Option<u32>> {
    let mut out = Vec::new();
    let mut tx = app
        .store
        .tenant(
            &OperatorGrant::new(org.org).in_workspace(org.ws),
            Mode::Read,
        )
        .await
        .unwrap();
    for p in PROVIDERS {
        if let Some(c) = credentials::get(&mut tx, p).await.unwrap() {
            out.push(c.secret.key_version());
        }
    }
    out
}

fn operator_event(action: &str) -> NewEvent {
    NewEvent {
        actor: rampart_core::Actor::Operator.into(),
        auth_method: Some(rampart_core::AuthMethod::Cli),
        method: "CLI".into(),
        path: format!("rampart test {action}"),
        action: action.into(),
        args: "{}".into(),
        status: 200,
        request_id: "cli_test".into(),
        ..NewEvent::default()
    }
}

async fn deleting_an_org_destroys_its_key_and_rows(app: TestApp) {
    let a = app.org("Doomed").await;
    let b = app.org("Bystander").await;
    for org in [&a, &b] {
        for p in PROVIDERS {
            set(&app, org, p, &secret_of(org, p, 1)).await;
        }
    }
    // A copy of the data as it was before the deletion (a backup an attacker later obtains).
    let copy = match &app.db {
        Db::Sqlite(path) => {
            let target = app.dir.path().join("before-delete.db");
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::query("VACUUM INTO $1")
                .bind(target.display().to_string())
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            Some(Copy::Sqlite(target))
        }
        Db::Postgres {
            admin_url, name, ..
        } => Some(postgres_copy_without_keyring(admin_url, name).await),
    };
    let wrapped_before = app
        .vault
        .keyring()
        .versions(KeyScope::Org(a.org))
        .await
        .unwrap();
    assert_eq!(wrapped_before.len(), 1);

    let refused = delete_org(
        &app.store,
        &app.vault,
        &DeleteOrg {
            org: a.org,
            now: true,
            yes: false,
            settle_secs: 0,
            json: true,
        },
        rampart_core::Clock::now(&app.clock),
        operator_event("org.delete"),
    )
    .await;
    assert!(refused.unwrap_err().to_string().contains("--now --yes"));
    assert!(open(&app.store, &app.vault, &a, "twilio").await.is_ok());

    let args = DeleteOrg {
        org: a.org,
        now: true,
        yes: true,
        settle_secs: 0,
        json: true,
    };
    let done = delete_org(
        &app.store,
        &app.vault,
        &args,
        rampart_core::Clock::now(&app.clock),
        operator_event("org.delete"),
    )
    .await
    .unwrap();
    assert_eq!(done["data_keys_destroyed"], 1);
    // Running it again finishes nothing new and fails nothing.
    delete_org(
        &app.store,
        &app.vault,
        &args,
        rampart_core::Clock::now(&app.clock),
        operator_event("org.delete"),
    )
    .await
    .unwrap();

    let scope = KeyScope::Org(a.org);
    assert!(
        app.vault
            .keyring()
            .versions(scope)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(app.vault.keyring().is_destroyed(scope).await.unwrap());
    // No new key is ever made for it (a late request cannot resurrect the scope).
    assert!(matches!(
        app.vault.ensure_key(scope).await,
        Err(VaultError::NoKey(_))
    ));
    // Its rows are gone, its keys no longer authenticate; the other org is untouched.
    assert_eq!(app.store.org_workspaces(a.org).await.unwrap().len(), 1);
    // (Checked on a node without a cached key: caches expire within the key-cache TTL.)
    let node = app.second_node(Duration::from_secs(30)).await;
    let r = node
        .get(&format!("/v1/workspaces/{}/contacts", a.ws), &a.owner_key)
        .await;
    assert_eq!(r.status(), 401);
    for p in PROVIDERS {
        assert_eq!(
            open(&app.store, &app.vault, &b, p).await.unwrap(),
            secret_of(&b, p, 1)
        );
    }
    // The deletion is in the org's ledger, which still verifies without the destroyed key.
    let report = rampart_audit::verify_org(&app.store, &rampart_core::OperatorGrant::new(a.org))
        .await
        .unwrap();
    assert!(report.events >= 1);

    // The copy from before, opened with the master key in hand: nothing of A opens, B does.
    if let Some(copy) = copy {
        let old = match copy {
            Copy::Sqlite(path) => Store::open_sqlite(&path, common::pool_settings())
                .await
                .unwrap(),
            Copy::Postgres(url) => Store::connect_postgres(&url, common::pool_settings())
                .await
                .unwrap(),
        };
        let vault = Vault::new(
            test_keyring(&app.store, &app.db).await,
            app.master.clone(),
            Vec::new(),
            Arc::new(app.clock.clone()),
        );
        for p in PROVIDERS {
            assert!(
                matches!(open(&old, &vault, &a, p).await, Err(VaultError::NoKey(_))),
                "{p} of the deleted org opened from the old copy"
            );
            assert_eq!(
                open(&old, &vault, &b, p).await.unwrap(),
                secret_of(&b, p, 1)
            );
        }
        old.close().await;
        // The keyring itself no longer holds the destroyed wrapped key anywhere (PostgreSQL:
        // its table, shown with BYTEA as hex).
        if let Db::Postgres { .. } = &app.db {
            let ring = common::dump_everything(&app).await;
            let w = hex::encode(&wrapped_before[0].wrapped.bytes);
            assert!(
                !ring.contains(&w),
                "the destroyed wrapped key is still in the database"
            );
        }
        if let Db::Sqlite(path) = &app.db {
            let ring = rampart_store::keyring_path_for(path);
            let mut bytes = std::fs::read(&ring).unwrap();
            bytes.extend(std::fs::read(ring.with_extension("db-wal")).unwrap_or_default());
            let w = &wrapped_before[0].wrapped.bytes;
            assert!(
                !bytes.windows(w.len()).any(|x| x == w.as_slice()),
                "the destroyed wrapped key is still in the keyring file"
            );
        }
    }
}

/// A copy of the data taken before a deletion, as an attacker might later obtain a backup.
enum Copy {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

/// A copy of the PostgreSQL test database `name` as the README says to back it up
/// (`pg_dump --exclude-table-data=key_ring`: the keyring is kept apart), restored into a new
/// database; returns a URL to it (as the superuser: the copy's reader is an attacker).
async fn postgres_copy_without_keyring(admin_url: &str, name: &str) -> Copy {
    let opts: sqlx::postgres::PgConnectOptions = admin_url.parse().unwrap();
    let url_of = |db: &str| {
        format!(
            "postgres://{}@{}:{}/{db}",
            opts.get_username(),
            opts.get_host(),
            opts.get_port()
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("before-delete.pgdump");
    let out = std::process::Command::new("pg_dump")
        .args(["-Fc", "--exclude-table-data=key_ring", "-f"])
        .arg(&file)
        .arg(url_of(name))
        .output()
        .expect("pg_dump (PostgreSQL's client tools) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = format!(
        "rampart_t_{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    );
    let admin = sqlx::PgPool::connect(admin_url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {copy}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let out = std::process::Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "-d"])
        .arg(url_of(&copy))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Copy::Postgres(url_of(&copy))
}

async fn master_rotation_rewraps_every_key_resumably(app: TestApp) {
    let a = app.org("Alpha").await;
    let b = app.org("Beta").await;
    for org in [&a, &b] {
        set(&app, org, "twilio", &secret_of(org, "twilio", 1)).await;
    }
    let platform = app
        .vault
        .seal(
            KeyScope::Platform,
            "users",
            "totp_secret",
            "usr_x",
            b"JBSWY3DPEHPK3PXP",
        )
        .await
        .unwrap();
    let old = app.master.clone();
    let new = MasterKey::generate().unwrap();
    // Mid-rotation nodes hold both keys: the new one wraps, either unwraps.
    let both = Vault::new(
        test_keyring(&app.store, &app.db).await,
        new.clone(),
        vec![old.clone()],
        Arc::new(app.clock.clone()),
    );
    // A crash after rewrapping one key: rewrap that one by hand, then run the command.
    let rows = both.keyring().all().await.unwrap();
    assert_eq!(rows.len(), 3);
    let first = &rows[0];
    let fresh = rampart_crypto::rewrap_dek(&old, &new, first.scope, &first.wrapped).unwrap();
    assert!(
        both.keyring()
            .rewrap(first.scope, &first.wrapped.kek_id, &fresh)
            .await
            .unwrap()
    );
    let mut log = Vec::new();
    let done = rotate_master(&both, &new, &mut log).await.unwrap();
    assert_eq!(done["rewrapped"], 2, "{done}");
    assert!(String::from_utf8_lossy(&log).contains("rewrapped 2/2"));
    let again = rotate_master(&both, &new, &mut Vec::new()).await.unwrap();
    assert_eq!(again["rewrapped"], 0);
    assert!(
        both.keyring()
            .all()
            .await
            .unwrap()
            .iter()
            .all(|r| r.wrapped.kek_id == new.id())
    );
    // With only the new key, everything opens; with only the old one, nothing does.
    let only_new = Vault::new(
        test_keyring(&app.store, &app.db).await,
        new.clone(),
        Vec::new(),
        Arc::new(app.clock.clone()),
    );
    for org in [&a, &b] {
        assert_eq!(
            open(&app.store, &only_new, org, "twilio").await.unwrap(),
            secret_of(org, "twilio", 1)
        );
    }
    assert_eq!(
        only_new
            .open(
                KeyScope::Platform,
                "users",
                "totp_secret",
                "usr_x",
                &platform
            )
            .await
            .unwrap()
            .expose(),
        b"JBSWY3DPEHPK3PXP"
    );
    let only_old = Vault::new(
        test_keyring(&app.store, &app.db).await,
        old,
        Vec::new(),
        Arc::new(app.clock.clone()),
    );
    assert!(matches!(
        open(&app.store, &only_old, &a, "twilio").await,
        Err(VaultError::UnknownKek { .. })
    ));
}

async fn org_rotation_reencrypts_under_concurrent_writes(app: TestApp) {
    let a = app.org("Alpha").await;
    let b = app.org("Beta").await;
    for org in [&a, &b] {
        for p in PROVIDERS {
            set(&app, org, p, &secret_of(org, p, 0)).await;
        }
    }
    assert!(
        stored_versions(&app, &a)
            .await
            .iter()
            .all(|v| *v == Some(1))
    );
    // A writer keeps replacing A's twilio secret while the rotation runs.
    let app = Arc::new(app);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (app, a, stop) = (app.clone(), a.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                set(&app, &a, "twilio", &secret_of(&a, "twilio", n)).await;
                // Under the API key's rate limit (10 requests a second).
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            n
        })
    };
    let args = RotateOrg {
        org: a.org,
        batch: 1,
        settle_secs: 2,
        json: true,
    };
    // The rotation runs as the CLI does: its own vault and the wall clock, while the server's
    // vault keeps a cached key for up to its TTL.
    let cli_vault = Vault::new(
        test_keyring(&app.store, &app.db).await,
        app.master.clone(),
        Vec::new(),
        Arc::new(rampart_core::SystemClock),
    );
    let mut log = Vec::new();
    let done = rotate_org(&app.store, &cli_vault, &args, &mut log)
        .await
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let last = writer.await.unwrap();
    assert!(
        last > 5,
        "the writer ran during the rotation ({last} writes)"
    );
    assert_eq!(done["version"], 2);
    let text = String::from_utf8_lossy(&log).into_owned();
    assert!(text.contains("re-encrypted 3/3 values"), "{text}");
    // Old version retired; every value of A is under version 2 and opens; B is untouched.
    let versions = app
        .vault
        .keyring()
        .versions(KeyScope::Org(a.org))
        .await
        .unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].wrapped.dek_version, 2);
    assert!(
        stored_versions(&app, &a)
            .await
            .iter()
            .all(|v| *v == Some(2))
    );
    assert_eq!(
        open(&app.store, &app.vault, &a, "twilio").await.unwrap(),
        secret_of(&a, "twilio", last)
    );
    for p in ["smtp", "openai"] {
        assert_eq!(
            open(&app.store, &app.vault, &a, p).await.unwrap(),
            secret_of(&a, p, 0)
        );
    }
    assert!(
        stored_versions(&app, &b)
            .await
            .iter()
            .all(|v| *v == Some(1))
    );
    // New writes seal with version 2.
    set(&app, &a, "smtp", "after-rotation-secret").await;
    assert_eq!(stored_versions(&app, &a).await, vec![Some(2); 3]);
}

async fn org_rotation_resumes_after_a_crash(app: TestApp) {
    let a = app.org("Alpha").await;
    for p in PROVIDERS {
        set(&app, &a, p, &secret_of(&a, p, 0)).await;
    }
    let scope = KeyScope::Org(a.org);
    // The crashed run: version 2 made, one batch re-encrypted, then the process died.
    assert!(app.vault.add_version(scope, 2).await.unwrap());
    let (store, vault, org) = (app.store.clone(), app.vault.clone(), a.org);
    let crashed = tokio::spawn(async move {
        let mut batches = 0;
        let mut die = |_: u64, _: u64| {
            batches += 1;
            if batches == 1 {
                panic!("simulated crash after the first batch");
            }
        };
        store.reencrypt_org(&vault, org, 2, 1, &mut die).await
    })
    .await;
    assert!(crashed.is_err(), "the first run crashed");
    let mixed = stored_versions(&app, &a).await;
    assert_eq!(
        mixed.iter().filter(|v| **v == Some(2)).count(),
        1,
        "{mixed:?}"
    );
    // Meanwhile both versions stay readable.
    for p in PROVIDERS {
        assert_eq!(
            open(&app.store, &app.vault, &a, p).await.unwrap(),
            secret_of(&a, p, 0)
        );
    }
    let mut log = Vec::new();
    let args = RotateOrg {
        org: a.org,
        batch: 100,
        settle_secs: 0,
        json: true,
    };
    let done = rotate_org(&app.store, &app.vault, &args, &mut log)
        .await
        .unwrap();
    assert_eq!(done["version"], 2, "resumed, not a third version: {done}");
    assert_eq!(done["rewritten"], 2);
    assert!(String::from_utf8_lossy(&log).contains("resuming"));
    assert_eq!(stored_versions(&app, &a).await, vec![Some(2); 3]);
    assert_eq!(app.vault.keyring().versions(scope).await.unwrap().len(), 1);
    for p in PROVIDERS {
        assert_eq!(
            open(&app.store, &app.vault, &a, p).await.unwrap(),
            secret_of(&a, p, 0)
        );
    }
}

async fn fernet_values_import_under_the_org_key(app: TestApp) {
    let a = app.org("Alpha").await;
    let vectors: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../vectors/fernet_generate.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let v = &vectors["vectors"][0];
    let key_file = app.dir.path().join("fernet.key");
    std::fs::write(&key_file, v["secret"].as_str().unwrap()).unwrap();
    let file = app.dir.path().join("import.csv");
    std::fs::write(
        &file,
        format!(
            "# provider,token\nopenai,{}\n",
            v["token"].as_str().unwrap()
        ),
    )
    .unwrap();
    let args = ImportCredentials {
        workspace: a.ws,
        fernet_key_file: key_file.clone(),
        file: file.clone(),
        json: true,
    };
    let done = import_credentials(
        &app.store,
        &app.vault,
        &args,
        rampart_core::Clock::now(&app.clock),
        operator_event("credential.import"),
    )
    .await
    .unwrap();
    assert_eq!(done["imported"], json!(["openai"]));
    assert_eq!(
        open(&app.store, &app.vault, &a, "openai").await.unwrap(),
        v["src"].as_str().unwrap()
    );
    // A token under another key stops the import naming the line, writing nothing.
    std::fs::write(
        &file,
        format!("smtp,{}\n", v["token"].as_str().unwrap().replace('A', "B")),
    )
    .unwrap();
    let err = import_credentials(
        &app.store,
        &app.vault,
        &args,
        rampart_core::Clock::now(&app.clock),
        operator_event("credential.import"),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
    let mut tx = app
        .store
        .tenant(&OperatorGrant::new(a.org).in_workspace(a.ws), Mode::Read)
        .await
        .unwrap();
    assert!(credentials::get(&mut tx, "smtp").await.unwrap().is_none());
}
