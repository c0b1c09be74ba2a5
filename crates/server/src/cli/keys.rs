//! `rampart keys`: `init` writes a new master key; `rotate-master` and `rotate-org` are
//! resumable: a master
//! rotation rewraps only rows still labelled with another master key; a data key rotation
//! continues with the newest version when an older one is still present.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use rampart_core::OrgId;
use rampart_crypto::{MasterKey, rewrap_dek};
use rampart_store::{KeyScope, Store, Vault};
use serde_json::{Value, json};

use super::open::{close, ensure_private_dir, open_with_vault};
use super::output::{JsonFlag, emit};
use crate::config::Settings;

/// The master-key subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCmd {
    /// Write a new master key file (mode 0600); never overwrites.
    Init(JsonFlag),
    /// Rewrap every data key under a new master key (resumable).
    RotateMaster(RotateMaster),
    /// Give an organization a new data key and re-encrypt its fields (resumable).
    RotateOrg(RotateOrg),
}

/// Runs one master-key subcommand.
pub async fn run(settings: &Settings, cmd: KeysCmd) -> Result<()> {
    let (json, result) = match cmd {
        KeysCmd::Init(out) => {
            let path = settings.master_key_path();
            ensure_private_dir(path.parent().unwrap_or(Path::new(".")))?;
            let key = MasterKey::generate_file(&path)?;
            emit(
                out.json,
                json!({"path": path, "key_id": key.id()}),
                format!(
                    "wrote master key {} to {}; back it up somewhere other than this machine",
                    key.id(),
                    path.display()
                ),
            );
            return Ok(());
        }
        KeysCmd::RotateMaster(args) => {
            let (store, vault) = open_with_vault(settings).await?;
            let result = match MasterKey::load_file(&args.new_key_file) {
                Ok(new) => rotate_master(&vault, &new, &mut std::io::stderr()).await,
                Err(e) => Err(e.into()),
            };
            close(store, vault).await;
            (args.json, result)
        }
        KeysCmd::RotateOrg(args) => {
            let (store, vault) = open_with_vault(settings).await?;
            let result = rotate_org(&store, &vault, &args, &mut std::io::stderr()).await;
            close(store, vault).await;
            (args.json, result)
        }
    };
    let value = result?;
    emit(json, value.clone(), value.to_string());
    Ok(())
}

/// Arguments of `keys rotate-master`.
#[derive(Debug, clap::Args)]
pub struct RotateMaster {
    /// The new master key file (mode 0600; `RAMPART_MASTER_KEY_FILE=F rampart keys init`).
    #[arg(long)]
    pub new_key_file: PathBuf,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `keys rotate-org`.
#[derive(Debug, clap::Args)]
pub struct RotateOrg {
    /// The organization whose data key is replaced.
    #[arg(long)]
    pub org: OrgId,
    /// Values re-encrypted per transaction.
    #[arg(long, default_value_t = 100)]
    pub batch: u32,
    /// Seconds to wait after the new version appears before retiring the old one, so that
    /// every node's key cache (30 s) has seen it; lower only on a single node.
    #[arg(long, default_value_t = 35)]
    pub settle_secs: u64,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

/// Rewraps every data key not yet under `new` (unwrapping with the configured master key or
/// `RAMPART_MASTER_KEY_PREVIOUS_FILE`), one row at a time, with progress on `log`.
pub async fn rotate_master(vault: &Vault, new: &MasterKey, log: &mut dyn Write) -> Result<Value> {
    let new_id = new.id();
    let rows: Vec<_> = vault
        .keyring()
        .all()
        .await?
        .into_iter()
        .filter(|r| r.wrapped.kek_id != new_id)
        .collect();
    let total = rows.len();
    let mut rewrapped = 0u64;
    for (i, row) in rows.into_iter().enumerate() {
        let Some(old) = vault.kek(&row.wrapped.kek_id) else {
            bail!(
                "the data key of {} (version {}) is wrapped by master key {}, which is not configured",
                row.scope,
                row.wrapped.dek_version,
                row.wrapped.kek_id
            );
        };
        let fresh = rewrap_dek(old, new, row.scope, &row.wrapped)?;
        if vault
            .keyring()
            .rewrap(row.scope, &row.wrapped.kek_id, &fresh)
            .await?
        {
            rewrapped += 1;
        }
        let _ = writeln!(log, "rewrapped {}/{total} data keys", i + 1);
    }
    Ok(
        json!({"kek_id": new_id, "rewrapped": rewrapped, "already_done": vault.keyring().all().await?.len() as u64 - rewrapped}),
    )
}

/// Starts (or resumes) a data key rotation of `org`: a new version seals from now on, every
/// value is re-encrypted under it in batches with progress on `log`, and once none is left
/// under an older version (after `settle_secs`, so every node seals with the new one) the
/// older versions are deleted.
pub async fn rotate_org(
    store: &Store,
    vault: &Vault,
    args: &RotateOrg,
    log: &mut (dyn Write + Send),
) -> Result<Value> {
    let scope = KeyScope::Org(args.org);
    if store.org(args.org).await?.is_none() {
        bail!("organization {} not found", args.org);
    }
    if vault.keyring().is_destroyed(scope).await? {
        bail!(
            "organization {} was deleted; its data key is destroyed",
            args.org
        );
    }
    vault.ensure_key(scope).await?;
    let versions = vault.keyring().versions(scope).await?;
    let Some(newest) = versions.first() else {
        bail!("organization {} has no data key", args.org);
    };
    let target = if versions.len() > 1 {
        let _ = writeln!(
            log,
            "resuming the rotation of {} to data key version {}",
            args.org, newest.wrapped.dek_version
        );
        newest.wrapped.dek_version
    } else {
        let next = newest.wrapped.dek_version + 1;
        vault.add_version(scope, next).await?;
        let _ = writeln!(log, "data key version {next} created for {}", args.org);
        next
    };
    let started = vault
        .keyring()
        .versions(scope)
        .await?
        .into_iter()
        .find(|r| r.wrapped.dek_version == target)
        .map(|r| r.created_at)
        .unwrap_or_else(|| vault.now());
    let mut rewritten = 0;
    let mut passes = 0;
    loop {
        let mut progress = |done: u64, total: u64| {
            let _ = writeln!(log, "re-encrypted {done}/{total} values");
        };
        let report = store
            .reencrypt_org(vault, args.org, target, args.batch, &mut progress)
            .await?;
        rewritten += report.rewritten;
        let settled = vault.now() - started;
        let wait = chrono::Duration::seconds(i64::try_from(args.settle_secs).unwrap_or(i64::MAX))
            - settled;
        if report.remaining == 0 && wait <= chrono::Duration::zero() {
            break;
        }
        if report.remaining > 0 {
            passes += 1;
        }
        if passes > 20 {
            bail!(
                "{} values are still under an older data key after {passes} passes; run the command again",
                report.remaining
            );
        }
        let pause = wait
            .to_std()
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_millis(200));
        let _ = writeln!(
            log,
            "waiting {:.1} s for every node to seal with version {target}",
            pause.as_secs_f64()
        );
        tokio::time::sleep(pause).await;
    }
    let retired = vault.keyring().retire_below(scope, target).await?;
    vault.forget(scope);
    let _ = writeln!(log, "done: {retired} older data key version(s) retired");
    Ok(
        json!({"org_id": args.org, "version": target, "rewritten": rewritten, "retired_versions": retired}),
    )
}
