//! Audit events for identity: every sign-in, failure, lockout, second-factor change, password
//! change and session end is recorded in the ledger of each organization the user belongs to
//! (an organization's admins see their members' sign-in history). Attempts on unknown emails
//! belong to no organization: they are logged with the email pseudonymized, never stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use rampart_audit::redact::truncate_ip;
use rampart_core::{Actor, AuthMethod, ErrorCode, EventActor, UserId};
use rampart_store::audit::NewEvent;
use serde_json::Value;

use crate::http::error::ApiError;
use crate::http::guard::client_ip;
use crate::http::request_id::RequestId;
use crate::state::AppState;

/// Set once a handler has made its own event for the request, so that the guard does not
/// record the outcome a second time (see `user_route` in [`crate::http::guard`]).
#[derive(Debug, Clone, Default)]
pub struct Recorded(Arc<AtomicBool>);

impl Recorded {
    /// Whether the handler made its own event.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What an identity handler knows about its request, for events and new sessions.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    /// HTTP method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Request id.
    pub request_id: String,
    /// Truncated client address.
    pub client_ip: Option<String>,
    /// User-Agent, cut to 200 characters.
    pub user_agent: Option<String>,
    /// Request headers (cookies, CSRF, Origin).
    pub headers: HeaderMap,
    /// Where password failures are counted: the client address (an IPv6 /64), hashed.
    pub source: String,
    /// Marked when an event is made from these facts.
    recorded: Option<Recorded>,
}

/// The lock source of a client address: the IPv4 address, or the /64 of an IPv6 one (a single
/// subscriber usually holds a whole /64), hashed so that the table does not list addresses.
pub fn lock_source(ip: Option<std::net::IpAddr>) -> String {
    use sha2::{Digest, Sha256};
    use std::net::IpAddr;
    let network = match ip {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Some(IpAddr::V4(v4)) => v4.to_string(),
        None => "unknown".to_owned(),
    };
    hex::encode(Sha256::digest(
        format!("rampart.signin-source.v1:{network}").as_bytes(),
    ))
}

impl FromRequestParts<AppState> for RequestFacts {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        Ok(RequestFacts::of(parts))
    }
}

impl RequestFacts {
    /// The facts of the request these parts belong to.
    pub fn of(parts: &Parts) -> Self {
        RequestFacts {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            request_id: parts
                .extensions
                .get::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            client_ip: client_ip(&parts.extensions).map(truncate_ip),
            source: lock_source(client_ip(&parts.extensions)),
            user_agent: parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(200).collect()),
            headers: parts.headers.clone(),
            recorded: parts.extensions.get::<Recorded>().cloned(),
        }
    }

    /// An event for `action` by `actor` with this outcome; `args` must hold no secret (it is
    /// passed through the ledger's redaction anyway).
    pub fn event(
        &self,
        actor: Option<UserId>,
        action: &str,
        status: u16,
        error_code: Option<ErrorCode>,
        args: &Value,
    ) -> NewEvent {
        if let Some(recorded) = &self.recorded {
            recorded.0.store(true, Ordering::Relaxed);
        }
        NewEvent {
            workspace: None,
            actor: actor.map_or(EventActor::Anonymous, |u| Actor::User(u).into()),
            auth_method: actor.map(|_| AuthMethod::Session),
            method: self.method.clone(),
            path: self.path.clone(),
            action: action.to_owned(),
            target: actor.map(|u| u.to_string()),
            args: rampart_audit::redact::redact_args(args.to_string().as_bytes()),
            status,
            error_code,
            duration_ms: 0,
            idempotency_key: None,
            request_id: self.request_id.clone(),
            client_ip: self.client_ip.clone(),
        }
    }
}

/// Records `event` in the ledger of every organization `user` belongs to. A failure to
/// record raises the operator alert and does not change the response (the handlers that call
/// this have made their change already; see [`record_for`]).
pub async fn record(state: &AppState, user: UserId, event: NewEvent) {
    let _ = record_for(state, user, event).await;
}

/// [`record`], telling the caller whether the event was written, so that a request whose
/// outcome could not be recorded can fail closed.
pub async fn record_for(state: &AppState, user: UserId, event: NewEvent) -> Result<(), ()> {
    state
        .store()
        .record_for_user(user, &event, state.clock().now())
        .await
        .map_err(|e| crate::http::mutation::alert_unrecorded(&e, &event.action))
}

#[cfg(test)]
mod tests {
    use super::lock_source;

    #[test]
    fn an_ipv6_source_is_its_64() {
        let ip = |s: &str| Some(s.parse().unwrap());
        assert_eq!(
            lock_source(ip("2001:db8:1:1::1")),
            lock_source(ip("2001:db8:1:1:ffff::9"))
        );
        assert_ne!(
            lock_source(ip("2001:db8:1:1::1")),
            lock_source(ip("2001:db8:1:2::1"))
        );
        assert_ne!(lock_source(ip("192.0.2.1")), lock_source(ip("192.0.2.2")));
        assert_eq!(
            lock_source(ip("::ffff:192.0.2.1")),
            lock_source(ip("192.0.2.1"))
        );
    }
}
