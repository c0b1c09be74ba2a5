//! Findings of the security review (issue 32) in the request path, each reproduced on both
//! backends: a new API key never rests in the idempotency store, a client cannot choose the
//! request id the ledger records, and an IPv6 client is one client per /64.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use common::{TestApp, dump_everything, events};
use reqwest::Method;
use serde_json::{Value, json};

both_backends!(
    a_minted_key_is_never_stored_for_a_replay,
    the_ledger_records_the_servers_request_id_not_the_clients,
);

mod by_network {
    use super::*;
    both_backends_with!(behind_a_proxy; an_ipv6_client_is_one_client_per_network);
}

async fn a_minted_key_is_never_stored_for_a_replay(app: TestApp) {
    let org = app.org("Acme").await;
    let path = format!("/v1/workspaces/{}/api-keys", org.ws);
    let mint = || {
        app.req(Method::POST, &path, &org.owner_key)
            .header("Idempotency-Key", "mint-1")
            .json(&json!({"name": "ci", "role": "viewer"}))
    };
    let first = mint().send().await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let key = first["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("rk_live_"));

    // Nothing at rest holds the key: not the key table (a hash), not the stored response, not
    // any other table.
    let dump = dump_everything(&app).await;
    let secret_part = key.trim_start_matches("rk_live_");
    assert!(
        !dump.contains(secret_part),
        "the key rests in plaintext:\n{dump}"
    );
    assert!(
        dump.contains("mint-1"),
        "the idempotency record itself is kept"
    );

    // A retry is answered from the record: the same outcome, without the secret.
    let replay = mint().send().await.unwrap();
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["id"], first["id"], "the same key, not a second one");
    assert_eq!(
        replay["key"],
        rampart::http::mutation::NOT_SHOWN_AGAIN,
        "the secret is shown once"
    );
    assert_eq!(replay["role"], "viewer");
    let list: Value = app.get(&path, &org.owner_key).await.json().await.unwrap();
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        2,
        "owner key and one minted"
    );
    // The key shown the first time works.
    let r = app
        .get(&format!("/v1/workspaces/{}/contacts", org.ws), &key)
        .await;
    assert_eq!(r.status(), 200);
}

async fn the_ledger_records_the_servers_request_id_not_the_clients(app: TestApp) {
    let org = app.org("Acme").await;
    let path = format!("/v1/workspaces/{}/contacts", org.ws);
    let mut server_ids = Vec::new();
    for name in ["One", "Two"] {
        let r = app
            .req(Method::POST, &path, &org.owner_key)
            .header("x-request-id", "chosen-by-client")
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(id.starts_with("req_"), "{id}");
        assert_eq!(r.headers()["x-client-request-id"], "chosen-by-client");
        server_ids.push(id);
    }
    assert_ne!(server_ids[0], server_ids[1]);
    let ev = events(&app, &org.ws, &org.owner_key).await;
    let creates: Vec<&Value> = ev
        .iter()
        .filter(|e| e["action"] == "contact.create")
        .collect();
    let recorded: Vec<&str> = creates
        .iter()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(recorded, server_ids, "one id per request, the server's");
}

fn behind_a_proxy(state: rampart::AppState) -> rampart::AppState {
    let mut limits = rampart::http::limits::LimitSettings::default();
    limits.rates.api_per_ip = 3;
    state
        .with_trusted_proxies(vec!["127.0.0.0/8".parse().unwrap()])
        .with_limits(std::sync::Arc::new(rampart_guard::Limiter::local()), limits)
}

async fn an_ipv6_client_is_one_client_per_network(app: TestApp) {
    let org = app.org("Acme").await;
    let path = format!("/v1/workspaces/{}/contacts", org.ws);
    let from = |ip: &str| {
        app.req(Method::GET, &path, &org.owner_key)
            .header("X-Forwarded-For", ip)
    };
    // Three requests, each from another address of one /64: its budget of three is spent.
    for host in ["1", "2", "3"] {
        let r = from(&format!("2001:db8:7:1::{host}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
    let r = from("2001:db8:7:1:ffff::9").send().await.unwrap();
    assert_eq!(
        r.status(),
        429,
        "a fresh address of the same /64 is the same client"
    );
    let r = from("2001:db8:7:2::1").send().await.unwrap();
    assert_eq!(r.status(), 200, "the next /64 is another client");
}
