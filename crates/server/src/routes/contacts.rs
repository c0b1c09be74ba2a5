//! `/v1/workspaces/{ws}/contacts`: create, list, read, change, delete.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rampart_core::contact::{self, ContactText, InvalidContact};
use rampart_core::{ContactId, Email, FieldError, Permission, PersonName, Phone, Tag, UsState};
use rampart_store::contacts::{self, Contact, ContactFilter, ContactPatch, NewContact};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::nullable;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Ctx, JsonBody, PathId, QueryParams};

/// Largest page a list returns.
pub const MAX_LIMIT: u32 = 200;
const DEFAULT_LIMIT: u32 = 50;
const MAX_CUSTOM_FIELDS: usize = 100;
const MAX_CUSTOM_FIELDS_BYTES: usize = 16 * 1024;

/// The body of `POST …/contacts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    us_state: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    custom_fields: Map<String, Value>,
}

/// The body of `PATCH …/contacts/{id}`: absent fields stay, `null` clears.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    us_state: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    tags: Option<Option<Vec<String>>>,
    custom_fields: Option<Map<String, Value>>,
}

/// The query of `GET …/contacts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    email: Option<String>,
    tag: Option<String>,
    updated_since: Option<DateTime<Utc>>,
}

fn field<T>(
    name: &'static str,
    parse: impl Fn(&str) -> Result<T, FieldError>,
    raw: Option<&String>,
) -> ApiResult<Option<T>> {
    raw.map(|v| parse(v).map_err(|e| ApiError::invalid(name, e.0)))
        .transpose()
}

fn invalid(e: InvalidContact) -> ApiError {
    ApiError::invalid(e.field, e.message)
}

fn check_custom_fields(fields: &Map<String, Value>) -> ApiResult<()> {
    if fields.len() > MAX_CUSTOM_FIELDS {
        return Err(ApiError::invalid(
            "custom_fields",
            format!("at most {MAX_CUSTOM_FIELDS} keys"),
        ));
    }
    if fields
        .keys()
        .any(|k| k.is_empty() || k.chars().count() > 64 || k.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "custom_fields",
            "keys must be 1 to 64 characters without control characters",
        ));
    }
    if serde_json::to_vec(fields).map_or(usize::MAX, |v| v.len()) > MAX_CUSTOM_FIELDS_BYTES {
        return Err(ApiError::invalid("custom_fields", "at most 16 KiB in all"));
    }
    Ok(())
}

fn created(c: Contact) -> Response {
    let location = format!("/v1/workspaces/{}/contacts/{}", c.workspace_id, c.id);
    (StatusCode::CREATED, [(header::LOCATION, location)], Json(c)).into_response()
}

/// `POST …/contacts`
pub async fn create(mut ctx: Ctx, JsonBody(body): JsonBody<CreateBody>) -> ApiResult<Response> {
    check_custom_fields(&body.custom_fields)?;
    let fields = ContactText {
        name: body.name.as_deref(),
        email: body.email.as_deref(),
        phone: body.phone.as_deref(),
        us_state: body.us_state.as_deref(),
        tags: body.tags.iter().map(String::as_str).collect(),
    }
    .validate()
    .map_err(invalid)?;
    let new = NewContact::from_fields(fields, body.custom_fields);
    let now = ctx.now();
    let contact = contacts::create(ctx.tx(), new, now).await?;
    Ok(created(contact))
}

/// `GET …/contacts`
pub async fn list(mut ctx: Ctx, QueryParams(q): QueryParams<ListQuery>) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let filter = ContactFilter {
        email: q
            .email
            .as_deref()
            .map(|e| Email::parse(e).map_err(|err| ApiError::invalid("email", err.0)))
            .transpose()?,
        tag: q
            .tag
            .as_deref()
            .map(|t| Tag::parse(t).map_err(|err| ApiError::invalid("tag", err.0)))
            .transpose()?,
        updated_since: q.updated_since,
        after,
    };
    let (page, next) = contacts::list(ctx.tx(), &filter, limit).await?;
    Ok(Json(
        json!({"data": page, "next_cursor": next.map(encode_cursor)}),
    ))
}

/// `GET …/contacts/{id}`
pub async fn get(mut ctx: Ctx, PathId(id): PathId<ContactId>) -> ApiResult<Json<Contact>> {
    contacts::get(ctx.tx(), id)
        .await?
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

/// `PATCH …/contacts/{id}`
pub async fn update(
    mut ctx: Ctx,
    PathId(id): PathId<ContactId>,
    JsonBody(body): JsonBody<PatchBody>,
) -> ApiResult<Json<Contact>> {
    fn opt<T>(
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, FieldError>,
        raw: Option<Option<String>>,
    ) -> ApiResult<Option<Option<T>>> {
        raw.map(|inner| field(name, &parse, inner.as_ref()))
            .transpose()
    }
    if let Some(cf) = &body.custom_fields {
        check_custom_fields(cf)?;
    }
    let patch = ContactPatch {
        name: opt("name", PersonName::parse, body.name)?,
        email: opt("email", Email::parse, body.email)?,
        phone: opt("phone", Phone::parse, body.phone)?,
        us_state: opt("us_state", UsState::parse, body.us_state)?,
        tags: body
            .tags
            .map(|t| contact::tags(t.unwrap_or_default().iter().map(String::as_str)))
            .transpose()
            .map_err(invalid)?,
        custom_fields: body.custom_fields,
    };
    let now = ctx.now();
    contacts::update(ctx.tx(), id, patch, now)
        .await?
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

/// `DELETE …/contacts/{id}`
pub async fn delete(mut ctx: Ctx, PathId(id): PathId<ContactId>) -> ApiResult<StatusCode> {
    let now = ctx.now();
    if contacts::delete(ctx.tx(), id, now).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// `GET …/contacts/{id}/versions`: every version, oldest first. A deleted contact's history
/// stays readable to roles holding `audit:read`; to others it is gone like the contact.
pub async fn versions(mut ctx: Ctx, PathId(id): PathId<ContactId>) -> ApiResult<Json<Value>> {
    let live = contacts::get(ctx.tx(), id).await?.is_some();
    if !live && !ctx.grant().role().can(Permission::AuditRead) {
        return Err(ApiError::not_found());
    }
    let history =
        rampart_store::versions::list(ctx.tx(), contacts::OBJECT_TYPE, &id.to_string()).await?;
    if history.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(Json(json!({"data": history, "next_cursor": null})))
}

/// The `next_cursor` for a page ending at `after`; [`decode_cursor`] reads it back.
pub fn encode_cursor(after: ContactId) -> String {
    URL_SAFE_NO_PAD.encode(after.to_string())
}

/// Reads a cursor made by [`encode_cursor`]; anything else is a 400, never a panic.
pub fn decode_cursor(raw: &str) -> ApiResult<ContactId> {
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            ApiError::bad_request("invalid cursor: pass back `next_cursor` exactly as received")
        })
}
