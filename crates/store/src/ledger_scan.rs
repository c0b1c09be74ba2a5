//! Reading an organization's chain on SQLite in chunks, for verification.
//!
//! sqlx runs each SQLite connection on a thread of its own and hands every result row to the
//! caller through a channel. Streamed row by row, the two threads wake each other once per
//! event, and those wake-ups cost more than hashing the event. So SQLite builds each chunk
//! of events as one JSON text (one row, one hand-off), and the next chunk is being built on
//! the driver's thread while this one is checked: the two cores work side by side.
//! PostgreSQL needs none of this (its rows arrive on the socket this task reads).

use std::borrow::Cow;
use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use crate::conn::SqliteTx;
use chrono::{DateTime, Utc};
use rampart_core::OrgId;
use rampart_core::audit::EventFields;

use crate::StoreError;
use crate::audit::ScannedLink;
use crate::conn::parse_id;
use crate::error::corrupt;

/// Sequence numbers per chunk: about 80 kB of JSON for events of a typical size, and, for the
/// largest events there can be, still under SQLite's limit on one text value (a chunk over it
/// would make the ledger unverifiable).
const CHUNK: i64 = 128;

/// The most JSON one event can take: request bodies are capped at 1 MiB, redaction writes a
/// control character as `\u00XX` (six bytes for one) and `json_array` escapes that backslash
/// again (seven), plus the other fields.
const LARGEST_EVENT_JSON: i64 = 7 * 1024 * 1024 + 64 * 1024;

/// SQLite's default `SQLITE_MAX_LENGTH`, which `libsqlite3-sys` builds with.
const SQLITE_MAX_LENGTH: i64 = 1_000_000_000;

const _: () = assert!(CHUNK * LARGEST_EVENT_JSON < SQLITE_MAX_LENGTH);

/// One chunk: the events with `$2 < seq <= $3`, each a JSON array of the fields of
/// [`ScannedEvent`] in its order. A range rather than `LIMIT`, so SQLite walks the primary-key
/// index without materializing a subquery; a gap in the chain only makes a chunk smaller.
const CHUNK_SQL: &str = "SELECT json_group_array(json_array(seq, workspace_id, at, actor, auth_method, \
     method, path, action, target, args, status, error_code, duration_ms, idempotency_key, request_id, \
     client_ip, prev_hash, hash)) \
     FROM audit_events WHERE org_id = $1 AND seq > $2 AND seq <= $3";

/// An event as a chunk carries it (a JSON array, read by position). Text is borrowed from the
/// chunk unless JSON escaping forced a copy.
#[derive(serde::Deserialize)]
struct ScannedEvent<'a> {
    seq: i64,
    #[serde(borrow)]
    workspace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    at: Cow<'a, str>,
    #[serde(borrow)]
    actor: Cow<'a, str>,
    #[serde(borrow)]
    auth_method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(borrow)]
    path: Cow<'a, str>,
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow)]
    target: Option<Cow<'a, str>>,
    #[serde(borrow)]
    args: Cow<'a, str>,
    status: i64,
    #[serde(borrow)]
    error_code: Option<Cow<'a, str>>,
    duration_ms: i64,
    #[serde(borrow)]
    idempotency_key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request_id: Cow<'a, str>,
    #[serde(borrow)]
    client_ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    prev_hash: Cow<'a, str>,
    #[serde(borrow)]
    hash: Cow<'a, str>,
}

impl ScannedEvent<'_> {
    fn link(&self, org: OrgId) -> Result<ScannedLink<'_>, StoreError> {
        // sqlx stores a time on SQLite as RFC 3339 with an offset; a value in any other form
        // was not written by Rampart.
        let at = DateTime::parse_from_rfc3339(&self.at)
            .map_err(|_| corrupt(format!("audit event {} has an unreadable time", self.seq)))?
            .with_timezone(&Utc);
        Ok(ScannedLink {
            event: EventFields {
                org,
                seq: self.seq,
                workspace: self.workspace.as_deref().map(parse_id).transpose()?,
                at,
                actor: &self.actor,
                auth_method: self.auth_method.as_deref(),
                method: &self.method,
                path: &self.path,
                action: &self.action,
                target: self.target.as_deref(),
                args: &self.args,
                status: u16::try_from(self.status).map_err(|_| corrupt("bad status"))?,
                error_code: self.error_code.as_deref(),
                duration_ms: self.duration_ms,
                idempotency_key: self.idempotency_key.as_deref(),
                request_id: &self.request_id,
                client_ip: self.client_ip.as_deref(),
            },
            prev_hash: &self.prev_hash,
            hash: &self.hash,
        })
    }
}

/// The `(after, up_to]` ranges of sequence numbers that cover `(after, last]`, `size` each.
fn ranges(after: i64, last: i64, size: i64) -> impl Iterator<Item = (i64, i64)> {
    let mut lo = after;
    std::iter::from_fn(move || {
        (lo < last).then(|| {
            let hi = lo.saturating_add(size).min(last);
            let range = (lo, hi);
            lo = hi;
            range
        })
    })
}

