//! Session cookies: what the cookie is called and carries, how a request's session is found,
//! and the CSRF rule for cookie-authenticated changes.
//!
//! The cookie holds a 256-bit token (only its SHA-256 is stored). It is `HttpOnly`,
//! `SameSite=Lax`, `Path=/`, and, whenever the public URL is https, `Secure` with the
//! `__Host-` prefix. The CSRF token is derived from the session token by a one-way hash, so
//! the server can hand it out again without storing it in clear, and script can read it while
//! the session token itself stays out of reach.

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use cookie::{Cookie, SameSite};
use rampart_core::{Secret, SessionId, UserId};
use rampart_store::identity::{SessionRecord, SessionStage};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Identity;
use super::token;

/// The header a cookie-authenticated change must carry (unless its `Origin` is ours).
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The cookie's name: `__Host-` prefixed whenever cookies are `Secure`.
pub fn cookie_name(identity: &Identity) -> &'static str {
    if identity.secure_cookies() {
        "__Host-rampart_session"
    } else {
        "rampart_session"
    }
}

/// The `Set-Cookie` value carrying `token`, living until `expires`.
pub fn set_cookie(identity: &Identity, token: &Secret<String>, lifetime: Duration) -> HeaderValue {
    let mut c = Cookie::new(cookie_name(identity), token.expose().clone());
    c.set_http_only(true);
    c.set_same_site(SameSite::Lax);
    c.set_path("/");
    c.set_secure(identity.secure_cookies());
    c.set_max_age(cookie::time::Duration::seconds(
        lifetime.num_seconds().max(0),
    ));
    HeaderValue::from_str(&c.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value that deletes the cookie.
pub fn clear_cookie(identity: &Identity) -> HeaderValue {
    let mut c = Cookie::new(cookie_name(identity), "");
    c.set_http_only(true);
    c.set_same_site(SameSite::Lax);
    c.set_path("/");
    c.set_secure(identity.secure_cookies());
    c.set_max_age(cookie::time::Duration::ZERO);
    HeaderValue::from_str(&c.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The name of the cookie binding a magic link to the browser that asked for it.
pub fn magic_cookie_name(identity: &Identity) -> &'static str {
    if identity.secure_cookies() {
        "__Host-rampart_magic"
    } else {
        "rampart_magic"
    }
}

fn cookie_header(
    identity: &Identity,
    name: &'static str,
    value: &str,
    lifetime: Duration,
) -> HeaderValue {
    let mut c = Cookie::new(name, value.to_owned());
    c.set_http_only(true);
    c.set_same_site(SameSite::Lax);
    c.set_path("/");
    c.set_secure(identity.secure_cookies());
    c.set_max_age(cookie::time::Duration::seconds(
        lifetime.num_seconds().max(0),
    ));
    HeaderValue::from_str(&c.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value binding a magic link to this browser (the nonce lives as long as the
/// link).
pub fn set_magic_cookie(
    identity: &Identity,
    nonce: &Secret<String>,
    lifetime: Duration,
) -> HeaderValue {
    cookie_header(
        identity,
        magic_cookie_name(identity),
        nonce.expose(),
        lifetime,
    )
}

/// The `Set-Cookie` value that deletes the magic-link cookie.
pub fn clear_magic_cookie(identity: &Identity) -> HeaderValue {
    cookie_header(identity, magic_cookie_name(identity), "", Duration::zero())
}

/// The magic-link nonce the request presents, if any, well formed.
pub fn presented_magic(identity: &Identity, headers: &HeaderMap) -> Option<Secret<String>> {
    named_cookie(headers, magic_cookie_name(identity))
}

/// Whether the request comes from a browser: browsers send `Origin` (or `Sec-Fetch-Site`) with
/// every POST made by a page; API clients and mail apps' link handlers do not need to.
pub fn from_browser(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ORIGIN) || headers.contains_key("sec-fetch-site")
}

fn named_cookie(headers: &HeaderMap, name: &str) -> Option<Secret<String>> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
        .filter(|v| token::well_formed(v))
        .map(Secret::new)
}

/// The session token the request presents, if it has our cookie with a well-formed value.
pub fn presented(identity: &Identity, headers: &HeaderMap) -> Option<Secret<String>> {
    named_cookie(headers, cookie_name(identity))
}

/// The CSRF token belonging to a session token.
pub fn csrf_for(session_token: &Secret<String>) -> Secret<String> {
    let mut h = Sha256::new();
    h.update(b"rampart.csrf.v1\0");
    h.update(session_token.expose().as_bytes());
    Secret::new(URL_SAFE_NO_PAD.encode(h.finalize()))
}

/// Whether a cookie-authenticated change may proceed: the `X-CSRF-Token` header matches the
/// session's CSRF token, or the `Origin` header is exactly the public URL's origin.
pub fn csrf_ok(identity: &Identity, headers: &HeaderMap, session: &SessionRecord) -> bool {
    if let Some(sent) = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        let hash = token::hash(sent);
        return bool::from(hash.as_bytes().ct_eq(session.csrf_hash.as_bytes()));
    }
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        origin_of(identity.public_url()),
    ) {
        (Some(origin), Some(ours)) => origin == ours,
        _ => false,
    }
}

fn origin_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    Some(parsed.origin().ascii_serialization())
}

/// A signed-in caller as the guard found them.
#[derive(Debug, Clone)]
pub struct SessionUser {
    /// The user.
    pub user: UserId,
    /// The session.
    pub session: SessionId,
    /// Its stage.
    pub stage: SessionStage,
    /// The stored record.
    pub record: SessionRecord,
    /// The presented token (to derive the CSRF token again).
    pub token: Secret<String>,
}

/// Whether a session that still owes its organization a second factor may reach this route:
/// only what enrolling needs (who am I, the TOTP routes, signing out).
pub fn reachable_before_enrolment(spec: &crate::manifest::RouteSpec) -> bool {
    spec.path == "/v1/auth/me"
        || spec.path == "/v1/auth/signout"
        || spec.path == "/v1/auth/totp"
        || spec.path.starts_with("/v1/auth/totp/")
}

/// The refusal a session owing a second factor gets anywhere else.
pub fn enrolment_required() -> crate::http::error::ApiError {
    crate::http::error::ApiError::new(
        rampart_core::ErrorCode::TwoFactorRequired,
        "an organization you belong to requires two-factor authentication: turn it on at \
         POST /v1/auth/totp/enroll, then POST /v1/auth/totp/confirm",
    )
}

/// How far a touch may lag: the idle expiry is moved at most once a minute per session.
const TOUCH_EVERY: i64 = 60;

/// The new idle expiry for a session seen at `now`, capped by its absolute expiry.
pub fn idle_expiry(
    identity: &Identity,
    now: DateTime<Utc>,
    absolute: DateTime<Utc>,
) -> DateTime<Utc> {
    (now + Duration::minutes(identity.settings().session_idle_minutes)).min(absolute)
}

/// Whether the record's idle expiry should be moved forward now.
pub fn due_for_touch(record: &SessionRecord, now: DateTime<Utc>) -> bool {
    (now - record.last_seen_at).num_seconds() >= TOUCH_EVERY
}
