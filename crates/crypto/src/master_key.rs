//! The master key (key-encryption key): 32 bytes from `RAMPART_MASTER_KEY` (base64) or a key
//! file. It never goes into the database. A key file must be readable by its owner only; a
//! missing, short or group/world-readable file is refused with the reason.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rampart_core::Secret;
use sha2::{Digest, Sha256};

use crate::random;

/// Why a master key could not be loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    /// The file does not exist.
    #[error(
        "master key file {0} does not exist (run `rampart keys init` or start `serve` once to create it)"
    )]
    Missing(PathBuf),
    /// Group or others can read or write the file.
    #[error(
        "master key file {path} has mode {mode:o}; it must be readable by its owner only (chmod 600)"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The content is not base64 of exactly 32 bytes.
    #[error("master key {0} is not base64 of exactly 32 bytes")]
    BadLength(String),
    /// Refusing to overwrite an existing key file.
    #[error("master key file {0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
    /// Reading or writing the file failed.
    #[error("master key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The OS random source failed.
    #[error(transparent)]
    Random(#[from] random::RandomError),
}

/// The key-encryption key. Prints as `[redacted]`; zeroized on drop.
#[derive(Debug, Clone)]
pub struct MasterKey(Secret<[u8; 32]>);

impl MasterKey {
    /// Decodes a base64 key (from `RAMPART_MASTER_KEY`).
    pub fn from_base64(encoded: &str, origin: &str) -> Result<Self, MasterKeyError> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| MasterKeyError::BadLength(origin.to_owned()))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| MasterKeyError::BadLength(origin.to_owned()))?;
        Ok(Self(Secret::new(arr)))
    }

    /// A fresh random key held only in memory (tests, ephemeral benchmark servers).
    pub fn generate() -> Result<Self, MasterKeyError> {
        Ok(Self(Secret::new(random::bytes::<32>()?)))
    }

    /// Loads a key file, refusing one that others can read.
    pub fn load_file(path: &Path) -> Result<Self, MasterKeyError> {
        let io = |source| MasterKeyError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(MasterKeyError::Missing(path.to_owned()));
            }
            Err(e) => return Err(io(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(MasterKeyError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        let text = Secret::new(std::fs::read_to_string(path).map_err(io)?);
        Self::from_base64(text.expose(), &path.display().to_string())
    }

    /// Writes a fresh random key to a new file with mode 0600; never overwrites.
    pub fn generate_file(path: &Path) -> Result<Self, MasterKeyError> {
        let io = |source| MasterKeyError::Io {
            path: path.to_owned(),
            source,
        };
        let key = random::bytes::<32>()?;
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(MasterKeyError::Exists(path.to_owned()));
            }
            Err(e) => return Err(io(e)),
        };
        let encoded = Secret::new(STANDARD.encode(key));
        file.write_all(encoded.expose().as_bytes()).map_err(io)?;
        file.write_all(b"\n").map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self(Secret::new(key)))
    }

    /// A short public identifier of this key (first 8 hex digits of its SHA-256), so wrapped
    /// data can say which master key wrapped it without revealing anything about the key.
    pub fn id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.expose())[..4])
    }

    /// The raw key, for wrapping data keys inside this crate only.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        self.0.expose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_file_is_private_and_loads_back() {
        let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
        let path = dir.path().join("master.key");
        let made = MasterKey::generate_file(&path).unwrap_or_else(|e| unreachable!("{e}"));
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600);
        let loaded = MasterKey::load_file(&path).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(made.id(), loaded.id());
        assert!(matches!(
            MasterKey::generate_file(&path),
            Err(MasterKeyError::Exists(_))
        ));
        assert_eq!(format!("{loaded:?}"), "MasterKey([redacted])");
    }

    #[test]
    fn refuses_open_short_and_missing_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
        let path = dir.path().join("k");
        assert!(matches!(
            MasterKey::load_file(&path),
            Err(MasterKeyError::Missing(_))
        ));
        std::fs::write(&path, STANDARD.encode([7u8; 16])).unwrap_or_default();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap_or_default();
        assert!(matches!(
            MasterKey::load_file(&path),
            Err(MasterKeyError::BadLength(_))
        ));
        std::fs::write(&path, STANDARD.encode([7u8; 32])).unwrap_or_default();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap_or_default();
        let err = MasterKey::load_file(&path).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("644"), "{err}");
    }
}
