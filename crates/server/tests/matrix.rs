//! The cross-tenant matrix (ARCHITECTURE §3 rule 5), generated from the route manifest: for
//! every `Tenant` route, on SQLite and PostgreSQL, every role of another organization tries to
//! read, list, change and delete this organization's objects, through this organization's
//! workspace path and through forged paths in its own workspace. Every attempt must be
//! indistinguishable from asking for something that does not exist, and nothing may change.
//! A route added to the manifest joins the matrix without a new test; a new kind of `{id}`
//! target fails to compile here until it has a fixture. Every attempt is made and every
//! failure reported together, so one broken route does not hide another. The personal routes
//! (`/v1/auth/sessions/…`) are tried too: another organization's people, signed in, aim them
//! at this organization's owner's session.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use common::people::Browser;
use common::{Org, TestApp, error_of, readme};
use rampart::manifest::{Scope, Target, specs};
use rampart_core::{ApiKeyId, ContactId, Email, InvitationId, MembershipId, Role};
use reqwest::Method;
use serde_json::{Value, json};

both_backends!(no_principal_of_another_org_reaches_anything);

/// The server's permission table and its manifest say what README.md says: each role holds
/// exactly the permissions of the README's "Roles" paragraph, and each tenant route needs the
/// permission the README's route table names.
#[test]
fn the_permission_tables_are_the_readme_ones() {
    for role in Role::ALL {
        let mut server: Vec<&str> = role.permissions().iter().map(|p| p.as_str()).collect();
        let mut documented = readme::role_permissions(role).to_vec();
        server.sort_unstable();
        documented.sort_unstable();
        assert_eq!(server, documented, "{role}");
    }
    let mut manifest: Vec<(String, String, String)> = specs()
        .into_iter()
        .filter(|s| s.scope == Scope::Tenant)
        .map(|s| {
            (
                s.method.to_string(),
                s.path.to_owned(),
                s.permission
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let mut documented: Vec<(String, String, String)> = readme::ROUTE_PERMISSIONS
        .iter()
        .map(|(m, p, perm)| ((*m).to_owned(), (*p).to_owned(), (*perm).to_owned()))
        .collect();
    manifest.sort();
    documented.sort();
    assert_eq!(manifest, documented);
}

struct Fixtures {
    contact: String,
    api_key_id: String,
    api_key: String,
    member: String,
    invitation: String,
}

async fn fixtures(app: &TestApp, org: &Org) -> Fixtures {
    let c = app
        .contact(
            org,
            json!({"name": "Secret Person", "email": "secret@a.example.com", "tags": ["vip"]}),
        )
        .await;
    let r = app
        .post(
            &format!("/v1/workspaces/{}/api-keys", org.ws),
            &org.owner_key,
            &json!({"name": "fixture", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let k: Value = r.json().await.unwrap();
    let members: Value = app
        .get(
            &format!("/v1/workspaces/{}/members", org.ws),
            &org.owner_key,
        )
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .post(
            &format!("/v1/workspaces/{}/invitations", org.ws),
            &org.owner_key,
            &json!({"email": "invitee@a.example.com", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let invitation: Value = r.json().await.unwrap();
    let r = app
        .req(
            Method::PUT,
            &format!("/v1/workspaces/{}/credentials/{PROVIDER}", org.ws),
            &org.owner_key,
        )
        .json(&json!({"secret": "victim-provider-secret-1234"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    Fixtures {
        contact: c["id"].as_str().unwrap().to_owned(),
        api_key_id: k["id"].as_str().unwrap().to_owned(),
        api_key: k["key"].as_str().unwrap().to_owned(),
        member: members["data"][0]["id"].as_str().unwrap().to_owned(),
        invitation: invitation["id"].as_str().unwrap().to_owned(),
    }
}

/// The provider every `{provider}` path names (A holds a credential for it).
const PROVIDER: &str = "twilio";

/// The id of A's object that a route's `{id}` names, and a well-formed id that exists nowhere.
fn target_ids(target: Target, f: &Fixtures) -> Option<(String, String)> {
    match target {
        Target::None => None,
        Target::Contact => Some((f.contact.clone(), ContactId::generate().to_string())),
        Target::ApiKey => Some((f.api_key_id.clone(), ApiKeyId::generate().to_string())),
        Target::Member => Some((f.member.clone(), MembershipId::generate().to_string())),
        // Sessions are a person's own (`/v1/auth/…`), never a tenant route's target.
        Target::Session => None,
        Target::Invitation => Some((f.invitation.clone(), InvitationId::generate().to_string())),
    }
}

async fn snapshot(app: &TestApp, org: &Org, f: &Fixtures) -> Value {
    let keys: Value = app
        .get(
            &format!("/v1/workspaces/{}/api-keys", org.ws),
            &org.owner_key,
        )
        .await
        .json()
        .await
        .unwrap();
    let keys: Vec<Value> = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| json!({"id": k["id"], "name": k["name"], "role": k["role"]}))
        .collect();
    let fixture_key_works = app
        .get(&format!("/v1/workspaces/{}/contacts", org.ws), &f.api_key)
        .await
        .status()
        == 200;
    let members: Value = app
        .get(
            &format!("/v1/workspaces/{}/members", org.ws),
            &org.owner_key,
        )
        .await
        .json()
        .await
        .unwrap();
    let credential: Value = app
        .get(
            &format!("/v1/workspaces/{}/credentials/{PROVIDER}", org.ws),
            &org.owner_key,
        )
        .await
        .json()
        .await
        .unwrap();
    let invitations: Value = app
        .get(
            &format!("/v1/workspaces/{}/invitations", org.ws),
            &org.owner_key,
        )
        .await
        .json()
        .await
        .unwrap();
    json!({"contacts": app.all_contacts(org).await, "keys": keys, "members": members["data"], "fixture_key_works": fixture_key_works,
           "credential": credential, "invitations": invitations["data"]})
}

/// An attacker's credential: an API key, or a signed-in person's session.
enum Cred {
    Key(String),
    Session(Browser),
}

impl Cred {
    fn kind(&self) -> &'static str {
        match self {
            Cred::Key(_) => "api key",
            Cred::Session(_) => "session",
        }
    }
}

async fn attempt(
    app: &TestApp,
    method: &Method,
    path: &str,
    cred: &Cred,
    body: Option<&str>,
) -> (u16, String) {
    let mut req = match cred {
        Cred::Key(key) => app.req(method.clone(), path, key),
        Cred::Session(b) => app
            .client
            .request(method.clone(), app.url(path))
            .header("Cookie", b.cookie.clone().unwrap())
            .header("X-CSRF-Token", b.csrf.clone().unwrap()),
    };
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let (status, code, _) = error_of(req.send().await.unwrap()).await;
    (status, code)
}

/// A person with `role` in `org`'s workspace (and nowhere else), signed in.
async fn member_session(app: &TestApp, org: &Org, role: Role) -> Browser {
    let email = format!("{role}-{}@b.example.com", org.ws);
    let password = "Matrix-Attacker-9";
    let (user, _) = app
        .store
        .add_member(
            org.ws,
            &Email::parse(&email).unwrap(),
            role,
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
    app.signed_in(&email, password).await
}

/// The ids of the sessions `cred`'s person holds (`GET /v1/auth/sessions`).
async fn session_ids(app: &TestApp, cred: &Cred) -> Vec<String> {
    let Cred::Session(b) = cred else {
        return Vec::new();
    };
    let r = app
        .client
        .get(app.url("/v1/auth/sessions"))
        .header("Cookie", b.cookie.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A second sign-in of the owner person [`member_session`] made in `org` (the same person,
/// a new session), to look at the first session from outside it.
async fn member_session_again(app: &TestApp, org: &Org) -> Browser {
    let email = format!("{}-{}@b.example.com", Role::Owner, org.ws);
    app.signed_in(&email, "Matrix-Attacker-9").await
}

async fn no_principal_of_another_org_reaches_anything(app: TestApp) {
    let a = app.org("Victim").await;
    let b = app.org("Attacker").await;
    let f = fixtures(&app, &a).await;
    // A person of A, signed in: the target of the personal routes below (made before the
    // snapshot, as the victim's own state).
    let victim = member_session(&app, &a, Role::Owner).await;
    let victim_sessions = session_ids(&app, &Cred::Session(victim)).await;
    assert_eq!(victim_sessions.len(), 1, "the victim has one session");
    let victim_session = &victim_sessions[0];
    let before = snapshot(&app, &a, &f).await;

    let mut attackers = Vec::new();
    for role in Role::ALL {
        attackers.push((role, Cred::Key(app.key(b.ws, role).await)));
        attackers.push((role, Cred::Session(member_session(&app, &b, role).await)));
    }

    let mut attempts = 0;
    let mut failures: Vec<String> = Vec::new();
    let tenant_routes: Vec<_> = specs()
        .into_iter()
        .filter(|s| s.scope == Scope::Tenant)
        .collect();
    // Every tenant route the README documents, and no other: the count below depends on it.
    assert_eq!(
        tenant_routes.len(),
        readme::ROUTE_PERMISSIONS.len(),
        "the manifest's tenant routes are the README's"
    );
    for spec in &tenant_routes {
        let ids = target_ids(spec.target, &f);
        let fill = |ws: &str, id: Option<&str>| {
            let p = spec
                .path
                .replace("{ws}", ws)
                .replace("{provider}", PROVIDER);
            match id {
                Some(id) => p.replace("{id}", id),
                None => p,
            }
        };
        for (role, cred) in &attackers {
            let key = cred;
            // A's workspace in the path: no membership, so exactly "not found".
            let path = fill(
                &a.ws.to_string(),
                ids.as_ref().map(|(real, _)| real.as_str()),
            );
            let got = attempt(&app, &spec.method, &path, key, spec.example_body).await;
            if got != (404, "NOT_FOUND".into()) {
                failures.push(format!(
                    "{role} ({}) on {} {path}: {got:?}, not (404, NOT_FOUND)",
                    key.kind(),
                    spec.method
                ));
            }
            attempts += 1;

            // Forged: B's own workspace in the path, A's object id. Must answer exactly as for
            // an id that exists nowhere (404, or 403 where the role lacks the permission anyway).
            if let Some((real, missing)) = &ids {
                let forged = attempt(
                    &app,
                    &spec.method,
                    &fill(&b.ws.to_string(), Some(real)),
                    key,
                    spec.example_body,
                )
                .await;
                let nowhere = attempt(
                    &app,
                    &spec.method,
                    &fill(&b.ws.to_string(), Some(missing)),
                    key,
                    spec.example_body,
                )
                .await;
                if forged != nowhere {
                    failures.push(format!(
                        "{role} ({}) on {} {} with A's id: {forged:?}, but {nowhere:?} for an id that exists nowhere",
                        key.kind(),
                        spec.method,
                        spec.path
                    ));
                }
                // Whether the role lacks the permission is the README's word, not the server's.
                let lacks = !readme::can(
                    *role,
                    readme::route_permission(spec.method.as_str(), spec.path),
                );
                if !(forged.0 == 404 || (forged.0 == 403 && lacks)) {
                    failures.push(format!(
                        "{role} ({}) on {} {} with A's id: {forged:?}",
                        key.kind(),
                        spec.method,
                        spec.path
                    ));
                }
                attempts += 2;
            }
        }
    }
    // The personal routes: A's owner is signed in; every person of B, signed in, tries to end
    // that session by its id and to see it in their own list. The id must mean nothing to them.
    let victim = Cred::Session(member_session_again(&app, &a).await);
    let mut personal = 0;
    for (role, cred) in attackers
        .iter()
        .filter(|(_, c)| matches!(c, Cred::Session(_)))
    {
        let got = attempt(
            &app,
            &Method::DELETE,
            &format!("/v1/auth/sessions/{victim_session}"),
            cred,
            None,
        )
        .await;
        if got != (404, "NOT_FOUND".into()) {
            failures.push(format!(
                "{role} (session) ending A's owner's session: {got:?}, not (404, NOT_FOUND)"
            ));
        }
        if session_ids(&app, cred).await.contains(victim_session) {
            failures.push(format!("{role} (session) lists A's owner's session"));
        }
        personal += 1;
    }
    assert_eq!(personal, Role::ALL.len());
    if !session_ids(&app, &victim).await.contains(victim_session) {
        failures.push("A's owner's session was ended by someone of B".to_owned());
    }

    // A's owner key, aimed at B's workspace, is refused the same way (the rule is symmetric).
    let (status, code, _) = error_of(
        app.get(&format!("/v1/workspaces/{}/contacts", b.ws), &a.owner_key)
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));

    // Exactly the attempts the README's routes call for: one through A's workspace per route
    // and attacker, two more (forged and nowhere) per route that names an object.
    assert_eq!(attackers.len(), 2 * Role::ALL.len());
    let per_attacker: usize = readme::ROUTE_PERMISSIONS
        .iter()
        .map(|(_, path, _)| if path.contains("{id}") { 3 } else { 1 })
        .sum();
    assert_eq!(attempts, per_attacker * attackers.len(), "attempts made");

    assert!(
        failures.is_empty(),
        "{} of {attempts} attempts were not refused as they must be:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let after = snapshot(&app, &a, &f).await;
    assert_eq!(after, before, "nothing of the victim's changed");
    assert_eq!(after["fixture_key_works"], true);
    eprintln!(
        "cross-tenant matrix on {:?}: {attempts} attempts over {} tenant routes, all refused",
        app.backend,
        tenant_routes.len()
    );
}
