//! The durable job queue (crates/jobs) on both backends: claims never overlap across workers,
//! a dead worker's lease lapses and its job runs again, failures back off and end dead with
//! their last error, an operator's re-queue lands in the right ledger, a scheduled slot is
//! stored once however many nodes enqueue it, and the daily audit retention runs as a job.
//! The last tests drive the real binary: SIGTERM lets a running job finish, a job unfinished
//! after the grace is released to another `rampart worker`, and `rampart jobs list/retry`.
//!
//! Time is the harness's `ManualClock`: leases lapse and backoffs end because the test moves
//! the clock, never because it slept.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::binary::{BIN, Server, cli, org_with_key, start};
use common::{Backend, Db, TestApp, events};
use rampart::cli::worker::test_seams::Hold;
use rampart_core::{Clock, JobId, OrgId, SystemClock, WorkspaceId};
use rampart_jobs::{
    Backoff, Enqueued, Handler, Job, JobError, JobState, JobSubject, Queue, Registry, RunInfo,
    Schedule, Scheduled, Worker, WorkerSettings,
};
use rampart_store::Store;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

both_backends!(
    two_workers_never_run_the_same_job_at_once,
    a_killed_workers_job_runs_again_once_its_lease_lapses,
    a_running_jobs_lease_is_renewed_while_it_runs,
    a_worker_that_lost_its_lease_cannot_record_an_outcome,
    failures_back_off_then_the_job_is_dead_and_an_operator_requeues_it,
    a_scheduled_slot_enqueued_by_two_nodes_is_stored_and_run_once,
    the_daily_audit_retention_runs_as_a_scheduled_job,
);

/// Waits (up to a minute, a guard against a hang) until `check` holds.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A second connection pool on the test's database: another node.
async fn other_node(app: &TestApp) -> Store {
    match &app.db {
        Db::Sqlite(path) => Store::open_sqlite(path, common::pool_settings())
            .await
            .unwrap(),
        Db::Postgres { app_url, .. } => Store::connect_postgres(app_url, common::pool_settings())
            .await
            .unwrap(),
    }
}

/// Polls fast, leases for a minute of the test's clock, backs off 10 s doubling to 60 s.
fn settings(concurrency: u32) -> WorkerSettings {
    WorkerSettings {
        concurrency,
        lease: Duration::from_secs(60),
        poll_min: Duration::from_millis(5),
        poll_max: Duration::from_millis(20),
        grace: Duration::from_secs(10),
        backoff: Backoff {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(60),
        },
    }
}

/// A running worker and the switch that stops it.
struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<rampart_jobs::Drained>,
}

impl Running {
    fn start(worker: Worker) -> Self {
        let (stop, rx) = watch::channel(false);
        Self {
            stop,
            task: tokio::spawn(worker.run(rx)),
        }
    }

    async fn stop(self) -> rampart_jobs::Drained {
        self.stop.send(true).unwrap();
        self.task.await.unwrap()
    }
}

async fn job(store: &Store, id: JobId) -> rampart_jobs::JobRecord {
    store.jobs().get(id).await.unwrap().unwrap()
}

async fn count_in(store: &Store, state: JobState) -> usize {
    store
        .jobs()
        .list(Some(state), None, 1000)
        .await
        .unwrap()
        .len()
}

// ---- two workers ------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
struct Count {
    n: u32,
}

impl Job for Count {
    const KIND: &'static str = "test.count";
}

#[derive(Default)]
struct Seen {
    in_flight: HashSet<JobId>,
    runs: HashMap<JobId, u32>,
    overlaps: Vec<JobId>,
    by_worker: [u32; 2],
}

struct CountHandler {
    worker: usize,
    seen: Arc<Mutex<Seen>>,
}

