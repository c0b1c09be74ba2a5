//! The daily audit retention: every organization's events older than the retention period
//! leave its ledger behind a recorded checkpoint (`rampart_audit::retention`). Scheduled once
//! a day across all nodes; `rampart audit prune` does the same on demand.

use std::sync::Arc;

use rampart_core::Clock;
use rampart_store::Store;
use serde::{Deserialize, Serialize};

use crate::job::{Handler, Job, JobError, RunInfo};

/// Apply audit retention to every organization (a platform job: no payload).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRetention {}

impl Job for AuditRetention {
    const KIND: &'static str = "audit.retention";
    const MAX_ATTEMPTS: u32 = 5;
}

/// Runs [`AuditRetention`].
pub struct RetentionHandler {
    store: Store,
    clock: Arc<dyn Clock>,
    days: u32,
}

impl RetentionHandler {
    /// Keeps `days` days of events.
    pub fn new(store: Store, clock: Arc<dyn Clock>, days: u32) -> Self {
        Self { store, clock, days }
    }
}

impl Handler<AuditRetention> for RetentionHandler {
    /// Cuts each organization's ledger in turn; one that fails does not stop the others, and
    /// the run fails (to be retried) naming how many failed. A retry redoes the ones that
    /// succeeded, which finds nothing more to cut.
    async fn handle(&self, _job: AuditRetention, _run: RunInfo) -> Result<(), JobError> {
        let orgs = self
            .store
            .org_ids()
            .await
            .map_err(|e| JobError::retry(format!("could not list the organizations: {e}")))?;
        let mut failed = Vec::new();
        for org in &orgs {
            match rampart_audit::retention::apply(
                &self.store,
                &rampart_core::OperatorGrant::new(*org),
                self.days,
                self.clock.now(),
            )
            .await
            {
                Ok(Some(cp)) => {
                    tracing::info!(%org, seq = cp.seq, "audit retention: checkpoint recorded, older events removed")
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, %org, "audit retention failed");
                    failed.push(format!("{org}: {e}"));
                }
            }
        }
        match failed.as_slice() {
            [] => Ok(()),
            [first, ..] => Err(JobError::retry(format!(
                "retention failed for {} of {} organizations (first: {first})",
                failed.len(),
                orgs.len()
            ))),
        }
    }
}
