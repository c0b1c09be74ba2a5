//! What an attacker's fuzzer found (issue 31), each reproduced on both backends: a NUL in any
//! input is a clear error on both (PostgreSQL cannot store one), a refused request's event is
//! written whatever its path holds, an event that cannot be written fails the request closed,
//! every route's body is held to its limit, a person's refused change is on the record, and an
//! unauthenticated refusal costs the ledger a fixed, capped amount.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use common::people::Browser;
use common::{Backend, Db, TestApp, error_of, owner_sql};
use reqwest::Method;
use serde_json::{Value, json};

both_backends!(
    a_nul_anywhere_in_json_is_a_422_naming_the_field_and_nothing_is_stored,
    a_nul_in_a_query_parameter_is_a_400_naming_it,
    a_refused_request_is_recorded_whatever_its_path_holds,
    an_event_that_cannot_be_written_fails_the_request_closed,
    every_route_holds_its_body_to_the_limit,
    a_persons_refused_change_is_recorded_in_their_ledger,
    a_request_framed_by_both_length_and_chunks_is_read_by_its_chunks_then_closed,
);

mod capped {
    use super::*;
    both_backends_with!(two_anonymous_records_a_minute; an_unauthenticated_refusal_costs_the_ledger_a_fixed_capped_amount);
}

/// Every event of `org`'s ledger, oldest first, read from the database as its owner.
async fn ledger(app: &TestApp, org: &str) -> Vec<Value> {
    const SQL: &str = "SELECT seq, actor, action, status, error_code, target, args, path \
                       FROM audit_events WHERE org_id = $1 ORDER BY seq";
    macro_rules! rows {
        ($rows:expr) => {
            $rows
                .iter()
                .map(|r| {
                    use sqlx::Row;
                    json!({
                        "seq": r.get::<i64, _>(0),
                        "actor": r.get::<String, _>(1),
                        "action": r.get::<String, _>(2),
                        "status": r.get::<i32, _>(3),
                        "error_code": r.get::<Option<String>, _>(4),
                        "target": r.get::<Option<String>, _>(5),
                        "args": serde_json::from_str::<Value>(&r.get::<String, _>(6)).unwrap(),
                        "path": r.get::<String, _>(7),
                    })
                })
                .collect()
        };
    }
    match &app.db {
        Db::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            let rows = sqlx::query(SQL).bind(org).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows!(rows)
        }
        Db::Postgres { owner_url, .. } => {
            let pool = sqlx::PgPool::connect(owner_url).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("SELECT set_config('rampart.org_id', $1, true)")
                .bind(org)
                .execute(&mut *tx)
                .await
                .unwrap();
            let rows = sqlx::query(SQL)
                .bind(org)
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            pool.close().await;
            rows!(rows)
        }
    }
}

async fn contact_count(app: &TestApp, org: &common::Org) -> usize {
    app.all_contacts(org).await.len()
}

