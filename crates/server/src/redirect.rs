//! The plain-HTTP listener's whole application: a page request gets a 301 to the same path on
//! the https origin (the public URL when it is https, else the request's own host name on the
//! TLS port); an API request is refused with an error instead (ASVS V4.1.2): by the time a
//! redirect could answer it, its key or cookie has crossed the network in the clear, and a
//! client that follows redirects would send it a second time. It serves nothing else, so it
//! is the one router outside the manifest.

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rampart_core::ErrorCode;

use crate::http::error::ApiError;

/// The redirecting router.
pub fn router(public_url: &str, tls_port: u16) -> Router {
    let fixed_origin = public_url
        .strip_prefix("https://")
        .map(|rest| format!("https://{}", rest.trim_end_matches('/')));
    Router::new()
        .fallback(move |req: Request| {
            let fixed_origin = fixed_origin.clone();
            async move { answer(fixed_origin, tls_port, &req) }
        })
        // The envelope and request id, as on the https side.
        .layer(axum::middleware::from_fn(crate::http::request_id::layer))
}

/// Whether `req` is an API call: under `/v1/`, or carrying credentials of any kind.
fn is_api_call(req: &Request) -> bool {
    req.uri().path().starts_with("/v1/")
        || req.uri().path() == "/v1"
        || req.headers().contains_key(header::AUTHORIZATION)
        || req.headers().contains_key(header::COOKIE)
}

fn answer(fixed_origin: Option<String>, tls_port: u16, req: &Request) -> Response {
    if is_api_call(req) {
        return ApiError::new(
            ErrorCode::Forbidden,
            "this address speaks plain HTTP and only redirects pages: send API requests over https (and treat any key sent here as exposed)",
        )
        .into_response();
    }
    redirect(fixed_origin, tls_port, req)
}

fn redirect(fixed_origin: Option<String>, tls_port: u16, req: &Request) -> Response {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let origin = fixed_origin.or_else(|| {
        let host = req.headers().get(header::HOST)?.to_str().ok()?;
        let name = host.rsplit_once(':').map_or(host, |(n, _)| n);
        // Only a plain host name: nothing that could turn the Location into another URL.
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        valid.then(|| {
            if tls_port == 443 {
                format!("https://{name}")
            } else {
                format!("https://{name}:{tls_port}")
            }
        })
    });
    match origin {
        Some(o) => (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, format!("{o}{path}"))],
        )
            .into_response(),
        None => StatusCode::BAD_REQUEST.into_response(),
    }
}
