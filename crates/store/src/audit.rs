//! The audit ledger's storage: one hash chain per organization (`audit_heads` holds each
//! chain's last sequence number and hash). Sealing an event into the chain locks the
//! organization's head row until commit, so writers inside one organization serialize without
//! gaps or forks while organizations never wait on each other. On PostgreSQL that happens inside
//! COMMIT (migration 7), so the lock is held for the commit alone; on SQLite the single writer
//! serializes everything anyway.

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use rampart_core::audit::{AuditEvent, EventFields, GENESIS};
use rampart_core::{AuthMethod, ErrorCode, EventActor, OrgGrant, OrgId, WorkspaceId};
use serde::Serialize;
use sqlx::{PgPool, Row};

use crate::conn::{Conn, SqliteTx, execute, fetch_all, fetch_optional, id, parse_id};
use crate::error::corrupt;
use crate::head_hints::Head;
use crate::idempotency::StoredResponse;
use crate::writer::renew_savepoint;
use crate::{Backend, Mode, Store, StoreError, TenantTx, db_time};

/// What a caller supplies for an event; the ledger adds organization, sequence, time and hashes.
#[derive(Debug, Clone, Default)]
pub struct NewEvent {
    /// The workspace acted in or from.
    pub workspace: Option<WorkspaceId>,
    /// Who acted (stored as `key_…`, `usr_…`, `operator` or `anonymous`).
    pub actor: EventActor,
    /// How the actor authenticated (`None`: nobody did).
    pub auth_method: Option<AuthMethod>,
    /// HTTP method or `CLI`.
    pub method: String,
    /// Path or CLI command.
    pub path: String,
    /// Manifest action.
    pub action: String,
    /// Object acted on.
    pub target: Option<String>,
    /// Redacted arguments, JSON text.
    pub args: String,
    /// Outcome status.
    pub status: u16,
    /// The error envelope's code, for failures.
    pub error_code: Option<ErrorCode>,
    /// Duration in milliseconds.
    pub duration_ms: i64,
    /// Idempotency key sent.
    pub idempotency_key: Option<String>,
    /// Request id.
    pub request_id: String,
    /// Truncated client address.
    pub client_ip: Option<String>,
}

/// Longest request path a ledger event keeps, in characters; a longer one is cut and marked.
const MAX_PATH_CHARS: usize = 2048;
/// Longest text an event keeps in a short field (target, actor, key, codes).
const MAX_SHORT_CHARS: usize = 256;

/// `s` with every NUL replaced (PostgreSQL cannot store one) and cut to `max` characters.
fn fit(s: String, max: usize) -> String {
    let s = match rampart_core::text::storable(&s) {
        std::borrow::Cow::Borrowed(_) => s,
        std::borrow::Cow::Owned(replaced) => replaced,
    };
    match s.char_indices().nth(max) {
        None => s,
        Some((cut, _)) => {
            let mut kept = s[..cut].to_owned();
            kept.push('\u{2026}');
            kept
        }
    }
}

impl NewEvent {
    /// The event in a form both backends store, whatever the request carried: a refused
    /// request's path or target may hold a NUL or run to kilobytes, and its event must still
    /// be written. Replacing (not refusing) is right here because the ledger records what
    /// arrived; input kept as data is refused at validation instead (`rampart_core::text`).
    fn storable(self) -> Self {
        let short = |s: Option<String>| s.map(|s| fit(s, MAX_SHORT_CHARS));
        Self {
            workspace: self.workspace,
            actor: self.actor,
            auth_method: self.auth_method,
            method: fit(self.method, MAX_SHORT_CHARS),
            path: fit(self.path, MAX_PATH_CHARS),
            action: fit(self.action, MAX_SHORT_CHARS),
            target: short(self.target),
            // JSON text from `redact_args`, whose escapes hold no raw NUL; checked anyway.
            args: fit(self.args, usize::MAX),
            status: self.status,
            error_code: self.error_code,
            duration_ms: self.duration_ms,
            idempotency_key: short(self.idempotency_key),
            request_id: fit(self.request_id, MAX_SHORT_CHARS),
            client_ip: short(self.client_ip),
        }
    }
}

/// An event as stored, with its chain links (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredEvent {
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// The previous link.
    pub prev_hash: String,
    /// This event's link.
    pub hash: String,
}

pub use crate::ledger_scan::ScannedLink;

/// A retention checkpoint: everything up to `seq` may be gone; `hash` is its link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// Last removed sequence number.
    pub seq: i64,
    /// Its hash (hex).
    pub hash: String,
}

/// Filters for listing a workspace's events.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this status.
    pub status: Option<u16>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    /// Only events with a sequence number below this (the cursor; lists run newest first).
    pub before_seq: Option<i64>,
}

const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// [`LINK_COLUMNS`] as a literal, for statements built with `concat!`.
macro_rules! link_columns {
    () => {
        "seq, workspace_id, at, actor, auth_method, method, path, action, target, args, status, \
         error_code, duration_ms, idempotency_key, request_id, client_ip, prev_hash, hash"
    };
}
/// An event's columns but its organization's: every query that reads events filters on
/// `org_id`, so none selects it: one column fewer for PostgreSQL to send and the command to
/// decode per event (a verify of a million events, 8 runs alternated on 2026-12-06: 1.575 s
/// wall and 1.57 s of the command's CPU before, 1.54 s and 1.545 s after).
const LINK_COLUMNS: &str = link_columns!();

