//! The job queue's storage: the `jobs` table (migration 10). The queue itself, its worker, its
//! retry policy and its job kinds are in `rampart-jobs`; this module only moves rows, with the
//! times it is given (the caller's clock), so tests move time instead of sleeping.
//!
//! A platform table (no row-level security: workers claim across organizations), holding ids
//! and no customer data; see the migration's header. Claiming takes a **lease**: a running
//! job's `lease_token` names the worker's claim and `lease_until` when it lapses. Every later
//! write of that run (extend, complete, retry, bury, release) names the token and changes
//! nothing once the lease has passed to another worker, so a worker that lost its lease
//! cannot overwrite the outcome of the run that replaced it.
//!
//! On PostgreSQL a claim is one statement that locks the rows it takes with
//! `FOR UPDATE SKIP LOCKED`: two workers never take the same job and neither waits for the
//! other. On SQLite it runs on the store's one writer (after a read on a reader finds anything
//! due, so an idle queue costs no turn on the writer), which serializes claims.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rampart_core::{JobId, OrgId, UserId, WorkspaceId};
use serde::Serialize;
use sqlx::Row;

use crate::audit::NewEvent;
use crate::conn::{Conn, execute, fetch_all, fetch_optional, id, parse_id};
use crate::error::corrupt;
use crate::{Backend, Store, StoreError, db_time};

/// Longest `last_error` kept, in characters (the column's limit is 1,024).
pub const MAX_ERROR_CHARS: usize = 1000;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for its `run_at`, or for a free worker.
    Queued,
    /// Leased by a worker.
    Running,
    /// Finished successfully.
    Done,
    /// Out of attempts, or refused for good: waits for an operator (`rampart jobs retry`).
    Dead,
}

impl JobState {
    /// The stored (and CLI) name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "queued" => Ok(JobState::Queued),
            "running" => Ok(JobState::Running),
            "done" => Ok(JobState::Done),
            "dead" => Ok(JobState::Dead),
            other => Err(format!(
                "unknown job state `{other}` (queued, running, done or dead)"
            )),
        }
    }
}

/// Whom a job acts for: stored beside the payload so that an operator's re-queue is recorded
/// in the right ledger without reading the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobSubject {
    /// No tenant: the job's work reaches the platform (retention of every ledger).
    #[default]
    Platform,
    /// One organization's data, optionally one workspace of it.
    Org {
        /// The organization.
        org: OrgId,
        /// The workspace, if the job acts on one.
        workspace: Option<WorkspaceId>,
    },
    /// One person (account mail).
    User(UserId),
}

impl JobSubject {
    fn columns(self) -> (Option<String>, Option<String>, Option<String>) {
        match self {
            JobSubject::Platform => (None, None, None),
            JobSubject::Org { org, workspace } => (
                Some(org.to_string()),
                workspace.map(|w| w.to_string()),
                None,
            ),
            JobSubject::User(user) => (None, None, Some(user.to_string())),
        }
    }

    fn from_columns(
        org: Option<String>,
        workspace: Option<String>,
        user: Option<String>,
    ) -> Result<Self, StoreError> {
        Ok(match (org, workspace, user) {
            (None, None, None) => JobSubject::Platform,
            (Some(org), workspace, None) => JobSubject::Org {
                org: parse_id(&org)?,
                workspace: workspace.as_deref().map(parse_id).transpose()?,
            },
            (None, None, Some(user)) => JobSubject::User(parse_id(&user)?),
            _ => return Err(corrupt("a job names both a tenant and a user")),
        })
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, Copy)]
pub struct NewJob<'a> {
    /// The kind's stable name.
    pub kind: &'a str,
    /// The serialized job: ids only, never a secret or personal data.
    pub payload: &'a str,
    /// Whom it acts for.
    pub subject: JobSubject,
    /// Attempts before it is dead.
    pub max_attempts: u32,
    /// Not before this time.
    pub run_at: DateTime<Utc>,
    /// At most one job with this key is ever stored (a scheduled run's slot).
    pub dedup_key: Option<&'a str>,
}

