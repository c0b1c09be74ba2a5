//! The tenant guard: wraps every manifest route and applies that route's entry before the
//! handler runs. For a `Tenant` route it authenticates the caller, resolves their membership
//! of the `{ws}` workspace, checks the role against the permission table and the plan against
//! the route's minimum, then hands the handler a transaction slot. After the handler, it
//! commits the transaction only if the response is a success; anything else, including a
//! request cut off mid-way (the future is dropped), rolls back. Mutating routes go through
//! [`super::mutation`] as well: idempotency and the audit record.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rampart_core::{
    AccessDenied, Actor, AuthMethod, ErrorCode, Membership, OrgId, Principal, TenantGrant,
    WorkspaceId,
};
use rampart_crypto::{ApiKeyHash, ApiKeyToken};
use rampart_store::TenantTx;
use rampart_store::api_keys::AuthenticatedKey;
use rampart_store::identity::SessionStage;

use axum::body::Body;
use rampart_audit::redact_args;
use tracing::Instrument;

use super::body;
use super::client::ClientInfo;
use super::error::ApiError;
use super::extract::BodyLimit;
use super::limits::{self, LimitHeaders};
use super::mutation;
use crate::auth::events;
use crate::auth::session::{self, SessionUser};
use crate::auth::token;
use crate::manifest::{RouteSpec, Scope};
use crate::state::AppState;

/// What the guard hands a tenant route's handler, as one request extension: the grant, the
/// slot its transaction passes through, and the route's entry.
#[derive(Clone)]
pub(crate) struct Admission {
    pub grant: TenantGrant,
    pub slot: TxSlot,
    pub spec: &'static RouteSpec,
}

/// The guard's state for one route: the application's and that route's manifest entry.
#[derive(Clone)]
pub struct Guarded {
    /// The application state.
    pub state: AppState,
    /// The route's entry.
    pub spec: &'static RouteSpec,
}

/// Where the handler's transaction passes between the guard and the handler: the mutation guard
/// may open it first (an idempotency claim inside it), and the handler leaves it here for the
/// guard to commit or roll back.
#[derive(Clone, Default)]
pub struct TxSlot(Arc<Mutex<Option<TenantTx>>>);

