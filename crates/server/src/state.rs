//! What every handler can reach: the store, the clock, the API-key cache and the settings.

use std::sync::Arc;
use std::time::Duration;

use rampart_core::Clock;
use rampart_store::Store;

use crate::http::headers::EdgeSettings;
use crate::keycache::KeyCache;

/// Shared application state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    keys: KeyCache,
    mutation_guard: bool,
    edge: EdgeSettings,
}

impl AppState {
    /// State over a store, a clock and the API-key cache lifetime (at most 60 s: revocations
    /// made on another node take effect here within that bound).
    pub fn new(store: Store, clock: Arc<dyn Clock>, key_cache_ttl: Duration) -> Self {
        let ttl = key_cache_ttl.min(Duration::from_secs(60));
        Self(Arc::new(Inner {
            store,
            clock,
            keys: KeyCache::new(ttl),
            mutation_guard: true,
            edge: EdgeSettings::default(),
        }))
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The injected clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.0.clock
    }

    /// The same state with the mutation guard (audit ledger, idempotency) switched off. Exists
    /// only so `bench/` can measure what the guard costs; nothing in the server calls it, and
    /// no configuration reaches it.
    #[doc(hidden)]
    pub fn without_mutation_guard_for_benchmarks(store: Store, clock: Arc<dyn Clock>) -> Self {
        let keys = KeyCache::new(Duration::from_secs(30));
        Self(Arc::new(Inner {
            store,
            clock,
            keys,
            mutation_guard: false,
            edge: EdgeSettings::default(),
        }))
    }

    /// Whether mutating routes go through the audit ledger and idempotency (always, except in
    /// a benchmark's baseline).
    pub fn mutation_guard(&self) -> bool {
        self.0.mutation_guard
    }

    /// The same state with these edge settings.
    pub fn with_edge(self, edge: EdgeSettings) -> Self {
        let inner = match Arc::try_unwrap(self.0) {
            Ok(inner) => inner,
            Err(shared) => Inner {
                store: shared.store.clone(),
                clock: shared.clock.clone(),
                keys: KeyCache::new(shared.keys.ttl()),
                mutation_guard: shared.mutation_guard,
                edge: shared.edge.clone(),
            },
        };
        Self(Arc::new(Inner { edge, ..inner }))
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
