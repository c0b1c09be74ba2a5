//! The tenant guard: wraps every manifest route and applies that route's entry before the
//! handler runs. For a `Tenant` route it authenticates the caller, resolves their membership
//! of the `{ws}` workspace, checks the role against the permission table and the plan against
//! the route's minimum, then hands the handler a transaction slot. After the handler, it
//! commits the transaction only if the response is a success; anything else, including a
//! request cut off mid-way (the future is dropped), rolls back. Mutating routes go through
//! [`super::mutation`] as well: idempotency and the audit record.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Extension;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rampart_core::{
    AccessDenied, Actor, AuthMethod, ErrorCode, Membership, OrgId, Principal, TenantGrant,
    WorkspaceId,
};
use rampart_crypto::ApiKeyToken;
use rampart_store::TenantTx;

use super::client::ClientInfo;
use super::error::ApiError;
use super::limits::{self, LimitHeaders};
use super::mutation;
use crate::manifest::{RouteSpec, Scope};
use crate::state::AppState;

/// Where the handler's transaction waits for the guard to commit or roll it back.
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

/// Resolves the bearer key to a principal and its membership (of the key's own workspace).
#[tracing::instrument(skip_all)]
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(Principal, Membership), Response> {
    let Some(presented) = bearer(headers) else {
        return Err(unauthenticated(
            "send an API key as `Authorization: Bearer rk_live_…`",
        ));
    };
    let token = ApiKeyToken::parse(presented).map_err(|_| unauthenticated("invalid API key"))?;
    let hash = token.hash();
    let key = match state.keys().get(&hash) {
        Some(k) => k,
        None => match state.store().authenticate_api_key(&token).await {
            Ok(Some(k)) => {
                state.keys().insert(hash, k);
                k
            }
            Ok(None) => return Err(unauthenticated("invalid API key")),
            Err(e) => return Err(ApiError::from(e).into_response()),
        },
    };
    if state.keys().due_for_touch(&hash) {
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
    Ok((principal, key.membership))
}

/// The `{ws}` and `{id}` segments of the matched path, owned.
#[derive(Debug, Clone, Default)]
pub(crate) struct PathIds {
    pub ws: Option<String>,
    pub id: Option<String>,
}

impl PathIds {
    fn of(params: &RawPathParams) -> Self {
        let get = |name: &str| {
            params
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_owned())
        };
        Self {
            ws: get("ws"),
            id: get("id"),
        }
    }
}

fn path_workspace(ids: &PathIds) -> Result<WorkspaceId, ApiError> {
    let raw = ids.ws.as_deref().ok_or_else(ApiError::internal)?;
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
    let workspace = path_workspace(ids).map_err(|e| Refusal {
        response: e.into_response(),
        workspace: None,
        caller: None,
    })?;
    let mut limit_headers = LimitHeaders::default();
    limits::per_ip(
        state.limiter(),
        state.limits(),
        spec.bucket,
        ip,
        &mut limit_headers,
    )
    .await
    .map_err(|response| Refusal {
        response,
        workspace: Some(workspace),
        caller: None,
    })?;
    let (principal, membership) =
        authenticate(state, headers)
            .await
            .map_err(|response| Refusal {
                response,
                workspace: Some(workspace),
                caller: None,
            })?;
    let caller = Caller {
        principal,
        org: membership.org,
        workspace: membership.workspace,
    };
    if let Actor::ApiKey(key) = principal.actor {
        let now = state.clock().now();
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
        .map_err(|response| Refusal {
            response,
            workspace: Some(workspace),
            caller: Some(caller),
        })?;
    }
    let refuse = |e: ApiError| {
        let mut response = e.into_response();
        limit_headers.apply(&mut response);
        Refusal {
            response,
            workspace: Some(workspace),
            caller: Some(caller),
        }
    };
    let grant = TenantGrant::authorize(principal, workspace, Some(membership), spec.permission)
        .map_err(|denied| match denied {
            AccessDenied::NotAMember => refuse(ApiError::not_found()),
            AccessDenied::Forbidden { .. } => {
                refuse(ApiError::new(ErrorCode::Forbidden, denied.to_string()))
            }
        })?;
    if membership.plan < spec.min_plan {
        return Err(refuse(ApiError::new(
            ErrorCode::PlanUpgradeRequired,
            format!(
                "this route needs the {} plan or higher (the organization is on {})",
                spec.min_plan, membership.plan
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

/// The guard itself; see the module documentation.
pub async fn guard(
    State(state): State<AppState>,
    Extension(spec): Extension<&'static RouteSpec>,
    params: RawPathParams,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let ids = PathIds::of(&params);
    let mut response = match spec.scope {
        Scope::Public => {
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
        Scope::Tenant if spec.mutates && state.mutation_guard() => {
            // Run to completion even if the client goes away: the change commits or rolls
            // back whole, and either way its audit event is written.
            let task = tokio::spawn(mutation::run(state.clone(), spec, ids, req, next, started));
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
            Err(refusal) => refusal.response,
            Ok((grant, limit_headers)) => {
                let slot = TxSlot::default();
                req.extensions_mut().insert(grant);
                req.extensions_mut().insert(slot.clone());
                let response = next.run(req).await;
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
