//! The plain-HTTP listener's whole application: every request gets a 301 to the same path on
//! the https origin (the public URL when it is https, else the request's own host name on the
//! TLS port). It serves nothing else, so it is the one router outside the manifest.

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The redirecting router.
pub fn router(public_url: &str, tls_port: u16) -> Router {
    let fixed_origin = public_url
        .strip_prefix("https://")
        .map(|rest| format!("https://{}", rest.trim_end_matches('/')));
    Router::new().fallback(move |req: Request| {
        let fixed_origin = fixed_origin.clone();
        async move { redirect(fixed_origin, tls_port, &req) }
    })
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
