//! Reading an organization's chain on SQLite in chunks, for verification.
//!
//! sqlx runs each SQLite connection on a thread of its own and hands every result row to the
//! caller through a channel. Streamed row by row, the two threads wake each other once per
//! event, and those wake-ups cost more than hashing the event. So SQLite builds each chunk
//! of 128 events as one text (one row, one hand-off), and one query streams every chunk in
//! turn, each built on the driver's thread while the one before is checked: the two cores work
//! side by side. Until 2026-12-06 each chunk was a query of its own, and the query's round trip
//! (a command to the driver's thread and its answer back, two wake-ups) cost about a sixth
//! of the command's time (1.17 s against 0.98 s over a million events). The chain readers'
//! connections ([`crate::Store::chain_reader`]) buffer one row ahead ([`ROWS_AHEAD`]), so at
//! most three chunks are in memory at once.
//! PostgreSQL needs none of this (its rows arrive on the socket this task reads).
//!
//! A chunk is every field of every event in turn, each followed by the byte `FF`; an absent
//! field is the byte `FE` alone, so it stays distinct from an empty one. Neither byte can occur
//! in UTF-8 (RFC 3629 §1), so nothing in the fields is escaped or scanned on SQLite's side: it
//! copies each field once, and the checking side finds the separators with `memchr` and
//! borrows each field where it lies, after checking that it is UTF-8 (a field that holds
//! either byte is not, and the chunk is refused). Until 2026-12-06 a chunk was a JSON array,
//! and escaping it (on SQLite's side) and parsing it (on this side) took a third of the
//! command's CPU; length-prefixed fields instead made SQLite turn 18 lengths a row into text.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use rampart_core::OrgId;
use rampart_core::audit::EventFields;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::StoreError;
use crate::conn::{SqliteTx, parse_id};
use crate::error::corrupt;
use futures_util::TryStreamExt;

/// An event as the chain scan hands it over: its fields and its links (hex), borrowed from
/// the rows being read, so that checking a ledger of millions copies nothing per event.
#[derive(Debug, Clone, Copy)]
pub struct ScannedLink<'a> {
    /// The event's fields.
    pub event: EventFields<'a>,
    /// The previous link.
    pub prev_hash: &'a str,
    /// This event's link.
    pub hash: &'a str,
}

/// Sequence numbers per chunk: about 70 kB for events of a typical size, and, for the largest
/// events there can be, still under SQLite's limit on one text value (a chunk over it would
/// make the ledger unverifiable).
const CHUNK: i64 = 128;

/// The most text one event can take in a chunk: request bodies are capped at 1 MiB and
/// redaction writes a control character as `\u00XX` (six bytes for one), plus the other
/// fields and their separators.
const LARGEST_EVENT: i64 = 6 * 1024 * 1024 + 64 * 1024;

/// SQLite's default `SQLITE_MAX_LENGTH`, which `libsqlite3-sys` builds with.
const SQLITE_MAX_LENGTH: i64 = 1_000_000_000;

const _: () = assert!(CHUNK * LARGEST_EVENT < SQLITE_MAX_LENGTH);

/// Rows sqlx's driver thread may hold ready ahead of the reader on a chain reader's
/// connection. More does not make a scan faster (measured 2026-12-06: 1, 2, 4 and 50 within
/// noise of each other); each is a chunk of up to `CHUNK × LARGEST_EVENT` bytes.
pub(crate) const ROWS_AHEAD: usize = 1;

/// The columns a chunk carries, in the order [`ScannedEvent::read`] takes them, and whether
/// each may be NULL.
const FIELDS: [(&str, bool); 18] = [
    ("seq", false),
    ("workspace_id", true),
    ("at", false),
    ("actor", false),
    ("auth_method", true),
    ("method", false),
    ("path", false),
    ("action", false),
    ("target", true),
    ("args", false),
    ("status", false),
    ("error_code", true),
    ("duration_ms", false),
    ("idempotency_key", true),
    ("request_id", false),
    ("client_ip", true),
    ("prev_hash", false),
    ("hash", false),
];

