//! SQLite's one writer, shared by group commit.
//!
//! SQLite runs one write transaction at a time, so on a busy server every write waits for the
//! one before it, and each paid a `BEGIN IMMEDIATE`, a `COMMIT` (writing every page it touched
//! to the WAL, the shared index and audit-head pages included) and a trip through the pool.
//! Here a single task, the writer, owns the connection: it opens one transaction and lends it
//! to the waiting write requests one after another, each inside a savepoint of its own, and
//! commits once the queue is empty, [`MAX_MEMBERS`] have taken part or [`MAX_AGE`] has passed.
//!
//! A request that ends by keeping its work may end its savepoint and open the next member's in
//! its own last command ([`renew_savepoint!`], [`Lease::renewed`]), which saves the writer a
//! round trip to the driver's thread between the two members: on a busy server every write
//! waits for that chain of round trips, one request after another.
//!
//! What each request sees is unchanged: its work is all or nothing (a request that fails or is
//! dropped rolls back to its savepoint, leaving the others' work alone), and
//! [`Lease::commit`] returns only once the transaction holding it has committed, so no response
//! reports a write that could still be lost. If the commit fails, every request in it is told
//! so and none of them is stored. A request that rolls back also waits
//! ([`Lease::rollback`]) before it answers, because what it saw (say, an email already taken)
//! may have been another request's uncommitted write in the same transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard, mpsc, oneshot, watch};

use crate::StoreError;
use crate::head_hints::HeadHints;

/// Most requests committed together. It bounds how long the first of them waits for the
/// commit, and the number of nested savepoints.
pub const MAX_MEMBERS: u64 = 32;
/// Longest a transaction stays open for more requests once its first began.
pub const MAX_AGE: Duration = Duration::from_millis(20);

/// How a group's transaction ended, as every member sees it: `Ok` once it committed (or,
/// when every member rolled back, once it rolled back).
type Outcome = Option<Result<(), ()>>;

/// The connection a group is using; `None` between groups.
type Slot = Arc<Mutex<Option<PoolConnection<Sqlite>>>>;

/// Counts since the store was opened; see [`crate::Store::write_stats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    /// Write requests that ran on the writer (committed or rolled back).
    pub members: u64,
    /// Transactions the writer committed.
    pub commits: u64,
}

#[derive(Debug, Default)]
struct Counters {
    members: AtomicU64,
    commits: AtomicU64,
}

/// The statements that end a member's savepoint, keeping its work, and open the next one's: the
/// tail of a request's last command when it renews ([`Lease::renewed`]).
macro_rules! renew_savepoint {
    () => {
        "RELEASE member; SAVEPOINT member"
    };
}
pub(crate) use renew_savepoint;

/// How a request gives the writer back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Return {
    /// Its work is to be rolled back to its savepoint.
    RolledBack,
    /// Its work is to be kept; its savepoint is still open.
    Kept,
    /// Its work is kept, its savepoint released and the next one opened by its own last command.
    Renewed,
    /// It renewed and then rolled back: its work can no longer be undone alone, so the whole
    /// group's transaction must be.
    Entangled,
}

/// A request for the writer: the lease is sent back through `reply`.
struct Want {
    reply: oneshot::Sender<Result<Lease, StoreError>>,
}

/// The handle through which the store asks for the writer; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::UnboundedSender<Want>,
    counters: Arc<Counters>,
    wait: Duration,
}

impl Writer {
    /// Starts the writer task on `pool` (of one connection). A request waits at most `wait`
    /// for its turn, as a pool acquire would.
    pub(crate) fn start(pool: SqlitePool, wait: Duration) -> Self {
        Self::start_with(pool, wait, MAX_AGE)
    }

