//! The worker: a loop that enqueues scheduled runs, claims due jobs up to a concurrency
//! limit, runs each in a task of its own with its lease kept alive, and records the outcome
//! (done; queued again after a backoff; dead). It polls with a growing delay while the queue is
//! idle, and wakes at once when a job is enqueued through a [`Queue`] sharing its signal or
//! when a running job ends.
//!
//! Stopping (SIGTERM) drains: no more claims; running jobs get the shutdown grace to finish;
//! those that do not are cancelled and **released**, queued again at once with the attempt
//! given back, so another worker takes them without waiting for the lease to lapse. A worker
//! that dies without draining (SIGKILL, a crash) leaves its leases to lapse, after which any
//! worker claims the jobs again (at least once).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rampart_core::JobId;
use rampart_store::jobs::ClaimedJob;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backoff::Backoff;
use crate::job::{BoxFuture, JobError, Registry, RunInfo};
use crate::queue::Queue;
use crate::schedule::Scheduled;

/// How a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSettings {
    /// Jobs run at once.
    pub concurrency: u32,
    /// How long a claim holds a job without news from its worker; a running job's lease is
    /// renewed every third of it, so only a stopped worker lets it lapse.
    pub lease: Duration,
    /// The first idle poll delay; it doubles while the queue stays empty.
    pub poll_min: Duration,
    /// The longest idle poll delay.
    pub poll_max: Duration,
    /// How long a stopping worker waits for its running jobs.
    pub grace: Duration,
    /// Waits between attempts.
    pub backoff: Backoff,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            lease: Duration::from_secs(60),
            poll_min: Duration::from_millis(200),
            poll_max: Duration::from_secs(5),
            grace: Duration::from_secs(30),
            backoff: Backoff::default(),
        }
    }
}

/// What became of the jobs a worker was running when it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drained {
    /// Jobs that ended within the grace period.
    pub finished: usize,
    /// Jobs cancelled after it and queued again for another worker.
    pub released: Vec<JobId>,
}

/// A job worker; see the module documentation.
pub struct Worker {
    queue: Queue,
    registry: Registry,
    settings: WorkerSettings,
    schedules: Vec<Scheduled>,
    draw: Draw,
}

/// Where a backoff's jitter comes from: a number in `[0, 1]`.
type Draw = fn() -> f64;

