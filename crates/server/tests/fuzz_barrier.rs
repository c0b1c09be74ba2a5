//! The fuzz barrier (issue 31): generated bad requests against every route of the manifest, on
//! SQLite and on PostgreSQL, each checked for what a client or an auditor would notice:
//!
//! - no 5xx;
//! - every error in the envelope, `error.request_id` equal to the `x-request-id` header;
//! - no SQL, panic or stack text in any body;
//! - a body over the limit (64 KiB on `/v1/auth/*`, 1 MiB elsewhere) is never accepted;
//! - **one ledger event per mutating request**, counted in the database before and after each
//!   one: a tenant route's event in the caller's organization when the credential is valid
//!   (whichever organization the path names), else in the organization owning the path's
//!   workspace when that id parses and exists, else none; a user route's event in the signed-in
//!   person's organization when the session is valid, else none; and nothing anywhere else.
//!   Public routes are not counted (an anonymous request naming no organization is logged,
//!   not ledgered).
//!
//! Every route first meets every class of mutation once (the sweep), then random cases fill
//! the time budget, round-robin over the routes. Violations are collected and the test fails
//! at the end with the list, each with its route, request, status, body excerpt and the seed.
//!
//! `RAMPART_FUZZ_SEED=N` replays a run (the seed is printed at the start and in every failure);
//! `RAMPART_FUZZ_BUDGET_SECS=S` sets each backend's budget (default [`DEFAULT_BUDGET_SECS`]).
//! Requests the HTTP parser refuses before the app sees them (a raw NUL in a header, say) cannot
//! carry the envelope: they must be a bare 4xx, are counted apart and printed in the summary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::people::Browser;
use common::{Backend, Db, Org, TestApp};
use rampart::manifest::{RouteSpec, Scope, Target, specs};
use rampart_core::{
    ApiKeyId, ContactId, Email, InvitationId, MembershipId, OrgId, Role, SessionId, WorkspaceId,
};
use rampart_crypto::NewApiKey;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Seconds of fuzzing per backend when `RAMPART_FUZZ_BUDGET_SECS` is not set: the sweep plus
/// random cases, setup not included. The two backends run side by side.
const DEFAULT_BUDGET_SECS: u64 = 45;
/// The body limit of `/v1/auth/*` (issue 31: smaller for the auth and public routes).
const AUTH_BODY_LIMIT: usize = 64 * 1024;
/// The body limit of every other route.
const BODY_LIMIT: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// The app under test

/// Limits raised far above what the run sends, so that rate limits, quotas and the cap on
/// recording anonymous refusals do not answer in place of the code under test (their own tests
/// are in limits.rs).
fn generous(s: rampart::AppState) -> rampart::AppState {
    let lots = 1_000_000_000;
    // The run sends wrong passwords and codes by the thousand from one address: locks would
    // shut the run's own people out (their counting has tests of its own in identity.rs).
    let identity = s.identity().unwrap().clone();
    let mut settings = identity.settings().clone();
    settings.lockout_threshold = 1_000_000;
    settings.lockout_account_threshold = 1_000_000;
    settings.second_factor_max_failures = 1_000_000;
    settings.second_factor_user_max_failures = 1_000_000;
    let identity = rampart::auth::Identity::new(
        settings,
        identity.hasher().clone(),
        identity.mailer().clone(),
        identity.public_url(),
    );
    s.with_identity(identity).with_limits(
        std::sync::Arc::new(rampart_guard::Limiter::local()),
        rampart::http::limits::LimitSettings {
            rates: rampart::config::RateLimitSettings {
                api_per_key: 10_000_000,
                api_per_ip: 10_000_000,
                sign_in_per_ip: 10_000_000,
                public_form_per_ip: 10_000_000,
                public_form_per_email: 10_000_000,
                chat_per_key: 10_000_000,
                heartbeat_per_key: 10_000_000,
                // No cap on recording anonymous refusals: past the cap they are logged, not
                // ledgered, by design, and the barrier counts every one of them.
                anonymous_refusals_per_workspace: 0,
                ..Default::default()
            },
            quotas: rampart::config::QuotaSettings {
                free: lots,
                starter: lots,
                growth: lots,
                pro: lots,
                enterprise: lots,
            },
            ..Default::default()
        },
    )
}

both_backends_with!(generous; fuzz_barrier);

fn seed() -> u64 {
    match std::env::var("RAMPART_FUZZ_SEED") {
        Ok(s) if !s.trim().is_empty() => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("RAMPART_FUZZ_SEED must be a u64, not {s:?}")),
        _ => rand::random(),
    }
}

fn budget() -> Duration {
    let secs = match std::env::var("RAMPART_FUZZ_BUDGET_SECS") {
        Ok(s) if !s.trim().is_empty() => s.trim().parse().unwrap_or_else(|_| {
            panic!("RAMPART_FUZZ_BUDGET_SECS must be whole seconds, not {s:?}")
        }),
        _ => DEFAULT_BUDGET_SECS,
    };
    Duration::from_secs(secs)
}

// ---------------------------------------------------------------------------------------------
// The ledgers, read directly from the database

/// Events per organization, as stored.
type Counts = BTreeMap<String, i64>;

/// A connection to the test database that sees every organization's ledger: the SQLite file,
/// or PostgreSQL as the superuser (row-level security would hide other organizations).
enum Ledgers {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Ledgers {
    async fn open(app: &TestApp) -> Self {
        match &app.db {
            Db::Sqlite(path) => Ledgers::Sqlite(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(path))
                    .await
                    .unwrap(),
            ),
            Db::Postgres {
                admin_url, name, ..
            } => {
                let opts: sqlx::postgres::PgConnectOptions = admin_url.parse().unwrap();
                Ledgers::Postgres(
                    sqlx::postgres::PgPoolOptions::new()
                        .max_connections(1)
                        .connect_with(opts.database(name))
                        .await
                        .unwrap(),
                )
            }
        }
    }

    async fn counts(&self) -> Counts {
        const Q: &str = "SELECT org_id, COUNT(*) FROM audit_events GROUP BY org_id";
        let rows: Vec<(String, i64)> = match self {
            Ledgers::Sqlite(p) => sqlx::query_as(Q).fetch_all(p).await.unwrap(),
            Ledgers::Postgres(p) => sqlx::query_as(Q).fetch_all(p).await.unwrap(),
        };
        rows.into_iter().collect()
    }
}

