//! Rampart's key material. No database, no HTTP: generation, hashing and loading of secrets,
//! per-organization envelope encryption and Fernet import, always through maintained
//! primitives (SHA-256 and AES-256-GCM from RustCrypto, the OS CSPRNG), never a hand-rolled one.

pub mod api_key;
pub mod data_key;
mod encode;
pub mod fernet;
pub mod field;
mod gcm;
pub mod keyring;
pub mod master_key;
pub mod random;
pub mod scope;

pub use self::fernet::{FernetError, FernetKey};
pub use api_key::{ApiKeyError, ApiKeyHash, ApiKeyToken, NewApiKey};
pub use data_key::{DataKey, DataKeys};
pub use field::{CryptoError, FieldAad, MIN_STORED_LEN};
pub use keyring::{KeyringError, WrappedKey, rewrap_dek, unwrap_dek, wrap_dek};
pub use master_key::{MasterKey, MasterKeyError};
pub use scope::{BadScope, KeyScope};
