//! Opening what an operator command works on: the data directory, migrations, the store, the
//! master key and the vault, each with the error an operator can act on.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rampart_core::SystemClock;
use rampart_crypto::{MasterKey, MasterKeyError};
use rampart_store::{PoolSettings, Store, Vault};

use crate::config::{Database, Settings, postgres_user};

/// Creates `dir` (and its parents) readable by this user only; an existing one is left as is.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn pool_settings(s: &Settings) -> PoolSettings {
    PoolSettings {
        max_connections: s.database_max_connections,
        ..PoolSettings::default()
    }
}

/// Applies migrations; on PostgreSQL as the owner role when one is configured, granting the
/// application role its data privileges.
pub async fn migrate(settings: &Settings) -> Result<usize> {
    match settings.database()? {
        Database::Sqlite(path) => {
            ensure_private_dir(path.parent().unwrap_or(Path::new(".")))?;
            let store = Store::open_sqlite(&path, pool_settings(settings)).await?;
            let n = store.migrate().await?;
            store.close().await;
            Ok(n)
        }
        Database::Postgres(url) => match settings.database_owner()? {
            None => {
                let store = Store::connect_postgres(&url, pool_settings(settings)).await?;
                let n = store.migrate().await?;
                store.close().await;
                Ok(n)
            }
            Some(owner_url) => {
                let app_role = postgres_user(&url);
                let owner_role = postgres_user(&owner_url);
                let grant_to = app_role.filter(|r| Some(r) != owner_role.as_ref());
                Ok(
                    rampart_store::migrate_postgres_as_owner(&owner_url, grant_to.as_deref())
                        .await?,
                )
            }
        },
    }
}

/// The configured store, warning when the link to PostgreSQL can be intercepted.
pub async fn open(settings: &Settings) -> Result<Store> {
    Ok(match settings.database()? {
        Database::Sqlite(path) => Store::open_sqlite(&path, pool_settings(settings)).await?,
        Database::Postgres(url) => {
            if let Some(why) = crate::config::unverified_postgres_link(&url) {
                tracing::warn!(
                    "the link to PostgreSQL can be intercepted: {why}; add sslmode=verify-full (and sslrootcert=PATH for a private CA) to the database URL"
                );
            }
            Store::connect_postgres(&url, pool_settings(settings)).await?
        }
    })
}

/// Opens the store for an operator command, migrating an embedded database first (it may not
/// exist yet).
pub async fn open_migrated(settings: &Settings) -> Result<Store> {
    if matches!(settings.database()?, Database::Sqlite(_)) {
        migrate(settings).await?;
    }
    open(settings).await
}

/// Loads the master key. A missing key file is created only for a database that holds no
/// organization yet (a new install); for one that does, a missing key means data that cannot
/// be decrypted, so the command stops and says why instead of quietly making a new key.
pub async fn master_key(settings: &Settings, store: &Store) -> Result<MasterKey> {
    if let Some(inline) = settings.master_key_inline() {
        return Ok(MasterKey::from_base64(
            inline.expose(),
            "RAMPART_MASTER_KEY",
        )?);
    }
    let path = settings.master_key_path();
    match MasterKey::load_file(&path) {
        Ok(key) => Ok(key),
        Err(MasterKeyError::Missing(_)) if store.org_ids().await?.is_empty() => {
            ensure_private_dir(path.parent().unwrap_or(Path::new(".")))?;
            let key = MasterKey::generate_file(&path)?;
            tracing::warn!(
                path = %path.display(),
                key_id = %key.id(),
                "GENERATED A NEW MASTER KEY. BACK IT UP NOW, somewhere other than this machine: without it, encrypted data and backups cannot be recovered"
            );
            Ok(key)
        }
        Err(MasterKeyError::Missing(_)) => bail!(
            "master key file {} is missing, but this database already holds organizations: restore the key from your backup \
             (or point RAMPART_MASTER_KEY_FILE at it); a new key could not decrypt their data",
            path.display()
        ),
        Err(e) => Err(e.into()),
    }
}

/// Opens the store (migrating an embedded database first) and the vault, for operator commands.
pub async fn open_with_vault(settings: &Settings) -> Result<(Store, Vault)> {
    let store = open_migrated(settings).await?;
    let vault = async {
        let master = master_key(settings, &store).await?;
        super::open_vault(settings, &store, master, Arc::new(SystemClock)).await
    }
    .await;
    match vault {
        Ok(vault) => Ok((store, vault)),
        Err(e) => {
            store.close().await;
            Err(e)
        }
    }
}

/// Closes what [`open_with_vault`] opened.
pub async fn close(store: Store, vault: Vault) {
    vault.keyring().close().await;
    store.close().await;
}

/// Identity services from `[auth]`, the mail transport and the public URL (the worker's
/// account mail uses the same).
pub fn identity(settings: &Settings) -> Result<crate::auth::Identity> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mailer =
        crate::auth::mail::Mailer::from_url(&settings.mail_transport(), &settings.auth.mail_from)
            .context("mail_transport")?;
    let hasher = crate::auth::password::Hasher::with_threads(
        settings.auth.hash_threads,
        settings.auth.hash_nice,
    )
    .context("setting up password hashing")?;
    match hasher.priority() {
        Ok(nice) => tracing::debug!(nice, "password hashing threads started"),
        Err(reason) => tracing::warn!(
            %reason,
            "password hashing threads run at the request threads' priority: a sign-in flood will slow other requests more"
        ),
    }
    Ok(crate::auth::Identity::new(
        settings.auth.clone(),
        hasher,
        mailer,
        &settings.public_url(),
    ))
}
