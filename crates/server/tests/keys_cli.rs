//! The key commands through the real `rampart` binary: a data key at organization creation in
//! a private keyring file beside the database, import, rotations with progress on stderr,
//! crypto-erasure by `admin delete-org`, and `serve` refusing a short key file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use rampart_core::{OperatorGrant, OrgId, SystemClock, WorkspaceId};
use rampart_store::credentials;
use rampart_store::{KeyScope, Keyring, MasterKey, Mode, PoolSettings, Store, Vault, VaultError};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

fn run(data: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RAMPART_DATA_DIR", data)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn ok(data: &Path, env: &[(&str, &str)], args: &[&str]) -> (Value, String) {
    let out = run(data, env, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "rampart {args:?} failed: {err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    (serde_json::from_str(last).unwrap(), err)
}

async fn open_openai(
    db: &Path,
    data: &Path,
    key: &MasterKey,
    org: OrgId,
    ws: WorkspaceId,
) -> Result<String, VaultError> {
    let store = Store::open_sqlite(db, PoolSettings::default())
        .await
        .unwrap();
    let ring = Keyring::open_sqlite(&data.join("keyring.db"))
        .await
        .unwrap();
    let vault = Vault::new(ring, key.clone(), Vec::new(), Arc::new(SystemClock));
    let mut tx = store
        .tenant(&OperatorGrant::new(org).in_workspace(ws), Mode::Read)
        .await
        .unwrap();
    let stored = credentials::get(&mut tx, "openai").await.unwrap().unwrap();
    drop(tx);
    let result = rampart::routes::credentials::reveal(&vault, org, &stored)
        .await
        .map(|s| String::from_utf8(s.expose().clone()).unwrap());
    vault.keyring().close().await;
    store.close().await;
    result
}

#[tokio::test]
async fn key_commands_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (made, _) = ok(
        &data,
        &[],
        &[
            "admin",
            "create-org",
            "--name",
            "Acme",
            "--owner-email",
            "o@acme.example.com",
            "--json",
        ],
    );
    let org: OrgId = made["org_id"].as_str().unwrap().parse().unwrap();
    let ws: WorkspaceId = made["workspace_id"].as_str().unwrap().parse().unwrap();
    let ring_path = data.join("keyring.db");
    assert_eq!(
        std::fs::metadata(&ring_path).unwrap().permissions().mode() & 0o777,
        0o600,
        "the keyring file is private"
    );

    // Import a Fernet-encrypted secret (the key comes from a file, not the command line).
    let vectors: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../vectors/fernet_generate.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let v = &vectors["vectors"][0];
    let key_file = tmp.path().join("fernet.key");
    std::fs::write(&key_file, v["secret"].as_str().unwrap()).unwrap();
    let rows = tmp.path().join("creds.csv");
    std::fs::write(&rows, format!("openai,{}\n", v["token"].as_str().unwrap())).unwrap();
    let ws_s = ws.to_string();
    let (imported, _) = ok(
        &data,
        &[],
        &[
            "import",
            "credentials",
            "--workspace",
            &ws_s,
            "--fernet-key-file",
            key_file.to_str().unwrap(),
            "--file",
            rows.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(imported["imported"][0], "openai");
    let master = MasterKey::load_file(&data.join("master.key")).unwrap();
    let db = data.join("rampart.db");
    assert_eq!(
        open_openai(&db, &data, &master, org, ws).await.unwrap(),
        "hello"
    );

    // Data key rotation, progress on stderr.
    let org_s = org.to_string();
    let (rotated, progress) = ok(
        &data,
        &[],
        &[
            "keys",
            "rotate-org",
            "--org",
            &org_s,
            "--settle-secs",
            "0",
            "--json",
        ],
    );
    assert_eq!(rotated["version"], 2);
    assert!(progress.contains("re-encrypted 1/1 values"), "{progress}");

    // Master key rotation: a new key file, then serve-side configuration switches to it.
    let new_key = tmp.path().join("new.key");
    let (_, _) = ok(
        &data,
        &[("RAMPART_MASTER_KEY_FILE", new_key.to_str().unwrap())],
        &["keys", "init", "--json"],
    );
    let (rewrapped, progress) = ok(
        &data,
        &[],
        &[
            "keys",
            "rotate-master",
            "--new-key-file",
            new_key.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(rewrapped["rewrapped"], 1);
    assert!(progress.contains("rewrapped 1/1"), "{progress}");
    // The old key alone no longer opens the keyring: commands say why instead of failing later.
    let out = run(
        &data,
        &[],
        &[
            "admin", "set-plan", "--org", &org_s, "--plan", "pro", "--json",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("but the configured master key is"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_env = [("RAMPART_MASTER_KEY_FILE", new_key.to_str().unwrap())];
    let new_master = MasterKey::load_file(&new_key).unwrap();
    assert_eq!(
        open_openai(&db, &data, &new_master, org, ws).await.unwrap(),
        "hello"
    );

    // A copy of the database from before the deletion (no command holds it open now).
    let copy = tmp.path().join("before-delete.db");
    std::fs::copy(&db, &copy).unwrap();
    assert!(
        !data.join("rampart.db-wal").exists()
            || std::fs::metadata(data.join("rampart.db-wal"))
                .unwrap()
                .len()
                == 0
    );

    let out = run(&data, &new_env, &["admin", "delete-org", "--org", &org_s]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--now --yes"));
    let (deleted, _) = ok(
        &data,
        &new_env,
        &[
            "admin",
            "delete-org",
            "--org",
            &org_s,
            "--now",
            "--yes",
            "--settle-secs",
            "1",
            "--json",
        ],
    );
    assert_eq!(deleted["data_keys_destroyed"], 1);
    assert!(matches!(
        open_openai(&copy, &data, &new_master, org, ws).await,
        Err(VaultError::NoKey(KeyScope::Org(o))) if o == org
    ));
    let (verified, _) = ok(
        &data,
        &new_env,
        &["audit", "verify", "--org", &org_s, "--json"],
    );
    assert_eq!(verified["results"][0]["ok"], true);
}

#[tokio::test]
async fn serve_refuses_a_short_key_file_saying_why() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let key = data.join("master.key");
    std::fs::write(&key, "c2hvcnQ=\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(&data, &[], &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("not base64 of exactly 32 bytes"), "{said}");
}