impl TxSlot {
    pub(crate) fn put(&self, tx: TenantTx) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    pub(crate) fn take(&self) -> Option<TenantTx> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

fn unauthenticated(message: &'static str) -> Response {
    let mut r = ApiError::new(ErrorCode::Unauthenticated, message).into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// An authenticated caller: who, and the organization and workspace they act from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller {
    pub principal: Principal,
    pub org: OrgId,
    pub workspace: WorkspaceId,
}

/// Who authenticated, their standing in the requested workspace (if any) and the
/// organization and workspace they act from (where their refusals are recorded).
pub(crate) struct Authenticated {
    pub principal: Principal,
    pub membership: Option<Membership>,
    pub home: Option<(OrgId, WorkspaceId)>,
    /// A cookie-authenticated change without a valid CSRF token or same-origin `Origin`.
    pub csrf_failed: bool,
}

/// The request's API key, when this node has it cached: known without the database.
fn cached_key(state: &AppState, headers: &HeaderMap) -> Option<(ApiKeyHash, AuthenticatedKey)> {
    let token = ApiKeyToken::parse(bearer(headers)?).ok()?;
    let hash = token.hash();
    let key = state.keys().get(&hash)?;
    Some((hash, key))
}

/// Resolves the bearer key to a principal and its membership (of the key's own workspace).
#[tracing::instrument(skip_all)]
async fn authenticate_key(state: &AppState, presented: &str) -> Result<Authenticated, Response> {
    let token = ApiKeyToken::parse(presented).map_err(|_| unauthenticated("invalid API key"))?;
    let hash = token.hash();
    let key = match state.keys().get(&hash) {
        Some(k) => k,
        // Boxed: the lookup's future is about 9 KB, and held inline it made every request's
        // guard future that large (admission's 9.9 KB, 1.3 KB boxed), copied as each layer
        // boxes it, though a cached key never runs it. Measured 2026-12-06: a fifth fewer
        // instructions per read under callgrind, but no change in CPU per read on the machine.
        None => match Box::pin(state.store().authenticate_api_key(&token)).await {
            Ok(Some(k)) => {
                state.keys().insert(hash, k);
                k
            }
            Ok(None) => return Err(unauthenticated("invalid API key")),
            Err(e) => return Err(ApiError::from(e).into_response()),
        },
    };
    Ok(key_authenticated(state, &hash, key))
}

/// Who a valid key authenticates; records the key's use, at most once a minute per node.
fn key_authenticated(state: &AppState, hash: &ApiKeyHash, key: AuthenticatedKey) -> Authenticated {
    if state.keys().due_for_touch(hash) {
        let (store, now) = (state.store().clone(), state.clock().now());
        let (ws, id) = (key.membership.workspace, key.id);
        tokio::spawn(async move {
            if let Err(e) = store.touch_api_key(ws, id, now).await {
                tracing::debug!(error = %e, "could not record API key use");
            }
        });
    }
    let principal = Principal {
        actor: Actor::ApiKey(key.id),
        method: AuthMethod::ApiKey,
    };
    Authenticated {
        principal,
        membership: Some(key.membership),
        home: Some((key.membership.org, key.membership.workspace)),
        csrf_failed: false,
    }
}

/// Finds the request's live, fully signed-in session (CSRF is the caller's to check, so that a
/// refusal can name who was refused).
pub(crate) async fn session_user(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<SessionUser, Response> {
    let identity = state.identity().ok_or_else(|| {
        unauthenticated("sign in, or send an API key as `Authorization: Bearer rk_live_…`")
    })?;
    let token = session::presented(identity, headers).ok_or_else(|| {
        unauthenticated("sign in, or send an API key as `Authorization: Bearer rk_live_…`")
    })?;
    let now = state.clock().now();
    // Boxed for the reason `authenticate_key` gives.
    let record = match Box::pin(
        state
            .store()
            .session_by_token(&token::hash(token.expose()), now),
    )
    .await
    {
        Ok(Some(r)) => r,
        Ok(None) => return Err(unauthenticated("your session has ended; sign in again")),
        Err(e) => return Err(ApiError::from(e).into_response()),
    };
    if record.stage != SessionStage::Active {
        return Err(unauthenticated(
            "finish signing in: the second factor is still required",
        ));
    }
    if session::due_for_touch(&record, now) {
        let store = state.store().clone();
        let (sid, idle) = (
            record.id,
            session::idle_expiry(identity, now, record.absolute_expires_at),
        );
        tokio::spawn(async move {
            if let Err(e) = store.touch_session(sid, now, idle).await {
                tracing::debug!(error = %e, "could not record session use");
            }
        });
    }
    Ok(SessionUser {
        user: record.user,
        session: record.id,
        stage: record.stage,
        record,
        token,
    })
}

fn csrf_refusal() -> ApiError {
    ApiError::new(
        ErrorCode::Forbidden,
        "send the session's CSRF token in `X-CSRF-Token` (from sign-in or `GET /v1/auth/me`)",
    )
}

/// Authenticates by API key (an `Authorization` header) or else by session cookie, and
/// resolves the caller's membership of `workspace`.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    workspace: Option<WorkspaceId>,
    mutates: bool,
) -> Result<Authenticated, Response> {
    if headers.contains_key(header::AUTHORIZATION) {
        let Some(presented) = bearer(headers) else {
            return Err(unauthenticated(
                "send an API key as `Authorization: Bearer rk_live_…`",
            ));
        };
        return authenticate_key(state, presented).await;
    }
    let signed_in = session_user(state, headers).await?;
    if signed_in.record.two_factor_required {
        return Err(session::enrolment_required().into_response());
    }
    let csrf_failed = mutates
        && state
            .identity()
            .is_none_or(|identity| !session::csrf_ok(identity, headers, &signed_in.record));
    let user = signed_in.user;
    // As this session holds it: an admin may have ended the session's access here.
    let membership = match workspace {
        Some(ws) => Box::pin(state.store().session_membership(
            user,
            ws,
            signed_in.record.created_at,
        ))
        .await
        .map_err(|e| ApiError::from(e).into_response())?,
        None => None,
    };
    let home = match membership {
        Some(m) => Some((m.org, m.workspace)),
        None => Box::pin(state.store().user_orgs(user))
            .await
            .map_err(|e| ApiError::from(e).into_response())?
            .first()
            .copied(),
    };
    Ok(Authenticated {
        principal: Principal {
            actor: Actor::User(user),
            method: AuthMethod::Session,
        },
        membership,
        home,
        csrf_failed,
    })
}

/// The `{ws}` and `{id}` segments of the matched path, owned.
#[derive(Debug, Clone, Default)]
pub(crate) struct PathIds {
    pub ws: Option<String>,
    pub id: Option<String>,
    /// A parameter segment did not decode to UTF-8 (`%FF`).
    pub undecodable: bool,
}

impl PathIds {
    /// The parameters of `path` matched by the route `template`, each percent-decoded on its
    /// own. A segment that does not decode to UTF-8 is not an error here (axum's extractor
    /// refuses the whole request before the guard runs): the guard still reads the others and
    /// finds out who sent the request, so that its refusal is recorded like any other.
    fn of(template: &str, path: &str) -> Self {
        let mut ids = Self::default();
        // The router matched `path` to `template`, segment for segment ('/' inside a segment
        // arrives percent-encoded).
        for (pattern, raw) in template.split('/').zip(path.split('/')) {
            let Some(name) = pattern.strip_prefix('{').and_then(|p| p.strip_suffix('}')) else {
                continue;
            };
            let decoded = percent_encoding::percent_decode_str(raw).decode_utf8();
            let Ok(value) = decoded else {
                ids.undecodable = true;
                continue;
            };
            match name {
                "ws" => ids.ws = Some(value.into_owned()),
                "id" => ids.id = Some(value.into_owned()),
                _ => {}
            }
        }
        ids
    }