/// Reads a row selected as `{LINK_COLUMNS}` in place, by position (the chain check reads
/// millions of rows), as a [`ScannedLink`] of `$org`. Expands for either backend's row type. `$get` is
/// `try_get`, or `try_get_unchecked` where the query is the chain scan's own, whose columns'
/// types the same expansion checks everywhere else (a wrong one fails those reads, and the
/// chain's hashes besides); the checks were about 8 % of a PostgreSQL scan's CPU in `perf`.
macro_rules! scanned {
    ($r:expr, $org:expr) => {
        scanned!($r, $org, try_get)
    };
    ($r:expr, $org:expr, $get:ident) => {{
        let r = $r;
        let e = StoreError::from_sqlx;
        let workspace: Option<&str> = r.$get(1).map_err(e)?;
        let status: i32 = r.$get(10).map_err(e)?;
        Ok::<ScannedLink<'_>, StoreError>(ScannedLink {
            event: EventFields {
                org: $org,
                seq: r.$get(0).map_err(e)?,
                workspace: workspace.map(parse_id).transpose()?,
                at: r.$get(2).map_err(e)?,
                actor: r.$get(3).map_err(e)?,
                auth_method: r.$get(4).map_err(e)?,
                method: r.$get(5).map_err(e)?,
                path: r.$get(6).map_err(e)?,
                action: r.$get(7).map_err(e)?,
                target: r.$get(8).map_err(e)?,
                args: r.$get(9).map_err(e)?,
                status: u16::try_from(status).map_err(|_| corrupt("bad status"))?,
                error_code: r.$get(11).map_err(e)?,
                duration_ms: r.$get(12).map_err(e)?,
                idempotency_key: r.$get(13).map_err(e)?,
                request_id: r.$get(14).map_err(e)?,
                client_ip: r.$get(15).map_err(e)?,
            },
            prev_hash: r.$get(16).map_err(e)?,
            hash: r.$get(17).map_err(e)?,
        })
    }};
}

impl ScannedLink<'_> {
    /// The event and its links, copied out of the rows they borrow from.
    pub fn to_stored(&self) -> StoredEvent {
        StoredEvent {
            event: self.event.to_event(),
            prev_hash: self.prev_hash.to_owned(),
            hash: self.hash.to_owned(),
        }
    }
}

fn parse_hash(hex_text: &str) -> Result<[u8; 32], StoreError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut out).map_err(|_| corrupt("bad chain hash"))?;
    Ok(out)
}

/// A new organization's chain head, at the genesis (`$2`: [`ZERO_HASH`]).
const CREATE_HEAD: &str = "INSERT INTO audit_heads (org_id, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (org_id) DO NOTHING";
/// An organization's chain head: its last sequence number and hash.
const READ_HEAD: &str = "SELECT seq, hash FROM audit_heads WHERE org_id = $1";

/// Opens `org`'s chain at the genesis in the transaction on `c`, which is bound to `org`. On
/// PostgreSQL the application role may not write heads; a function that runs as the schema's
/// owner opens the chain there (migration 8).
pub(crate) async fn create_head(c: &mut Conn, org: OrgId) -> Result<(), StoreError> {
    match c {
        Conn::Pg(tx) => sqlx::query("SELECT rampart_audit_open_chain($1)")
            .bind(org.to_string())
            .execute(&mut **tx)
            .await
            .map(drop),
        Conn::Sqlite(_) => execute!(c, CREATE_HEAD, org.to_string(), ZERO_HASH).map(drop),
    }
    .map_err(StoreError::from_sqlx)
}

/// Reads `org`'s chain head (its last sequence number and hash); `None` when the organization
/// has no head row yet. In a SQLite write transaction, which holds the one writer until it
/// commits, nothing can move it before then; the head advances with the event's insert (the
/// `audit_events_advance_head` trigger, migration 6).
async fn read_head(c: &mut Conn, org: OrgId) -> Result<Option<(i64, String)>, StoreError> {
    fetch_optional!(c, READ_HEAD, [org.to_string()], |r| Ok((
        r.try_get::<i64, _>("seq").map_err(StoreError::from_sqlx)?,
        r.try_get::<String, _>("hash")
            .map_err(StoreError::from_sqlx)?
    )))
}

