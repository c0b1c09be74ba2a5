//! The mutation guard, driven by the manifest's `mutates` flag: every mutating request is
//! recorded in the audit ledger whatever its outcome, and an `Idempotency-Key` makes a retry
//! return the first outcome instead of doing the work twice.
//!
//! A successful request's event (and its idempotency record) is written in the handler's own
//! transaction, so there is no change without its event and no event for a change that did
//! not happen. A failed request's event is written in a transaction of its own after the
//! handler's work has rolled back, so the rollback does not erase the evidence.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rampart_audit::{redact_args, truncate_ip};
use rampart_core::{ErrorCode, EventActor, OrgId, TenantGrant, WorkspaceId};
use rampart_store::audit::{self, NewEvent};
use rampart_store::idempotency::{Claim, StoredResponse};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::guard::{Admission, Caller, PathIds, Refusal, TxSlot, admit, client_ip};
use super::limits;
use super::request_id::RequestId;
use crate::manifest::RouteSpec;
use crate::state::AppState;

/// What the ledger needs to know about the request, gathered before it runs.
struct Facts {
    spec: &'static RouteSpec,
    method: String,
    path: String,
    target: Option<String>,
    args: String,
    request_id: String,
    client_ip: Option<String>,
    idempotency_key: Option<String>,
    started: Instant,
}

/// The status and error code of a response: what the ledger records of an outcome.
pub(crate) struct Outcome {
    pub status: u16,
    pub error_code: Option<ErrorCode>,
}

impl Outcome {
    /// What the ledger records of `response`.
    pub(crate) fn of(response: &Response) -> Self {
        let error_code = (!response.status().is_success()).then(|| {
            response
                .extensions()
                .get::<ApiError>()
                .map_or_else(|| ApiError::from_status(response.status()).code, |e| e.code)
        });
        Self {
            status: response.status().as_u16(),
            error_code,
        }
    }
}

impl Facts {
    fn event(
        &self,
        workspace: Option<WorkspaceId>,
        caller: Option<&Caller>,
        outcome: Outcome,
    ) -> NewEvent {
        let Outcome { status, error_code } = outcome;
        NewEvent {
            workspace,
            actor: caller.map_or(EventActor::Anonymous, |c| c.principal.actor.into()),
            auth_method: caller.map(|c| c.principal.method),
            method: self.method.clone(),
            path: self.path.clone(),
            action: self.spec.action.to_owned(),
            target: self.target.clone(),
            args: self.args.clone(),
            status,
            error_code,
            duration_ms: i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX),
            idempotency_key: self.idempotency_key.clone(),
            request_id: self.request_id.clone(),
            client_ip: self.client_ip.clone(),
        }
    }
}

fn facts(
    spec: &'static RouteSpec,
    parts: &Parts,
    ids: &PathIds,
    args: String,
    started: Instant,
) -> Facts {
    Facts {
        spec,
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        target: ids.id.clone(),
        args,
        request_id: parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
        client_ip: client_ip(&parts.extensions).map(truncate_ip),
        idempotency_key: None,
        started,
    }
}

/// What the ledger keeps of the body of a request refused before its sender was known: its
/// size and SHA-256, never its content. Anyone who knows a workspace id can send such
/// requests, and the ledger cannot be pruned for a year, so what one costs it is fixed.
fn unauthenticated_args(body: &Result<Bytes, ApiError>) -> String {
    match body {
        Ok(bytes) => serde_json::json!({
            "body_bytes": bytes.len(),
            "body_sha256": hex::encode(Sha256::digest(bytes)),
        }),
        Err(e) => serde_json::json!({ "body_unread": e.code.as_str() }),
    }
    .to_string()
}

/// The answer when a request's outcome cannot be recorded: whatever it did was rolled back (or
/// never ran), and the caller may retry.
pub(crate) fn unrecorded() -> Response {
    ApiError::new(
        ErrorCode::Unavailable,
        "the request could not be recorded in the audit ledger, so nothing was changed; retry later",
    )
    .into_response()
}

