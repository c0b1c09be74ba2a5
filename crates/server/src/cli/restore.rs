//! `rampart restore`: decrypts a backup into a new data directory and proves it sound before
//! putting it in place.
//!
//! The plaintext is written under a temporary name in the target directory (mode 0600) and
//! checked there: `PRAGMA integrity_check`, every recorded migration known to this binary, and
//! the audit hash chain of every organization verified exactly as `rampart audit verify` does.
//! Only then is it linked to `rampart.db` (never over an existing file). Any failure removes the
//! temporary file and exits non-zero, so a directory never holds a database that did not pass.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use indicatif::ProgressBar;
use rampart_store::{PoolSettings, Store};
use serde_json::json;

use super::files::{self, HashingReader, TempFile};

/// `rampart restore` arguments.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The encrypted data backup written by `rampart backup`.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// The data directory to restore into (created if missing; must not hold a database).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// An age identity file (as written by `age-keygen`) for backups made with --recipient.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// The environment variable holding the passphrase, for backups made with --passphrase-env.
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,
    /// Also restore a keyring backup (`rampart backup --keyring`) to DIR/keyring.db.
    #[arg(long, value_name = "FILE")]
    pub keyring_from: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

enum Decryption {
    Identities {
        file: PathBuf,
        keys: Vec<Box<dyn age::Identity + Send + Sync>>,
    },
    Passphrase(age::secrecy::SecretString),
}

impl Decryption {
    fn from_args(args: &RestoreArgs) -> Result<Self> {
        match (&args.identity, &args.passphrase_env) {
            (Some(_), Some(_)) => bail!("give either --identity or --passphrase-env, not both"),
            (None, None) => bail!(
                "say how to decrypt the backup: --identity FILE (an age identity file, for backups made with --recipient) \
                 or --passphrase-env VAR (for backups made with a passphrase)"
            ),
            (None, Some(var)) => Ok(Self::Passphrase(super::passphrase_from_env(var)?)),
            (Some(file), None) => {
                let name = file.to_string_lossy().into_owned();
                let keys = age::IdentityFile::from_file(name)
                    .with_context(|| format!("reading identity file {}", file.display()))?
                    .into_identities()
                    .map_err(|e| anyhow!("identity file {}: {e}", file.display()))?;
                if keys.is_empty() {
                    bail!("identity file {} holds no identity", file.display());
                }
                Ok(Self::Identities {
                    file: file.clone(),
                    keys,
                })
            }
        }
    }
}

/// Decrypts `from` into `dest` (created 0600); returns (plaintext bytes, SHA-256 of `from`).
fn decrypt_into(
    from: &Path,
    dest: &Path,
    how: &Decryption,
    cancel: &super::Cancel,
) -> Result<(u64, String)> {
    let input = File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let total = input.metadata()?.len();
    let bar = super::progress(total, "decrypting");
    let (reader, hash) = HashingReader::new(BufReader::new(input), bar.clone());
    let shown = from.display();
    let decryptor = age::Decryptor::new(reader).map_err(|e| match e {
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
            anyhow!("{shown} is not an age-encrypted backup (or its header is damaged)")
        }
        other => anyhow!("reading {shown}: {other}"),
    })?;
    let scrypt_identity;
    let identities: Vec<&dyn age::Identity> = match how {
        Decryption::Passphrase(p) => {
            if !decryptor.is_scrypt() {
                bail!(
                    "{shown} was encrypted to age public keys, not a passphrase: use --identity FILE"
                );
            }
            scrypt_identity = age::scrypt::Identity::new(p.clone());
            vec![&scrypt_identity]
        }
        Decryption::Identities { keys, .. } => {
            if decryptor.is_scrypt() {
                bail!("{shown} was encrypted with a passphrase: use --passphrase-env VAR");
            }
            keys.iter()
                .map(|k| k.as_ref() as &dyn age::Identity)
                .collect()
        }
    };
    let mut plaintext = decryptor
        .decrypt(identities.into_iter())
        .map_err(|e| match (e, how) {
            (age::DecryptError::NoMatchingKeys, Decryption::Identities { file, .. }) => anyhow!(
                "no identity in {} can decrypt {shown}: it was encrypted to other keys",
                file.display()
            ),
            (
                age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed,
                Decryption::Passphrase(_),
            ) => anyhow!("wrong passphrase for {shown} (or its header was altered)"),
            (age::DecryptError::InvalidMac, _) => {
                anyhow!("the header of {shown} fails its integrity check: the file was altered")
            }
            (other, _) => anyhow!("cannot decrypt {shown}: {other}"),
        })?;
    let mut out = BufWriter::new(files::create_private(dest)?);
    let bytes = files::copy_with_progress(&mut plaintext, &mut out, &ProgressBar::hidden(), cancel)
        .map_err(|e| {
            anyhow!("{shown} is truncated or was altered after it was written ({e}); nothing was restored")
        })?;
    bar.finish_and_clear();
    out.flush()?;
    out.into_inner()
        .map_err(|e| anyhow!("writing {}: {}", dest.display(), e.error()))?
        .sync_all()?;
    Ok((bytes, hash.hex()))
}

