//! The one error envelope: `{"error": {"code", "message", "request_id", "field"?}}`.
//!
//! Policy: a handler returns an [`ApiError`] with a stable [`ErrorCode`] and a message written
//! for the caller, never derived from a database or I/O error. Unexpected failures become
//! `INTERNAL` with a generic message; their detail goes to the log under the request id. The
//! request-id layer renders every error response, including axum's own (unknown route, wrong
//! method), so no response leaves without the envelope.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rampart_core::ErrorCode;
use rampart_store::StoreError;

/// An error on its way to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The stable code.
    pub code: ErrorCode,
    /// A message for humans; never contains secrets, SQL or stored values.
    pub message: Cow<'static, str>,
    /// The offending field, for `INVALID`.
    pub field: Option<String>,
}

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// `422 INVALID` naming the field.
    pub fn invalid(field: impl Into<String>, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code: ErrorCode::Invalid,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// `404 NOT_FOUND`, the same text for missing and foreign objects.
    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "not found")
    }

    /// `400 BAD_REQUEST`.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// `500 INTERNAL`; log the cause before calling.
    pub fn internal() -> Self {
        Self::new(
            ErrorCode::Internal,
            "internal error; the request id identifies it in the server log",
        )
    }

    /// The default error for a bare status code produced outside our handlers.
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::not_found(),
            StatusCode::METHOD_NOT_ALLOWED => Self::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(ErrorCode::PayloadTooLarge, "request body exceeds 1 MiB")
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                Self::new(ErrorCode::UnsupportedMediaType, "send application/json")
            }
            StatusCode::UNAUTHORIZED => {
                Self::new(ErrorCode::Unauthenticated, "authentication required")
            }
            StatusCode::FORBIDDEN => Self::new(ErrorCode::Forbidden, "forbidden"),
            StatusCode::SERVICE_UNAVAILABLE => {
                Self::new(ErrorCode::Unavailable, "service unavailable; retry later")
            }
            s if s.is_client_error() => Self::bad_request("bad request"),
            _ => Self::internal(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = status.into_response();
        // The request-id layer turns this into the JSON envelope, adding the request id.
        response.extensions_mut().insert(self);
        response
    }
}

impl From<rampart_crypto::random::RandomError> for ApiError {
    fn from(e: rampart_crypto::random::RandomError) -> Self {
        tracing::error!(error = %e, "no secret could be drawn");
        ApiError::internal()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => ApiError::new(ErrorCode::Conflict, what),
            StoreError::BadReference => ApiError::new(
                ErrorCode::BadReference,
                "a referenced object does not exist",
            ),
            StoreError::NotFound(_) => ApiError::not_found(),
            e if e.is_unavailable() => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the database is unavailable; retry later",
                )
            }
            e => {
                tracing::error!(error = %e, source = ?std::error::Error::source(&e).map(|s| s.to_string()), "store error");
                ApiError::internal()
            }
        }
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