/// The operator's alert for an event that could not be written: one error line with a fixed
/// `alert` field to page on (README, "Operations"). Never silent: a gap in what the ledger
/// holds would otherwise be invisible, since the chain only covers what entered it.
pub(crate) fn alert_unrecorded(error: &rampart_store::StoreError, action: &str) {
    tracing::error!(
        alert = "audit_event_unrecorded",
        error = %error,
        action,
        "AUDIT EVENT NOT RECORDED: the request was refused with 503"
    );
}

/// Writes a failed request's event in a transaction of its own.
async fn record_apart(
    state: &AppState,
    org: OrgId,
    event: NewEvent,
) -> Result<(), rampart_store::StoreError> {
    let action = event.action.clone();
    let result = state
        .store()
        .append_event_apart(org, event, state.clock().now())
        .await;
    if let Err(e) = &result {
        alert_unrecorded(e, &action);
    }
    result
}

/// Records a request refused before it reached its handler, in the ledger of the organization
/// the caller acted as (their own), or, for an unauthenticated caller, of the workspace named
/// in the path, when it exists and has not had its share of such records this minute (the
/// limiter's `ledger` bucket). Answers the refusal, or [`unrecorded`] when the event that
/// was due could not be written.
async fn record_refused(state: &AppState, facts: &Facts, refusal: Refusal) -> Response {
    let Refusal {
        response,
        workspace,
        caller,
    } = refusal;
    let outcome = Outcome::of(&response);
    let target = match &caller {
        Some(c) => Some((c.org, c.workspace)),
        None => match workspace {
            Some(ws) => match state.store().workspace_org(ws).await {
                Ok(found) => found.map(|(org, _)| (org, ws)),
                Err(e) => {
                    alert_unrecorded(&e, facts.spec.action);
                    return unrecorded();
                }
            },
            None => None,
        },
    };
    let Some((org, ws)) = target else {
        tracing::info!(
            action = facts.spec.action,
            status = outcome.status,
            "refused request names no workspace to record it in"
        );
        return response;
    };
    if caller.is_none()
        && !limits::anonymous_record_allowed(state.limiter(), state.limits(), ws).await
    {
        tracing::warn!(
            action = facts.spec.action,
            status = outcome.status,
            workspace = %ws,
            "unauthenticated refusal not recorded: this workspace's share of such records is used up for this minute"
        );
        return response;
    }
    match record_apart(state, org, facts.event(Some(ws), caller.as_ref(), outcome)).await {
        Ok(()) => response,
        Err(_) => unrecorded(),
    }
}

fn valid_idempotency_key(k: &str) -> bool {
    (1..=255).contains(&k.len()) && k.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

fn request_hash(method: &str, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(body);
    hex::encode(h.finalize())
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    if let Ok(serde_json::Value::Object(saved)) =
        serde_json::from_str::<serde_json::Value>(&stored.headers)
        && let Some(location) = saved.get("location").and_then(|v| v.as_str())
        && let Ok(v) = HeaderValue::from_str(location)
    {
        headers.insert(header::LOCATION, v);
    }
    response
}

async fn split_body(response: Response) -> (axum::http::response::Parts, Bytes) {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    (parts, bytes)
}

/// Marks a response whose top-level `fields` hold a secret shown this once (a new API key):
/// what is kept of it for an idempotent replay has them redacted, so the secret is never
/// stored (nor in the database's log, nor in its backups), and a replay does not show it again.
#[derive(Debug, Clone, Copy)]
pub struct ShownOnce(pub &'static [&'static str]);

/// What a replay of a [`ShownOnce`] response gets in place of each secret.
pub const NOT_SHOWN_AGAIN: &str = "[redacted: shown once, in the first response]";