    /// [`Writer::start`] with a transaction staying open for more requests up to `max_age`.
    fn start_with(pool: SqlitePool, wait: Duration, max_age: Duration) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let heads = Arc::new(HeadHints::default());
        tokio::spawn(run(pool, rx, counters.clone(), heads, max_age));
        Self {
            queue,
            counters,
            wait,
        }
    }

    /// Waits for this request's turn on the writer, inside a savepoint of its own.
    pub(crate) async fn lease(&self) -> Result<Lease, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Want { reply })
            .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolClosed))?;
        match tokio::time::timeout(self.wait, rx).await {
            Ok(Ok(lease)) => lease,
            // The writer task is gone (the runtime is shutting down).
            Ok(Err(_)) => Err(StoreError::Unavailable(sqlx::Error::PoolClosed)),
            // Dropping `rx` tells the writer not to lend to this request.
            Err(_) => Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
        }
    }

    pub(crate) fn stats(&self) -> WriteStats {
        WriteStats {
            members: self.counters.members.load(Ordering::Relaxed),
            commits: self.counters.commits.load(Ordering::Relaxed),
        }
    }
}

/// One request's turn on the writer: the connection, inside the request's savepoint. Dropping
/// it rolls the request's work back; [`Lease::commit`] keeps it.
pub(crate) struct Lease {
    conn: OwnedMappedMutexGuard<Option<PoolConnection<Sqlite>>, SqliteConnection>,
    back: Option<oneshot::Sender<Return>>,
    outcome: watch::Receiver<Outcome>,
    heads: Arc<HeadHints>,
    renewed: bool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").finish_non_exhaustive()
    }
}

impl std::ops::Deref for Lease {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The guard on the connection is released right after this, when the fields drop;
        // the writer waits for it before it touches the connection again.
        if let Some(back) = self.back.take() {
            let _ = back.send(self.rolled_back());
        }
    }
}

impl Lease {
    /// The audit chain heads this writer last moved: only a request holding the writer may
    /// link an event to one (see [`HeadHints`]).
    pub(crate) fn heads(&self) -> Arc<HeadHints> {
        self.heads.clone()
    }

    /// Records that the command just run ended with [`renew_savepoint!`] and succeeded: this
    /// request's work is now part of the group's transaction, beyond its own rollback.
    pub(crate) fn renewed(&mut self) {
        self.renewed = true;
    }

    fn rolled_back(&self) -> Return {
        if self.renewed {
            Return::Entangled
        } else {
            Return::RolledBack
        }
    }

    /// Keeps this request's work and waits until the transaction holding it has committed.
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        let kept = if self.renewed {
            Return::Renewed
        } else {
            Return::Kept
        };
        if let Some(back) = self.back.take() {
            let _ = back.send(kept);
        }
        self.settled().await
    }

    /// Rolls this request's work back and waits until the transaction it ran in has ended,
    /// so that what it read is settled. `Err` when that transaction failed to commit.
    pub(crate) async fn rollback(mut self) -> Result<(), StoreError> {
        if let Some(back) = self.back.take() {
            let _ = back.send(self.rolled_back());
        }
        self.settled().await
    }

    async fn settled(self) -> Result<(), StoreError> {
        let mut outcome = self.outcome.clone();
        drop(self);
        match outcome.wait_for(Option::is_some).await {
            Ok(o) if *o == Some(Ok(())) => Ok(()),
            _ => Err(StoreError::BatchFailed),
        }
    }
}

/// The writer task: one group after another, until every [`Writer`] handle is gone.
async fn run(
    pool: SqlitePool,
    mut queue: mpsc::UnboundedReceiver<Want>,
    counters: Arc<Counters>,
    heads: Arc<HeadHints>,
    max_age: Duration,
) {
    let slot: Slot = Arc::new(Mutex::new(None));
    while let Some(first) = queue.recv().await {
        if first.reply.is_closed() {
            continue;
        }
        let conn = match open(&pool).await {
            Ok(c) => c,
            Err(e) => {
                let _ = first.reply.send(Err(e));
                continue;
            }
        };
        *slot.lock().await = Some(conn);
        group(&slot, first, &mut queue, &counters, &heads, max_age).await;
    }
}

/// A connection from the pool with a write transaction and the first savepoint open.
async fn open(pool: &SqlitePool) -> Result<PoolConnection<Sqlite>, StoreError> {
    let mut conn = pool.acquire().await.map_err(StoreError::from_sqlx)?;
    sqlx::raw_sql("BEGIN IMMEDIATE; SAVEPOINT member")
        .execute(&mut *conn)
        .await
        .map_err(StoreError::from_sqlx)?;
    Ok(conn)
}

