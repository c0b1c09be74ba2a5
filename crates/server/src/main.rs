//! `rampart`: the server and the operator CLI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use rampart::cli::operator_event;
use rampart::config::{Database, Settings, postgres_user};
use rampart::conn::{self, Caps, Edge, Timeouts};
use rampart::http::client::OverTls;
use rampart::http::headers::EdgeSettings;
use rampart::http::limits::LimitSettings;
use rampart::{AppState, app, cli as ops, telemetry};
use rampart_core::{Clock, Email, OrgId, Plan, Role, SystemClock, TenantGrant, WorkspaceId};
use rampart_crypto::{MasterKey, MasterKeyError, NewApiKey};
use rampart_guard::{Limiter, RedisFailure};
use rampart_store::audit;
use rampart_store::{KeyScope, Mode, PoolSettings, Store, Vault, api_keys};
use serde_json::json;

/// mimalloc serves the server's many small, short-lived allocations (a read by id makes about
/// 150) from per-thread pages; with glibc's allocator `malloc` and `free` took about a tenth
/// of a read's CPU (see docs/design-notes.md).
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
    Serve {
        /// Address to bind, overriding RAMPART_LISTEN.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// PEM certificate chain: serve https (with --tls-key).
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        /// PEM private key for --tls-cert.
        #[arg(long)]
        tls_key: Option<PathBuf>,
        /// Also listen for plain HTTP here, only to redirect to https.
        #[arg(long)]
        http_redirect_listen: Option<SocketAddr>,
    },
    /// Apply pending database migrations.
    Migrate(JsonFlag),
    /// Operator commands on organizations, workspaces, keys and members.
    #[command(subcommand)]
    Admin(Admin),
    /// Master key management.
    #[command(subcommand)]
    Keys(Keys),
    /// The audit ledger: verify, export, apply retention.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Write an encrypted (age) online snapshot of the SQLite database, or of its keyring.
    Backup(rampart::cli::backup::BackupArgs),
    /// Decrypt a backup into a new data directory and verify it before reporting success.
    Restore(rampart::cli::restore::RestoreArgs),
    /// Bulk imports from files.
    #[command(subcommand)]
    Import(ImportCmd),
    /// Run the job worker alone, without the HTTP server (scale-out; `serve` runs one too).
    Worker,
    /// The job queue: list jobs, re-queue dead ones.
    #[command(subcommand)]
    Jobs(ops::jobs::JobsCmd),
}

#[derive(Subcommand)]
enum ImportCmd {
    /// Provider credentials encrypted with Fernet by another system, re-sealed under the
    /// organization's data key.
    Credentials(ops::import::ImportCredentials),
    /// Contacts from CSV (name,email,phone,us_state,tags), validated row by row.
    Contacts(rampart::cli::import_contacts::ImportContactsArgs),
}

