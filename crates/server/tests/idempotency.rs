//! `Idempotency-Key` on mutating routes: a retry gets the first outcome and the work happens
//! once; the same key with another request is refused; a duplicate while the first is still
//! running is refused; keys are per caller and workspace, and expire after 24 hours.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use common::{Backend, Db, TestApp, error_of};
use rampart_core::{OperatorGrant, Role};
use rampart_store::idempotency::Claim;
use serde_json::{Value, json};

both_backends!(
    every_mutating_tenant_route_replays_a_retry,
    a_server_error_is_not_stored_and_a_retry_runs_again,
    replays_return_the_first_outcome_and_do_the_work_once,
    keys_expire_and_abandoned_claims_are_taken_over,
    concurrent_duplicates_do_the_work_once
);

async fn send(app: &TestApp, key: &str, idem: &str, body: Value) -> reqwest::Response {
    app.req(
        reqwest::Method::POST,
        &format!("/v1/workspaces/{}/contacts", workspace_of(key)),
        key,
    )
    .header("idempotency-key", idem)
    .json(&body)
    .send()
    .await
    .unwrap()
}

fn workspace_of(key: &str) -> String {
    // rk_live_<ws body>_<secret>
    let body = &key["rk_live_".len()..key.len() - 44];
    format!("ws_{body}")
}

async fn replays_return_the_first_outcome_and_do_the_work_once(app: TestApp) {
    let org = app.org("Acme").await;
    let first = send(
        &app,
        &org.owner_key,
        "create-ann",
        json!({"name": "Ann", "email": "ann@example.com"}),
    )
    .await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let location = first.headers()["location"].clone();
    let body: Value = first.json().await.unwrap();

    let again = send(
        &app,
        &org.owner_key,
        "create-ann",
        json!({"name": "Ann", "email": "ann@example.com"}),
    )
    .await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["location"], location);
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        body,
        "the stored response, byte for byte"
    );
    assert_eq!(
        app.all_contacts(&org).await.len(),
        1,
        "the work happened once"
    );

    let (status, code, _) =
        error_of(send(&app, &org.owner_key, "create-ann", json!({"name": "Bob"})).await).await;
    assert_eq!((status, code.as_str()), (422, "IDEMPOTENCY_KEY_REUSED"));

    // Keys are per caller: another key may use the same string.
    let other = app.key(org.ws, Role::Admin).await;
    assert_eq!(
        send(&app, &other, "create-ann", json!({"name": "Bob"}))
            .await
            .status(),
        201
    );

    // A client error is an outcome too: replayed, not re-run.
    let bad = send(&app, &org.owner_key, "bad-one", json!({"email": "nope"})).await;
    assert_eq!(bad.status(), 422);
    let bad_again = send(&app, &org.owner_key, "bad-one", json!({"email": "nope"})).await;
    assert_eq!(bad_again.status(), 422);
    assert_eq!(bad_again.headers()["idempotent-replayed"], "true");

    // A malformed key is refused, and recorded like every other mutation.
    let (status, code, body) =
        error_of(send(&app, &org.owner_key, &"k".repeat(256), json!({"name": "X"})).await).await;
    assert_eq!((status, code.as_str()), (422, "INVALID"), "{body}");
    assert_eq!(body["error"]["field"], "Idempotency-Key");
    assert_eq!(app.all_contacts(&org).await.len(), 2);
}