fn stored(parts: &axum::http::response::Parts, body: &Bytes) -> StoredResponse {
    let location = parts
        .headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok());
    let body = match parts.extensions.get::<ShownOnce>() {
        None => String::from_utf8_lossy(body).into_owned(),
        Some(ShownOnce(fields)) => match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(mut object)) => {
                for field in *fields {
                    if let Some(v) = object.get_mut(*field) {
                        *v = serde_json::Value::String(NOT_SHOWN_AGAIN.to_owned());
                    }
                }
                serde_json::Value::Object(object).to_string()
            }
            // Not the object the handler promised: keep nothing of it.
            _ => "{}".to_owned(),
        },
    };
    StoredResponse {
        status: parts.status.as_u16(),
        headers: serde_json::json!({ "location": location }).to_string(),
        body,
    }
}

/// The mutation guard for one request; see the module documentation.
///
/// Admission comes before the body is read, so that what is known of the sender decides what
/// the ledger keeps of a refusal: an unauthenticated one keeps only the body's size and hash.
pub(crate) async fn run(
    state: AppState,
    spec: &'static RouteSpec,
    ids: PathIds,
    req: Request,
    next: Next,
    started: Instant,
) -> Response {
    let state = &state;
    let limit = spec.body_limit();
    let (parts, body) = req.into_parts();
    let admitted = admit(
        state,
        spec,
        &ids,
        &parts.headers,
        client_ip(&parts.extensions),
    )
    .await;
    let bytes = match super::body::limit(Request::from_parts(parts.clone(), body), limit) {
        Ok(limited) => super::body::read(limited.into_body(), limit).await,
        Err(e) => Err(e),
    };
    match admitted {
        Err(refusal) => {
            let args = match refusal.caller {
                None => unauthenticated_args(&bytes),
                Some(_) => redact_args(bytes.as_deref().unwrap_or_default()),
            };
            let f = facts(spec, &parts, &ids, args, started);
            record_refused(state, &f, refusal).await
        }
        Ok((grant, limit_headers)) => {
            let mut response = match bytes {
                Ok(bytes) => {
                    let f = facts(spec, &parts, &ids, redact_args(&bytes), started);
                    run_admitted(state, f, parts, bytes, grant, next).await
                }
                Err(e) => {
                    let f = facts(spec, &parts, &ids, redact_args(b""), started);
                    fail(state, &f, &caller_of(&grant), e.into_response()).await
                }
            };
            limit_headers.apply(&mut response);
            response
        }
    }
}

