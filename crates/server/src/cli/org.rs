//! `rampart admin delete-org`: crypto-erasure of an organization. The order makes a crash
//! safe to rerun: the tombstone and its ledger event first, then the data key (after which no
//! copy of the organization's encrypted fields, backups included, can be opened), then rows.

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use rampart_core::OrgId;
use rampart_store::audit::NewEvent;
use rampart_store::{KeyScope, Store, Vault};
use serde_json::{Value, json};

/// Arguments of `admin delete-org`.
#[derive(Debug, clap::Args)]
pub struct DeleteOrg {
    /// The organization to delete.
    #[arg(long)]
    pub org: OrgId,
    /// Delete now, without the grace period (the only mode an operator has today).
    #[arg(long)]
    pub now: bool,
    /// Confirm: the organization's data key is destroyed and nothing can bring it back.
    #[arg(long)]
    pub yes: bool,
    /// Seconds to wait before erasing the rows a second time: a node may still hold the
    /// organization's API keys and data key in its caches (60 s at most) and accept a write.
    #[arg(long, default_value_t = 60)]
    pub settle_secs: u64,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

/// Tombstones the organization (recording `event` in its ledger), destroys every version of
/// its data key and deletes its tenant rows; returns a summary.
pub async fn delete_org(
    store: &Store,
    vault: &Vault,
    args: &DeleteOrg,
    now: DateTime<Utc>,
    event: NewEvent,
) -> Result<Value> {
    if !(args.now && args.yes) {
        bail!(
            "refusing: deleting {} destroys its data key, so its encrypted data (backups included) is gone for good; \
             pass --now --yes to proceed",
            args.org
        );
    }
    if store.org(args.org).await?.is_none() {
        bail!("organization {} not found", args.org);
    }
    store.tombstone_org(args.org, now, event).await?;
    let scope = KeyScope::Org(args.org);
    let keys = vault.keyring().destroy(scope, now).await?;
    vault.forget(scope);
    let mut rows = store.erase_org_data(args.org).await?;
    if args.settle_secs > 0 {
        eprintln!(
            "waiting {} s for every node's caches to expire, then erasing again",
            args.settle_secs
        );
        tokio::time::sleep(std::time::Duration::from_secs(args.settle_secs)).await;
        rows += store.erase_org_data(args.org).await?;
    }
    Ok(json!({"org_id": args.org, "data_keys_destroyed": keys, "rows_deleted": rows}))
}
