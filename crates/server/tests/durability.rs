//! Crash durability of the real binary, on SQLite and on PostgreSQL: writers create contacts
//! through HTTP while the server is killed with SIGKILL at a random moment, a few times over.
//! After the restarts every acknowledged (201) create is there exactly once, the audit chain
//! verifies, and a retry of each request left in doubt by a kill, with its `Idempotency-Key`,
//! creates its contact at most once.
//!
//! The random moments come from a seed printed at the start; `RAMPART_TEST_SEED` repeats a run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::binary::{Server, cli, org_with_key, start};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const WRITERS: usize = 6;
const CYCLES: usize = 3;

/// One create request: its idempotency key and exact body.
#[derive(Clone)]
struct Create {
    key: String,
    body: String,
    name: String,
}

#[derive(Default)]
struct Outcomes {
    /// Acknowledged: name and the id the 201 named.
    acked: Vec<(String, String)>,
    /// Sent, but the server died before answering.
    in_doubt: Vec<Create>,
}

fn seed(backend: &str) -> u64 {
    let seed = std::env::var("RAMPART_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("{backend}: durability seed {seed} (RAMPART_TEST_SEED={seed} repeats this run)");
    seed
}

/// Writers posting contacts until `stop`; each outcome recorded.
fn spawn_writers(
    server: &Server,
    ws: &str,
    api_key: &str,
    cycle: usize,
    stop: &Arc<AtomicBool>,
    outcomes: &Arc<Mutex<Outcomes>>,
    acked_now: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let url = server.url(&format!("/v1/workspaces/{ws}/contacts"));
    (0..WRITERS)
        .map(|w| {
            let (url, api_key) = (url.clone(), api_key.to_owned());
            let (stop, outcomes, acked_now) = (stop.clone(), outcomes.clone(), acked_now.clone());
            tokio::spawn(async move {
                // A fail-safe only: a killed server fails requests at once.
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .unwrap();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    // No email: a contact created twice would show as two rows with one name.
                    let name = format!("c{cycle}-w{w}-n{n}");
                    let create = Create {
                        key: format!("idem-{name}"),
                        body: json!({"name": name, "tags": ["durability"]}).to_string(),
                        name,
                    };
                    let sent = client
                        .post(&url)
                        .bearer_auth(&api_key)
                        .header("content-type", "application/json")
                        .header("idempotency-key", &create.key)
                        .body(create.body.clone())
                        .send()
                        .await;
                    let response = match sent {
                        Ok(r) => r,
                        Err(_) => {
                            outcomes.lock().unwrap().in_doubt.push(create);
                            return;
                        }
                    };
                    let status = response.status().as_u16();
                    match response.json::<Value>().await {
                        Ok(v) if status == 201 => {
                            let id = v["id"].as_str().unwrap().to_owned();
                            outcomes.lock().unwrap().acked.push((create.name, id));
                            acked_now.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(v) => panic!("a create before the kill answered {status}: {v}"),
                        // The status line came but the body did not: not acknowledged.
                        Err(_) => {
                            outcomes.lock().unwrap().in_doubt.push(create);
                            return;
                        }
                    }
                }
            })
        })
        .collect()
}

/// Every contact's name, with how many rows carry it, and the ids by name.
async fn all_contacts(server: &Server, ws: &str, key: &str) -> HashMap<String, Vec<String>> {
    let client = reqwest::Client::new();
    let mut by_name: HashMap<String, Vec<String>> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = server.url(&format!("/v1/workspaces/{ws}/contacts?limit=200"));
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client
            .get(url)
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for c in page["data"].as_array().unwrap() {
            by_name
                .entry(c["name"].as_str().unwrap().to_owned())
                .or_default()
                .push(c["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return by_name,
        }
    }
}

async fn kill_loop(backend: &str, data: &Path, env: &[(&str, &str)]) {
    let mut rng = StdRng::seed_from_u64(seed(backend));
    let mut env = env.to_vec();
    env.extend([
        ("RAMPART_RATE_LIMITS__API_PER_KEY", "1000000"),
        ("RAMPART_RATE_LIMITS__API_PER_IP", "1000000"),
    ]);
    let env = env.as_slice();
    let (ws, key) = org_with_key(data, env, "enterprise");
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));

    for cycle in 0..CYCLES {
        let mut server = start(data, env);
        let stop = Arc::new(AtomicBool::new(false));
        let acked_now = Arc::new(AtomicUsize::new(0));
        let writers = spawn_writers(&server, &ws, &key, cycle, &stop, &outcomes, &acked_now);
        // Under load first (some creates acknowledged), then a random moment later.
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked_now.load(Ordering::Relaxed) < WRITERS {
            assert!(Instant::now() < deadline, "no create was acknowledged");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let delay = rng.random_range(50..1500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        println!(
            "{backend} cycle {cycle}: killed {delay} ms into the load, {} acknowledged so far",
            outcomes.lock().unwrap().acked.len()
        );
    }

    let server = start(data, env);
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    assert!(!outcomes.acked.is_empty());
    let before = all_contacts(&server, &ws, &key).await;
    for (name, id) in &outcomes.acked {
        assert_eq!(
            before.get(name),
            Some(&vec![id.clone()]),
            "acknowledged create {name} ({id}) lost or duplicated after kill -9"
        );
    }
    assert!(before.values().all(|ids| ids.len() == 1), "a duplicate");

    // Each request in doubt, retried with its key: created now, or its first answer replayed.
    let client = reqwest::Client::new();
    let url = server.url(&format!("/v1/workspaces/{ws}/contacts"));
    for create in &outcomes.in_doubt {
        let response = client
            .post(&url)
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .header("idempotency-key", &create.key)
            .body(create.body.clone())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let replayed = response.headers().contains_key("idempotent-replayed");
        let v: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "retry of {}: {v}", create.name);
        assert_eq!(
            replayed,
            before.contains_key(&create.name),
            "a retry replays exactly when the first attempt had committed ({})",
            create.name
        );
    }
    let after = all_contacts(&server, &ws, &key).await;
    for create in &outcomes.in_doubt {
        assert_eq!(
            after.get(&create.name).map(Vec::len),
            Some(1),
            "{} created once",
            create.name
        );
    }
    assert!(after.values().all(|ids| ids.len() == 1), "a duplicate");
    println!(
        "{backend}: {} acknowledged, {} in doubt ({} had committed), {} contacts",
        outcomes.acked.len(),
        outcomes.in_doubt.len(),
        outcomes
            .in_doubt
            .iter()
            .filter(|c| before.contains_key(&c.name))
            .count(),
        after.len()
    );

    let verified = cli(data, env, &["audit", "verify", "--json"]);
    let results = verified["results"].as_array().unwrap();
    assert!(!results.is_empty());
    assert!(results.iter().all(|r| r["ok"] == true), "{verified}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    kill_loop("sqlite", &tmp.path().join("data"), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_on_postgres() {
    let Some(admin_url) = common::postgres_admin_url() else {
        return;
    };
    let (owner_url, app_url, _name) = common::fresh_postgres(&admin_url).await;
    let tmp = tempfile::tempdir().unwrap();
    kill_loop(
        "postgres",
        &tmp.path().join("data"),
        &[
            ("RAMPART_DATABASE_URL", app_url.as_str()),
            ("RAMPART_DATABASE_OWNER_URL", owner_url.as_str()),
        ],
    )
    .await;
}