async fn fetch_chunk(
    tx: &mut SqliteTx,
    org: &str,
    (after, up_to): (i64, i64),
) -> Result<String, StoreError> {
    sqlx::query_scalar(CHUNK_SQL)
        .bind(org)
        .bind(after)
        .bind(up_to)
        .fetch_one(&mut **tx)
        .await
        .map_err(StoreError::from_sqlx)
}

/// Hands one chunk's events to `each` in sequence order.
fn hand_over<E: From<StoreError>>(
    chunk: &str,
    org: OrgId,
    each: &mut impl FnMut(ScannedLink<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let mut events: Vec<ScannedEvent<'_>> = serde_json::from_str(chunk)
        .map_err(|e| corrupt(format!("reading a chunk of the audit ledger: {e}")))?;
    // The aggregate's input order is the index's in practice, not by contract; a stable sort
    // of a sorted run is one linear pass.
    events.sort_by_key(|e| e.seq);
    for scanned in &events {
        each(scanned.link(org)?)?;
    }
    Ok(())
}

/// Every event of `org` after `after_seq`, in sequence order, to `each`, all read in `tx`
/// (one snapshot); stops at the first error `each` returns.
pub(crate) async fn scan_sqlite<E: From<StoreError>>(
    tx: &mut SqliteTx,
    org: OrgId,
    after_seq: i64,
    mut each: impl FnMut(ScannedLink<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let org_text = org.to_string();
    let last: Option<i64> =
        sqlx::query_scalar("SELECT MAX(seq) FROM audit_events WHERE org_id = $1")
            .bind(&org_text)
            .fetch_one(&mut **tx)
            .await
            .map_err(StoreError::from_sqlx)?;
    let mut ranges = ranges(after_seq, last.unwrap_or(after_seq), CHUNK);
    let Some(first) = ranges.next() else {
        return Ok(());
    };
    let mut chunk = fetch_chunk(tx, &org_text, first).await?;
    for range in ranges {
        let mut next = pin!(fetch_chunk(tx, &org_text, range));
        // One poll hands the query to the driver's thread, which builds the next chunk while
        // this one is checked.
        let started = std::future::poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await;
        hand_over(&chunk, org, &mut each)?;
        chunk = match started {
            Poll::Ready(result) => result,
            Poll::Pending => next.await,
        }?;
    }
    hand_over(&chunk, org, &mut each)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_sequence_number_once() {
        let all: Vec<_> = ranges(0, 2500, 1024).collect();
        assert_eq!(all, vec![(0, 1024), (1024, 2048), (2048, 2500)]);
        let all: Vec<_> = ranges(0, 300, CHUNK).collect();
        assert_eq!(all, vec![(0, 128), (128, 256), (256, 300)]);
        assert_eq!(ranges(7, 7, 1024).count(), 0);
        assert_eq!(ranges(9, 3, 1024).count(), 0);
        assert_eq!(ranges(3, 4, 1024).collect::<Vec<_>>(), vec![(3, 4)]);
    }

    #[test]
    fn an_event_reads_back_from_its_json_with_absent_fields_absent() {
        let org: OrgId = "org_01jdv0000000000000000000aa".parse().unwrap();
        let json = r#"[[2,null,"2026-11-23T10:00:00.500001+00:00","operator",null,"CLI",
            "rampart admin","org.create",null,"{\"a\":\"\\u00e9\"}",200,null,3,null,"req_x",null,
            "00","11"],
            [1,"ws_01jdv0000000000000000000aa","2026-11-23T10:00:00+01:00","key_x","api_key",
            "POST","/v1","contact.create","","{}",201,"","0","k","req_y","127.0.0.0","aa","bb"]]"#;
        // What a caller can see of each event, copied out of the borrowed link.
        type Seen = (
            i64,
            bool,
            Option<String>,
            String,
            u32,
            String,
            Option<String>,
            String,
        );
        let mut seen: Vec<Seen> = Vec::new();
        let mut record = |l: ScannedLink<'_>| {
            seen.push((
                l.event.seq,
                l.event.workspace.is_some(),
                l.event.auth_method.map(str::to_owned),
                l.event.args.to_owned(),
                l.event.at.timestamp_subsec_micros(),
                l.event.at.to_rfc3339(),
                l.event.target.map(str::to_owned),
                l.prev_hash.to_owned(),
            ));
            Ok::<(), StoreError>(())
        };
        let result = hand_over(json, org, &mut record);
        // The second event's duration is a string: the whole chunk is refused, not half read.
        assert!(result.is_err());
        let json = json.replace(r#","0","k""#, r#",0,"k""#);
        hand_over(&json, org, &mut record).unwrap();
        assert_eq!(seen.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2]);
        let (one, two) = (&seen[0], &seen[1]);
        assert!(one.1 && !two.1, "absent workspace stays absent");
        assert_eq!(two.2, None);
        assert_eq!(one.2.as_deref(), Some("api_key"));
        assert_eq!(
            two.3, r#"{"a":"\u00e9"}"#,
            "escaped text reads back exactly"
        );
        assert_eq!(two.4, 500_001);
        assert_eq!(one.5, "2026-11-23T09:00:00+00:00");
        assert_eq!(
            one.6.as_deref(),
            Some(""),
            "empty stays distinct from absent"
        );
        assert_eq!(two.6, None);
        assert_eq!(two.7, "00");
    }
}
