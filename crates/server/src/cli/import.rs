//! `rampart import credentials`: provider secrets that a Python system encrypted with Fernet,
//! re-encrypted under the organization's data key. The input file has one credential per
//! line, `provider,fernet-token`; blank lines and lines starting with `#` are skipped. The
//! Fernet key comes from an environment variable, never the command line (which other users
//! of the machine can read in the process list).

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use rampart_core::{CredentialId, OperatorGrant, WorkspaceId};
use rampart_crypto::{FernetKey, fernet};
use rampart_store::audit::{self, NewEvent};
use rampart_store::credentials::{self, COLUMN, PROVIDERS, TABLE};
use rampart_store::{KeyScope, Mode, Store, Vault};
use serde_json::{Value, json};

use super::open::{close, open_with_vault};
use super::operator_event;
use super::output::emit;
use crate::config::Settings;
use rampart_core::{Clock, SystemClock};

/// What `rampart import` reads.
#[derive(Debug, clap::Subcommand)]
pub enum Import {
    /// Provider credentials encrypted with Fernet by another system, re-sealed under the
    /// organization's data key.
    Credentials(ImportCredentials),
    /// Contacts from CSV (name,email,phone,us_state,tags), validated row by row.
    Contacts(super::import_contacts::ImportContactsArgs),
}

/// Runs one import.
pub async fn run(settings: &Settings, cmd: Import) -> Result<()> {
    match cmd {
        Import::Contacts(args) => super::import_contacts::run(settings, args).await,
        Import::Credentials(args) => {
            let (store, vault) = open_with_vault(settings).await?;
            let event = operator_event("import credentials", "credential.import", json!({}));
            let result = credentials(&store, &vault, &args, SystemClock.now(), event).await;
            close(store, vault).await;
            let value = result?;
            emit(args.json, value.clone(), value.to_string());
            Ok(())
        }
    }
}

/// Arguments of `import credentials`.
#[derive(Debug, clap::Args)]
pub struct ImportCredentials {
    /// The workspace that receives the credentials.
    #[arg(long)]
    pub workspace: WorkspaceId,
    /// File holding the Fernet key (url-safe base64 of 32 bytes, as Python writes it).
    #[arg(long)]
    pub fernet_key_file: PathBuf,
    /// The file of `provider,token` lines.
    #[arg(long)]
    pub file: PathBuf,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

/// Decrypts every line, then stores them all in one transaction with one ledger event; a
/// single bad line stops the import before anything is written, naming the line.
pub async fn credentials(
    store: &Store,
    vault: &Vault,
    args: &ImportCredentials,
    now: DateTime<Utc>,
    mut event: NewEvent,
) -> Result<Value> {
    let key_text = rampart_core::Secret::new(
        std::fs::read_to_string(&args.fernet_key_file)
            .with_context(|| format!("reading {}", args.fernet_key_file.display()))?,
    );
    let key = FernetKey::from_base64(key_text.expose())?;
    let Some((org, _)) = store.workspace_org(args.workspace).await? else {
        bail!("workspace {} not found", args.workspace);
    };
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let mut plain = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (provider, token) = line
            .split_once(',')
            .ok_or_else(|| anyhow!("line {}: expected `provider,token`", n + 1))?;
        let provider = PROVIDERS
            .iter()
            .find(|p| **p == provider.trim())
            .ok_or_else(|| {
                anyhow!(
                    "line {}: unknown provider (one of {})",
                    n + 1,
                    PROVIDERS.join(", ")
                )
            })?;
        let secret = fernet::decrypt(&key, token.trim(), None, now)
            .map_err(|e| anyhow!("line {}: {e}", n + 1))?;
        let value = String::from_utf8(secret.expose().clone())
            .map_err(|_| anyhow!("line {}: the decrypted secret is not UTF-8", n + 1))?;
        plain.push((*provider, rampart_core::Secret::new(value)));
    }
    let grant = OperatorGrant::new(org).in_workspace(args.workspace);
    let mut tx = store.tenant(&grant, Mode::Write).await?;
    let mut imported = Vec::new();
    for (provider, secret) in &plain {
        let chars = secret.expose().chars().count();
        let last4: String = secret
            .expose()
            .chars()
            .skip(chars.saturating_sub(4))
            .collect();
        let id = credentials::id_for(&mut tx, provider)
            .await?
            .unwrap_or_else(CredentialId::generate);
        let sealed = vault
            .seal(
                KeyScope::Org(org),
                TABLE,
                COLUMN,
                &id.to_string(),
                secret.expose().as_bytes(),
            )
            .await?;
        credentials::put(&mut tx, id, provider, &sealed, &last4, now).await?;
        imported.push(*provider);
    }
    event.workspace = Some(args.workspace);
    event.args =
        json!({"providers": imported, "file": args.file.display().to_string()}).to_string();
    audit::append(&mut tx, event, now).await?;
    tx.commit().await?;
    Ok(json!({"workspace_id": args.workspace, "imported": imported}))
}
