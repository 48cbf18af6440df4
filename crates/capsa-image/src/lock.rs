//! The store lock: one flock(2) on `<root>/lock` serialises every change to what the store
//! references (refs, image records, blob and layer commits, leases, garbage collection).
//!
//! Owns only the lock file. Long work (downloads, unpacking) happens before taking it, in
//! private temp dirs, so the lock is held for renames and small JSON writes only.

use std::fs::{File, OpenOptions};
use std::path::Path;

use rustix::fs::FlockOperation;

use crate::error::{ImageError, Result};

/// Holds the exclusive store lock until dropped (closing the fd releases the flock).
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Blocks until the lock is ours.
    pub fn acquire(root: &Path) -> Result<Self> {
        let path = root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ImageError::io("open the store lock", &path, e))?;
        rustix::fs::flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| ImageError::sys("flock", &path, e))?;
        Ok(StoreLock { _file: file })
    }
}
