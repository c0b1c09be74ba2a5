//! Rate limits, daily quotas and plan gating: a 429 with the right headers (recorded for
//! mutating routes), a flood from one key that does not starve another organization, quotas
//! that reset at UTC midnight, and a plan gate that refuses before any side effect.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, TestApp, error_of, events};
use rampart::config::{QuotaSettings, RateLimitSettings};
use rampart::http::limits::LimitSettings;
use rampart_core::{Plan, Role};
use rampart_guard::Limiter;
use serde_json::json;

async fn app_with(rates: RateLimitSettings, quotas: QuotaSettings) -> TestApp {
    TestApp::spawn_configured(Backend::Sqlite, Duration::from_secs(30), move |s| {
        s.with_limits(
            Arc::new(Limiter::local()),
            LimitSettings {
                rates,
                quotas,
                ..Default::default()
            },
        )
    })
    .await
    .unwrap()
}

fn h<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_headers_and_the_attempt_is_recorded() {
    let app = app_with(
        RateLimitSettings {
            api_per_key: 5,
            ..Default::default()
        },
        QuotaSettings::default(),
    )
    .await;
    let org = app.org("Acme").await;
    let path = format!("/v1/workspaces/{}/contacts", org.ws);
    for i in 0..5u32 {
        let r = app.get(&path, &org.owner_key).await;
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(h(&r, "ratelimit-limit"), Some("5"));
        assert_eq!(
            h(&r, "ratelimit-remaining"),
            Some((4 - i).to_string().as_str())
        );
    }
    let r = app
        .post(&path, &org.owner_key, &json!({"name": "Too many"}))
        .await;
    assert_eq!(r.status(), 429);
    let retry: u64 = h(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "one request every 12 s: {retry}");
    assert_eq!(h(&r, "ratelimit-remaining"), Some("0"));
    assert!(h(&r, "ratelimit-reset").is_some());
    let request_id = h(&r, "x-request-id").unwrap().to_owned();
    let (_, code, _) = error_of(r).await;
    assert_eq!(code, "RATE_LIMITED");
    // The refused mutation is in the ledger (read with a fresh key: the owner's is exhausted).
    let auditor = app.key(org.ws, Role::Admin).await;
    let ev = events(&app, &org.ws, &auditor).await;
    let e = ev
        .iter()
        .find(|e| e["request_id"] == request_id.as_str())
        .expect("recorded");
    assert_eq!(
        (e["status"].as_u64(), e["error_code"].as_str()),
        (Some(429), Some("RATE_LIMITED"))
    );
    let listed: serde_json::Value = app.get(&path, &auditor).await.json().await.unwrap();
    assert_eq!(listed["data"], json!([]), "the refused create did nothing");
}

#[tokio::test]
async fn a_flood_from_one_key_does_not_starve_another_organization() {
    let app = app_with(
        RateLimitSettings {
            api_per_key: 20,
            api_per_ip: 100_000,
            ..Default::default()
        },
        QuotaSettings::default(),
    )
    .await;
    let flooder = app.org("Flood").await;
    let victim = app.org("Calm").await;
    let flood = {
        let (client, url, key) = (
            app.client.clone(),
            app.url(&format!("/v1/workspaces/{}/contacts", flooder.ws)),
            flooder.owner_key.clone(),
        );
        tokio::spawn(async move {
            let mut limited = 0;
            for _ in 0..300 {
                if client
                    .get(&url)
                    .bearer_auth(&key)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    == 429
                {
                    limited += 1;
                }
            }
            limited
        })
    };
    let mut ok = 0;
    for _ in 0..15 {
        let r = app
            .get(
                &format!("/v1/workspaces/{}/contacts", victim.ws),
                &victim.owner_key,
            )
            .await;
        if r.status() == 200 {
            ok += 1;
        }
    }
    let limited = flood.await.unwrap();
    assert!(
        limited >= 250,
        "the flooding key was limited: {limited} of 300"
    );
    assert_eq!(ok, 15, "every request of the other organization succeeded");
}