async fn a_nul_anywhere_in_json_is_a_422_naming_the_field_and_nothing_is_stored(app: TestApp) {
    let org = app.org("Acme").await;
    let base = format!("/v1/workspaces/{}/contacts", org.ws);
    let kept = app
        .contact(
            &org,
            json!({"name": "Kept", "custom_fields": {"note": "clean"}}),
        )
        .await;
    let kept_url = format!("{base}/{}", kept["id"].as_str().unwrap());

    for (body, field) in [
        (
            json!({"name": "Ann", "custom_fields": {"note": "a\u{0}b"}}),
            "custom_fields.note",
        ),
        (
            json!({"name": "Ann", "custom_fields": {"k\u{0}ey": "v"}}),
            "custom_fields.k\u{0}ey",
        ),
        (
            json!({"name": "Ann", "custom_fields": {"list": ["ok", "x\u{0}"]}}),
            "custom_fields.list[1]",
        ),
        (json!({"name": "A\u{0}nn"}), "name"),
        (json!({"name": "Ann", "tags": ["t\u{0}"]}), "tags[0]"),
    ] {
        let (status, code, envelope) = error_of(app.post(&base, &org.owner_key, &body).await).await;
        assert_eq!(
            (status, code.as_str()),
            (422, "INVALID"),
            "{body}: {envelope}"
        );
        assert_eq!(envelope["error"]["field"], field, "{envelope}");
        let (status, code, envelope) =
            error_of(app.patch(&kept_url, &org.owner_key, &body).await).await;
        assert_eq!(
            (status, code.as_str()),
            (422, "INVALID"),
            "{body}: {envelope}"
        );
        assert_eq!(envelope["error"]["field"], field, "{envelope}");
    }
    assert_eq!(contact_count(&app, &org).await, 1, "nothing was created");
    let read: Value = app
        .get(&kept_url, &org.owner_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read, kept, "nothing was changed");

    // A credential's secret is input like any other.
    let r = app
        .req(
            Method::PUT,
            &format!("/v1/workspaces/{}/credentials/twilio", org.ws),
            &org.owner_key,
        )
        .json(&json!({"secret": "secret-\u{0}-0000"}))
        .send()
        .await
        .unwrap();
    let (status, _, envelope) = error_of(r).await;
    assert_eq!(status, 422, "{envelope}");
    assert_eq!(envelope["error"]["field"], "secret");
    let r = app
        .get(
            &format!("/v1/workspaces/{}/credentials/twilio", org.ws),
            &org.owner_key,
        )
        .await;
    assert_eq!(r.status(), 404, "no credential was stored");

    // A `\\u0000` that is not a NUL (an escaped backslash, then text) is data like any other.
    let fine = app
        .contact(
            &org,
            json!({"name": "Escaped", "custom_fields": {"note": "\\u0000"}}),
        )
        .await;
    assert_eq!(fine["custom_fields"]["note"], "\\u0000");

    // Every refusal above is on the record, and the ledger still verifies.
    let events = ledger(&app, &org.org.to_string()).await;
    let refused = events.iter().filter(|e| e["status"] == 422).count();
    assert_eq!(refused, 11, "five creates, five updates and the credential");
}

async fn a_nul_in_a_query_parameter_is_a_400_naming_it(app: TestApp) {
    let org = app.org_on("Acme", rampart_core::Plan::Growth).await;
    for (path, field) in [
        (
            format!("/v1/workspaces/{}/audit-events?actor=%00", org.ws),
            "actor",
        ),
        (
            format!("/v1/workspaces/{}/audit-events?action=a%00b", org.ws),
            "action",
        ),
        (format!("/v1/workspaces/{}/contacts?tag=%00", org.ws), "tag"),
        (
            format!("/v1/workspaces/{}/contacts?email=a%00@example.com", org.ws),
            "email",
        ),
    ] {
        let (status, code, envelope) = error_of(app.get(&path, &org.owner_key).await).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "BAD_REQUEST"),
            "{path}: {envelope}"
        );
        assert_eq!(envelope["error"]["field"], field, "{path}");
    }
}

