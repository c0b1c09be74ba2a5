//! Stable error codes: the `code` field of the error envelope (ARCHITECTURE §7). Clients
//! branch on these strings, so a code never changes meaning once published. The HTTP status
//! each code travels with is part of the same contract and lives beside it.

use serde::Serialize;

/// A stable, machine-readable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The request is malformed: broken JSON, a wrongly prefixed id, a bad query parameter.
    BadRequest,
    /// A reference in the body points at nothing this workspace holds.
    BadReference,
    /// No or invalid credentials.
    Unauthenticated,
    /// Authenticated, but the role lacks the permission.
    Forbidden,
    /// The organization's plan is below the route's minimum.
    PlanUpgradeRequired,
    /// An organization the person belongs to requires two-factor authentication, and they
    /// have not turned it on: only enrolment (`/v1/auth/totp/…`) is open until they do.
    TwoFactorRequired,
    /// Missing, or belonging to someone else: the two are indistinguishable on purpose.
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// A uniqueness rule would be broken.
    Conflict,
    /// An idempotency key is still being processed.
    IdempotencyKeyInUse,
    /// The request body arrived too slowly (a stall, or below the minimum rate).
    RequestTimeout,
    /// The body is larger than the limit.
    PayloadTooLarge,
    /// The body is not JSON.
    UnsupportedMediaType,
    /// Well-formed but invalid: a field fails validation.
    Invalid,
    /// An idempotency key was reused with a different body.
    IdempotencyKeyReused,
    /// A rate limit was exceeded.
    RateLimited,
    /// The daily quota was exhausted.
    QuotaExceeded,
    /// Something failed on our side; details are in the server log under the request id.
    Internal,
    /// A dependency (the database) is unavailable; retry later.
    Unavailable,
}

impl ErrorCode {
    /// The HTTP status this code is sent with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::BadReference => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden
            | ErrorCode::PlanUpgradeRequired
            | ErrorCode::TwoFactorRequired => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::Conflict | ErrorCode::IdempotencyKeyInUse => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Invalid | ErrorCode::IdempotencyKeyReused => 422,
            ErrorCode::RateLimited | ErrorCode::QuotaExceeded => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }

    /// The wire name, e.g. `NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::BadReference => "BAD_REFERENCE",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::PlanUpgradeRequired => "PLAN_UPGRADE_REQUIRED",
            ErrorCode::TwoFactorRequired => "TWO_FACTOR_REQUIRED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::IdempotencyKeyInUse => "IDEMPOTENCY_KEY_IN_USE",
            ErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::Invalid => "INVALID",
            ErrorCode::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::QuotaExceeded => "QUOTA_EXCEEDED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for code in [
            ErrorCode::NotFound,
            ErrorCode::PlanUpgradeRequired,
            ErrorCode::TwoFactorRequired,
            ErrorCode::IdempotencyKeyReused,
            ErrorCode::RequestTimeout,
        ] {
            let json = serde_json::to_string(&code).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
