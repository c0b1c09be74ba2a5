//! Rampart's durable job queue: work that runs outside a request (account mail, the daily
//! audit retention; later campaigns, webhooks, re-encryption) stored in the database on both
//! backends, so a restart or an outage delays it and loses none.
//!
//! - **Typed jobs.** A [`Job`] is a serde payload with a stable kind name and a maximum of
//!   attempts; a [`Handler`] runs it; a [`Registry`] maps kinds to handlers. Payloads carry
//!   ids only (the database is backed up): never an address, a token or a secret.
//! - **Enqueue** through a [`Queue`], now or at a time, optionally under a dedup key that makes
//!   it once across nodes.
//! - **Claim with a lease.** A [`Worker`] claims due jobs (PostgreSQL: `FOR UPDATE SKIP
//!   LOCKED`; SQLite: the store's one writer) and keeps each job's lease alive while it runs.
//!   A lease that lapses (its worker was killed) makes the job claimable again.
//! - **At least once.** A job may run more than once: after a crash, or when a draining worker
//!   cancels it at the end of the shutdown grace. Handlers must be safe to run twice.
//! - **Retries** with exponential backoff and full jitter ([`Backoff`]), up to the kind's
//!   maximum of attempts; then the job is **dead**, keeping its last error (written by the
//!   job's code for an operator: never a secret) until `rampart jobs retry` queues it again.
//! - **Schedules** ([`Schedule`], UTC): each slot's run is enqueued by every worker under the
//!   same dedup key, so it exists once.
//!
//! The queue's table is a platform table (no row-level security; workers claim across
//! organizations). A job that acts on tenant data names its organization (and workspace) and
//! opens that data through the ordinary doors when it runs.

mod backoff;
mod job;
mod queue;
mod schedule;
mod worker;

pub mod kinds;

pub use backoff::Backoff;
pub use job::{Handler, Job, JobError, Registry, RunInfo};
pub use queue::{MAX_PAYLOAD_BYTES, Queue, QueueError};
pub use rampart_store::jobs::{Enqueued, JobRecord, JobState, JobSubject, Requeued};
pub use schedule::{Schedule, ScheduleError, Scheduled};
pub use worker::{Drained, Worker, WorkerSettings};