/// An unsealed event's row in `audit_pending`, its columns as `$1`–`$16`.
macro_rules! insert_pending {
    () => {
        "INSERT INTO audit_pending (org_id, workspace_id, at, actor, auth_method, method, path, \
         action, target, args, status, error_code, duration_ms, idempotency_key, request_id, client_ip) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    };
}
const INSERT_PENDING: &str = insert_pending!();

/// [`INSERT_PENDING`] with a key's response stored in the same statement, `$17`–`$22`.
const INSERT_PENDING_COMPLETING: &str = concat!(
    "WITH done AS (",
    crate::idempotency::complete_sql!("$17", "$18", "$19", "$20", "$21", "$22"),
    ") ",
    insert_pending!()
);

/// Binds `$1`–`$16` of [`INSERT_PENDING`]: `org`'s event `new`, recorded at `at`.
macro_rules! pending {
    ($query:expr, $org:expr, $new:expr, $at:expr) => {{
        let new: NewEvent = $new;
        $query
            .bind($org.to_string())
            .bind(new.workspace.map(|w| w.to_string()))
            .bind($at)
            .bind(new.actor.label())
            .bind(new.auth_method.map(AuthMethod::as_str))
            .bind(new.method)
            .bind(new.path)
            .bind(new.action)
            .bind(new.target)
            .bind(new.args)
            .bind(i32::from(new.status))
            .bind(new.error_code.map(ErrorCode::as_str))
            .bind(new.duration_ms)
            .bind(new.idempotency_key)
            .bind(new.request_id)
            .bind(new.client_ip)
    }};
}

/// A request's idempotency key and the response to store under it, written with its event.
struct Completion<'a> {
    ws: String,
    actor: String,
    key: &'a str,
    response: &'a StoredResponse,
}

/// The key's stored response, then the chain's head: one command on SQLite.
const COMPLETE_THEN_READ_HEAD: &str = concat!(
    crate::idempotency::complete_sql!("$1", "$2", "$3", "$4", "$5", "$6"),
    "; SELECT seq, hash FROM audit_heads WHERE org_id = $7"
);

/// A linked event's insert on SQLite, its organization and [`LINK_COLUMNS`] as `$1`–`$19`.
macro_rules! insert_event {
    () => {
        concat!(
            "INSERT INTO audit_events (org_id, ",
            link_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
        )
    };
}
const INSERT_EVENT: &str = insert_event!();
/// [`INSERT_EVENT`], then a key's stored response (`$20`–`$25`): one command on SQLite.
macro_rules! insert_event_completing {
    () => {
        concat!(
            insert_event!(),
            "; ",
            crate::idempotency::complete_sql!("$20", "$21", "$22", "$23", "$24", "$25")
        )
    };
}
const INSERT_EVENT_COMPLETING: &str = insert_event_completing!();
/// The two inserts above as a request's last command on SQLite's writer, ending its savepoint
/// and opening the next one's ([`crate::writer::renew_savepoint`]).
const INSERT_EVENT_LAST: &str = concat!(insert_event!(), "; ", renew_savepoint!());
const INSERT_EVENT_COMPLETING_LAST: &str =
    concat!(insert_event_completing!(), "; ", renew_savepoint!());

/// What SQLite answers when an event does not follow its organization's chain head (the
/// `audit_events_follow_head` trigger, SQLite's migration 7).
const NOT_FOLLOWING: &str = "audit event does not follow its chain head";

/// Whether SQLite refused an event because it does not follow its chain head.
fn refused_as_not_following(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.message().contains(NOT_FOLLOWING))
}

/// Appends `new` to `org`'s chain in the transaction on `c`.
pub(crate) async fn append_on(
    c: &mut Conn,
    org: OrgId,
    new: NewEvent,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    append_with(c, org, new, at, None, false).await
}

