//! `rampart jobs list` and `rampart jobs retry`: the operator's view of the job queue. A
//! re-queue is recorded as `job.retry` (actor `operator`, method `CLI`, target the job) in the
//! ledger of the organization the job acts for; for a person's job (account mail) in each
//! organization the person belongs to; for a platform job (audit retention), in every
//! organization's, since its work reaches every tenant's ledger.

use std::sync::Arc;

use anyhow::{Result, bail};
use rampart_core::{JobId, SystemClock};
use rampart_jobs::{JobRecord, JobState, Queue, QueueError};
use rampart_store::StoreError;
use serde_json::json;

use super::operator_event;
use super::output::emit;

/// `rampart jobs …`.
#[derive(Debug, clap::Subcommand)]
pub enum JobsCmd {
    /// List jobs, newest first (dead ones with their last error).
    List(ListArgs),
    /// Queue a dead job again with all its attempts; recorded in the ledger.
    Retry(RetryArgs),
}

/// A job state, as the CLI spells it.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StateArg {
    /// Waiting to run.
    Queued,
    /// Leased by a worker.
    Running,
    /// Out of attempts: waits for `jobs retry`.
    Dead,
    /// Finished.
    Done,
}

impl From<StateArg> for JobState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Queued => JobState::Queued,
            StateArg::Running => JobState::Running,
            StateArg::Dead => JobState::Dead,
            StateArg::Done => JobState::Done,
        }
    }
}

/// Arguments of `jobs list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only jobs in this state.
    #[arg(long, value_enum)]
    pub state: Option<StateArg>,
    /// Only jobs of this kind (`auth.mail`, `audit.retention`, `jobs.prune_done`).
    #[arg(long)]
    pub kind: Option<String>,
    /// At most this many jobs (1 to 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `jobs retry`.
#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    /// The dead job to queue again.
    pub id: JobId,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `jobs` command against `store`.
pub async fn run(store: &rampart_store::Store, cmd: JobsCmd) -> Result<()> {
    let queue = Queue::new(store.clone(), Arc::new(SystemClock));
    match cmd {
        JobsCmd::List(args) => {
            if !(1..=1000).contains(&args.limit) {
                bail!("--limit must be between 1 and 1000");
            }
            let jobs = queue
                .list(args.state.map(Into::into), args.kind.as_deref(), args.limit)
                .await?;
            let text = if jobs.is_empty() {
                "no jobs".to_owned()
            } else {
                jobs.iter().map(line).collect::<Vec<_>>().join("\n")
            };
            emit(args.json, json!({ "jobs": jobs }), text);
        }
        JobsCmd::Retry(args) => {
            let event = operator_event("jobs retry", "job.retry", json!({"job": args.id}));
            let done = match queue.retry_dead(args.id, event).await {
                Ok(done) => done,
                Err(QueueError::Store(StoreError::NotFound(_))) => bail!("no job {}", args.id),
                Err(QueueError::Store(StoreError::Conflict(_))) => {
                    let state = queue
                        .get(args.id)
                        .await?
                        .map_or_else(|| "gone".to_owned(), |j| j.state.to_string());
                    bail!(
                        "job {} is {state}: only a dead job can be re-queued",
                        args.id
                    )
                }
                Err(e) => return Err(e.into()),
            };
            tracing::info!(job = %done.job.id, kind = %done.job.kind, organizations = done.recorded_in.len(), "an operator re-queued a dead job");
            emit(
                args.json,
                json!({"job": done.job, "recorded_in": done.recorded_in}),
                format!(
                    "re-queued {} ({}); recorded in the ledger of {} organization(s)",
                    done.job.id,
                    done.job.kind,
                    done.recorded_in.len()
                ),
            );
        }
    }
    Ok(())
}

/// One job on one line, for a terminal.
fn line(j: &JobRecord) -> String {
    let mut out = format!(
        "{} {} {} attempts {}/{} run_at {}",
        j.id,
        j.kind,
        j.state,
        j.attempts,
        j.max_attempts,
        j.run_at.format("%Y-%m-%dT%H:%M:%SZ")
    );
    if let Some(org) = j.org_id {
        out.push_str(&format!(" org {org}"));
    }
    if let Some(user) = j.user_id {
        out.push_str(&format!(" user {user}"));
    }
    if let Some(e) = &j.last_error {
        out.push_str(&format!("\n    last error: {e}"));
    }
    out
}