/// Runs one group: lends the open transaction to `first` and then to whoever is waiting, and
/// ends it. The transaction is open, with a fresh savepoint, whenever a request is lent it.
async fn group(
    slot: &Slot,
    first: Want,
    queue: &mut mpsc::UnboundedReceiver<Want>,
    counters: &Counters,
    heads: &Arc<HeadHints>,
    max_age: Duration,
) {
    let started = Instant::now();
    let (done, outcome) = watch::channel::<Outcome>(None);
    let (mut members, mut kept, mut broken) = (0u64, 0u64, false);
    let mut next = Some(first);
    while let Some(want) = next.take() {
        // A request that gave up while queued is skipped; the savepoint stays fresh for the next.
        let keep = if want.reply.is_closed() {
            None
        } else {
            members += 1;
            Some(lend(slot, want, &outcome, heads).await)
        };
        let more = members < MAX_MEMBERS && started.elapsed() < max_age;
        next = if more { queue.try_recv().ok() } else { None };
        if let Some(keep) = keep {
            kept += u64::from(matches!(keep, Return::Kept | Return::Renewed));
            // The next member's savepoint, and the end of this one's, in one command (none when
            // the member's own last command did both).
            let sql = match (keep, next.is_some()) {
                (Return::Kept, true) => Some(Ok(renew_savepoint!())),
                (Return::RolledBack, true) => {
                    Some(Ok("ROLLBACK TO member; RELEASE member; SAVEPOINT member"))
                }
                (Return::Kept | Return::Renewed, false) | (Return::Renewed, true) => None,
                (Return::RolledBack, false) => Some(Ok("ROLLBACK TO member; RELEASE member")),
                (Return::Entangled, _) => Some(Err(crate::error::corrupt(
                    "a write rolled back after ending its own savepoint",
                ))),
            };
            let failed = match sql {
                None => None,
                Some(Ok(sql)) => on_slot(slot, sql).await.err(),
                Some(Err(e)) => Some(e),
            };
            if let Some(e) = failed {
                tracing::error!(error = %e, "the shared write transaction failed; rolling it back");
                broken = true;
                // The request just taken from the queue is refused (503, retryable) rather
                // than lent a transaction that is being rolled back.
                if let Some(want) = next.take() {
                    let _ = want.reply.send(Err(StoreError::BatchFailed));
                }
            }
        }
    }
    counters.members.fetch_add(members, Ordering::Relaxed);
    let result = finish(slot, kept > 0 && !broken).await;
    if result.is_ok() && kept > 0 && !broken {
        counters.commits.fetch_add(1, Ordering::Relaxed);
    }
    let committed = if broken { Err(()) } else { result };
    let _ = done.send(Some(committed));
}

/// Lends the connection to `want` and waits for it back, with what to do with its work.
async fn lend(
    slot: &Slot,
    want: Want,
    outcome: &watch::Receiver<Outcome>,
    heads: &Arc<HeadHints>,
) -> Return {
    let guard = slot.clone().lock_owned().await;
    let conn = match OwnedMutexGuard::try_map(guard, |c| c.as_mut().map(|c| &mut **c)) {
        Ok(conn) => conn,
        Err(_) => {
            let _ = want.reply.send(Err(StoreError::BatchFailed));
            return Return::RolledBack;
        }
    };
    let (back, returned) = oneshot::channel();
    let lease = Lease {
        conn,
        back: Some(back),
        outcome: outcome.clone(),
        heads: heads.clone(),
        renewed: false,
    };
    // A request that gave up meanwhile drops the lease unopened, which answers `RolledBack`.
    let _ = want.reply.send(Ok(lease));
    returned.await.unwrap_or(Return::RolledBack)
}

async fn on_slot(slot: &Slot, sql: &'static str) -> Result<(), StoreError> {
    let mut guard = slot.lock().await;
    let conn = guard
        .as_mut()
        .ok_or_else(|| crate::error::corrupt("no writer connection"))?;
    sqlx::raw_sql(sql)
        .execute(&mut **conn)
        .await
        .map_err(StoreError::from_sqlx)?;
    Ok(())
}