/// Ends every field of a chunk.
const SEPARATOR: u8 = 0xFF;
/// Stands for an absent field.
const ABSENT: u8 = 0xFE;

/// Every chunk of `(after, last]`, in order, as rows of (the chunk's `after`, its text):
/// `$2` is `after`, `$3` is `last`, `$4` is [`CHUNK`]. The recursive part counts the chunks'
/// starts; each row's subquery reads its range of sequence numbers (a range rather than
/// `LIMIT`, so SQLite walks the primary-key index; a gap in the chain only makes a chunk
/// smaller, and one with no events is NULL). Each field is followed by `FF`, an absent one
/// is `FE` (a column that may not be NULL but is anyway comes out empty, which its reader
/// refuses).
static CHUNKS_SQL: LazyLock<String> = LazyLock::new(|| {
    let fields: Vec<String> = FIELDS
        .iter()
        .map(|(name, nullable)| {
            if *nullable {
                format!("coalesce({name}, x'{ABSENT:02X}'), x'{SEPARATOR:02X}'")
            } else {
                format!("{name}, x'{SEPARATOR:02X}'")
            }
        })
        .collect();
    format!(
        "WITH RECURSIVE starts(after) AS \
         (SELECT $2 WHERE $2 < $3 UNION ALL SELECT after + $4 FROM starts WHERE after + $4 < $3) \
         SELECT after, (SELECT group_concat(concat({}), '') FROM audit_events \
         WHERE org_id = $1 AND seq > starts.after AND seq <= min(starts.after + $4, $3)) \
         FROM starts",
        fields.join(", ")
    )
});

/// Why a chunk could not be read; the chain's own checks never see such an event.
fn unreadable(what: &str) -> StoreError {
    corrupt(format!("reading a chunk of the audit ledger: {what}"))
}

/// A chunk's fields, read one after another.
struct Frames<'a> {
    chunk: &'a [u8],
    /// Where the next field starts.
    at: usize,
    /// The separators still ahead, found in one pass over the chunk.
    ends: memchr::Memchr<'a>,
}

impl<'a> Frames<'a> {
    fn new(chunk: &'a [u8]) -> Self {
        Frames {
            chunk,
            at: 0,
            ends: memchr::memchr_iter(SEPARATOR, chunk),
        }
    }

    /// Whether every field has been read.
    fn done(&self) -> bool {
        self.at >= self.chunk.len()
    }

    /// The next field, `None` when it is absent.
    fn field(&mut self) -> Result<Option<&'a str>, StoreError> {
        let end = self
            .ends
            .next()
            .ok_or_else(|| unreadable("a field is cut short"))?;
        let raw = self
            .chunk
            .get(self.at..end)
            .ok_or_else(|| unreadable("a field is cut short"))?;
        self.at = end + 1;
        if raw == [ABSENT] {
            return Ok(None);
        }
        std::str::from_utf8(raw)
            .map(Some)
            .map_err(|_| unreadable("a field is not UTF-8"))
    }

    /// The next field, which must be present.
    fn text(&mut self, name: &str) -> Result<&'a str, StoreError> {
        self.field()?
            .ok_or_else(|| unreadable(&format!("`{name}` is absent")))
    }

    /// The next field, which must be a present integer.
    fn int(&mut self, name: &str) -> Result<i64, StoreError> {
        self.text(name)?
            .parse()
            .map_err(|_| unreadable(&format!("`{name}` is not an integer")))
    }
}

/// An event as a chunk carries it, its text borrowed from the chunk.
struct ScannedEvent<'a> {
    seq: i64,
    workspace: Option<&'a str>,
    at: &'a str,
    actor: &'a str,
    auth_method: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    action: &'a str,
    target: Option<&'a str>,
    args: &'a str,
    status: i64,
    error_code: Option<&'a str>,
    duration_ms: i64,
    idempotency_key: Option<&'a str>,
    request_id: &'a str,
    client_ip: Option<&'a str>,
    prev_hash: &'a str,
    hash: &'a str,
}

