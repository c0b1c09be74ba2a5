//! An organization's data-encryption key (DEK): 32 random bytes and the version number that
//! every value sealed with it carries, so several versions can be read during a rotation.

use rampart_core::Secret;

use crate::random::{self, RandomError};

/// A 256-bit AES key with its version; prints its bytes as `[redacted]`, zeroized on drop.
#[derive(Debug, Clone)]
pub struct DataKey {
    version: u32,
    key: Secret<[u8; 32]>,
}

impl DataKey {
    /// A fresh key of 256 bits from the OS CSPRNG, labelled `version`.
    pub fn generate(version: u32) -> Result<Self, RandomError> {
        Ok(Self::from_secret(
            version,
            Secret::new(random::bytes::<32>()?),
        ))
    }

    /// The version written into everything sealed with this key.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Wraps key bytes that are already in a zeroizing wrapper.
    pub(crate) fn from_secret(version: u32, key: Secret<[u8; 32]>) -> Self {
        Self { version, key }
    }

    /// The raw key, for the cipher inside this crate only.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        self.key.expose()
    }
}

/// A set of data keys that can be searched by version (an organization's current and
/// retired keys during a rotation).
pub trait DataKeys {
    /// The key labelled `version`, if this set holds it (the first one, if several do).
    fn by_version(&self, version: u32) -> Option<&DataKey>;
}

impl DataKeys for DataKey {
    fn by_version(&self, version: u32) -> Option<&DataKey> {
        (self.version == version).then_some(self)
    }
}

impl DataKeys for [DataKey] {
    fn by_version(&self, version: u32) -> Option<&DataKey> {
        self.iter().find(|key| key.version == version)
    }
}

impl DataKeys for Vec<DataKey> {
    fn by_version(&self, version: u32) -> Option<&DataKey> {
        self.as_slice().by_version(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let key = DataKey::generate(7).unwrap();
        let shown = format!("{key:?}");
        assert_eq!(shown, "DataKey { version: 7, key: [redacted] }");
        assert!(!shown.contains(&format!("{:?}", key.bytes())));
    }

    #[test]
    fn generated_keys_are_fresh() {
        let a = DataKey::generate(1).unwrap();
        let b = DataKey::generate(1).unwrap();
        assert_ne!(a.bytes(), b.bytes());
        assert_eq!(a.version(), 1);
    }

    #[test]
    fn lookup_finds_by_version_only() {
        let one = DataKey::generate(1).unwrap();
        let two = DataKey::generate(2).unwrap();
        assert!(one.by_version(1).is_some());
        assert!(one.by_version(2).is_none());
        let ring = vec![one, two];
        assert_eq!(ring.by_version(2).map(DataKey::version), Some(2));
        assert!(ring.by_version(3).is_none());
        assert!(ring[..0].by_version(1).is_none());
    }
}
