//! A per-node cache of authenticated API keys, so a request does not pay a database lookup
//! for its key every time. Entries live at most the configured TTL (≤ 60 s), which bounds how
//! long a revocation made on another node can go unnoticed here. A revocation made on this
//! node takes effect at once: the hash is tombstoned, and a tombstoned hash is never served
//! from or put back into the cache, even by a request that raced the revocation.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rampart_crypto::ApiKeyHash;
use rampart_store::api_keys::AuthenticatedKey;

const MAX_ENTRIES: usize = 100_000;
/// `last_used_at` is written at most this often per key.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

struct Entry {
    key: AuthenticatedKey,
    loaded: Instant,
    touched: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    live: HashMap<ApiKeyHash, Entry>,
    revoked: HashMap<ApiKeyHash, Instant>,
}

/// The cache; see the module documentation for its guarantees.
pub struct KeyCache {
    ttl: Duration,
    inner: Mutex<Inner>,
    /// How far the test suite has moved this cache's clock past the real one (feature
    /// `test-seams` only: a release build reads the monotonic clock and nothing else).
    #[cfg(feature = "test-seams")]
    skew_ms: std::sync::atomic::AtomicU64,
}

impl KeyCache {
    /// An empty cache whose entries expire after `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            inner: Mutex::new(Inner::default()),
            #[cfg(feature = "test-seams")]
            skew_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How long an entry is served before the database is asked again.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Moves this cache's clock forward by `by`, so a test can see an entry lapse without
    /// waiting for it (feature `test-seams`, for the test suite only).
    #[cfg(feature = "test-seams")]
    pub fn advance_clock_for_tests(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.skew_ms
            .fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }

    fn now(&self) -> Instant {
        let now = Instant::now();
        #[cfg(feature = "test-seams")]
        let now =
            now + Duration::from_millis(self.skew_ms.load(std::sync::atomic::Ordering::SeqCst));
        now
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh cached key, if any.
    pub fn get(&self, hash: &ApiKeyHash) -> Option<AuthenticatedKey> {
        let now = self.now();
        let mut inner = self.lock();
        if inner.revoked.contains_key(hash) {
            return None;
        }
        match inner.live.get(hash) {
            Some(e) if now.duration_since(e.loaded) < self.ttl => Some(e.key),
            Some(_) => {
                inner.live.remove(hash);
                None
            }
            None => None,
        }
    }

    /// Remembers a key that just authenticated against the database.
    pub fn insert(&self, hash: ApiKeyHash, key: AuthenticatedKey) {
        let now = self.now();
        let ttl = self.ttl;
        let mut inner = self.lock();
        if inner.revoked.contains_key(&hash) {
            return;
        }
        if inner.live.len() >= MAX_ENTRIES {
            inner.live.retain(|_, e| now.duration_since(e.loaded) < ttl);
            if inner.live.len() >= MAX_ENTRIES {
                inner.live.clear();
            }
        }
        let touched = inner.live.get(&hash).and_then(|e| e.touched);
        inner.live.insert(
            hash,
            Entry {
                key,
                loaded: now,
                touched,
            },
        );
    }

    /// Forgets a key and refuses to cache it again on this node.
    pub fn revoke(&self, hash: ApiKeyHash) {
        let now = self.now();
        let keep = self.ttl * 2;
        let mut inner = self.lock();
        inner.live.remove(&hash);
        inner.revoked.retain(|_, at| now.duration_since(*at) < keep);
        inner.revoked.insert(hash, now);
    }

    /// Whether `last_used_at` is due for this key; marks it as written if so.
    pub fn due_for_touch(&self, hash: &ApiKeyHash) -> bool {
        let now = self.now();
        let mut inner = self.lock();
        match inner.live.get_mut(hash) {
            Some(e)
                if e.touched
                    .is_none_or(|t| now.duration_since(t) >= TOUCH_EVERY) =>
            {
                e.touched = Some(now);
                true
            }
            _ => false,
        }
    }
}
