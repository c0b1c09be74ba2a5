//! Contacts over HTTP, on SQLite and PostgreSQL: the shapes a client sees, every kind of bad
//! input answered with a clear error that changes nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use common::{TestApp, error_of};
use rampart_core::Role;
use serde_json::{Value, json};

both_backends!(
    create_read_update_delete,
    the_most_tags_a_contact_may_have_are_all_stored,
    email_is_unique_per_workspace_only,
    bad_input_is_refused_and_changes_nothing,
    lists_paginate_and_filter,
    roles_are_enforced,
    requests_without_a_valid_key_are_refused,
    the_bulk_path_finds_taken_emails_and_writes_whole_rows,
);

async fn create_read_update_delete(app: TestApp) {
    let org = app.org("Acme").await;
    let base = format!("/v1/workspaces/{}/contacts", org.ws);
    let r = app
        .post(&base, &org.owner_key, &json!({
            "name": " Ann Lee ", "email": "Ann@Example.com", "phone": "(415) 555-2671",
            "us_state": "ca", "tags": ["vip", "lead", "vip"], "custom_fields": {"plan": "gold", "seats": 3}
        }))
        .await;
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("x-request-id").is_some());
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let c: Value = r.json().await.unwrap();
    assert!(c["id"].as_str().unwrap().starts_with("ct_"));
    assert_eq!(c["workspace_id"], json!(org.ws.to_string()));
    assert_eq!(c["name"], "Ann Lee");
    assert_eq!(c["email"], "Ann@Example.com");
    assert_eq!(c["phone"], "+14155552671", "normalised to E.164");
    assert_eq!(c["us_state"], "CA");
    assert_eq!(c["tags"], json!(["lead", "vip"]), "deduplicated and sorted");
    assert_eq!(location, format!("{base}/{}", c["id"].as_str().unwrap()));

    let read: Value = app
        .get(&location, &org.owner_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read, c, "what was created reads back identically");

    app.clock.advance(chrono::Duration::seconds(5));
    let r = app
        .patch(&location, &org.owner_key, &json!({"phone": null, "tags": ["customer"], "custom_fields": {"seats": null, "tier": 2}}))
        .await;
    assert_eq!(r.status(), 200);
    let updated: Value = r.json().await.unwrap();
    assert_eq!(updated["phone"], Value::Null);
    assert_eq!(updated["name"], "Ann Lee", "absent fields are left alone");
    assert_eq!(updated["tags"], json!(["customer"]));
    assert_eq!(updated["custom_fields"], json!({"plan": "gold", "tier": 2}));
    assert_eq!(updated["created_at"], c["created_at"]);
    assert_ne!(updated["updated_at"], c["updated_at"]);
    let read: Value = app
        .get(&location, &org.owner_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read, updated);

    // The history holds the create (what it answered, by the key that made it) and the update.
    let history: Value = app
        .get(&format!("{location}/versions"), &org.owner_key)
        .await
        .json()
        .await
        .unwrap();
    let versions = history["data"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{history}");
    assert_eq!(versions[0]["version"], 1);
    assert_eq!(versions[0]["event"], "create");
    assert_eq!(versions[0]["before"], Value::Null);
    assert_eq!(
        versions[0]["after"], c,
        "the first version is the contact as created"
    );
    assert_eq!(versions[0]["at"], c["created_at"]);
    assert_eq!(versions[0]["actor"], versions[1]["actor"]);
    assert!(versions[0]["actor"].as_str().is_some_and(|a| !a.is_empty()));
    assert_eq!(versions[1]["version"], 2);
    assert_eq!(versions[1]["event"], "update");
    assert_eq!(versions[1]["before"], c);
    assert_eq!(versions[1]["after"], updated);

    assert_eq!(app.delete(&location, &org.owner_key).await.status(), 204);
    let (status, code, _) = error_of(app.get(&location, &org.owner_key).await).await;
    assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
    let (status, _, _) = error_of(app.delete(&location, &org.owner_key).await).await;
    assert_eq!(status, 404, "deleting twice is a 404");
}