/// Eight copies of one request sent at once: the work happens once. On SQLite the claim sits in
/// the change's own transaction and the single writer serializes the copies, so every copy gets
/// the first outcome; on PostgreSQL a copy that arrives mid-flight may get 409 instead.
async fn concurrent_duplicates_do_the_work_once(app: TestApp) {
    let org = app.org("Acme").await;
    let url = format!("/v1/workspaces/{}/contacts", org.ws);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let request = app
            .req(reqwest::Method::POST, &url, &org.owner_key)
            .header("idempotency-key", "burst")
            .json(&json!({"name": "Burst", "email": "burst@example.com"}));
        tasks.push(tokio::spawn(async move { request.send().await.unwrap() }));
    }
    let mut responses = Vec::new();
    for t in tasks {
        responses.push(t.await.unwrap());
    }
    let mut created = None;
    let (mut fresh, mut replayed, mut in_use) = (0, 0, 0);
    for r in responses {
        let status = r.status().as_u16();
        let was_replayed = r.headers().contains_key("idempotent-replayed");
        let body: Value = r.json().await.unwrap();
        match status {
            201 => {
                let id = body["id"].as_str().unwrap().to_owned();
                assert_eq!(created.get_or_insert(id.clone()), &id, "one contact");
                if was_replayed {
                    replayed += 1;
                } else {
                    fresh += 1;
                }
            }
            409 => {
                assert_eq!(body["error"]["code"], "IDEMPOTENCY_KEY_IN_USE");
                in_use += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(fresh, 1, "exactly one copy did the work");
    assert_eq!(fresh + replayed + in_use, 8);
    if app.backend == Backend::Sqlite {
        assert_eq!((replayed, in_use), (7, 0), "SQLite serializes the copies");
    }
    assert_eq!(app.all_contacts(&org).await.len(), 1);
}

async fn keys_expire_and_abandoned_claims_are_taken_over(app: TestApp) {
    let org = app.org("Acme").await;
    assert_eq!(
        send(&app, &org.owner_key, "daily", json!({"name": "Day 1"}))
            .await
            .status(),
        201
    );
    app.clock.advance(chrono::Duration::hours(25));
    assert_eq!(
        send(&app, &org.owner_key, "daily", json!({"name": "Day 2"}))
            .await
            .status(),
        201,
        "expired keys are purged"
    );
    assert_eq!(app.all_contacts(&org).await.len(), 2);

    // A claim whose request died (a crash) blocks duplicates only until its lock lapses.
    let grant = OperatorGrant::new(org.org).in_workspace(org.ws);
    let now = app.clock.now_for_tests();
    assert_eq!(
        app.store
            .idempotency_claim(&grant, "k", "h", now)
            .await
            .unwrap(),
        Claim::Claimed
    );
    assert_eq!(
        app.store
            .idempotency_claim(&grant, "k", "h", now)
            .await
            .unwrap(),
        Claim::InUse
    );
    assert_eq!(
        app.store
            .idempotency_claim(&grant, "k", "other", now)
            .await
            .unwrap(),
        Claim::Reused
    );
    let later = now + chrono::Duration::seconds(61);
    assert_eq!(
        app.store
            .idempotency_claim(&grant, "k", "h", later)
            .await
            .unwrap(),
        Claim::Claimed
    );
}

/// A duplicate that arrives while the first request is still running gets 409 (PostgreSQL:
/// the first request is held mid-transaction by a lock; SQLite's single writer serializes the
/// two, so the duplicate would simply wait and be replayed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_in_flight_is_refused() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let org = app.org("Acme").await;
    let Db::Postgres { owner_url, .. } = &app.db else {
        unreachable!()
    };
    let owner = sqlx::PgPool::connect(owner_url).await.unwrap();
    let mut blocker = owner.begin().await.unwrap();
    sqlx::query("LOCK TABLE contact_tags IN EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();

    let (client, url, key) = (
        app.client.clone(),
        app.url(&format!("/v1/workspaces/{}/contacts", org.ws)),
        org.owner_key.clone(),
    );
    let first = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(key)
            .header("idempotency-key", "slow")
            .json(&json!({"name": "Slow", "tags": ["t"]}))
            .send()
            .await
            .unwrap()
    });
    common::wait_until_blocked_on(&owner, "contact_tags").await;
    let (status, code, _) = error_of(
        send(
            &app,
            &org.owner_key,
            "slow",
            json!({"name": "Slow", "tags": ["t"]}),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "IDEMPOTENCY_KEY_IN_USE"));
    blocker.commit().await.unwrap();
    assert_eq!(first.await.unwrap().status(), 201);
    let replay = send(
        &app,
        &org.owner_key,
        "slow",
        json!({"name": "Slow", "tags": ["t"]}),
    )
    .await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(app.all_contacts(&org).await.len(), 1);
}