#[tokio::test]
async fn an_ip_limit_applies_across_keys() {
    let app = app_with(
        RateLimitSettings {
            api_per_ip: 4,
            ..Default::default()
        },
        QuotaSettings::default(),
    )
    .await;
    let a = app.org("A").await;
    let b = app.org("B").await;
    for org in [&a, &b, &a, &b] {
        assert_eq!(
            app.get(
                &format!("/v1/workspaces/{}/contacts", org.ws),
                &org.owner_key
            )
            .await
            .status(),
            200
        );
    }
    let (status, code, _) = error_of(
        app.get(&format!("/v1/workspaces/{}/contacts", a.ws), &a.owner_key)
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (429, "RATE_LIMITED"));
    // Health checks are not limited.
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn daily_quotas_follow_the_plan_and_reset_at_utc_midnight() {
    let app = app_with(
        RateLimitSettings::default(),
        QuotaSettings {
            starter: 3,
            ..Default::default()
        },
    )
    .await;
    let org = app.org_on("Small", Plan::Starter).await;
    let big = app.org_on("Big", Plan::Enterprise).await;
    let path = format!("/v1/workspaces/{}/contacts", org.ws);
    for left in ["2", "1", "0"] {
        let r = app.get(&path, &org.owner_key).await;
        assert_eq!(r.status(), 200);
        assert_eq!(h(&r, "quota-limit"), Some("3"));
        assert_eq!(h(&r, "quota-remaining"), Some(left));
    }
    let r = app.get(&path, &org.owner_key).await;
    assert!(h(&r, "quota-reset").is_some());
    let (status, code, body) = error_of(r).await;
    assert_eq!((status, code.as_str()), (429, "QUOTA_EXCEEDED"), "{body}");
    // Enterprise is unlimited.
    let r = app
        .get(
            &format!("/v1/workspaces/{}/contacts", big.ws),
            &big.owner_key,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(h(&r, "quota-limit").is_none());
    // The next UTC day starts afresh.
    app.clock.advance(chrono::Duration::days(1));
    assert_eq!(app.get(&path, &org.owner_key).await.status(), 200);
}

#[tokio::test]
async fn a_plan_below_the_route_minimum_is_refused_before_anything_runs() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let org = app.org_on("Free", Plan::Free).await;
    let path = format!("/v1/workspaces/{}/audit-events", org.ws);
    let (status, code, body) = error_of(app.get(&path, &org.owner_key).await).await;
    assert_eq!((status, code.as_str()), (403, "PLAN_UPGRADE_REQUIRED"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("starter"),
        "names the plan needed: {body}"
    );
    let now = app.clock.now_for_tests();
    app.store
        .set_plan(org.org, Plan::Starter, now, None)
        .await
        .unwrap();
    // Keys are cached up to the TTL; a fresh key sees the new plan at once.
    let key = app.key(org.ws, Role::Owner).await;
    assert_eq!(app.get(&path, &key).await.status(), 200);
}

/// `X-Forwarded-For` is believed only from a configured trusted proxy: the audited (and
/// rate-limited) address is the forwarded one behind the proxy, the peer's otherwise.
#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    for (trusted, want) in [(true, "198.51.100.0"), (false, "127.0.0.0")] {
        let app = TestApp::spawn_configured(Backend::Sqlite, Duration::from_secs(30), move |s| {
            let proxies = if trusted {
                vec!["127.0.0.1/32".parse().unwrap()]
            } else {
                Vec::new()
            };
            s.with_trusted_proxies(proxies)
        })
        .await
        .unwrap();
        let org = app.org("Acme").await;
        let r = app
            .req(
                reqwest::Method::POST,
                &format!("/v1/workspaces/{}/contacts", org.ws),
                &org.owner_key,
            )
            .header("x-forwarded-for", "198.51.100.7")
            .json(&json!({"name": "Via proxy"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let ev = events(&app, &org.ws, &org.owner_key).await;
        assert_eq!(
            ev.last().unwrap()["client_ip"],
            want,
            "trusted proxy: {trusted}"
        );
    }
}