/// Commits (`keep`) or rolls back the group's transaction and gives the connection back to the
/// pool. A connection whose transaction could not be ended is closed rather than reused.
async fn finish(slot: &Slot, keep: bool) -> Result<(), ()> {
    let Some(mut conn) = slot.lock().await.take() else {
        return Err(());
    };
    let sql = if keep { "COMMIT" } else { "ROLLBACK" };
    match sqlx::raw_sql(sql).execute(&mut *conn).await {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::error!(error = %e, "could not end the shared write transaction");
            if sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await.is_err() {
                conn.close_on_drop();
            }
            Err(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqlitePoolOptions;

    async fn pool(dir: &tempfile::TempDir) -> SqlitePool {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                crate::sqlite_connect_options(&dir.path().join("w.db")).create_if_missing(true),
            )
            .await
            .unwrap();
        sqlx::raw_sql(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY); INSERT INTO parent VALUES (1); \
             CREATE TABLE t (v INTEGER NOT NULL, parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool
    }

    /// A writer whose groups stay open long enough that a slow test machine cannot split one.
    fn one_group_writer(pool: &SqlitePool) -> Writer {
        Writer::start_with(
            pool.clone(),
            Duration::from_secs(30),
            Duration::from_secs(30),
        )
    }

    async fn rows(pool: &SqlitePool) -> Vec<i64> {
        sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    /// Inserts `v` in the lease's savepoint; with `renew`, as a last command that also hands
    /// the writer on (and says so to the lease).
    async fn insert(lease: &mut Lease, v: i64, renew: bool) {
        let sql = if renew {
            concat!("INSERT INTO t (v) VALUES ($1); ", renew_savepoint!())
        } else {
            "INSERT INTO t (v) VALUES ($1)"
        };
        sqlx::query(sql)
            .bind(v)
            .execute(&mut **lease)
            .await
            .unwrap();
        if renew {
            lease.renewed();
        }
    }

    /// Checks the outcomes [`queued`] returned: request `i` was dropped (`None`) exactly when
    /// `i % 3 == dropped`, and every other one committed.
    fn assert_dropped_every_third(results: &[Option<Result<(), StoreError>>], dropped: usize) {
        for (i, r) in results.iter().enumerate() {
            match r {
                None => assert_eq!(i % 3, dropped, "request {i} was dropped"),
                Some(r) => assert!(r.is_ok(), "request {i}: {r:?}"),
            }
        }
    }

    /// Queues `n` requests while the test holds the pool's one connection, so that the writer
    /// finds them all waiting when it gets the connection and lends it to them in one group.
    async fn queued<F, Fut, T>(pool: &SqlitePool, writer: &Writer, n: i64, each: F) -> Vec<T>
    where
        F: Fn(i64, Lease) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let held = pool.acquire().await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let writer = writer.clone();
            let (tx, rx) = oneshot::channel();
            tasks.push(tokio::spawn(async move {
                let lease = writer.lease();
                tokio::pin!(lease);
                // Polled once, the request is in the queue.
                let polled = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(lease.as_mut().poll(cx).is_pending())
                })
                .await;
                assert!(polled);
                let _ = tx.send(());
                lease.await
            }));
            rx.await.unwrap();
        }
        drop(held);
        let mut out = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            let lease = t.await.unwrap().unwrap();
            out.push(tokio::spawn(each(i as i64, lease)));
        }
        let mut results = Vec::new();
        for t in out {
            results.push(t.await.unwrap());
        }
        results
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_that_fail_roll_back_alone_and_the_rest_commit_together() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir).await;
        let writer = one_group_writer(&pool);
        let results = queued(&pool, &writer, 12, |i, mut lease| async move {
            insert(&mut lease, i, false).await;
            if i % 3 == 0 {
                drop(lease);
                None
            } else {
                Some(lease.commit().await)
            }
        })
        .await;
        assert_dropped_every_third(&results, 0);
        assert_eq!(rows(&pool).await, vec![1, 2, 4, 5, 7, 8, 10, 11]);
        let stats = writer.stats();
        assert_eq!(stats.members, 12);
        assert!(
            stats.commits < 12,
            "12 queued requests should share commits: {stats:?}"
        );
    }

    /// Requests whose last command ends their own savepoint and opens the next one's: their
    /// work commits with the group, and the request after one of them still rolls back alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_may_hand_the_writer_on_in_its_own_last_command() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir).await;
        let writer = one_group_writer(&pool);
        let results = queued(&pool, &writer, 9, |i, mut lease| async move {
            match i % 3 {
                // Renews: the insert and the hand-over in one command.
                0 => {
                    insert(&mut lease, i, true).await;
                    Some(lease.commit().await)
                }
                // Right after a renewing request: rolls back alone.
                1 => {
                    insert(&mut lease, i, false).await;
                    drop(lease);
                    None
                }
                _ => {
                    insert(&mut lease, i, false).await;
                    Some(lease.commit().await)
                }
            }
        })
        .await;
        assert_dropped_every_third(&results, 1);
        assert_eq!(rows(&pool).await, vec![0, 2, 3, 5, 6, 8]);
        assert_eq!(writer.stats().commits, 1, "one group");
    }

    /// A request that rolls back after its work has left its savepoint cannot be undone alone:
    /// the whole group fails, none of it stored and every member told so, rather than keep a
    /// change its request reports as not made. The writer goes on with a new group.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_rolled_back_after_handing_the_writer_on_fails_its_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir).await;
        let writer = one_group_writer(&pool);
        let results = queued(&pool, &writer, 2, |i, mut lease| async move {
            insert(&mut lease, i, i == 1).await;
            if i == 1 {
                lease.rollback().await
            } else {
                lease.commit().await
            }
        })
        .await;
        for (i, r) in results.iter().enumerate() {
            assert!(
                matches!(r, Err(StoreError::BatchFailed)),
                "request {i}: {r:?}"
            );
        }
        assert!(rows(&pool).await.is_empty(), "nothing of the group stored");

        let mut lease = writer.lease().await.unwrap();
        sqlx::query("INSERT INTO t (v) VALUES (7)")
            .execute(&mut *lease)
            .await
            .unwrap();
        lease.commit().await.unwrap();
        assert_eq!(rows(&pool).await, vec![7]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_fails_every_request_in_it_and_stores_none() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir).await;
        let writer = one_group_writer(&pool);
        // Request 1 breaks a deferred foreign key, which only the COMMIT checks; request 2
        // only reads, and request 0 writes a good row.
        let results = queued(&pool, &writer, 3, |i, mut lease| async move {
            match i {
                2 => {
                    let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
                        .fetch_one(&mut *lease)
                        .await
                        .unwrap();
                    (seen, lease.rollback().await)
                }
                _ => {
                    sqlx::query("INSERT INTO t (v, parent) VALUES ($1, $2)")
                        .bind(i)
                        .bind(if i == 1 { 99 } else { 1 })
                        .execute(&mut *lease)
                        .await
                        .unwrap();
                    (0, lease.commit().await)
                }
            }
        })
        .await;
        let stats = writer.stats();
        if stats.commits == 0 && stats.members == 3 {
            // One group: the reader saw two uncommitted rows, and all three learn the commit failed.
            assert_eq!(results[2].0, 2);
            for (i, (_, r)) in results.iter().enumerate() {
                assert!(
                    matches!(r, Err(StoreError::BatchFailed)),
                    "request {i}: {r:?}"
                );
            }
            assert!(
                rows(&pool).await.is_empty(),
                "nothing of the failed group is stored"
            );
        } else {
            panic!("the three queued requests did not run in one group: {stats:?}");
        }
        // The writer goes on with a fresh transaction.
        let mut lease = writer.lease().await.unwrap();
        sqlx::query("INSERT INTO t (v) VALUES (7)")
            .execute(&mut *lease)
            .await
            .unwrap();
        lease.commit().await.unwrap();
        assert_eq!(rows(&pool).await, vec![7]);
    }

    /// The sub-journal of every request's savepoint stays in memory up to the workspace's
    /// `SQLITE_STMTJRNL_SPILL` (`.cargo/config.toml`): above SQLite's 64 KiB default, which one
    /// audited create outgrew, and below the 128 KiB that one write of SQLite's unix VFS can carry.
    #[tokio::test]
    async fn sqlite_is_built_with_the_workspaces_sub_journal_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
            .fetch_all(&pool(&dir).await)
            .await
            .unwrap();
        let spill: Vec<u32> = options
            .iter()
            .filter_map(|o| o.strip_prefix("STMTJRNL_SPILL=")?.parse().ok())
            .collect();
        assert_eq!(
            spill,
            vec![126_976],
            "built without the workspace's LIBSQLITE3_FLAGS: {options:?}"
        );
    }

    /// A request that changes far more than the in-memory threshold spills its savepoint's
    /// journal to disk; it still commits, and a request after it that rolls back the same
    /// change is restored from that file without touching its neighbours. (Built with a 4 MiB
    /// threshold, or any multiple of 128 KiB, this fails with SQLITE_FULL: see
    /// `.cargo/config.toml`.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_savepoint_journal_past_the_memory_threshold_commits_and_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir).await;
        // About 3,000 pages: a journal of some 12 MiB when every row changes.
        sqlx::raw_sql(
            "CREATE TABLE big (id INTEGER PRIMARY KEY, body TEXT NOT NULL); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
             INSERT INTO big SELECT i, printf('%.3500c', 'a') FROM n",
        )
        .execute(&pool)
        .await
        .unwrap();
        let writer = one_group_writer(&pool);
        let results = queued(&pool, &writer, 3, |i, mut lease| async move {
            let body = ["b", "c", "d"][i as usize];
            let sql = if i == 2 {
                "INSERT INTO big (id, body) VALUES (3001, $1)"
            } else {
                "UPDATE big SET body = printf('%.3500c', $1)"
            };
            sqlx::query(sql)
                .bind(body)
                .execute(&mut *lease)
                .await
                .map_err(|e| e.to_string())?;
            if i == 1 {
                lease.rollback().await.map_err(|e| e.to_string())
            } else {
                lease.commit().await.map_err(|e| e.to_string())
            }
        })
        .await;
        for (i, r) in results.iter().enumerate() {
            assert!(r.is_ok(), "request {i}: {r:?}");
        }
        let stats = writer.stats();
        assert_eq!(
            (stats.members, stats.commits),
            (3, 1),
            "one group: {stats:?}"
        );
        let bodies: Vec<(String, i64)> =
            sqlx::query_as("SELECT substr(body, 1, 1), COUNT(*) FROM big GROUP BY 1 ORDER BY 1")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(bodies, vec![("b".to_owned(), 3000), ("d".to_owned(), 1)]);
        let check: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(check, "ok");
    }

    #[tokio::test]
    async fn a_request_dropped_midway_leaves_nothing_and_frees_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir).await;
        let writer = Writer::start(pool.clone(), Duration::from_secs(30));
        let (inserted, midway) = tokio::sync::oneshot::channel();
        let task = {
            let writer = writer.clone();
            tokio::spawn(async move {
                let mut lease = writer.lease().await.unwrap();
                sqlx::query("INSERT INTO t (v) VALUES (1)")
                    .execute(&mut *lease)
                    .await
                    .unwrap();
                inserted.send(()).unwrap();
                // Never finishes: the request is cancelled here (a client that went away).
                std::future::pending::<()>().await;
                lease.commit().await
            })
        };
        // Cancelled only once its row is written (a fixed sleep could cancel it before it
        // had written anything, and the test would pass without testing anything).
        midway.await.unwrap();
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        let mut lease = writer.lease().await.unwrap();
        let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *lease)
            .await
            .unwrap();
        assert_eq!(seen, 0, "the cancelled request's row was rolled back");
        lease.commit().await.unwrap();
    }

    #[tokio::test]
    async fn a_request_that_waits_too_long_gets_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir).await;
        let writer = Writer::start(pool.clone(), Duration::from_millis(100));
        let first = writer.lease().await.unwrap();
        let second = writer.lease().await;
        assert!(
            matches!(second, Err(StoreError::Unavailable(_))),
            "{second:?}"
        );
        first.commit().await.unwrap();
        // The writer skipped the request that gave up and serves the next one.
        writer.lease().await.unwrap().commit().await.unwrap();
    }
}
