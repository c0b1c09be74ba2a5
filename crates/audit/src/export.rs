//! Streaming an organization's events as NDJSON, one event per line in chain order, with the
//! chain links, so an exported file can be verified on its own.

use std::io::Write;

use chrono::{DateTime, Utc};
use rampart_core::OrgGrant;
use rampart_store::{Mode, Store, StoreError};

const BATCH: u32 = 5_000;

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the ledger failed.
    #[error("reading the ledger: {0}")]
    Store(#[from] StoreError),
    /// Writing the output failed.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes the events of the organization `grant` stands in with `since <= at < until` to
/// `out`; returns how many.
pub async fn export_ndjson(
    store: &Store,
    grant: &impl OrgGrant,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    let mut tx = store.ledger(grant, Mode::Read).await?;
    let mut after = 0i64;
    let mut count = 0u64;
    loop {
        let batch = tx.events_after(after, since, until, BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = last.event.seq;
        for event in &batch {
            serde_json::to_writer(&mut *out, event).map_err(std::io::Error::other)?;
            out.write_all(b"\n")?;
            count += 1;
        }
    }
    out.flush()?;
    Ok(count)
}
