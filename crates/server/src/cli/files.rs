//! Temporary files that must not outlive a command (plaintext snapshots, partial outputs), and
//! readers/writers that hash and count the bytes passing through them.

use std::cell::RefCell;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

/// A fresh random suffix for temporary names.
pub(super) fn unique() -> String {
    ulid::Ulid::new().to_string().to_ascii_lowercase()
}

/// Creates `path` for writing, mode 0600, failing if anything is already there.
pub(super) fn create_private(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// A directory (mode 0700) removed with everything in it when this value is dropped: on
/// success, on every error path and when the command is interrupted.
pub(super) struct PrivateDir(PathBuf);

impl PrivateDir {
    pub(super) fn new(path: PathBuf) -> Result<Self> {
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("creating temporary directory {}", path.display()))?;
        Ok(Self(path))
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0)
            && e.kind() != io::ErrorKind::NotFound
        {
            eprintln!(
                "warning: could not remove temporary directory {}: {e}; delete it by hand",
                self.0.display()
            );
        }
    }
}

/// A file (and any SQLite `-wal`, `-shm`, `-journal` beside it) removed when dropped. Its
/// content is put in place by hard-linking it to the final name first.
pub(super) struct TempFile {
    path: PathBuf,
}

impl TempFile {
    pub(super) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let mut names = vec![self.path.clone()];
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut s = self.path.clone().into_os_string();
            s.push(suffix);
            names.push(PathBuf::from(s));
        }
        for p in names {
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != io::ErrorKind::NotFound
            {
                eprintln!(
                    "warning: could not remove {}: {e}; delete it by hand",
                    p.display()
                );
            }
        }
    }
}

/// Hashes (SHA-256) and counts what is written through it.
pub(super) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(super) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, the byte count and the hex SHA-256.
    pub(super) fn finish(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes (SHA-256) what is read through it and advances a progress bar; the hash is read
/// through the [`HashHandle`] it was made with, since the reader itself is handed away.
pub(super) struct HashingReader<R> {
    inner: R,
    hasher: HashHandle,
    bar: ProgressBar,
}

/// The running hash of a [`HashingReader`].
#[derive(Clone, Default)]
pub(super) struct HashHandle(Rc<RefCell<Sha256>>);

impl HashHandle {
    /// The hex SHA-256 of everything read so far.
    pub(super) fn hex(&self) -> String {
        hex::encode(self.0.borrow().clone().finalize())
    }
}

impl<R: Read> HashingReader<R> {
    pub(super) fn new(inner: R, bar: ProgressBar) -> (Self, HashHandle) {
        let hasher = HashHandle::default();
        (
            Self {
                inner,
                hasher: hasher.clone(),
                bar,
            },
            hasher,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.0.borrow_mut().update(&buf[..n]);
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Copies `from` to `to` in 64 KiB pieces, advancing `bar`; returns the bytes copied.
/// Stops with an error once `cancel` is set.
pub(super) fn copy_with_progress(
    from: &mut impl Read,
    to: &mut impl Write,
    bar: &ProgressBar,
    cancel: &super::Cancel,
) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        cancel.check()?;
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
        bar.inc(n as u64);
    }
}

/// Makes a completed rename durable.
pub(super) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) {
        let _ = d.sync_all();
    }
}
