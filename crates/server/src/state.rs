//! What every handler can reach: the store, the vault, the clock, the API-key cache, the job
//! queue and the settings.

use std::sync::Arc;
use std::time::Duration;

use rampart_core::Clock;
use rampart_jobs::Queue;
use rampart_store::{Store, Vault};

use ipnet::IpNet;
use rampart_guard::Limiter;

use crate::auth::Identity;
use crate::http::headers::EdgeSettings;
use crate::http::limits::LimitSettings;
use crate::keycache::KeyCache;

/// Shared application state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

#[derive(Clone)]
struct Inner {
    store: Store,
    vault: Vault,
    clock: Arc<dyn Clock>,
    keys: Arc<KeyCache>,
    mutation_guard: bool,
    edge: EdgeSettings,
    limiter: Arc<Limiter>,
    limits: LimitSettings,
    trusted_proxies: Arc<Vec<IpNet>>,
    edge_controls: bool,
    identity: Option<Identity>,
    jobs: Queue,
}

impl AppState {
    /// State over a store, the vault that seals its encrypted fields, a clock and the API-key
    /// cache lifetime (at most 60 s: revocations made on another node take effect here within
    /// that bound).
    pub fn new(store: Store, vault: Vault, clock: Arc<dyn Clock>, key_cache_ttl: Duration) -> Self {
        let ttl = key_cache_ttl.min(Duration::from_secs(60));
        let jobs = Queue::new(store.clone(), clock.clone());
        Self(Arc::new(Inner {
            store,
            vault,
            clock,
            keys: Arc::new(KeyCache::new(ttl)),
            mutation_guard: true,
            edge: EdgeSettings::default(),
            limiter: Arc::new(Limiter::local()),
            limits: LimitSettings::default(),
            trusted_proxies: Arc::new(Vec::new()),
            edge_controls: true,
            identity: None,
            jobs,
        }))
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// Seals and opens encrypted fields.
    pub fn vault(&self) -> &Vault {
        &self.0.vault
    }

    /// The injected clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.0.clock
    }

    /// The durable job queue. A job enqueued here starts at once when this node runs a worker
    /// (the worker `serve` starts shares its wake-up signal), else at a worker's next poll.
    pub fn jobs(&self) -> &Queue {
        &self.0.jobs
    }

    /// The same state with the mutation guard (audit ledger, idempotency) switched off. Exists
    /// only so `bench/` can measure what the guard costs (feature `bench-seams`, which only
    /// `bench/` enables: a server build does not have this function).
    #[cfg(feature = "bench-seams")]
    #[doc(hidden)]
    pub fn without_mutation_guard_for_benchmarks(
        store: Store,
        vault: Vault,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let keys = Arc::new(KeyCache::new(Duration::from_secs(30)));
        let jobs = Queue::new(store.clone(), clock.clone());
        Self(Arc::new(Inner {
            store,
            vault,
            clock,
            keys,
            mutation_guard: false,
            edge: EdgeSettings::default(),
            limiter: Arc::new(Limiter::local()),
            limits: LimitSettings::default(),
            trusted_proxies: Arc::new(Vec::new()),
            edge_controls: true,
            identity: None,
            jobs,
        }))
    }

    /// Whether mutating routes go through the audit ledger and idempotency (always, except in
    /// a benchmark's baseline).
    pub fn mutation_guard(&self) -> bool {
        self.0.mutation_guard
    }

    /// The same state with these identity services (sign-in, sessions, mail).
    pub fn with_identity(self, identity: Identity) -> Self {
        let mut inner = (*self.0).clone();
        inner.identity = Some(identity);
        Self(Arc::new(inner))
    }

    /// Identity services, when configured (`serve` always configures them; without them
    /// session cookies are not accepted and the sign-in routes answer 503).
    pub fn identity(&self) -> Option<&Identity> {
        self.0.identity.as_ref()
    }

    /// The same state with these edge settings.
    pub fn with_edge(self, edge: EdgeSettings) -> Self {
        let mut inner = (*self.0).clone();
        inner.edge = edge;
        Self(Arc::new(inner))
    }

    /// The same state with this limiter (in-process or Redis) and these rates and quotas.
    pub fn with_limits(self, limiter: Arc<Limiter>, limits: LimitSettings) -> Self {
        let mut inner = (*self.0).clone();
        inner.limiter = limiter;
        inner.limits = limits;
        Self(Arc::new(inner))
    }

    /// The same state trusting `X-Forwarded-*` from these networks.
    pub fn with_trusted_proxies(self, proxies: Vec<IpNet>) -> Self {
        let mut inner = (*self.0).clone();
        inner.trusted_proxies = Arc::new(proxies);
        Self(Arc::new(inner))
    }

    /// The same state with the edge controls (security headers, rate limits, quotas) switched
    /// off. Exists only so `bench/` can measure what the edge costs (feature `bench-seams`).
    #[cfg(feature = "bench-seams")]
    #[doc(hidden)]
    pub fn without_edge_for_benchmarks(self) -> Self {
        let mut inner = (*self.0).clone();
        inner.edge_controls = false;
        inner.limits.disabled_for_benchmarks = true;
        Self(Arc::new(inner))
    }

    /// Whether security headers, rate limits and quotas apply (always, except in a benchmark's
    /// baseline).
    pub fn edge_controls(&self) -> bool {
        self.0.edge_controls
    }

    /// Networks whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.0.trusted_proxies
    }

    /// The rate limiter.
    pub fn limiter(&self) -> &Limiter {
        &self.0.limiter
    }

    /// Rates and quotas in force.
    pub fn limits(&self) -> &LimitSettings {
        &self.0.limits
    }

    /// Edge settings (HSTS).
    pub fn edge(&self) -> &EdgeSettings {
        &self.0.edge
    }

    /// The per-node API-key cache.
    pub fn keys(&self) -> &KeyCache {
        &self.0.keys
    }
}
