//! File modes of what the store keeps on disk: the data directory is 0700; the SQLite
//! database, its `-wal` and `-shm` files and `secret.key` are 0600. The database holds
//! sealed secrets and key hashes, the key file opens the secrets: only the gateway's user may
//! read them.
//!
//! New files and directories are created with these modes; an existing one that is looser
//! (any group or other bit) is tightened when the store is opened, and the caller logs one
//! line saying what changed. A directory this module did not create is only tightened when
//! it is the data directory (a custom `sqlite://PATH` may live in a shared directory, which
//! is left alone; its database files are still made private).

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::StoreError;

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// What was tightened, one `path 0755 -> 0700` entry each, for the log.
#[derive(Debug, Default)]
pub(crate) struct Tightened(pub(crate) Vec<String>);

impl Tightened {
    /// Makes `path` a private directory: created 0700 (with missing parents) if absent,
    /// tightened if looser.
    pub(crate) fn private_dir(&mut self, path: &Path) -> Result<(), StoreError> {
        match fs::metadata(path) {
            Ok(_) => self.tighten(path, DIR_MODE),
            Err(e) if e.kind() == ErrorKind::NotFound => fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(path)
                .map_err(|e| StoreError::io(path, e)),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// Makes `path` a private file: created empty with 0600 if absent (so a database file
    /// is never readable by others, not even for a moment), tightened if looser.
    pub(crate) fn private_file(&mut self, path: &Path) -> Result<(), StoreError> {
        let created = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(path);
        match created {
            Ok(_) => Ok(()),
            // why: it exists (perhaps another process just created it): check its mode.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => self.tighten(path, FILE_MODE),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// Tightens `path` to 0600 if it exists and is looser (files created by others, such as
    /// SQLite's `-wal` and `-shm`).
    pub(crate) fn existing_file(&mut self, path: &Path) -> Result<(), StoreError> {
        match fs::metadata(path) {
            Ok(_) => self.tighten(path, FILE_MODE),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    fn tighten(&mut self, path: &Path, mode: u32) -> Result<(), StoreError> {
        let meta = fs::metadata(path).map_err(|e| StoreError::io(path, e))?;
        let old = meta.permissions().mode() & 0o777;
        if old & 0o077 == 0 {
            return Ok(());
        }
        // why: keep the owner's bits as they are beyond `mode` (never loosen anything).
        let new = old & mode;
        fs::set_permissions(path, fs::Permissions::from_mode(new))
            .map_err(|e| StoreError::io(path, e))?;
        self.0
            .push(format!("{} {old:04o} -> {new:04o}", path.display()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_private_and_tightens_loose_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let mut t = Tightened::default();
        let dir = tmp.path().join("a/b");
        t.private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("f");
        t.private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert!(t.0.is_empty(), "nothing was loose: {:?}", t.0);

        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let other = dir.join("other");
        fs::write(&other, "x").unwrap();
        fs::set_permissions(&other, fs::Permissions::from_mode(0o640)).unwrap();
        t.private_dir(&dir).unwrap();
        t.private_file(&file).unwrap();
        t.existing_file(&other).unwrap();
        t.existing_file(&dir.join("missing")).unwrap();
        assert_eq!(
            (mode(&dir), mode(&file), mode(&other)),
            (0o700, 0o600, 0o600)
        );
        assert_eq!(t.0.len(), 3, "{:?}", t.0);
        assert!(t.0[0].ends_with("0755 -> 0700"), "{:?}", t.0);
        // An owner-only file stricter than 0600 is not loosened.
        fs::set_permissions(&file, fs::Permissions::from_mode(0o400)).unwrap();
        t.private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o400);
    }
}
