//! `rampart`: the server and the operator CLI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use rampart::config::{Database, Settings, postgres_user};
use rampart::{AppState, app, telemetry};
use rampart_core::{Clock, Email, OrgId, Plan, Role, SystemClock, TenantGrant, WorkspaceId};
use rampart_crypto::{MasterKey, MasterKeyError, NewApiKey};
use rampart_store::{Mode, PoolSettings, Store, api_keys};
use serde_json::json;

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
    Serve {
        /// Address to bind, overriding RAMPART_LISTEN.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Apply pending database migrations.
    Migrate(JsonFlag),
    /// Operator commands on organizations, workspaces, keys and members.
    #[command(subcommand)]
    Admin(Admin),
    /// Master key management.
    #[command(subcommand)]
    Keys(Keys),
}

#[derive(Args, Clone, Copy)]
struct JsonFlag {
    /// Print machine-readable JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Admin {
    /// Create an organization with its first workspace and owner.
    CreateOrg {
        #[arg(long)]
        name: String,
        #[arg(long)]
        owner_email: String,
        #[arg(long, default_value = "free")]
        plan: Plan,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Add a workspace to an organization.
    CreateWorkspace {
        #[arg(long)]
        org: OrgId,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Mint an API key (the secret is printed once).
    CreateApiKey {
        #[arg(long)]
        workspace: WorkspaceId,
        #[arg(long)]
        role: Role,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Give a user (created if new) a role in a workspace.
    AddMember {
        #[arg(long)]
        workspace: WorkspaceId,
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: Role,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Subcommand)]
enum Keys {
    /// Write a new master key file (mode 0600); never overwrites.
    Init(JsonFlag),
}

fn emit(json: bool, value: serde_json::Value, text: String) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(&settings.log, settings.log_format == "json");
    match cli.command {
        Command::Serve { listen } => {
            if let Some(addr) = listen {
                settings.listen = addr;
            }
            serve(settings).await
        }
        Command::Migrate(out) => {
            let applied = migrate(&settings).await?;
            emit(
                out.json,
                json!({"applied": applied}),
                format!("applied {applied} migration(s)"),
            );
            Ok(())
        }
        Command::Admin(cmd) => admin(&settings, cmd).await,
        Command::Keys(Keys::Init(out)) => {
            let path = settings.master_key_path();
            ensure_private_dir(path.parent().unwrap_or(Path::new(".")))?;
            let key = MasterKey::generate_file(&path)?;
            emit(
                out.json,
                json!({"path": path, "key_id": key.id()}),
                format!(
                    "wrote master key {} to {}; back it up somewhere other than this machine",
                    key.id(),
                    path.display()
                ),
            );
            Ok(())
        }
    }
}

fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn pool_settings(s: &Settings) -> PoolSettings {
    PoolSettings {
        max_connections: s.database_max_connections,
        ..PoolSettings::default()
    }
}

/// Applies migrations; on PostgreSQL as the owner role when one is configured, granting the
/// application role its data privileges.
async fn migrate(settings: &Settings) -> Result<usize> {
    match settings.database()? {
        Database::Sqlite(path) => {
            ensure_private_dir(path.parent().unwrap_or(Path::new(".")))?;
            let store = Store::open_sqlite(&path, pool_settings(settings)).await?;
            let n = store.migrate().await?;
            store.close().await;
            Ok(n)
        }
        Database::Postgres(url) => {
            if settings.database_owner_url.is_empty() {
                let store = Store::connect_postgres(&url, pool_settings(settings)).await?;
                let n = store.migrate().await?;
                store.close().await;
                Ok(n)
            } else {
                let app_role = postgres_user(&url);
                let owner_role = postgres_user(&settings.database_owner_url);
                let grant_to = app_role.filter(|r| Some(r) != owner_role.as_ref());
                Ok(rampart_store::migrate_postgres_as_owner(
                    &settings.database_owner_url,
                    grant_to.as_deref(),
                )
                .await?)
            }
        }
    }
}

async fn open(settings: &Settings) -> Result<Store> {
    Ok(match settings.database()? {
        Database::Sqlite(path) => Store::open_sqlite(&path, pool_settings(settings)).await?,
        Database::Postgres(url) => Store::connect_postgres(&url, pool_settings(settings)).await?,
    })
}

fn load_or_create_master_key(settings: &Settings) -> Result<MasterKey> {
    if let Some(inline) = settings.master_key_inline() {
        return Ok(MasterKey::from_base64(
            inline.expose(),
            "RAMPART_MASTER_KEY",
        )?);
    }
    let path = settings.master_key_path();
    match MasterKey::load_file(&path) {
        Ok(key) => Ok(key),
        Err(MasterKeyError::Missing(_)) => {
            ensure_private_dir(path.parent().unwrap_or(Path::new(".")))?;
            let key = MasterKey::generate_file(&path)?;
            tracing::warn!(
                path = %path.display(),
                key_id = %key.id(),
                "GENERATED A NEW MASTER KEY. BACK IT UP NOW, somewhere other than this machine: without it, encrypted data and backups cannot be recovered"
            );
            Ok(key)
        }
        Err(e) => Err(e.into()),
    }
}

async fn serve(settings: Settings) -> Result<()> {
    ensure_private_dir(&settings.data_dir)?;
    let master = load_or_create_master_key(&settings)?;
    tracing::info!(key_id = %master.id(), "master key loaded");
    migrate(&settings).await?;
    let store = open(&settings).await?;
    store.ensure_restricted_role().await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = AppState::new(
        store.clone(),
        clock,
        Duration::from_secs(settings.key_cache_ttl_secs),
    );
    let app = app::build(state);
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, database = ?store.kind(), public_url = %settings.public_url(), "rampart is serving");

    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stopping_tx.send(true);
    });
    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    tokio::select! {
        result = server => result.context("server")?,
        () = async {
            let _ = stopping_rx.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!("grace period over; exiting with requests still in flight (their transactions roll back)"),
    }
    // A request abandoned after the grace period still holds its connection; exiting closes
    // it and the database rolls its transaction back.
    if tokio::time::timeout(Duration::from_secs(2), store.close())
        .await
        .is_err()
    {
        tracing::warn!("closing with database connections still busy");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

async fn admin(settings: &Settings, cmd: Admin) -> Result<()> {
    if matches!(settings.database()?, Database::Sqlite(_)) {
        // The embedded database may not exist yet: admin commands work before the first `serve`.
        migrate(settings).await?;
    }
    let store = open(settings).await?;
    let now = SystemClock.now();
    let result = admin_on(&store, now, cmd).await;
    store.close().await;
    result
}

async fn admin_on(store: &Store, now: chrono::DateTime<chrono::Utc>, cmd: Admin) -> Result<()> {
    match cmd {
        Admin::CreateOrg {
            name,
            owner_email,
            plan,
            out,
        } => {
            let name = non_empty(&name, "--name")?;
            let email = Email::parse(&owner_email).map_err(|e| anyhow!("--owner-email {e}"))?;
            let made = store.create_org(name, plan, &email, now).await?;
            emit(
                out.json,
                serde_json::to_value(made)?,
                format!(
                    "created organization {} with workspace {} and owner {}",
                    made.org_id, made.workspace_id, made.user_id
                ),
            );
        }
        Admin::CreateWorkspace { org, name, out } => {
            let name = non_empty(&name, "--name")?;
            let ws = store.create_workspace(org, name, now).await?;
            emit(
                out.json,
                json!({"workspace_id": ws, "org_id": org}),
                format!("created workspace {ws} in {org}"),
            );
        }
        Admin::CreateApiKey {
            workspace,
            role,
            name,
            out,
        } => {
            let name = non_empty(&name, "--name")?;
            let Some((org, _plan)) = store.workspace_org(workspace).await? else {
                bail!("workspace {workspace} not found");
            };
            let minted = NewApiKey::generate(workspace)?;
            let grant = TenantGrant::operator(org, workspace);
            let mut tx = store.tenant(&grant, Mode::Write).await?;
            let record = api_keys::create(
                &mut tx,
                name,
                role,
                &minted.hash,
                &minted.display_prefix,
                now,
            )
            .await?;
            tx.commit().await?;
            emit(
                out.json,
                json!({"id": record.id, "key": minted.token.expose(), "prefix": record.prefix, "name": record.name,
                       "role": record.role, "workspace_id": workspace}),
                format!(
                    "created API key {} ({role}) for {workspace}:\n\n    {}\n\nIt is shown only this once.",
                    record.id,
                    minted.token.expose()
                ),
            );
        }
        Admin::AddMember {
            workspace,
            email,
            role,
            out,
        } => {
            let email = Email::parse(&email).map_err(|e| anyhow!("--email {e}"))?;
            let (user, membership) = store.add_member(workspace, &email, role, now).await?;
            emit(
                out.json,
                json!({"user_id": user, "membership_id": membership, "workspace_id": workspace, "role": role}),
                format!("{user} is now {role} in {workspace}"),
            );
        }
    }
    Ok(())
}

fn non_empty<'a>(value: &'a str, flag: &str) -> Result<&'a str> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > 200 {
        bail!("{flag} must be 1 to 200 characters");
    }
    Ok(v)
}
