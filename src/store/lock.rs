//! The index's writer lock and the readers' generation pins: OS advisory locks
//! (`flock` on Unix, `LockFileEx` on Windows, through `std::fs::File::lock`).
//!
//! * **One writer per index.** Every process that changes an index (a build, an
//!   event import, `forget`, recording events, saving a trained head) holds an
//!   exclusive lock on `INDEX/LOCK` while it writes ([`WriterLock`]). A second writer
//!   gets [`Error::Locked`] naming the holder (its PID, command line and start time,
//!   which the holder writes into the file), or waits for it. The OS drops the lock
//!   when the holder exits, however it exits (`kill -9` included), so a crashed
//!   writer never leaves the index locked.
//! * **Readers take no writer lock** and never create a file: they can open an index
//!   on a read-only disk, or one owned by another user.
//! * **A reader pins the generation it opened** ([`GenerationPin`]) with a shared
//!   lock on that generation's `manifest.json` (opened read-only). A writer deletes
//!   an old generation only after taking the exclusive lock on it, so it never pulls
//!   files from under a running search.
//!
//! Every lock is released explicitly when its holder is dropped ([`HeldLock`]), not
//! only by closing the file: while another thread of the process starts a child
//! process, the child holds a copy of every open file (until it runs its program),
//! and with `flock` a copy keeps the lock. Without the explicit release, a writer of
//! this very process could be refused the lock it had just let go.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::layout::LOCK;
use crate::error::{Error, Result};

/// An OS advisory lock on an open file, released when dropped (see the
/// [module docs](self) for why explicitly).
#[derive(Debug)]
pub(crate) struct HeldLock(File);

impl HeldLock {
    /// Takes `file`'s lock over; `file` must hold it already.
    pub(crate) fn new(file: File) -> Self {
        HeldLock(file)
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// The exclusive writer lock of one index, held until dropped.
#[derive(Debug)]
pub struct WriterLock {
    lock: HeldLock,
    index: PathBuf,
}

impl WriterLock {
    /// Takes the writer lock of the index in `index` (creating the directory and its
    /// `LOCK` file if needed). With `wait`, blocks until the current holder is done;
    /// otherwise fails at once with [`Error::Locked`] naming the holder.
    pub fn acquire(index: &Path, wait: bool) -> Result<Self> {
        if index.exists() && !index.is_dir() {
            return Err(Error::invalid(
                "index path",
                format!("{} exists and is not a directory", index.display()),
            ));
        }
        if !index.exists() {
            fs::create_dir_all(index).map_err(|e| Error::io(index, e))?;
            super::durable::sync_dir(&super::durable::parent_dir(index))?;
        }
        let path = index.join(LOCK);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) if wait => {
                file.lock().map_err(|e| Error::io(&path, e))?;
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::Locked {
                    index: index.to_path_buf(),
                    holder: if holder.is_empty() {
                        "another process (it has not said which yet)".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        // Say who holds it, for the next writer's error message. Informational only:
        // the lock itself is the OS's, so a torn note is harmless.
        let note = format!(
            "pid {} (`{}`), since {}\n",
            std::process::id(),
            std::env::args().collect::<Vec<_>>().join(" "),
            chrono::DateTime::from_timestamp(crate::profile::events::now_unix(), 0)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default(),
        );
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(note.as_bytes()));
        Ok(WriterLock {
            lock: HeldLock::new(file),
            index: index.to_path_buf(),
        })
    }

    /// The index directory this lock guards.
    pub fn index(&self) -> &Path {
        &self.index
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // Clear the holder note; the lock is released after it (by `HeldLock`).
        let _ = self.lock.0.set_len(0);
    }
}

/// A shared lock on one generation, held by a reader for as long as it uses the
/// generation's files.
#[derive(Debug)]
pub struct GenerationPin {
    _lock: HeldLock,
}

impl GenerationPin {
    /// Pins the generation whose manifest is `manifest`: `Ok(None)` when the manifest
    /// is gone (the generation was removed; the caller resolves `CURRENT` again).
    pub fn take(manifest: &Path) -> Result<Option<Self>> {
        let file = match File::open(manifest) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(manifest, e)),
        };
        file.lock_shared().map_err(|e| Error::io(manifest, e))?;
        // A writer removing this generation unlinks the manifest while it holds the
        // exclusive lock: if it is gone now, the pin came too late.
        if !manifest.exists() {
            return Ok(None);
        }
        Ok(Some(GenerationPin {
            _lock: HeldLock::new(file),
        }))
    }
}

/// Whether no reader pins the generation whose manifest is `manifest`; if so, the
/// returned lock keeps new readers out until it is dropped (the caller removes the
/// generation, manifest first, while holding it).
pub(crate) fn try_claim_generation(manifest: &Path) -> Option<HeldLock> {
    let file = File::open(manifest).ok()?;
    file.try_lock().ok()?;
    Some(HeldLock::new(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_with_the_holder_named() {
        let tmp = tempfile::tempdir().unwrap();
        let first = WriterLock::acquire(tmp.path(), false).unwrap();
        let err = WriterLock::acquire(tmp.path(), false).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Locked { .. }), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        WriterLock::acquire(tmp.path(), false).unwrap();
    }

    /// A thread that starts child processes all the time must not make this process's
    /// own writer lock look taken after it was released (a child forked while the
    /// lock was held keeps a copy of the file until it runs its program).
    #[cfg(unix)]
    #[test]
    fn a_released_writer_lock_is_free_while_another_thread_starts_processes() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let tmp = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let spawner = s.spawn(|| {
                let mut started = 0;
                while !stop.load(Ordering::Relaxed) {
                    let _ = std::process::Command::new("true").status();
                    started += 1;
                }
                started
            });
            let start = std::time::Instant::now();
            let (mut tries, mut refused) = (0, 0);
            while start.elapsed() < std::time::Duration::from_secs(2) || tries < 1000 {
                match WriterLock::acquire(tmp.path(), false) {
                    Ok(lock) => drop(lock),
                    Err(Error::Locked { .. }) => refused += 1,
                    Err(e) => panic!("{e}"),
                }
                tries += 1;
            }
            stop.store(true, Ordering::Relaxed);
            let started = spawner.join().unwrap();
            assert!(started > 0, "no child process was started");
            assert_eq!(
                refused, 0,
                "{refused} of {tries} refused, {started} children"
            );
        });
    }

    #[test]
    fn a_file_is_not_an_index_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("afile");
        fs::write(&file, b"keep").unwrap();
        let err = WriterLock::acquire(&file, false).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        assert_eq!(fs::read(&file).unwrap(), b"keep");
    }

    #[test]
    fn a_pinned_generation_cannot_be_claimed() {
        let tmp = tempfile::tempdir().unwrap();
        let manifest = tmp.path().join("manifest.json");
        fs::write(&manifest, b"{}").unwrap();
        let pin = GenerationPin::take(&manifest).unwrap().unwrap();
        assert!(try_claim_generation(&manifest).is_none());
        drop(pin);
        let claim = try_claim_generation(&manifest).unwrap();
        fs::remove_file(&manifest).unwrap();
        drop(claim);
        assert!(GenerationPin::take(&manifest).unwrap().is_none());
    }
}
