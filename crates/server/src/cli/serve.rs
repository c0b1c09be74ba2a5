//! `rampart serve`: migrate, open the store and the vault, build the app, serve it behind the
//! connection edge with the job worker beside it, and drain both on SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rampart_core::{Clock, SystemClock};
use rampart_guard::{Limiter, RedisFailure};

use super::open::{ensure_private_dir, master_key, migrate, open};
use crate::config::Settings;
use crate::conn::{self, Caps, Edge, Timeouts};
use crate::http::client::OverTls;
use crate::http::headers::EdgeSettings;
use crate::http::limits::LimitSettings;
use crate::{AppState, app};

/// `rampart serve`'s flags, each overriding its setting.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to bind, overriding RAMPART_LISTEN.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain: serve https (with --tls-key).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Also listen for plain HTTP here, only to redirect to https.
    #[arg(long)]
    pub http_redirect_listen: Option<SocketAddr>,
}

/// Serves until SIGTERM or Ctrl-C, then drains requests and jobs within the grace period.
pub async fn run(mut settings: Settings, args: ServeArgs) -> Result<()> {
    if let Some(addr) = args.listen {
        settings.listen = addr;
    }
    settings.tls_cert = args.tls_cert.or(settings.tls_cert.take());
    settings.tls_key = args.tls_key.or(settings.tls_key.take());
    settings.http_redirect_listen = args.http_redirect_listen.or(settings.http_redirect_listen);
    serve(settings).await
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
    let vault = super::open_vault(&settings, &store, master, clock.clone()).await?;
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
    let identity = super::open::identity(&settings)?;
    let state = state
        .with_edge(edge)
        .with_limits(limiter, limits)
        .with_trusted_proxies(settings.trusted_proxy_nets()?)
        .with_identity(identity.clone());
    let worker = if settings.jobs.run_in_serve {
        Some(super::worker::build(
            &settings,
            state.jobs().clone(),
            identity,
        )?)
    } else {
        tracing::info!("jobs.run_in_serve is false: this node runs no jobs (run `rampart worker`)");
        None
    };
    let app = app::build(state);
    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
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
    let router = crate::redirect::router(&settings.public_url, tls_port);
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

/// Resolves at SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
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