    /// The refusal of a path none of whose segments could be read.
    fn undecodable_error() -> ApiError {
        ApiError::bad_request("a path segment is not valid percent-encoded UTF-8")
    }
}

fn path_workspace(ids: &PathIds) -> Result<WorkspaceId, ApiError> {
    let Some(raw) = ids.ws.as_deref() else {
        return Err(if ids.undecodable {
            PathIds::undecodable_error()
        } else {
            ApiError::internal()
        });
    };
    raw.parse::<WorkspaceId>()
        .map_err(|e| ApiError::bad_request(format!("invalid workspace id in path: {e}")))
}

/// Why a request was not admitted, and what is known of who sent it.
pub(crate) struct Refusal {
    pub response: Response,
    /// The path's workspace, when it parsed.
    pub workspace: Option<WorkspaceId>,
    /// The caller, when they authenticated.
    pub caller: Option<Caller>,
}

/// Authentication, authorization and the plan gate, in that order.
pub(crate) async fn admit(
    state: &AppState,
    spec: &'static RouteSpec,
    ids: &PathIds,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
) -> Result<(TenantGrant, LimitHeaders), Refusal> {
    let workspace = match path_workspace(ids) {
        Ok(ws) => ws,
        Err(e) => {
            // No workspace to act in: a change is still recorded, in the caller's own ledger
            // when they can be told (as an attempt on another organization is), after the
            // per-IP limit has had its say.
            let mut limit_headers = LimitHeaders::default();
            let caller = if !spec.mutates {
                None
            } else if let Err(response) = limits::per_ip(
                state.limiter(),
                state.limits(),
                spec.bucket,
                ip,
                &mut limit_headers,
            )
            .await
            {
                return Err(Refusal {
                    response,
                    workspace: None,
                    caller: None,
                });
            } else {
                authenticate(state, headers, None, false)
                    .await
                    .ok()
                    .and_then(|a| {
                        a.home.map(|(org, ws)| Caller {
                            principal: a.principal,
                            org,
                            workspace: ws,
                        })
                    })
            };
            return Err(Refusal {
                response: e.into_response(),
                workspace: None,
                caller,
            });
        }
    };
    let refused = |response: Response, caller: Option<Caller>| Refusal {
        response,
        workspace: Some(workspace),
        caller,
    };
    let mut limit_headers = LimitHeaders::default();
    let authenticating = Instant::now();
    // With the limiter in Redis every limiter call is a round trip. A key this node has cached
    // is known without the database, so its per-IP check travels with its per-key check and
    // quota in one call; any other request meets the per-IP limit first, before it can reach
    // the database.
    let known = if state.limiter().is_shared() {
        cached_key(state, headers).and_then(|(hash, key)| {
            limits::fusable(state.limits(), spec.bucket, key.membership.plan, ip)
                .map(|fused| (hash, key, fused))
        })
    } else {
        None
    };
    let (authenticated, fused, auth_started) = match known {
        Some((hash, key, fused)) => (
            key_authenticated(state, &hash, key),
            Some((key, fused)),
            authenticating,
        ),
        None => {
            limits::per_ip(
                state.limiter(),
                state.limits(),
                spec.bucket,
                ip,
                &mut limit_headers,
            )
            .await
            .map_err(|response| refused(response, None))?;
            let started = Instant::now();
            let authenticated = authenticate(state, headers, Some(workspace), spec.mutates)
                .await
                .map_err(|response| refused(response, None))?;
            (authenticated, None, started)
        }
    };
    if state.edge().server_timing {
        limit_headers.server_timing(&format!(
            "auth;dur={:.3}",
            auth_started.elapsed().as_secs_f64() * 1000.0
        ));
    }
    let principal = authenticated.principal;
    let caller = authenticated.home.map(|(org, ws)| Caller {
        principal,
        org,
        workspace: ws,
    });
    let now = state.clock().now();
    if let Some((key, fused)) = fused {
        limits::per_ip_and_key(
            state.limiter(),
            fused,
            spec.bucket,
            key.id,
            key.membership.plan,
            now,
            &mut limit_headers,
        )
        .await
        .map_err(|at| match at {
            // Refused where the separate per-IP check would have refused it, before knowing
            // who sent it.
            limits::Refused::PerIp(response) => refused(response, None),
            limits::Refused::PerKey(response) => refused(response, caller),
        })?;
    } else if let (Actor::ApiKey(key), Some(membership)) =
        (principal.actor, authenticated.membership)
    {
        limits::per_key(
            state.limiter(),
            state.limits(),
            spec.bucket,
            key,
            membership.plan,
            now,
            &mut limit_headers,
        )
        .await
        .map_err(|response| refused(response, caller))?;
    }
    let refuse = |e: ApiError| {
        let mut response = e.into_response();
        limit_headers.clone().apply(&mut response);
        refused(response, caller)
    };
    if authenticated.csrf_failed {
        return Err(refuse(csrf_refusal()));
    }
    let membership = authenticated.membership;
    let grant = TenantGrant::authorize(principal, workspace, membership, spec.permission).map_err(
        |denied| match denied {
            AccessDenied::NotAMember => refuse(ApiError::not_found()),
            AccessDenied::Forbidden { .. } => {
                refuse(ApiError::new(ErrorCode::Forbidden, denied.to_string()))
            }
        },
    )?;
    let plan = membership.map_or(spec.min_plan, |m| m.plan);
    if plan < spec.min_plan {
        return Err(refuse(ApiError::new(
            ErrorCode::PlanUpgradeRequired,
            format!(
                "this route needs the {} plan or higher (the organization is on {})",
                spec.min_plan, plan
            ),
        )));
    }
    Ok((grant, limit_headers))
}

/// The client's address as seen on the connection.
pub(crate) fn client_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    match extensions.get::<ClientInfo>() {
        Some(info) => info.ip,
        None => extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip()),
    }
}

