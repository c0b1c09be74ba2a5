//! `rampart`: the server and the operator CLI. This file only parses the command line and
//! dispatches; each command lives in `cli/`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::{Parser, Subcommand};
use rampart::cli::output::{JsonFlag, emit, emit_error};
use rampart::cli::{self as ops, open};
use rampart::config::Settings;
use rampart::telemetry;
use rampart_core::SystemClock;
use serde_json::json;

/// mimalloc serves the server's many small, short-lived allocations (a read by id makes about
/// 150) from per-thread pages; with glibc's allocator `malloc` and `free` took about a tenth
/// of a read's CPU (see docs/architecture.md#the-allocator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "rampart",
    version,
    about = "Multi-tenant outreach and CRM backend, secure by construction"
)]
struct Cli {
    /// TOML configuration file (environment variables RAMPART_* override it).
    #[arg(long, global = true, env = "RAMPART_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (applies pending migrations first).
    Serve(ops::serve::ServeArgs),
    /// Apply pending database migrations.
    Migrate(JsonFlag),
    /// Operator commands on organizations, workspaces, keys and members.
    #[command(subcommand)]
    Admin(ops::admin::Admin),
    /// Master key management.
    #[command(subcommand)]
    Keys(ops::keys::KeysCmd),
    /// The audit ledger: verify, export, apply retention.
    #[command(subcommand)]
    Audit(ops::audit::AuditCmd),
    /// Write an encrypted (age) online snapshot of the SQLite database, or of its keyring.
    Backup(ops::backup::BackupArgs),
    /// Decrypt a backup into a new data directory and verify it before reporting success.
    Restore(ops::restore::RestoreArgs),
    /// Bulk imports from files.
    #[command(subcommand)]
    Import(ops::import::Import),
    /// Run the job worker alone, without the HTTP server (scale-out; `serve` runs one too).
    Worker,
    /// The job queue: list jobs, re-queue dead ones.
    #[command(subcommand)]
    Jobs(ops::jobs::JobsCmd),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // `--json` anywhere on the line asks for machine-readable output, errors included (clap
    // takes no option value that starts with `--`, so the token is always the flag).
    let json = std::env::args_os().skip(1).any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if json && e.use_stderr() => {
            let text = e.to_string();
            emit_error(true, text.trim().trim_start_matches("error: "));
            return std::process::ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            emit_error(json, &format!("{e:#}"));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(&settings.log, settings.log_format == "json");
    match cli.command {
        Command::Serve(args) => ops::serve::run(settings, args).await,
        Command::Migrate(out) => {
            let applied = open::migrate(&settings).await?;
            emit(
                out.json,
                json!({"applied": applied}),
                format!("applied {applied} migration(s)"),
            );
            Ok(())
        }
        Command::Admin(cmd) => ops::admin::run(&settings, cmd).await,
        Command::Audit(cmd) => ops::audit::run(&settings, cmd).await,
        Command::Backup(args) => ops::backup::run(&settings, args).await,
        Command::Restore(args) => ops::restore::run(args).await,
        Command::Import(cmd) => ops::import::run(&settings, cmd).await,
        Command::Keys(cmd) => ops::keys::run(&settings, cmd).await,
        Command::Worker => {
            open::migrate(&settings).await?;
            let store = open::open(&settings).await?;
            store.ensure_restricted_role().await?;
            let result = ops::worker::run(
                &settings,
                &store,
                Arc::new(SystemClock),
                ops::serve::shutdown_signal(),
            )
            .await;
            store.close().await;
            result
        }
        Command::Jobs(cmd) => {
            let store = open::open_migrated(&settings).await?;
            let result = ops::jobs::run(&store, cmd).await;
            store.close().await;
            result
        }
    }
}
