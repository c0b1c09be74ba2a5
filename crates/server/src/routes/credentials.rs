//! `/v1/workspaces/{ws}/credentials/{provider}`: write-only provider secrets. `PUT` seals the
//! secret with the organization's data key (bound to its row); `GET` answers whether one is
//! set and its last four characters, never the secret; `DELETE` removes it.

use axum::Json;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::StatusCode;
use axum::http::request::Parts;
use rampart_core::{CredentialId, OrgId, Secret};
use rampart_store::credentials::{
    self, COLUMN, CredentialInfo, PROVIDERS, StoredCredential, TABLE,
};
use rampart_store::{KeyScope, Vault, VaultError};
use serde::Deserialize;

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Ctx, JsonBody};

/// Longest accepted secret, in bytes.
const MAX_SECRET: usize = 8 * 1024;
/// Shortest accepted secret, in characters: below it, four characters would give most away.
const MIN_SECRET: usize = 8;

/// The `{provider}` path segment, one of [`PROVIDERS`]; another name is a 404.
#[derive(Debug, Clone, Copy)]
pub struct Provider(pub &'static str);

impl<S: Send + Sync> FromRequestParts<S> for Provider {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // A segment that does not decode to UTF-8 names no provider either.
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found())?;
        let raw = params
            .iter()
            .find(|(k, _)| *k == "provider")
            .map(|(_, v)| v)
            .ok_or_else(ApiError::internal)?;
        PROVIDERS
            .iter()
            .find(|p| **p == raw)
            .map(|p| Provider(p))
            .ok_or_else(ApiError::not_found)
    }
}

/// The body of `PUT …/credentials/{provider}`. No `Debug`: it holds the secret.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutBody {
    secret: String,
}

impl std::fmt::Debug for PutBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PutBody { secret: [redacted] }")
    }
}

fn vault_failed(e: VaultError) -> ApiError {
    tracing::error!(error = %e, "vault failure");
    ApiError::internal()
}

/// `PUT …/credentials/{provider}`: sets or replaces the secret.
pub async fn put(
    mut ctx: Ctx,
    Provider(provider): Provider,
    JsonBody(body): JsonBody<PutBody>,
) -> ApiResult<Json<CredentialInfo>> {
    let secret = Secret::new(body.secret);
    let chars = secret.expose().chars().count();
    if chars < MIN_SECRET || secret.expose().len() > MAX_SECRET {
        return Err(ApiError::invalid("secret", "must be 8 characters to 8 KiB"));
    }
    let last4: String = secret.expose().chars().skip(chars - 4).collect();
    let id = credentials::id_for(ctx.tx(), provider)
        .await?
        .unwrap_or_else(CredentialId::generate);
    let sealed = ctx
        .state()
        .vault()
        .seal(
            KeyScope::Org(ctx.grant().org()),
            TABLE,
            COLUMN,
            &id.to_string(),
            secret.expose().as_bytes(),
        )
        .await
        .map_err(vault_failed)?;
    let now = ctx.now();
    let info = credentials::put(ctx.tx(), id, provider, &sealed, &last4, now).await?;
    Ok(Json(info))
}

/// `GET …/credentials/{provider}`: whether it is set, never the secret.
pub async fn get(mut ctx: Ctx, Provider(provider): Provider) -> ApiResult<Json<CredentialInfo>> {
    credentials::get(ctx.tx(), provider)
        .await?
        .map(|c| Json(c.info))
        .ok_or_else(ApiError::not_found)
}

/// `DELETE …/credentials/{provider}`
pub async fn delete(mut ctx: Ctx, Provider(provider): Provider) -> ApiResult<StatusCode> {
    if credentials::delete(ctx.tx(), provider).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// Opens a stored credential for the call that uses it (a provider client); the plaintext
/// lives only in the returned zeroizing wrapper.
pub async fn reveal(
    vault: &Vault,
    org: OrgId,
    stored: &StoredCredential,
) -> Result<Secret<Vec<u8>>, VaultError> {
    vault
        .open(
            KeyScope::Org(org),
            TABLE,
            COLUMN,
            &stored.info.id.to_string(),
            &stored.secret,
        )
        .await
}