/// A signed-in person's route: the session, CSRF for a change, the body within its limit, then
/// the handler. Every change's outcome is recorded in the person's organizations' ledgers:
/// by the handler where it has more to say (its own events), otherwise here, so that a refusal
/// (CSRF, a body over the limit, invalid input) is on the record too.
async fn user_route(
    state: &AppState,
    spec: &'static RouteSpec,
    undecodable_path: bool,
    req: Request,
    next: Next,
) -> Response {
    let signed_in = match session_user(state, req.headers()).await {
        Ok(user) => user,
        Err(refusal) => return refusal,
    };
    // A session that owes its organization a second factor reaches only what enrolling needs.
    if signed_in.record.two_factor_required && !session::reachable_before_enrolment(spec) {
        return session::enrolment_required().into_response();
    }
    if !spec.mutates {
        if undecodable_path {
            return PathIds::undecodable_error().into_response();
        }
        let mut req = match body::buffered(req, spec.body_limit()).await {
            Ok(req) => req,
            Err(e) => return e.into_response(),
        };
        req.extensions_mut().insert(signed_in);
        return next.run(req).await;
    }
    let user = signed_in.user;
    let recorded = events::Recorded::default();
    let (mut parts, body) = req.into_parts();
    let facts = events::RequestFacts::of(&parts);
    let csrf_ok = state
        .identity()
        .is_some_and(|identity| session::csrf_ok(identity, &parts.headers, &signed_in.record));
    // The whole body is read here, within the limit, so that a route whose handler ignores
    // its body still refuses an oversized one.
    let admitted = if !csrf_ok {
        Err(csrf_refusal())
    } else if undecodable_path {
        Err(PathIds::undecodable_error())
    } else {
        match body::limit(Request::from_parts(parts.clone(), body), spec.body_limit()) {
            Ok(limited) => body::read(limited.into_body(), spec.body_limit()).await,
            Err(e) => Err(e),
        }
    };
    let (response, args) = match admitted {
        Ok(bytes) => {
            let args = redact_args(&bytes);
            parts.extensions.insert(signed_in);
            parts.extensions.insert(recorded.clone());
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            (response, args)
        }
        Err(e) => (e.into_response(), redact_args(b"")),
    };
    if response.status().is_success() || recorded.is_set() {
        return response;
    }
    let outcome = mutation::Outcome::of(&response);
    let event = facts.event(
        Some(user),
        spec.action,
        outcome.status,
        outcome.error_code,
        &serde_json::Value::Null,
    );
    let event = rampart_store::audit::NewEvent { args, ..event };
    match events::record_for(state, user, event).await {
        Ok(()) => response,
        Err(()) => mutation::unrecorded(),
    }
}

