//! `rampart backup`: a consistent online snapshot of the SQLite database (or of its keyring),
//! encrypted in the standard age format.
//!
//! The snapshot is `VACUUM INTO` a file in a private directory (mode 0700) beside the database,
//! so `serve` keeps running and the copy is one transaction's view; it is then streamed through
//! the age encryptor into `OUT`'s directory under a temporary name and renamed into place once
//! complete. The plaintext snapshot is removed on every path: success, error and Ctrl-C/SIGTERM.
//!
//! Data backups never contain the keyring (the wrapped per-organization data keys): deleting an
//! organization destroys its key, and with it that organization's data in every backup.
//! `--keyring` backs the keyring file up on its own.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::json;

use super::files::{self, HashingWriter, PrivateDir, TempFile};
use crate::config::{Database, Settings};

/// `rampart backup` arguments.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// The encrypted backup to write (never overwritten).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// An age public key (`age1…`) to encrypt to; repeat for several.
    #[arg(long = "recipient", value_name = "AGE_PUBLIC_KEY")]
    pub recipients: Vec<String>,
    /// Encrypt with the passphrase held in this environment variable instead.
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,
    /// Back up the keyring (`keyring.db`, the wrapped data keys) instead of the data.
    #[arg(long)]
    pub keyring: bool,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

/// What the backup was encrypted to, for the final line.
enum Encryption {
    Recipients(Vec<age::x25519::Recipient>),
    Passphrase(age::secrecy::SecretString),
}

