//! The outermost layer: gives every request an id of the server's own (`x-request-id` on the
//! response, in the envelope and in the ledger), logs one line per request (method, route
//! template, status, duration; never headers, bodies or query strings, which may hold secrets
//! or PII), and renders every error response as the envelope.
//!
//! A client's own `x-request-id` is kept apart, as `client_request_id` on the request's log
//! lines and echoed in `x-client-request-id`: were it the id, any client could give two of
//! its requests, or its request and another's, one id in the ledger.

use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;
use tracing::Instrument;

use super::error::ApiError;

/// The request's id, available to handlers and layers as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn incoming_id(req: &Request) -> Option<String> {
    let v = req.headers().get("x-request-id")?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    ok.then(|| v.to_owned())
}

/// `req_` and a new ULID, lower-case, in one allocation.
fn fresh_id() -> String {
    let mut body = [0u8; ulid::ULID_LEN];
    let body = ulid::Ulid::new().array_to_str(&mut body);
    body.make_ascii_lowercase();
    let mut id = String::with_capacity(4 + ulid::ULID_LEN);
    id.push_str("req_");
    id.push_str(body);
    id
}

/// Request id, access log line and error envelope.
pub async fn layer(mut req: Request, next: Next) -> Response {
    let id = fresh_id();
    let client_id = incoming_id(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let started = Instant::now();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        client_request_id = client_id.as_deref()
    );
    let mut response = next.run(req).instrument(span.clone()).await;
    let route = response
        .extensions()
        .get::<&'static crate::manifest::RouteSpec>()
        .map(|spec| spec.path)
        .unwrap_or("-");
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let err = response
            .extensions_mut()
            .remove::<ApiError>()
            .unwrap_or_else(|| ApiError::from_status(status));
        let mut body = json!({"code": err.code.as_str(), "message": err.message, "request_id": id});
        if let Some(field) = err.field {
            body["field"] = json!(field);
        }
        let bytes = serde_json::to_vec(&json!({ "error": body })).unwrap_or_default();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.remove(header::CONTENT_LENGTH);
        *response.body_mut() = Body::from(bytes);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    if let Some(v) = client_id.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert("x-client-request-id", v);
    }
    span.in_scope(|| {
        tracing::info!(%method, %route, status = status.as_u16(), ms = started.elapsed().as_millis() as u64, "request");
    });
    response
}