async fn a_refused_request_is_recorded_whatever_its_path_holds(app: TestApp) {
    let org = app.org("Acme").await;
    let before = ledger(&app, &org.org.to_string()).await.len();
    let long = "x".repeat(5000);
    for id in ["ct_%00", "ct_a%00b", &format!("ct_{long}")] {
        let path = format!("/v1/workspaces/{}/contacts/{id}", org.ws);
        let (status, _, envelope) = error_of(app.delete(&path, &org.owner_key).await).await;
        assert_eq!(status, 400, "{envelope}");
    }
    for path in [
        format!("/v1/workspaces/{}/api-keys/key_%00", org.ws),
        format!("/v1/workspaces/{}/members/mem_%00", org.ws),
        format!("/v1/workspaces/{}/members/mem_%00/sessions", org.ws),
    ] {
        let (status, _, envelope) = error_of(app.delete(&path, &org.owner_key).await).await;
        assert_eq!(status, 400, "{path}: {envelope}");
    }
    // Segments that do not decode to UTF-8, and a workspace id that does not parse: still
    // refused in the envelope, and recorded in the caller's own ledger.
    for (path, status) in [
        (format!("/v1/workspaces/{}/contacts/ct_%FF", org.ws), 400),
        ("/v1/workspaces/ws_%FF/contacts/ct_x".to_owned(), 400),
        ("/v1/workspaces/not-a-workspace/contacts".to_owned(), 400),
        (format!("/v1/workspaces/{}/credentials/%C0%80", org.ws), 404),
    ] {
        let r = app
            .req(Method::DELETE, &path, &org.owner_key)
            .send()
            .await
            .unwrap();
        let (got, _, envelope) = error_of(r).await;
        assert_eq!(got, status, "{path}: {envelope}");
    }
    let events = ledger(&app, &org.org.to_string()).await;
    let new = &events[before..];
    assert_eq!(new.len(), 10, "one event per refused request: {new:?}");
    assert_eq!(
        new[0]["target"], "ct_\u{FFFD}",
        "the NUL is kept visibly, not dropped"
    );
    assert_eq!(new[1]["target"], "ct_a\u{FFFD}b");
    let cut = new[2]["target"].as_str().unwrap();
    assert!(
        cut.chars().count() <= 257 && cut.ends_with('\u{2026}'),
        "{cut}"
    );
    let statuses: Vec<&Value> = new.iter().map(|e| &e["status"]).collect();
    assert_eq!(statuses[..9], [&json!(400); 9], "{new:?}");
    assert_eq!(
        statuses[9],
        &json!(404),
        "a provider no segment can name: {new:?}"
    );
}

async fn an_event_that_cannot_be_written_fails_the_request_closed(app: TestApp) {
    let org = app.org("Acme").await;
    let base = format!("/v1/workspaces/{}/contacts", org.ws);
    let kept = app.contact(&org, json!({"name": "Kept"})).await;
    let (org_s, ws_s) = (org.org.to_string(), org.ws.to_string());
    // The ledger refuses every new event, as a full disk or a broken trigger would.
    let (refuse, allow): (Vec<&str>, Vec<&str>) = match app.backend {
        Backend::Sqlite => (
            vec![
                "CREATE TRIGGER refuse_events BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'ledger unavailable'); END",
            ],
            vec!["DROP TRIGGER refuse_events"],
        ),
        Backend::Postgres => (
            vec![
                "CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'ledger unavailable'; END $$",
                "CREATE TRIGGER refuse_events BEFORE INSERT ON audit_pending FOR EACH ROW EXECUTE FUNCTION refuse_events()",
            ],
            vec![
                "DROP TRIGGER refuse_events ON audit_pending",
                "DROP FUNCTION refuse_events()",
            ],
        ),
    };
    owner_sql(&app, &org_s, &ws_s, &refuse).await.unwrap();

    let before = ledger(&app, &org_s).await.len();
    let r = app
        .post(&base, &org.owner_key, &json!({"name": "Never stored"}))
        .await;
    let (status, code, envelope) = error_of(r).await;
    assert_eq!((status, code.as_str()), (503, "UNAVAILABLE"), "{envelope}");
    let kept_url = format!("{base}/{}", kept["id"].as_str().unwrap());
    let (status, code, _) = error_of(
        app.patch(&kept_url, &org.owner_key, &json!({"name": "Changed"}))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (503, "UNAVAILABLE"));
    // A refusal whose own event cannot be written is not answered as if it had been.
    let (status, code, _) = error_of(
        app.post(&base, &org.owner_key, &json!({"email": "not-an-email"}))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (503, "UNAVAILABLE"));

    owner_sql(&app, &org_s, &ws_s, &allow).await.unwrap();
    let names: Vec<Value> = app
        .all_contacts(&org)
        .await
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("Kept")], "no change without its event");
    assert_eq!(
        ledger(&app, &org_s).await.len(),
        before,
        "and no event was half-written"
    );
    // The ledger takes events again, and the chain is whole.
    app.contact(&org, json!({"name": "After"})).await;
    let r = app
        .get(
            &format!("/v1/workspaces/{}/contacts", org.ws),
            &org.owner_key,
        )
        .await;
    assert_eq!(r.status(), 200);
}

