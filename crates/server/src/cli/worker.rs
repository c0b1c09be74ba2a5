//! The job worker every node runs, and `rampart worker`: the same worker without the HTTP
//! server, for scale-out (as many as needed, each with the same configuration as `serve`,
//! which runs one too unless `jobs.run_in_serve` is false). SIGTERM drains: no new claims,
//! running jobs get `shutdown_grace_secs` to finish, the rest are released for another worker.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rampart_core::Clock;
use rampart_jobs::kinds::prune::{PruneDoneJobs, PruneHandler};
use rampart_jobs::kinds::retention::{AuditRetention, RetentionHandler};
use rampart_jobs::{Backoff, Queue, Registry, Schedule, Scheduled, Worker, WorkerSettings};
use rampart_store::Store;
use tokio::sync::watch;

use crate::auth::Identity;
use crate::auth::account_mail::AccountMailHandler;
use crate::config::Settings;

/// The worker's settings from the configuration (`[jobs]` and `shutdown_grace_secs`).
pub fn worker_settings(settings: &Settings) -> WorkerSettings {
    let jobs = &settings.jobs;
    WorkerSettings {
        concurrency: jobs.concurrency,
        lease: Duration::from_secs(jobs.lease_secs),
        poll_min: Duration::from_millis(jobs.poll_min_ms),
        poll_max: Duration::from_millis(jobs.poll_max_ms),
        grace: Duration::from_secs(settings.shutdown_grace_secs),
        backoff: Backoff {
            base: Duration::from_secs(jobs.retry_base_secs),
            cap: Duration::from_secs(jobs.retry_max_secs),
        },
    }
}

/// The worker over `queue` with every job kind this build runs (account mail through
/// `identity`'s transport among them) and the platform's schedules: the daily audit retention
/// (at `audit.retention_at` UTC) and the hourly removal of old done jobs.
pub fn build(settings: &Settings, queue: Queue, identity: Identity) -> Result<Worker> {
    let store = queue.store().clone();
    let clock: Arc<dyn Clock> = queue.clock().clone();
    let mut registry = Registry::new();
    registry
        .register(AccountMailHandler::new(
            store.clone(),
            identity,
            clock.clone(),
        ))
        .register(RetentionHandler::new(
            store.clone(),
            clock.clone(),
            settings.audit.retention_days,
        ))
        .register(PruneHandler::new(
            store,
            clock,
            Duration::from_secs(u64::from(settings.jobs.keep_done_days) * 24 * 60 * 60),
        ));
    #[cfg(feature = "test-seams")]
    registry.register(test_seams::HoldHandler {
        dir: settings.data_dir.clone(),
    });
    let retention_at =
        Schedule::daily_at(&settings.audit.retention_at).context("audit.retention_at")?;
    Ok(Worker::new(queue, registry, worker_settings(settings))
        .schedule(Scheduled::new(&AuditRetention {}, retention_at)?)
        .schedule(Scheduled::new(
            &PruneDoneJobs {},
            Schedule::every_minutes(60)?,
        )?))
}

/// `rampart worker`: runs the worker over `store` until `stop` resolves (SIGTERM or Ctrl-C),
/// then drains.
pub async fn run(
    settings: &Settings,
    store: &Store,
    clock: Arc<dyn Clock>,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    let identity = super::open::identity(settings)?;
    let worker = build(settings, Queue::new(store.clone(), clock), identity)?;
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let running = tokio::spawn(worker.run(stopping_rx));
    tracing::info!(database = ?store.kind(), "rampart worker is running");
    stop.await;
    tracing::info!("shutting down: draining running jobs");
    let _ = stopping_tx.send(true);
    let drained = running.await.context("the job worker failed")?;
    tracing::info!(
        finished = drained.finished,
        released = drained.released.len(),
        "stopped"
    );
    Ok(())
}

/// A job kind for the test suite only (feature `test-seams`, never in a server build).
#[cfg(feature = "test-seams")]
pub mod test_seams {
    use std::path::PathBuf;

    use rampart_jobs::{Handler, Job, JobError, RunInfo};
    use serde::{Deserialize, Serialize};

    /// A job that writes `DATA_DIR/started-<job id>-<attempt>` when it starts and then runs
    /// until `DATA_DIR/release-<job id>` exists: a job that is observably running for as long
    /// as a test needs.
    #[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
    pub struct Hold {}

    impl Job for Hold {
        const KIND: &'static str = "test.hold";
        const MAX_ATTEMPTS: u32 = 3;
    }

    /// Runs [`Hold`] jobs.
    pub struct HoldHandler {
        /// The data directory.
        pub dir: PathBuf,
    }

    impl Handler<Hold> for HoldHandler {
        async fn handle(&self, _job: Hold, run: RunInfo) -> Result<(), JobError> {
            let started = self.dir.join(format!("started-{}-{}", run.id, run.attempt));
            std::fs::write(&started, b"")
                .map_err(|e| JobError::retry(format!("could not write the marker: {e}")))?;
            let release = self.dir.join(format!("release-{}", run.id));
            while !release.exists() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Ok(())
        }
    }
}