impl Handler<Count> for CountHandler {
    async fn handle(&self, _job: Count, run: RunInfo) -> Result<(), JobError> {
        {
            let mut seen = self.seen.lock().unwrap();
            if !seen.in_flight.insert(run.id) {
                seen.overlaps.push(run.id);
            }
            *seen.runs.entry(run.id).or_default() += 1;
            seen.by_worker[self.worker] += 1;
        }
        // Work that takes a while, so that the two workers' runs overlap in time.
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.seen.lock().unwrap().in_flight.remove(&run.id);
        Ok(())
    }
}

/// Two workers on two connection pools (two nodes) drain 60 jobs: each job runs exactly once,
/// never on both at the same time, and both workers take part.
async fn two_workers_never_run_the_same_job_at_once(app: TestApp) {
    let other = other_node(&app).await;
    let queue = app.state.jobs().clone();
    let mut ids = Vec::new();
    for n in 0..60 {
        ids.push(queue.enqueue(&Count { n }).await.unwrap());
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut workers = Vec::new();
    for (i, q) in [
        queue.clone(),
        Queue::new(other.clone(), Arc::new(app.clock.clone())),
    ]
    .into_iter()
    .enumerate()
    {
        let mut registry = Registry::new();
        registry.register(CountHandler {
            worker: i,
            seen: seen.clone(),
        });
        workers.push(Running::start(Worker::new(q, registry, settings(4))));
    }
    until("every job is done", || async {
        count_in(&app.store, JobState::Done).await == ids.len()
    })
    .await;
    for w in workers {
        w.stop().await;
    }
    other.close().await;
    let seen = seen.lock().unwrap();
    assert!(
        seen.overlaps.is_empty(),
        "ran at once on two workers: {:?}",
        seen.overlaps
    );
    for id in &ids {
        assert_eq!(seen.runs.get(id), Some(&1), "job {id} ran once");
    }
    assert!(
        seen.by_worker.iter().all(|n| *n > 0),
        "both workers took jobs: {:?}",
        seen.by_worker
    );
}

/// PostgreSQL's claim skips a row another transaction has locked instead of waiting for it:
/// one node's claim in progress never holds up another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_on_postgres_skips_a_job_another_claim_holds() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let Db::Postgres { app_url, .. } = &app.db else {
        unreachable!()
    };
    let queue = app.state.jobs().clone();
    let first = queue.enqueue(&Count { n: 1 }).await.unwrap();
    let second = queue.enqueue(&Count { n: 2 }).await.unwrap();
    let pool = sqlx::PgPool::connect(app_url).await.unwrap();
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM jobs WHERE id = $1 FOR UPDATE")
        .bind(first.to_string())
        .execute(&mut *holder)
        .await
        .unwrap();
    let now = app.clock.now_for_tests();
    let claimed = tokio::time::timeout(
        Duration::from_secs(30),
        app.store.jobs().claim(
            &[Count::KIND],
            1,
            now,
            now + chrono::Duration::minutes(1),
            "t",
        ),
    )
    .await
    .expect("the claim waited for the row another transaction holds")
    .unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![second]
    );
    holder.rollback().await.unwrap();
    pool.close().await;
}

// ---- a killed worker ----------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
struct Gate {}

impl Job for Gate {
    const KIND: &'static str = "test.gate";
    const MAX_ATTEMPTS: u32 = 3;
}

/// Says which attempt started; the first never ends by itself.
struct GateHandler(mpsc::UnboundedSender<u32>);