/// What [`Jobs::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new job.
    Added(JobId),
    /// A job with the same dedup key exists; nothing was added.
    Duplicate,
}

/// A job a worker has just claimed.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    /// The job.
    pub id: JobId,
    /// Its kind.
    pub kind: String,
    /// Its payload.
    pub payload: String,
    /// Whom it acts for.
    pub subject: JobSubject,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The claim's token: every later write of this run names it.
    pub lease: String,
}

/// A job as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    /// The job.
    pub id: JobId,
    /// Its kind.
    pub kind: String,
    /// Where it is.
    pub state: JobState,
    /// Its payload (ids only).
    pub payload: String,
    /// The organization it acts for, if any.
    pub org_id: Option<OrgId>,
    /// The workspace it acts in, if any.
    pub workspace_id: Option<WorkspaceId>,
    /// The person it concerns, if any.
    pub user_id: Option<UserId>,
    /// Attempts made (a running one included).
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// When it may run (next).
    pub run_at: DateTime<Utc>,
    /// When a running job's lease lapses.
    pub lease_until: Option<DateTime<Utc>>,
    /// Its dedup key, if any.
    pub dedup_key: Option<String>,
    /// The last failure, as the job's code wrote it for an operator.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it finished (done or dead).
    pub finished_at: Option<DateTime<Utc>>,
}

impl JobRecord {
    /// Whom it acts for.
    pub fn subject(&self) -> JobSubject {
        match (self.org_id, self.user_id) {
            (Some(org), _) => JobSubject::Org {
                org,
                workspace: self.workspace_id,
            },
            (None, Some(user)) => JobSubject::User(user),
            (None, None) => JobSubject::Platform,
        }
    }
}

/// What [`Jobs::requeue_dead`] did.
#[derive(Debug, Clone)]
pub struct Requeued {
    /// The job, queued again.
    pub job: JobRecord,
    /// The organizations whose ledgers record the re-queue.
    pub recorded_in: Vec<OrgId>,
}

const RECORD_COLUMNS: &str = "id, kind, state, payload, org_id, workspace_id, user_id, attempts, \
     max_attempts, run_at, lease_until, dedup_key, last_error, created_at, updated_at, finished_at";

fn opt_id<T: FromStr>(raw: Option<String>) -> Result<Option<T>, StoreError> {
    raw.as_deref().map(parse_id).transpose()
}

fn count(raw: i32) -> Result<u32, StoreError> {
    u32::try_from(raw).map_err(|_| corrupt("a negative job attempt count"))
}

macro_rules! record {
    ($r:expr) => {{
        let r = $r;
        let e = StoreError::from_sqlx;
        Ok::<_, StoreError>(JobRecord {
            id: id(r.try_get("id").map_err(e)?)?,
            kind: r.try_get("kind").map_err(e)?,
            state: r
                .try_get::<String, _>("state")
                .map_err(e)?
                .parse()
                .map_err(corrupt)?,
            payload: r.try_get("payload").map_err(e)?,
            org_id: opt_id(r.try_get("org_id").map_err(e)?)?,
            workspace_id: opt_id(r.try_get("workspace_id").map_err(e)?)?,
            user_id: opt_id(r.try_get("user_id").map_err(e)?)?,
            attempts: count(r.try_get("attempts").map_err(e)?)?,
            max_attempts: count(r.try_get("max_attempts").map_err(e)?)?,
            run_at: r.try_get("run_at").map_err(e)?,
            lease_until: r.try_get("lease_until").map_err(e)?,
            dedup_key: r.try_get("dedup_key").map_err(e)?,
            last_error: r.try_get("last_error").map_err(e)?,
            created_at: r.try_get("created_at").map_err(e)?,
            updated_at: r.try_get("updated_at").map_err(e)?,
            finished_at: r.try_get("finished_at").map_err(e)?,
        })
    }};
}

