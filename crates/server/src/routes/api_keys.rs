//! `/v1/workspaces/{ws}/api-keys`: mint (the secret is shown once), list, revoke.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rampart_core::{ApiKeyId, ErrorCode, Role};
use rampart_crypto::NewApiKey;
use rampart_store::api_keys;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Ctx, JsonBody, PathId};
use crate::http::mutation::ShownOnce;

/// The body of `POST …/api-keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
    role: Role,
}

/// `POST …/api-keys`
pub async fn create(mut ctx: Ctx, JsonBody(body): JsonBody<CreateBody>) -> ApiResult<Response> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid("name", "must be 1 to 100 characters"));
    }
    // A caller may mint a key only with permissions it holds itself.
    if !ctx.grant().role().covers(body.role) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "a `{}` cannot mint a `{}` key: it would hold permissions you lack",
                ctx.grant().role(),
                body.role
            ),
        ));
    }
    let minted = NewApiKey::generate(ctx.grant().workspace()).map_err(|e| {
        tracing::error!(error = %e, "key generation failed");
        ApiError::internal()
    })?;
    let now = ctx.now();
    // The minter is kept so the key can die with the minter's membership.
    let minter = ctx.grant().principal().actor.label();
    let record = api_keys::create_by(
        ctx.tx(),
        name,
        body.role,
        &minted.hash,
        &minted.display_prefix,
        Some(&minter),
        now,
    )
    .await?;
    let body = json!({
        "id": record.id,
        "key": minted.token.expose(),
        "prefix": record.prefix,
        "name": record.name,
        "role": record.role,
        "created_at": record.created_at,
        "last_used_at": null,
    });
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    // The key is shown here once: an idempotent replay gets this answer without it.
    response.extensions_mut().insert(ShownOnce(&["key"]));
    Ok(response)
}

/// `GET …/api-keys`
pub async fn list(mut ctx: Ctx) -> ApiResult<Json<Value>> {
    let keys = api_keys::list(ctx.tx()).await?;
    Ok(Json(json!({"data": keys, "next_cursor": null})))
}

/// `DELETE …/api-keys/{id}`: takes effect at once on this node, within the cache TTL elsewhere.
/// Held to the minting rule: a caller may revoke only a key whose role holds no permission the
/// caller lacks (an admin may not take away the owner's key).
pub async fn revoke(mut ctx: Ctx, PathId(id): PathId<ApiKeyId>) -> ApiResult<StatusCode> {
    let key = api_keys::get(ctx.tx(), id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let holder = ctx.grant().role();
    if !holder.covers(key.role) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "a `{holder}` cannot revoke a `{}` key: it holds permissions you lack",
                key.role
            ),
        ));
    }
    let hash = api_keys::hash_of(ctx.tx(), id).await?;
    let now = ctx.now();
    if !api_keys::revoke(ctx.tx(), id, now).await? {
        return Err(ApiError::not_found());
    }
    if let Some(hash) = hash {
        ctx.state().keys().revoke(hash);
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegation_never_escalates() {
        assert!(Role::Owner.covers(Role::Owner));
        assert!(Role::Admin.covers(Role::Viewer));
        assert!(
            !Role::Admin.covers(Role::Owner),
            "admin lacks billing:manage"
        );
        assert!(Role::Admin.covers(Role::Admin));
    }
}
