//! Security headers on every response; a fresh CSP nonce per HTML response; HSTS only for an
//! https public URL; and, in real headless Chromium, an inline script without the nonce is
//! blocked while the nonced one runs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use std::process::Command;

use axum::Extension;
use axum::response::Html;
use common::{Backend, TestApp};
use rampart::http::headers::{CspNonce, EdgeSettings};

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let org = app.org("Acme").await;
    let responses = vec![
        (
            "health",
            app.client.get(app.url("/healthz")).send().await.unwrap(),
        ),
        (
            "json",
            app.get(
                &format!("/v1/workspaces/{}/contacts", org.ws),
                &org.owner_key,
            )
            .await,
        ),
        (
            "error",
            app.get(
                &format!("/v1/workspaces/{}/contacts/ct_bad", org.ws),
                &org.owner_key,
            )
            .await,
        ),
        (
            "unrouted",
            app.client.get(app.url("/nope")).send().await.unwrap(),
        ),
        ("html", app.client.get(app.url("/")).send().await.unwrap()),
    ];
    for (what, r) in &responses {
        assert_eq!(
            header(r, "x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(header(r, "referrer-policy"), Some("no-referrer"), "{what}");
        assert_eq!(
            header(r, "cross-origin-opener-policy"),
            Some("same-origin"),
            "{what}"
        );
        assert_eq!(
            header(r, "cross-origin-resource-policy"),
            Some("same-origin"),
            "{what}"
        );
        assert!(
            header(r, "permissions-policy")
                .unwrap()
                .contains("camera=()"),
            "{what}"
        );
        assert_eq!(header(r, "x-frame-options"), Some("DENY"), "{what}");
        assert_eq!(header(r, "server"), None, "{what}: no server banner");
        assert_eq!(
            header(r, "strict-transport-security"),
            None,
            "{what}: no HSTS over plain http"
        );
        assert_eq!(header(r, "cache-control"), Some("no-store"), "{what}");
        let csp = header(r, "content-security-policy").unwrap();
        if *what == "html" {
            assert!(
                csp.contains("'strict-dynamic'")
                    && csp.contains("object-src 'none'")
                    && csp.contains("base-uri 'none'"),
                "{csp}"
            );
            assert!(csp.contains("frame-ancestors 'none'"));
        } else {
            assert_eq!(csp, "default-src 'none'; frame-ancestors 'none'", "{what}");
        }
    }
}

fn nonce_of(csp: &str) -> String {
    let start = csp.find("'nonce-").unwrap() + "'nonce-".len();
    csp[start..].split('\'').next().unwrap().to_owned()
}

#[tokio::test]
async fn every_html_response_gets_its_own_nonce() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let r = app.client.get(app.url("/")).send().await.unwrap();
        let nonce = nonce_of(header(&r, "content-security-policy").unwrap());
        assert!(base64_len_bits(&nonce) >= 128, "{nonce}");
        let page = r.text().await.unwrap();
        assert!(
            page.contains(&format!("<script nonce=\"{nonce}\">")),
            "the page's script carries the header's nonce"
        );
        assert!(seen.insert(nonce), "a nonce was reused");
    }
}

fn base64_len_bits(s: &str) -> usize {
    s.trim_end_matches('=').len() * 6
}

#[tokio::test]
async fn hsts_is_sent_for_an_https_public_url() {
    let app = TestApp::spawn_configured(Backend::Sqlite, std::time::Duration::from_secs(30), |s| {
        s.with_edge(EdgeSettings {
            hsts: true,
            hsts_preload: true,
            server_timing: false,
        })
    })
    .await
    .unwrap();
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(
        header(&r, "strict-transport-security"),
        Some("max-age=31536000; includeSubDomains; preload")
    );
}

/// Serves `routes` behind Rampart's real header layer on a loopback port; the test app is
/// returned so that its store lives as long as the server.
async fn behind_headers(
    routes: axum::Router<rampart::AppState>,
) -> (TestApp, std::net::SocketAddr) {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let state = rampart::AppState::new(
        app.store.clone(),
        app.vault.clone(),
        std::sync::Arc::new(app.clock.clone()),
        std::time::Duration::from_secs(30),
    );
    let router = routes
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rampart::http::headers::layer,
        ))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (app, addr)
}

fn chromium() -> Option<&'static str> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
            panic!("CI must install Debian's chromium for the CSP test");
        }
        common::announce_skip("the browser tests", "apt-get install chromium to run them");
    }
    found
}

