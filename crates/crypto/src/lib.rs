//! Rampart's key material. No database, no HTTP: generation, hashing and loading of secrets,
//! always through maintained primitives (SHA-256 from RustCrypto, the OS CSPRNG), never a
//! hand-rolled one.

pub mod api_key;
pub mod master_key;
pub mod random;

pub use api_key::{ApiKeyError, ApiKeyHash, ApiKeyToken, NewApiKey};
pub use master_key::{MasterKey, MasterKeyError};
