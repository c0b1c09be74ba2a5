//! Rate limits, daily quotas and plan gating: a 429 with the right headers (recorded for
//! mutating routes), a flood from one key that does not starve another organization, quotas
//! that reset at UTC midnight, and a plan gate that refuses before any side effect. The limit
//! tests run twice: with the in-process limiter and with the limiter shared through Redis
//! (`RAMPART_TEST_REDIS_URL`), which checks a cached key's per-IP limit, per-key limit and
//! quota in one script and must answer exactly as the in-process one does.

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
use rampart_guard::{Limiter, RedisFailure};
use serde_json::json;

/// Where a test's limits live.
enum Limits {
    InProcess,
    /// A Redis, with the prefix of this test's keys.
    Redis {
        url: String,
        prefix: String,
    },
}

impl Limits {
    /// The shared limiter, unless there is no Redis to test against (outside CI).
    fn redis() -> Option<Self> {
        common::redis_url().map(|url| Self::Redis {
            url,
            prefix: format!("rampart-test-{}", ulid::Ulid::new()),
        })
    }

    async fn limiter(&self) -> Limiter {
        match self {
            Self::InProcess => Limiter::local(),
            Self::Redis { url, prefix } => Limiter::redis(url, prefix, RedisFailure::Closed)
                .await
                .unwrap(),
        }
    }

    async fn app(&self, rates: RateLimitSettings, quotas: QuotaSettings) -> TestApp {
        self.app_behind(Vec::new(), rates, quotas).await
    }

    /// The app, believing `X-Forwarded-For` from `proxies`.
    async fn app_behind(
        &self,
        proxies: Vec<ipnet::IpNet>,
        rates: RateLimitSettings,
        quotas: QuotaSettings,
    ) -> TestApp {
        let limiter = Arc::new(self.limiter().await);
        TestApp::spawn_configured(Backend::Sqlite, Duration::from_secs(30), move |s| {
            s.with_limits(
                limiter,
                LimitSettings {
                    rates,
                    quotas,
                    ..Default::default()
                },
            )
            .with_trusted_proxies(proxies)
        })
        .await
        .unwrap()
    }

    /// Deletes the test's keys from Redis.
    async fn clean_up(self) {
        if let Self::Redis { url, prefix } = self {
            common::delete_redis_keys(&url, &prefix).await;
        }
    }
}

/// Runs a test body with the in-process limiter and, as `<name>_in_redis`, with the limiter
/// shared through Redis.
macro_rules! both_limiters {
    ($name:ident, $redis:ident) => {
        mod $name {
            #[tokio::test]
            async fn in_process() {
                super::$name(super::Limits::InProcess).await;
            }

            #[tokio::test]
            async fn $redis() {
                if let Some(limits) = super::Limits::redis() {
                    super::$name(limits).await;
                }
            }
        }
    };
}

fn h<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

both_limiters!(
    a_key_over_its_rate_gets_429_with_headers_and_the_attempt_is_recorded,
    in_redis
);
async fn a_key_over_its_rate_gets_429_with_headers_and_the_attempt_is_recorded(limits: Limits) {
    let app = limits
        .app(
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
    limits.clean_up().await;
}

both_limiters!(
    a_flood_from_one_key_does_not_starve_another_organization,
    in_redis
);
async fn a_flood_from_one_key_does_not_starve_another_organization(limits: Limits) {
    let app = limits
        .app(
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
    limits.clean_up().await;
}

both_limiters!(an_ip_limit_applies_across_keys, in_redis);
async fn an_ip_limit_applies_across_keys(limits: Limits) {
    let app = limits
        .app(
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
    limits.clean_up().await;
}

both_limiters!(
    an_ip_refusal_is_recorded_before_the_caller_is_known,
    in_redis
);
/// A change refused at the per-IP limit is recorded as anonymous, as the limit refuses before
/// authentication, even when the shared limiter checks a known key's address, key and quota
/// at once; and the refusal leaves the key's own limit and quota untouched.
async fn an_ip_refusal_is_recorded_before_the_caller_is_known(limits: Limits) {
    let app = limits
        .app_behind(
            vec!["127.0.0.1/32".parse().unwrap()],
            RateLimitSettings {
                api_per_ip: 2,
                api_per_key: 3,
                ..Default::default()
            },
            QuotaSettings {
                growth: 100,
                ..Default::default()
            },
        )
        .await;
    let org = app.org("Acme").await;
    let path = format!("/v1/workspaces/{}/contacts", org.ws);
    let create = |n: u32| {
        app.req(reqwest::Method::POST, &path, &org.owner_key)
            .header("x-forwarded-for", "198.51.100.7")
            .json(&json!({ "name": format!("Contact {n}") }))
            .send()
    };
    // The first request authenticates against the database; the second finds the key cached.
    for n in 0..2 {
        assert_eq!(create(n).await.unwrap().status(), 201, "create {n}");
    }
    let r = create(2).await.unwrap();
    let request_id = h(&r, "x-request-id").unwrap().to_owned();
    let (status, code, _) = error_of(r).await;
    assert_eq!((status, code.as_str()), (429, "RATE_LIMITED"));
    // From another address the key is still allowed its third request, and two requests, not
    // three, were counted against its quota: the refusal took nothing from either.
    let r = app.get(&path, &org.owner_key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "ratelimit-remaining"), Some("0"));
    assert_eq!(h(&r, "quota-remaining"), Some("97"));
    let ev = events(&app, &org.ws, &app.key(org.ws, Role::Admin).await).await;
    let e = ev
        .iter()
        .find(|e| e["request_id"] == request_id.as_str())
        .expect("recorded");
    assert_eq!(
        (
            e["status"].as_u64(),
            e["error_code"].as_str(),
            e["actor"].as_str(),
            e["client_ip"].as_str()
        ),
        (
            Some(429),
            Some("RATE_LIMITED"),
            Some("anonymous"),
            Some("198.51.100.0")
        ),
        "{e}"
    );
    assert_eq!(ev.iter().filter(|e| e["status"] == 201).count(), 2);
    limits.clean_up().await;
}

both_limiters!(
    daily_quotas_follow_the_plan_and_reset_at_utc_midnight,
    in_redis
);
async fn daily_quotas_follow_the_plan_and_reset_at_utc_midnight(limits: Limits) {
    let app = limits
        .app(
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
    limits.clean_up().await;
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