/// Appends `new` to `org`'s chain in the transaction on `c`, storing a key's response first
/// when there is one, in as few round trips as each backend allows.
///
/// On PostgreSQL the event is recorded unsealed (`audit_pending`, with the key's update as a
/// data-modifying CTE of the same statement) and sealed into the chain by the deferred trigger
/// of migration 7 while the transaction commits, so the organization's head is locked only for
/// the commit itself, not from here on. On SQLite the transaction already holds the one writer,
/// and the event is linked here: to the head the writer last moved, when it remembers one, in
/// one command with the key's update ([`crate::head_hints`]); otherwise, or when the database
/// refuses that link, to the head as read (with the key's update in the same command). When
/// the append is the `last` thing its transaction does before it commits, that command on
/// SQLite's writer also ends the request's savepoint and opens the next request's.
async fn append_with(
    c: &mut Conn,
    org: OrgId,
    new: NewEvent,
    at: DateTime<Utc>,
    completion: Option<Completion<'_>>,
    last: bool,
) -> Result<(), StoreError> {
    let at = db_time(at);
    let new = new.storable();
    let tx = match c {
        Conn::Pg(tx) => {
            let sql = match completion {
                Some(_) => INSERT_PENDING_COMPLETING,
                None => INSERT_PENDING,
            };
            let mut query = pending!(sqlx::query(sql), org, new, at);
            if let Some(k) = completion {
                query = query
                    .bind(i32::from(k.response.status))
                    .bind(k.response.headers.as_str())
                    .bind(k.response.body.as_str())
                    .bind(k.ws)
                    .bind(k.actor)
                    .bind(k.key);
            }
            query
                .execute(&mut **tx)
                .await
                .map_err(StoreError::from_sqlx)?;
            return Ok(());
        }
        Conn::Sqlite(tx) => tx,
    };
    let mut event = AuditEvent {
        org,
        seq: 0,
        workspace: new.workspace,
        at,
        actor: new.actor.label(),
        auth_method: new.auth_method.map(|m| m.as_str().to_owned()),
        method: new.method,
        path: new.path,
        action: new.action,
        target: new.target,
        args: new.args,
        status: new.status,
        error_code: new.error_code.map(|c| c.as_str().to_owned()),
        duration_ms: new.duration_ms,
        idempotency_key: new.idempotency_key,
        request_id: new.request_id,
        client_ip: new.client_ip,
    };
    let hints = match &*tx {
        SqliteTx::Write(lease) => Some(lease.heads()),
        SqliteTx::Read(_) => None,
    };
    if let Some(hints) = &hints
        && let Some(expected) = hints.get(org)
    {
        match insert_linked(tx, &mut event, expected, completion.as_ref(), last).await {
            Ok(head) => {
                hints.set(org, head);
                return Ok(());
            }
            // Refused whole (nothing of the command stored): link to the head as read.
            Err(e) if refused_as_not_following(&e) => hints.forget(org),
            Err(e) => return Err(StoreError::from_sqlx(e)),
        }
    }
    let stored = match &completion {
        None => sqlx::query_as::<_, (i64, String)>(READ_HEAD)
            .bind(org.to_string())
            .fetch_optional(&mut **tx)
            .await
            .map_err(StoreError::from_sqlx)?,
        Some(k) => sqlx::query_as::<_, (i64, String)>(COMPLETE_THEN_READ_HEAD)
            .bind(i32::from(k.response.status))
            .bind(k.response.headers.as_str())
            .bind(k.response.body.as_str())
            .bind(k.ws.as_str())
            .bind(k.actor.as_str())
            .bind(k.key)
            .bind(org.to_string())
            .fetch_optional(&mut **tx)
            .await
            .map_err(StoreError::from_sqlx)?,
    };
    let (seq, hash_hex) = match stored {
        Some(head) => head,
        None => {
            sqlx::query(CREATE_HEAD)
                .bind(org.to_string())
                .bind(ZERO_HASH)
                .execute(&mut **tx)
                .await
                .map_err(StoreError::from_sqlx)?;
            (0, ZERO_HASH.to_owned())
        }
    };
    let head = Head {
        seq,
        hash: parse_hash(&hash_hex)?,
    };
    let head = insert_linked(tx, &mut event, head, None, last)
        .await
        .map_err(StoreError::from_sqlx)?;
    if let Some(hints) = hints {
        hints.set(org, head);
    }
    Ok(())
}

/// Numbers `event` after `head`, links it to `head`'s hash and inserts it, with the key's
/// response in the same command when there is one; returns the head the insert moved to. The
/// head advances with the insert (the `audit_events_advance_head` trigger, migration 6), and
/// the insert is refused whole unless `head` is the stored one (migration 7). As the request's
/// `last` command it also renews the writer's savepoint (see [`crate::writer`]), only once
/// everything before it in the command has succeeded.
async fn insert_linked(
    tx: &mut SqliteTx,
    event: &mut AuditEvent,
    head: Head,
    completion: Option<&Completion<'_>>,
    last: bool,
) -> Result<Head, sqlx::Error> {
    event.seq = head.seq + 1;
    let hash = event.chain_hash(&head.hash);
    let sql = match (completion, last) {
        (Some(_), false) => INSERT_EVENT_COMPLETING,
        (None, false) => INSERT_EVENT,
        (Some(_), true) => INSERT_EVENT_COMPLETING_LAST,
        (None, true) => INSERT_EVENT_LAST,
    };
    let e = &*event;
    let mut query = sqlx::query(sql)
        .bind(e.org.to_string())
        .bind(e.seq)
        .bind(e.workspace.map(|w| w.to_string()))
        .bind(e.at)
        .bind(e.actor.as_str())
        .bind(e.auth_method.as_deref())
        .bind(e.method.as_str())
        .bind(e.path.as_str())
        .bind(e.action.as_str())
        .bind(e.target.as_deref())
        .bind(e.args.as_str())
        .bind(i32::from(e.status))
        .bind(e.error_code.as_deref())
        .bind(e.duration_ms)
        .bind(e.idempotency_key.as_deref())
        .bind(e.request_id.as_str())
        .bind(e.client_ip.as_deref())
        .bind(hex::encode(head.hash))
        .bind(hex::encode(hash));
    if let Some(k) = completion {
        query = query
            .bind(i32::from(k.response.status))
            .bind(k.response.headers.as_str())
            .bind(k.response.body.as_str())
            .bind(k.ws.as_str())
            .bind(k.actor.as_str())
            .bind(k.key);
    }
    query.execute(&mut **tx).await?;
    if last && let SqliteTx::Write(lease) = tx {
        lease.renewed();
    }
    Ok(Head {
        seq: event.seq,
        hash,
    })
}

