//! The vault: seals and opens field values with the data key of their scope (an organization,
//! or the platform), unwrapping keys from the [`Keyring`] with the master key and keeping a
//! short-lived cache of unwrapped keys (zeroized when dropped). Values are stored as
//! [`Encrypted`], which only sealing or reading a column can produce.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rampart_core::{Clock, Secret};
use rampart_crypto::field::{self, FieldAad};
use rampart_crypto::{
    CryptoError, DataKey, KeyScope, KeyringError, MasterKey, unwrap_dek, wrap_dek,
};

use crate::StoreError;
use crate::keyring::Keyring;

/// How long a node trusts its cached keys before re-reading the keyring; a rotation or a
/// destruction made elsewhere reaches every node within it.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);

/// A sealed field value as stored (BLOB on SQLite, BYTEA on PostgreSQL). Made only by
/// [`Vault::seal`] or by reading a column, so plaintext cannot be written to an encrypted
/// column by mistake; prints its length only.
#[derive(Clone, PartialEq, Eq)]
pub struct Encrypted(Vec<u8>);

impl Encrypted {
    /// The stored bytes (versioned form of `rampart_crypto::field`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The data key version it was sealed with; `None` when malformed.
    pub fn key_version(&self) -> Option<u32> {
        field::key_version(&self.0).ok()
    }
}

impl fmt::Debug for Encrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Encrypted({} bytes)", self.0.len())
    }
}

impl<DB: sqlx::Database> sqlx::Type<DB> for Encrypted
where
    Vec<u8>: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <Vec<u8> as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <Vec<u8> as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for Encrypted
where
    Vec<u8>: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        self.0.encode_by_ref(buf)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for Encrypted
where
    Vec<u8>: sqlx::Decode<'r, DB>,
{
    fn decode(
        value: <DB as sqlx::Database>::ValueRef<'r>,
    ) -> Result<Self, sqlx::error::BoxDynError> {
        Vec::<u8>::decode(value).map(Self)
    }
}

/// Why a value could not be sealed or opened. Never carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The scope has no data key: it was destroyed (crypto-erasure) or never made.
    #[error("no data key for {0}: destroyed or never created")]
    NoKey(KeyScope),
    /// A key is wrapped by a master key this node does not hold.
    #[error("data key of {scope} is wrapped by master key {kek_id}, which is not configured")]
    UnknownKek {
        /// The scope.
        scope: KeyScope,
        /// The id of the master key that wrapped it.
        kek_id: String,
    },
    /// A wrapped key did not unwrap (tampered, or the wrong master key).
    #[error("data key of {0} does not unwrap: {1}")]
    Unwrap(KeyScope, #[source] KeyringError),
    /// The value did not open (moved to another place, altered, or a retired key version).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The keyring could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Cached {
    keys: Arc<Vec<DataKey>>,
    at: Instant,
}

struct Inner {
    keyring: Keyring,
    primary: MasterKey,
    others: Vec<MasterKey>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    cache: Mutex<HashMap<KeyScope, Cached>>,
}

