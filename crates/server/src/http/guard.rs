//! The tenant guard: wraps every manifest route and applies that route's entry before the
//! handler runs. For a `Tenant` route it authenticates the caller, resolves their membership
//! of the `{ws}` workspace, checks the role against the permission table and the plan against
//! the route's minimum, then hands the handler a transaction slot. After the handler, it
//! commits the transaction only if the response is a success; anything else, including a
//! request cut off mid-way (the future is dropped), rolls back.

use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rampart_core::{
    AccessDenied, Actor, AuthMethod, ErrorCode, Membership, Principal, TenantGrant, WorkspaceId,
};
use rampart_crypto::ApiKeyToken;
use rampart_store::TenantTx;

use super::error::ApiError;
use crate::manifest::{RouteSpec, Scope};
use crate::state::AppState;

/// Where the handler's transaction waits for the guard to commit or roll it back.
#[derive(Clone, Default)]
pub struct TxSlot(Arc<Mutex<Option<TenantTx>>>);

impl TxSlot {
    pub(crate) fn put(&self, tx: TenantTx) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    fn take(&self) -> Option<TenantTx> {
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
    Ok((
        Principal {
            actor: Actor::ApiKey(key.id),
            method: AuthMethod::ApiKey,
        },
        key.membership,
    ))
}

fn path_workspace(params: &RawPathParams) -> Result<WorkspaceId, ApiError> {
    let raw = params
        .iter()
        .find(|(name, _)| *name == "ws")
        .map(|(_, value)| value)
        .ok_or_else(ApiError::internal)?;
    raw.parse::<WorkspaceId>()
        .map_err(|e| ApiError::bad_request(format!("invalid workspace id in path: {e}")))
}

/// The guard itself; see the module documentation.
pub async fn guard(
    State(state): State<AppState>,
    Extension(spec): Extension<&'static RouteSpec>,
    params: RawPathParams,
    mut req: Request,
    next: Next,
) -> Response {
    let mut response = match spec.scope {
        Scope::Public => next.run(req).await,
        Scope::Platform => ApiError::not_found().into_response(),
        Scope::Tenant => match admit(&state, spec, &params, req.headers()).await {
            Err(refusal) => refusal,
            Ok(grant) => {
                let slot = TxSlot::default();
                req.extensions_mut().insert(grant);
                req.extensions_mut().insert(slot.clone());
                let response = next.run(req).await;
                finish(slot.take(), response).await
            }
        },
    };
    response.extensions_mut().insert(spec);
    response
}

async fn admit(
    state: &AppState,
    spec: &'static RouteSpec,
    params: &RawPathParams,
    headers: &HeaderMap,
) -> Result<TenantGrant, Response> {
    let workspace = path_workspace(params).map_err(IntoResponse::into_response)?;
    let (principal, membership) = authenticate(state, headers).await?;
    let grant = TenantGrant::authorize(principal, workspace, Some(membership), spec.permission)
        .map_err(|denied| {
            match denied {
                AccessDenied::NotAMember => ApiError::not_found(),
                AccessDenied::Forbidden { .. } => {
                    ApiError::new(ErrorCode::Forbidden, denied.to_string())
                }
            }
            .into_response()
        })?;
    if membership.plan < spec.min_plan {
        return Err(ApiError::new(
            ErrorCode::PlanUpgradeRequired,
            format!("this route needs the {} plan or higher", spec.min_plan),
        )
        .into_response());
    }
    Ok(grant)
}

async fn finish(tx: Option<TenantTx>, response: Response) -> Response {
    match tx {
        Some(tx) if response.status().is_success() => match tx.commit().await {
            Ok(()) => response,
            Err(e) => ApiError::from(e).into_response(),
        },
        // Not a success: dropping the transaction rolls it back.
        _ => response,
    }
}