/// One organization's verified chain, for the report.
struct OrgChain {
    org: String,
    events: u64,
    head_hash: String,
}

/// Integrity, migrations and every audit chain of the restored copy at `path`.
async fn check_database(path: &Path) -> Result<(i64, Vec<OrgChain>)> {
    let problems = rampart_store::snapshot::integrity_problems(path)
        .await
        .context("integrity check of the restored database")?;
    if !problems.is_empty() {
        bail!(
            "the restored database fails PRAGMA integrity_check: {}",
            problems
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let migrations = rampart_store::snapshot::known_migrations(path)
        .await
        .context("the restored database's migrations")?;
    let settings = PoolSettings {
        max_connections: 2,
        ..PoolSettings::default()
    };
    let store = Store::open_sqlite(path, settings).await?;
    let result = verify_chains(&store).await;
    store.close().await;
    Ok((migrations, result?))
}

async fn verify_chains(store: &Store) -> Result<Vec<OrgChain>> {
    let mut chains = Vec::new();
    for org in store.org_ids().await? {
        let report = rampart_audit::verify_org(store, &rampart_core::OperatorGrant::new(org))
            .await
            .map_err(|e| anyhow!("audit chain verification failed on the restored copy: {e}"))?;
        chains.push(OrgChain {
            org: org.to_string(),
            events: report.events,
            head_hash: report.head_hash,
        });
    }
    Ok(chains)
}

/// Links `temp` to `dest`, failing if `dest` exists (no overwrite, even in a race).
fn place(temp: &Path, dest: &Path) -> Result<()> {
    std::fs::hard_link(temp, dest).with_context(|| format!("moving into {}", dest.display()))
}

/// What a successful restore did, for the report.
struct Restored {
    data: (u64, String),
    keyring_done: Option<(u64, String)>,
    migrations: i64,
    chains: Vec<OrgChain>,
}

/// Decrypts, checks and places the files in `dir`; on any error every temporary is removed.
async fn restore_into(
    args: &RestoreArgs,
    how: Decryption,
    dir: &Path,
    db: &Path,
    keyring: &Path,
) -> Result<Restored> {
    let cancel = super::Cancel::watch();
    let data_temp = TempFile::new(dir.join(format!(".rampart.db.restoring-{}", files::unique())));
    let keyring_temp = args
        .keyring_from
        .as_ref()
        .map(|_| TempFile::new(dir.join(format!(".keyring.db.restoring-{}", files::unique()))));

    let work = async {
        let from = args.from.clone();
        let blocking_cancel = cancel.clone();
        let keyring_from = args.keyring_from.clone();
        let data_path = data_temp.path().to_owned();
        let keyring_path = keyring_temp.as_ref().map(|t| t.path().to_owned());
        let decrypted = tokio::task::spawn_blocking(move || -> Result<_> {
            let data = decrypt_into(&from, &data_path, &how, &blocking_cancel)?;
            let keyring = match (keyring_from, keyring_path) {
                (Some(f), Some(p)) => Some(decrypt_into(&f, &p, &how, &blocking_cancel)?),
                _ => None,
            };
            Ok((data, keyring))
        })
        .await
        .map_err(|e| anyhow!("decryption task failed: {e}"))??;
        cancel.check()?;
        let (migrations, chains) = check_database(data_temp.path()).await?;
        cancel.check()?;
        if let Some(t) = &keyring_temp {
            let problems = rampart_store::snapshot::integrity_problems(t.path())
                .await
                .context("integrity check of the restored keyring")?;
            if !problems.is_empty() {
                bail!(
                    "the restored keyring fails PRAGMA integrity_check: {}",
                    problems.join("; ")
                );
            }
        }
        Ok::<_, anyhow::Error>((decrypted, migrations, chains))
    };
    // The blocking task has finished by the time `work` does, so the temporaries are removed
    // (on an error, an interrupt included) only when nothing can still be writing them.
    let ((data, keyring_done), migrations, chains) = match work.await {
        Err(_) if cancel.is_set() => bail!("interrupted; nothing was restored"),
        r => r?,
    };
    cancel.check()?;

    // Keyring first: a `rampart.db` in DIR means the whole restore succeeded.
    if let Some(t) = &keyring_temp {
        place(t.path(), keyring)?;
    }
    if let Err(e) = place(data_temp.path(), db) {
        if keyring_temp.is_some() {
            let _ = std::fs::remove_file(keyring);
        }
        return Err(e);
    }
    // Dropping the temporaries removes their names; the linked files stay.
    drop(data_temp);
    drop(keyring_temp);
    files::sync_dir(dir);
    Ok(Restored {
        data,
        keyring_done,
        migrations,
        chains,
    })
}

/// Runs `rampart restore`.
pub async fn run(args: RestoreArgs) -> Result<()> {
    let how = Decryption::from_args(&args)?;
    for f in std::iter::once(&args.from).chain(args.keyring_from.iter()) {
        if !f.is_file() {
            bail!("{} does not exist or is not a file", f.display());
        }
    }
    let dir = args.to.clone();
    if dir.exists() && !dir.is_dir() {
        bail!("{} exists and is not a directory", dir.display());
    }
    let db = dir.join("rampart.db");
    let keyring = rampart_store::keyring_path_for(&db);
    let mut taken = vec![db.clone(), dir.join("rampart.db-wal")];
    if args.keyring_from.is_some() {
        taken.push(keyring.clone());
    }
    if let Some(t) = taken.iter().find(|p| p.exists()) {
        bail!(
            "{} already holds a database ({} exists); restore into a new, empty data directory",
            dir.display(),
            t.display()
        );
    }
    let created = !dir.exists();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let restored = match restore_into(&args, how, &dir, &db, &keyring).await {
        Ok(r) => r,
        Err(e) => {
            if created {
                // Only removes it if empty: the temporaries are already gone.
                let _ = std::fs::remove_dir(&dir);
            }
            return Err(e);
        }
    };
    let Restored {
        data,
        keyring_done,
        migrations,
        chains,
    } = restored;

    let events: u64 = chains.iter().map(|c| c.events).sum();
    let orgs: Vec<_> = chains
        .iter()
        .map(|c| json!({"org": c.org, "events": c.events, "head_hash": c.head_hash}))
        .collect();
    let mut text = format!(
        "restored {} to {} ({} bytes; backup sha256 {}): integrity ok, migrations up to {migrations} known, \
         audit chains of {} organization(s) verified ({events} events)",
        args.from.display(),
        db.display(),
        data.0,
        data.1,
        chains.len(),
    );
    if let Some((bytes, sha)) = &keyring_done {
        text.push_str(&format!(
            "\nrestored keyring to {} ({bytes} bytes; backup sha256 {sha}): integrity ok",
            keyring.display()
        ));
    }
    text.push_str(&format!(
        "\nstart it with RAMPART_DATA_DIR={} and the install's master key (RAMPART_MASTER_KEY_FILE)",
        dir.display()
    ));
    super::output::emit(
        args.json,
        json!({"database": db, "bytes": data.0, "backup_sha256": data.1, "migrations": migrations,
               "organizations": orgs, "events": events,
               "keyring": keyring_done.as_ref().map(|_| &keyring),
               "keyring_backup_sha256": keyring_done.as_ref().map(|k| &k.1)}),
        text,
    );
    Ok(())
}
