//! Proving an organization's ledger intact: every link recomputed from the stored fields,
//! sequence numbers contiguous from the last retention checkpoint (or from 1), and the chain's
//! end equal to the recorded head, so a changed field, a deleted or reordered row, or a cut
//! tail each name the first sequence number that is wrong.

use rampart_core::audit::GENESIS;
use rampart_core::{OrgGrant, OrgId};
use rampart_store::{Store, StoreError};
use serde::Serialize;

/// An intact ledger's summary.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The organization.
    pub org: OrgId,
    /// Events checked.
    pub events: u64,
    /// Sequence number of the retention checkpoint the check started from (0: the beginning).
    pub from_checkpoint: i64,
    /// The last sequence number.
    pub last_seq: i64,
    /// The chain's final hash (hex).
    pub head_hash: String,
}

/// Why a ledger does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The chain is broken at `seq`.
    #[error("audit chain of {org} is broken at sequence {seq}: {reason}")]
    Broken {
        /// The organization.
        org: OrgId,
        /// The first bad sequence number.
        seq: i64,
        /// What is wrong there.
        reason: &'static str,
    },
    /// Reading the ledger failed.
    #[error("reading the ledger: {0}")]
    Store(#[from] StoreError),
}

/// Whether `text` is exactly the lower-case hex of `hash` (as stored), without allocating.
fn is_hex_of(text: &str, hash: &[u8; 32]) -> bool {
    let mut expected = [0u8; 64];
    hex::encode_to_slice(hash, &mut expected).is_ok() && text.as_bytes() == expected
}

/// Verifies the whole ledger (from its newest checkpoint) of the organization `grant` stands
/// in.
pub async fn verify_org(store: &Store, grant: &impl OrgGrant) -> Result<VerifyReport, VerifyError> {
    let org = grant.ledger_org();
    let broken = |seq, reason| VerifyError::Broken { org, seq, reason };
    let mut tx = store.chain_reader(grant).await?;
    let (start, mut prev) = match tx.latest_checkpoint().await? {
        Some(cp) => {
            let mut h = [0u8; 32];
            hex::decode_to_slice(&cp.hash, &mut h)
                .map_err(|_| broken(cp.seq, "checkpoint hash is not hex"))?;
            (cp.seq, h)
        }
        None => (0, GENESIS),
    };
    let mut expected = start + 1;
    let mut events = 0u64;
    let mut scratch = Vec::new();
    tx.scan_after(start, |link| {
        let seq = link.event.seq;
        if seq != expected {
            return Err(broken(
                expected,
                "an event is missing (gap in sequence numbers)",
            ));
        }
        if !is_hex_of(link.prev_hash, &prev) {
            return Err(broken(
                seq,
                "its previous-hash link does not match the event before it",
            ));
        }
        let computed = link.event.chain_hash_in(&prev, &mut scratch);
        if !is_hex_of(link.hash, &computed) {
            return Err(broken(seq, "its contents do not match its hash"));
        }
        prev = computed;
        expected += 1;
        events += 1;
        Ok(())
    })
    .await?;
    let (head_seq, head_hash) = tx.head().await?;
    if head_seq != expected - 1 {
        return Err(broken(
            expected,
            "events at the end of the chain are missing",
        ));
    }
    if head_hash != prev {
        return Err(broken(
            head_seq,
            "the chain's end does not match the recorded head",
        ));
    }
    if tx.unsealed().await? > 0 {
        return Err(broken(
            head_seq + 1,
            "events were recorded but never sealed into the chain",
        ));
    }
    Ok(VerifyReport {
        org,
        events,
        from_checkpoint: start,
        last_seq: head_seq,
        head_hash: hex::encode(prev),
    })
}
