//! The one request-body limit. Every route's body is held to its manifest entry's limit
//! ([`crate::manifest::RouteSpec::body_limit`]) by the guard before anything reads it: a
//! declared `Content-Length` over the limit is refused before a byte is read, and a body sent
//! without one is cut off where it passes the limit. Whoever reads the body later (the
//! mutation guard, [`super::extract::JsonBody`]) reads through the limit and gets the same 413.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header;
use http_body_util::{LengthLimitError, Limited};
use rampart_core::ErrorCode;

use super::error::ApiError;

/// `limit` bytes in words: `1 MiB`, `64 KiB`.
pub fn describe(limit: usize) -> String {
    match limit {
        l if l >= 1 << 20 && l % (1 << 20) == 0 => format!("{} MiB", l >> 20),
        l if l >= 1 << 10 && l % (1 << 10) == 0 => format!("{} KiB", l >> 10),
        l => format!("{l} bytes"),
    }
}

/// `413 PAYLOAD_TOO_LARGE` for a body over `limit`.
pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("request body exceeds {}", describe(limit)),
    )
}

/// The request with its body held to `limit`; refused when it declares a longer one.
pub fn limit(req: Request, limit: usize) -> Result<Request, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    Ok(req.map(|body| Body::new(Limited::new(body, limit))))
}

/// Reads a body within `limit` (the route's, which [`limit`] may already enforce), classifying
/// failures for the envelope: over the limit is a 413, a connection that broke off is a 400.
pub async fn read(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if s.is::<LengthLimitError>() {
                return too_large(limit);
            }
            // The connection edge cut a stalled or trickled body: the same 408 the client gets
            // (`crate::conn` answers it whatever the handler made of the read), so the ledger
            // records what happened.
            if let Some(why) = s.downcast_ref::<crate::conn::BodyTimedOut>() {
                return ApiError::new(ErrorCode::RequestTimeout, why.to_string());
            }
            source = s.source();
        }
        ApiError::bad_request("could not read the request body")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_words() {
        assert_eq!(describe(1 << 20), "1 MiB");
        assert_eq!(describe(64 << 10), "64 KiB");
        assert_eq!(describe(1000), "1000 bytes");
    }

    #[tokio::test]
    async fn a_declared_or_streamed_body_over_the_limit_is_a_413() {
        let declared = Request::builder()
            .header(header::CONTENT_LENGTH, "11")
            .body(Body::from("hello world"))
            .unwrap_or_default();
        let refused = limit(declared, 10).err().map(|e| e.code);
        assert_eq!(refused, Some(ErrorCode::PayloadTooLarge));

        let streamed = Request::new(Body::from("hello world"));
        let Ok(wrapped) = limit(streamed, 10) else {
            panic!("no length declared: nothing to refuse up front");
        };
        let streamed = read(wrapped.into_body(), 10).await;
        assert_eq!(
            streamed.err().map(|e| e.code),
            Some(ErrorCode::PayloadTooLarge)
        );

        let fits = limit(Request::new(Body::from("hello")), 10)
            .ok()
            .map(Request::into_body);
        let Some(body) = fits else {
            panic!("a body within the limit is let through");
        };
        assert_eq!(read(body, 10).await.ok(), Some(Bytes::from("hello")));
    }
}