macro_rules! claimed {
    ($r:expr, $lease:expr) => {{
        let r = $r;
        let e = StoreError::from_sqlx;
        Ok::<_, StoreError>(ClaimedJob {
            id: id(r.try_get("id").map_err(e)?)?,
            kind: r.try_get("kind").map_err(e)?,
            payload: r.try_get("payload").map_err(e)?,
            subject: JobSubject::from_columns(
                r.try_get("org_id").map_err(e)?,
                r.try_get("workspace_id").map_err(e)?,
                r.try_get("user_id").map_err(e)?,
            )?,
            attempt: count(r.try_get("attempts").map_err(e)?)?,
            max_attempts: count(r.try_get("max_attempts").map_err(e)?)?,
            lease: $lease.to_owned(),
        })
    }};
}

/// Jobs due at `$now` (queued and past `run_at`) or abandoned (running, lease lapsed,
/// attempts left), of the kinds in `$kinds`, whose spelling differs between SQLite and
/// PostgreSQL.
macro_rules! claimable {
    ($now:literal, $kinds:literal) => {
        concat!(
            "kind IN ",
            $kinds,
            " AND ((state = 'queued' AND run_at <= ",
            $now,
            ") OR (state = 'running' AND lease_until <= ",
            $now,
            " AND attempts < max_attempts))"
        )
    };
}

/// Claims on SQLite: the store's one writer runs one claim at a time.
const CLAIM_SQLITE: &str = concat!(
    "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_token = $1, \
     lease_until = $2, updated_at = $3 WHERE id IN (SELECT id FROM jobs WHERE ",
    claimable!("$3", "(SELECT value FROM json_each($4))"),
    " ORDER BY run_at, id LIMIT $5) \
     RETURNING id, kind, payload, org_id, workspace_id, user_id, attempts, max_attempts"
);

/// Whether a claim has anything to do, read on a reader before it takes the writer: a job due
/// of a listed kind, or a lapsed lease of any kind (to claim again, or to bury).
const ANY_DUE_SQLITE: &str = "SELECT 1 FROM jobs WHERE (state = 'running' AND lease_until <= $1) \
     OR (state = 'queued' AND run_at <= $1 AND kind IN (SELECT value FROM json_each($2))) LIMIT 1";

/// Claims on PostgreSQL: the rows are locked as they are chosen, and rows another worker's
/// claim holds are skipped rather than waited for.
const CLAIM_POSTGRES: &str = concat!(
    "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_token = $1, \
     lease_until = $2, updated_at = $3 WHERE id IN (SELECT id FROM jobs WHERE ",
    claimable!("$3", "(SELECT unnest($4::text[]))"),
    " ORDER BY run_at, id LIMIT $5 FOR UPDATE SKIP LOCKED) \
     RETURNING id, kind, payload, org_id, workspace_id, user_id, attempts, max_attempts"
);

/// Running jobs whose lease lapsed on their last attempt: their worker stopped (a crash, a
/// kill) as often as they may run, so they are dead rather than claimable.
const REAP: &str = "UPDATE jobs SET state = 'dead', lease_token = NULL, lease_until = NULL, \
     finished_at = $1, updated_at = $1, last_error = 'attempt ' || attempts || ' of ' || max_attempts \
     || ' did not finish: its worker stopped before the job ended (the lease expired)' \
     WHERE state = 'running' AND lease_until <= $1 AND attempts >= max_attempts";

/// [`REAP`] on PostgreSQL, skipping rows another worker is deciding on.
const REAP_POSTGRES: &str = "UPDATE jobs SET state = 'dead', lease_token = NULL, lease_until = NULL, \
     finished_at = $1, updated_at = $1, last_error = 'attempt ' || attempts || ' of ' || max_attempts \
     || ' did not finish: its worker stopped before the job ended (the lease expired)' \
     WHERE id IN (SELECT id FROM jobs WHERE state = 'running' AND lease_until <= $1 \
     AND attempts >= max_attempts FOR UPDATE SKIP LOCKED)";

/// `s` cut to [`MAX_ERROR_CHARS`] characters, with NULs replaced (PostgreSQL stores none).
fn error_text(s: &str) -> String {
    let s = rampart_core::text::storable(s);
    match s.char_indices().nth(MAX_ERROR_CHARS) {
        None => s.into_owned(),
        Some((cut, _)) => format!("{}\u{2026}", &s[..cut]),
    }
}