/// The rest of the mutation guard, once the caller is admitted.
async fn run_admitted(
    state: &AppState,
    mut f: Facts,
    mut parts: Parts,
    bytes: Bytes,
    grant: TenantGrant,
    next: Next,
) -> Response {
    let caller = caller_of(&grant);

    // Idempotency: claim the key in a transaction of its own, before any work.
    let idem_key = match parts
        .headers
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_owned))
    {
        None => None,
        Some(Ok(k)) if valid_idempotency_key(&k) => Some(k),
        Some(_) => {
            let e = ApiError::invalid(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            );
            return fail(state, &f, &caller, e.into_response()).await;
        }
    };
    f.idempotency_key = idem_key.clone();
    // Only a request with a key is hashed (its claim and stored outcome are tied to it).
    let hash = idem_key
        .as_ref()
        .map(|_| request_hash(&f.method, &f.path, &bytes))
        .unwrap_or_default();
    let slot = TxSlot::default();
    if let Some(key) = &idem_key {
        let claimed = state
            .store()
            .idempotency_claim_for_work(&grant, key, &hash, state.clock().now())
            .await
            .map(|(claim, tx)| {
                // SQLite: the handler runs in the transaction that holds the claim.
                if let Some(tx) = tx {
                    slot.put(tx);
                }
                claim
            });
        let refusal = match claimed {
            Ok(Claim::Claimed) => None,
            Ok(Claim::Replay(saved)) => {
                if f.target.is_none() {
                    f.target = created_id(saved.body.as_bytes());
                }
                Some(replay(saved))
            }
            Ok(Claim::InUse) => Some(
                ApiError::new(
                    ErrorCode::IdempotencyKeyInUse,
                    "a request with this Idempotency-Key is still in progress",
                )
                .into_response(),
            ),
            Ok(Claim::Reused) => Some(
                ApiError::new(
                    ErrorCode::IdempotencyKeyReused,
                    "this Idempotency-Key was used with a different request",
                )
                .into_response(),
            ),
            Err(e) => Some(ApiError::from(e).into_response()),
        };
        if let Some(response) = refusal {
            return fail(state, &f, &caller, response).await;
        }
    }

    parts.extensions.insert(Admission {
        grant,
        slot: slot.clone(),
        spec: f.spec,
    });
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let tx = slot.take();

    match tx {
        Some(tx) if response.status().is_success() => {
            let (rparts, rbody) = split_body(response).await;
            if f.target.is_none() {
                f.target = created_id(&rbody);
            }
            let event = f.event(
                Some(caller.workspace),
                Some(&caller),
                Outcome {
                    status: rparts.status.as_u16(),
                    error_code: None,
                },
            );
            let saved = stored(&rparts, &rbody);
            // Last before the commit: the key's stored response and the event (one statement
            // on PostgreSQL, one command on SQLite). On SQLite the event is linked here, while
            // the request holds the writer; on PostgreSQL it is sealed into the chain inside
            // COMMIT, where the organization's head is locked for the commit alone.
            let completed = idem_key.as_deref().map(|key| (key, &saved));
            let committed =
                audit::commit_with_event(tx, completed, event, state.clock().now()).await;
            match committed {
                Ok(()) => Response::from_parts(rparts, Body::from(rbody)),
                Err(e) => {
                    // Nothing of the change is stored: the event was to commit with it. Either
                    // way the caller may retry, so the answer is a 503, not a 500.
                    alert_unrecorded(&e, f.spec.action);
                    settle(state, &grant, idem_key.as_deref(), &hash, None).await;
                    fail(state, &f, &caller, unrecorded()).await
                }
            }
        }
        tx => {
            // Not a success (or a handler that never opened its transaction): the handler's
            // work rolls back; the evidence is written apart. The rollback waits until what the
            // handler read is settled (SQLite commits writes in groups, and a refusal such as
            // "email taken" may rest on another request's write in the same group): if that
            // group failed, the answer becomes the store's error.
            let response = match tx {
                Some(tx) => match tx.rollback().await {
                    Ok(()) => response,
                    Err(e) => ApiError::from(e).into_response(),
                },
                None => response,
            };
            let status = response.status();
            let retryable = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
            let response = if idem_key.is_some() && !retryable && !status.is_success() {
                let (rparts, rbody) = split_body(response).await;
                settle(
                    state,
                    &grant,
                    idem_key.as_deref(),
                    &hash,
                    Some(stored(&rparts, &rbody)),
                )
                .await;
                Response::from_parts(rparts, Body::from(rbody))
            } else {
                settle(state, &grant, idem_key.as_deref(), &hash, None).await;
                response
            };
            fail(state, &f, &caller, response).await
        }
    }
}

/// The `id` of the object a create returned: the event's target.
fn created_id(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_owned))
}

fn caller_of(grant: &TenantGrant) -> Caller {
    Caller {
        principal: grant.principal(),
        org: grant.org(),
        workspace: grant.workspace(),
    }
}

/// Records a failed (or replayed) request apart from its rolled-back work; returns the
/// response, or [`unrecorded`] when its event could not be written.
async fn fail(state: &AppState, f: &Facts, caller: &Caller, response: Response) -> Response {
    let event = f.event(Some(caller.workspace), Some(caller), Outcome::of(&response));
    match record_apart(state, caller.org, event).await {
        Ok(()) => response,
        Err(_) => unrecorded(),
    }
}

/// Stores the final response for an idempotency key, or releases the key (`None`).
async fn settle(
    state: &AppState,
    grant: &TenantGrant,
    key: Option<&str>,
    request_hash: &str,
    response: Option<StoredResponse>,
) {
    if let Some(key) = key
        && let Err(e) = state
            .store()
            .idempotency_settle(
                grant,
                key,
                request_hash,
                response.as_ref(),
                state.clock().now(),
            )
            .await
    {
        tracing::error!(error = %e, "could not settle an idempotency key");
    }
}
