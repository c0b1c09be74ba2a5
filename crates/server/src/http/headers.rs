//! Security headers on every response, after the handler has answered:
//! `nosniff`, `Referrer-Policy`, cross-origin isolation, `Permissions-Policy`, framing refused
//! (or limited to a route's `frame-ancestors` allowlist), `no-store` on authenticated
//! responses, HSTS whenever the public URL is https, and a Content-Security-Policy: for JSON,
//! nothing may load; for HTML, scripts and styles run only with this response's nonce, 128 bits
//! fresh from the OS CSPRNG, available to templates as a [`CspNonce`] request extension.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::manifest::RouteSpec;
use crate::state::AppState;

/// The per-response CSP nonce (base64 of 16 random bytes).
#[derive(Debug, Clone)]
pub struct CspNonce(pub String);

impl CspNonce {
    fn generate() -> Option<Self> {
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

const JSON_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
const PERMISSIONS: &str = "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()";

fn html_csp(nonce: &str, frame_ancestors: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}' 'strict-dynamic'; style-src 'nonce-{nonce}'; img-src 'self' data:; \
         connect-src 'self'; font-src 'self'; form-action 'self'; object-src 'none'; base-uri 'none'; frame-ancestors {frame_ancestors}"
    )
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// The layer; see the module documentation.
pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let nonce = CspNonce::generate();
    if let Some(n) = &nonce {
        req.extensions_mut().insert(n.clone());
    }
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
    let edge = state.edge();
    let h = response.headers_mut();
    h.remove(header::SERVER);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(
        h,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        h,
        header::HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    set(
        h,
        header::HeaderName::from_static("permissions-policy"),
        PERMISSIONS,
    );
    let ancestors = if frame_ancestors.is_empty() {
        set(h, header::X_FRAME_OPTIONS, "DENY");
        "'none'".to_owned()
    } else {
        frame_ancestors.join(" ")
    };
    if authenticated || !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    match (is_html, &nonce) {
        (true, Some(n)) => set(
            h,
            header::CONTENT_SECURITY_POLICY,
            &html_csp(&n.0, &ancestors),
        ),
        // Without a nonce (the CSPRNG failed), HTML gets the locked-down policy: nothing runs.
        (true, None) => set(
            h,
            header::CONTENT_SECURITY_POLICY,
            &format!("default-src 'none'; frame-ancestors {ancestors}"),
        ),
        (false, _) => set(
            h,
            header::CONTENT_SECURITY_POLICY,
            &JSON_CSP.replace(
                "'none'; frame-ancestors 'none'",
                &format!("'none'; frame-ancestors {ancestors}"),
            ),
        ),
    }
    if edge.hsts {
        let preload = if edge.hsts_preload { "; preload" } else { "" };
        set(
            h,
            header::STRICT_TRANSPORT_SECURITY,
            &format!("max-age=31536000; includeSubDomains{preload}"),
        );
    }
    response
}
