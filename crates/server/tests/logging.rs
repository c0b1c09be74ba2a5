//! What the server log tells an operator, read from the log itself: a store error and the
//! ledger alert are logged inside their request's span, with its request id (the README says
//! the id finds them), and a refused read names who asked.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::{Backend, TestApp, owner_sql};
use serde_json::{Value, json};

both_backends!(
    an_unrecordable_event_is_alerted_under_its_request_id,
    a_refused_read_names_who_asked,
);

/// Every log line this test binary's server wrote, as JSON.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter("info")
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

/// The log lines written under request `id`.
fn lines_of(id: &str) -> Vec<Value> {
    let text = String::from_utf8_lossy(&log().0.lock().unwrap()).into_owned();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["span"]["request_id"] == id)
        .collect()
}

async fn an_unrecordable_event_is_alerted_under_its_request_id(app: TestApp) {
    log();
    let org = app.org("Acme").await;
    let (org_s, ws_s) = (org.org.to_string(), org.ws.to_string());
    let refuse = match app.backend {
        Backend::Sqlite => vec![
            "CREATE TRIGGER refuse_events BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'ledger unavailable'); END",
        ],
        Backend::Postgres => vec![
            "CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'ledger unavailable'; END $$",
            "CREATE TRIGGER refuse_events BEFORE INSERT ON audit_pending FOR EACH ROW EXECUTE FUNCTION refuse_events()",
        ],
    };
    owner_sql(&app, &org_s, &ws_s, &refuse).await.unwrap();
    let r = app
        .post(
            &format!("/v1/workspaces/{}/contacts", org.ws),
            &org.owner_key,
            &json!({"name": "Never"}),
        )
        .await;
    assert_eq!(r.status(), 503);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let lines = lines_of(&id);
    let alert = lines
        .iter()
        .find(|l| l["fields"]["alert"] == "audit_event_unrecorded")
        .unwrap_or_else(|| panic!("no alert under {id}: {lines:#?}"));
    assert_eq!(alert["level"], "ERROR");
    assert_eq!(alert["fields"]["action"], "contact.create");
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "request"),
        "the access line too"
    );
}

async fn a_refused_read_names_who_asked(app: TestApp) {
    log();
    let a = app.org("Alpha").await;
    let b = app.org("Beta").await;
    let theirs = app.contact(&b, json!({"name": "Theirs"})).await;
    let path = format!(
        "/v1/workspaces/{}/contacts/{}",
        b.ws,
        theirs["id"].as_str().unwrap()
    );
    let r = app.get(&path, &a.owner_key).await;
    assert_eq!(r.status(), 404);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let lines = lines_of(&id);
    let refused = lines
        .iter()
        .find(|l| l["fields"]["message"] == "read refused")
        .unwrap_or_else(|| panic!("no refused read under {id}: {lines:#?}"));
    let actor = refused["fields"]["actor"].as_str().unwrap();
    assert!(actor.starts_with("key_"), "{refused}");
    assert_eq!(refused["fields"]["status"], 404);
    assert_eq!(refused["fields"]["action"], "contact.get");
    // A read inside one's own workspace that finds nothing names the caller too.
    let r = app
        .get(
            &format!(
                "/v1/workspaces/{}/contacts/ct_01m00000000000000000000000",
                a.ws
            ),
            &a.owner_key,
        )
        .await;
    assert_eq!(r.status(), 404);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(
        lines_of(&id)
            .iter()
            .any(|l| l["fields"]["message"] == "read refused" && l["fields"]["actor"] == actor)
    );
}
