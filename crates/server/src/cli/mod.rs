//! Operator commands that live outside `main.rs`: key management, organization deletion and
//! imports. Each takes an opened store and vault; `main.rs` only parses and dispatches.

pub mod import;
pub mod keys;
pub mod org;

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rampart_core::Clock;
use rampart_crypto::MasterKey;
use rampart_store::{Keyring, Store, Vault, keyring_path_for};

use crate::config::{Database, Settings};

/// The keyring of the configured database: `keyring.db` beside a SQLite file, the `key_ring`
/// table on PostgreSQL.
pub async fn open_keyring(settings: &Settings, store: &Store) -> Result<Keyring> {
    Ok(match settings.database()? {
        Database::Sqlite(path) => {
            let ring = keyring_path_for(&path);
            Keyring::open_sqlite(&ring)
                .await
                .with_context(|| format!("opening the keyring {}", ring.display()))?
        }
        Database::Postgres(_) => Keyring::in_postgres(store)?,
    })
}

/// The vault over the configured keyring, wrapping with `master` and also unwrapping with
/// `RAMPART_MASTER_KEY_PREVIOUS_FILE` when set. Refuses to start when the keyring holds a key
/// wrapped by a master key that is not configured: that data could not be opened.
pub async fn open_vault(
    settings: &Settings,
    store: &Store,
    master: MasterKey,
    clock: Arc<dyn Clock>,
) -> Result<Vault> {
    let keyring = open_keyring(settings, store).await?;
    let mut previous = Vec::new();
    if !settings.master_key_previous_file.as_os_str().is_empty() {
        previous.push(MasterKey::load_file(&settings.master_key_previous_file)?);
    }
    let vault = Vault::new(keyring, master, previous, clock);
    let mut unknown: Vec<String> = Vec::new();
    for row in vault.keyring().all().await? {
        if vault.kek(&row.wrapped.kek_id).is_none() && !unknown.contains(&row.wrapped.kek_id) {
            unknown.push(row.wrapped.kek_id);
        }
    }
    if !unknown.is_empty() {
        bail!(
            "the keyring holds data keys wrapped by master key(s) {} but the configured master key is {}: \
             configure the right key (or, mid-rotation, RAMPART_MASTER_KEY_PREVIOUS_FILE)",
            unknown.join(", "),
            vault.master().id()
        );
    }
    Ok(vault)
}