#[derive(Subcommand)]
enum AuditCmd {
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

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    /// One JSON event per line.
    Ndjson,
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
    /// Change an organization's settings: `--require-2fa true` makes every member without
    /// two-factor authentication enrol before reaching anything else.
    SetOrg {
        #[arg(long)]
        org: OrgId,
        #[arg(long = "require-2fa")]
        require_2fa: Option<bool>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Change an organization's plan (takes effect on every node within the key-cache TTL).
    SetPlan {
        #[arg(long)]
        org: OrgId,
        #[arg(long)]
        plan: Plan,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Disable a user (every session ends, sign-in is refused) or, with `--enable`, enable again.
    DisableUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        enable: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Set a user's password hash imported from another system (argon2id PHC or bcrypt
    /// `$2a$/$2b$/$2y$`), read from a file so it stays out of shell history; bcrypt hashes are
    /// replaced by argon2id at the next sign-in. `--confirmed` marks the email confirmed.
    ImportPasswordHash {
        #[arg(long)]
        email: String,
        #[arg(long)]
        hash_file: PathBuf,
        #[arg(long)]
        confirmed: bool,
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
    /// Delete an organization now: destroy its data key (crypto-erasure) and its rows.
    DeleteOrg(ops::org::DeleteOrg),
    /// Turn a person's two-factor authentication off (secret and backup codes deleted), end
    /// every session and mail them; audited in each of their organizations.
    #[command(name = "reset-2fa")]
    ResetTwoFactor(ops::identity::ResetTwoFactor),
}

#[derive(Subcommand)]
enum Keys {
    /// Write a new master key file (mode 0600); never overwrites.
    Init(JsonFlag),
    /// Rewrap every data key under a new master key (resumable).
    RotateMaster(ops::keys::RotateMaster),
    /// Give an organization a new data key and re-encrypt its fields (resumable).
    RotateOrg(ops::keys::RotateOrg),
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
        Command::Serve {
            listen,
            tls_cert,
            tls_key,
            http_redirect_listen,
        } => {
            if let Some(addr) = listen {
                settings.listen = addr;
            }
            settings.tls_cert = tls_cert.or(settings.tls_cert.take());
            settings.tls_key = tls_key.or(settings.tls_key.take());
            settings.http_redirect_listen = http_redirect_listen.or(settings.http_redirect_listen);
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
        Command::Audit(cmd) => audit_command(&settings, cmd).await,
        Command::Backup(args) => rampart::cli::backup::run(&settings, args).await,
        Command::Restore(args) => rampart::cli::restore::run(args).await,
        Command::Import(ImportCmd::Credentials(args)) => {
            keys_command(
                &settings,
                KeysOrImport::Import(ops::import::Import::Credentials(args)),
            )
            .await
        }
        Command::Import(ImportCmd::Contacts(args)) => {
            rampart::cli::import_contacts::run(&settings, args).await
        }
        Command::Worker => {
            migrate(&settings).await?;
            let store = open(&settings).await?;
            store.ensure_restricted_role().await?;
            let result =
                ops::worker::run(&settings, &store, Arc::new(SystemClock), shutdown_signal()).await;
            store.close().await;
            result
        }
        Command::Jobs(cmd) => {
            let store = open_migrated(&settings).await?;
            let result = ops::jobs::run(&store, cmd).await;
            store.close().await;
            result
        }
        Command::Keys(Keys::RotateMaster(args)) => {
            keys_command(&settings, KeysOrImport::Master(args)).await
        }
        Command::Keys(Keys::RotateOrg(args)) => {
            keys_command(&settings, KeysOrImport::Org(args)).await
        }
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
        Database::Postgres(url) => match settings.database_owner()? {
            None => {
                let store = Store::connect_postgres(&url, pool_settings(settings)).await?;
                let n = store.migrate().await?;
                store.close().await;
                Ok(n)
            }
            Some(owner_url) => {
                let app_role = postgres_user(&url);
                let owner_role = postgres_user(&owner_url);
                let grant_to = app_role.filter(|r| Some(r) != owner_role.as_ref());
                Ok(
                    rampart_store::migrate_postgres_as_owner(&owner_url, grant_to.as_deref())
                        .await?,
                )
            }
        },
    }
}

async fn open(settings: &Settings) -> Result<Store> {
    Ok(match settings.database()? {
        Database::Sqlite(path) => Store::open_sqlite(&path, pool_settings(settings)).await?,
        Database::Postgres(url) => {
            if let Some(why) = rampart::config::unverified_postgres_link(&url) {
                tracing::warn!(
                    "the link to PostgreSQL can be intercepted: {why}; add sslmode=verify-full (and sslrootcert=PATH for a private CA) to the database URL"
                );
            }
            Store::connect_postgres(&url, pool_settings(settings)).await?
        }
    })
}

/// Loads the master key. A missing key file is created only for a database that holds no
/// organization yet (a new install); for one that does, a missing key means data that cannot
/// be decrypted, so the command stops and says why instead of quietly making a new key.
async fn master_key(settings: &Settings, store: &Store) -> Result<MasterKey> {
    if let Some(inline) = settings.master_key_inline() {
        return Ok(MasterKey::from_base64(
            inline.expose(),
            "RAMPART_MASTER_KEY",
        )?);
    }
    let path = settings.master_key_path();
    match MasterKey::load_file(&path) {
        Ok(key) => Ok(key),
        Err(MasterKeyError::Missing(_)) if store.org_ids().await?.is_empty() => {
            ensure_private_dir(path.parent().unwrap_or(Path::new(".")))?;
            let key = MasterKey::generate_file(&path)?;
            tracing::warn!(
                path = %path.display(),
                key_id = %key.id(),
                "GENERATED A NEW MASTER KEY. BACK IT UP NOW, somewhere other than this machine: without it, encrypted data and backups cannot be recovered"
            );
            Ok(key)
        }
        Err(MasterKeyError::Missing(_)) => bail!(
            "master key file {} is missing, but this database already holds organizations: restore the key from your backup \
             (or point RAMPART_MASTER_KEY_FILE at it); a new key could not decrypt their data",
            path.display()
        ),
        Err(e) => Err(e.into()),
    }
}

/// Identity services from `[auth]`, the mail transport and the public URL.
fn identity(settings: &Settings) -> Result<rampart::auth::Identity> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mailer =
        rampart::auth::mail::Mailer::from_url(&settings.mail_transport(), &settings.auth.mail_from)
            .context("mail_transport")?;
    let hasher = rampart::auth::password::Hasher::with_threads(
        settings.auth.hash_threads,
        settings.auth.hash_nice,
    )
    .context("setting up password hashing")?;
    match hasher.priority() {
        Ok(nice) => tracing::debug!(nice, "password hashing threads started"),
        Err(reason) => tracing::warn!(
            %reason,
            "password hashing threads run at the request threads' priority: a sign-in flood will slow other requests more"
        ),
    }
    Ok(rampart::auth::Identity::new(
        settings.auth.clone(),
        hasher,
        mailer,
        &settings.public_url(),
    ))
}

async fn serve(settings: Settings) -> Result<()> {
    // Before the listener opens: otherwise the first write with a phone number after every
    // start waited about 90 ms for it (bench scenario 7). On this thread rather than one of its
    // own, whose allocator heap kept another 3 MB of the loading's scratch memory (idle RSS
    // 31 MB against 28 MB, measured 2026-12-07).
    if !rampart_core::contact::Phone::load_metadata() {
        tracing::warn!("phone-number metadata refused the number used to load it");
    }
    ensure_private_dir(&settings.data_dir)?;
    migrate(&settings).await?;
    let store = open(&settings).await?;
    store.ensure_restricted_role().await?;
    if store.postgres_autovacuum().await? == Some(false) {
        tracing::warn!(
            "PostgreSQL's autovacuum is off: tables are never analyzed, so the planner keeps plans it made while they were empty (a foreign-key check can then read a whole workspace per row); turn autovacuum on, or run ANALYZE regularly"
        );
    }
    let master = master_key(&settings, &store).await?;
    tracing::info!(key_id = %master.id(), "master key loaded");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let vault = ops::open_vault(&settings, &store, master, clock.clone()).await?;
    let state = AppState::new(
        store.clone(),
        vault.clone(),
        clock,
        Duration::from_secs(settings.key_cache_ttl_secs),
    );
    let edge = EdgeSettings {
        hsts: settings.public_url().starts_with("https://"),
        hsts_preload: settings.hsts_preload,
        server_timing: settings.server_timing,
    };
    let limiter = limiter(&settings).await?;
    let limits = LimitSettings {
        rates: settings.rate_limits.clone(),
        quotas: settings.quotas.clone(),
        disabled_for_benchmarks: false,
    };
    let state = state
        .with_edge(edge)
        .with_limits(limiter, limits)
        .with_trusted_proxies(settings.trusted_proxy_nets()?)
        .with_identity(identity(&settings)?);
    let worker = if settings.jobs.run_in_serve {
        Some(ops::worker::build(&settings, state.jobs().clone())?)
    } else {
        tracing::info!("jobs.run_in_serve is false: this node runs no jobs (run `rampart worker`)");
        None
    };
    let app = app::build(state);
    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(rampart::tls::server_config(cert, key)?),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    let caps = conn::caps_at_start(
        &settings.http,
        settings.database_max_connections,
        settings.trusted_proxy_nets()?,
    );
    let listener = std::net::TcpListener::bind(settings.listen)
        .with_context(|| format!("binding {}", settings.listen))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    if let Some(addr) = settings.http_redirect_listen {
        spawn_https_redirect(addr, &settings, local.port(), caps.clone())?;
    }
    tracing::info!(listen = %local, tls = tls.is_some(), database = ?store.kind(), public_url = %settings.public_url(), "rampart is serving");
    // Started once nothing can fail before serving: a start-up error leaves no claimed job.
    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    let worker = worker.map(|w| tokio::spawn(w.run(stopping_rx.clone())));

    let handle: axum_server::Handle<SocketAddr> = axum_server::Handle::new();
    let signal_handle = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stopping_tx.send(true);
        signal_handle.graceful_shutdown(Some(grace));
    });
    let app = match tls {
        Some(_) => app.layer(axum::Extension(OverTls)),
        None => app,
    };
    let edge = Edge {
        caps,
        timeouts: Timeouts::from_settings(&settings.http),
        tls,
    };
    let server = conn::serve(listener, app, edge, handle);
    tokio::select! {
        result = server => result.context("server")?,
        () = async {
            let _ = stopping_rx.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace + Duration::from_secs(1)).await;
        } => tracing::warn!("grace period over; exiting with requests still in flight (their transactions roll back)"),
    }
    // The worker stopped claiming at the signal; it gives running jobs the same grace and
    // releases the unfinished ones before it returns.
    if let Some(worker) = worker {
        match tokio::time::timeout(grace + Duration::from_secs(5), worker).await {
            Ok(Ok(drained)) => tracing::info!(
                finished = drained.finished,
                released = drained.released.len(),
                "job worker drained"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "the job worker failed"),
            Err(_) => tracing::warn!(
                "the job worker did not stop in time; its unreleased jobs run again once their leases lapse"
            ),
        }
    }
    // A request abandoned after the grace period still holds its connection; exiting closes
    // it and the database rolls its transaction back.
    if tokio::time::timeout(Duration::from_secs(2), store.close())
        .await
        .is_err()
    {
        tracing::warn!("closing with database connections still busy");
    }
    vault.keyring().close().await;
    if let Some(w) = store.write_stats() {
        // How well group commit grouped: requests per commit under this server's load.
        tracing::info!(
            write_requests = w.members,
            commits = w.commits,
            "SQLite writes since start"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts the plain-HTTP listener that only redirects to https, behind the same connection
/// caps and timeouts as the main listener.
fn spawn_https_redirect(
    addr: SocketAddr,
    settings: &Settings,
    tls_port: u16,
    caps: Arc<Caps>,
) -> Result<()> {
    // Only a public URL the operator set fixes the redirect's origin; the default one is a
    // guess from the listen address, and the request's own host name is the better guess.
    let router = rampart::redirect::router(&settings.public_url, tls_port);
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    tracing::info!(listen = %listener.local_addr()?, "plain-HTTP listener redirects to https");
    let edge = Edge {
        caps,
        timeouts: Timeouts::from_settings(&settings.http),
        tls: None,
    };
    tokio::spawn(async move {
        let _ = conn::serve(listener, router, edge, axum_server::Handle::new()).await;
    });
    Ok(())
}

/// The rate limiter: in-process, or shared through Redis when `redis_url` is set.
async fn limiter(settings: &Settings) -> Result<Arc<Limiter>> {
    if settings.redis_url.is_empty() {
        return Ok(Arc::new(Limiter::local()));
    }
    let failure = if settings.redis_failure == "open" {
        RedisFailure::Open
    } else {
        RedisFailure::Closed
    };
    match Limiter::redis(&settings.redis_url, &settings.redis_prefix, failure).await {
        Ok(l) => {
            tracing::info!(failure = %settings.redis_failure, "rate limits and quotas are shared through Redis");
            Ok(Arc::new(l))
        }
        Err(e) if failure == RedisFailure::Open => {
            tracing::error!(error = %e, "REDIS UNREACHABLE AT START; redis_failure=open: limits fall back to this node only");
            Ok(Arc::new(Limiter::local()))
        }
        Err(e) => bail!(
            "Redis at the configured URL is unreachable ({e}) and redis_failure=closed; refusing to start"
        ),
    }
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

/// Opens the store for an operator command, migrating an embedded database first (it may not
/// exist yet).
async fn open_migrated(settings: &Settings) -> Result<Store> {
    if matches!(settings.database()?, Database::Sqlite(_)) {
        migrate(settings).await?;
    }
    open(settings).await
}

async fn audit_command(settings: &Settings, cmd: AuditCmd) -> Result<()> {
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
                match rampart_audit::verify_org(store, org).await {
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
            let n =
                rampart_audit::export::export_ndjson(store, org, since, until, &mut lock).await?;
            eprintln!("exported {n} event(s)");
        }
        AuditCmd::Prune { org, out } => {
            let days = settings.audit.retention_days;
            let now = SystemClock.now();
            let mut results = Vec::new();
            for org in orgs_or_all(store, org).await? {
                let cp = rampart_audit::retention::apply(store, org, days, now).await?;
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

/// Opens the store (migrating an embedded database first) and the vault, for operator commands.
async fn open_with_vault(settings: &Settings) -> Result<(Store, Vault)> {
    if matches!(settings.database()?, Database::Sqlite(_)) {
        // The embedded database may not exist yet: admin commands work before the first `serve`.
        migrate(settings).await?;
    }
    let store = open(settings).await?;
    let vault = async {
        let master = master_key(settings, &store).await?;
        ops::open_vault(settings, &store, master, Arc::new(SystemClock)).await
    }
    .await;
    match vault {
        Ok(vault) => Ok((store, vault)),
        Err(e) => {
            store.close().await;
            Err(e)
        }
    }
}

async fn admin(settings: &Settings, cmd: Admin) -> Result<()> {
    let (store, vault) = open_with_vault(settings).await?;
    let now = SystemClock.now();
    let result = admin_on(settings, &store, &vault, now, cmd).await;
    vault.keyring().close().await;
    store.close().await;
    result
}

enum KeysOrImport {
    Master(ops::keys::RotateMaster),
    Org(ops::keys::RotateOrg),
    Import(ops::import::Import),
}

async fn keys_command(settings: &Settings, cmd: KeysOrImport) -> Result<()> {
    let (store, vault) = open_with_vault(settings).await?;
    let now = SystemClock.now();
    let mut err = std::io::stderr();
    let (json, result) = match &cmd {
        KeysOrImport::Master(args) => (
            args.json,
            match rampart_crypto::MasterKey::load_file(&args.new_key_file) {
                Ok(new) => ops::keys::rotate_master(&vault, &new, &mut err).await,
                Err(e) => Err(e.into()),
            },
        ),
        KeysOrImport::Org(args) => (
            args.json,
            ops::keys::rotate_org(&store, &vault, args, &mut err).await,
        ),
        KeysOrImport::Import(ops::import::Import::Credentials(args)) => {
            let event = operator_event("import credentials", "credential.import", json!({}));
            (
                args.json,
                ops::import::credentials(&store, &vault, args, now, event).await,
            )
        }
    };
    vault.keyring().close().await;
    store.close().await;
    let value = result?;
    emit(json, value.clone(), value.to_string());
    Ok(())
}

async fn admin_on(
    settings: &Settings,
    store: &Store,
    vault: &Vault,
    now: chrono::DateTime<chrono::Utc>,
    cmd: Admin,
) -> Result<()> {
    match cmd {
        Admin::ResetTwoFactor(args) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mailer = rampart::auth::mail::Mailer::from_url(
                &settings.mail_transport(),
                &settings.auth.mail_from,
            )
            .context("mail_transport")?;
            let event = operator_event("admin reset-2fa", "user.reset_2fa", json!({}));
            let done = ops::identity::reset_two_factor(store, &mailer, &args, now, event).await?;
            emit(
                args.json,
                done.clone(),
                format!(
                    "two-factor authentication is off for {}; {} session(s) ended",
                    args.email, done["sessions_ended"]
                ),
            );
        }
        Admin::DeleteOrg(args) => {
            let event = operator_event("admin delete-org", "org.delete", json!({"org": args.org}));
            let done = ops::org::delete_org(store, vault, &args, now, event).await?;
            emit(
                args.json,
                done.clone(),
                format!(
                    "deleted organization {}: its data key is destroyed and its rows removed ({done})",
                    args.org
                ),
            );
        }
        Admin::CreateOrg {
            name,
            owner_email,
            plan,
            out,
        } => {
            let name = non_empty(&name, "--name")?;
            let email = Email::parse(&owner_email).map_err(|e| anyhow!("--owner-email {e}"))?;
            let event = operator_event(
                "admin create-org",
                "org.create",
                json!({"name": name, "plan": plan, "owner_email": email.as_str()}),
            );
            let made = store
                .create_org(name, plan, &email, now, Some(event))
                .await?;
            vault.ensure_key(KeyScope::Org(made.org_id)).await?;
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
            let event = operator_event(
                "admin create-workspace",
                "workspace.create",
                json!({"org": org, "name": name}),
            );
            let ws = store.create_workspace(org, name, now, Some(event)).await?;
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
            let mut event = operator_event(
                "admin create-api-key",
                "api_key.create",
                json!({"name": name, "role": role}),
            );
            event.workspace = Some(workspace);
            event.target = Some(record.id.to_string());
            audit::append(&mut tx, event, now).await?;
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
        Admin::SetOrg {
            org,
            require_2fa,
            out,
        } => {
            let Some(required) = require_2fa else {
                bail!("nothing to change: pass --require-2fa true|false");
            };
            let event = operator_event(
                "admin set-org",
                "org.update",
                json!({"org": org, "require_2fa": required}),
            );
            store
                .set_require_2fa(org, required, now, Some(event))
                .await?;
            emit(
                out.json,
                json!({"org_id": org, "require_2fa": required}),
                if required {
                    format!("{org} now requires two-factor authentication of its members")
                } else {
                    format!("{org} no longer requires two-factor authentication")
                },
            );
        }
        Admin::SetPlan { org, plan, out } => {
            let event = operator_event(
                "admin set-plan",
                "org.set_plan",
                json!({"org": org, "plan": plan}),
            );
            store.set_plan(org, plan, now, Some(event)).await?;
            emit(
                out.json,
                json!({"org_id": org, "plan": plan}),
                format!("{org} is now on the {plan} plan"),
            );
        }
        Admin::AddMember {
            workspace,
            email,
            role,
            out,
        } => {
            let email = Email::parse(&email).map_err(|e| anyhow!("--email {e}"))?;
            let event = operator_event(
                "admin add-member",
                "member.add",
                json!({"email": email.as_str(), "role": role}),
            );
            let (user, membership) = store
                .add_member(workspace, &email, role, now, Some(event))
                .await?;
            emit(
                out.json,
                json!({"user_id": user, "membership_id": membership, "workspace_id": workspace, "role": role}),
                format!("{user} is now {role} in {workspace}"),
            );
        }
        Admin::DisableUser { email, enable, out } => {
            let user = user_by_email(store, &email).await?;
            let ended = store.set_user_disabled(user, !enable, now).await?;
            let action = if enable {
                "user.enable"
            } else {
                "user.disable"
            };
            store
                .record_for_user(
                    user,
                    &operator_event(
                        "admin disable-user",
                        action,
                        json!({"sessions_ended": ended}),
                    ),
                    now,
                )
                .await?;
            emit(
                out.json,
                json!({"user_id": user, "disabled": !enable, "sessions_ended": ended}),
                if enable {
                    format!("{user} can sign in again")
                } else {
                    format!("{user} is disabled; {ended} session(s) ended")
                },
            );
        }
        Admin::ImportPasswordHash {
            email,
            hash_file,
            confirmed,
            out,
        } => {
            let user = user_by_email(store, &email).await?;
            let hash = std::fs::read_to_string(&hash_file)
                .with_context(|| format!("reading {}", hash_file.display()))?;
            let hash = hash.trim();
            let known = ["$argon2id$", "$2a$", "$2b$", "$2y$"];
            if !known.iter().any(|p| hash.starts_with(p)) {
                bail!(
                    "--hash-file must hold an argon2id PHC string or a bcrypt hash ($2a$, $2b$, $2y$)"
                );
            }
            store
                .import_password_hash(user, hash, confirmed, now)
                .await?;
            store
                .record_for_user(
                    user,
                    &operator_event(
                        "admin import-password-hash",
                        "user.password_import",
                        json!({}),
                    ),
                    now,
                )
                .await?;
            emit(
                out.json,
                json!({"user_id": user, "imported": true}),
                format!("password hash set for {user}"),
            );
        }
    }
    Ok(())
}

async fn user_by_email(store: &Store, email: &str) -> Result<rampart_core::UserId> {
    let email = Email::parse(email).map_err(|e| anyhow!("--email {e}"))?;
    Ok(store
        .user_by_email(&email)
        .await?
        .ok_or_else(|| anyhow!("no user has the email {}", email.as_str()))?
        .id)
}

fn non_empty<'a>(value: &'a str, flag: &str) -> Result<&'a str> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > 200 {
        bail!("{flag} must be 1 to 200 characters");
    }
    Ok(v)
}