/// A request with both `Content-Length` and `Transfer-Encoding` is the shape of request
/// smuggling (a proxy and this server may disagree on where it ends). RFC 9112 section 6.3:
/// `Transfer-Encoding` wins, and the server must close the connection after answering, so no
/// bytes after it are ever read as another request. hyper does both (and strips the length
/// before a handler could see it, so the server could not refuse instead); this pins that
/// down whatever the declared length.
async fn a_request_framed_by_both_length_and_chunks_is_read_by_its_chunks_then_closed(
    app: TestApp,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let org = app.org("Acme").await;
    let body = r#"{"name":"Smuggled"}"#;
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    // A second request behind the first, on the same connection: it must never be read.
    let behind = format!(
        "GET /v1/workspaces/{}/contacts HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
        org.ws, app.addr, org.owner_key
    );
    for length in [0, body.len(), chunked.len()] {
        let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "POST /v1/workspaces/{}/contacts HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\n\
             Transfer-Encoding: chunked\r\n\r\n",
            org.ws, app.addr, org.owner_key
        );
        s.write_all(format!("{head}{chunked}{behind}").as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("the server closes the connection")
            .unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(
            text.starts_with("HTTP/1.1 201"),
            "read by its chunks (Content-Length {length}): {text}"
        );
        assert_eq!(
            text.matches("HTTP/1.1 ").count(),
            1,
            "one answer, the request behind it unread: {text}"
        );
    }
    let names: Vec<Value> = app
        .all_contacts(&org)
        .await
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![json!("Smuggled"); 3],
        "one contact per request, each whole"
    );
}

