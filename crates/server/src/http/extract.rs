//! Extractors that turn every kind of bad input into a clear envelope error: broken JSON is a
//! 400, an unknown or mistyped field a 422 naming the field, a body over 1 MiB a 413, a
//! wrongly prefixed id or a bad query parameter a 400, a NUL in any string a 422 naming the
//! field (400 in a query parameter). And [`Ctx`], which hands a handler its
//! grant and a transaction confined to the authorized workspace.

use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, RawPathParams, Request};
use axum::http::header;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use rampart_core::{ErrorCode, IdError, TenantGrant, text};
use rampart_store::{Mode, TenantTx};
use serde::de::DeserializeOwned;

use super::body;
use super::error::ApiError;
use super::guard::{Admission, TxSlot};
use crate::state::AppState;

/// The route's body limit, put on the request by the guard for whoever reads the body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON body parsed strictly into `T` (which should `deny_unknown_fields`).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

fn is_json(req: &Request) -> bool {
    let Some(ct) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Parses JSON text into `T`, classifying errors for the envelope.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { "body".to_owned() } else { path };
                ApiError::invalid(field, inner.to_string())
            }
            _ => ApiError::bad_request(format!("malformed JSON: {inner}")),
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    // JSON text can carry a NUL only as the escape `\u0000`: where there is none, there is no
    // NUL in any string of the document, and the second parse below is skipped.
    if contains(bytes, br"\u0000")
        && let Ok(tree) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Some(field) = nul_at(&tree, String::new())
    {
        let field = if field.is_empty() {
            "body".to_owned()
        } else {
            field
        };
        return Err(ApiError::invalid(field, text::NUL_REFUSED.0));
    }
    Ok(value)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The path (as `serde_path_to_error` writes it: `a.b[2].c`) of the first key or string of
/// `v` that holds a NUL, which no backend-independent store can hold ([`text::check`]).
fn nul_at(v: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) => text::check(s).is_err().then_some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_at(item, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if text::check(k).is_err() {
                Some(here)
            } else {
                nul_at(item, here)
            }
        }),
        _ => None,
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&req) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as application/json",
            ));
        }
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(crate::manifest::ACCOUNT_BODY_LIMIT, |l| l.0);
        let bytes: Bytes = body::read(req.into_body(), limit).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Query parameters parsed into `T`; a malformed or unknown parameter is a 400.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(query) = parts.uri.query()
            && let Some((name, _)) = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, v)| text::check(k).is_err() || text::check(v).is_err())
        {
            let mut e = ApiError::bad_request(format!(
                "invalid query: parameter {name:?} {}",
                text::NUL_REFUSED.0
            ));
            e.field = Some(text::storable(&name).into_owned());
            return Err(e);
        }
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(v)| QueryParams(v))
            .map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))
    }
}

/// The `{id}` path segment parsed as a typed id; a wrong prefix is a 400.
#[derive(Debug)]
pub struct PathId<T>(pub T);

impl<S: Send + Sync, T: FromStr<Err = IdError>> FromRequestParts<S> for PathId<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // axum refuses the whole map when one segment does not decode to UTF-8.
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::bad_request("a path segment is not valid percent-encoded UTF-8")
            })?;
        let raw = params
            .iter()
            .find(|(k, _)| *k == "id")
            .map(|(_, v)| v)
            .ok_or_else(ApiError::internal)?;
        raw.parse::<T>()
            .map(PathId)
            .map_err(|e| ApiError::bad_request(format!("invalid id in path: {e}")))
    }
}

/// A handler's context: the grant the guard made and a transaction in its workspace (a write
/// transaction on mutating routes). The guard commits it after a successful response.
pub struct Ctx {
    grant: TenantGrant,
    tx: Option<TenantTx>,
    slot: TxSlot,
    state: AppState,
}

impl Ctx {
    /// The authorization this request runs under.
    pub fn grant(&self) -> &TenantGrant {
        &self.grant
    }

    /// The workspace-bound transaction.
    pub fn tx(&mut self) -> &mut TenantTx {
        match self.tx.as_mut() {
            Some(tx) => tx,
            None => unreachable!("the transaction is only taken on drop"),
        }
    }

    /// Shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The injected clock's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.state.clock().now()
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            self.slot.put(tx);
        }
    }
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Only the guard inserts this; a handler reached without it cannot build a Ctx.
        let Admission { grant, slot, spec } = parts
            .extensions
            .get::<Admission>()
            .cloned()
            .ok_or_else(ApiError::internal)?;
        let mode = if spec.mutates {
            Mode::Write
        } else {
            Mode::Read
        };
        // The mutation guard may have opened the transaction already (an idempotency claim
        // made inside it); otherwise the handler's own starts here.
        let tx = match slot.take() {
            Some(tx) => tx,
            None => state.store().tenant(&grant, mode).await?,
        };
        Ok(Ctx {
            grant,
            tx: Some(tx),
            slot,
            state: state.clone(),
        })
    }
}