/// Seals and opens field values; cheap to clone.
#[derive(Clone)]
pub struct Vault(Arc<Inner>);

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("kek_id", &self.0.primary.id())
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// A vault over `keyring` that wraps new keys with `master` and can unwrap with it or with
    /// any of `previous` (during a master key rotation).
    pub fn new(
        keyring: Keyring,
        master: MasterKey,
        previous: Vec<MasterKey>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::with_cache_ttl(keyring, master, previous, clock, DEFAULT_CACHE_TTL)
    }

    /// Like [`Vault::new`] with another cache lifetime.
    pub fn with_cache_ttl(
        keyring: Keyring,
        master: MasterKey,
        previous: Vec<MasterKey>,
        clock: Arc<dyn Clock>,
        ttl: Duration,
    ) -> Self {
        Self(Arc::new(Inner {
            keyring,
            primary: master,
            others: previous,
            clock,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }))
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.0.keyring
    }

    /// The master key new wrappings use.
    pub fn master(&self) -> &MasterKey {
        &self.0.primary
    }

    /// How long cached keys are trusted.
    pub fn cache_ttl(&self) -> Duration {
        self.0.ttl
    }

    /// The injected clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.clock.now()
    }

    /// Drops this node's cached keys of `scope`, so the next use reads the keyring.
    pub fn forget(&self, scope: KeyScope) {
        if let Ok(mut cache) = self.0.cache.lock() {
            cache.remove(&scope);
        }
    }

    /// The master key (configured here) whose id is `kek_id`.
    pub fn kek(&self, kek_id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.0.primary)
            .chain(self.0.others.iter())
            .find(|k| k.id() == kek_id)
    }

    /// Makes `scope`'s first data key (version 1) unless it has one; refuses a destroyed scope.
    pub async fn ensure_key(&self, scope: KeyScope) -> Result<u32, VaultError> {
        let keys = self.keys(scope, true, false).await?;
        keys.first()
            .map(DataKey::version)
            .ok_or(VaultError::NoKey(scope))
    }

    /// Stores a new data key version `version` for `scope` (a rotation's first step); `false`
    /// when it already exists.
    pub async fn add_version(&self, scope: KeyScope, version: u32) -> Result<bool, VaultError> {
        let dek = DataKey::generate(version).map_err(CryptoError::from)?;
        let wrapped =
            wrap_dek(&self.0.primary, scope, &dek).map_err(|e| VaultError::Unwrap(scope, e))?;
        let stored = self.0.keyring.insert(scope, &wrapped, self.now()).await?;
        self.forget(scope);
        Ok(stored)
    }

    /// Encrypts `plaintext` for one place (scope, table, column, row) under the scope's newest
    /// data key (made on first use).
    pub async fn seal(
        &self,
        scope: KeyScope,
        table: &str,
        column: &str,
        row: &str,
        plaintext: &[u8],
    ) -> Result<Encrypted, VaultError> {
        let keys = self.keys(scope, true, false).await?;
        let key = keys.first().ok_or(VaultError::NoKey(scope))?;
        let aad = FieldAad {
            scope,
            table,
            column,
            row,
        };
        Ok(Encrypted(field::seal(key, &aad, plaintext)?))
    }

    /// Like [`Vault::seal`] with a given data key version (re-encryption during a rotation).
    pub async fn seal_with_version(
        &self,
        scope: KeyScope,
        version: u32,
        table: &str,
        column: &str,
        row: &str,
        plaintext: &[u8],
    ) -> Result<Encrypted, VaultError> {
        let mut keys = self.keys(scope, false, false).await?;
        if !keys.iter().any(|k| k.version() == version) {
            keys = self.keys(scope, false, true).await?;
        }
        let key = keys
            .iter()
            .find(|k| k.version() == version)
            .ok_or(VaultError::Crypto(CryptoError::UnknownKeyVersion(version)))?;
        let aad = FieldAad {
            scope,
            table,
            column,
            row,
        };
        Ok(Encrypted(field::seal(key, &aad, plaintext)?))
    }

    /// Decrypts a value sealed for exactly this place; the plaintext comes back in a
    /// zeroizing wrapper that prints `[redacted]`.
    pub async fn open(
        &self,
        scope: KeyScope,
        table: &str,
        column: &str,
        row: &str,
        value: &Encrypted,
    ) -> Result<Secret<Vec<u8>>, VaultError> {
        let version = field::key_version(&value.0)?;
        let mut keys = self.keys(scope, false, false).await?;
        if !keys.iter().any(|k| k.version() == version) {
            // A version made on another node since this one cached its keys.
            keys = self.keys(scope, false, true).await?;
        }
        let aad = FieldAad {
            scope,
            table,
            column,
            row,
        };
        Ok(field::open(keys.as_slice(), &aad, &value.0)?)
    }

    /// The scope's unwrapped keys, newest first; `create` makes version 1 when there is none.
    async fn keys(
        &self,
        scope: KeyScope,
        create: bool,
        reload: bool,
    ) -> Result<Arc<Vec<DataKey>>, VaultError> {
        if !reload
            && let Ok(cache) = self.0.cache.lock()
            && let Some(hit) = cache.get(&scope)
            && hit.at.elapsed() < self.0.ttl
        {
            return Ok(hit.keys.clone());
        }
        let mut rows = self.0.keyring.versions(scope).await?;
        if rows.is_empty() && create {
            self.add_version(scope, 1).await?;
            rows = self.0.keyring.versions(scope).await?;
        }
        if rows.is_empty() {
            return Err(VaultError::NoKey(scope));
        }
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let kek = self
                .kek(&row.wrapped.kek_id)
                .ok_or_else(|| VaultError::UnknownKek {
                    scope,
                    kek_id: row.wrapped.kek_id.clone(),
                })?;
            keys.push(
                unwrap_dek(kek, scope, &row.wrapped).map_err(|e| VaultError::Unwrap(scope, e))?,
            );
        }
        let keys = Arc::new(keys);
        if let Ok(mut cache) = self.0.cache.lock() {
            cache.insert(
                scope,
                Cached {
                    keys: keys.clone(),
                    at: Instant::now(),
                },
            );
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use rampart_core::{ManualClock, OrgId};

    use super::*;

    async fn vault(dir: &tempfile::TempDir) -> Vault {
        let ring = Keyring::open_sqlite(&dir.path().join("keyring.db"))
            .await
            .unwrap();
        let clock = ManualClock::new(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH);
        Vault::new(
            ring,
            MasterKey::generate().unwrap(),
            Vec::new(),
            Arc::new(clock),
        )
    }

    #[tokio::test]
    async fn seals_per_scope_and_prints_only_a_length() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(&dir).await;
        let org = KeyScope::Org(OrgId::generate());
        let sealed = v.seal(org, "t", "c", "r1", b"hunter22").await.unwrap();
        assert_eq!(
            format!("{sealed:?}"),
            format!("Encrypted({} bytes)", sealed.as_bytes().len())
        );
        assert_eq!(sealed.key_version(), Some(1));
        let opened = v.open(org, "t", "c", "r1", &sealed).await.unwrap();
        assert_eq!(opened.expose(), b"hunter22");
        assert_eq!(format!("{opened:?}"), "[redacted]");
        // The platform scope has its own key; another org has none yet.
        assert!(
            v.open(KeyScope::Platform, "t", "c", "r1", &sealed)
                .await
                .is_err()
        );
        let other = KeyScope::Org(OrgId::generate());
        assert!(matches!(
            v.open(other, "t", "c", "r1", &sealed).await,
            Err(VaultError::NoKey(_))
        ));
        let p = v
            .seal(KeyScope::Platform, "users", "totp", "usr_1", b"JBSW")
            .await
            .unwrap();
        assert!(v.open(org, "users", "totp", "usr_1", &p).await.is_err());
        assert_eq!(
            v.open(KeyScope::Platform, "users", "totp", "usr_1", &p)
                .await
                .unwrap()
                .expose(),
            b"JBSW"
        );
    }

    #[tokio::test]
    async fn a_new_version_seals_while_the_old_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(&dir).await;
        let org = KeyScope::Org(OrgId::generate());
        let old = v.seal(org, "t", "c", "r", b"one").await.unwrap();
        assert!(v.add_version(org, 2).await.unwrap());
        assert!(!v.add_version(org, 2).await.unwrap());
        let new = v.seal(org, "t", "c", "r", b"two").await.unwrap();
        assert_eq!(new.key_version(), Some(2));
        assert_eq!(
            v.open(org, "t", "c", "r", &old).await.unwrap().expose(),
            b"one"
        );
        v.keyring().retire_below(org, 2).await.unwrap();
        v.forget(org);
        assert!(v.open(org, "t", "c", "r", &old).await.is_err());
        assert_eq!(
            v.open(org, "t", "c", "r", &new).await.unwrap().expose(),
            b"two"
        );
    }
}