impl Handler<Gate> for GateHandler {
    async fn handle(&self, _job: Gate, run: RunInfo) -> Result<(), JobError> {
        self.0.send(run.attempt).unwrap();
        if run.attempt == 1 {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

/// The attempt number of the next run that starts (waiting at most a minute, a hang guard).
async fn next_start(started: &mut mpsc::UnboundedReceiver<u32>) -> Option<u32> {
    tokio::time::timeout(Duration::from_secs(60), started.recv())
        .await
        .expect("gave up waiting for the job to start")
}

fn gate_worker(queue: Queue) -> (Worker, mpsc::UnboundedReceiver<u32>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut registry = Registry::new();
    registry.register(GateHandler(tx));
    (Worker::new(queue, registry, settings(2)), rx)
}

/// A worker dropped in the middle of a job (its task aborted, as a crash would end it) leaves
/// the job leased: no one else may claim it until the lease lapses; then another node's worker
/// runs it again, as its second attempt.
async fn a_killed_workers_job_runs_again_once_its_lease_lapses(app: TestApp) {
    let queue = app.state.jobs().clone();
    let id = queue.enqueue(&Gate {}).await.unwrap();
    let (worker, mut started) = gate_worker(queue);
    let doomed = Running::start(worker);
    assert_eq!(next_start(&mut started).await, Some(1));
    doomed.task.abort();
    assert!(doomed.task.await.unwrap_err().is_cancelled());

    let leased = job(&app.store, id).await;
    assert_eq!((leased.state, leased.attempts), (JobState::Running, 1));
    let other = other_node(&app).await;
    let now = app.clock.now_for_tests();
    let early = other
        .jobs()
        .claim(
            &[Gate::KIND],
            5,
            now,
            now + chrono::Duration::minutes(1),
            "early",
        )
        .await
        .unwrap();
    assert!(early.is_empty(), "claimed while the lease held: {early:?}");

    app.clock.advance(chrono::Duration::seconds(61));
    let (worker, mut started) = gate_worker(Queue::new(other.clone(), Arc::new(app.clock.clone())));
    let rescuer = Running::start(worker);
    assert_eq!(next_start(&mut started).await, Some(2));
    until("the job is done", || async {
        job(&app.store, id).await.state == JobState::Done
    })
    .await;
    rescuer.stop().await;
    assert_eq!(job(&app.store, id).await.attempts, 2);
    other.close().await;
}

/// A job that runs longer than its lease keeps it: its worker renews the lease (every third
/// of it) from the clock's current time, so once the clock has passed the first lease's end,
/// the lease ends later still and another node cannot claim the job.
async fn a_running_jobs_lease_is_renewed_while_it_runs(app: TestApp) {
    let queue = app.state.jobs().clone();
    let id = queue.enqueue(&Gate {}).await.unwrap();
    let (tx, mut started) = mpsc::unbounded_channel();
    let mut registry = Registry::new();
    registry.register(GateHandler(tx));
    let short = WorkerSettings {
        lease: Duration::from_secs(3),
        ..settings(1)
    };
    let worker = Running::start(Worker::new(queue, registry, short));
    assert_eq!(next_start(&mut started).await, Some(1));
    let first_end = job(&app.store, id).await.lease_until.unwrap();
    app.clock.advance(chrono::Duration::seconds(10));
    let now = app.clock.now_for_tests();
    until("the lease was renewed past the clock", || async {
        job(&app.store, id).await.lease_until.unwrap() > now
    })
    .await;
    assert!(now > first_end);
    let other = other_node(&app).await;
    let taken = other
        .jobs()
        .claim(
            &[Gate::KIND],
            5,
            now,
            now + chrono::Duration::minutes(1),
            "other",
        )
        .await
        .unwrap();
    assert!(
        taken.is_empty(),
        "claimed a job whose worker is alive: {taken:?}"
    );
    worker.task.abort();
    other.close().await;
}

/// Every write of a run names its lease: once a lapsed lease has passed to another worker, the
/// first worker can neither renew it nor record an outcome over the run that replaced it. A job
/// whose lease lapses on its last attempt is dead, saying why.
async fn a_worker_that_lost_its_lease_cannot_record_an_outcome(app: TestApp) {
    let queue = app.state.jobs().clone();
    let jobs = app.store.jobs();
    let id = queue.enqueue(&Gate {}).await.unwrap();
    let lease = |now: chrono::DateTime<chrono::Utc>| now + chrono::Duration::minutes(1);
    let now = app.clock.now_for_tests();
    assert_eq!(
        jobs.claim(&[Gate::KIND], 1, now, lease(now), "a")
            .await
            .unwrap()
            .len(),
        1
    );
    app.clock.advance(chrono::Duration::seconds(61));
    let now = app.clock.now_for_tests();
    let b = jobs
        .claim(&[Gate::KIND], 1, now, lease(now), "b")
        .await
        .unwrap();
    assert_eq!((b[0].id, b[0].attempt), (id, 2));

    assert!(!jobs.extend(id, "a", lease(now)).await.unwrap());
    assert!(!jobs.complete(id, "a", now).await.unwrap());
    assert!(!jobs.bury(id, "a", now, "late").await.unwrap());
    assert!(!jobs.release(id, "a", now).await.unwrap());
    let running = job(&app.store, id).await;
    assert_eq!((running.state, running.attempts), (JobState::Running, 2));
    assert!(jobs.complete(id, "b", now).await.unwrap());
    assert_eq!(job(&app.store, id).await.state, JobState::Done);

    // The last attempt's worker stops: the next claim finds the job dead, not claimable.
    let last = queue.enqueue(&Gate {}).await.unwrap();
    for (attempt, token) in [(1, "c"), (2, "d"), (3, "e")] {
        app.clock.advance(chrono::Duration::seconds(61));
        let now = app.clock.now_for_tests();
        let got = jobs
            .claim(&[Gate::KIND], 1, now, lease(now), token)
            .await
            .unwrap();
        assert_eq!((got[0].id, got[0].attempt), (last, attempt));
    }
    app.clock.advance(chrono::Duration::seconds(61));
    let now = app.clock.now_for_tests();
    assert!(
        jobs.claim(&[Gate::KIND], 1, now, lease(now), "f")
            .await
            .unwrap()
            .is_empty()
    );
    let dead = job(&app.store, last).await;
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(
        dead.last_error.as_deref(),
        Some(
            "attempt 3 of 3 did not finish: its worker stopped before the job ended (the lease expired)"
        )
    );
}

// ---- retries, dead letters, the operator's re-queue ---------------------------------------

#[derive(Debug, Serialize, Deserialize)]
struct Flaky {
    org: OrgId,
    ws: WorkspaceId,
}

impl Job for Flaky {
    const KIND: &'static str = "test.flaky";
    const MAX_ATTEMPTS: u32 = 3;

    fn subject(&self) -> JobSubject {
        JobSubject::Org {
            org: self.org,
            workspace: Some(self.ws),
        }
    }
}

struct FlakyHandler;

impl Handler<Flaky> for FlakyHandler {
    async fn handle(&self, _job: Flaky, run: RunInfo) -> Result<(), JobError> {
        Err(JobError::retry(format!(
            "the provider refused attempt {}",
            run.attempt
        )))
    }
}

/// A job that keeps failing waits a growing backoff between attempts (with the jitter's draw
/// pinned at its maximum, exactly 10 s · 2^(n−1): 10 s, then 20 s), then after its third
/// attempt is dead with that attempt's error. `jobs retry` queues it again with all its attempts, and its organization's
/// ledger (not another's) shows that the operator did it.
async fn failures_back_off_then_the_job_is_dead_and_an_operator_requeues_it(app: TestApp) {
    let a = app.org("Alpha").await;
    let b = app.org("Beta").await;
    let queue = app.state.jobs().clone();
    let id = queue
        .enqueue(&Flaky {
            org: a.org,
            ws: a.ws,
        })
        .await
        .unwrap();
    let mut registry = Registry::new();
    registry.register(FlakyHandler);
    let backoff = settings(1).backoff;
    let worker =
        Running::start(Worker::new(queue.clone(), registry, settings(1)).with_jitter(|| 1.0));
    for attempt in 1..=2u32 {
        until("the attempt failed", || async {
            let j = job(&app.store, id).await;
            j.attempts >= attempt && j.state == JobState::Queued
        })
        .await;
        let j = job(&app.store, id).await;
        assert_eq!(j.attempts, attempt);
        assert_eq!(
            j.last_error.as_deref(),
            Some(
                format!("attempt {attempt} of 3: the provider refused attempt {attempt}").as_str()
            )
        );
        let wait = (j.run_at - j.updated_at).to_std().unwrap();
        assert_eq!(
            wait,
            Duration::from_secs(10 << (attempt - 1)),
            "attempt {attempt}"
        );
        // The job is due once the clock passes its run_at.
        app.clock
            .advance(chrono::Duration::from_std(backoff.ceiling(attempt)).unwrap());
    }
    until("the job is dead", || async {
        job(&app.store, id).await.state == JobState::Dead
    })
    .await;
    worker.stop().await;
    let dead = job(&app.store, id).await;
    assert_eq!(dead.attempts, 3);
    assert_eq!(
        dead.last_error.as_deref(),
        Some("attempt 3 of 3: the provider refused attempt 3")
    );
    assert!(dead.finished_at.is_some());

    let event = rampart::cli::operator_event("jobs retry", "job.retry", json!({"job": id}));
    let done = queue.retry_dead(id, event).await.unwrap();
    assert_eq!(done.recorded_in, vec![a.org]);
    let again = job(&app.store, id).await;
    assert_eq!((again.state, again.attempts), (JobState::Queued, 0));
    let recorded: Vec<Value> = events(&app, &a.ws, &a.owner_key)
        .await
        .into_iter()
        .filter(|e| e["action"] == "job.retry")
        .collect();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["actor"], "operator");
    assert_eq!(recorded[0]["method"], "CLI");
    assert_eq!(recorded[0]["target"], id.to_string());
    assert!(
        !events(&app, &b.ws, &b.owner_key)
            .await
            .iter()
            .any(|e| e["action"] == "job.retry"),
        "another organization's ledger does not show it"
    );
    // Only a dead job can be re-queued.
    let event = rampart::cli::operator_event("jobs retry", "job.retry", json!({"job": id}));
    assert!(matches!(
        queue.retry_dead(id, event).await,
        Err(rampart_jobs::QueueError::Store(
            rampart_store::StoreError::Conflict(_)
        ))
    ));
}

// ---- schedules ----------------------------------------------------------------------------

/// Two nodes enqueue the same slot at once, over and over: one job is stored. Then two
/// workers with the schedule run it once, and the next day's slot once more.
async fn a_scheduled_slot_enqueued_by_two_nodes_is_stored_and_run_once(app: TestApp) {
    let other = other_node(&app).await;
    let queues = [
        app.state.jobs().clone(),
        Queue::new(other.clone(), Arc::new(app.clock.clone())),
    ];
    let scheduled = Scheduled::new(&Count { n: 0 }, Schedule::daily_at("03:00").unwrap()).unwrap();
    let slot = scheduled.schedule().slot_at(app.clock.now_for_tests());
    let mut added = 0;
    for _ in 0..5 {
        let (x, y) = tokio::join!(
            queues[0].enqueue_slot(&scheduled, slot),
            queues[1].enqueue_slot(&scheduled, slot)
        );
        for r in [x.unwrap(), y.unwrap()] {
            added += usize::from(matches!(r, Enqueued::Added(_)));
        }
    }
    assert_eq!(added, 1);
    assert_eq!(count_in(&app.store, JobState::Queued).await, 1);

    let seen = Arc::new(Mutex::new(Seen::default()));
    let start = |i: usize| {
        let mut registry = Registry::new();
        registry.register(CountHandler {
            worker: i,
            seen: seen.clone(),
        });
        Running::start(
            Worker::new(queues[i].clone(), registry, settings(2)).schedule(scheduled.clone()),
        )
    };
    let workers = [start(0), start(1)];
    until("today's slot ran", || async {
        count_in(&app.store, JobState::Done).await == 1
    })
    .await;
    app.clock.advance(chrono::Duration::days(1));
    until("tomorrow's slot ran", || async {
        count_in(&app.store, JobState::Done).await == 2
    })
    .await;
    for w in workers {
        w.stop().await;
    }
    let all = app.store.jobs().list(None, None, 1000).await.unwrap();
    let mut keys: Vec<String> = all.iter().filter_map(|j| j.dedup_key.clone()).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            scheduled.dedup_key(slot),
            scheduled.dedup_key(scheduled.schedule().next_after(slot))
        ],
        "one job per slot"
    );
    let runs: u32 = seen.lock().unwrap().runs.values().sum();
    assert_eq!(runs, 2, "each slot ran once");
    other.close().await;
}