/// Sends `len` bytes of JSON whitespace to `path` in chunked encoding (no declared length),
/// with `headers`; answers the status and the body.
async fn chunked(
    app: &TestApp,
    path: &str,
    headers: &[(&str, String)],
    len: usize,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n",
        app.addr
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    while sent < len {
        let n = chunk.len().min(len - sent);
        // The server may answer and close before it has everything: that is the point.
        if s.write_all(format!("{n:x}\r\n").as_bytes()).await.is_err()
            || s.write_all(&chunk[..n]).await.is_err()
            || s.write_all(b"\r\n").await.is_err()
        {
            break;
        }
        sent += n;
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

async fn every_route_holds_its_body_to_the_limit(app: TestApp) {
    let org = app.org("Acme").await;
    let (mut b, _) = app.person("ann@example.com", "Correct-Horse-9").await;
    let session = vec![
        ("Cookie", b.cookie.clone().unwrap()),
        ("X-CSRF-Token", b.csrf.clone().unwrap()),
    ];
    let key = vec![("Authorization", format!("Bearer {}", org.owner_key))];
    let contacts = format!("/v1/workspaces/{}/contacts", org.ws);
    // Routes whose handlers never read a body, a public form (64 KiB each), a workspace route
    // (1 MiB); declared and streamed.
    for (path, headers, len, limit) in [
        ("/v1/auth/totp/enroll", &session, 1_100_000, "64 KiB"),
        ("/v1/auth/signout", &session, 1_100_000, "64 KiB"),
        ("/v1/auth/password/reset", &vec![], 70_000, "64 KiB"),
        (contacts.as_str(), &key, 1_100_000, "1 MiB"),
    ] {
        let mut r = app
            .client
            .post(app.url(path))
            .header("Content-Type", "application/json")
            .body(vec![b' '; len]);
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        let (status, code, envelope) = error_of(r.send().await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (413, "PAYLOAD_TOO_LARGE"),
            "{path}: {envelope}"
        );
        assert!(
            envelope["error"]["message"]
                .as_str()
                .unwrap()
                .contains(limit),
            "{envelope}"
        );
        let (status, text) = chunked(&app, path, headers, len).await;
        assert_eq!(status, 413, "{path}, streamed: {text}");
        assert!(text.contains("PAYLOAD_TOO_LARGE"), "{text}");
    }
    // The session is still good: nothing above reached a handler.
    let (status, _) = app.browse(&mut b, Method::GET, "/v1/auth/me", None).await;
    assert_eq!(status, 200);
    // A body just under the limit is read.
    let r = app
        .req(Method::POST, &contacts, &org.owner_key)
        .header("Content-Type", "application/json")
        .body(format!("{{\"name\":\"Padded\"{}}}", " ".repeat(1_000_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

async fn a_persons_refused_change_is_recorded_in_their_ledger(app: TestApp) {
    let (mut b, ws) = app.person("ann@example.com", "Correct-Horse-9").await;
    let ws: rampart_core::WorkspaceId = ws.parse().unwrap();
    let (org, _) = app.store.workspace_org(ws).await.unwrap().unwrap();
    let org = org.to_string();
    let before = ledger(&app, &org).await.len();

    // No CSRF token: refused, and the refusal names the person.
    let mut no_csrf = Browser {
        cookie: b.cookie.clone(),
        csrf: None,
    };
    let (status, _) = app
        .browse(
            &mut no_csrf,
            Method::POST,
            "/v1/auth/signout",
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, 403);
    // Invalid input.
    let (status, _) = app
        .browse(
            &mut b,
            Method::POST,
            "/v1/auth/password",
            Some(&json!({"current_password": 5})),
        )
        .await;
    assert_eq!(status, 422);
    // A session that ended names nobody: nothing to record it in.
    let mut gone = Browser {
        cookie: Some("rampart_session=not-a-session".into()),
        csrf: b.csrf.clone(),
    };
    let (status, _) = app
        .browse(
            &mut gone,
            Method::POST,
            "/v1/auth/signout",
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, 401);

    let events = ledger(&app, &org).await;
    let new: Vec<(Value, Value, Value)> = events[before..]
        .iter()
        .map(|e| {
            (
                e["action"].clone(),
                e["status"].clone(),
                e["error_code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        new,
        vec![
            (json!("auth.signout"), json!(403), json!("FORBIDDEN")),
            (json!("auth.password_change"), json!(422), json!("INVALID")),
        ]
    );
    assert!(
        events[before..]
            .iter()
            .all(|e| e["actor"].as_str().unwrap().starts_with("usr_"))
    );
}

fn two_anonymous_records_a_minute(state: rampart::AppState) -> rampart::AppState {
    let mut limits = rampart::http::limits::LimitSettings::default();
    limits.rates.anonymous_refusals_per_workspace = 2;
    state.with_limits(std::sync::Arc::new(rampart_guard::Limiter::local()), limits)
}

async fn an_unauthenticated_refusal_costs_the_ledger_a_fixed_capped_amount(app: TestApp) {
    let org = app.org("Acme").await;
    let org_s = org.org.to_string();
    let before = ledger(&app, &org_s).await.len();
    let body = json!({"name": "x".repeat(600_000)}).to_string();
    for _ in 0..4 {
        let r = app
            .client
            .post(app.url(&format!("/v1/workspaces/{}/contacts", org.ws)))
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let events = ledger(&app, &org_s).await;
    let new = &events[before..];
    assert_eq!(
        new.len(),
        2,
        "the workspace's share for this minute: {new:?}"
    );
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(body.as_bytes()));
    for e in new {
        assert_eq!(e["actor"], "anonymous");
        assert_eq!(
            e["args"],
            json!({"body_bytes": body.len(), "body_sha256": digest}),
            "size and hash, never the content"
        );
    }
    // A caller who is known is recorded in full, whatever the cap.
    let r = app
        .post(
            &format!("/v1/workspaces/{}/contacts", org.ws),
            &org.owner_key,
            &json!({"email": "bad"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(ledger(&app, &org_s).await.len(), before + 3);
}