/// README: "Every mutating route accepts `Idempotency-Key` … a retry with the same request gets
/// the stored status and body with `Idempotent-Replayed: true`". Walked over every tenant route
/// of the manifest that mutates (a route added there joins this test), each with its example
/// body against a real object; the first answer is a success, the retry is its replay, and
/// what was done once is not done again (a replayed DELETE answers its 204, not 404; a
/// replayed POST makes nothing new).
async fn every_mutating_tenant_route_replays_a_retry(app: TestApp) {
    use rampart::manifest::{Scope, Target, specs};
    let org = app.org("Acme").await;
    let contact = app
        .contact(
            &org,
            json!({"name": "Fixture", "email": "fixture@example.com"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let made: Value = app
        .post(
            &format!("/v1/workspaces/{}/api-keys", org.ws),
            &org.owner_key,
            &json!({"name": "fixture", "role": "viewer"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let api_key = made["id"].as_str().unwrap().to_owned();
    let (_, member) = app
        .store
        .add_member(
            org.ws,
            &rampart_core::Email::parse("member@example.com").unwrap(),
            Role::Member,
            app.clock.now_for_tests(),
            None,
        )
        .await
        .unwrap();
    let member = member.to_string();
    // The invitation the DELETE revokes.
    let invited: Value = app
        .post(
            &format!("/v1/workspaces/{}/invitations", org.ws),
            &org.owner_key,
            &json!({"email": "fixture-invitee@example.com", "role": "viewer"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let invitation = invited["id"].as_str().unwrap().to_owned();
    // The credential the DELETE removes.
    let r = app
        .req(
            reqwest::Method::PUT,
            &format!("/v1/workspaces/{}/credentials/twilio", org.ws),
            &org.owner_key,
        )
        .json(&json!({"secret": "fixture-secret-0000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let mut routes: Vec<_> = specs()
        .into_iter()
        .filter(|s| s.scope == Scope::Tenant && s.mutates)
        .collect();
    // Destructive routes last, the member's removal after its other routes.
    routes.sort_by_key(|s| (s.destructive, s.path.ends_with("/members/{id}")));
    assert_eq!(routes.len(), 12, "the manifest's mutating tenant routes");
    for (n, spec) in routes.iter().enumerate() {
        let id = match spec.target {
            Target::None => None,
            Target::Contact => Some(contact.as_str()),
            Target::ApiKey => Some(api_key.as_str()),
            Target::Member => Some(member.as_str()),
            Target::Invitation => Some(invitation.as_str()),
            Target::Session => panic!(
                "{} {}: a session is no tenant target",
                spec.method, spec.path
            ),
        };
        let mut path = spec
            .path
            .replace("{ws}", &org.ws.to_string())
            .replace("{provider}", "twilio");
        if let Some(id) = id {
            path = path.replace("{id}", id);
        }
        let idem = format!("route-{n}");
        let send = || {
            let mut req = app
                .req(spec.method.clone(), &path, &org.owner_key)
                .header("idempotency-key", &idem);
            if let Some(body) = spec.example_body {
                req = req.header("content-type", "application/json").body(body);
            }
            req.send()
        };
        let first = send().await.unwrap();
        let status = first.status();
        assert!(
            status.is_success(),
            "{} {path}: {status} {}",
            spec.method,
            first.text().await.unwrap()
        );
        assert!(first.headers().get("idempotent-replayed").is_none());
        let body = first.bytes().await.unwrap();
        let contacts = app.all_contacts(&org).await.len();

        let again = send().await.unwrap();
        assert_eq!(again.status(), status, "{} {path}", spec.method);
        assert_eq!(
            again
                .headers()
                .get("idempotent-replayed")
                .map(|v| v.to_str().unwrap()),
            Some("true"),
            "{} {path}",
            spec.method
        );
        let replayed = again.bytes().await.unwrap();
        if spec.action == "api_key.create" {
            // The one secret-bearing answer: replayed with the key redacted, the rest alike.
            let mut want: Value = serde_json::from_slice(&body).unwrap();
            want["key"] = rampart::http::mutation::NOT_SHOWN_AGAIN.into();
            let got: Value = serde_json::from_slice(&replayed).unwrap();
            assert_eq!(got, want, "{} {path}", spec.method);
        } else {
            assert_eq!(replayed, body, "{} {path}", spec.method);
        }
        assert_eq!(
            app.all_contacts(&org).await.len(),
            contacts,
            "{} {path}",
            spec.method
        );
    }
    // Each POST made one thing, not two.
    let keys: Value = app
        .get(
            &format!("/v1/workspaces/{}/api-keys", org.ws),
            &org.owner_key,
        )
        .await
        .json()
        .await
        .unwrap();
    let probes = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["name"] == "matrix probe")
        .count();
    assert_eq!(probes, 1, "one key minted");
    let invitations: Value = app
        .get(
            &format!("/v1/workspaces/{}/invitations", org.ws),
            &org.owner_key,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        invitations["data"].as_array().unwrap().len(),
        1,
        "{invitations}"
    );
}

/// README: "Server errors (5xx) are not stored, so a retry runs again." The database refuses
/// the first attempt's write (a trigger, as a failing disk or a lost connection would), the
/// server answers 500; once the database accepts writes again, the same request with the same
/// key does the work, and is not a replay.
async fn a_server_error_is_not_stored_and_a_retry_runs_again(app: TestApp) {
    let org = app.org("Acme").await;
    let (o, w) = (org.org.to_string(), org.ws.to_string());
    let (refuse, allow): (Vec<&str>, Vec<&str>) = match app.backend {
        Backend::Sqlite => (
            vec![
                "CREATE TRIGGER test_refuse_contacts BEFORE INSERT ON contacts BEGIN SELECT RAISE(ABORT, 'refused for the test'); END",
            ],
            vec!["DROP TRIGGER test_refuse_contacts"],
        ),
        Backend::Postgres => (
            vec![
                "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused for the test'; END $$",
                "CREATE TRIGGER test_refuse_contacts BEFORE INSERT ON contacts FOR EACH ROW EXECUTE FUNCTION test_refuse()",
            ],
            vec![
                "DROP TRIGGER test_refuse_contacts ON contacts",
                "DROP FUNCTION test_refuse()",
            ],
        ),
    };
    common::owner_sql(&app, &o, &w, &refuse).await.unwrap();
    let body = json!({"name": "Ann", "email": "ann@example.com"});
    let (status, code, _) =
        error_of(send(&app, &org.owner_key, "retry-me", body.clone()).await).await;
    assert_eq!((status, code.as_str()), (500, "INTERNAL"));
    assert!(app.all_contacts(&org).await.is_empty());

    common::owner_sql(&app, &o, &w, &allow).await.unwrap();
    let again = send(&app, &org.owner_key, "retry-me", body).await;
    assert_eq!(again.status(), 201, "the retry ran");
    assert!(again.headers().get("idempotent-replayed").is_none());
    let made: Value = again.json().await.unwrap();
    let all = app.all_contacts(&org).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["id"], made["id"]);
}