/// Appends an event to the transaction's organization ledger, in the same transaction as the
/// change it records: both commit or neither does.
pub async fn append(tx: &mut TenantTx, new: NewEvent, at: DateTime<Utc>) -> Result<(), StoreError> {
    let org = tx
        .org()
        .ok_or_else(|| corrupt("tenant transaction without an organization"))?;
    append_with(&mut tx.conn, org, new, at, None, false).await
}

/// Appends the event of a change that succeeded and, for a request sent with an idempotency
/// key, stores its response under that key, then commits: the event, the response and the
/// change are stored together or not at all. It takes the transaction so that nothing can run
/// in it after the append, which on SQLite's writer is the request's last command and also
/// hands the writer on to the next request (see [`append_with`]).
pub async fn commit_with_event(
    mut tx: TenantTx,
    completed: Option<(&str, &StoredResponse)>,
    new: NewEvent,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let org = tx
        .org()
        .ok_or_else(|| corrupt("tenant transaction without an organization"))?;
    let completion = completed.map(|(key, response)| Completion {
        ws: tx.ws(),
        actor: tx.actor_label(),
        key,
        response,
    });
    append_with(&mut tx.conn, org, new, at, completion, true).await?;
    tx.commit().await
}

/// The statement of a page of a workspace's events under `filter`, newest first: `$1` the
/// organization, `$2` the workspace, `$3` the cursor (`seq <`), then one placeholder for each
/// filter present, in the order actor, action, status, since, until, and last the limit.
///
/// Only the filters present become predicates (a `$n IS NULL OR …` for an absent one keeps the
/// planners from using an index for the present ones). The page walks the organization's
/// chain backwards from the cursor along its primary key `(org_id, seq)`, or, with a time
/// filter, the planner may take `audit_by_org_time`; actor, action and status are checked on
/// the way. Per-column indexes on actor and action were dropped for the append's sake
/// (migration 5), so such a filter reads back until it has a page, at most the ledger.
pub fn list_sql(filter: &EventFilter) -> String {
    let mut sql = format!(
        "SELECT {LINK_COLUMNS} FROM audit_events WHERE org_id = $1 AND workspace_id = $2 AND seq < $3"
    );
    let mut n = 3;
    let mut add = |predicate: &str| {
        n += 1;
        sql.push_str(&format!(" AND {predicate} ${n}"));
    };
    if filter.actor.is_some() {
        add("actor =");
    }
    if filter.action.is_some() {
        add("action =");
    }
    if filter.status.is_some() {
        add("status =");
    }
    if filter.since.is_some() {
        add("at >=");
    }
    if filter.until.is_some() {
        add("at <");
    }
    format!("{sql} ORDER BY seq DESC LIMIT ${}", n + 1)
}

/// Binds [`list_sql`]'s arguments, in its order, to a query on either backend.
macro_rules! bind_events {
    ($query:expr, $org:expr, $ws:expr, $filter:expr, $limit:expr) => {{
        let f: &EventFilter = $filter;
        // A plain `seq < $3` seeks the primary key; no cursor means from the newest.
        let mut q = $query
            .bind($org)
            .bind($ws)
            .bind(f.before_seq.unwrap_or(i64::MAX));
        if let Some(actor) = &f.actor {
            q = q.bind(actor.clone());
        }
        if let Some(action) = &f.action {
            q = q.bind(action.clone());
        }
        if let Some(status) = f.status {
            q = q.bind(i32::from(status));
        }
        if let Some(since) = f.since {
            q = q.bind(db_time(since));
        }
        if let Some(until) = f.until {
            q = q.bind(db_time(until));
        }
        q.bind($limit)
    }};
}

/// A page of this workspace's events, newest first.
pub async fn list(
    tx: &mut TenantTx,
    filter: &EventFilter,
    limit: u32,
) -> Result<Vec<StoredEvent>, StoreError> {
    let org = tx
        .org()
        .ok_or_else(|| corrupt("tenant transaction without an organization"))?;
    let ws = tx.ws();
    let sql = list_sql(filter);
    let limit = i64::from(limit);
    match &mut tx.conn {
        Conn::Sqlite(c) => bind_events!(
            sqlx::query(sqlx::AssertSqlSafe(sql)),
            org.to_string(),
            ws,
            filter,
            limit
        )
        .fetch_all(&mut **c)
        .await
        .map_err(StoreError::from_sqlx)?
        .iter()
        .map(|r| scanned!(r, org).map(|l| l.to_stored()))
        .collect(),
        Conn::Pg(c) => bind_events!(
            sqlx::query(sqlx::AssertSqlSafe(sql)),
            org.to_string(),
            ws,
            filter,
            limit
        )
        .fetch_all(&mut **c)
        .await
        .map_err(StoreError::from_sqlx)?
        .iter()
        .map(|r| scanned!(r, org).map(|l| l.to_stored()))
        .collect(),
    }
}

/// A transaction on one organization's ledger, for failure events, the operator's CLI
/// actions, verification, export and retention.
pub struct LedgerTx {
    org: OrgId,
    conn: Conn,
}