/// The worker `serve` and `rampart worker` run enqueues the daily audit retention at start
/// for the current slot and runs it: events older than the retention period leave the ledger
/// behind a checkpoint, and the chain still verifies.
async fn the_daily_audit_retention_runs_as_a_scheduled_job(app: TestApp) {
    let a = app.org("Alpha").await;
    let create = |name: &'static str| {
        let (app, a) = (&app, &a);
        async move { app.contact(a, json!({ "name": name })).await }
    };
    create("Old one").await;
    create("Old two").await;
    app.clock.advance(chrono::Duration::days(400));
    create("New").await;

    let mut config = rampart::config::Settings::default();
    config.jobs.poll_min_ms = 10;
    config.jobs.poll_max_ms = 20;
    let worker = rampart::cli::worker::build(
        &config,
        app.state.jobs().clone(),
        app.state.identity().unwrap().clone(),
    )
    .unwrap();
    let running = Running::start(worker);
    until("the retention job is done", || async {
        app.store
            .jobs()
            .list(Some(JobState::Done), None, 100)
            .await
            .unwrap()
            .iter()
            .any(|j| j.kind == "audit.retention")
    })
    .await;
    running.stop().await;
    let left: Vec<i64> = events(&app, &a.ws, &a.owner_key)
        .await
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(left, vec![3], "the two events over a year old are gone");
    let report = rampart_audit::verify_org(&app.store, &rampart_core::OperatorGrant::new(a.org))
        .await
        .unwrap();
    assert_eq!(report.from_checkpoint, 2);
}