/// Serves a page with one nonced and one un-nonced inline script through Rampart's real
/// header layer, and asks headless Chromium which of them ran.
#[tokio::test]
async fn chromium_blocks_an_inline_script_without_the_nonce() {
    let Some(browser) = chromium() else { return };
    async fn page() -> impl axum::response::IntoResponse {
        let nonce = CspNonce::generate().unwrap();
        let html = Html(format!(
            "<!doctype html><html><body><p id=a>nonced: no</p><p id=b>injected: no</p>\
             <script nonce=\"{}\">document.getElementById('a').textContent = 'nonced: RAN';</script>\
             <script>document.getElementById('b').textContent = 'injected: RAN';</script></body></html>",
            nonce.0
        ));
        (Extension(nonce), html)
    }
    let (_app, addr) =
        behind_headers(axum::Router::new().route("/page", axum::routing::get(page))).await;

    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}/page");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=3000",
                &format!("--user-data-dir={}", profile.path().display()),
                "--dump-dom",
                &url,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("nonced: RAN"),
        "the nonced script ran: {dom} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dom.contains("injected: no"),
        "the un-nonced script was blocked: {dom}"
    );
}

/// A route that opts into a `frame-ancestors` allowlist gets it instead of `X-Frame-Options: DENY`.
#[tokio::test]
async fn a_route_can_allow_named_framers() {
    static FRAMEABLE: rampart::manifest::RouteSpec = rampart::manifest::RouteSpec {
        method: axum::http::Method::GET,
        path: "/widget",
        scope: rampart::manifest::Scope::Public,
        permission: None,
        mutates: false,
        destructive: false,
        min_plan: rampart_core::Plan::Free,
        bucket: rampart::manifest::Bucket::Health,
        action: "widget.show",
        target: rampart::manifest::Target::None,
        example_body: None,
        frame_ancestors: &["https://app.example.com"],
    };
    async fn widget() -> axum::response::Response {
        let mut r = axum::response::IntoResponse::into_response(Html("<p>widget</p>"));
        r.extensions_mut().insert(&FRAMEABLE);
        r
    }
    let (_app, addr) =
        behind_headers(axum::Router::new().route("/widget", axum::routing::get(widget))).await;
    let r = reqwest::get(format!("http://{addr}/widget")).await.unwrap();
    assert_eq!(header(&r, "x-frame-options"), None);
    assert!(
        header(&r, "content-security-policy")
            .unwrap()
            .ends_with("frame-ancestors https://app.example.com")
    );
}

/// A page that drew no nonce runs nothing, and a nonce on a JSON response opens nothing.
#[tokio::test]
async fn scripts_run_only_on_html_that_drew_a_nonce() {
    async fn bare_page() -> Html<&'static str> {
        Html("<script>alert(1)</script>")
    }
    async fn json_with_nonce() -> impl axum::response::IntoResponse {
        (
            Extension(CspNonce::generate().unwrap()),
            axum::Json(serde_json::json!({"ok": true})),
        )
    }
    let (_app, addr) = behind_headers(
        axum::Router::new()
            .route("/bare", axum::routing::get(bare_page))
            .route("/json", axum::routing::get(json_with_nonce)),
    )
    .await;
    for path in ["/bare", "/json"] {
        let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(
            header(&r, "content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn server_timing_reports_authentication_only_when_configured() {
    let timed =
        TestApp::spawn_configured(Backend::Sqlite, std::time::Duration::from_secs(30), |s| {
            s.with_edge(EdgeSettings {
                server_timing: true,
                ..EdgeSettings::default()
            })
        })
        .await
        .unwrap();
    let org = timed.org("Acme").await;
    let path = format!("/v1/workspaces/{}/contacts", org.ws);
    let r = timed
        .req(reqwest::Method::GET, &path, &org.owner_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let value = header(&r, "server-timing").expect("Server-Timing is sent");
    let ms: f64 = value
        .strip_prefix("auth;dur=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not `auth;dur=<ms>`: {value}"));
    assert!((0.0..10_000.0).contains(&ms), "{value}");

    // Off by default.
    let plain = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let org = plain.org("Acme").await;
    let path = format!("/v1/workspaces/{}/contacts", org.ws);
    let r = plain
        .req(reqwest::Method::GET, &path, &org.owner_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "server-timing"), None);
}
