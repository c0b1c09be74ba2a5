//! `rampart-bench`: the price of every control, measured (issue #7).
//!
//! `rampart-bench all [--quick]` builds and starts the real `rampart` binary as a separate
//! process on a fresh data directory, provisions a tenant with its operator CLI, drives it over
//! loopback HTTP with a fixed number of connections from this process, and writes
//! `bench/RESULTS.md`. The security-tax baseline is this same binary re-invoked as a hidden
//! `baseline-server` subcommand: a bare axum router over the same schema (SQLite or
//! PostgreSQL) with no authentication, tenancy, audit or idempotency; `variant-server` is
//! Rampart's own router with the edge controls and/or the mutation guard off, to split the tax
//! between them. Nothing here asserts on time: it measures and reports against the issue's
//! targets.

/// The allocator `rampart serve` runs on: the baseline and the variants, served from this
/// binary, allocate as Rampart does, so the tax compares controls and not allocators (as they
/// share its HTTP server for the same reason).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod baseline;
mod coldstart;
mod import;
mod ledger;
mod load;
mod pg;
mod pocketbase;
mod procs;
mod progress;
mod report;
mod seed;
mod shared;
mod signin;
mod stats;
mod suite;
mod variant;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rampart-bench",
    version,
    about = "Rampart's benchmark suite: runs every scenario and writes bench/RESULTS.md"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every scenario and write the report.
    All(Box<suite::Options>),
    /// The bare axum server (SQLite or PostgreSQL) the security tax is measured against
    /// (started by `all`).
    #[command(hide = true)]
    BaselineServer {
        #[command(flatten)]
        db: ServerDb,
        /// Loopback address to bind.
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Rampart's router with controls switched off (started by `all`).
    #[command(hide = true)]
    VariantServer {
        #[command(flatten)]
        db: ServerDb,
        /// Loopback address to bind.
        #[arg(long)]
        listen: SocketAddr,
        /// Switch the edge controls (security headers, rate limits, quotas) off.
        #[arg(long)]
        no_edge: bool,
        /// Switch the mutation guard (audit ledger, idempotency) off.
        #[arg(long)]
        no_guard: bool,
    },
}

/// The database a `baseline-server` or `variant-server` serves: one of the two.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct ServerDb {
    /// SQLite database migrated and provisioned by the real `rampart` binary.
    #[arg(long)]
    db: Option<PathBuf>,
    /// PostgreSQL database migrated and provisioned by the real `rampart` binary (from the
    /// environment, so that its password is not on a command line).
    #[arg(
        long,
        env = "RAMPART_BENCH_SERVER_DATABASE_URL",
        hide_env_values = true
    )]
    postgres_url: Option<String>,
}

impl ServerDb {
    fn database(&self) -> Result<baseline::Database<'_>> {
        match (&self.db, &self.postgres_url) {
            (Some(path), _) => Ok(baseline::Database::Sqlite(path)),
            (None, Some(url)) => Ok(baseline::Database::Postgres(url)),
            (None, None) => anyhow::bail!("name a database: --db or --postgres-url"),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::All(options) => client_runtime(options.client_threads)
            .and_then(|rt| rt.block_on(run_until_stopped(*options))),
        // The baseline gets tokio's default multi-threaded runtime, exactly as `rampart serve`.
        Command::BaselineServer { db, listen } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the runtime")
            .and_then(|rt| rt.block_on(baseline::serve(db.database()?, listen))),
        Command::VariantServer {
            db,
            listen,
            no_edge,
            no_guard,
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the runtime")
            .and_then(|rt| {
                rt.block_on(variant::serve(
                    db.database()?,
                    listen,
                    variant::Controls {
                        edge: !no_edge,
                        guard: !no_guard,
                    },
                ))
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the suite unless SIGINT or SIGTERM arrives first. Then the suite is dropped, which
/// kills every server it started (each child is spawned with `kill_on_drop`) and removes its
/// scratch directories, and the PostgreSQL databases it created are dropped: a stopped bench
/// leaves nothing running and nothing behind.
async fn run_until_stopped(options: suite::Options) -> Result<()> {
    let stopped_by = {
        let suite = suite::run(options);
        tokio::pin!(suite);
        tokio::select! {
            result = &mut suite => return result,
            signal = stop_signal() => signal?,
        }
        // The suite future is dropped here, before any clean-up that needs its servers gone.
    };
    eprintln!("rampart-bench: {stopped_by}: stopping servers and dropping benchmark databases");
    let dropped = pg::drop_leftovers().await?;
    anyhow::bail!("stopped by {stopped_by} (servers stopped; {dropped} database(s) dropped)")
}

/// Resolves with the name of the first stop signal received.
async fn stop_signal() -> Result<&'static str> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT").context("listening for SIGINT"),
        _ = term.recv() => Ok("SIGTERM"),
    }
}

/// The load generator's runtime. One thread by default, so that on a small machine the
/// client cannot take more than one core from the server it measures.
fn client_runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder
        .enable_all()
        .build()
        .context("starting the load generator's runtime")
}