// ---- the real binary ------------------------------------------------------------------------

/// The database a binary test runs on: the server's environment and the test's own store.
struct BinDb {
    env: Vec<(&'static str, String)>,
    url: Option<String>,
}

impl BinDb {
    async fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self {
                env: Vec::new(),
                url: None,
            }),
            Backend::Postgres => {
                let admin = common::postgres_admin_url()?;
                let (owner_url, app_url, _) = common::fresh_postgres(&admin).await;
                Some(Self {
                    env: vec![
                        ("RAMPART_DATABASE_URL", app_url.clone()),
                        ("RAMPART_DATABASE_OWNER_URL", owner_url),
                    ],
                    url: Some(app_url),
                })
            }
        }
    }

    fn env(&self, more: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        let mut env = self.env.clone();
        env.extend(more.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env
    }

    /// The test's own connection (the binary has migrated the database already).
    async fn store(&self, data: &Path) -> Store {
        match &self.url {
            None => Store::open_sqlite(&data.join("rampart.db"), common::pool_settings())
                .await
                .unwrap(),
            Some(url) => Store::connect_postgres(url, common::pool_settings())
                .await
                .unwrap(),
        }
    }
}

fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Starts `rampart worker` over `data` and waits until it runs.
fn start_worker(data: &Path, env: &[(&'static str, String)]) -> Server {
    // The test job writes its markers here; on PostgreSQL nothing else creates it.
    std::fs::create_dir_all(data).unwrap();
    let log = data.with_extension(format!("worker-{}.log", ulid::Ulid::new()));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(BIN)
        .arg("worker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RAMPART_DATA_DIR", data)
        .env("RAMPART_LOG_FORMAT", "json")
        .env("RAMPART_LOG", "debug")
        .env("RAMPART_JOBS__POLL_MIN_MS", "10")
        .env("RAMPART_JOBS__POLL_MAX_MS", "50")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut server = Server {
        child,
        addr: String::new(),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.log_lines("rampart worker is running").is_empty() {
        if Instant::now() > deadline || server.child.try_wait().unwrap().is_some() {
            panic!("the worker did not start: {}", server.log_text());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

fn sigterm(server: &Server) {
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
}

async fn exit_status(server: &mut Server) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "did not stop: {}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn started(data: &Path, id: JobId, attempt: u32) -> PathBuf {
    data.join(format!("started-{id}-{attempt}"))
}

async fn until_file(path: &Path) {
    until(&format!("{} exists", path.display()), || async {
        path.exists()
    })
    .await;
}

/// SIGTERM to `rampart serve` while a job runs: the job is allowed to finish (it ends after
/// the signal, once the test releases it), the server exits cleanly, and the job is done.
async fn sigterm_lets_a_running_job_finish(backend: Backend) {
    let Some(db) = BinDb::new(backend).await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = db.env(&[
        ("RAMPART_JOBS__POLL_MIN_MS", "10"),
        ("RAMPART_JOBS__POLL_MAX_MS", "50"),
    ]);
    let mut server = start(&data, &pairs(&env));
    let store = db.store(&data).await;
    let id = Queue::new(store.clone(), Arc::new(SystemClock))
        .enqueue(&Hold {})
        .await
        .unwrap();
    until_file(&started(&data, id, 1)).await;
    sigterm(&server);
    until("the worker drains", || async {
        !server.log_lines("job worker draining").is_empty()
    })
    .await;
    assert_eq!(job(&store, id).await.state, JobState::Running);
    std::fs::write(data.join(format!("release-{id}")), b"").unwrap();
    let status = exit_status(&mut server).await;
    assert!(status.success(), "{}", server.log_text());
    let done = job(&store, id).await;
    assert_eq!((done.state, done.attempts), (JobState::Done, 1));
    assert!(server.log_lines("released for another worker").is_empty());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_job_finish_on_sqlite() {
    sigterm_lets_a_running_job_finish(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_job_finish_on_postgres() {
    sigterm_lets_a_running_job_finish(Backend::Postgres).await;
}

/// `rampart worker` stopped by SIGTERM with a job that does not finish within the grace
/// (1 s): the job is cancelled and released (queued, its attempt given back, no lease), so a
/// second `rampart worker` takes it at once, without waiting for a lease to lapse.
async fn a_job_unfinished_after_the_grace_goes_to_another_worker(backend: Backend) {
    let Some(db) = BinDb::new(backend).await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = db.env(&[("RAMPART_SHUTDOWN_GRACE_SECS", "1")]);
    let mut first = start_worker(&data, &env);
    let store = db.store(&data).await;
    let id = Queue::new(store.clone(), Arc::new(SystemClock))
        .enqueue(&Hold {})
        .await
        .unwrap();
    let marker = started(&data, id, 1);
    until_file(&marker).await;
    std::fs::remove_file(&marker).unwrap();
    sigterm(&first);
    let status = exit_status(&mut first).await;
    assert!(status.success(), "{}", first.log_text());
    assert_eq!(first.log_lines("released for another worker").len(), 1);
    let released = job(&store, id).await;
    assert_eq!(
        (released.state, released.attempts, released.lease_until),
        (JobState::Queued, 0, None)
    );

    let mut second = start_worker(&data, &env);
    until_file(&marker).await;
    std::fs::write(data.join(format!("release-{id}")), b"").unwrap();
    until("the job is done", || async {
        job(&store, id).await.state == JobState::Done
    })
    .await;
    sigterm(&second);
    assert!(exit_status(&mut second).await.success());
    assert_eq!(job(&store, id).await.attempts, 1);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_unfinished_after_the_grace_goes_to_another_worker_on_sqlite() {
    a_job_unfinished_after_the_grace_goes_to_another_worker(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_unfinished_after_the_grace_goes_to_another_worker_on_postgres() {
    a_job_unfinished_after_the_grace_goes_to_another_worker(Backend::Postgres).await;
}

/// A job acting for one organization, known to no worker (the CLI does not need to run it).
#[derive(Debug, Serialize, Deserialize)]
struct OrgChore {
    org: OrgId,
}

impl Job for OrgChore {
    const KIND: &'static str = "test.org_chore";
    const MAX_ATTEMPTS: u32 = 1;

    fn subject(&self) -> JobSubject {
        JobSubject::Org {
            org: self.org,
            workspace: None,
        }
    }
}

/// `rampart jobs list --state dead` shows a dead job with its last error; `rampart jobs retry`
/// queues it again, refuses a job that is not dead and an unknown id with a clear error, and
/// the organization's ledger shows the operator's re-queue (and still verifies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_cli_lists_dead_jobs_and_an_audited_retry_queues_them_again() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (ws, key) = org_with_key(&data, &[], "growth");
    let store = Store::open_sqlite(&data.join("rampart.db"), common::pool_settings())
        .await
        .unwrap();
    let ws: WorkspaceId = ws.parse().unwrap();
    let (org, _) = store.workspace_org(ws).await.unwrap().unwrap();
    let clock = SystemClock;
    let id = Queue::new(store.clone(), Arc::new(clock))
        .enqueue(&OrgChore { org })
        .await
        .unwrap();
    let now = clock.now();
    let claimed = store
        .jobs()
        .claim(
            &[OrgChore::KIND],
            1,
            now,
            now + chrono::Duration::minutes(1),
            "t",
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let error = "attempt 1 of 1: the provider refused the message (daily quota exhausted)";
    assert!(store.jobs().bury(id, "t", now, error).await.unwrap());
    store.close().await;

    let dead = cli(&data, &[], &["jobs", "list", "--state", "dead", "--json"]);
    let listed = dead["jobs"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.to_string());
    assert_eq!(listed[0]["state"], "dead");
    assert_eq!(listed[0]["last_error"], error);
    let queued = cli(&data, &[], &["jobs", "list", "--state", "queued", "--json"]);
    assert!(queued["jobs"].as_array().unwrap().is_empty());
    // By kind: the dead chore is found under its own kind and under no other.
    let of_kind = |kind: &str| {
        cli(&data, &[], &["jobs", "list", "--kind", kind, "--json"])["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(of_kind(OrgChore::KIND), vec![id.to_string()]);
    assert!(of_kind("auth.mail").is_empty());

    let retried = cli(&data, &[], &["jobs", "retry", &id.to_string(), "--json"]);
    assert_eq!(retried["job"]["state"], "queued");
    assert_eq!(retried["job"]["attempts"], 0);
    assert_eq!(retried["recorded_in"], json!([org]));

    let refused = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RAMPART_DATA_DIR", &data)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let again = refused(&["jobs", "retry", &id.to_string()]);
    assert!(
        again.contains("is queued: only a dead job can be re-queued"),
        "{again}"
    );
    let unknown = JobId::generate();
    let missing = refused(&["jobs", "retry", &unknown.to_string()]);
    assert!(missing.contains(&format!("no job {unknown}")), "{missing}");
    let bad = refused(&["jobs", "list", "--state", "lost"]);
    assert!(bad.contains("queued, running, dead, done"), "{bad}");

    let server = start(&data, &[]);
    let recorded: Vec<Value> = reqwest::Client::new()
        .get(server.url(&format!(
            "/v1/workspaces/{ws}/audit-events?action=job.retry"
        )))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["data"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["actor"], "operator");
    assert_eq!(recorded[0]["method"], "CLI");
    assert_eq!(recorded[0]["path"], "rampart jobs retry");
    assert_eq!(recorded[0]["target"], id.to_string());
    drop(server);
    let verified = cli(&data, &[], &["audit", "verify", "--json"]);
    assert_eq!(verified["results"][0]["ok"], true);
}
