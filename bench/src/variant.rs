//! Rampart with some of its controls switched off, to split the security tax into what each
//! control costs: the edge (security headers, rate limits, quotas) and the mutation guard
//! (audit ledger, idempotency).
//!
//! This is Rampart's own router (`rampart::app::build`) over Rampart's own store, served by the
//! same HTTP stack as `rampart serve` (axum-server), built with the benchmark-only switches
//! `AppState::without_mutation_guard_for_benchmarks` and `AppState::without_edge_for_benchmarks`
//! that the server offers to this crate alone: no configuration of the real binary reaches
//! them. It runs as its own process (`rampart-bench variant-server`) on a SQLite or PostgreSQL
//! database that the real binary migrated and provisioned (on PostgreSQL as the restricted
//! application role, as `rampart serve` connects), with the rate limits and quotas the environment
//! sets, as `rampart serve` would apply them (in-process limiter).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rampart::AppState;
use rampart::http::headers::EdgeSettings;
use rampart::http::limits::LimitSettings;
use rampart_core::{Clock, SystemClock};
use rampart_guard::Limiter;
use rampart_store::{PoolSettings, Store};

use crate::baseline::Database;

/// Which controls stay on.
#[derive(Debug, Clone, Copy)]
pub struct Controls {
    /// Security headers, rate limits and quotas.
    pub edge: bool,
    /// The audit ledger and idempotency on mutating routes.
    pub guard: bool,
}

/// Serves until SIGTERM or Ctrl-C.
pub async fn serve(db: Database<'_>, listen: SocketAddr, controls: Controls) -> Result<()> {
    let settings = rampart::config::Settings::load(None)?;
    // The variants serve no encrypted field; an ephemeral master key over a scratch keyring
    // is enough.
    let scratch = tempfile::tempdir()?;
    let store = match db {
        Database::Sqlite(path) => Store::open_sqlite(path, PoolSettings::default())
            .await
            .with_context(|| format!("opening {}", path.display()))?,
        Database::Postgres(url) => Store::connect_postgres(url, PoolSettings::default())
            .await
            .context("connecting to PostgreSQL")?,
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let master = rampart_store::MasterKey::generate()?;
    let keyring = rampart_store::Keyring::open_sqlite(&scratch.path().join("keyring.db")).await?;
    let vault = rampart_store::Vault::new(keyring, master, Vec::new(), clock.clone());
    let state = if controls.guard {
        AppState::new(
            store.clone(),
            vault,
            clock,
            Duration::from_secs(settings.key_cache_ttl_secs),
        )
    } else {
        AppState::without_mutation_guard_for_benchmarks(store.clone(), vault, clock)
    };
    let limits = LimitSettings {
        rates: settings.rate_limits.clone(),
        quotas: settings.quotas.clone(),
        ..LimitSettings::default()
    };
    let mut state = state
        .with_edge(EdgeSettings::default())
        .with_limits(Arc::new(Limiter::local()), limits);
    if !controls.edge {
        state = state.without_edge_for_benchmarks();
    }
    let app = rampart::app::build(state);
    let listener =
        std::net::TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    listener.set_nonblocking(true)?;
    let handle: axum_server::Handle<SocketAddr> = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        crate::baseline::stopped().await;
        stopping.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    axum_server::from_tcp(listener)?
        .handle(handle)
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await?;
    store.close().await;
    Ok(())
}