/// Logs a read refused for who asked (401, 403, 404), with the caller when known, so that an
/// investigation can follow someone probing for other organizations' objects. Reads change
/// nothing, so they are logged, not recorded in the ledger, which would grow with every probe.
fn failed_read(spec: &RouteSpec, caller: Option<Principal>, response: &Response) {
    let status = response.status().as_u16();
    if matches!(status, 401 | 403 | 404) {
        let actor = caller.map(|p| p.actor.label());
        tracing::info!(
            actor = actor.as_deref().unwrap_or("anonymous"),
            auth_method = caller.map(|p| p.method.as_str()),
            action = spec.action,
            status,
            "read refused"
        );
    }
}

/// The guard itself; see the module documentation.
pub async fn guard(
    State(Guarded { state, spec }): State<Guarded>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let ids = PathIds::of(spec.path, req.uri().path());
    let mut req = req;
    req.extensions_mut().insert(BodyLimit(spec.body_limit()));
    let mut response = match spec.scope {
        Scope::Public => 'public: {
            if ids.undecodable {
                break 'public PathIds::undecodable_error().into_response();
            }
            let req = match body::buffered(req, spec.body_limit()).await {
                Ok(req) => req,
                Err(e) => break 'public e.into_response(),
            };
            let mut limit_headers = LimitHeaders::default();
            let ip = client_ip(req.extensions());
            match limits::per_ip(
                state.limiter(),
                state.limits(),
                spec.bucket,
                ip,
                &mut limit_headers,
            )
            .await
            {
                Ok(()) => {
                    let mut response = next.run(req).await;
                    limit_headers.apply(&mut response);
                    response
                }
                Err(refusal) => refusal,
            }
        }
        Scope::Platform => ApiError::not_found().into_response(),
        Scope::User => {
            let mut limit_headers = LimitHeaders::default();
            let ip = client_ip(req.extensions());
            let mut response = match limits::per_ip(
                state.limiter(),
                state.limits(),
                spec.bucket,
                ip,
                &mut limit_headers,
            )
            .await
            {
                Ok(()) => user_route(&state, spec, ids.undecodable, req, next).await,
                Err(refusal) => refusal,
            };
            limit_headers.apply(&mut response);
            response
        }
        Scope::Tenant if spec.mutates && state.mutation_guard() => {
            // Run to completion even if the client goes away: the change commits or rolls
            // back whole, and either way its audit event is written. In the request's span, so
            // that what it logs carries the request id.
            let task = tokio::spawn(
                mutation::run(state.clone(), spec, ids, req, next, started)
                    .instrument(tracing::Span::current()),
            );
            match task.await {
                Ok(response) => response,
                Err(_) => {
                    tracing::error!(action = spec.action, "a mutating request's task panicked");
                    ApiError::internal().into_response()
                }
            }
        }
        Scope::Tenant => match admit(
            &state,
            spec,
            &ids,
            req.headers(),
            client_ip(req.extensions()),
        )
        .await
        {
            Err(refusal) => {
                failed_read(spec, refusal.caller.map(|c| c.principal), &refusal.response);
                refusal.response
            }
            Ok((grant, limit_headers)) => 'admitted: {
                let mut req = match body::buffered(req, spec.body_limit()).await {
                    Ok(req) => req,
                    Err(e) => break 'admitted e.into_response(),
                };
                let slot = TxSlot::default();
                req.extensions_mut().insert(Admission {
                    grant,
                    slot: slot.clone(),
                    spec,
                });
                let response = next.run(req).await;
                failed_read(spec, Some(grant.principal()), &response);
                let mut response = match slot.take() {
                    Some(tx) if response.status().is_success() => match tx.commit().await {
                        Ok(()) => response,
                        Err(e) => ApiError::from(e).into_response(),
                    },
                    // Not a success: dropping the transaction rolls it back.
                    _ => response,
                };
                limit_headers.apply(&mut response);
                response
            }
        },
    };
    response.extensions_mut().insert(spec);
    response
}
