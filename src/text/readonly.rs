//! A read-only view of a published keyword index.
//!
//! tantivy's reader takes its `.tantivy-meta.lock` file while it opens the segments,
//! so that a concurrent writer's garbage collection cannot delete them midway.
//! A published index is never written again (a rebuild writes a new directory), so
//! there is nothing to guard against, and creating the lock file would make
//! opening fail on a read-only copy ("Failed to acquire Lockfile: Permission
//! denied") and leave a file behind in the index otherwise. [`ReadOnlyDirectory`]
//! forwards reads to tantivy's `MmapDirectory`, grants locks without touching the
//! disk, and refuses every write.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, DirectoryLock, FileHandle, Lock, MmapDirectory, WatchCallback, WatchHandle, WritePtr,
};

/// A published index directory, opened for reading only (see the module docs).
#[derive(Debug, Clone)]
pub(super) struct ReadOnlyDirectory {
    inner: MmapDirectory,
}

impl ReadOnlyDirectory {
    /// Opens `dir` for reading; creates nothing.
    pub(super) fn open(dir: &Path) -> tantivy::Result<Self> {
        Ok(ReadOnlyDirectory {
            inner: MmapDirectory::open(dir)?,
        })
    }
}

fn read_only(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{}: a published keyword index is read-only", path.display()),
    )
}

impl Directory for ReadOnlyDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        self.inner.get_file_handle(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.inner.atomic_read(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        Err(DeleteError::IoError {
            io_error: Arc::new(read_only(path)),
            filepath: PathBuf::from(path),
        })
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        Err(OpenWriteError::IoError {
            io_error: Arc::new(read_only(path)),
            filepath: PathBuf::from(path),
        })
    }

    fn atomic_write(&self, path: &Path, _data: &[u8]) -> io::Result<()> {
        Err(read_only(path))
    }

    fn sync_directory(&self) -> io::Result<()> {
        Ok(()) // nothing was written
    }

    /// Every lock is granted at once and held in memory only: the files it would
    /// protect never change (see the module docs).
    fn acquire_lock(&self, _lock: &Lock) -> Result<DirectoryLock, LockError> {
        Ok(DirectoryLock::from(Box::new(())))
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        // Only a reader reloading on commit watches; shelfrank's reload manually.
        self.inner.watch(watch_callback)
    }
}