/// From the crypto room's source; should the OS generator fail, the full ceiling (the longest
/// wait, never a retry storm).
fn random_draw() -> f64 {
    rampart_crypto::random::fraction().unwrap_or(1.0)
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("kinds", &self.registry.kinds())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// One claimed job while it runs.
struct Running {
    job: ClaimedJob,
}

impl Worker {
    /// A worker running the kinds in `registry` from `queue`.
    pub fn new(queue: Queue, registry: Registry, settings: WorkerSettings) -> Self {
        Self {
            queue,
            registry,
            settings,
            schedules: Vec::new(),
            draw: random_draw,
        }
    }

    /// Takes each backoff's jitter from `draw` (a number in `[0, 1]`) instead of the thread's
    /// random generator: for tests that check the wait a failure gets.
    pub fn with_jitter(mut self, draw: fn() -> f64) -> Self {
        self.draw = draw;
        self
    }

    /// Also enqueues `scheduled`'s runs (its kind must be registered to run here, or on
    /// another node).
    pub fn schedule(mut self, scheduled: Scheduled) -> Self {
        self.schedules.push(scheduled);
        self
    }

    /// Runs until `stop` turns true (or its sender is dropped), then drains.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Drained {
        let kinds = self.registry.kinds();
        let wake = self.queue.wake().clone();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, Running> = HashMap::new();
        let mut slots: Vec<Option<DateTime<Utc>>> = vec![None; self.schedules.len()];
        let mut idle = self.settings.poll_min;
        let concurrency = self.settings.concurrency.max(1);
        tracing::info!(kinds = ?kinds, concurrency, "job worker started");
        loop {
            if *stop.borrow() {
                break;
            }
            self.enqueue_due(&mut slots).await;
            while let Some(joined) = tasks.try_join_next_with_id() {
                self.joined(&mut running, joined).await;
            }
            let free = concurrency.saturating_sub(u32::try_from(tasks.len()).unwrap_or(u32::MAX));
            let mut claimed = 0;
            if free > 0 {
                let now = self.queue.clock().now();
                let token = ulid::Ulid::new().to_string();
                let until = now + lease_delta(self.settings.lease);
                match self
                    .queue
                    .store()
                    .jobs()
                    .claim(&kinds, free, now, until, &token)
                    .await
                {
                    Ok(jobs) => {
                        claimed = jobs.len();
                        for job in jobs {
                            self.start(&mut tasks, &mut running, job);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not claim jobs; retrying"),
                }
            }
            if claimed > 0 {
                idle = self.settings.poll_min;
                continue;
            }
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    self.joined(&mut running, joined).await;
                    idle = self.settings.poll_min;
                }
                () = wake.notified() => idle = self.settings.poll_min,
                () = tokio::time::sleep(idle) => {
                    idle = (idle * 2).min(self.settings.poll_max.max(self.settings.poll_min));
                }
            }
        }
        self.drain(tasks, running).await
    }

    /// Enqueues each schedule's current slot once per slot (the dedup key makes it once
    /// across nodes too).
    async fn enqueue_due(&self, slots: &mut [Option<DateTime<Utc>>]) {
        let now = self.queue.clock().now();
        for (scheduled, last) in self.schedules.iter().zip(slots.iter_mut()) {
            let slot = scheduled.schedule().slot_at(now);
            if *last == Some(slot) {
                continue;
            }
            match self.queue.enqueue_slot(scheduled, slot).await {
                Ok(_) => *last = Some(slot),
                Err(e) => tracing::warn!(
                    error = %e,
                    kind = scheduled.kind(),
                    "could not enqueue a scheduled job; will try again"
                ),
            }
        }
    }

    fn start(
        &self,
        tasks: &mut JoinSet<()>,
        running: &mut HashMap<tokio::task::Id, Running>,
        job: ClaimedJob,
    ) {
        let info = RunInfo {
            id: job.id,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            subject: job.subject,
        };
        let Some(work) = self.registry.start(&job.kind, &job.payload, info) else {
            // Claims name only registered kinds, so this does not happen; were it to, the job
            // goes back for a worker that runs its kind.
            tracing::error!(job = %job.id, kind = %job.kind, "claimed a job of a kind this worker does not run; releasing it");
            let queue = self.queue.clone();
            tasks.spawn(async move {
                let now = queue.clock().now();
                let _ = queue.store().jobs().release(job.id, &job.lease, now).await;
            });
            return;
        };
        tracing::debug!(job = %job.id, kind = %job.kind, attempt = job.attempt, "job started");
        let handle = tasks.spawn(run_job(
            self.queue.clone(),
            job.clone(),
            work,
            self.settings,
            self.draw,
        ));
        running.insert(handle.id(), Running { job });
    }

    /// A job's task ended: normally (it recorded its outcome), or by panicking, in which case
    /// the failure is recorded here.
    async fn joined(
        &self,
        running: &mut HashMap<tokio::task::Id, Running>,
        joined: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
    ) {
        let (id, panicked) = match joined {
            Ok((id, ())) => (id, false),
            Err(e) => (e.id(), e.is_panic()),
        };
        if let Some(Running { job }) = running.remove(&id)
            && panicked
        {
            let failure = JobError::retry("the job's code panicked; see the worker's log");
            record(
                &self.queue,
                &job,
                Err(failure),
                self.settings.backoff,
                self.draw,
            )
            .await;
        }
    }

    /// Stops: waits up to the grace period for running jobs, then cancels and releases the rest.
    async fn drain(
        &self,
        mut tasks: JoinSet<()>,
        mut running: HashMap<tokio::task::Id, Running>,
    ) -> Drained {
        let mut drained = Drained::default();
        if !tasks.is_empty() {
            tracing::info!(
                running = tasks.len(),
                grace_secs = self.settings.grace.as_secs(),
                "job worker draining: no new claims; waiting for running jobs"
            );
        }
        let waited = tokio::time::timeout(self.settings.grace, async {
            while let Some(joined) = tasks.join_next_with_id().await {
                self.joined(&mut running, joined).await;
                drained.finished += 1;
            }
        })
        .await;
        if waited.is_err() {
            // Cancelling a task drops its job's future before `join_next` reports it, so no
            // code of a released job is still running when another worker may take it.
            tasks.abort_all();
            while let Some(joined) = tasks.join_next_with_id().await {
                match joined {
                    Ok((id, ())) => {
                        running.remove(&id);
                        drained.finished += 1;
                    }
                    Err(e) if e.is_panic() => self.joined(&mut running, Err(e)).await,
                    Err(_) => {}
                }
            }
            let now = self.queue.clock().now();
            for Running { job } in running.into_values() {
                match self
                    .queue
                    .store()
                    .jobs()
                    .release(job.id, &job.lease, now)
                    .await
                {
                    Ok(true) => {
                        tracing::warn!(job = %job.id, kind = %job.kind, "job did not finish within the shutdown grace; released for another worker");
                        drained.released.push(job.id);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(job = %job.id, error = %e, "could not release an unfinished job; it runs again once its lease lapses")
                    }
                }
            }
        }
        tracing::info!(
            finished = drained.finished,
            released = drained.released.len(),
            "job worker stopped"
        );
        drained
    }
}

