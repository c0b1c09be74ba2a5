//! The audit ledger and mutation guard over HTTP, on SQLite and PostgreSQL: every mutating
//! request is recorded whatever its outcome, a change never commits without its event, the
//! chain verifies, every kind of tampering is caught at the first bad sequence number, the
//! table is append-only in the database itself, retention keeps the chain provable, and
//! parallel writers neither fork nor leave gaps.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use common::{Org, TestApp, app_sql, disable_ledger_triggers, error_of, events, owner_sql};
use rampart_audit::{VerifyError, verify_org};
use rampart_core::Role;
use rampart_store::Mode;
use rampart_store::audit::NewEvent;
use serde_json::{Value, json};

both_backends!(
    every_outcome_is_recorded_in_the_right_ledger,
    no_change_commits_without_its_event,
    tampering_is_caught_at_the_first_bad_sequence,
    the_ledger_is_append_only_in_the_database,
    retention_cuts_only_behind_a_checkpoint,
    parallel_writers_leave_no_gap_and_no_fork,
    the_events_api_filters_and_paginates,
    contacts_keep_their_version_history,
    a_long_chain_verifies_in_one_snapshot_and_tampering_past_the_first_chunk_is_caught,
    edge_values_link_alike_in_the_database_and_in_rust,
    appends_link_to_the_real_head_after_another_node_or_a_rollback,
);

fn find<'a>(events: &'a [Value], request_id: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["request_id"] == request_id)
        .unwrap_or_else(|| panic!("no event for request {request_id}"))
}

fn rid(r: &reqwest::Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_owned()
}

async fn verify(app: &TestApp, org: &Org) -> Result<i64, (i64, &'static str)> {
    match verify_org(&app.store, &rampart_core::OperatorGrant::new(org.org)).await {
        Ok(report) => Ok(report.last_seq),
        Err(VerifyError::Broken { seq, reason, .. }) => Err((seq, reason)),
        Err(e) => panic!("{e}"),
    }
}

