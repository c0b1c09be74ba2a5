//! Database files readable by their owner only: created mode 0600 before SQLite opens them,
//! so the `-wal` and `-shm` files SQLite makes beside them take the same mode.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Creates `path` empty with mode 0600 unless it exists (an existing file keeps its mode: the
/// operator may have chosen it).
pub(crate) fn create(path: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use crate::{PoolSettings, Store};

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn a_new_database_and_its_wal_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rampart.db");
        let store = Store::open_sqlite(&path, PoolSettings::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        assert_eq!(mode(&path), 0o600, "rampart.db");
        let wal = dir.path().join("rampart.db-wal");
        assert!(wal.exists(), "WAL mode makes a -wal file");
        assert_eq!(mode(&wal), 0o600, "rampart.db-wal");
        store.close().await;
    }

    #[test]
    fn an_existing_file_keeps_the_mode_its_owner_chose() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rampart.db");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        super::create(&path).unwrap();
        assert_eq!(mode(&path), 0o640);
    }
}
