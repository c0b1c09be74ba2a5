//! Encrypt/decrypt throughput of Rampart's field encryption against the raw AEAD, in one run:
//! raw AES-256-GCM (fresh nonce, no associated data), `rampart_crypto::field` (versioned form,
//! location-bound associated data) and `Vault` (the scope's key from the cache, as the server
//! calls it). Prints a Markdown table; nothing passes or fails on time.
//!
//! `cargo run --release -p rampart-store --example vault_throughput`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use rampart_core::{OrgId, SystemClock};
use rampart_crypto::field::{self, FieldAad};
use rampart_crypto::{DataKey, KeyScope};
use rampart_store::{Keyring, MasterKey, Vault};

const RUNS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Operations a second from the median of [`RUNS`] timed loops of `n` calls.
async fn rate<F, Fut>(n: usize, mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        for _ in 0..n {
            f().await;
        }
        times.push(start.elapsed());
    }
    n as f64 / median(times).as_secs_f64()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = Keyring::open_sqlite(&dir.path().join("keyring.db"))
        .await
        .unwrap();
    let vault = Vault::new(
        keyring,
        MasterKey::generate().unwrap(),
        Vec::new(),
        Arc::new(SystemClock),
    );
    let scope = KeyScope::Org(OrgId::generate());
    vault.ensure_key(scope).await.unwrap();
    let dek = DataKey::generate(1).unwrap();
    let raw_key: [u8; 32] = rampart_crypto::random::bytes().unwrap();
    let cipher = Aes256Gcm::new((&raw_key).into());
    let aad = FieldAad {
        scope,
        table: "credentials",
        column: "secret",
        row: "cred_01jbench",
    };

    println!("| size | operation | raw AES-256-GCM /s | field /s | Vault /s | Vault vs raw |");
    println!("|---|---|---|---|---|---|");
    for size in [32usize, 1024, 16 * 1024] {
        let n = if size > 4096 { 5_000 } else { 50_000 };
        let plain = vec![7u8; size];

        let raw_seal = rate(n, || async {
            let nonce: [u8; 12] = rampart_crypto::random::bytes().unwrap();
            std::hint::black_box(
                cipher
                    .encrypt(
                        (&nonce).into(),
                        Payload {
                            msg: &plain,
                            aad: b"",
                        },
                    )
                    .unwrap(),
            );
        })
        .await;
        let field_seal = rate(n, || async {
            std::hint::black_box(field::seal(&dek, &aad, &plain).unwrap());
        })
        .await;
        let vault_seal = rate(n, || async {
            std::hint::black_box(
                vault
                    .seal(scope, aad.table, aad.column, aad.row, &plain)
                    .await
                    .unwrap(),
            );
        })
        .await;

        let nonce = [1u8; 12];
        let raw_ct = cipher
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: &plain,
                    aad: b"",
                },
            )
            .unwrap();
        let field_ct = field::seal(&dek, &aad, &plain).unwrap();
        let vault_ct = vault
            .seal(scope, aad.table, aad.column, aad.row, &plain)
            .await
            .unwrap();
        let raw_open = rate(n, || async {
            std::hint::black_box(
                cipher
                    .decrypt(
                        (&nonce).into(),
                        Payload {
                            msg: &raw_ct,
                            aad: b"",
                        },
                    )
                    .unwrap(),
            );
        })
        .await;
        let field_open = rate(n, || async {
            std::hint::black_box(field::open(&dek, &aad, &field_ct).unwrap());
        })
        .await;
        let vault_open = rate(n, || async {
            std::hint::black_box(
                vault
                    .open(scope, aad.table, aad.column, aad.row, &vault_ct)
                    .await
                    .unwrap(),
            );
        })
        .await;
        for (op, raw, fld, v) in [
            ("seal", raw_seal, field_seal, vault_seal),
            ("open", raw_open, field_open, vault_open),
        ] {
            println!(
                "| {size} B | {op} | {raw:.0} | {fld:.0} | {v:.0} | {:.2}× |",
                v / raw
            );
        }
    }
    vault.keyring().close().await;
}
