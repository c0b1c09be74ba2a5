//! Retention: events older than the configured number of days leave the ledger, but only
//! behind a checkpoint (org, sequence, hash) recorded first, so verification still proves
//! everything that remains. The database refuses any other deletion.

use chrono::{DateTime, Duration, Utc};
use rampart_core::OrgGrant;
use rampart_store::audit::Checkpoint;
use rampart_store::{Mode, Store, StoreError};

/// Removes the events of the organization `grant` stands in that are older than
/// `retention_days` before `now`; returns the checkpoint recorded, if anything was old enough.
pub async fn apply(
    store: &Store,
    grant: &impl OrgGrant,
    retention_days: u32,
    now: DateTime<Utc>,
) -> Result<Option<Checkpoint>, StoreError> {
    let cutoff = now - Duration::days(i64::from(retention_days));
    let mut tx = store.ledger(grant, Mode::Write).await?;
    let checkpoint = tx.prune_before(cutoff, now).await?;
    tx.commit().await?;
    Ok(checkpoint)
}