fn lease_delta(lease: Duration) -> chrono::Duration {
    chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60))
}

/// Runs one job, renewing its lease every third of the lease while it runs; cancels the job
/// if the lease turns out to be lost (another worker has it now), else records the outcome.
async fn run_job(
    queue: Queue,
    job: ClaimedJob,
    mut work: BoxFuture<Result<(), JobError>>,
    settings: WorkerSettings,
    draw: Draw,
) {
    let beat = (settings.lease / 3).max(Duration::from_millis(10));
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            () = tokio::time::sleep(beat) => {
                let until = queue.clock().now() + lease_delta(settings.lease);
                match queue.store().jobs().extend(job.id, &job.lease, until).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job = %job.id, kind = %job.kind, "lost the job's lease (it lapsed and another worker took the job); cancelling this run");
                        return;
                    }
                    Err(e) => tracing::warn!(job = %job.id, error = %e, "could not renew the job's lease"),
                }
            }
        }
    };
    drop(work);
    record(&queue, &job, result, settings.backoff, draw).await;
}

/// Records a run's outcome: done; dead (a permanent failure, or the last attempt); or queued
/// again after a jittered backoff.
async fn record(
    queue: &Queue,
    job: &ClaimedJob,
    result: Result<(), JobError>,
    backoff: Backoff,
    draw: Draw,
) {
    let jobs = queue.store().jobs();
    let now = queue.clock().now();
    let written = match result {
        Ok(()) => {
            tracing::debug!(job = %job.id, kind = %job.kind, attempt = job.attempt, "job done");
            jobs.complete(job.id, &job.lease, now).await
        }
        Err(e) => {
            let text = format!("attempt {} of {}: {e}", job.attempt, job.max_attempts);
            if e.is_permanent() || job.attempt >= job.max_attempts {
                tracing::warn!(job = %job.id, kind = %job.kind, error = %text, "job is dead; `rampart jobs retry` queues it again");
                jobs.bury(job.id, &job.lease, now, &text).await
            } else {
                let wait = backoff.delay(job.attempt, draw());
                let at = now + chrono::Duration::from_std(wait).unwrap_or_default();
                tracing::info!(job = %job.id, kind = %job.kind, error = %text, retry_in_ms = wait.as_millis() as u64, "job failed; will retry");
                jobs.retry_later(job.id, &job.lease, now, &text, at).await
            }
        }
    };
    match written {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(job = %job.id, kind = %job.kind, "the job's lease was lost before its outcome was recorded; another run decides")
        }
        Err(e) => {
            tracing::error!(job = %job.id, error = %e, "could not record the job's outcome; it runs again once its lease lapses")
        }
    }
}