async fn every_outcome_is_recorded_in_the_right_ledger(app: TestApp) {
    let a = app.org("Alpha").await;
    let b = app.org("Beta").await;
    let viewer = app.key(a.ws, Role::Viewer).await;
    let base = format!("/v1/workspaces/{}/contacts", a.ws);

    let ok = app
        .post(
            &base,
            &a.owner_key,
            &json!({"name": "Ann", "email": "ann@example.com", "phone": "+1 415 555 2671"}),
        )
        .await;
    let ok_id = rid(&ok);
    let created: Value = ok.json().await.unwrap();
    let one = format!("{base}/{}", created["id"].as_str().unwrap());
    let invalid = rid(&app
        .post(&base, &a.owner_key, &json!({"email": "nope"}))
        .await);
    let conflict = rid(&app
        .post(&base, &a.owner_key, &json!({"email": "ann@example.com"}))
        .await);
    let forbidden = rid(&app.post(&base, &viewer, &json!({"name": "X"})).await);
    let missing_id = rampart_core::ContactId::generate();
    let missing = rid(&app
        .delete(&format!("{base}/{missing_id}"), &a.owner_key)
        .await);
    let foreign = rid(&app.delete(&one, &b.owner_key).await);
    let anonymous = rid(&app
        .req(reqwest::Method::DELETE, &one, "rk_live_bogus")
        .send()
        .await
        .unwrap());
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(1024 * 1024 + 1));
    let too_large = rid(&app
        .req(reqwest::Method::POST, &base, &a.owner_key)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap());
    let read = rid(&app.get(&one, &a.owner_key).await);

    let ev = events(&app, &a.ws, &a.owner_key).await;
    let e = find(&ev, &ok_id);
    assert_eq!(
        (e["status"].as_u64(), e["error_code"].as_str()),
        (Some(201), None)
    );
    assert_eq!(e["action"], "contact.create");
    assert_eq!(e["method"], "POST");
    assert_eq!(e["target"], created["id"]);
    assert_eq!(e["auth_method"], "api_key");
    assert!(e["actor"].as_str().unwrap().starts_with("key_"));
    assert_eq!(
        e["client_ip"], "127.0.0.0",
        "the host part of the address is dropped"
    );
    assert_eq!(e["org"], a.org.to_string());
    assert_eq!(e["workspace"], a.ws.to_string());
    assert!(
        e["args"]["email"].as_str().unwrap().starts_with("sha256:"),
        "{e}"
    );
    assert!(e["args"]["phone"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(e["args"]["name"], "Ann");
    let text = serde_json::to_string(&ev).unwrap();
    assert!(
        !text.contains("ann@example.com")
            && !text.contains("4155552671")
            && !text.contains("555-2671"),
        "no PII in the ledger"
    );

    for (request, status, code) in [
        (&invalid, 422, "INVALID"),
        (&conflict, 409, "CONFLICT"),
        (&forbidden, 403, "FORBIDDEN"),
        (&missing, 404, "NOT_FOUND"),
        (&anonymous, 401, "UNAUTHENTICATED"),
        (&too_large, 413, "PAYLOAD_TOO_LARGE"),
    ] {
        let e = find(&ev, request);
        assert_eq!(
            (
                e["status"].as_u64().unwrap(),
                e["error_code"].as_str().unwrap()
            ),
            (status, code),
            "{e}"
        );
    }
    assert_eq!(
        find(&ev, &missing)["target"],
        missing_id.to_string(),
        "a refused delete names its target"
    );
    assert_eq!(find(&ev, &anonymous)["actor"], "anonymous");
    assert!(
        ev.iter().all(|e| e["request_id"] != read.as_str()),
        "reads are not mutations"
    );
    assert!(
        ev.iter().all(|e| e["request_id"] != foreign.as_str()),
        "another org's attempt is not written into this ledger"
    );

    // The foreign attempt is in the attacker's own ledger, with the path it tried.
    let ev_b = events(&app, &b.ws, &b.owner_key).await;
    let e = find(&ev_b, &foreign);
    assert_eq!(
        (e["status"].as_u64(), e["error_code"].as_str()),
        (Some(404), Some("NOT_FOUND"))
    );
    assert_eq!(e["path"], one.as_str());

    // A server error: the change rolls back, the event stays.
    common::owner_sql(&app, &a.org.to_string(), &a.ws.to_string(), &[match app.backend {
        common::Backend::Sqlite => "CREATE TRIGGER explode BEFORE INSERT ON contact_tags WHEN NEW.tag = 'explode' BEGIN SELECT RAISE(ABORT, 'boom'); END",
        common::Backend::Postgres => "CREATE FUNCTION explode() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'boom'; END $$; \
             CREATE TRIGGER explode BEFORE INSERT ON contact_tags FOR EACH ROW WHEN (NEW.tag = 'explode') EXECUTE FUNCTION explode()",
    }]).await.unwrap();
    let failed = app
        .post(
            &base,
            &a.owner_key,
            &json!({"name": "Boom", "tags": ["explode"]}),
        )
        .await;
    let failed_id = rid(&failed);
    assert_eq!(failed.status(), 500);
    let ev = events(&app, &a.ws, &a.owner_key).await;
    let e = find(&ev, &failed_id);
    assert_eq!(
        (e["status"].as_u64(), e["error_code"].as_str()),
        (Some(500), Some("INTERNAL"))
    );
    assert_eq!(app.all_contacts(&a).await.len(), 1);

    assert!(verify(&app, &a).await.is_ok());
    assert!(verify(&app, &b).await.is_ok());
}

async fn no_change_commits_without_its_event(app: TestApp) {
    let a = app.org("Alpha").await;
    let c = app.contact(&a, json!({"name": "Keep"})).await;
    let one = format!(
        "/v1/workspaces/{}/contacts/{}",
        a.ws,
        c["id"].as_str().unwrap()
    );
    // Make the ledger refuse the success event of a delete (and only that).
    let refuse = match app.backend {
        common::Backend::Sqlite => {
            "CREATE TRIGGER refuse_delete_event BEFORE INSERT ON audit_events \
             WHEN NEW.action = 'contact.delete' AND NEW.status = 204 BEGIN SELECT RAISE(ABORT, 'no'); END"
        }
        common::Backend::Postgres => {
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no'; END $$; \
             CREATE TRIGGER refuse_delete_event BEFORE INSERT ON audit_events FOR EACH ROW \
             WHEN (NEW.action = 'contact.delete' AND NEW.status = 204) EXECUTE FUNCTION refuse()"
        }
    };
    owner_sql(&app, &a.org.to_string(), &a.ws.to_string(), &[refuse])
        .await
        .unwrap();
    let r = app.delete(&one, &a.owner_key).await;
    let request = rid(&r);
    let (status, code, _) = error_of(r).await;
    // Nothing was changed, so the caller may retry: a 503, not a 500 (issue 31).
    assert_eq!((status, code.as_str()), (503, "UNAVAILABLE"));
    assert_eq!(
        app.get(&one, &a.owner_key).await.status(),
        200,
        "the delete did not happen without its event"
    );
    let ev = events(&app, &a.ws, &a.owner_key).await;
    let e = find(&ev, &request);
    assert_eq!(e["status"], 503, "the failure itself is on record");
    assert!(verify(&app, &a).await.is_ok());
}

async fn seed_events(app: &TestApp, org: &Org, n: usize) {
    for i in 0..n {
        app.contact(org, json!({"name": format!("C{i}")})).await;
    }
}

/// Appends `n` events to `org`'s ledger in one transaction (faster than `n` requests).
async fn append_events(app: &TestApp, org: &Org, n: usize) {
    let mut tx = app
        .store
        .ledger(&rampart_core::OperatorGrant::new(org.org), Mode::Write)
        .await
        .unwrap();
    for i in 0..n {
        let event = NewEvent {
            workspace: Some(org.ws),
            actor: rampart_core::Actor::Operator.into(),
            method: "CLI".into(),
            path: "rampart test".into(),
            action: "test.event".into(),
            // Quotes, an escaped control character and a non-ASCII character: text the chain
            // scan must read back exactly.
            args: format!(r#"{{"i":{i},"note":"\"café\"\u0001"}}"#),
            status: 200,
            request_id: format!("req_{i}"),
            ..NewEvent::default()
        };
        tx.append(event, app.clock.now_for_tests()).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// Runs `statements` as the schema owner with the ledger's guards off, scoped to `org`.
async fn tamper(app: &TestApp, org: &Org, statements: &[&str]) {
    let mut disable = disable_ledger_triggers(app);
    if app.backend == common::Backend::Sqlite {
        owner_sql(app, "", "", &disable).await.unwrap();
        disable.clear();
    }
    let scoped: Vec<String> = statements
        .iter()
        .map(|s| s.replace("WHERE", &format!("WHERE org_id = '{}' AND", org.org)))
        .collect();
    disable.extend(scoped.iter().map(String::as_str));
    owner_sql(app, &org.org.to_string(), &org.ws.to_string(), &disable)
        .await
        .unwrap();
}

async fn a_long_chain_verifies_in_one_snapshot_and_tampering_past_the_first_chunk_is_caught(
    app: TestApp,
) {
    // Many chunks of the chain scan (128 sequence numbers each) long.
    let a = app.org("Alpha").await;
    append_events(&app, &a, 2_600).await;
    assert_eq!(verify(&app, &a).await, Ok(2_600));

    // A chain reader sees one snapshot: an event appended while it reads does not show up as a
    // head past the end of the chain it read.
    let mut reader = app
        .store
        .chain_reader(&rampart_core::OperatorGrant::new(a.org))
        .await
        .unwrap();
    let mut read = 0i64;
    reader
        .scan_after(0, |_| {
            read += 1;
            Ok::<(), rampart_store::StoreError>(())
        })
        .await
        .unwrap();
    append_events(&app, &a, 1).await;
    assert_eq!(reader.head().await.unwrap().0, read);
    assert_eq!(read, 2_600);
    drop(reader);
    assert_eq!(verify(&app, &a).await, Ok(2_601));

    // A changed event in the third chunk, and a deleted one on a chunk's last number. (Both
    // ledgers are written before any tampering: on PostgreSQL tampering switches off the
    // trigger that moves the head as well.)
    let b = app.org("Beta").await;
    append_events(&app, &b, 1_100).await;
    tamper(
        &app,
        &a,
        &["UPDATE audit_events SET status = 201 WHERE seq = 2100"],
    )
    .await;
    assert_eq!(verify(&app, &a).await.map_err(|(seq, _)| seq), Err(2100));
    tamper(&app, &b, &["DELETE FROM audit_events WHERE seq = 1024"]).await;
    assert_eq!(
        verify(&app, &b).await,
        Err((1024, "an event is missing (gap in sequence numbers)"))
    );
}

async fn tampering_is_caught_at_the_first_bad_sequence(app: TestApp) {
    // One organization per kind of tampering; each starts intact.
    let cases: [(&str, &[&str], i64); 4] = [
        (
            "changed",
            &["UPDATE audit_events SET status = 200 WHERE seq = 3"],
            3,
        ),
        ("deleted", &["DELETE FROM audit_events WHERE seq = 4"], 4),
        (
            "reordered",
            &[
                "UPDATE audit_events SET seq = -1 WHERE seq = 2",
                "UPDATE audit_events SET seq = 2 WHERE seq = 3",
                "UPDATE audit_events SET seq = 3 WHERE seq = -1",
            ],
            2,
        ),
        ("truncated", &["DELETE FROM audit_events WHERE seq = 6"], 6),
    ];
    let mut orgs = Vec::new();
    for (name, _, _) in &cases {
        let org = app.org(name).await;
        seed_events(&app, &org, 6).await;
        assert_eq!(verify(&app, &org).await, Ok(6), "{name} starts intact");
        orgs.push(org);
    }
    for ((name, statements, bad), org) in cases.iter().zip(&orgs) {
        tamper(&app, org, statements).await;
        let got = verify(&app, org).await;
        assert_eq!(got.map_err(|(seq, _)| seq), Err(*bad), "{name}: {got:?}");
    }
}

async fn the_ledger_is_append_only_in_the_database(app: TestApp) {
    let a = app.org("Alpha").await;
    seed_events(&app, &a, 3).await;
    let (org, ws) = (a.org.to_string(), a.ws.to_string());
    let pg = app.backend == common::Backend::Postgres;
    // On PostgreSQL the application role may not update events at all (migration 8); a delete
    // reaches the append-only trigger, since retention may delete behind a checkpoint.
    for (sql, refusal) in [
        (
            "UPDATE audit_events SET status = 200",
            if pg {
                "permission denied"
            } else {
                "append-only"
            },
        ),
        ("DELETE FROM audit_events", "append-only"),
    ] {
        let err = app_sql(&app, &org, &ws, sql).await.unwrap_err();
        assert!(err.contains(refusal), "{sql}: {err}");
    }
    // An event that does not follow the chain's head (here: a copy of the last one, renumbered as
    // the next) is refused whole: on SQLite by the follow-head trigger (its migration 7); on
    // PostgreSQL the application role may not insert events, only record them for the seal,
    // which numbers and links each one inside COMMIT as the schema's owner.
    let forged = "INSERT INTO audit_events SELECT org_id, seq + 1, workspace_id, at, actor, auth_method, method, \
         path, action, target, args, status, error_code, duration_ms, idempotency_key, request_id, client_ip, \
         prev_hash, hash FROM audit_events WHERE seq = 3";
    let err = app_sql(&app, &org, &ws, forged).await.unwrap_err();
    let refusal = if pg {
        "permission denied for table audit_events"
    } else {
        "does not follow its chain head"
    };
    assert!(err.contains(refusal), "{err}");
    if pg {
        let other = app.org("Beta").await.org.to_string();
        for (sql, refusal) in [
            ("TRUNCATE audit_events", "permission denied"),
            (
                "UPDATE audit_heads SET seq = seq + 1",
                "permission denied for table audit_heads",
            ),
            (
                "INSERT INTO audit_heads (org_id, seq, hash) VALUES ('org_x', 0, 'x')",
                "permission denied for table audit_heads",
            ),
            (
                "DELETE FROM audit_pending",
                "permission denied for table audit_pending",
            ),
            (
                &format!("SELECT rampart_audit_open_chain('{other}')"),
                "only for the organization the transaction is bound to",
            ),
        ] {
            let err = app_sql(&app, &org, &ws, sql).await.unwrap_err();
            assert!(err.contains(refusal), "{sql}: {err}");
        }
        // Opening the chain again is harmless: the head stays where the events put it.
        app_sql(
            &app,
            &org,
            &ws,
            &format!("SELECT rampart_audit_open_chain('{org}')"),
        )
        .await
        .unwrap();
    }
    // A checkpoint must name a real event.
    // (Refused by the trigger that checks it, not by some other error on the way.)
    let err = app_sql(&app, &org, &ws, &format!("INSERT INTO audit_checkpoints (org_id, seq, hash, created_at) VALUES ('{org}', 1, 'forged', '2026-01-01T00:00:00Z')")).await.unwrap_err();
    assert!(
        err.contains("a checkpoint must name an existing event by sequence and hash"),
        "{err}"
    );
    assert_eq!(verify(&app, &a).await, Ok(3));
}

async fn retention_cuts_only_behind_a_checkpoint(app: TestApp) {
    let a = app.org("Alpha").await;
    seed_events(&app, &a, 4).await;
    app.clock.advance(chrono::Duration::days(400));
    seed_events(&app, &a, 2).await;
    let now = app.clock.now_for_tests();
    let cp = rampart_audit::retention::apply(
        &app.store,
        &rampart_core::OperatorGrant::new(a.org),
        365,
        now,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(cp.seq, 4, "the four contacts made over a year ago");
    let ev = events(&app, &a.ws, &a.owner_key).await;
    assert_eq!(ev.first().unwrap()["seq"], 5);
    assert_eq!(
        verify(&app, &a).await,
        Ok(6),
        "what remains still verifies, from the checkpoint"
    );
    seed_events(&app, &a, 1).await;
    assert_eq!(verify(&app, &a).await, Ok(7));
    // Deleting behind the checkpoint is allowed by the database; in front of it, refused.
    let (org, ws) = (a.org.to_string(), a.ws.to_string());
    assert!(
        app_sql(&app, &org, &ws, "DELETE FROM audit_events WHERE seq = 7")
            .await
            .unwrap_err()
            .contains("append-only")
    );
    // Checkpoints themselves are append-only; on PostgreSQL the application role may not even
    // try (migration 8), and the owner meets the trigger.
    let err = app_sql(&app, &org, &ws, "DELETE FROM audit_checkpoints")
        .await
        .unwrap_err();
    let refusal = match app.backend {
        common::Backend::Postgres => "permission denied for table audit_checkpoints",
        common::Backend::Sqlite => "append-only",
    };
    assert!(err.contains(refusal), "{err}");
    let err = owner_sql(&app, &org, &ws, &["DELETE FROM audit_checkpoints"])
        .await
        .unwrap_err();
    assert!(err.contains("append-only"), "{err}");
}

async fn parallel_writers_leave_no_gap_and_no_fork(app: TestApp) {
    let a = app.org("Alpha").await;
    let b = app.org("Beta").await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        for org in [&a, &b] {
            let (client, url, key) = (
                app.client.clone(),
                app.url(&format!("/v1/workspaces/{}/contacts", org.ws)),
                org.owner_key.clone(),
            );
            tasks.push(tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(key)
                    .json(&json!({"name": format!("P{i}")}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    // Forty contacts in each ledger, numbered 1 to 40 without a gap, and the chains verify.
    assert_eq!(verify(&app, &a).await, Ok(40));
    assert_eq!(verify(&app, &b).await, Ok(40));
    let seqs: Vec<i64> = events(&app, &a.ws, &a.owner_key)
        .await
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
}

/// Two nodes over one database (on SQLite, two writers of one file, as the CLI beside a running
/// server) appending to one chain in turn, and an append whose transaction rolled back: every
/// append links onto the chain's real head (no fork, no gap, nothing lost), and a key's stored
/// response survives for its replay.
async fn appends_link_to_the_real_head_after_another_node_or_a_rollback(app: TestApp) {
    let a = app.org("Alpha").await;
    let other = app.second_node(std::time::Duration::from_secs(30)).await;
    let path = format!("/v1/workspaces/{}/contacts", a.ws);
    let mut created = 0;
    for i in 0..6 {
        // Two in a row on each node, then the other node: each node's first append of a
        // pair links onto a head the other node moved.
        let node = if (i / 2) % 2 == 0 { &app } else { &other };
        let r = node
            .post(&path, &a.owner_key, &json!({"name": format!("N{i}")}))
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        created += 1;
    }

    // An append that rolls back: linked in its transaction, never in the chain.
    let mut tx = app
        .store
        .ledger(&rampart_core::OperatorGrant::new(a.org), Mode::Write)
        .await
        .unwrap();
    tx.append(
        NewEvent {
            workspace: Some(a.ws),
            actor: rampart_core::Actor::Operator.into(),
            method: "CLI".into(),
            path: "rampart test".into(),
            action: "test.rolled_back".into(),
            args: "{}".into(),
            status: 200,
            request_id: "req_rolled_back".into(),
            ..NewEvent::default()
        },
        app.clock.now_for_tests(),
    )
    .await
    .unwrap();
    drop(tx);

    // A create with a key on the node whose last append was rolled back, then on the other
    // node; then the same requests again, which replay.
    let keyed = [("after-rollback", &app), ("after-other-node", &other)];
    let create = |node: &TestApp, key: &str| {
        node.req(reqwest::Method::POST, &path, &a.owner_key)
            .header("idempotency-key", key)
            .json(&json!({"name": key}))
            .send()
    };
    let mut firsts = Vec::new();
    for (key, node) in keyed {
        let r = create(node, key).await.unwrap();
        assert_eq!(r.status(), 201);
        created += 1;
        firsts.push(r.json::<Value>().await.unwrap());
    }
    for ((key, node), first) in keyed.into_iter().zip(&firsts) {
        let r = create(node, key).await.unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["idempotent-replayed"], "true");
        assert_eq!(r.json::<Value>().await.unwrap()["id"], first["id"]);
    }

    assert_eq!(app.all_contacts(&a).await.len(), created);
    let ev = events(&app, &a.ws, &a.owner_key).await;
    let mut seqs: Vec<i64> = ev.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    seqs.sort_unstable();
    let last = i64::try_from(seqs.len()).unwrap();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "no gap, no fork");
    assert!(ev.iter().all(|e| e["request_id"] != "req_rolled_back"));
    // Eight creates and two replays.
    assert_eq!(last, 10);
    assert_eq!(verify(&app, &a).await, Ok(last));
}

async fn the_events_api_filters_and_paginates(app: TestApp) {
    let a = app.org("Alpha").await;
    let sales = app.key(a.ws, Role::Sales).await;
    seed_events(&app, &a, 3).await;
    let t = app.clock.now_for_tests();
    app.clock.advance(chrono::Duration::minutes(5));
    app.post(
        &format!("/v1/workspaces/{}/contacts", a.ws),
        &sales,
        &json!({"email": "bad"}),
    )
    .await;
    let path = |q: &str| format!("/v1/workspaces/{}/audit-events?{q}", a.ws);
    let get = |q: String| {
        let (app, key) = (&app, a.owner_key.clone());
        async move { app.get(&q, &key).await.json::<Value>().await.unwrap() }
    };
    let by_status = get(path("status=422")).await;
    assert_eq!(by_status["data"].as_array().unwrap().len(), 1);
    let actor = by_status["data"][0]["actor"].as_str().unwrap().to_owned();
    assert_eq!(
        get(path(&format!("actor={actor}"))).await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        get(path("action=contact.create")).await["data"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let since =
        (t + chrono::Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    assert_eq!(
        get(path(&format!("since={since}&action=contact.create"))).await["data"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "only the later, failed create"
    );
    assert_eq!(
        get(path(&format!("until={since}&action=contact.create"))).await["data"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let first = get(path("limit=2")).await;
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert!(
        first["data"][0]["seq"].as_i64() > first["data"][1]["seq"].as_i64(),
        "newest first"
    );
    let next = get(path(&format!(
        "limit=2&cursor={}",
        first["next_cursor"].as_str().unwrap()
    )))
    .await;
    assert_eq!(
        next["data"][0]["seq"].as_i64().unwrap(),
        first["data"][1]["seq"].as_i64().unwrap() - 1
    );
    let (status, code, _) = error_of(app.get(&path(""), &sales).await).await;
    assert_eq!(
        (status, code.as_str()),
        (403, "FORBIDDEN"),
        "the ledger needs audit:read"
    );
    let (status, _, _) = error_of(app.get(&path("status=abc"), &a.owner_key).await).await;
    assert_eq!(status, 400);
}

async fn contacts_keep_their_version_history(app: TestApp) {
    let a = app.org("Alpha").await;
    let sales = app.key(a.ws, Role::Sales).await;
    let c = app.contact(&a, json!({"name": "V1"})).await;
    let one = format!(
        "/v1/workspaces/{}/contacts/{}",
        a.ws,
        c["id"].as_str().unwrap()
    );
    app.patch(&one, &sales, &json!({"name": "V2"})).await;
    let live: Value = app
        .get(&format!("{one}/versions"), &sales)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(live["data"].as_array().unwrap().len(), 2, "{live}");
    assert_eq!(live["data"][1]["before"]["name"], "V1");
    assert_eq!(live["data"][1]["after"]["name"], "V2");
    assert!(
        live["data"][1]["actor"]
            .as_str()
            .unwrap()
            .starts_with("key_")
    );
    assert_eq!(app.delete(&one, &a.owner_key).await.status(), 204);
    let (status, _, _) = error_of(app.get(&format!("{one}/versions"), &sales).await).await;
    assert_eq!(status, 404, "a deleted contact's history needs audit:read");
    let gone: Value = app
        .get(&format!("{one}/versions"), &a.owner_key)
        .await
        .json()
        .await
        .unwrap();
    let events: Vec<&str> = gone["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["create", "update", "delete"]);
    assert_eq!(gone["data"][2]["before"]["name"], "V2");
    assert_eq!(gone["data"][2]["after"], Value::Null);
}

/// Waits (up to 10 s) until the server has closed its end of the connection from `local`: the
/// client, which hung up first, then leaves FIN-WAIT-2 for TIME-WAIT (Linux `/proc/net/tcp`).
async fn wait_until_server_closed(local: std::net::SocketAddr, server: std::net::SocketAddr) {
    let hex = |a: std::net::SocketAddr| match a {
        std::net::SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        std::net::SocketAddr::V6(_) => panic!("the test server listens on IPv4"),
    };
    let (ours, theirs) = (hex(local), hex(server));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let state = table.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 3 && f[1] == ours && f[2] == theirs).then(|| f[3].to_owned())
        });
        // 06 = TIME_WAIT; gone altogether is closed too.
        if state.as_deref().is_none_or(|s| s == "06") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server never closed the connection the client hung up (state {state:?})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A client that hangs up mid-request does not leave the request half-done or unrecorded: it
/// runs to completion (all or nothing) and its event is written (PostgreSQL: the request is
/// held mid-transaction by a lock while the client disconnects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_midway_still_gets_a_whole_change_and_an_event() {
    use std::time::Duration;
    let Some(app) = TestApp::spawn(common::Backend::Postgres).await else {
        return;
    };
    let a = app.org("Alpha").await;
    let common::Db::Postgres { owner_url, .. } = &app.db else {
        unreachable!()
    };
    let owner = sqlx::PgPool::connect(owner_url).await.unwrap();
    let mut blocker = owner.begin().await.unwrap();
    sqlx::query("LOCK TABLE contact_tags IN EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    // A raw connection, so the test knows its address and can watch the server's side close.
    use tokio::io::AsyncWriteExt;
    let body = json!({"name": "Whole", "tags": ["a", "b"]}).to_string();
    let mut sock = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let local = sock.local_addr().unwrap();
    sock.write_all(
        format!(
            "POST /v1/workspaces/{}/contacts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             X-Request-Id: hangup-1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            a.ws,
            a.owner_key,
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    common::wait_until_blocked_on(&owner, "contact_tags").await;
    // Hang up, and wait until the server has seen it and closed its end (so whatever it does
    // on a hang-up has happened before the lock is released; a fixed sleep could release it
    // first under load, and then the request would simply finish and prove nothing).
    drop(sock);
    wait_until_server_closed(local, app.addr).await;
    blocker.commit().await.unwrap();
    let mut found = Vec::new();
    for _ in 0..50 {
        found = app.all_contacts(&a).await;
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found.len(), 1, "the change completed");
    assert_eq!(found[0]["tags"], json!(["a", "b"]), "whole, not half");
    let ev = events(&app, &a.ws, &a.owner_key).await;
    // The client hung up before it could read the server's request id: the create is the
    // one change of the workspace.
    let create = ev.iter().find(|e| e["action"] == "contact.create").unwrap();
    assert_eq!(create["status"], 201);
    assert!(verify(&app, &a).await.is_ok());
}

/// Events whose fields sit at the edges of the canonical encoding (absent against empty,
/// multi-byte UTF-8, the first and last instants of four-digit years, whole and fractional
/// microseconds, extreme numbers) are linked by the store and then recomputed by the Rust
/// verifier. On PostgreSQL the links are computed by the database's sealing trigger (migration
/// 7), so a chain that verifies shows that its encoding and Rust's agree byte for byte.
async fn edge_values_link_alike_in_the_database_and_in_rust(app: TestApp) {
    let a = app.org("Alpha").await;
    let at = |text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let cases = [
        (
            at("0001-01-01T00:00:00Z"),
            NewEvent {
                workspace: None,
                actor: rampart_core::EventActor::Anonymous,
                method: "POST".into(),
                path: "/v1/ünïcödé/😀".into(),
                action: "x.y".into(),
                target: Some(String::new()),
                args: "{}".into(),
                status: 599,
                // Typed since issue 33: an empty code can no longer be written.
                error_code: Some(rampart_core::ErrorCode::Internal),
                duration_ms: i64::MAX,
                idempotency_key: Some("!\"#$%&'()*+,-./0123456789:;<=>?@[\\]^_`{|}~".into()),
                request_id: String::new(),
                client_ip: Some("2001:db8:abcd::".into()),
                ..NewEvent::default()
            },
        ),
        (
            at("9999-12-31T23:59:59.999999Z"),
            NewEvent {
                workspace: Some(a.ws),
                actor: rampart_core::Actor::Operator.into(),
                auth_method: Some(rampart_core::AuthMethod::Cli),
                method: "CLI".into(),
                path: "rampart test".into(),
                action: "test.event".into(),
                args: r#"{"note":"\"café\"\u0001\n","n":[1,2.5,null]}"#.into(),
                status: 200,
                duration_ms: -1,
                request_id: "cli_x".into(),
                ..NewEvent::default()
            },
        ),
        (
            at("1969-12-31T23:59:59.000001Z"),
            NewEvent {
                workspace: Some(a.ws),
                actor: rampart_core::Actor::User(rampart_core::UserId::generate()).into(),
                auth_method: Some(rampart_core::AuthMethod::Session),
                method: "DELETE".into(),
                path: "/".into(),
                action: "a".into(),
                args: "x".repeat(70_000),
                status: 0,
                duration_ms: 0,
                request_id: "req_y".into(),
                client_ip: Some("203.0.113.0".into()),
                ..NewEvent::default()
            },
        ),
    ];
    let mut tx = app
        .store
        .ledger(&rampart_core::OperatorGrant::new(a.org), Mode::Write)
        .await
        .unwrap();
    for (when, event) in cases {
        tx.append(event, when).await.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(verify(&app, &a).await, Ok(3));
    // The organization's own first event, a request, links on from them.
    seed_events(&app, &a, 1).await;
    assert_eq!(verify(&app, &a).await, Ok(4));
}

/// An event appended in a transaction that has not committed yet holds nothing: another write
/// of the same organization commits meanwhile and takes the next sequence number; the first
/// event takes the one after it when it commits, and one rolled back leaves neither an event
/// nor a pending row (PostgreSQL seals events inside COMMIT; on SQLite the one writer would
/// make the second write wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncommitted_write_does_not_hold_its_organizations_chain() {
    use std::time::Duration;
    let Some(app) = TestApp::spawn(common::Backend::Postgres).await else {
        return;
    };
    let a = app.org("Alpha").await;
    let before = verify(&app, &a).await.unwrap();
    let event = |request_id: &str| NewEvent {
        workspace: Some(a.ws),
        actor: rampart_core::Actor::Operator.into(),
        method: "CLI".into(),
        path: "rampart test".into(),
        action: "test.event".into(),
        args: "{}".into(),
        status: 200,
        request_id: request_id.into(),
        ..NewEvent::default()
    };
    let now = app.clock.now_for_tests();
    let mut first = app
        .store
        .ledger(&rampart_core::OperatorGrant::new(a.org), Mode::Write)
        .await
        .unwrap();
    first.append(event("first"), now).await.unwrap();
    let mut abandoned = app
        .store
        .ledger(&rampart_core::OperatorGrant::new(a.org), Mode::Write)
        .await
        .unwrap();
    abandoned.append(event("abandoned"), now).await.unwrap();

    let second = async {
        let mut tx = app
            .store
            .ledger(&rampart_core::OperatorGrant::new(a.org), Mode::Write)
            .await
            .unwrap();
        tx.append(event("second"), now).await.unwrap();
        tx.commit().await.unwrap();
    };
    // A bound on a wait that must not happen at all, not a measure of speed: with the head
    // locked by `first`, this would wait until `first` ends, which it does not before this.
    tokio::time::timeout(Duration::from_secs(60), second)
        .await
        .expect("a write waited for another's uncommitted event");
    first.commit().await.unwrap();
    drop(abandoned);

    assert_eq!(verify(&app, &a).await, Ok(before + 2));
    let ev = events(&app, &a.ws, &a.owner_key).await;
    assert_eq!(find(&ev, "second")["seq"], before + 1);
    assert_eq!(find(&ev, "first")["seq"], before + 2);
    assert!(ev.iter().all(|e| e["request_id"] != "abandoned"));
    let mut reader = app
        .store
        .ledger(&rampart_core::OperatorGrant::new(a.org), Mode::Read)
        .await
        .unwrap();
    assert_eq!(reader.unsealed().await.unwrap(), 0);
}

/// An event left unsealed (someone with the owner role switched the sealing trigger off) is
/// evidence that never reached the chain: verification says so instead of passing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_left_unsealed_fails_verification() {
    let Some(app) = TestApp::spawn(common::Backend::Postgres).await else {
        return;
    };
    let a = app.org("Alpha").await;
    seed_events(&app, &a, 2).await;
    let head = verify(&app, &a).await.unwrap();
    owner_sql(
        &app,
        &a.org.to_string(),
        &a.ws.to_string(),
        &[
            "ALTER TABLE audit_pending DISABLE TRIGGER USER",
            "INSERT INTO audit_pending (org_id, at, actor, method, path, action, args, status, duration_ms, request_id) \
             VALUES (current_setting('rampart.org_id'), now(), 'operator', 'CLI', 'rampart x', 'x', '{}', 200, 0, 'cli_x')",
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        verify(&app, &a).await,
        Err((
            head + 1,
            "events were recorded but never sealed into the chain"
        ))
    );
}
