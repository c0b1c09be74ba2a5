//! `rampart audit`: verify the hash chains, export an organization's events, apply retention.

use anyhow::{Result, bail};
use rampart_core::{Clock, OrgId, SystemClock};
use rampart_store::Store;
use serde_json::json;

use super::open::open_migrated;
use super::output::JsonFlag;
use crate::config::Settings;

/// The audit subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// Verify hash chains (every organization, or one); exits non-zero naming the first bad
    /// sequence number.
    Verify {
        #[arg(long)]
        org: Option<OrgId>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Stream an organization's events, in chain order, to standard output.
    Export {
        #[arg(long)]
        org: OrgId,
        /// Only events at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only events before this RFC 3339 time.
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, value_enum, default_value = "ndjson")]
        format: ExportFormat,
    },
    /// Apply the retention period now (the job worker also does it daily).
    Prune {
        #[arg(long)]
        org: Option<OrgId>,
        #[command(flatten)]
        out: JsonFlag,
    },
}

/// The export formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON event per line.
    Ndjson,
}

/// Runs one audit subcommand against the configured store.
pub async fn run(settings: &Settings, cmd: AuditCmd) -> Result<()> {
    let store = open_migrated(settings).await?;
    let result = audit_on(&store, settings, cmd).await;
    store.close().await;
    result
}

/// `org`, which must exist (an operator's typo must not "verify" an empty ledger), or every
/// organization.
async fn orgs_or_all(store: &Store, org: Option<OrgId>) -> Result<Vec<OrgId>> {
    Ok(match org {
        Some(o) => vec![known_org(store, o).await?],
        None => store.org_ids().await?,
    })
}

/// `org` if it names an organization.
async fn known_org(store: &Store, org: OrgId) -> Result<OrgId> {
    match store.org(org).await? {
        Some(_) => Ok(org),
        None => bail!("no organization {org}"),
    }
}

async fn audit_on(store: &Store, settings: &Settings, cmd: AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Verify { org, out } => {
            let mut results = Vec::new();
            let mut broken = Vec::new();
            for org in orgs_or_all(store, org).await? {
                match rampart_audit::verify_org(store, &rampart_core::OperatorGrant::new(org)).await
                {
                    Ok(report) => {
                        if !out.json {
                            println!(
                                "ok {org}: {} events verified (from checkpoint {}), head {}",
                                report.events, report.from_checkpoint, report.head_hash
                            );
                        }
                        results.push(json!({"org": org, "ok": true, "events": report.events,
                                            "last_seq": report.last_seq, "head_hash": report.head_hash}));
                    }
                    Err(rampart_audit::VerifyError::Broken { org, seq, reason }) => {
                        if !out.json {
                            println!("BROKEN {org}: first bad sequence number {seq}: {reason}");
                        }
                        results.push(json!({"org": org, "ok": false, "first_bad_seq": seq, "reason": reason}));
                        broken.push(format!("{org} at sequence {seq}"));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if out.json {
                println!("{}", json!({ "results": results }));
            }
            if !broken.is_empty() {
                bail!("audit chain verification failed: {}", broken.join(", "));
            }
        }
        AuditCmd::Export {
            org,
            since,
            until,
            format: ExportFormat::Ndjson,
        } => {
            let stdout = std::io::stdout();
            let mut lock = std::io::BufWriter::new(stdout.lock());
            let org = known_org(store, org).await?;
            let n = rampart_audit::export::export_ndjson(
                store,
                &rampart_core::OperatorGrant::new(org),
                since,
                until,
                &mut lock,
            )
            .await?;
            eprintln!("exported {n} event(s)");
        }
        AuditCmd::Prune { org, out } => {
            let days = settings.audit.retention_days;
            let now = SystemClock.now();
            let mut results = Vec::new();
            for org in orgs_or_all(store, org).await? {
                let cp = rampart_audit::retention::apply(
                    store,
                    &rampart_core::OperatorGrant::new(org),
                    days,
                    now,
                )
                .await?;
                if !out.json {
                    match &cp {
                        Some(cp) => println!(
                            "{org}: removed events up to sequence {} (older than {days} days); checkpoint recorded",
                            cp.seq
                        ),
                        None => println!("{org}: nothing older than {days} days"),
                    }
                }
                results.push(json!({"org": org, "checkpoint": cp}));
            }
            if out.json {
                println!("{}", json!({ "results": results }));
            }
        }
    }
    Ok(())
}
