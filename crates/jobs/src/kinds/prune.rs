//! Deleting jobs that finished successfully a while ago, so the queue's table stays small.
//! Dead jobs stay until an operator re-queues them.

use std::sync::Arc;
use std::time::Duration;

use rampart_core::Clock;
use rampart_store::Store;
use serde::{Deserialize, Serialize};

use crate::job::{Handler, Job, JobError, RunInfo};

/// Delete done jobs older than the configured age (a platform job: no payload).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneDoneJobs {}

impl Job for PruneDoneJobs {
    const KIND: &'static str = "jobs.prune_done";
    const MAX_ATTEMPTS: u32 = 3;
}

/// Runs [`PruneDoneJobs`].
pub struct PruneHandler {
    store: Store,
    clock: Arc<dyn Clock>,
    keep: Duration,
}

impl PruneHandler {
    /// Keeps done jobs for `keep`. Scheduled slots are enqueued only for the current slot, so
    /// a pruned slot's dedup key is never needed again as long as `keep` is longer than a day.
    pub fn new(store: Store, clock: Arc<dyn Clock>, keep: Duration) -> Self {
        Self { store, clock, keep }
    }
}

impl Handler<PruneDoneJobs> for PruneHandler {
    async fn handle(&self, _job: PruneDoneJobs, _run: RunInfo) -> Result<(), JobError> {
        let keep = chrono::Duration::from_std(self.keep).unwrap_or(chrono::Duration::days(7));
        let removed = self
            .store
            .jobs()
            .prune_done(self.clock.now() - keep)
            .await
            .map_err(|e| JobError::retry(format!("could not delete old done jobs: {e}")))?;
        tracing::info!(removed, "old done jobs deleted");
        Ok(())
    }
}