/// A contact's tags are stored in one statement; all of them, at the limit, read back.
async fn the_most_tags_a_contact_may_have_are_all_stored(app: TestApp) {
    let org = app.org("Acme").await;
    let base = format!("/v1/workspaces/{}/contacts", org.ws);
    let max = rampart_core::contact::Tag::MAX_PER_CONTACT;
    let mut tags: Vec<String> = (0..max).map(|i| format!("t{i:02}")).collect();
    let r = app
        .post(
            &base,
            &org.owner_key,
            &json!({"name": "Many", "tags": tags}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let read: Value = app
        .get(&location, &org.owner_key)
        .await
        .json()
        .await
        .unwrap();
    tags.sort();
    assert_eq!(read["tags"], json!(tags));

    let one_more: Vec<String> = (0..=max).map(|i| format!("u{i:02}")).collect();
    let r = app
        .post(
            &base,
            &org.owner_key,
            &json!({"name": "Too many", "tags": one_more}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let listed: Value = app.get(&base, &org.owner_key).await.json().await.unwrap();
    assert_eq!(
        listed["data"].as_array().map(Vec::len),
        Some(1),
        "the refused one was not stored"
    );
}

async fn email_is_unique_per_workspace_only(app: TestApp) {
    let a = app.org("Alpha").await;
    let b = app.org("Beta").await;
    app.contact(&a, json!({"email": "same@example.com"})).await;
    let r = app
        .post(
            &format!("/v1/workspaces/{}/contacts", a.ws),
            &a.owner_key,
            &json!({"email": "SAME@example.com"}),
        )
        .await;
    let (status, code, _) = error_of(r).await;
    assert_eq!((status, code.as_str()), (409, "CONFLICT"));
    // Another workspace may hold the same address.
    app.contact(&b, json!({"email": "same@example.com"})).await;
    // Changing a contact's email onto a taken one is also a conflict, and changes nothing.
    let other = app.contact(&a, json!({"email": "other@example.com"})).await;
    let path = format!(
        "/v1/workspaces/{}/contacts/{}",
        a.ws,
        other["id"].as_str().unwrap()
    );
    let (status, code, _) = error_of(
        app.patch(
            &path,
            &a.owner_key,
            &json!({"email": "same@example.com", "name": "X"}),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "CONFLICT"));
    let after: Value = app.get(&path, &a.owner_key).await.json().await.unwrap();
    assert_eq!(after, other);
}

async fn bad_input_is_refused_and_changes_nothing(app: TestApp) {
    let org = app.org("Acme").await;
    let existing = app
        .contact(
            &org,
            json!({"name": "Keep Me", "email": "keep@example.com"}),
        )
        .await;
    let base = format!("/v1/workspaces/{}/contacts", org.ws);
    let one = format!("{base}/{}", existing["id"].as_str().unwrap());
    let before = app.all_contacts(&org).await;

    let raw = |method: reqwest::Method, path: &str, body: &'static str| {
        app.req(method, path, &org.owner_key)
            .header("content-type", "application/json")
            .body(body)
    };
    // (request, expected status, expected code, expected field)
    let cases: Vec<(reqwest::RequestBuilder, u16, &str, Option<&str>)> = vec![
        (
            raw(reqwest::Method::POST, &base, "{\"name\": "),
            400,
            "BAD_REQUEST",
            None,
        ),
        (
            raw(reqwest::Method::POST, &base, "{\"name\": \"a\"} trailing"),
            400,
            "BAD_REQUEST",
            None,
        ),
        (
            raw(reqwest::Method::POST, &base, "[1,2]"),
            422,
            "INVALID",
            None,
        ),
        (
            raw(
                reqwest::Method::POST,
                &base,
                r#"{"name":"a","workspace_id":"ws_01jdv0000000000000000000000"}"#,
            ),
            422,
            "INVALID",
            Some("workspace_id"),
        ),
        (
            raw(
                reqwest::Method::POST,
                &base,
                r#"{"name":"a","id":"ct_01jdv0000000000000000000000"}"#,
            ),
            422,
            "INVALID",
            Some("id"),
        ),
        (
            raw(
                reqwest::Method::POST,
                &base,
                r#"{"name":"a","created_at":"2020-01-01T00:00:00Z"}"#,
            ),
            422,
            "INVALID",
            Some("created_at"),
        ),
        (
            raw(reqwest::Method::POST, &base, r#"{"email":"not-an-email"}"#),
            422,
            "INVALID",
            Some("email"),
        ),
        (
            raw(reqwest::Method::POST, &base, r#"{"phone":"12"}"#),
            422,
            "INVALID",
            Some("phone"),
        ),
        (
            raw(
                reqwest::Method::POST,
                &base,
                r#"{"name":"a","us_state":"Narnia"}"#,
            ),
            422,
            "INVALID",
            Some("us_state"),
        ),
        (
            raw(reqwest::Method::POST, &base, r#"{"name":"a","tags":"vip"}"#),
            422,
            "INVALID",
            Some("tags"),
        ),
        (
            raw(
                reqwest::Method::POST,
                &base,
                r#"{"name":"a","custom_fields":[1]}"#,
            ),
            422,
            "INVALID",
            Some("custom_fields"),
        ),
        (
            raw(reqwest::Method::POST, &base, r#"{"tags":["x"]}"#),
            422,
            "INVALID",
            Some("body"),
        ),
        (
            raw(
                reqwest::Method::PATCH,
                &one,
                r#"{"name":"Changed","email":"bad"}"#,
            ),
            422,
            "INVALID",
            Some("email"),
        ),
        (
            raw(
                reqwest::Method::PATCH,
                &one,
                r#"{"name":"Changed","workspace_id":"ws_x"}"#,
            ),
            422,
            "INVALID",
            Some("workspace_id"),
        ),
        (
            raw(
                reqwest::Method::PATCH,
                &one,
                r#"{"updated_at":"2020-01-01T00:00:00Z"}"#,
            ),
            422,
            "INVALID",
            Some("updated_at"),
        ),
        (
            app.req(reqwest::Method::POST, &base, &org.owner_key)
                .header("content-type", "text/plain")
                .body("{}"),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            None,
        ),
        (
            app.req(
                reqwest::Method::GET,
                &format!("{base}?limit=abc"),
                &org.owner_key,
            ),
            400,
            "BAD_REQUEST",
            None,
        ),
        (
            app.req(
                reqwest::Method::GET,
                &format!("{base}?limit=201"),
                &org.owner_key,
            ),
            422,
            "INVALID",
            Some("limit"),
        ),
        (
            app.req(
                reqwest::Method::GET,
                &format!("{base}?cursor=%%%"),
                &org.owner_key,
            ),
            400,
            "BAD_REQUEST",
            None,
        ),
        (
            app.req(
                reqwest::Method::GET,
                &format!("{base}?updated_since=yesterday"),
                &org.owner_key,
            ),
            400,
            "BAD_REQUEST",
            None,
        ),
        (
            app.req(
                reqwest::Method::GET,
                &format!("{base}?sort=evil"),
                &org.owner_key,
            ),
            400,
            "BAD_REQUEST",
            None,
        ),
        (
            app.req(
                reqwest::Method::GET,
                &format!("{base}/{}", org.ws),
                &org.owner_key,
            ),
            400,
            "BAD_REQUEST",
            None,
        ),
        (
            app.req(
                reqwest::Method::GET,
                &format!("/v1/workspaces/{}/contacts", org.org),
                &org.owner_key,
            ),
            400,
            "BAD_REQUEST",
            None,
        ),
        (
            app.req(
                reqwest::Method::GET,
                &format!("{base}/ct_notanid"),
                &org.owner_key,
            ),
            400,
            "BAD_REQUEST",
            None,
        ),
    ];
    for (i, (request, want_status, want_code, want_field)) in cases.into_iter().enumerate() {
        let (status, code, body) = error_of(request.send().await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (want_status, want_code),
            "case {i}: {body}"
        );
        if let Some(field) = want_field {
            assert_eq!(body["error"]["field"], field, "case {i}: {body}");
        }
        let text = body.to_string().to_lowercase();
        for leak in [
            "select ",
            "insert ",
            "sqlx",
            "panicked",
            "backtrace",
            "src/",
        ] {
            assert!(!text.contains(leak), "case {i} leaks `{leak}`: {body}");
        }
    }

    // A body over 1 MiB.
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let r = app
        .req(reqwest::Method::POST, &base, &org.owner_key)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(r).await;
    assert_eq!((status, code.as_str()), (413, "PAYLOAD_TOO_LARGE"));

    assert_eq!(
        app.all_contacts(&org).await,
        before,
        "no bad request changed anything"
    );
}

async fn lists_paginate_and_filter(app: TestApp) {
    let org = app.org("Acme").await;
    let mut made = Vec::new();
    for i in 0..7 {
        let tags = if i % 2 == 0 {
            json!(["even"])
        } else {
            json!(["odd"])
        };
        made.push(app.contact(&org, json!({"name": format!("P{i}"), "email": format!("p{i}@example.com"), "tags": tags})).await);
        app.clock.advance(chrono::Duration::seconds(10));
    }
    let base = format!("/v1/workspaces/{}/contacts", org.ws);
    // Walk pages of 3.
    let mut seen = Vec::new();
    let mut cursor = None::<String>;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}?limit=3&cursor={c}"),
            None => format!("{base}?limit=3"),
        };
        let page: Value = app.get(&path, &org.owner_key).await.json().await.unwrap();
        pages += 1;
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 3);
        seen.extend(data.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = made
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, want, "every contact once, in creation order");

    let page: Value = app
        .get(&format!("{base}?email=P3@EXAMPLE.com"), &org.owner_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["name"], "P3");

    let page: Value = app
        .get(&format!("{base}?tag=odd"), &org.owner_key)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["P1", "P3", "P5"]);
    assert!(
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["tags"] == json!(["odd"]))
    );

    let since = made[4]["updated_at"].as_str().unwrap();
    let page: Value = app
        .get(
            &format!("{base}?updated_since={}", since.replace('+', "%2B")),
            &org.owner_key,
        )
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["P4", "P5", "P6"]);
}

async fn roles_are_enforced(app: TestApp) {
    use common::readme;
    let org = app.org("Acme").await;
    let c = app.contact(&org, json!({"name": "Target"})).await;
    let one = format!(
        "/v1/workspaces/{}/contacts/{}",
        org.ws,
        c["id"].as_str().unwrap()
    );
    let base = format!("/v1/workspaces/{}/contacts", org.ws);
    let status = |allowed: bool| if allowed { 200 } else { 403 };
    // What the contact's name is now, as the owner reads it back.
    let mut name = "Target".to_owned();
    for role in Role::ALL {
        let key = app.key(org.ws, role).await;
        let read = app.get(&one, &key).await.status().as_u16();
        // Each role writes a name of its own, so a write that was refused but happened anyway
        // shows in the re-read below.
        let written = format!("Written by {role}");
        let write = app
            .patch(&one, &key, &json!({ "name": written }))
            .await
            .status()
            .as_u16();
        let keys = app
            .get(&format!("/v1/workspaces/{}/api-keys", org.ws), &key)
            .await
            .status()
            .as_u16();
        // Expected from README.md's role matrix, not from the server's own table.
        let (want_read, want_write, want_keys) = (
            status(readme::can(role, "contacts:read")),
            status(readme::can(role, "contacts:write")),
            status(readme::can(role, "keys:manage")),
        );
        assert_eq!(
            (read, write, keys),
            (want_read, want_write, want_keys),
            "role {role}"
        );
        if want_write == 200 {
            name = written;
        }
        let now: Value = app.get(&one, &org.owner_key).await.json().await.unwrap();
        assert_eq!(now["name"], name.as_str(), "after {role}'s PATCH");
        if want_write == 403 {
            let (_, code, body) =
                error_of(app.post(&base, &key, &json!({"name": "Nope"})).await).await;
            assert_eq!(code, "FORBIDDEN");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("contacts:write"),
                "{body}"
            );
        }
    }
    assert_eq!(app.all_contacts(&org).await.len(), 1);
}