/// What is wrong with the ledgers' change over one request, if anything: `expected` names the
/// one organization that must have exactly one new event, or none for no new event at all.
fn ledger_violation(
    before: &Counts,
    after: &Counts,
    expected: Option<&str>,
    label: &dyn Fn(&str) -> String,
) -> Option<String> {
    let mut diff: BTreeMap<&str, i64> = BTreeMap::new();
    for org in before.keys().chain(after.keys()) {
        let d = after.get(org).copied().unwrap_or(0) - before.get(org).copied().unwrap_or(0);
        if d != 0 {
            diff.insert(org, d);
        }
    }
    let shown = || {
        if diff.is_empty() {
            "no new event anywhere".to_owned()
        } else {
            diff.iter()
                .map(|(o, d)| format!("{d:+} in {}", label(o)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    match expected {
        Some(org) if diff.len() == 1 && diff.get(org) == Some(&1) => None,
        Some(org) => Some(format!(
            "expected exactly one new event, in {}'s ledger; got {}",
            label(org),
            shown()
        )),
        None if diff.is_empty() => None,
        None => Some(format!("expected no new event; got {}", shown())),
    }
}

// ---------------------------------------------------------------------------------------------
// Responses and what is checked on every one

/// One response as the client saw it.
#[derive(Debug, Clone)]
struct Observed {
    /// 0 when no response came.
    status: u16,
    request_id: Option<String>,
    body: Vec<u8>,
    /// Why there was no response, when there was none.
    transport_error: Option<String>,
}

impl Observed {
    /// The request reached the app: its outermost layer stamps every response with an id.
    fn app_saw_it(&self) -> bool {
        self.request_id.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    ServerError,
    NoResponse,
    NoEnvelope,
    Leak,
    OversizeAccepted,
    Ledger,
}

/// Text that must never reach a client: SQL, driver and database errors, panics, stack traces.
/// The generator's own strings contain none of these, so an echo of the input cannot match.
const LEAKS_CASE_SENSITIVE: &[&str] = &[
    "SELECT ",
    "INSERT INTO",
    "UPDATE ",
    "DELETE FROM",
    " WHERE ",
    "RETURNING ",
    "SQLSTATE",
];
const LEAKS_ANY_CASE: &[&str] = &[
    "sqlx",
    "sqlite_",
    "sqlite3",
    "postgres://",
    "postgresql://",
    "panicked",
    "syntax error",
    "violates",
    "invalid byte sequence",
    "unsupported unicode",
    "stack backtrace",
    "rust_backtrace",
    ".rs:",
    "unwrap()",
    "no such table",
    "no such column",
    "duplicate key value",
    "constraint failed",
    "database is locked",
    "pooltimedout",
    "connection refused",
];

/// The violations one response shows by itself (the ledger is checked apart).
fn response_violations(o: &Observed, oversize: bool) -> Vec<(Kind, String)> {
    let mut out = Vec::new();
    if let Some(e) = &o.transport_error {
        out.push((Kind::NoResponse, format!("no response: {e}")));
        return out;
    }
    if o.status >= 500 {
        out.push((Kind::ServerError, format!("status {}", o.status)));
    }
    if !o.app_saw_it() {
        // Refused by the HTTP parser before any of the app's layers ran: no envelope is
        // possible, but it must be a refusal (counted and printed apart).
        if !(400..500).contains(&o.status) {
            out.push((
                Kind::NoEnvelope,
                format!(
                    "status {} without an x-request-id (the app never answered it)",
                    o.status
                ),
            ));
        }
    } else if o.status >= 400 {
        match serde_json::from_slice::<Value>(&o.body) {
            Err(e) => out.push((Kind::NoEnvelope, format!("error body is not JSON: {e}"))),
            Ok(v) => {
                let err = &v["error"];
                let mut wrong = Vec::new();
                if err["code"].as_str().is_none_or(str::is_empty) {
                    wrong.push("no error.code");
                }
                if err["message"].as_str().is_none_or(str::is_empty) {
                    wrong.push("no error.message");
                }
                if err["request_id"].as_str() != o.request_id.as_deref() {
                    wrong.push("error.request_id differs from the x-request-id header");
                }
                if !wrong.is_empty() {
                    out.push((Kind::NoEnvelope, wrong.join("; ")));
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&o.body);
    let lower = text.to_lowercase();
    for needle in LEAKS_CASE_SENSITIVE {
        if text.contains(needle) {
            out.push((Kind::Leak, format!("body contains {needle:?}")));
        }
    }
    for needle in LEAKS_ANY_CASE {
        if lower.contains(needle) {
            out.push((Kind::Leak, format!("body contains {needle:?}")));
        }
    }
    if oversize && (200..400).contains(&o.status) {
        out.push((
            Kind::OversizeAccepted,
            format!("a body over the limit was accepted ({})", o.status),
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The world the requests are aimed at

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// An owner of A's workspace, signed in.
    U,
    /// An owner of B's workspace, signed in.
    V,
}

/// A signed-in person the run keeps signed in.
struct Person {
    email: String,
    password: String,
    org: OrgId,
    browser: Browser,
}

struct World {
    a: Org,
    b: Org,
    a_viewer_key: String,
    /// Well-formed, never stored.
    unknown_key: String,
    /// Stored, then revoked.
    revoked_key: String,
    u: Person,
    v: Person,
    /// The cookie of a session that was signed out.
    ended_cookie: String,
    /// Objects of A's workspace that `{id}` may name (sacrificial: the credentials the run
    /// uses are never among them, so no case can take away the run's own access).
    contacts: Vec<String>,
    api_keys: Vec<String>,
    members: Vec<String>,
    /// U's sessions other than the one in use, and its own.
    sessions: Vec<String>,
    invitations: Vec<String>,
    /// Objects of B, for foreign ids.
    b_contacts: Vec<String>,
    /// Real cursors: A's contacts and audit events, and B's contacts.
    cursors: Vec<String>,
    ws_org: HashMap<String, String>,
    org_names: HashMap<String, String>,
}

impl World {
    fn person(&self, who: Who) -> &Person {
        match who {
            Who::U => &self.u,
            Who::V => &self.v,
        }
    }

    fn person_mut(&mut self, who: Who) -> &mut Person {
        match who {
            Who::U => &mut self.u,
            Who::V => &mut self.v,
        }
    }

    fn label(&self, org: &str) -> String {
        self.org_names
            .get(org)
            .cloned()
            .unwrap_or_else(|| org.to_owned())
    }
}

async fn made_person(app: &TestApp, ws: WorkspaceId, email: &str, password: &str) -> OrgId {
    let (user, _) = app
        .store
        .add_member(
            ws,
            &Email::parse(email).unwrap(),
            Role::Owner,
            app.clock.now_for_tests(),
            None,
        )
        .await
        .unwrap();
    let identity = common::test_identity(app.dir.path(), Default::default());
    let hash = identity
        .hasher()
        .hash(&rampart_core::Secret::new(password.to_owned()))
        .await
        .unwrap();
    app.store
        .import_password_hash(user, &hash, true, app.clock.now_for_tests())
        .await
        .unwrap();
    app.store.workspace_org(ws).await.unwrap().unwrap().0
}

async fn json_of(r: reqwest::Response) -> Value {
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "setup request failed: {status} {v}");
    v
}

async fn build_world(app: &TestApp) -> World {
    let a = app.org("FuzzA").await;
    let b = app.org("FuzzB").await;
    let a_viewer_key = app.key(a.ws, Role::Viewer).await;
    let unknown_key = NewApiKey::generate(a.ws).unwrap().token.expose().clone();
    let keys_path = format!("/v1/workspaces/{}/api-keys", a.ws);
    let revoked = json_of(
        app.post(
            &keys_path,
            &a.owner_key,
            &json!({"name": "revoked", "role": "admin"}),
        )
        .await,
    )
    .await;
    let revoked_key = revoked["key"].as_str().unwrap().to_owned();
    let r = app
        .delete(
            &format!("{keys_path}/{}", revoked["id"].as_str().unwrap()),
            &a.owner_key,
        )
        .await;
    assert_eq!(r.status(), 204);
    let mut api_keys = Vec::new();
    for i in 0..3 {
        let k = json_of(
            app.post(
                &keys_path,
                &a.owner_key,
                &json!({"name": format!("sacrificial {i}"), "role": "member"}),
            )
            .await,
        )
        .await;
        api_keys.push(k["id"].as_str().unwrap().to_owned());
    }
    let mut contacts = Vec::new();
    for i in 0..4 {
        let c = app
            .contact(
                &a,
                json!({"name": format!("Fuzz Target {i}"), "email": format!("t{i}@a.example.com"), "tags": ["t"]}),
            )
            .await;
        contacts.push(c["id"].as_str().unwrap().to_owned());
    }
    let mut b_contacts = Vec::new();
    for i in 0..2 {
        let c = app
            .contact(
                &b,
                json!({"name": format!("B Person {i}"), "email": format!("p{i}@b.example.com")}),
            )
            .await;
        b_contacts.push(c["id"].as_str().unwrap().to_owned());
    }
    for i in 0..3 {
        app.store
            .add_member(
                a.ws,
                &Email::parse(&format!("sacrificial{i}@a.example.com")).unwrap(),
                Role::Member,
                app.clock.now_for_tests(),
                None,
            )
            .await
            .unwrap();
    }
    let r = app
        .req(
            Method::PUT,
            &format!("/v1/workspaces/{}/credentials/twilio", a.ws),
            &a.owner_key,
        )
        .json(&json!({"secret": "fuzz-provider-secret-1234"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (u_email, v_email) = ("u@fuzz-a.example.com", "v@fuzz-b.example.com");
    let password = "Barrier-Fuzz-Pass-77";
    let u_org = made_person(app, a.ws, u_email, password).await;
    let v_org = made_person(app, b.ws, v_email, password).await;
    // Spare sessions of U for `DELETE /v1/auth/sessions/{id}`, and one signed out.
    for _ in 0..2 {
        app.signed_in(u_email, password).await;
    }
    let mut ended = app.signed_in(u_email, password).await;
    let ended_cookie = ended.cookie.clone().unwrap();
    let (status, _) = app
        .browse(
            &mut ended,
            Method::POST,
            "/v1/auth/signout",
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, 204);
    let mut u_browser = app.signed_in(u_email, password).await;
    let v_browser = app.signed_in(v_email, password).await;
    let (_, list) = app
        .browse(&mut u_browser, Method::GET, "/v1/auth/sessions", None)
        .await;
    let sessions: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(sessions.len() >= 3, "{list}");

    // Members that may be changed or removed: everyone in A but U.
    let list = json_of(
        app.get(&format!("/v1/workspaces/{}/members", a.ws), &a.owner_key)
            .await,
    )
    .await;
    let members: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !m.to_string().contains(u_email))
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    // The owner and the three sacrificial members; never U, whose session the run relies on.
    assert_eq!(members.len(), 4, "{list}");

    // Open invitations that may be revoked.
    let mut invitations = Vec::new();
    for i in 0..3 {
        let inv = json_of(
            app.post(
                &format!("/v1/workspaces/{}/invitations", a.ws),
                &a.owner_key,
                &json!({"email": format!("invitee{i}@example.com"), "role": "viewer"}),
            )
            .await,
        )
        .await;
        invitations.push(inv["id"].as_str().unwrap().to_owned());
    }

    let mut cursors = Vec::new();
    for (org, path) in [
        (&a, format!("/v1/workspaces/{}/contacts?limit=1", a.ws)),
        (&a, format!("/v1/workspaces/{}/audit-events?limit=1", a.ws)),
        (&b, format!("/v1/workspaces/{}/contacts?limit=1", b.ws)),
    ] {
        let page = json_of(app.get(&path, &org.owner_key).await).await;
        cursors.push(page["next_cursor"].as_str().unwrap().to_owned());
    }

    let ws_org = HashMap::from([
        (a.ws.to_string(), a.org.to_string()),
        (b.ws.to_string(), b.org.to_string()),
    ]);
    let org_names = HashMap::from([
        (
            a.org.to_string(),
            "A (the path's usual organization)".to_owned(),
        ),
        (b.org.to_string(), "B (the other organization)".to_owned()),
    ]);
    assert_eq!(u_org, a.org);
    assert_eq!(v_org, b.org);
    World {
        a_viewer_key,
        unknown_key,
        revoked_key,
        u: Person {
            email: u_email.to_owned(),
            password: password.to_owned(),
            org: u_org,
            browser: u_browser,
        },
        v: Person {
            email: v_email.to_owned(),
            password: password.to_owned(),
            org: v_org,
            browser: v_browser,
        },
        ended_cookie,
        contacts,
        api_keys,
        members,
        sessions,
        invitations,
        b_contacts,
        cursors,
        ws_org,
        org_names,
        a,
        b,
    }
}

/// Signs `who` in again if the last request ended their session (sign-out, ending it by id).
async fn keep_signed_in(app: &TestApp, world: &mut World, who: Who) {
    let mut browser = world.person(who).browser.clone();
    let r = app
        .as_browser(&mut browser, Method::GET, "/v1/auth/me", None)
        .await;
    if r.status() == 200 {
        return;
    }
    assert_eq!(r.status(), 401, "GET /v1/auth/me answered {}", r.status());
    let p = world.person(who);
    let mut fresh = app.signed_in(&p.email, &p.password).await;
    if who == Who::U {
        let (_, me) = app
            .browse(&mut fresh, Method::GET, "/v1/auth/me", None)
            .await;
        world
            .sessions
            .push(me["session"]["id"].as_str().unwrap().to_owned());
    }
    world.person_mut(who).browser = fresh;
}

// ---------------------------------------------------------------------------------------------
// Cases

/// The classes of mutation; the sweep sends one case of each applicable class to every route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Class {
    /// A valid request (example body, real ids, a valid credential): reaches the handler.
    Valid,
    /// One field of the example body given a hostile value (NUL, lone surrogate, RTL override,
    /// control characters, a wrong type, a huge or tiny number, a long string…).
    FieldValue,
    /// A field added: a known one with a hostile value, or an unknown or hostile key.
    FieldAdded,
    /// One field removed.
    FieldRemoved,
    /// One key replaced by a hostile key (NUL, surrogate, RTL, empty, long).
    Key,
    /// A key repeated with another value.
    DuplicateKey,
    /// The whole body malformed (truncated, not JSON, wrong top-level type, not UTF-8, BOM…).
    WholeBody,
    /// 10,000 levels of `[` or `{`, as the body or as a field's value.
    DeepNesting,
    /// A number field (or an added one) set to 1e400, 2^64, -2^63-1 and the like.
    HugeNumber,
    /// A missing, wrong or malformed `Content-Type`.
    ContentType,
    /// A valid body padded with whitespace to just over the limit.
    Oversize,
    /// The `{ws}` segment: another organization's, absent, wrong prefix, `%00`, `%2F`, …
    PathWs,
    /// The `{id}` segment, likewise.
    PathId,
    /// The `{provider}` segment, likewise.
    Provider,
    /// Hostile query parameters (`%00`, bad percent-encoding, huge limits, unknown names).
    Query,
    /// Odd cursors: base64 of junk, wrong lengths, overflowing numbers, wrong alphabet.
    Cursor,
    /// Missing, malformed, unknown, revoked, viewer's or another organization's credentials,
    /// sessions without or with a wrong CSRF token, ended sessions.
    Credential,
    /// Hostile headers: Idempotency-Key, X-Request-Id, Origin, Accept, obs-text bytes, …
    Header,
    /// Bytes no HTTP client library sends: NUL and controls in headers and the request line,
    /// short and malformed chunked bodies, bare LF, folded headers.
    Raw,
}

const CLASSES: [Class; 19] = [
    Class::Valid,
    Class::FieldValue,
    Class::FieldAdded,
    Class::FieldRemoved,
    Class::Key,
    Class::DuplicateKey,
    Class::WholeBody,
    Class::DeepNesting,
    Class::HugeNumber,
    Class::ContentType,
    Class::Oversize,
    Class::PathWs,
    Class::PathId,
    Class::Provider,
    Class::Query,
    Class::Cursor,
    Class::Credential,
    Class::Header,
    Class::Raw,
];

fn applies(class: Class, spec: &RouteSpec) -> bool {
    match class {
        Class::PathWs => spec.path.contains("{ws}"),
        Class::PathId => spec.path.contains("{id}"),
        Class::Provider => spec.path.contains("{provider}"),
        Class::Cursor => spec.method == Method::GET,
        _ => true,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Csrf {
    Valid,
    Missing,
    Wrong,
}

/// The credential a case presents.
#[derive(Debug, Clone)]
enum Cred {
    None,
    /// `Authorization: Bearer <token>`; `org` is the key's organization when it is valid.
    Key {
        label: &'static str,
        token: String,
        org: Option<String>,
    },
    /// A malformed `Authorization` header (never valid).
    Authorization {
        label: &'static str,
        value: Vec<u8>,
    },
    /// A live session of U or V.
    Session {
        who: Who,
        csrf: Csrf,
    },
    /// A `Cookie` header that is no live session.
    Cookie {
        label: &'static str,
        value: Vec<u8>,
    },
}

impl Cred {
    fn describe(&self) -> String {
        match self {
            Cred::None => "no credential".into(),
            Cred::Key { label, .. } => format!("key: {label}"),
            Cred::Authorization { label, .. } => format!("Authorization: {label}"),
            Cred::Session { who, csrf } => format!("session of {who:?}, CSRF {csrf:?}"),
            Cred::Cookie { label, .. } => format!("cookie: {label}"),
        }
    }
}

/// What the bytes-level cases do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Raw {
    NulInHeader,
    ControlInHeader,
    NulInAuthorization,
    NulInTarget,
    HighByteInTarget,
    ShortBody,
    /// The body sent chunked, with no declared length (a limit read from `Content-Length`
    /// does not see it).
    Chunked,
    BadChunk,
    LengthAndChunked,
    BareLf,
    FoldedHeader,
    SpaceInHeaderName,
    Http10WithoutHost,
}

const RAWS: [Raw; 13] = [
    Raw::NulInHeader,
    Raw::ControlInHeader,
    Raw::NulInAuthorization,
    Raw::NulInTarget,
    Raw::HighByteInTarget,
    Raw::ShortBody,
    Raw::Chunked,
    Raw::BadChunk,
    Raw::LengthAndChunked,
    Raw::BareLf,
    Raw::FoldedHeader,
    Raw::SpaceInHeaderName,
    Raw::Http10WithoutHost,
];

/// One request to send.
#[derive(Debug, Clone)]
struct Case {
    spec: &'static RouteSpec,
    classes: Vec<Class>,
    notes: Vec<String>,
    /// Path segments as sent (already percent-encoded, or raw bytes for raw cases).
    ws: String,
    id: String,
    provider: String,
    query: Option<String>,
    cred: Cred,
    headers: Vec<(String, Vec<u8>)>,
    content_type: Option<Vec<u8>>,
    body: Option<Vec<u8>>,
    raw: Option<Raw>,
}

impl Case {
    fn path(&self) -> String {
        self.spec
            .path
            .replace("{ws}", &self.ws)
            .replace("{id}", &self.id)
            .replace("{provider}", &self.provider)
    }

    fn target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path()),
            None => self.path(),
        }
    }

    /// Whether the body is over the route's limit (judged on the body sent, whatever
    /// mutation made it).
    fn oversize(&self) -> bool {
        let limit = if self.spec.path.starts_with("/v1/auth/") {
            AUTH_BODY_LIMIT
        } else {
            BODY_LIMIT
        };
        // A malformed chunk is sent in place of the body.
        self.raw != Some(Raw::BadChunk) && self.body.as_ref().is_some_and(|b| b.len() > limit)
    }

    /// The `{ws}` segment as the router decodes it, when it decodes to text.
    fn ws_decoded(&self) -> Option<String> {
        percent_encoding::percent_decode_str(&self.ws)
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned())
    }

    fn route(&self) -> String {
        format!("{} {}", self.spec.method, self.spec.path)
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "{} {}",
            self.spec.method,
            excerpt(self.target().as_bytes(), 220)
        );
        let _ = write!(s, " | {}", self.cred.describe());
        for (name, value) in &self.headers {
            let _ = write!(s, " | {name}: {}", excerpt(value, 80));
        }
        match &self.content_type {
            Some(ct) => {
                let _ = write!(s, " | content-type: {}", excerpt(ct, 80));
            }
            None => s.push_str(" | no content-type"),
        }
        match &self.body {
            Some(b) => {
                let _ = write!(s, " | body ({} bytes): {}", b.len(), excerpt(b, 160));
            }
            None => s.push_str(" | no body"),
        }
        if let Some(raw) = self.raw {
            let _ = write!(s, " | raw bytes: {raw:?}");
        }
        let _ = write!(s, " | mutations: {}", self.notes.join("; "));
        s
    }
}

/// Bytes shown in a report: escaped, cut to `max` characters.
fn excerpt(bytes: &[u8], max: usize) -> String {
    let text: String = bytes.escape_ascii().to_string();
    if text.chars().count() > max {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// A JSON object as written on the wire: raw key and value texts, so that a value can be text
/// no JSON library would write (a lone surrogate escape, a duplicate key, 1e400).
#[derive(Debug, Clone, Default)]
struct RawObject(Vec<(String, String)>);

impl RawObject {
    fn of(example: Option<&str>) -> Self {
        let Some(text) = example else {
            return Self::default();
        };
        let v: Value = serde_json::from_str(text).unwrap();
        Self(
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()).to_string(), v.to_string()))
                .collect(),
        )
    }

    fn render(&self) -> Vec<u8> {
        let fields: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        format!("{{{}}}", fields.join(",")).into_bytes()
    }
}

/// Field names the handlers know (every example body's, and the optional ones).
const KNOWN_FIELDS: &[&str] = &[
    "name",
    "email",
    "phone",
    "us_state",
    "tags",
    "custom_fields",
    "role",
    "secret",
    "password",
    "current_password",
    "new_password",
    "token",
    "code",
    "org_name",
];

/// Hostile JSON keys, as raw JSON strings.
fn hostile_key(rng: &mut StdRng) -> (String, &'static str) {
    let keys: &[(&str, &str)] = &[
        (r#""na\u0000me""#, "NUL in a key"),
        (r#""\u0000""#, "key is NUL"),
        (r#""name\u0000""#, "key with a trailing NUL"),
        (r#""\ud800""#, "key is a lone surrogate"),
        (r#""\u202ename""#, "RTL override in a key"),
        ("\"\u{202E}eman\"", "raw RTL override in a key"),
        (r#""""#, "empty key"),
        (r#""\u001b[31m""#, "terminal escape in a key"),
        (r#""__proto__""#, "__proto__ key"),
        (r#""NAME""#, "upper-case known key"),
        (r#""name ""#, "known key with a space"),
    ];
    if rng.random_bool(0.1) {
        return (
            format!("\"{}\"", "k".repeat(10_000)),
            "10,000-character key",
        );
    }
    let (k, label) = keys[rng.random_range(0..keys.len())];
    (k.to_owned(), label)
}

/// A hostile value as raw JSON text (mostly valid JSON, a few deliberately not).
fn hostile_value(rng: &mut StdRng) -> (String, String) {
    let fixed: &[(&str, &str)] = &[
        (r#""a\u0000b""#, "NUL inside a string"),
        (r#""\u0000""#, "string is NUL"),
        (r#""\u0001\u0002\u001f\u007f""#, "control characters"),
        (r#""line\nbreak\r\ttab""#, "newline, CR and tab"),
        (r#""\ud800""#, "lone high surrogate"),
        (r#""\udfff""#, "lone low surrogate"),
        (r#""x\ud800y""#, "lone surrogate inside text"),
        (r#""\udc00\ud800""#, "reversed surrogate pair"),
        (r#""\ud83d\ude00""#, "valid surrogate pair"),
        ("\"\u{202E}gnp.exe\"", "raw RTL override"),
        (r#""\u202eevil""#, "escaped RTL override"),
        (
            "\"\u{200B}\u{FEFF}\u{2028}\"",
            "zero-width, BOM, line separator",
        ),
        (r#""\uffff\ufffe""#, "non-characters"),
        ("\"\u{1D518}\u{1D52B}\u{1F4A5}\"", "astral characters"),
        (r#""""#, "empty string"),
        (r#""   ""#, "blank string"),
        (r#""%00""#, "percent-encoded NUL as text"),
        (r#""probe@example.com\u0000""#, "email with a trailing NUL"),
        (r#""pr\u0000obe@example.com""#, "email with NUL inside"),
        (r#""probe@exa\u202emple.com""#, "email with RTL override"),
        (r#""+1202555\u00000123""#, "phone with NUL"),
        (
            "\"+\u{0664}\u{0664}\u{0667}\u{0669}\u{0661}\u{0661}\"",
            "phone in Arabic-Indic digits",
        ),
        (r#""+99999999999999999999999""#, "overlong phone"),
        (r#""owner""#, "role owner"),
        (r#""OWNER""#, "role in capitals"),
        (r#""viewer\u0000""#, "role with NUL"),
        (r#""ws_01h00000000000000000000000""#, "an id as a value"),
        (r#""../../etc/passwd""#, "path traversal text"),
        (r#""<script>alert(1)</script>""#, "markup"),
        (r#""\\\"\\""#, "backslashes and quotes"),
        ("1e400", "1e400"),
        ("-1e400", "-1e400"),
        ("18446744073709551616", "2^64"),
        ("-9223372036854775809", "-2^63-1"),
        ("1e-400", "1e-400"),
        ("-0", "negative zero"),
        ("0.1", "fraction"),
        ("123", "integer"),
        ("true", "boolean"),
        ("null", "null"),
        ("[]", "empty array"),
        ("{}", "empty object"),
        (r#"["a\u0000"]"#, "array with a NUL string"),
        (r#"["\ud800", 1, null, {}]"#, "mixed array"),
        (r#"{"k":"a\u0000b"}"#, "object with a NUL value"),
        (r#"{"a\u0000b":"x"}"#, "object with a NUL key"),
        (r#"{"\u202e":1e400}"#, "object with RTL key and huge number"),
        ("NaN", "NaN (not JSON)"),
        ("Infinity", "Infinity (not JSON)"),
        ("0x10", "hex number (not JSON)"),
        ("'single'", "single quotes (not JSON)"),
        ("\"a\u{0}b\"", "raw NUL byte in a string (not JSON)"),
        (
            "\"a\u{1}\u{1f}b\"",
            "raw control bytes in a string (not JSON)",
        ),
        ("\"unterminated", "unterminated string (not JSON)"),
    ];
    match rng.random_range(0..10) {
        0 => {
            let n = [64, 65, 201, 255, 10_000, 70_000][rng.random_range(0..6)];
            (
                format!("\"{}\"", "a".repeat(n)),
                format!("{n}-character string"),
            )
        }
        1 => (
            format!("\"{}\"", "\\u0000".repeat(2_000)),
            "2,000 NULs".to_owned(),
        ),
        2 => {
            // Random characters from awkward ranges, escaped as JSON would.
            let len = rng.random_range(1..40);
            let s: String = (0..len)
                .map(|_| {
                    let pick = rng.random_range(0..6);
                    let c = match pick {
                        0 => rng.random_range(0u32..0x20),
                        1 => rng.random_range(0x7fu32..0xa0),
                        2 => rng.random_range(0x200bu32..0x2030),
                        3 => rng.random_range(0xfff0u32..0x10000),
                        4 => rng.random_range(0x1f000u32..0x1fb00),
                        _ => rng.random_range(0x20u32..0x7f),
                    };
                    char::from_u32(c).unwrap_or('\u{fffd}')
                })
                .collect();
            let lowered = s.to_lowercase();
            if LEAKS_ANY_CASE.iter().any(|n| lowered.contains(n))
                || LEAKS_CASE_SENSITIVE.iter().any(|n| s.contains(n))
            {
                return ("\"x\"".to_owned(), "plain".to_owned());
            }
            (
                Value::from(s).to_string(),
                "random awkward characters".to_owned(),
            )
        }
        _ => {
            let (v, label) = fixed[rng.random_range(0..fixed.len())];
            (v.to_owned(), label.to_owned())
        }
    }
}

fn huge_number(rng: &mut StdRng) -> (&'static str, &'static str) {
    let n: &[(&str, &str)] = &[
        ("1e400", "1e400"),
        ("-1e400", "-1e400"),
        ("18446744073709551616", "2^64"),
        ("18446744073709551615", "2^64-1"),
        ("9223372036854775808", "2^63"),
        ("-9223372036854775809", "-2^63-1"),
        ("4294967296", "2^32"),
        ("1e308", "1e308"),
        ("1.7976931348623157e309", "past f64::MAX"),
        ("1e-400", "1e-400"),
        (
            "123456789012345678901234567890123456789012345678901234567890",
            "60 digits",
        ),
        ("-0.0", "-0.0"),
    ];
    n[rng.random_range(0..n.len())]
}

/// Whole bodies that are not a valid request body.
fn whole_body(rng: &mut StdRng, example: &[u8]) -> (Vec<u8>, String) {
    let cut = if example.len() > 1 {
        rng.random_range(1..example.len())
    } else {
        0
    };
    let choices: Vec<(Vec<u8>, String)> = vec![
        (b"".to_vec(), "empty body".into()),
        (b"   ".to_vec(), "blank body".into()),
        (b"{".to_vec(), "lone {".into()),
        (b"}".to_vec(), "lone }".into()),
        (b"[".to_vec(), "lone [".into()),
        (b"{\"".to_vec(), "open key".into()),
        (b"null".to_vec(), "null".into()),
        (b"true".to_vec(), "true".into()),
        (b"0".to_vec(), "0".into()),
        (b"\"string\"".to_vec(), "a string".into()),
        (b"[]".to_vec(), "an array".into()),
        (b"[{}]".to_vec(), "an array of an object".into()),
        (b"{\"a\":}".to_vec(), "missing value".into()),
        (b"{,}".to_vec(), "lone comma".into()),
        (b"{\"a\" 1}".to_vec(), "missing colon".into()),
        (example[..cut].to_vec(), format!("example cut at {cut}")),
        ([example, b"x"].concat(), "example then junk".into()),
        (
            [example, b",{}"].concat(),
            "example then a second value".into(),
        ),
        ([example, example].concat(), "example twice".into()),
        (
            [b"\xef\xbb\xbf".as_slice(), example].concat(),
            "BOM then example".into(),
        ),
        ([example, b"\0"].concat(), "example then a NUL byte".into()),
        (b"\xff\xfe\xfd".to_vec(), "invalid UTF-8".into()),
        (
            b"{\"name\":\"\xc3\x28\"}".to_vec(),
            "invalid UTF-8 in a string".into(),
        ),
        (
            b"{\"name\":\"\xed\xa0\x80\"}".to_vec(),
            "CESU surrogate bytes in a string".into(),
        ),
        (
            b"{\"name\":\"\xc0\x80\"}".to_vec(),
            "overlong NUL in a string".into(),
        ),
        (
            String::from_utf8_lossy(example)
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect(),
            "example in UTF-16LE".into(),
        ),
        (b"a=b&c=d".to_vec(), "form encoding".into()),
        (b"<?xml version=\"1.0\"?><a/>".to_vec(), "XML".into()),
        (
            (0..rng.random_range(1..200))
                .map(|_| rng.random())
                .collect(),
            "random bytes".into(),
        ),
    ];
    choices[rng.random_range(0..choices.len())].clone()
}

fn deep(rng: &mut StdRng, obj: &RawObject) -> (Vec<u8>, String) {
    let depth = [10_000, 10_000, 129, 127][rng.random_range(0..4)];
    match rng.random_range(0..4) {
        0 => (
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes(),
            format!("{depth} nested arrays"),
        ),
        1 => (
            format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)).into_bytes(),
            format!("{depth} nested objects"),
        ),
        2 => (
            "[".repeat(depth).into_bytes(),
            format!("{depth} unclosed ["),
        ),
        _ => {
            let mut o = obj.clone();
            let value = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let key = if o.0.is_empty() || rng.random_bool(0.3) {
                "\"custom_fields\"".to_owned()
            } else {
                o.0[rng.random_range(0..o.0.len())].0.clone()
            };
            o.0.retain(|(k, _)| *k != key);
            o.0.push((key.clone(), value));
            (o.render(), format!("{depth} nested arrays as {key}"))
        }
    }
}

const CONTENT_TYPES: &[&[u8]] = &[
    b"text/plain",
    b"application/x-www-form-urlencoded",
    b"multipart/form-data; boundary=x",
    b"application/json; charset=utf-16",
    b"application/json; charset=latin1",
    b"APPLICATION/JSON",
    b"application/json ; charset=UTF-8",
    b"application/problem+json",
    b"application/jsonp",
    b"json",
    b"*/*",
    b"application/json, text/plain",
    b"",
    b"application/json\xff",
    b"text/json",
    b"application/",
];

/// Hostile values for an id segment whose kind is `prefix` (already percent-encoded).
fn hostile_id(rng: &mut StdRng, prefix: &str, valid: &str, other_prefix: &str) -> (String, String) {
    let body = &valid[valid.find('_').map_or(0, |i| i + 1)..];
    let fresh_other = format!("{other_prefix}_{}", ContactId::generate().body());
    let c: Vec<(String, &str)> = vec![
        (fresh_other, "another kind's prefix"),
        (body.to_owned(), "no prefix"),
        (
            format!("{prefix}_{}", &body[..body.len() - 1]),
            "body one short",
        ),
        (format!("{prefix}_{body}0"), "body one long"),
        (
            format!("{}_{body}", prefix.to_uppercase()),
            "upper-case prefix",
        ),
        (
            format!("{prefix}_{}", body.to_uppercase()),
            "upper-case body",
        ),
        (format!("{valid}%00"), "trailing %00"),
        (format!("%00{valid}"), "leading %00"),
        (format!("{prefix}_%00{}", &body[1..]), "%00 inside"),
        (
            format!("{prefix}_{}%2F{}", &body[..10], &body[11..]),
            "%2F inside",
        ),
        (format!("..%2F..%2F{valid}"), "%2F traversal"),
        (format!("{valid}%2F"), "trailing %2F"),
        (format!("{valid}%20"), "trailing %20"),
        (format!("%E2%80%AE{valid}"), "RTL override"),
        (format!("{prefix}_%FF{}", &body[1..]), "invalid UTF-8 (%FF)"),
        (
            format!("{prefix}_%C0%80{}", &body[2..]),
            "overlong NUL (%C0%80)",
        ),
        (
            format!("{prefix}_8zzzzzzzzzzzzzzzzzzzzzzzzz"),
            "ULID overflow",
        ),
        (format!("{prefix}_{}", "0".repeat(26)), "all zeros"),
        (
            format!("{prefix}_{}", "u".repeat(26)),
            "letters outside Crockford",
        ),
        (format!("{prefix}_{}", "a".repeat(5000)), "5,000 characters"),
        (format!("{prefix}_"), "prefix only"),
        (format!("{prefix}__{body}"), "double underscore"),
        (format!("{valid};x"), "trailing ;x"),
        ("%25".to_owned(), "a percent sign"),
        ("null".to_owned(), "null"),
        ("-1".to_owned(), "-1"),
        ("%F0%9F%92%A5".to_owned(), "an emoji"),
        (format!("{prefix}_%u0000"), "bad percent escape"),
    ];
    let (s, label) = c[rng.random_range(0..c.len())].clone();
    (s, label.to_owned())
}

fn hostile_query(rng: &mut StdRng) -> (String, &'static str) {
    let q: &[(&str, &str)] = &[
        ("email=%00", "email=%00"),
        ("email=a%00b%40example.com", "NUL in an email filter"),
        ("email=%E2%80%AEx%40example.com", "RTL in an email filter"),
        ("tag=%00", "tag=%00"),
        ("tag=%E2%80%AE", "tag=RTL"),
        ("actor=%00", "actor=%00"),
        ("action=%00", "action=%00"),
        ("actor=a%00b&action=c%00d", "actor and action with NUL"),
        ("status=99999", "status out of range"),
        ("status=-1", "negative status"),
        ("limit=-1", "limit=-1"),
        ("limit=0", "limit=0"),
        ("limit=201", "limit=201"),
        ("limit=1e400", "limit=1e400"),
        ("limit=99999999999999999999", "limit over u64"),
        ("limit=abc", "limit=abc"),
        ("limit=%00", "limit=%00"),
        ("limit=1&limit=2", "duplicate limit"),
        ("updated_since=9999-99-99", "bad date"),
        (
            "updated_since=%2B275760-09-13T00:00:00Z",
            "date past chrono's range",
        ),
        (
            "since=0000-01-01T00:00:00Z&until=%00",
            "year 0 and NUL until",
        ),
        (
            "since=-262144-01-01T00:00:00Z",
            "date before chrono's range",
        ),
        ("unknown=1", "unknown parameter"),
        ("%", "lone percent"),
        ("a=%ZZ", "bad percent escape"),
        ("a=%C0%80", "overlong NUL"),
        ("email=%FF", "invalid UTF-8"),
        ("&&&=&", "empty pairs"),
        ("=", "empty name"),
        ("email[]=x", "array syntax"),
    ];
    if rng.random_bool(0.05) {
        return (
            format!("email={}", "a".repeat(20_000)),
            "20,000-character filter",
        );
    }
    let (q, label) = q[rng.random_range(0..q.len())];
    (q.to_owned(), label)
}

fn odd_cursor(rng: &mut StdRng, world: &World) -> (String, String) {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    let junk: Vec<u8> = (0..rng.random_range(0..48)).map(|_| rng.random()).collect();
    let real = world.cursors[rng.random_range(0..world.cursors.len())].clone();
    let c: Vec<(String, &str)> = vec![
        (URL_SAFE_NO_PAD.encode(&junk), "base64 of random bytes"),
        (
            URL_SAFE_NO_PAD.encode(format!("ct_{}", "z".repeat(26))),
            "base64 of an overflowing id",
        ),
        (
            URL_SAFE_NO_PAD.encode(format!("ct_{}", "0".repeat(20))),
            "base64 of a short id",
        ),
        (
            URL_SAFE_NO_PAD.encode(ContactId::generate().to_string()),
            "a cursor past the end",
        ),
        (
            URL_SAFE_NO_PAD.encode(WorkspaceId::generate().to_string()),
            "base64 of a workspace id",
        ),
        (
            URL_SAFE_NO_PAD.encode("99999999999999999999"),
            "base64 of a number over i64",
        ),
        (
            URL_SAFE_NO_PAD.encode("-9223372036854775808"),
            "base64 of i64::MIN",
        ),
        (URL_SAFE_NO_PAD.encode("-1"), "base64 of -1"),
        (URL_SAFE_NO_PAD.encode("0"), "base64 of 0"),
        (URL_SAFE_NO_PAD.encode("1e3"), "base64 of 1e3"),
        (URL_SAFE_NO_PAD.encode("\0"), "base64 of NUL"),
        (
            URL_SAFE_NO_PAD.encode(b"\xff\xfe"),
            "base64 of invalid UTF-8",
        ),
        (URL_SAFE.encode(&junk).replace('=', "%3D"), "padded base64"),
        (
            STANDARD
                .encode(&junk)
                .replace('+', "%2B")
                .replace('/', "%2F"),
            "standard alphabet",
        ),
        (format!("{real}A"), "a real cursor one character long"),
        (
            real[..real.len().saturating_sub(1)].to_owned(),
            "a real cursor one character short",
        ),
        (real.clone(), "another list's real cursor"),
        (format!("{real}%00"), "a real cursor with %00"),
        ("%00".to_owned(), "%00"),
        (String::new(), "empty"),
        ("!!!!".to_owned(), "not base64"),
        ("A".repeat(10_000), "10,000 characters"),
    ];
    let (s, label) = c[rng.random_range(0..c.len())].clone();
    let param = if rng.random_bool(0.8) {
        "cursor"
    } else {
        "limit=1&cursor"
    };
    (format!("{param}={s}"), label.to_owned())
}

fn junk_header(rng: &mut StdRng, cred: &Cred) -> (String, Vec<u8>) {
    let session = matches!(cred, Cred::Session { .. } | Cred::Cookie { .. });
    let keyed = matches!(cred, Cred::Key { .. } | Cred::Authorization { .. });
    loop {
        let (name, value): (&str, Vec<u8>) = match rng.random_range(0..20) {
            0 => ("idempotency-key", b"".to_vec()),
            1 => ("idempotency-key", "k".repeat(300).into_bytes()),
            2 => ("idempotency-key", b"\xff\xfe".to_vec()),
            3 => ("idempotency-key", b"has space".to_vec()),
            4 => ("idempotency-key", b"fuzz-barrier-reused-key".to_vec()),
            5 => (
                "idempotency-key",
                format!("fuzz-{}", rng.random::<u64>()).into_bytes(),
            ),
            6 => ("x-request-id", b"fuzz-chosen-id".to_vec()),
            7 => ("x-request-id", "r".repeat(100).into_bytes()),
            8 => ("x-request-id", b"bad id!".to_vec()),
            9 => ("x-request-id", b"\xff\xfe".to_vec()),
            10 if !session => ("origin", b"null".to_vec()),
            11 if !session => ("origin", b"http://evil.example".to_vec()),
            12 => ("accept", b"application/xml".to_vec()),
            13 => ("accept-encoding", b"gzip, br, zstd".to_vec()),
            14 => ("x-forwarded-for", b"1.2.3.4, \xff".to_vec()),
            15 => ("content-encoding", b"gzip".to_vec()),
            16 => ("user-agent", b"\xff\xfe\xfd".to_vec()),
            17 if !keyed && !session => ("cookie", b"a=b; ;=; rampart_session".to_vec()),
            18 if !session => ("x-csrf-token", b"\xff".to_vec()),
            19 => ("x-http-method-override", b"DELETE".to_vec()),
            _ => continue,
        };
        return (name.to_owned(), value);
    }
}

/// The generator: a seeded source of cases.
struct Gen {
    rng: StdRng,
}

impl Gen {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.random_range(0..items.len())]
    }

    /// A valid credential for the route (what most cases carry, so they reach handlers).
    fn usual_cred(&mut self, world: &World, spec: &RouteSpec) -> Cred {
        match spec.scope {
            Scope::User => Cred::Session {
                who: Who::U,
                csrf: Csrf::Valid,
            },
            Scope::Tenant if self.rng.random_bool(0.2) => Cred::Session {
                who: Who::U,
                csrf: Csrf::Valid,
            },
            Scope::Tenant => Cred::Key {
                label: "A's owner key",
                token: world.a.owner_key.clone(),
                org: Some(world.a.org.to_string()),
            },
            _ => Cred::None,
        }
    }

    fn hostile_cred(&mut self, world: &World) -> (Cred, String) {
        let a_org = Some(world.a.org.to_string());
        let cred = match self.rng.random_range(0..14) {
            0 => Cred::None,
            1 => Cred::Key {
                label: "B's owner key (another organization)",
                token: world.b.owner_key.clone(),
                org: Some(world.b.org.to_string()),
            },
            2 => Cred::Key {
                label: "A's viewer key",
                token: world.a_viewer_key.clone(),
                org: a_org,
            },
            3 => Cred::Key {
                label: "well-formed unknown key",
                token: world.unknown_key.clone(),
                org: None,
            },
            4 => Cred::Key {
                label: "revoked key",
                token: world.revoked_key.clone(),
                org: None,
            },
            5 => {
                let long = format!("Bearer rk_live_{}", "A".repeat(2000));
                let ws = format!("Bearer {}", world.a.ws);
                let values: Vec<(&'static str, Vec<u8>)> = vec![
                    ("Bearer without a token", b"Bearer".to_vec()),
                    ("Bearer and a space", b"Bearer ".to_vec()),
                    ("Basic", b"Basic dXNlcjpwYXNz".to_vec()),
                    ("a bare prefix", b"Bearer rk_live_".to_vec()),
                    ("a 2,000-character key", long.into_bytes()),
                    ("obs-text bytes", b"Bearer \xff\xfe".to_vec()),
                    ("three words", b"Bearer a b".to_vec()),
                    ("Token scheme", b"Token abc".to_vec()),
                    ("empty", b"".to_vec()),
                    ("a test-mode key", b"Bearer rk_test_abc".to_vec()),
                    ("a workspace id", ws.into_bytes()),
                    ("RTL in the key", b"Bearer rk_live_\xe2\x80\xae".to_vec()),
                ];
                let (label, value) = self.pick(&values).clone();
                Cred::Authorization { label, value }
            }
            6 => Cred::Session {
                who: Who::U,
                csrf: Csrf::Missing,
            },
            7 => Cred::Session {
                who: Who::U,
                csrf: Csrf::Wrong,
            },
            8 => Cred::Session {
                who: Who::V,
                csrf: Csrf::Valid,
            },
            9 => {
                let values: Vec<(&'static str, Vec<u8>)> = vec![
                    ("junk session", b"rampart_session=junk".to_vec()),
                    ("empty session", b"rampart_session=".to_vec()),
                    ("obs-text session", b"rampart_session=\xff\xfe".to_vec()),
                    (
                        "4,000-character session",
                        format!("rampart_session={}", "a".repeat(4000)).into_bytes(),
                    ),
                    ("another cookie", b"other=1".to_vec()),
                    ("%00 session", b"rampart_session=%00".to_vec()),
                    ("separators only", b";;;==".to_vec()),
                ];
                let (label, value) = self.pick(&values).clone();
                Cred::Cookie { label, value }
            }
            10 => Cred::Cookie {
                label: "a signed-out session",
                value: world.ended_cookie.clone().into_bytes(),
            },
            11 => Cred::Key {
                label: "A's owner key, lower-case scheme (valid)",
                token: world.a.owner_key.clone(),
                org: Some(world.a.org.to_string()),
            },
            12 => Cred::Session {
                who: Who::U,
                csrf: Csrf::Valid,
            },
            _ => Cred::Key {
                label: "A's owner key",
                token: world.a.owner_key.clone(),
                org: Some(world.a.org.to_string()),
            },
        };
        let d = cred.describe();
        (cred, d)
    }

    fn baseline(&mut self, world: &World, spec: &'static RouteSpec) -> Case {
        let id = match spec.target {
            Target::None => String::new(),
            Target::Contact => self.pick(&world.contacts).clone(),
            Target::ApiKey => self.pick(&world.api_keys).clone(),
            Target::Member => self.pick(&world.members).clone(),
            Target::Session => self.pick(&world.sessions).clone(),
            Target::Invitation => self.pick(&world.invitations).clone(),
        };
        let body = spec.example_body.map(|b| b.as_bytes().to_vec());
        Case {
            spec,
            classes: Vec::new(),
            notes: Vec::new(),
            ws: world.a.ws.to_string(),
            id,
            provider: "twilio".to_owned(),
            query: None,
            cred: self.usual_cred(world, spec),
            headers: Vec::new(),
            content_type: body.as_ref().map(|_| b"application/json".to_vec()),
            body,
            raw: None,
        }
    }

    /// The body's fields: the example's, or an empty object for routes without one.
    fn fields(case: &Case) -> RawObject {
        RawObject::of(case.spec.example_body)
    }

    fn set_body(case: &mut Case, body: Vec<u8>) {
        if case.content_type.is_none() {
            case.content_type = Some(b"application/json".to_vec());
        }
        case.body = Some(body);
    }

    /// The cases every run sends whatever the seed: the characters PostgreSQL cannot store
    /// (NUL) and JSON cannot carry (a lone surrogate) in every field, query parameter and path
    /// segment a route has, with a valid credential and (for path segments) without one.
    fn critical(&mut self, world: &World, spec: &'static RouteSpec) -> Vec<Case> {
        const VALUES: &[(&str, &str)] = &[
            (r#""a\u0000b""#, "NUL inside a string"),
            (
                r#""long-enough-text-\u0000""#,
                "a long string ending in NUL",
            ),
            (
                r#""long-enough-text-\ud800""#,
                "a long string ending in a lone surrogate",
            ),
            (r#"["a\u0000b"]"#, "an array of a string with NUL"),
            (r#"{"k":"a\u0000b"}"#, "an object with a NUL value"),
            (r#"{"a\u0000b":"x"}"#, "an object with a NUL key"),
        ];
        const PARAMS: &[&str] = &[
            "email",
            "tag",
            "actor",
            "action",
            "cursor",
            "updated_since",
            "since",
            "until",
            "status",
            "limit",
        ];
        let mut out = Vec::new();
        let mut push = |mut case: Case, class: Class, note: String| {
            case.classes.push(class);
            case.notes.push(format!("critical: {note}"));
            out.push(case);
        };
        let mut keys: Vec<String> = RawObject::of(spec.example_body)
            .0
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        if spec.path.contains("/contacts") && spec.example_body.is_some() {
            for k in ["custom_fields", "phone", "us_state", "tags"] {
                let k = format!("\"{k}\"");
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        if spec.mutates && keys.is_empty() {
            keys.push("\"note\"".to_owned());
        }
        for key in &keys {
            for (value, label) in VALUES {
                let mut case = self.baseline(world, spec);
                let mut o = Self::fields(&case);
                o.0.retain(|(k, _)| k != key);
                o.0.push((key.clone(), (*value).to_owned()));
                Self::set_body(&mut case, o.render());
                push(case, Class::FieldValue, format!("{key} = {label}"));
            }
        }
        if spec.method == Method::GET {
            for param in PARAMS {
                for (v, label) in [
                    ("%00", "%00"),
                    ("a%00b", "a%00b"),
                    ("%ED%A0%80", "surrogate bytes"),
                ] {
                    let mut case = self.baseline(world, spec);
                    case.query = Some(format!("{param}={v}"));
                    push(case, Class::Query, format!("{param}={label}"));
                }
            }
        }
        // A body just over the route's limit, declared, chunked, and both at once.
        for raw in [None, Some(Raw::Chunked), Some(Raw::LengthAndChunked)] {
            let mut case = self.baseline(world, spec);
            let limit = if spec.path.starts_with("/v1/auth/") {
                AUTH_BODY_LIMIT
            } else {
                BODY_LIMIT
            };
            let mut body = case.body.clone().unwrap_or_else(|| b"{}".to_vec());
            body.resize(limit + 1024, b' ');
            Self::set_body(&mut case, body);
            case.raw = raw;
            push(
                case,
                Class::Oversize,
                format!("valid JSON padded to {} bytes, sent {raw:?}", limit + 1024),
            );
        }
        for anonymous in [false, true] {
            let who = if anonymous { ", no credential" } else { "" };
            let mut segments: Vec<(&str, String)> = Vec::new();
            let base = self.baseline(world, spec);
            if spec.path.contains("{ws}") {
                segments.push(("ws", format!("{}%00", base.ws)));
            }
            if spec.path.contains("{id}") {
                let id = &base.id;
                let prefix = &id[..id.find('_').unwrap_or(0)];
                segments.push(("id", format!("{id}%00")));
                segments.push(("id", format!("{prefix}_%00")));
                segments.push(("id", "%00".to_owned()));
            }
            if spec.path.contains("{provider}") {
                segments.push(("provider", "twilio%00".to_owned()));
            }
            for (segment, value) in segments {
                let mut case = self.baseline(world, spec);
                if anonymous {
                    case.cred = Cred::None;
                }
                match segment {
                    "ws" => case.ws = value.clone(),
                    "id" => case.id = value.clone(),
                    _ => case.provider = value.clone(),
                }
                let class = match segment {
                    "ws" => Class::PathWs,
                    "id" => Class::PathId,
                    _ => Class::Provider,
                };
                push(case, class, format!("{segment} {value}{who}"));
            }
        }
        out
    }

    fn apply(&mut self, world: &World, case: &mut Case, class: Class) {
        case.classes.push(class);
        let note = match class {
            Class::Valid => {
                if case.spec.target == Target::Contact && self.rng.random_bool(0.3) {
                    case.id = self.pick(&world.b_contacts).clone();
                    "valid, with B's contact id".to_owned()
                } else {
                    "valid".to_owned()
                }
            }
            Class::FieldValue => {
                let mut o = Self::fields(case);
                let (value, label) = hostile_value(&mut self.rng);
                if o.0.is_empty() {
                    let key = *self.pick(KNOWN_FIELDS);
                    o.0.push((format!("\"{key}\""), value));
                    Self::set_body(case, o.render());
                    format!("added {key} = {label}")
                } else {
                    let i = self.rng.random_range(0..o.0.len());
                    o.0[i].1 = value;
                    let key = o.0[i].0.clone();
                    Self::set_body(case, o.render());
                    format!("{key} = {label}")
                }
            }
            Class::FieldAdded => {
                let mut o = Self::fields(case);
                let (key, key_label) = if self.rng.random_bool(0.7) {
                    let k = *self.pick(KNOWN_FIELDS);
                    (format!("\"{k}\""), k.to_owned())
                } else {
                    let (k, l) = hostile_key(&mut self.rng);
                    (k, l.to_owned())
                };
                let (value, label) = if key.contains("custom_fields") && self.rng.random_bool(0.7) {
                    let (v, l) = hostile_value(&mut self.rng);
                    let (k, kl) = hostile_key(&mut self.rng);
                    match self.rng.random_range(0..3) {
                        0 => (
                            format!("{{\"note\":{v}}}"),
                            format!("custom field note = {l}"),
                        ),
                        1 => (format!("{{{k}:\"x\"}}"), format!("custom field key: {kl}")),
                        _ => (
                            format!("{{\"a\":1,\"a\":{v}}}"),
                            format!("duplicate custom field = {l}"),
                        ),
                    }
                } else {
                    hostile_value(&mut self.rng)
                };
                o.0.retain(|(k, _)| *k != key);
                o.0.push((key, value));
                Self::set_body(case, o.render());
                format!("added {key_label} = {label}")
            }
            Class::FieldRemoved => {
                let mut o = Self::fields(case);
                if o.0.is_empty() {
                    Self::set_body(case, b"{}".to_vec());
                    "empty object".to_owned()
                } else {
                    let i = self.rng.random_range(0..o.0.len());
                    let (k, _) = o.0.remove(i);
                    Self::set_body(case, o.render());
                    format!("removed {k}")
                }
            }
            Class::Key => {
                let mut o = Self::fields(case);
                let (key, label) = hostile_key(&mut self.rng);
                if o.0.is_empty() {
                    o.0.push((key, "\"x\"".to_owned()));
                } else {
                    let i = self.rng.random_range(0..o.0.len());
                    o.0[i].0 = key;
                }
                Self::set_body(case, o.render());
                label.to_owned()
            }
            Class::DuplicateKey => {
                let mut o = Self::fields(case);
                let note = if o.0.is_empty() {
                    o.0.push(("\"a\"".into(), "1".into()));
                    o.0.push(("\"a\"".into(), "2".into()));
                    "duplicate unknown key".to_owned()
                } else {
                    let i = self.rng.random_range(0..o.0.len());
                    let (k, _) = o.0[i].clone();
                    let (v, label) = if self.rng.random_bool(0.5) {
                        hostile_value(&mut self.rng)
                    } else {
                        ("\"second\"".to_owned(), "a plain string".to_owned())
                    };
                    if self.rng.random_bool(0.5) {
                        o.0.push((k.clone(), v));
                    } else {
                        o.0.insert(0, (k.clone(), v));
                    }
                    format!("{k} twice (other = {label})")
                };
                Self::set_body(case, o.render());
                note
            }
            Class::WholeBody => {
                let example = Self::fields(case).render();
                let (body, label) = whole_body(&mut self.rng, &example);
                Self::set_body(case, body);
                label
            }
            Class::DeepNesting => {
                let o = Self::fields(case);
                let (body, label) = deep(&mut self.rng, &o);
                Self::set_body(case, body);
                label
            }
            Class::HugeNumber => {
                let mut o = Self::fields(case);
                let (n, label) = huge_number(&mut self.rng);
                if o.0.is_empty() || self.rng.random_bool(0.3) {
                    let key = *self.pick(KNOWN_FIELDS);
                    o.0.retain(|(k, _)| *k != format!("\"{key}\""));
                    o.0.push((format!("\"{key}\""), n.to_owned()));
                } else {
                    let i = self.rng.random_range(0..o.0.len());
                    o.0[i].1 = n.to_owned();
                }
                Self::set_body(case, o.render());
                format!("number {label}")
            }
            Class::ContentType => {
                if case.body.is_none() && self.rng.random_bool(0.5) {
                    case.body = Some(b"{}".to_vec());
                }
                if self.rng.random_bool(0.2) {
                    case.content_type = None;
                    "no content-type".to_owned()
                } else {
                    let ct = self.pick(CONTENT_TYPES).to_vec();
                    let label = format!("content-type {}", excerpt(&ct, 60));
                    case.content_type = Some(ct);
                    label
                }
            }
            Class::Oversize => {
                let auth = case.spec.path.starts_with("/v1/auth/");
                let limit = if auth && self.rng.random_bool(0.7) {
                    AUTH_BODY_LIMIT
                } else {
                    BODY_LIMIT
                };
                let mut body = case.body.clone().unwrap_or_else(|| b"{}".to_vec());
                let extra = self.rng.random_range(1..4096);
                body.resize(limit + extra, b' ');
                Self::set_body(case, body);
                format!(
                    "valid JSON padded to {} bytes (limit {limit})",
                    limit + extra
                )
            }
            Class::PathWs => match self.rng.random_range(0..6) {
                0 => {
                    case.ws = world.b.ws.to_string();
                    "B's workspace".to_owned()
                }
                1 => {
                    case.ws = WorkspaceId::generate().to_string();
                    "a workspace that does not exist".to_owned()
                }
                _ => {
                    let valid = world.a.ws.to_string();
                    let (ws, label) = hostile_id(&mut self.rng, "ws", &valid, "ct");
                    case.ws = ws;
                    format!("workspace: {label}")
                }
            },
            Class::PathId => {
                let (prefix, other, fresh) = match case.spec.target {
                    Target::Contact => ("ct", "ws", ContactId::generate().to_string()),
                    Target::ApiKey => ("key", "ct", ApiKeyId::generate().to_string()),
                    Target::Member => ("mem", "usr", MembershipId::generate().to_string()),
                    Target::Session => ("ses", "mem", SessionId::generate().to_string()),
                    Target::Invitation => ("inv", "mem", InvitationId::generate().to_string()),
                    Target::None => ("x", "y", "x_1".to_owned()),
                };
                if self.rng.random_bool(0.2) {
                    case.id = fresh;
                    "an id that does not exist".to_owned()
                } else {
                    let valid = case.id.clone();
                    let (id, label) = hostile_id(&mut self.rng, prefix, &valid, other);
                    case.id = id;
                    format!("id: {label}")
                }
            }
            Class::Provider => {
                let p: &[(&str, &str)] = &[
                    ("nope", "unknown provider"),
                    ("TWILIO", "upper case"),
                    ("twi%00lio", "%00 inside"),
                    ("twilio%00", "trailing %00"),
                    ("twilio%2F..", "%2F"),
                    ("%E2%80%AEtwilio", "RTL override"),
                    ("%FF", "invalid UTF-8"),
                    ("smtp", "smtp"),
                ];
                if self.rng.random_bool(0.1) {
                    case.provider = "p".repeat(5000);
                    "5,000-character provider".to_owned()
                } else {
                    let (v, label) = *self.pick(p);
                    case.provider = v.to_owned();
                    format!("provider: {label}")
                }
            }
            Class::Query => {
                let (q, label) = hostile_query(&mut self.rng);
                case.query = Some(q);
                format!("query: {label}")
            }
            Class::Cursor => {
                let (q, label) = odd_cursor(&mut self.rng, world);
                case.query = Some(q);
                format!("cursor: {label}")
            }
            Class::Credential => {
                let (cred, label) = self.hostile_cred(world);
                case.headers
                    .retain(|(n, _)| !matches!(n.as_str(), "cookie" | "origin" | "x-csrf-token"));
                case.cred = cred;
                label
            }
            Class::Header => {
                let n = self.rng.random_range(1..=3);
                let mut labels = Vec::new();
                for _ in 0..n {
                    let (name, value) = junk_header(&mut self.rng, &case.cred);
                    labels.push(format!("{name}: {}", excerpt(&value, 40)));
                    case.headers.push((name, value));
                }
                labels.join(", ")
            }
            Class::Raw => {
                let raw = *self.pick(&RAWS);
                case.raw = Some(raw);
                match raw {
                    Raw::NulInAuthorization => {
                        case.cred = Cred::Authorization {
                            label: "NUL in the key",
                            value: b"Bearer rk_live_\0abc".to_vec(),
                        }
                    }
                    Raw::NulInTarget => case.ws.push('\0'),
                    Raw::HighByteInTarget => case.ws.push('\u{ff}'),
                    _ => {}
                }
                format!("raw: {raw:?}")
            }
        };
        case.notes.push(note);
    }
}

// ---------------------------------------------------------------------------------------------
// Sending

fn cred_headers(world: &World, cred: &Cred) -> Vec<(String, Vec<u8>)> {
    match cred {
        Cred::None => Vec::new(),
        Cred::Key { label, token, .. } => {
            let scheme = if label.contains("lower-case") {
                "bearer"
            } else {
                "Bearer"
            };
            vec![(
                "authorization".into(),
                format!("{scheme} {token}").into_bytes(),
            )]
        }
        Cred::Authorization { value, .. } => vec![("authorization".into(), value.clone())],
        Cred::Session { who, csrf } => {
            let b = &world.person(*who).browser;
            let mut h = vec![("cookie".into(), b.cookie.clone().unwrap().into_bytes())];
            match csrf {
                Csrf::Valid => {
                    h.push(("x-csrf-token".into(), b.csrf.clone().unwrap().into_bytes()))
                }
                Csrf::Wrong => h.push(("x-csrf-token".into(), b"not-the-token".to_vec())),
                Csrf::Missing => {}
            }
            h
        }
        Cred::Cookie { value, .. } => vec![("cookie".into(), value.clone())],
    }
}

async fn send(app: &TestApp, client: &reqwest::Client, world: &World, case: &Case) -> Observed {
    let headers: Vec<(String, Vec<u8>)> = cred_headers(world, &case.cred)
        .into_iter()
        .chain(case.headers.iter().cloned())
        .chain(
            case.content_type
                .iter()
                .map(|ct| ("content-type".to_owned(), ct.clone())),
        )
        .collect();
    // Raw bytes, and bodies over the limit (a server may refuse those before reading them,
    // and close as it answers), go over a socket of their own.
    if case.raw.is_some() || case.oversize() {
        return send_raw(app, case, case.raw, &headers).await;
    }
    let url = reqwest::Url::parse(&format!("{}{}", app.base, case.target())).unwrap();
    assert_eq!(
        url.path(),
        case.path(),
        "the client would rewrite the path: change the generator"
    );
    let mut req = client.request(case.spec.method.clone(), url);
    for (name, value) in &headers {
        req = req.header(
            name.as_str(),
            reqwest::header::HeaderValue::from_bytes(value).unwrap(),
        );
    }
    if let Some(b) = &case.body {
        req = req.body(b.clone());
    }
    match req.send().await {
        Err(e) => Observed {
            status: 0,
            request_id: None,
            body: Vec::new(),
            transport_error: Some(format!("{e:?}")),
        },
        Ok(r) => {
            let status = r.status().as_u16();
            let request_id = r
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match r.bytes().await {
                Ok(body) => Observed {
                    status,
                    request_id,
                    body: body.to_vec(),
                    transport_error: None,
                },
                Err(e) => Observed {
                    status,
                    request_id,
                    body: Vec::new(),
                    transport_error: Some(format!("reading the body: {e:?}")),
                },
            }
        }
    }
}

/// Sends bytes no client library would, over a fresh connection, and reads the answer until
/// the server closes it.
async fn send_raw(
    app: &TestApp,
    case: &Case,
    raw: Option<Raw>,
    headers: &[(String, Vec<u8>)],
) -> Observed {
    let eol: &[u8] = if raw == Some(Raw::BareLf) {
        b"\n"
    } else {
        b"\r\n"
    };
    let mut req: Vec<u8> = Vec::new();
    let version = if raw == Some(Raw::Http10WithoutHost) {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };
    req.extend_from_slice(format!("{} ", case.spec.method).as_bytes());
    req.extend_from_slice(case.target().as_bytes());
    req.extend_from_slice(format!(" {version}").as_bytes());
    req.extend_from_slice(eol);
    if raw != Some(Raw::Http10WithoutHost) {
        req.extend_from_slice(format!("host: {}", app.addr).as_bytes());
        req.extend_from_slice(eol);
    }
    req.extend_from_slice(b"connection: close");
    req.extend_from_slice(eol);
    for (name, value) in headers {
        req.extend_from_slice(name.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value);
        req.extend_from_slice(eol);
    }
    let extra: &[u8] = match raw {
        Some(Raw::NulInHeader) => b"x-fuzz: a\0b",
        Some(Raw::ControlInHeader) => b"x-fuzz: a\x01\x1bb",
        Some(Raw::FoldedHeader) => b"x-fuzz: a\r\n folded",
        Some(Raw::SpaceInHeaderName) => b"x fuzz: 1",
        Some(_) => b"x-fuzz: 1",
        None => b"",
    };
    if !extra.is_empty() {
        req.extend_from_slice(extra);
        req.extend_from_slice(eol);
    }
    let body = case.body.clone().unwrap_or_default();
    let mut shut_early = false;
    match raw {
        Some(Raw::ShortBody) => {
            req.extend_from_slice(format!("content-length: {}", body.len() + 50).as_bytes());
            req.extend_from_slice(eol);
            req.extend_from_slice(eol);
            req.extend_from_slice(&body);
            shut_early = true;
        }
        Some(Raw::Chunked) => {
            req.extend_from_slice(b"transfer-encoding: chunked");
            req.extend_from_slice(eol);
            req.extend_from_slice(eol);
            for chunk in body.chunks(64 * 1024) {
                req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                req.extend_from_slice(chunk);
                req.extend_from_slice(b"\r\n");
            }
            req.extend_from_slice(b"0\r\n\r\n");
        }
        Some(Raw::BadChunk) => {
            req.extend_from_slice(b"transfer-encoding: chunked");
            req.extend_from_slice(eol);
            req.extend_from_slice(eol);
            req.extend_from_slice(b"zz\r\nabc\r\n0\r\n\r\n");
        }
        Some(Raw::LengthAndChunked) => {
            req.extend_from_slice(b"transfer-encoding: chunked\r\ncontent-length: 5");
            req.extend_from_slice(eol);
            req.extend_from_slice(eol);
            req.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
            req.extend_from_slice(&body);
            req.extend_from_slice(b"\r\n0\r\n\r\n");
        }
        _ => {
            req.extend_from_slice(format!("content-length: {}", body.len()).as_bytes());
            req.extend_from_slice(eol);
            req.extend_from_slice(eol);
            req.extend_from_slice(&body);
        }
    }
    // Written and read at once: a server may answer and close before it has read the whole
    // request (a body it refuses unread), and what it answered must still be seen.
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(app.addr).await?;
        let (mut rd, mut wr) = stream.into_split();
        let write = async {
            if wr.write_all(&req).await.is_ok() && shut_early {
                let _ = wr.shutdown().await;
            }
            wr
        };
        let read = async {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf
        };
        let (_wr, buf) = tokio::join!(write, read);
        Ok::<_, std::io::Error>(buf)
    };
    let buf = match tokio::time::timeout(Duration::from_secs(20), exchange).await {
        Err(_) => {
            return Observed {
                status: 0,
                request_id: None,
                body: Vec::new(),
                transport_error: Some("no answer within 20 s".into()),
            };
        }
        Ok(Err(e)) => {
            return Observed {
                status: 0,
                request_id: None,
                body: Vec::new(),
                transport_error: Some(format!("{e}")),
            };
        }
        Ok(Ok(buf)) => buf,
    };
    let mut parsed_headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut parsed_headers);
    match resp.parse(&buf) {
        Ok(httparse::Status::Complete(head)) => {
            let header = |name: &str| {
                resp.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .map(str::to_owned)
            };
            let rest = &buf[head..];
            let body = match header("content-length").and_then(|l| l.parse::<usize>().ok()) {
                Some(n) => rest[..n.min(rest.len())].to_vec(),
                None => rest.to_vec(),
            };
            Observed {
                status: resp.code.unwrap_or(0),
                request_id: header("x-request-id"),
                body,
                transport_error: None,
            }
        }
        _ if buf.is_empty() => Observed {
            status: 0,
            request_id: None,
            body: Vec::new(),
            transport_error: Some("the server closed the connection without answering".into()),
        },
        _ => Observed {
            status: 0,
            request_id: None,
            body: buf.clone(),
            transport_error: Some(format!("unparseable answer: {}", excerpt(&buf, 200))),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// The rule for the ledger

/// The organization whose ledger must gain exactly one event from this request (`None`: no
/// ledger may change), or `Err(())` when the request is not counted (public or read-only).
fn expected_ledger(world: &World, case: &Case, o: &Observed) -> Result<Option<String>, ()> {
    if !case.spec.mutates || !matches!(case.spec.scope, Scope::Tenant | Scope::User) {
        return Err(());
    }
    if !o.app_saw_it() {
        return Ok(None);
    }
    Ok(match case.spec.scope {
        Scope::Tenant => {
            let caller = match &case.cred {
                Cred::Key { org, .. } => org.clone(),
                Cred::Session { who, .. } => Some(world.person(*who).org.to_string()),
                Cred::None | Cred::Authorization { .. } | Cred::Cookie { .. } => None,
            };
            caller.or_else(|| {
                case.ws_decoded()
                    .and_then(|ws| ws.parse::<WorkspaceId>().ok())
                    .and_then(|ws| world.ws_org.get(&ws.to_string()).cloned())
            })
        }
        _ => match &case.cred {
            Cred::Session { who, .. } => Some(world.person(*who).org.to_string()),
            _ => None,
        },
    })
}

// ---------------------------------------------------------------------------------------------
// The report

struct Violation {
    kind: Kind,
    route: String,
    classes: String,
    /// The answer's error code, when it has one.
    code: String,
    detail: String,
    summary: String,
    status: u16,
    body: String,
}

struct Report {
    seed: u64,
    backend: Backend,
    violations: Vec<Violation>,
    requests: usize,
    per_route: BTreeMap<String, usize>,
    per_class: BTreeMap<Class, usize>,
    statuses: BTreeMap<u16, usize>,
    parser_refusals: usize,
    counted: usize,
}

impl Report {
    fn record(&mut self, case: &Case, o: &Observed) {
        self.requests += 1;
        *self.per_route.entry(case.route()).or_default() += 1;
        for c in &case.classes {
            *self.per_class.entry(*c).or_default() += 1;
        }
        *self.statuses.entry(o.status).or_default() += 1;
        if o.transport_error.is_none() && !o.app_saw_it() {
            self.parser_refusals += 1;
        }
    }

    fn add(&mut self, kind: Kind, case: &Case, o: &Observed, detail: String) {
        self.violations.push(Violation {
            kind,
            route: case.route(),
            classes: format!("{:?}", case.classes),
            code: serde_json::from_slice::<Value>(&o.body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                .unwrap_or_default(),
            detail,
            summary: case.summary(),
            status: o.status,
            body: excerpt(&o.body, 300),
        });
    }

    fn finish(self) {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "fuzz barrier on {:?}, RAMPART_FUZZ_SEED={}: {} requests ({} with their ledger events counted), {} refused by the HTTP parser before the app (no envelope possible)",
            self.backend, self.seed, self.requests, self.counted, self.parser_refusals
        );
        let _ = writeln!(out, "  statuses: {:?}", self.statuses);
        let _ = writeln!(out, "  per class: {:?}", self.per_class);
        let (min, max) = (
            self.per_route.values().min().copied().unwrap_or(0),
            self.per_route.values().max().copied().unwrap_or(0),
        );
        let _ = writeln!(
            out,
            "  {} routes, {min} to {max} requests each",
            self.per_route.len()
        );
        eprintln!("{out}");
        if self.violations.is_empty() {
            return;
        }
        // One entry per kind, route, status, error code and finding, with the classes of
        // mutation that led there and the first example.
        let mut groups: BTreeMap<(Kind, String, u16, String, String), Vec<&Violation>> =
            BTreeMap::new();
        for v in &self.violations {
            groups
                .entry((
                    v.kind,
                    v.route.clone(),
                    v.status,
                    v.code.clone(),
                    v.detail.clone(),
                ))
                .or_default()
                .push(v);
        }
        let mut list = String::new();
        for ((kind, route, status, code, detail), vs) in &groups {
            let v = vs[0];
            let mut classes: Vec<&str> = vs.iter().map(|v| v.classes.as_str()).collect();
            classes.sort_unstable();
            classes.dedup();
            let _ = writeln!(
                list,
                "- [{kind:?}] {route} -> {status} {code}: {detail} ({} time(s); seed {})\n    mutations: {}\n    e.g. {}\n    answer: {}",
                vs.len(),
                self.seed,
                classes.join(" "),
                v.summary,
                v.body
            );
        }
        panic!(
            "{out}fuzz barrier: {} violations, {} distinct (kind, route, status, finding), on {:?} with RAMPART_FUZZ_SEED={}:\n{list}",
            self.violations.len(),
            groups.len(),
            self.backend,
            self.seed
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The run

async fn run_case(
    app: &TestApp,
    client: &reqwest::Client,
    world: &mut World,
    ledgers: &Ledgers,
    case: Case,
    report: &mut Report,
) {
    let counted = case.spec.mutates && matches!(case.spec.scope, Scope::Tenant | Scope::User);
    // Only the world's own organizations are counted. A fuzzed sign-up makes organizations of
    // its own, and reset and magic-link requests do their work after answering (issue 32,
    // finding 8), so such an organization's ledger can gain an event while a later request is
    // being counted.
    let ours = |counts: Counts| -> Counts {
        counts
            .into_iter()
            .filter(|(org, _)| world.org_names.contains_key(org))
            .collect()
    };
    let before = if counted {
        Some(ours(ledgers.counts().await))
    } else {
        None
    };
    let o = send(app, client, world, &case).await;
    report.record(&case, &o);
    for (kind, detail) in response_violations(&o, case.oversize()) {
        report.add(kind, &case, &o, detail);
    }
    if let (Some(before), Ok(expected)) = (before, expected_ledger(world, &case, &o)) {
        report.counted += 1;
        let after = ours(ledgers.counts().await);
        if let Some(detail) = ledger_violation(&before, &after, expected.as_deref(), &|org| {
            world.label(org)
        }) {
            report.add(Kind::Ledger, &case, &o, detail);
        }
    }
    // New objects of A become targets too.
    if (200..300).contains(&o.status)
        && case.ws == world.a.ws.to_string()
        && let Ok(v) = serde_json::from_slice::<Value>(&o.body)
        && let Some(id) = v["id"].as_str()
    {
        if id.starts_with("ct_") && world.contacts.len() < 40 {
            world.contacts.push(id.to_owned());
        } else if id.starts_with("key_") && world.api_keys.len() < 40 {
            world.api_keys.push(id.to_owned());
        }
    }
    if let Cred::Session { who, .. } = case.cred
        && case.spec.mutates
    {
        keep_signed_in(app, world, who).await;
    }
}

async fn fuzz_barrier(app: TestApp) {
    let seed = seed();
    let budget = budget();
    eprintln!(
        "fuzz barrier on {:?}: RAMPART_FUZZ_SEED={seed}, budget {budget:?}",
        app.backend
    );
    let mut world = build_world(&app).await;
    let ledgers = Ledgers::open(&app).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        // A fresh connection per request: a server may close a connection after refusing a
        // body it did not read, and a pooled connection reused then fails on the client's side.
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut generator = Gen {
        rng: StdRng::seed_from_u64(seed),
    };
    let mut report = Report {
        seed,
        backend: app.backend,
        violations: Vec::new(),
        requests: 0,
        per_route: BTreeMap::new(),
        per_class: BTreeMap::new(),
        statuses: BTreeMap::new(),
        parser_refusals: 0,
        counted: 0,
    };
    let routes = specs();
    let started = Instant::now();
    // The sweep: every applicable class once on every route, and then the critical values,
    // whatever the budget.
    for spec in &routes {
        for class in CLASSES {
            if applies(class, spec) {
                let mut case = generator.baseline(&world, spec);
                generator.apply(&world, &mut case, class);
                run_case(&app, &client, &mut world, &ledgers, case, &mut report).await;
            }
        }
    }
    // The critical values, on every route.
    for spec in &routes {
        for case in generator.critical(&world, spec) {
            run_case(&app, &client, &mut world, &ledgers, case, &mut report).await;
        }
    }
    let swept = report.requests;
    // Then random cases, round-robin over the routes, some with two mutations at once.
    let mut i = 0usize;
    while started.elapsed() < budget {
        let spec = routes[i % routes.len()];
        i += 1;
        let mut case = generator.baseline(&world, spec);
        let n = if generator.rng.random_bool(0.3) { 2 } else { 1 };
        let mut classes: Vec<Class> = Vec::new();
        while classes.len() < n {
            let c = *generator.pick(&CLASSES);
            if applies(c, spec) && !classes.contains(&c) {
                classes.push(c);
            }
        }
        // Padding last, so that another mutation of the body does not undo it.
        classes.sort_by_key(|c| *c == Class::Oversize);
        for class in classes {
            generator.apply(&world, &mut case, class);
        }
        run_case(&app, &client, &mut world, &ledgers, case, &mut report).await;
    }
    eprintln!(
        "fuzz barrier on {:?}: sweep of {swept} requests, then {} random, in {:?}",
        app.backend,
        report.requests - swept,
        started.elapsed()
    );
    report.finish();
}

// ---------------------------------------------------------------------------------------------
// The barrier's own checks can fail: each helper is shown a fabricated bad answer.

mod the_checks_can_fail {
    use super::*;

    fn ok(status: u16, body: &str) -> Observed {
        Observed {
            status,
            request_id: Some("req_1".into()),
            body: body.as_bytes().to_vec(),
            transport_error: None,
        }
    }

    const ENVELOPE: &str = r#"{"error":{"code":"INVALID","message":"bad","request_id":"req_1"}}"#;

    #[test]
    fn a_good_error_passes() {
        assert!(response_violations(&ok(422, ENVELOPE), false).is_empty());
        assert!(response_violations(&ok(200, "{}"), false).is_empty());
    }

    #[test]
    fn a_500_is_reported() {
        let v = response_violations(
            &ok(500, ENVELOPE.replace("INVALID", "INTERNAL").as_str()),
            false,
        );
        assert!(v.iter().any(|(k, _)| *k == Kind::ServerError), "{v:?}");
        let v = response_violations(&ok(503, ENVELOPE), false);
        assert!(v.iter().any(|(k, _)| *k == Kind::ServerError), "{v:?}");
    }

    #[test]
    fn an_error_outside_the_envelope_is_reported() {
        for body in [
            "Bad Request",
            r#"{"error":"x"}"#,
            r#"{"error":{"code":"INVALID","message":"bad"}}"#,
            r#"{"error":{"code":"INVALID","message":"bad","request_id":"req_2"}}"#,
            r#"{"error":{"code":"","message":"bad","request_id":"req_1"}}"#,
        ] {
            let v = response_violations(&ok(400, body), false);
            assert!(
                v.iter().any(|(k, _)| *k == Kind::NoEnvelope),
                "{body}: {v:?}"
            );
        }
        // An answer that never passed through the app must at least be a refusal.
        let mut bare = ok(200, "");
        bare.request_id = None;
        assert!(!response_violations(&bare, false).is_empty());
        bare.status = 400;
        assert!(response_violations(&bare, false).is_empty());
    }

    #[test]
    fn leaked_sql_or_panic_text_is_reported() {
        for body in [
            r#"{"error":{"code":"INTERNAL","message":"error returned from database: invalid byte sequence for encoding \"UTF8\": 0x00","request_id":"req_1"}}"#,
            "thread 'tokio-runtime-worker' panicked at src/routes/contacts.rs:12:5",
            "SELECT id FROM contacts WHERE email = $1",
            "UNIQUE constraint failed: contacts.email",
        ] {
            let v = response_violations(&ok(400, body), false);
            assert!(v.iter().any(|(k, _)| *k == Kind::Leak), "{body}: {v:?}");
        }
    }

    #[test]
    fn an_accepted_oversize_body_and_a_missing_answer_are_reported() {
        let v = response_violations(&ok(200, "{}"), true);
        assert!(v.iter().any(|(k, _)| *k == Kind::OversizeAccepted), "{v:?}");
        assert!(response_violations(&ok(413, ENVELOPE), true).is_empty());
        let mut gone = ok(0, "");
        gone.transport_error = Some("reset".into());
        let v = response_violations(&gone, false);
        assert!(v.iter().any(|(k, _)| *k == Kind::NoResponse), "{v:?}");
    }

    #[test]
    fn a_missing_extra_or_misplaced_event_is_reported() {
        let label = |o: &str| o.to_owned();
        let before: Counts = [("org_a".to_owned(), 5), ("org_b".to_owned(), 2)].into();
        let one_in_a: Counts = [("org_a".to_owned(), 6), ("org_b".to_owned(), 2)].into();
        let two_in_a: Counts = [("org_a".to_owned(), 7), ("org_b".to_owned(), 2)].into();
        let one_in_b: Counts = [("org_a".to_owned(), 5), ("org_b".to_owned(), 3)].into();
        let one_each: Counts = [("org_a".to_owned(), 6), ("org_b".to_owned(), 3)].into();
        let new_org: Counts = [
            ("org_a".to_owned(), 5),
            ("org_b".to_owned(), 2),
            ("org_c".to_owned(), 1),
        ]
        .into();
        assert_eq!(
            ledger_violation(&before, &one_in_a, Some("org_a"), &label),
            None
        );
        assert_eq!(ledger_violation(&before, &before, None, &label), None);
        // Missing.
        assert!(ledger_violation(&before, &before, Some("org_a"), &label).is_some());
        // Two.
        assert!(ledger_violation(&before, &two_in_a, Some("org_a"), &label).is_some());
        // In the wrong ledger.
        assert!(ledger_violation(&before, &one_in_b, Some("org_a"), &label).is_some());
        // And another one elsewhere.
        assert!(ledger_violation(&before, &one_each, Some("org_a"), &label).is_some());
        // One where none may be.
        assert!(ledger_violation(&before, &one_in_b, None, &label).is_some());
        assert!(ledger_violation(&before, &new_org, None, &label).is_some());
    }
}
