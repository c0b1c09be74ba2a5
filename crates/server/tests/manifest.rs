//! The route manifest is the single table the router and the guard read: every entry is
//! routed, and no route exists outside it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use std::collections::HashSet;

use common::{Backend, TestApp};
use rampart::manifest::{Bucket, Scope, Target, specs};
use rampart_core::{ApiKeyId, ContactId, InvitationId, MembershipId, SessionId, WorkspaceId};

#[tokio::test]
async fn every_manifest_entry_has_a_route() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    for spec in specs() {
        let path = spec
            .path
            .replace("{ws}", &WorkspaceId::generate().to_string())
            .replace("{provider}", "twilio")
            .replace(
                "{id}",
                &match spec.target {
                    Target::Contact => ContactId::generate().to_string(),
                    Target::ApiKey => ApiKeyId::generate().to_string(),
                    Target::Member => MembershipId::generate().to_string(),
                    Target::Session => SessionId::generate().to_string(),
                    Target::Invitation => InvitationId::generate().to_string(),
                    Target::None => String::new(),
                },
            );
        let r = app
            .client
            .request(spec.method.clone(), app.url(&path))
            .send()
            .await
            .unwrap();
        let want: &[u16] = match spec.scope {
            // A public change sent without its JSON body is refused by the body parser.
            Scope::Public if spec.mutates => &[415],
            Scope::Public => &[200],
            Scope::Tenant | Scope::User => &[401],
            Scope::Platform => &[404],
        };
        // Sign-in routes share a small per-IP budget; a 429 from it also shows the route is
        // routed and guarded.
        let limited = spec.bucket == Bucket::SignIn && r.status().as_u16() == 429;
        assert!(
            limited || want.contains(&r.status().as_u16()),
            "{} {} is routed and guarded: {}",
            spec.method,
            spec.path,
            r.status()
        );
    }
}

#[test]
fn entries_are_unique_and_complete() {
    let mut seen = HashSet::new();
    for spec in specs() {
        assert!(
            seen.insert((spec.method.clone(), spec.path)),
            "duplicate {} {}",
            spec.method,
            spec.path
        );
        assert!(!spec.action.is_empty());
        if spec.scope == Scope::Tenant {
            assert!(
                spec.path.starts_with("/v1/workspaces/{ws}/"),
                "{}",
                spec.path
            );
            assert!(
                spec.permission.is_some(),
                "tenant route {} names its permission",
                spec.path
            );
        }
        assert_eq!(
            spec.path.contains("{id}"),
            spec.target != Target::None,
            "{} declares what {{id}} is",
            spec.path
        );
        let has_body = matches!(spec.method.as_str(), "POST" | "PATCH" | "PUT");
        assert_eq!(
            spec.example_body.is_some(),
            has_body,
            "{} {} has an example body iff it takes one",
            spec.method,
            spec.path
        );
        if spec.destructive {
            assert!(spec.mutates);
        }
        // What agents must confirm (the MCP issue reads the flag): every deletion at least.
        if spec.method == axum::http::Method::DELETE {
            assert!(
                spec.destructive,
                "{} {} deletes, so it is destructive",
                spec.method, spec.path
            );
        }
        if let Some(body) = spec.example_body {
            serde_json::from_str::<serde_json::Value>(body).unwrap();
        }
    }
}

/// The router is built only by `manifest::router`; a `.route(` call anywhere else in the
/// server's source would be a route the manifest (and so the guard) does not know. Likewise
/// the benchmark-only switch that turns the mutation guard off is called from nowhere in it.
#[test]
fn no_route_is_registered_outside_the_manifest() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src];
    let mut offenders = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("manifest.rs")
                // The plain-HTTP listener's router only redirects to https; it serves no route.
                && !path.ends_with("redirect.rs")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                if !path.ends_with("state.rs")
                    && (text.contains("without_mutation_guard_for_benchmarks")
                        || text.contains("without_edge_for_benchmarks"))
                {
                    offenders.push(format!(
                        "{} switches a control off (benchmark-only switch)",
                        path.display()
                    ));
                }
                for needle in [".route(", ".nest(", ".route_service(", "Router::new("] {
                    if text.contains(needle) {
                        offenders.push(format!("{} uses {needle}", path.display()));
                    }
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "routes outside the manifest, or the mutation guard switched off: {offenders:?}"
    );
}
