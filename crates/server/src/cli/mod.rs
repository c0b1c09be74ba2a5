//! Every command of the `rampart` binary, one module each: `serve`, `admin`, `audit`, `keys`,
//! `import`, `backup` / `restore`, `jobs` and `worker`; `open` opens what they work on and
//! `output` prints their results. `main.rs` only parses and dispatches.
//!
//! Backup and restore files are sync I/O (the `age` crate streams through `std::io`); the async
//! commands run that part on a blocking thread.

pub mod admin;
pub mod audit;
pub mod backup;
pub mod identity;
pub mod import;
pub mod import_contacts;
pub mod jobs;
pub mod keys;
pub mod open;
pub mod org;
pub mod output;
pub mod restore;
pub mod serve;
pub mod worker;

mod files;

use crate::config::{Database, Settings};
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rampart_core::{AuthMethod, Clock};
use rampart_crypto::MasterKey;
use rampart_store::audit::NewEvent;
use rampart_store::{Keyring, Store, Vault, keyring_path_for};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Reads the passphrase from the environment variable the operator named (never from a flag,
/// which would land in shell history and `ps`).
fn passphrase_from_env(var: &str) -> Result<age::secrecy::SecretString> {
    match std::env::var(var) {
        Ok(p) if !p.is_empty() => Ok(age::secrecy::SecretString::from(p)),
        Ok(_) => bail!("--passphrase-env {var}: the variable is empty"),
        Err(_) => bail!("--passphrase-env {var}: the variable is not set (or not UTF-8)"),
    }
}

/// A byte-count progress bar on standard error when it is a terminal; hidden otherwise, so logs
/// and scripts see only the final line.
fn progress(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// Set by Ctrl-C or SIGTERM. The commands check it between steps and between 64 KiB pieces
/// and then return an error through their ordinary path, so the guards that remove temporary
/// files run only after no thread can still be writing them.
#[derive(Clone, Default)]
struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Starts watching for Ctrl-C and SIGTERM. The handlers are registered before this returns
    /// (not when the watching task first runs), so call it before making any temporary file.
    fn watch() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let cancel = Self::default();
        let flag = cancel.0.clone();
        let mut term = signal(SignalKind::terminate()).ok();
        let mut int = signal(SignalKind::interrupt()).ok();
        tokio::spawn(async move {
            tokio::select! {
                () = next(&mut term) => {}
                () = next(&mut int) => {}
            }
            flag.store(true, Ordering::SeqCst);
        });
        cancel
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// An error once interrupted.
    fn check(&self) -> std::io::Result<()> {
        if self.is_set() {
            Err(std::io::Error::other("interrupted"))
        } else {
            Ok(())
        }
    }
}

/// The next delivery of a signal; never, when its handler could not be installed.
async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// The ledger event for an operator's CLI action inside a tenant (arguments redacted).
pub fn operator_event(command: &str, action: &str, args: serde_json::Value) -> NewEvent {
    NewEvent {
        actor: rampart_core::Actor::Operator.into(),
        auth_method: Some(AuthMethod::Cli),
        method: "CLI".to_owned(),
        path: format!("rampart {command}"),
        action: action.to_owned(),
        args: rampart_audit::redact_args(args.to_string().as_bytes()),
        status: 200,
        request_id: format!("cli_{}", ulid::Ulid::new().to_string().to_ascii_lowercase()),
        ..NewEvent::default()
    }
}