impl Store {
    /// Opens a transaction on the ledger of the organization `grant` stands in: only a tenant
    /// or an operator grant opens a ledger.
    ///
    /// ```compile_fail
    /// // A bare organization id opens nothing:
    /// async fn open(store: &rampart_store::Store, org: rampart_core::OrgId) {
    ///     let _ = store.ledger(&org, rampart_store::Mode::Read).await;
    /// }
    /// ```
    pub async fn ledger(&self, grant: &impl OrgGrant, mode: Mode) -> Result<LedgerTx, StoreError> {
        self.org_ledger(grant.ledger_org(), mode).await
    }

    /// Appends `event` to `org`'s ledger in a transaction of its own, and can do nothing else
    /// (no read, no prune): the door for recording a request whose own transaction never
    /// opened or rolled back, refused before or without a grant among them (issue 32 caps how
    /// many of those an anonymous caller can cause).
    pub async fn append_event_apart(
        &self,
        org: OrgId,
        event: NewEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut ledger = self.org_ledger(org, Mode::Write).await?;
        ledger.append(event, now).await?;
        ledger.commit().await
    }

    /// Opens a transaction bound to `org`'s ledger, for the store's own recording in ledgers
    /// it has already established a right to (a person's own organizations, a job's subject).
    pub(crate) async fn org_ledger(&self, org: OrgId, mode: Mode) -> Result<LedgerTx, StoreError> {
        let e = StoreError::from_sqlx;
        let conn = match (&*self.0, mode) {
            (Backend::Sqlite { readers, .. }, Mode::Read) => {
                Conn::sqlite_read(readers.begin().await.map_err(e)?)
            }
            (Backend::Sqlite { writes, .. }, Mode::Write) => Conn::sqlite_write(writes).await?,
            (Backend::Postgres { pool, .. }, mode) => pg_ledger(pool, org, mode).await?,
        };
        Ok(LedgerTx { org, conn })
    }

    /// Opens a read-only transaction on `org`'s ledger for reading its whole chain
    /// ([`LedgerTx::scan_after`]), in one snapshot like [`Mode::Read`], on a small pool of its
    /// own with sqlx's statement logging off (the scan is one statement as long as the chain).
    /// On SQLite its connection holds at most three chunks of the chain in memory (one being
    /// checked, one waiting, one being built); a [`Mode::Read`] connection would let up to 51
    /// pile up.
    pub async fn chain_reader(&self, grant: &impl OrgGrant) -> Result<LedgerTx, StoreError> {
        let org = grant.ledger_org();
        match &*self.0 {
            Backend::Sqlite { scans, .. } => Ok(LedgerTx {
                org,
                conn: Conn::sqlite_read(scans.begin().await.map_err(StoreError::from_sqlx)?),
            }),
            Backend::Postgres { scans, .. } => Ok(LedgerTx {
                org,
                conn: pg_ledger(scans, org, Mode::Read).await?,
            }),
        }
    }

    /// Every organization id (for the operator's verify, export and retention runs).
    pub async fn org_ids(&self) -> Result<Vec<OrgId>, StoreError> {
        let mut c = self.platform_read().await?;
        fetch_all!(
            &mut c,
            "SELECT id FROM organizations ORDER BY id",
            [],
            |r| id(r
                .try_get::<String, _>("id")
                .map_err(StoreError::from_sqlx)?)
        )
    }
}

/// A PostgreSQL transaction on `pool` bound to `org`'s ledger.
async fn pg_ledger(pool: &PgPool, org: OrgId, mode: Mode) -> Result<Conn, StoreError> {
    let e = StoreError::from_sqlx;
    let mut tx = match mode {
        // One snapshot for every statement: a verify reads the chain and then the head, and
        // under READ COMMITTED an append committed in between would show a head past the
        // chain's end.
        Mode::Read => {
            pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
        }
        Mode::Write => pool.begin().await,
    }
    .map_err(e)?;
    sqlx::query("SELECT set_config('rampart.org_id', $1, true)")
        .bind(org.to_string())
        .execute(&mut *tx)
        .await
        .map_err(e)?;
    Ok(Conn::Pg(tx))
}

impl LedgerTx {
    /// The organization.
    pub fn org(&self) -> OrgId {
        self.org
    }

    /// Appends an event in this transaction.
    pub async fn append(&mut self, new: NewEvent, at: DateTime<Utc>) -> Result<(), StoreError> {
        append_on(&mut self.conn, self.org, new, at).await
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.conn.commit().await
    }

