//! `GET /v1/workspaces/{ws}/audit-events`: the workspace's part of its organization's
//! ledger, newest first, filtered and cursor-paginated.

use axum::Json;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rampart_store::audit::{self, EventFilter, StoredEvent};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Ctx, QueryParams};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;

/// The query of `GET …/audit-events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    actor: Option<String>,
    action: Option<String>,
    status: Option<u16>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// The API view of an event: `args` as JSON rather than the stored text.
pub fn view(stored: &StoredEvent) -> Value {
    let mut v = serde_json::to_value(stored).unwrap_or(Value::Null);
    if let Some(args) = v.get_mut("args")
        && let Some(text) = args.as_str()
    {
        *args = serde_json::from_str(text).unwrap_or(Value::Null);
    }
    v
}

/// `GET …/audit-events`
pub async fn list(mut ctx: Ctx, QueryParams(q): QueryParams<ListQuery>) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let before_seq = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let filter = EventFilter {
        actor: q.actor,
        action: q.action,
        status: q.status,
        since: q.since,
        until: q.until,
        before_seq,
    };
    let mut page = audit::list(ctx.tx(), &filter, limit + 1).await?;
    let next = if page.len() > limit as usize {
        page.truncate(limit as usize);
        page.last().map(|e| encode_cursor(e.event.seq))
    } else {
        None
    };
    Ok(Json(
        json!({"data": page.iter().map(view).collect::<Vec<_>>(), "next_cursor": next}),
    ))
}

/// The `next_cursor` for a page ending at sequence number `seq`; [`decode_cursor`] reads it back.
pub fn encode_cursor(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(seq.to_string())
}

/// Reads a cursor made by [`encode_cursor`]; anything else is a 400, never a panic.
pub fn decode_cursor(raw: &str) -> ApiResult<i64> {
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| {
            ApiError::bad_request("invalid cursor: pass back `next_cursor` exactly as received")
        })
}
