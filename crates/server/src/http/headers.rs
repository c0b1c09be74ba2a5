//! Security headers on every response, after the handler has answered:
//! `nosniff`, `Referrer-Policy`, cross-origin isolation, `Permissions-Policy`, framing refused
//! (or limited to a route's `frame-ancestors` allowlist), `no-store` on authenticated
//! responses, HSTS whenever the public URL is https, and a Content-Security-Policy: for JSON,
//! nothing may load; for HTML, scripts and styles run only with this response's nonce, 128 bits
//! fresh from the OS CSPRNG, which the page handler draws ([`CspNonce::generate`]) and returns
//! in the response's extensions. An HTML response without one gets the JSON policy: nothing runs.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::manifest::RouteSpec;
use crate::state::AppState;

/// A CSP nonce (base64 of 16 random bytes). A page handler draws one, renders its inline
/// scripts and styles with it, and returns it in the response's extensions, where this layer
/// finds it; JSON responses never draw one.
#[derive(Debug, Clone)]
pub struct CspNonce(pub String);

impl CspNonce {
    /// A fresh nonce from the OS CSPRNG, or `None` if it failed (the page's scripts then do
    /// not run: without a nonce the layer sends the locked-down policy).
    pub fn generate() -> Option<Self> {
        rampart_crypto::random::bytes::<16>()
            .ok()
            .map(|b| Self(STANDARD.encode(b)))
    }
}

/// Edge settings derived from configuration.
#[derive(Debug, Clone, Default)]
pub struct EdgeSettings {
    /// Send HSTS (the public URL is https).
    pub hsts: bool,
    /// Add `preload` to HSTS.
    pub hsts_preload: bool,
    /// Send `Server-Timing: auth;dur=<ms>` on tenant routes: the time spent authenticating the
    /// caller (API key or session), for measuring it from outside (`bench/`).
    pub server_timing: bool,
}

// Names checked at compile time rather than on every response (`from_static` outside a
// constant checks them again on each call).
const COOP: HeaderName = HeaderName::from_static("cross-origin-opener-policy");
const CORP: HeaderName = HeaderName::from_static("cross-origin-resource-policy");
const PERMISSIONS_POLICY: HeaderName = HeaderName::from_static("permissions-policy");
const JSON_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
const PERMISSIONS: &str = "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()";
const HSTS: &str = "max-age=31536000; includeSubDomains";
const HSTS_PRELOAD: &str = "max-age=31536000; includeSubDomains; preload";

fn html_csp(nonce: &str, frame_ancestors: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}' 'strict-dynamic'; style-src 'nonce-{nonce}'; img-src 'self' data:; \
         connect-src 'self'; font-src 'self'; form-action 'self'; object-src 'none'; base-uri 'none'; frame-ancestors {frame_ancestors}"
    )
}

/// A constant value: built without copying or checking it again per response.
fn put(headers: &mut HeaderMap, name: HeaderName, value: &'static str) {
    headers.insert(name, HeaderValue::from_static(value));
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// The layer; see the module documentation.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let authenticated = req.headers().contains_key(header::AUTHORIZATION)
        || req.headers().contains_key(header::COOKIE);
    let mut response = next.run(req).await;
    let frame_ancestors: &[&str] = response
        .extensions()
        .get::<&'static RouteSpec>()
        .map_or(&[], |spec| spec.frame_ancestors);
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html"));
    // Only a page's own nonce counts, and only on HTML.
    let nonce = if is_html {
        response.extensions_mut().remove::<CspNonce>()
    } else {
        None
    };
    let edge = state.edge();
    let h = response.headers_mut();
    h.reserve(10);
    h.remove(header::SERVER);
    put(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    put(h, header::REFERRER_POLICY, "no-referrer");
    put(h, COOP, "same-origin");
    put(h, CORP, "same-origin");
    put(h, PERMISSIONS_POLICY, PERMISSIONS);
    if frame_ancestors.is_empty() {
        put(h, header::X_FRAME_OPTIONS, "DENY");
    }
    if authenticated || !h.contains_key(header::CACHE_CONTROL) {
        put(h, header::CACHE_CONTROL, "no-store");
    }
    if edge.hsts {
        let hsts = if edge.hsts_preload {
            HSTS_PRELOAD
        } else {
            HSTS
        };
        put(h, header::STRICT_TRANSPORT_SECURITY, hsts);
    }
    let ancestors = || {
        if frame_ancestors.is_empty() {
            "'none'".to_owned()
        } else {
            frame_ancestors.join(" ")
        }
    };
    match nonce {
        Some(n) => set(
            h,
            header::CONTENT_SECURITY_POLICY,
            &html_csp(&n.0, &ancestors()),
        ),
        // JSON, and HTML without a nonce (none was drawn, or the CSPRNG failed): nothing may
        // load or run.
        None if frame_ancestors.is_empty() => put(h, header::CONTENT_SECURITY_POLICY, JSON_CSP),
        None => set(
            h,
            header::CONTENT_SECURITY_POLICY,
            &format!("default-src 'none'; frame-ancestors {}", ancestors()),
        ),
    }
    response
}