impl Encryption {
    fn from_args(args: &BackupArgs) -> Result<Self> {
        match (&args.passphrase_env, args.recipients.is_empty()) {
            (Some(_), false) => bail!(
                "give either --recipient (one or more age public keys) or --passphrase-env, not both"
            ),
            (None, true) => bail!(
                "say how to encrypt the backup: --recipient AGE_PUBLIC_KEY (repeatable; make a key pair with `age-keygen`) \
                 or --passphrase-env VAR (the name of an environment variable holding a passphrase)"
            ),
            (Some(var), true) => Ok(Self::Passphrase(super::passphrase_from_env(var)?)),
            (None, false) => {
                let keys = args
                    .recipients
                    .iter()
                    .map(|r| {
                        age::x25519::Recipient::from_str(r.trim()).map_err(|e| {
                            anyhow!("--recipient {r:?} is not an age public key (age1…): {e}")
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Self::Recipients(keys))
            }
        }
    }

    fn encryptor(&self) -> Result<age::Encryptor> {
        Ok(match self {
            Self::Recipients(keys) => {
                age::Encryptor::with_recipients(keys.iter().map(|k| k as &dyn age::Recipient))
                    .map_err(|e| anyhow!("preparing encryption: {e}"))?
            }
            Self::Passphrase(p) => age::Encryptor::with_user_passphrase(p.clone()),
        })
    }

    fn describe(&self) -> String {
        match self {
            Self::Recipients(k) => format!("{} age recipient(s)", k.len()),
            Self::Passphrase(_) => "a passphrase".to_owned(),
        }
    }
}

/// Runs `rampart backup`.
pub async fn run(settings: &Settings, args: BackupArgs) -> Result<()> {
    let db = match settings.database()? {
        Database::Sqlite(path) => path,
        Database::Postgres(_) => bail!(
            "`rampart backup` snapshots the embedded SQLite database; this install uses PostgreSQL, \
             whose backups belong to the database tier: `pg_dump` piped through `age` (leaving out the \
             key ring), plus point-in-time recovery. See \"Backups\" in the README"
        ),
    };
    let encryption = Encryption::from_args(&args)?;
    let (source, kind) = if args.keyring {
        (rampart_store::keyring_path_for(&db), "keyring")
    } else {
        (db, "data")
    };
    if !source.is_file() {
        if args.keyring {
            bail!(
                "no keyring file at {}: nothing to back up with --keyring (this install keeps no separate keyring)",
                source.display()
            );
        }
        bail!(
            "no database at {}: nothing to back up (check RAMPART_DATA_DIR / RAMPART_DATABASE_URL)",
            source.display()
        );
    }
    if args.out.exists() {
        bail!(
            "{} already exists; refusing to overwrite a backup",
            args.out.display()
        );
    }
    let out_dir = args
        .out
        .parent()
        .unwrap_or_else(|| Path::new(""))
        .to_owned();
    let out_name = args
        .out
        .file_name()
        .ok_or_else(|| anyhow!("--out must name a file"))?
        .to_string_lossy()
        .into_owned();

    let cancel = super::Cancel::watch();
    let source_dir = source.parent().unwrap_or_else(|| Path::new("")).to_owned();
    warn_about_stray_snapshots(&source_dir);
    // Everything that holds plaintext or a partial output is owned here, so it is removed when
    // this function returns by any path, including an interrupt (Ctrl-C and SIGTERM are caught and
    // take effect at the next step or 64 KiB piece).
    let scratch = PrivateDir::new(source_dir.join(format!("{SCRATCH_PREFIX}{}", files::unique())))?;
    let snapshot = scratch.path().join("snapshot.db");
    let partial = TempFile::new(out_dir.join(format!(".{out_name}.partial-{}", files::unique())));

    let work = async {
        drop(files::create_private(&snapshot)?);
        rampart_store::snapshot::vacuum_into(&source, &snapshot)
            .await
            .with_context(|| format!("taking a snapshot of {}", source.display()))?;
        cancel.check()?;
        let snapshot = snapshot.clone();
        let partial_path = partial.path().to_owned();
        let cancel = cancel.clone();
        tokio::task::spawn_blocking(move || encrypt(&snapshot, &partial_path, &encryption, &cancel))
            .await
            .map_err(|e| anyhow!("encryption task failed: {e}"))?
    };
    // The blocking task has finished by the time `work` does, so dropping the guards on an
    // error (an interrupt included) cannot race a thread still writing.
    let written = match work.await {
        Err(_) if cancel.is_set() => {
            bail!("interrupted; the temporary snapshot and the partial backup were removed")
        }
        r => r?,
    };

    // A hard link cannot overwrite: a file that appeared at `--out` meanwhile is kept.
    std::fs::hard_link(partial.path(), &args.out).with_context(|| {
        format!(
            "moving the backup to {} (refusing to overwrite)",
            args.out.display()
        )
    })?;
    drop(partial);
    files::sync_dir(&out_dir);
    drop(scratch);

    let Written {
        bytes,
        sha256,
        snapshot_bytes,
        to,
    } = written;
    crate::cli::output::emit(
        args.json,
        json!({"out": args.out, "kind": kind, "bytes": bytes, "sha256": sha256,
               "snapshot_bytes": snapshot_bytes, "encrypted_to": to}),
        format!(
            "wrote {kind} backup {} ({bytes} bytes, sha256 {sha256}), encrypted to {to}",
            args.out.display()
        ),
    );
    if kind == "data" && rampart_store::keyring_path_for(&source).is_file() && !args.json {
        eprintln!(
            "note: data backups do not contain the keyring; back it up separately with `rampart backup --keyring`"
        );
    }
    Ok(())
}

/// Names of the private directories that hold a plaintext snapshot while a backup runs.
const SCRATCH_PREFIX: &str = ".rampart-backup-";

/// Only `kill -9` (or a crash) can leave a snapshot directory behind; say so rather than delete
/// it, since it may belong to a backup running right now.
fn warn_about_stray_snapshots(dir: &Path) {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(SCRATCH_PREFIX)
        {
            eprintln!(
                "warning: {} holds a plaintext snapshot from another backup, running now or killed; \
                 delete it if no backup is running",
                entry.path().display()
            );
        }
    }
}

struct Written {
    bytes: u64,
    sha256: String,
    snapshot_bytes: u64,
    to: String,
}

/// Streams the snapshot through age into `dest` (created 0600), syncing it to disk.
fn encrypt(
    snapshot: &Path,
    dest: &Path,
    encryption: &Encryption,
    cancel: &super::Cancel,
) -> Result<Written> {
    let mut input = std::fs::File::open(snapshot).context("opening the snapshot")?;
    let snapshot_bytes = input.metadata()?.len();
    let file = files::create_private(dest)?;
    let sink = HashingWriter::new(BufWriter::new(file));
    let mut writer = encryption
        .encryptor()?
        .wrap_output(sink)
        .context("starting the age stream")?;
    let bar = super::progress(snapshot_bytes, "encrypting");
    files::copy_with_progress(&mut input, &mut writer, &bar, cancel)
        .with_context(|| format!("writing {}", dest.display()))?;
    bar.finish_and_clear();
    let sink = writer
        .finish()
        .with_context(|| format!("writing {}", dest.display()))?;
    let (mut buffered, bytes, sha256) = sink.finish();
    buffered.flush()?;
    let file = buffered
        .into_inner()
        .map_err(|e| anyhow!("writing {}: {}", dest.display(), e.error()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", dest.display()))?;
    Ok(Written {
        bytes,
        sha256,
        snapshot_bytes,
        to: encryption.describe(),
    })
}