    /// Hands every event after `after_seq` to `each`, in chain order, all read from this
    /// transaction's one snapshot; stops at the first error `each` returns. PostgreSQL streams
    /// the rows, read while the previous ones are processed; SQLite reads them in chunks
    /// ([`crate::ledger_scan`] says why).
    pub async fn scan_after<E: From<StoreError>>(
        &mut self,
        after_seq: i64,
        mut each: impl FnMut(ScannedLink<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let c = match &mut self.conn {
            Conn::Sqlite(c) => {
                return crate::ledger_scan::scan_sqlite(c, self.org, after_seq, each).await;
            }
            Conn::Pg(c) => c,
        };
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM audit_events WHERE org_id = $1 AND seq > $2 ORDER BY seq"
        );
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.org.to_string())
            .bind(after_seq)
            .fetch(&mut **c);
        while let Some(row) = rows.try_next().await.map_err(StoreError::from_sqlx)? {
            each(scanned!(&row, self.org, try_get_unchecked)?)?;
        }
        Ok(())
    }

    /// Up to `limit` events after `after_seq`, in chain order, optionally within a time range.
    pub async fn events_after(
        &mut self,
        after_seq: i64,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        fetch_all!(
            &mut self.conn,
            sqlx::AssertSqlSafe(format!(
                "SELECT {LINK_COLUMNS} FROM audit_events WHERE org_id = $1 AND seq > $2 \
                 AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at < $4) ORDER BY seq LIMIT $5"
            )),
            [
                self.org.to_string(),
                after_seq,
                since.map(db_time),
                until.map(db_time),
                i64::from(limit)
            ],
            |r| scanned!(r, self.org).map(|l| l.to_stored())
        )
    }

    /// The chain's head: last sequence number and hash.
    pub async fn head(&mut self) -> Result<(i64, [u8; 32]), StoreError> {
        match read_head(&mut self.conn, self.org).await? {
            Some((seq, hash)) => Ok((seq, parse_hash(&hash)?)),
            None => Ok((0, GENESIS)),
        }
    }

    /// Events of this organization recorded but never sealed into its chain. Always 0 unless
    /// the sealing trigger of migration 7 was disabled: on PostgreSQL a pending event lives only
    /// inside the transaction that records it, and SQLite links events as they are appended.
    pub async fn unsealed(&mut self) -> Result<i64, StoreError> {
        match &mut self.conn {
            Conn::Sqlite(_) => Ok(0),
            Conn::Pg(tx) => {
                sqlx::query_scalar("SELECT count(*) FROM audit_pending WHERE org_id = $1")
                    .bind(self.org.to_string())
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(StoreError::from_sqlx)
            }
        }
    }

    /// The newest retention checkpoint, if any.
    pub async fn latest_checkpoint(&mut self) -> Result<Option<Checkpoint>, StoreError> {
        fetch_optional!(
            &mut self.conn,
            "SELECT seq, hash FROM audit_checkpoints WHERE org_id = $1 ORDER BY seq DESC LIMIT 1",
            [self.org.to_string()],
            |r| Ok(Checkpoint {
                seq: r.try_get("seq").map_err(StoreError::from_sqlx)?,
                hash: r.try_get("hash").map_err(StoreError::from_sqlx)?
            })
        )
    }

    /// Removes events older than `cutoff`, first recording a checkpoint at the newest of them so
    /// that verification still proves everything that remains. Returns the checkpoint, if any
    /// event was old enough.
    pub async fn prune_before(
        &mut self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let last: Option<Checkpoint> = fetch_optional!(
            &mut self.conn,
            "SELECT seq, hash FROM audit_events WHERE org_id = $1 AND at < $2 ORDER BY seq DESC LIMIT 1",
            [self.org.to_string(), db_time(cutoff)],
            |r| Ok(Checkpoint {
                seq: r.try_get("seq").map_err(StoreError::from_sqlx)?,
                hash: r.try_get("hash").map_err(StoreError::from_sqlx)?
            })
        )?;
        let Some(cp) = last else { return Ok(None) };
        execute!(&mut self.conn,
            "INSERT INTO audit_checkpoints (org_id, seq, hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (org_id, seq) DO NOTHING",
            self.org.to_string(), cp.seq, cp.hash.clone(), db_time(now))
        .map_err(StoreError::from_sqlx)?;
        execute!(
            &mut self.conn,
            "DELETE FROM audit_events WHERE org_id = $1 AND seq <= $2",
            self.org.to_string(),
            cp.seq
        )
        .map_err(StoreError::from_sqlx)?;
        Ok(Some(cp))
    }
}

#[cfg(test)]
mod tests {
    use rampart_core::{Email, Plan};

    use super::*;
    use crate::head_hints::HeadHints;
    use crate::{PoolSettings, writer};

    /// A fixed time: what is recorded when does not matter here.
    fn at() -> DateTime<Utc> {
        "2026-12-07T03:00:00Z".parse().unwrap()
    }