impl<'a> ScannedEvent<'a> {
    /// The next event of a chunk, its fields in the order of [`FIELDS`].
    fn read(f: &mut Frames<'a>) -> Result<Self, StoreError> {
        Ok(ScannedEvent {
            seq: f.int("seq")?,
            workspace: f.field()?,
            at: f.text("at")?,
            actor: f.text("actor")?,
            auth_method: f.field()?,
            method: f.text("method")?,
            path: f.text("path")?,
            action: f.text("action")?,
            target: f.field()?,
            args: f.text("args")?,
            status: f.int("status")?,
            error_code: f.field()?,
            duration_ms: f.int("duration_ms")?,
            idempotency_key: f.field()?,
            request_id: f.text("request_id")?,
            client_ip: f.field()?,
            prev_hash: f.text("prev_hash")?,
            hash: f.text("hash")?,
        })
    }

    fn link(&self, org: OrgId) -> Result<ScannedLink<'a>, StoreError> {
        // sqlx stores a time on SQLite as RFC 3339 with an offset; a value in any other form
        // was not written by Rampart.
        let at = DateTime::parse_from_rfc3339(self.at)
            .map_err(|_| corrupt(format!("audit event {} has an unreadable time", self.seq)))?
            .with_timezone(&Utc);
        Ok(ScannedLink {
            event: EventFields {
                org,
                seq: self.seq,
                workspace: self.workspace.map(parse_id).transpose()?,
                at,
                actor: self.actor,
                auth_method: self.auth_method,
                method: self.method,
                path: self.path,
                action: self.action,
                target: self.target,
                args: self.args,
                status: u16::try_from(self.status).map_err(|_| corrupt("bad status"))?,
                error_code: self.error_code,
                duration_ms: self.duration_ms,
                idempotency_key: self.idempotency_key,
                request_id: self.request_id,
                client_ip: self.client_ip,
            },
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

/// A chunk's start and its bytes, borrowed from its row (no bytes when the range held no
/// events).
fn chunk_of(row: &SqliteRow) -> Result<(i64, &[u8]), StoreError> {
    let after: i64 = row.try_get(0).map_err(StoreError::from_sqlx)?;
    let bytes: Option<&[u8]> = row.try_get(1).map_err(StoreError::from_sqlx)?;
    Ok((after, bytes.unwrap_or_default()))
}

/// Hands one chunk's events to `each` in sequence order; a chunk that cannot be read in full
/// hands over none of them.
fn hand_over<E: From<StoreError>>(
    chunk: &[u8],
    org: OrgId,
    each: &mut impl FnMut(ScannedLink<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let mut events = Vec::with_capacity(CHUNK as usize);
    let mut frames = Frames::new(chunk);
    while !frames.done() {
        events.push(ScannedEvent::read(&mut frames)?);
    }
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
    let last = last.unwrap_or(after_seq);
    let mut chunks = sqlx::query(sqlx::AssertSqlSafe(CHUNKS_SQL.as_str()))
        .bind(&org_text)
        .bind(after_seq)
        .bind(last)
        .bind(CHUNK)
        .fetch(&mut **tx);
    let mut expected = after_seq;
    while let Some(row) = chunks.try_next().await.map_err(StoreError::from_sqlx)? {
        let (after, chunk) = chunk_of(&row)?;
        // A query's rows have no order without `ORDER BY`, and sorting would hold every chunk
        // at once; they come in the order the recursion made them, which is checked rather
        // than trusted, so a change in SQLite would fail the scan, not report a broken chain.
        if after != expected {
            return Err(corrupt(format!(
                "the audit ledger's chunks came out of order ({after} after {expected})"
            ))
            .into());
        }
        expected = after.saturating_add(CHUNK);
        hand_over(chunk, org, &mut each)?;
    }
    if expected < last {
        return Err(corrupt(format!(
            "the audit ledger's chunks stopped at {expected} of {last}"
        ))
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqlitePoolOptions;

    const ORG: &str = "org_01jdv0000000000000000000aa";
    const WS: &str = "ws_01jdv0000000000000000000aa";

    /// One event's fields framed as [`CHUNKS_SQL`] frames them.
    fn framed(fields: [Option<&[u8]>; 18]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in fields {
            match f {
                Some(v) => out.extend_from_slice(v),
                None => out.push(ABSENT),
            }
            out.push(SEPARATOR);
        }
        out
    }

    fn plain(seq: &'static str, args: &'static str) -> [Option<&'static [u8]>; 18] {
        [
            Some(seq.as_bytes()),
            None,
            Some(b"2026-11-23T10:00:00.500001+01:00"),
            Some(b"operator"),
            None,
            Some(b"CLI"),
            Some(b"rampart admin"),
            Some(b"org.create"),
            Some(b""),
            Some(args.as_bytes()),
            Some(b"200"),
            None,
            Some(b"3"),
            None,
            Some(b"req_x"),
            None,
            Some(b"00"),
            Some(b"11"),
        ]
    }

    type Seen = (i64, Option<String>, Option<String>, String, String);

    fn read(chunk: &[u8]) -> (Result<(), StoreError>, Vec<Seen>) {
        let org: OrgId = ORG.parse().unwrap();
        let mut seen = Vec::new();
        let result = hand_over(chunk, org, &mut |l: ScannedLink<'_>| {
            seen.push((
                l.event.seq,
                l.event.target.map(str::to_owned),
                l.event.error_code.map(str::to_owned),
                l.event.args.to_owned(),
                l.event.at.to_rfc3339(),
            ));
            Ok::<(), StoreError>(())
        });
        (result, seen)
    }

    #[test]
    fn a_chunk_reads_back_in_order_with_absent_distinct_from_empty() {
        let mut chunk = framed(plain("2", "{\"a\":\"é\\u0000\"}"));
        chunk.extend(framed(plain("1", "{}")));
        let (result, seen) = read(&chunk);
        result.unwrap();
        assert_eq!(seen.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(seen[1].1.as_deref(), Some(""), "empty stays empty");
        assert_eq!(seen[1].2, None, "absent stays absent");
        assert_eq!(seen[1].3, "{\"a\":\"é\\u0000\"}", "text reads back exactly");
        assert_eq!(seen[0].4, "2026-11-23T09:00:00.500001+00:00");
    }

    #[test]
    fn a_chunk_that_does_not_read_in_full_hands_over_nothing() {
        let good = framed(plain("1", "{}"));
        let cases: [(&str, Vec<u8>); 5] = [
            ("cut short", good[..good.len() - 1].to_vec()),
            ("not UTF-8", {
                let mut c = good.clone();
                c.extend(framed(plain("2", "{}")));
                let at = c.len() - 8;
                c[at] = 0xC3;
                c
            }),
            ("absent where required", {
                let mut f = plain("2", "{}");
                f[9] = None;
                let mut c = good.clone();
                c.extend(framed(f));
                c
            }),
            ("not an integer", {
                let mut c = good.clone();
                c.extend(framed(plain("2x", "{}")));
                c
            }),
            ("a separator inside a field", {
                // What a byte `FF` stored inside a field (not UTF-8, so never Rampart's) does:
                // the fields shift and the chunk stops reading.
                let mut c = good.clone();
                c.extend(
                    framed(plain("2", "{\u{0}}"))
                        .iter()
                        .map(|b| if *b == 0 { SEPARATOR } else { *b }),
                );
                c
            }),
        ];
        for (what, chunk) in cases {
            let (result, seen) = read(&chunk);
            assert!(
                matches!(result, Err(StoreError::Corrupt(_))),
                "{what}: {result:?}"
            );
            assert!(seen.is_empty(), "{what}: nothing handed over");
        }
    }

    /// The real query on a real SQLite file: every event once, in order, each field as stored,
    /// across chunks, a gap and the rows a chain reader's connection buffers.
    #[tokio::test]
    async fn the_query_frames_what_sqlite_stores() {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::sqlite_connect_options(&dir.path().join("scan.db"))
            .create_if_missing(true)
            .row_buffer_size(ROWS_AHEAD);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        let columns: Vec<&str> = FIELDS.iter().map(|(name, _)| *name).collect();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE audit_events (org_id TEXT NOT NULL, {}, PRIMARY KEY (org_id, seq))",
            columns.join(", ")
        )))
        .execute(&pool)
        .await
        .unwrap();
        // Text SQLite keeps as it is given: several scripts, a NUL, separators' look-alikes.
        let texts = ["", "é ✓ 𝄞", "a\u{0}b", "\u{FF}\u{FE}ÿþ", "255:-:x"];
        let count = 3 * CHUNK + 5;
        for seq in 1..=count {
            if seq == CHUNK + 1 || seq == 2 * CHUNK {
                continue; // a gap on a chunk's first and last number
            }
            let text = texts[(seq as usize) % texts.len()];
            let optional = (seq % 3 != 0).then_some(text);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO audit_events (org_id, {}) VALUES (?{})",
                columns.join(", "),
                ", ?".repeat(columns.len())
            )))
            .bind(ORG)
            .bind(seq)
            .bind(optional.map(|_| WS))
            .bind("2026-11-23T10:00:00+00:00")
            .bind(text)
            .bind(optional);
            q = q.bind(text).bind(text).bind(text).bind(optional).bind(text);
            q = q
                .bind(200)
                .bind(optional)
                .bind(-7)
                .bind(optional)
                .bind(text);
            q = q.bind(optional).bind(text).bind(text);
            q.execute(&pool).await.unwrap();
        }
        // Another organization's events are not read.
        sqlx::query(
            "INSERT INTO audit_events SELECT 'org_01jdv0000000000000000000bb', seq, workspace_id, \
             at, actor, auth_method, method, path, action, target, args, status, error_code, \
             duration_ms, idempotency_key, request_id, client_ip, prev_hash, hash FROM audit_events",
        )
        .execute(&pool)
        .await
        .unwrap();

        let mut tx = SqliteTx::Read(pool.begin().await.unwrap());
        let org: OrgId = ORG.parse().unwrap();
        for after in [0, 5, CHUNK] {
            let mut seen = Vec::new();
            scan_sqlite(&mut tx, org, after, |l| {
                let e = l.event;
                let text = texts[(e.seq as usize) % texts.len()];
                let optional = (e.seq % 3 != 0).then_some(text);
                assert_eq!(e.actor, text, "{}", e.seq);
                for f in [
                    e.method,
                    e.path,
                    e.action,
                    e.args,
                    e.request_id,
                    l.prev_hash,
                    l.hash,
                ] {
                    assert_eq!(f, text, "{}", e.seq);
                }
                for f in [
                    e.auth_method,
                    e.target,
                    e.error_code,
                    e.idempotency_key,
                    e.client_ip,
                ] {
                    assert_eq!(f, optional, "{}", e.seq);
                }
                assert_eq!(e.workspace.is_some(), optional.is_some());
                assert_eq!((e.status, e.duration_ms), (200, -7));
                seen.push(e.seq);
                Ok::<(), StoreError>(())
            })
            .await
            .unwrap();
            let expected: Vec<i64> = (after + 1..=count)
                .filter(|s| *s != CHUNK + 1 && *s != 2 * CHUNK)
                .collect();
            assert_eq!(seen, expected, "after {after}");
        }
        // Past the end, and in an organization with no events, nothing is read.
        let mut none = 0;
        scan_sqlite(&mut tx, org, count, |_| {
            none += 1;
            Ok::<(), StoreError>(())
        })
        .await
        .unwrap();
        let other: OrgId = "org_01jdv0000000000000000000cc".parse().unwrap();
        scan_sqlite(&mut tx, other, 0, |_| {
            none += 1;
            Ok::<(), StoreError>(())
        })
        .await
        .unwrap();
        assert_eq!(none, 0);
    }
}
