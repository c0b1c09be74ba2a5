//! `/v1/workspaces/{ws}/members` and `…/invitations`: who is in a workspace and with which
//! role. Invitations are mailed as single-use links (stored hashed); every change is audited
//! by the mutation guard. A caller may hand out, change or take away only roles whose
//! permissions it holds itself, and a workspace never loses its last owner.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Duration;
use rampart_core::{Email, ErrorCode, InvitationId, MembershipId, Role};
use rampart_store::identity::{NewInvitation, members};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::mail::Mail;
use crate::auth::token;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Ctx, JsonBody, PathId};

fn refuse(holder: Role, role: Role) -> ApiError {
    ApiError::new(
        ErrorCode::Forbidden,
        format!(
            "a `{holder}` cannot grant, change or remove the `{role}` role: it holds permissions you lack"
        ),
    )
}

/// `GET …/members`
pub async fn list(mut ctx: Ctx) -> ApiResult<Json<Value>> {
    let data = members::list(ctx.tx()).await?;
    Ok(Json(json!({"data": data, "next_cursor": null})))
}

/// `POST …/invitations` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    email: String,
    role: Role,
}

/// `POST …/invitations`: mails a link to join with `role`.
pub async fn invite(mut ctx: Ctx, JsonBody(body): JsonBody<InviteBody>) -> ApiResult<Response> {
    let email = Email::parse(&body.email).map_err(|e| ApiError::invalid("email", e.to_string()))?;
    let holder = ctx.grant().role();
    if !holder.covers(body.role) {
        return Err(refuse(holder, body.role));
    }
    let identity = ctx.state().identity().cloned().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "mail is not configured on this server",
        )
    })?;
    let now = ctx.now();
    // The token names its workspace (as an API key does), so accepting it can run bound to
    // that workspace under row-level security; the hash covers the whole token.
    let minted = token::mint()?;
    let link_token = format!("{}_{}", ctx.grant().workspace(), minted.token.expose());
    let token_hash = token::hash(&link_token);
    let invited_by = ctx.grant().principal().actor.label();
    let expires_at = now + Duration::hours(identity.settings().invitation_hours);
    let new = NewInvitation {
        email: &email,
        role: body.role,
        token_hash: &token_hash,
        invited_by,
        expires_at,
    };
    let invitation = members::invite(ctx.tx(), &new, now).await?;
    let mail = Mail {
        to: email.as_str().to_owned(),
        subject: "You are invited to a Rampart workspace".to_owned(),
        body: format!(
            "You were invited to join a workspace as `{}`. Accept within {} hours:\n\n{}/auth/invitation?token={}\n",
            body.role,
            identity.settings().invitation_hours,
            identity.public_url(),
            link_token
        ),
    };
    // Sent before commit: if the mail cannot go, the invitation is not stored either.
    identity.mailer().send(&mail).await.map_err(|e| {
        tracing::error!(error = %e, "could not send an invitation");
        ApiError::new(
            ErrorCode::Unavailable,
            "the invitation mail could not be sent; retry later",
        )
    })?;
    Ok((StatusCode::CREATED, Json(json!(invitation))).into_response())
}

/// `GET …/invitations`: open invitations.
pub async fn invitations(mut ctx: Ctx) -> ApiResult<Json<Value>> {
    let now = ctx.now();
    let data = members::invitations(ctx.tx(), now).await?;
    Ok(Json(json!({"data": data, "next_cursor": null})))
}

/// `DELETE …/invitations/{id}`: revokes an open invitation, so its link stops working; an
/// accepted, revoked or expired one is 404. Held to the delegation rule on the invited role.
pub async fn revoke_invitation(
    mut ctx: Ctx,
    PathId(id): PathId<InvitationId>,
) -> ApiResult<StatusCode> {
    let now = ctx.now();
    let invitation = members::open_invitation(ctx.tx(), id, now)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let holder = ctx.grant().role();
    if !holder.covers(invitation.role) {
        return Err(refuse(holder, invitation.role));
    }
    if !members::revoke_invitation(ctx.tx(), id, now).await? {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `PATCH …/members/{id}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    role: Role,
}

/// `PATCH …/members/{id}`: changes the role.
pub async fn update(
    mut ctx: Ctx,
    PathId(id): PathId<MembershipId>,
    JsonBody(body): JsonBody<RoleBody>,
) -> ApiResult<Json<Value>> {
    let holder = ctx.grant().role();
    let current = members::get(ctx.tx(), id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if !holder.covers(current.role) {
        return Err(refuse(holder, current.role));
    }
    if !holder.covers(body.role) {
        return Err(refuse(holder, body.role));
    }
    let updated = members::set_role(ctx.tx(), id, body.role).await?;
    Ok(Json(json!(updated)))
}

/// `DELETE …/members/{id}`: removes the member and ends their sessions' access here (the
/// membership is gone, so every later request is refused). The API keys they minted here are
/// revoked with it, and so are the keys those keys minted: a key acts for whoever made it, and
/// must not outlive their access. Takes effect at once on this node, within the key-cache TTL
/// on others (as a revocation does).
pub async fn remove(mut ctx: Ctx, PathId(id): PathId<MembershipId>) -> ApiResult<StatusCode> {
    let holder = ctx.grant().role();
    let current = members::get(ctx.tx(), id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if !holder.covers(current.role) {
        return Err(refuse(holder, current.role));
    }
    members::remove(ctx.tx(), id).await?;
    let now = ctx.now();
    let revoked =
        rampart_store::api_keys::revoke_minted_by(ctx.tx(), &current.user_id.to_string(), now)
            .await?;
    for hash in revoked {
        ctx.state().keys().revoke(hash);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE …/members/{id}/sessions`: ends every current session's access to this workspace for
/// that member (owners and admins); they sign in again to come back. Their sessions elsewhere
/// (their other organizations) are not this workspace's to end.
pub async fn end_sessions(
    mut ctx: Ctx,
    PathId(id): PathId<MembershipId>,
) -> ApiResult<Json<Value>> {
    let holder = ctx.grant().role();
    let current = members::get(ctx.tx(), id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if !holder.covers(current.role) {
        return Err(refuse(holder, current.role));
    }
    let now = ctx.now();
    let ended = members::end_sessions(ctx.tx(), id, now).await?;
    Ok(Json(json!({"sessions_ended": ended})))
}