/// The queue's table; see [`Store::jobs`].
#[derive(Debug, Clone, Copy)]
pub struct Jobs<'a>(&'a Store);

impl Store {
    /// The job queue's table.
    pub fn jobs(&self) -> Jobs<'_> {
        Jobs(self)
    }
}

impl Jobs<'_> {
    /// Stores a queued job; with a dedup key already taken, stores nothing and says so.
    pub async fn enqueue(
        &self,
        job: NewJob<'_>,
        now: DateTime<Utc>,
    ) -> Result<Enqueued, StoreError> {
        let (org, workspace, user) = job.subject.columns();
        let max_attempts = i32::try_from(job.max_attempts.max(1))
            .map_err(|_| corrupt("max_attempts too large"))?;
        let now = db_time(now);
        let new = JobId::generate();
        let mut c = self.0.platform_write().await?;
        let added = fetch_optional!(
            &mut c,
            "INSERT INTO jobs (id, kind, payload, org_id, workspace_id, user_id, state, attempts, \
             max_attempts, run_at, dedup_key, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $8, $9, $10, $10) \
             ON CONFLICT (dedup_key) DO NOTHING RETURNING id",
            [
                new.to_string(),
                job.kind,
                job.payload,
                org,
                workspace,
                user,
                max_attempts,
                db_time(job.run_at),
                job.dedup_key,
                now
            ],
            |r| id::<JobId>(r.try_get("id").map_err(StoreError::from_sqlx)?)
        )?;
        c.commit().await?;
        Ok(match added {
            Some(id) => Enqueued::Added(id),
            None => Enqueued::Duplicate,
        })
    }

    /// Claims up to `limit` jobs of `kinds` that are due at `now` (or whose lease lapsed),
    /// leasing them to `token` until `lease_until`; each claim counts as an attempt. First
    /// buries, as dead, running jobs whose lease lapsed on their last attempt.
    pub async fn claim(
        &self,
        kinds: &[&str],
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        token: &str,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        if kinds.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let e = StoreError::from_sqlx;
        let (now, lease_until) = (db_time(now), db_time(lease_until));
        let limit = i64::from(limit);
        match &*self.0.0 {
            Backend::Sqlite { readers, .. } => {
                let kinds = serde_json::to_string(kinds).map_err(corrupt)?;
                let due: Option<i64> = sqlx::query_scalar(ANY_DUE_SQLITE)
                    .bind(now)
                    .bind(&kinds)
                    .fetch_optional(readers)
                    .await
                    .map_err(e)?;
                if due.is_none() {
                    return Ok(Vec::new());
                }
                let mut c = self.0.platform_write().await?;
                let Conn::Sqlite(tx) = &mut c else {
                    return Err(corrupt("a SQLite store opened a PostgreSQL transaction"));
                };
                sqlx::query(REAP)
                    .bind(now)
                    .execute(&mut **tx)
                    .await
                    .map_err(e)?;
                let rows = sqlx::query(CLAIM_SQLITE)
                    .bind(token)
                    .bind(lease_until)
                    .bind(now)
                    .bind(&kinds)
                    .bind(limit)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(e)?;
                let claimed = rows
                    .iter()
                    .map(|r| claimed!(r, token))
                    .collect::<Result<Vec<_>, _>>()?;
                c.commit().await?;
                Ok(claimed)
            }
            Backend::Postgres { pool, .. } => {
                let kinds: Vec<String> = kinds.iter().map(|k| (*k).to_owned()).collect();
                let mut tx = pool.begin().await.map_err(e)?;
                sqlx::query(REAP_POSTGRES)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(e)?;
                let rows = sqlx::query(CLAIM_POSTGRES)
                    .bind(token)
                    .bind(lease_until)
                    .bind(now)
                    .bind(&kinds)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(e)?;
                let claimed = rows
                    .iter()
                    .map(|r| claimed!(r, token))
                    .collect::<Result<Vec<_>, _>>()?;
                tx.commit().await.map_err(e)?;
                Ok(claimed)
            }
        }
    }

    /// Moves a running job's lease on to `until`; `false` if the lease is no longer `token`'s
    /// (it lapsed and another worker claimed the job, or the job was released).
    pub async fn extend(
        &self,
        job: JobId,
        token: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut c = self.0.platform_write().await?;
        let n = execute!(
            &mut c,
            "UPDATE jobs SET lease_until = $3 WHERE id = $1 AND lease_token = $2 AND state = 'running'",
            job.to_string(),
            token,
            db_time(until)
        );
        settle(c, n).await
    }

    /// Marks the run done; `false` if the lease is no longer `token`'s.
    pub async fn complete(
        &self,
        job: JobId,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut c = self.0.platform_write().await?;
        let n = execute!(
            &mut c,
            "UPDATE jobs SET state = 'done', lease_token = NULL, lease_until = NULL, \
             finished_at = $3, updated_at = $3 \
             WHERE id = $1 AND lease_token = $2 AND state = 'running'",
            job.to_string(),
            token,
            db_time(now)
        );
        settle(c, n).await
    }

    /// Queues the job again for `run_at` after a failed attempt, keeping `error`; `false` if
    /// the lease is no longer `token`'s.
    pub async fn retry_later(
        &self,
        job: JobId,
        token: &str,
        now: DateTime<Utc>,
        error: &str,
        run_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut c = self.0.platform_write().await?;
        let n = execute!(
            &mut c,
            "UPDATE jobs SET state = 'queued', lease_token = NULL, lease_until = NULL, \
             updated_at = $3, last_error = $4, run_at = $5 \
             WHERE id = $1 AND lease_token = $2 AND state = 'running'",
            job.to_string(),
            token,
            db_time(now),
            error_text(error),
            db_time(run_at)
        );
        settle(c, n).await
    }

    /// Marks the job dead with `error` (out of attempts, or refused for good); `false` if the
    /// lease is no longer `token`'s.
    pub async fn bury(
        &self,
        job: JobId,
        token: &str,
        now: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError> {
        let mut c = self.0.platform_write().await?;
        let n = execute!(
            &mut c,
            "UPDATE jobs SET state = 'dead', lease_token = NULL, lease_until = NULL, \
             finished_at = $3, updated_at = $3, last_error = $4 \
             WHERE id = $1 AND lease_token = $2 AND state = 'running'",
            job.to_string(),
            token,
            db_time(now),
            error_text(error)
        );
        settle(c, n).await
    }

    /// Gives an unfinished run back (a worker draining at shutdown): the job is due at once
    /// for any worker and the attempt it had used is returned, since the job did not fail.
    /// `false` if the lease is no longer `token`'s.
    pub async fn release(
        &self,
        job: JobId,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut c = self.0.platform_write().await?;
        let n = execute!(
            &mut c,
            "UPDATE jobs SET state = 'queued', lease_token = NULL, lease_until = NULL, \
             attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
             run_at = $3, updated_at = $3 \
             WHERE id = $1 AND lease_token = $2 AND state = 'running'",
            job.to_string(),
            token,
            db_time(now)
        );
        settle(c, n).await
    }

    /// One job.
    pub async fn get(&self, job: JobId) -> Result<Option<JobRecord>, StoreError> {
        let mut c = self.0.platform_read().await?;
        let sql = format!("SELECT {RECORD_COLUMNS} FROM jobs WHERE id = $1");
        fetch_optional!(
            &mut c,
            sqlx::AssertSqlSafe(sql),
            [job.to_string()],
            |r| record!(r)
        )
    }

    /// Up to `limit` jobs, newest first, in `state` (or any) and of `kind` (or any).
    pub async fn list(
        &self,
        state: Option<JobState>,
        kind: Option<&str>,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let mut c = self.0.platform_read().await?;
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM jobs WHERE ($1 IS NULL OR state = $1) \
             AND ($2 IS NULL OR kind = $2) ORDER BY id DESC LIMIT $3"
        );
        fetch_all!(
            &mut c,
            sqlx::AssertSqlSafe(sql),
            [state.map(JobState::as_str), kind, i64::from(limit)],
            |r| record!(r)
        )
    }

    /// Queues a dead job again with all its attempts (an operator's `rampart jobs retry`) and
    /// records `event` (target: the job) in the ledger of each organization it acts for: its
    /// own organization's in the same transaction; for a person's job, each organization the
    /// person belongs to; for a platform job, every organization, since its work reaches every
    /// tenant. The last two are recorded after the re-queue commits, one ledger at a time (on
    /// PostgreSQL a transaction seals one organization's chain); if one fails, the error is
    /// returned and the job is still queued.
    pub async fn requeue_dead(
        &self,
        job: JobId,
        now: DateTime<Utc>,
        event: NewEvent,
    ) -> Result<Requeued, StoreError> {
        let at = db_time(now);
        let mut c = self.0.platform_write().await?;
        let sql = format!(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $2, finished_at = NULL, \
             updated_at = $2 WHERE id = $1 AND state = 'dead' RETURNING {RECORD_COLUMNS}"
        );
        let requeued = fetch_optional!(
            &mut c,
            sqlx::AssertSqlSafe(sql),
            [job.to_string(), at],
            |r| record!(r)
        )?;
        let Some(record) = requeued else {
            let sql = format!("SELECT {RECORD_COLUMNS} FROM jobs WHERE id = $1");
            let found =
                fetch_optional!(&mut c, sqlx::AssertSqlSafe(sql), [job.to_string()], |r| {
                    record!(r)
                })?;
            c.rollback().await?;
            return Err(match found {
                None => StoreError::NotFound("job"),
                Some(_) => StoreError::Conflict("only a dead job can be re-queued"),
            });
        };
        let mut event = event;
        event.target = Some(job.to_string());
        let recorded_in = match record.subject() {
            JobSubject::Org { org, workspace } => {
                event.workspace = match workspace {
                    Some(ws) => Some(ws),
                    None => first_workspace(&mut c, org).await?,
                };
                crate::platform::append_in_platform(&mut c, org, event, now).await?;
                c.commit().await?;
                vec![org]
            }
            JobSubject::User(user) => {
                c.commit().await?;
                self.0.record_for_user(user, &event, now).await?;
                self.0
                    .user_orgs(user)
                    .await?
                    .into_iter()
                    .map(|(o, _)| o)
                    .collect()
            }
            JobSubject::Platform => {
                c.commit().await?;
                let orgs = self.0.org_ids().await?;
                for org in &orgs {
                    let mut event = event.clone();
                    event.workspace = self.0.org_workspaces(*org).await?.first().copied();
                    let grant = rampart_core::OperatorGrant::new(*org);
                    let mut ledger = self.0.ledger(&grant, crate::Mode::Write).await?;
                    ledger.append(event, now).await?;
                    ledger.commit().await?;
                }
                orgs
            }
        };
        Ok(Requeued {
            job: record,
            recorded_in,
        })
    }

    /// Deletes jobs that finished successfully before `before`; returns how many. Dead jobs
    /// stay until an operator re-queues them.
    pub async fn prune_done(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut c = self.0.platform_write().await?;
        let n = execute!(
            &mut c,
            "DELETE FROM jobs WHERE state = 'done' AND finished_at < $1",
            db_time(before)
        )
        .map_err(StoreError::from_sqlx)?;
        c.commit().await?;
        Ok(n)
    }
}

/// Commits a one-statement change to a leased job; whether it changed the job.
async fn settle(c: Conn, changed: Result<u64, sqlx::Error>) -> Result<bool, StoreError> {
    let n = changed.map_err(StoreError::from_sqlx)?;
    c.commit().await?;
    Ok(n == 1)
}

/// The organization's first workspace, where its ledger events show to its members.
async fn first_workspace(c: &mut Conn, org: OrgId) -> Result<Option<WorkspaceId>, StoreError> {
    fetch_optional!(
        c,
        "SELECT id FROM workspaces WHERE org_id = $1 ORDER BY id LIMIT 1",
        [org.to_string()],
        |r| id::<WorkspaceId>(r.try_get("id").map_err(StoreError::from_sqlx)?)
    )
}