    fn event(i: usize) -> NewEvent {
        NewEvent {
            actor: rampart_core::Actor::Operator.into(),
            method: "CLI".into(),
            path: "rampart test".into(),
            action: "test.event".into(),
            args: format!(r#"{{"i":{i}}}"#),
            status: 200,
            request_id: format!("req_{i}"),
            ..NewEvent::default()
        }
    }

    /// A migrated SQLite store in `dir` with one organization.
    async fn store_with_org(dir: &tempfile::TempDir) -> (Store, OrgId) {
        let store = Store::open_sqlite(&dir.path().join("a.db"), PoolSettings::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let email = Email::parse("owner@example.com").unwrap();
        let org = store
            .create_org("Alpha", Plan::Free, &email, at(), None)
            .await
            .unwrap()
            .org_id;
        (store, org)
    }

    async fn append_one(store: &Store, org: OrgId, i: usize) {
        let mut ledger = store
            .ledger(&rampart_core::OperatorGrant::new(org), Mode::Write)
            .await
            .unwrap();
        ledger.append(event(i), at()).await.unwrap();
        ledger.commit().await.unwrap();
    }

    async fn hints(store: &Store) -> std::sync::Arc<HeadHints> {
        let Backend::Sqlite { writes, .. } = &*store.0 else {
            panic!("a SQLite store")
        };
        let lease: writer::Lease = writes.lease().await.unwrap();
        lease.heads()
    }

    /// Every stored event in order, each checked to follow the one before it.
    async fn chain(store: &Store, org: OrgId) -> Vec<StoredEvent> {
        let mut ledger = store
            .ledger(&rampart_core::OperatorGrant::new(org), Mode::Read)
            .await
            .unwrap();
        let events = ledger.events_after(0, None, None, 1000).await.unwrap();
        let mut prev = GENESIS;
        for (n, e) in events.iter().enumerate() {
            assert_eq!(e.event.seq, i64::try_from(n).unwrap() + 1, "no gap");
            assert_eq!(e.prev_hash, hex::encode(prev), "links to the one before");
            assert_eq!(e.hash, hex::encode(e.event.chain_hash(&prev)));
            prev = e.event.chain_hash(&prev);
        }
        let head = ledger.head().await.unwrap();
        assert_eq!(head, (i64::try_from(events.len()).unwrap(), prev));
        events
    }

    /// The writer remembers the head it moved, and a wrong memory (another process's append, a
    /// rollback) costs a refused insert, never a wrong link: the database refuses an event that
    /// does not follow its head (SQLite's migration 7).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_append_links_to_the_real_head_whatever_the_writer_remembers() {
        let dir = tempfile::tempdir().unwrap();
        let (store, org) = store_with_org(&dir).await;
        let hints = hints(&store).await;
        assert_eq!(hints.get(org), None);

        append_one(&store, org, 1).await;
        let stored = chain(&store, org).await;
        let remembered = hints.get(org).expect("the head it moved");
        assert_eq!(remembered.seq, 1);
        assert_eq!(hex::encode(remembered.hash), stored[0].hash);

        // Remembered right: linked without reading the head.
        append_one(&store, org, 2).await;
        // Remembered wrong, by hash and by number, then forgotten.
        hints.set(
            org,
            Head {
                seq: 2,
                hash: [7; 32],
            },
        );
        append_one(&store, org, 3).await;
        hints.set(
            org,
            Head {
                seq: 9,
                hash: remembered.hash,
            },
        );
        append_one(&store, org, 4).await;
        hints.forget(org);
        append_one(&store, org, 5).await;
        // An append that rolls back leaves the memory one ahead of the chain.
        let mut ledger = store
            .ledger(&rampart_core::OperatorGrant::new(org), Mode::Write)
            .await
            .unwrap();
        ledger.append(event(99), at()).await.unwrap();
        drop(ledger);
        assert_eq!(hints.get(org).map(|h| h.seq), Some(6));
        append_one(&store, org, 6).await;

        let events = chain(&store, org).await;
        let args: Vec<&str> = events.iter().map(|e| e.event.args.as_str()).collect();
        assert_eq!(
            args,
            [
                "{\"i\":1}",
                "{\"i\":2}",
                "{\"i\":3}",
                "{\"i\":4}",
                "{\"i\":5}",
                "{\"i\":6}"
            ]
        );
        let head = hints.get(org).unwrap();
        assert_eq!(
            (head.seq, hex::encode(head.hash)),
            (6, events[5].hash.clone())
        );
    }

    #[tokio::test]
    async fn sqlite_refuses_an_event_that_does_not_follow_its_head_with_the_text_the_append_expects()
     {
        let dir = tempfile::tempdir().unwrap();
        let (store, org) = store_with_org(&dir).await;
        let mut ledger = store
            .ledger(&rampart_core::OperatorGrant::new(org), Mode::Write)
            .await
            .unwrap();
        let Conn::Sqlite(tx) = &mut ledger.conn else {
            panic!("a SQLite store")
        };
        let mut e = AuditEvent {
            org,
            seq: 0,
            workspace: None,
            at: db_time(at()),
            actor: "operator".into(),
            auth_method: None,
            method: "CLI".into(),
            path: "rampart test".into(),
            action: "test.forged".into(),
            target: None,
            args: "{}".into(),
            status: 200,
            error_code: None,
            duration_ms: 0,
            idempotency_key: None,
            request_id: "req_forged".into(),
            client_ip: None,
        };
        for wrong in [
            Head {
                seq: 0,
                hash: [1; 32],
            },
            Head {
                seq: 1,
                hash: GENESIS,
            },
        ] {
            let refused = insert_linked(tx, &mut e, wrong, None, false)
                .await
                .unwrap_err();
            assert!(refused_as_not_following(&refused), "{refused}");
        }
        insert_linked(
            tx,
            &mut e,
            Head {
                seq: 0,
                hash: GENESIS,
            },
            None,
            false,
        )
        .await
        .unwrap();
        ledger.commit().await.unwrap();
        assert_eq!(chain(&store, org).await.len(), 1);
    }
}
