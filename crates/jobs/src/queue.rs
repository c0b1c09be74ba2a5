//! Enqueueing typed jobs, and the operator's view of the queue.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rampart_core::{Clock, JobId};
use rampart_store::audit::NewEvent;
use rampart_store::jobs::{Enqueued, JobRecord, JobState, NewJob, Requeued};
use rampart_store::{Store, StoreError};
use tokio::sync::Notify;

use crate::job::Job;
use crate::schedule::Scheduled;

use crate::job::payload;
pub use crate::job::{MAX_PAYLOAD_BYTES, QueueError};

/// The durable queue: enqueue from anywhere (a request handler, a CLI command, a job); cheap
/// to clone. Clones share a wake-up signal with the [`crate::Worker`] built from them, so a
/// job enqueued on a node with a worker starts without waiting for the next poll.
#[derive(Clone)]
pub struct Queue {
    store: Store,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

impl Queue {
    /// The queue in `store`, reading time from `clock`.
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            wake: Arc::new(Notify::new()),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub(crate) fn wake(&self) -> &Arc<Notify> {
        &self.wake
    }

    /// Enqueues `job` to run now.
    pub async fn enqueue<J: Job>(&self, job: &J) -> Result<JobId, QueueError> {
        match self.enqueue_at(job, self.clock.now(), None).await? {
            Enqueued::Added(id) => Ok(id),
            // Without a dedup key every insert is new.
            Enqueued::Duplicate => Err(QueueError::Store(StoreError::Corrupt(
                "a job without a dedup key was taken for a duplicate".into(),
            ))),
        }
    }

    /// Enqueues `job` to run at `run_at` (or as soon after as a worker is free); with a
    /// `dedup_key`, only if no job with that key was ever stored (until done jobs are pruned).
    pub async fn enqueue_at<J: Job>(
        &self,
        job: &J,
        run_at: DateTime<Utc>,
        dedup_key: Option<&str>,
    ) -> Result<Enqueued, QueueError> {
        let payload = payload(job)?;
        let added = self
            .store
            .jobs()
            .enqueue(
                NewJob {
                    kind: J::KIND,
                    payload: &payload,
                    subject: job.subject(),
                    max_attempts: J::MAX_ATTEMPTS,
                    run_at,
                    dedup_key,
                },
                self.clock.now(),
            )
            .await?;
        if matches!(added, Enqueued::Added(_)) {
            self.wake.notify_one();
        }
        Ok(added)
    }

    /// Enqueues the run of a scheduled job in `slot`, once across every node.
    pub async fn enqueue_slot(
        &self,
        scheduled: &Scheduled,
        slot: DateTime<Utc>,
    ) -> Result<Enqueued, QueueError> {
        let key = scheduled.dedup_key(slot);
        let added = self
            .store
            .jobs()
            .enqueue(
                NewJob {
                    kind: scheduled.kind,
                    payload: &scheduled.payload,
                    subject: scheduled.subject,
                    max_attempts: scheduled.max_attempts,
                    run_at: slot,
                    dedup_key: Some(&key),
                },
                self.clock.now(),
            )
            .await?;
        if matches!(added, Enqueued::Added(_)) {
            self.wake.notify_one();
        }
        Ok(added)
    }

    /// One job.
    pub async fn get(&self, id: JobId) -> Result<Option<JobRecord>, QueueError> {
        Ok(self.store.jobs().get(id).await?)
    }

    /// Up to `limit` jobs, newest first, in `state` (or any) and of `kind` (or any).
    pub async fn list(
        &self,
        state: Option<JobState>,
        kind: Option<&str>,
        limit: u32,
    ) -> Result<Vec<JobRecord>, QueueError> {
        Ok(self.store.jobs().list(state, kind, limit).await?)
    }

    /// Queues a dead job again with all its attempts, recording `event` (an operator's) in the
    /// ledgers of the organizations it acts for (see [`rampart_store::jobs::Jobs::requeue_dead`]).
    pub async fn retry_dead(&self, id: JobId, event: NewEvent) -> Result<Requeued, QueueError> {
        let requeued = self
            .store
            .jobs()
            .requeue_dead(id, self.clock.now(), event)
            .await?;
        self.wake.notify_one();
        Ok(requeued)
    }
}