async fn requests_without_a_valid_key_are_refused(app: TestApp) {
    let org = app.org("Acme").await;
    let path = format!("/v1/workspaces/{}/contacts", org.ws);
    let no_auth = app.client.get(app.url(&path)).send().await.unwrap();
    assert_eq!(
        no_auth
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        Some("Bearer")
    );
    let (status, code, _) = error_of(no_auth).await;
    assert_eq!((status, code.as_str()), (401, "UNAUTHENTICATED"));
    let mut forged = org.owner_key.clone();
    forged.pop();
    forged.push(if org.owner_key.ends_with('A') {
        'B'
    } else {
        'A'
    });
    for bad in [forged.as_str(), "rk_live_nope", "Basic abc", ""] {
        let (status, code, _) = error_of(app.get(&path, bad).await).await;
        assert_eq!((status, code.as_str()), (401, "UNAUTHENTICATED"), "{bad}");
    }
    let r = app
        .client
        .get(app.url(&path))
        .header("authorization", format!("bearer {}", org.owner_key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the scheme is case-insensitive");
}

/// The bulk path under `rampart import contacts`: emails already taken in the workspace are
/// found (case-insensitively, and only in this workspace), and each created contact gets its
/// tags and its version history, as the single-contact path writes them.
async fn the_bulk_path_finds_taken_emails_and_writes_whole_rows(app: TestApp) {
    use rampart_core::{Email, OperatorGrant, PersonName, Tag, WorkspaceId};
    use rampart_store::Mode;
    use rampart_store::contacts::{self, NewContact};

    let org = app.org("Acme").await;
    let other = app.org("Other").await;
    let base = format!("/v1/workspaces/{}/contacts", org.ws);
    let r = app
        .post(
            &base,
            &org.owner_key,
            &json!({"name": "Ann", "email": "Ann@Example.com"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = app
        .post(
            &format!("/v1/workspaces/{}/contacts", other.ws),
            &other.owner_key,
            &json!({"name": "Bob", "email": "bob@example.com"}),
        )
        .await;
    assert_eq!(r.status(), 201);

    let grant = OperatorGrant::new(org.org).in_workspace(org.ws);
    let mut tx = app.store.tenant(&grant, Mode::Write).await.unwrap();
    let asked: Vec<String> = ["ann@example.com", "bob@example.com", "cy@example.com"]
        .iter()
        .map(|e| Email::parse(e).unwrap().normalized())
        .collect();
    let taken = contacts::existing_emails(&mut tx, &asked).await.unwrap();
    assert_eq!(
        taken,
        std::iter::once("ann@example.com".to_owned()).collect(),
        "Bob's email is taken in another workspace only"
    );
    let prepare = |ws, i| {
        let new = NewContact {
            name: Some(PersonName::parse(&format!("Bulk {i}")).unwrap()),
            email: Some(Email::parse(&format!("bulk{i}@example.com")).unwrap()),
            tags: vec![Tag::parse("imported").unwrap()],
            ..NewContact::default()
        };
        contacts::PreparedContact::new(ws, new, chrono::Utc::now()).unwrap()
    };
    // A row prepared for another workspace is refused, and nothing of the batch is written.
    let mixed = vec![prepare(org.ws, 9), prepare(WorkspaceId::generate(), 8)];
    assert!(contacts::create_many(&mut tx, mixed).await.is_err());
    let rows = (0..3).map(|i| prepare(org.ws, i)).collect();
    let created = contacts::create_many(&mut tx, rows).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(created.len(), 3);

    let listed = app.all_contacts(&org).await;
    assert_eq!(listed.len(), 4);
    let bulk = app
        .get(&format!("{base}/{}", created[0]), &org.owner_key)
        .await;
    assert_eq!(bulk.status(), 200);
    let body: Value = bulk.json().await.unwrap();
    assert_eq!(body["name"], "Bulk 0");
    assert_eq!(body["tags"], json!(["imported"]));
    let history = app
        .get(&format!("{base}/{}/versions", created[0]), &org.owner_key)
        .await;
    assert_eq!(history.status(), 200);
    let history: Value = history.json().await.unwrap();
    let versions = history["data"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{history}");
    assert_eq!(versions[0]["event"], "create");
    assert_eq!(versions[0]["after"]["name"], "Bulk 0");
}
