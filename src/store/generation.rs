//! Generations: how a build is published, and how a reader finds the live one.
//!
//! A build writes a hidden staging directory inside the index (`.staging-PID-N`,
//! claimed by a lock on `.staging-PID-N.lock` while the build runs), fsyncs every
//! file, takes the writer lock, renames it to the next generation's name
//! (`gen-000004`), fsyncs the index directory, and only then replaces the small `CURRENT` file (temporary file, fsync, rename, fsync
//! of the directory) so that it names the new generation. That replacement is the
//! commit point, as in LevelDB's `CURRENT`: a crash before it leaves the previous
//! generation live (the half-built one is removed by the next build), a crash after
//! it leaves the new one live. Nothing a build does touches `events/` or `rank/`.
//!
//! A reader reads `CURRENT` and pins the generation it names (a shared lock on its
//! manifest, see [`super::lock`]). After a publish, the writer removes every older
//! generation that no reader pins; a pinned one is removed by a later build.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::durable::{self, crash_point};
use super::layout::{
    generation_name, generation_number, IndexPaths, BUILD_ENTRIES, CURRENT, LOCK, MANIFEST,
    SHOP_DIRS,
};
use super::lock::{try_claim_generation, GenerationPin, HeldLock, WriterLock};
use crate::error::{Error, Result};

/// How many times a reader resolves `CURRENT` again when the generation it named
/// was removed before it could pin it (a build published twice in between).
const RESOLVE_ATTEMPTS: usize = 20;

/// The longest `CURRENT` this reader accepts: a generation name and a newline.
const MAX_CURRENT_BYTES: u64 = 64;

/// The live generation of the index in `root`, pinned for as long as the returned
/// pin lives: its paths, and the pin.
///
/// Reads `CURRENT`; an index from before generations (no `CURRENT`, the build files
/// in `root`) is its own generation. Creates nothing, so it works on a read-only
/// index.
pub fn open_current(root: &Path) -> Result<(IndexPaths, GenerationPin)> {
    let current = root.join(CURRENT);
    for attempt in 0..RESOLVE_ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(5 * attempt as u64));
        }
        let paths = match read_current(&current)? {
            Some(name) => IndexPaths::with_data(root, root.join(name)),
            None => {
                if !root.join(MANIFEST).exists() {
                    if current.exists() {
                        continue; // a build just published its first generation
                    }
                    return Err(Error::IndexNotFound {
                        path: root.to_path_buf(),
                    });
                }
                IndexPaths::new(root)
            }
        };
        if let Some(pin) = GenerationPin::take(&paths.manifest())? {
            return Ok((paths, pin));
        }
        // The generation went before we could pin it. A build that removed it has
        // published a newer one, so `CURRENT` changed: resolve again. If `CURRENT`
        // still names it, nothing will bring it back.
        let still = read_current(&current)?;
        if still.as_deref().map(|n| root.join(n)).as_deref() == Some(paths.data()) {
            return Err(Error::corrupt(
                &current,
                format!(
                    "it names {}, whose manifest.json is missing",
                    paths.data().display()
                ),
            ));
        }
    }
    Err(Error::corrupt(
        &current,
        "the generation it names kept being replaced while this reader opened it",
    ))
}

/// The generation name in `CURRENT`, or `None` when there is no `CURRENT`.
fn read_current(current: &Path) -> Result<Option<String>> {
    match fs::metadata(current) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(current, e)),
        Ok(m) if m.len() > MAX_CURRENT_BYTES => {
            return Err(Error::corrupt(
                current,
                format!("{} bytes; it should hold one generation name", m.len()),
            ))
        }
        Ok(_) => {}
    }
    let bytes = match fs::read(current) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(current, e)),
        Ok(b) => b,
    };
    let name = std::str::from_utf8(&bytes)
        .ok()
        .map(str::trim)
        .filter(|n| generation_number(n).is_some())
        .ok_or_else(|| {
            Error::corrupt(
                current,
                format!(
                    "it should hold a generation name like gen-000001, it holds {:?}",
                    String::from_utf8_lossy(&bytes)
                ),
            )
        })?;
    Ok(Some(name.to_string()))
}

/// Refuses to build into a directory that holds something other than a shelfrank
/// index (so a typo in `--index` cannot delete a user's files), or into a file.
pub fn check_buildable(root: &Path) -> Result<()> {
    if !root.exists() {
        return Ok(());
    }
    if !root.is_dir() {
        return Err(Error::invalid(
            "index path",
            format!(
                "{} exists and is not a directory; refusing to replace it",
                root.display()
            ),
        ));
    }
    let entries = fs::read_dir(root).map_err(|e| Error::io(root, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = [LOCK, CURRENT].contains(&name.as_str())
            || SHOP_DIRS.contains(&name.as_str())
            || BUILD_ENTRIES.contains(&name.as_str())
            || generation_number(&name).is_some()
            || is_staging_name(&name)
            || durable::is_temp_name(&name);
        if !ours {
            return Err(Error::invalid(
                "index path",
                format!(
                    "{} exists and is not a shelfrank index (it holds {name}); refusing to build into it",
                    root.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Prefix of a staging directory's name (`.staging-PID-N`); its claim file adds
/// [`CLAIM_SUFFIX`].
const STAGING_PREFIX: &str = ".staging-";
/// Suffix of the file a build holds locked while it writes its staging directory.
const CLAIM_SUFFIX: &str = ".lock";

/// Whether `path` still leads to the open file `file` (same device and inode).
#[cfg(unix)]
fn same_file(file: &fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Whether `path` still leads to the open file `file` (without inodes: that it exists).
#[cfg(not(unix))]
fn same_file(_file: &fs::File, path: &Path) -> bool {
    path.exists()
}

/// Whether `name` is a staging directory or its claim file.
fn is_staging_name(name: &str) -> bool {
    name.starts_with(STAGING_PREFIX)
}

/// Makes staging names unique among the builds of this process.
static STAGING_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A generation being written; published with [`publish`](Self::publish), removed
/// when dropped unpublished.
///
/// Writing takes no writer lock (a long build does not hold up event imports): the
/// staging directory is claimed by an exclusive lock on its own claim file, so a
/// later build can tell a crashed build's leftovers (unclaimed) from a running one.
#[derive(Debug)]
pub struct NewGeneration {
    root: PathBuf,
    staging: PathBuf,
    claim_path: PathBuf,
    _claim: HeldLock,
    published: bool,
}

impl NewGeneration {
    /// Starts a generation of the index in `root` (created if missing): an empty
    /// staging directory inside it.
    pub fn begin(root: &Path) -> Result<Self> {
        check_buildable(root)?;
        if !root.exists() {
            fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
            durable::sync_dir(&durable::parent_dir(root))?;
        }
        // Claim a staging name: create its claim file and lock it. A cleanup by another
        // build may see the file between the two steps, find it unlocked and delete it;
        // then the path no longer leads to the file we locked, and we take a new name.
        let (staging, claim_path, claim) = loop {
            let name = format!(
                "{STAGING_PREFIX}{}-{}",
                std::process::id(),
                STAGING_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let claim_path = root.join(format!("{name}{CLAIM_SUFFIX}"));
            let claim = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&claim_path)
                .map_err(|e| Error::io(&claim_path, e))?;
            crash_point("staging-claim-created");
            claim.lock().map_err(|e| Error::io(&claim_path, e))?;
            if same_file(&claim, &claim_path) {
                break (root.join(&name), claim_path, claim);
            }
        };
        if staging.exists() {
            // Left by a crashed process that had our PID; we hold its claim now.
            fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        }
        fs::create_dir(&staging).map_err(|e| Error::io(&staging, e))?;
        Ok(NewGeneration {
            root: root.to_path_buf(),
            staging,
            claim_path,
            _claim: HeldLock::new(claim),
            published: false,
        })
    }

    /// The staging directory to write the build's files into.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Makes the staging directory the index's live generation, under the writer
    /// lock: fsyncs it, renames it to the next generation's name, makes `CURRENT`
    /// name it (the commit point), then removes the generations no reader pins and
    /// the leftovers of crashed builds. Returns the new generation's directory.
    pub fn publish(mut self, lock: &WriterLock) -> Result<PathBuf> {
        let root = self.root.clone();
        if lock.index() != root {
            return Err(Error::invalid(
                "writer lock",
                format!(
                    "it guards {}, not {}",
                    lock.index().display(),
                    root.display()
                ),
            ));
        }
        durable::sync_tree(&self.staging)?;
        crash_point("publish-synced");
        let current = read_current(&root.join(CURRENT))?;
        let mut last = current.as_deref().and_then(generation_number).unwrap_or(0);
        for entry in fs::read_dir(&root)
            .map_err(|e| Error::io(&root, e))?
            .flatten()
        {
            if let Some(n) = generation_number(&entry.file_name().to_string_lossy()) {
                last = last.max(n);
            }
        }
        let name = generation_name(last + 1);
        let dest = root.join(&name);
        fs::rename(&self.staging, &dest).map_err(|e| Error::io(&dest, e))?;
        self.published = true;
        durable::sync_dir(&root)?;
        crash_point("publish-renamed");
        durable::atomic_write(&root.join(CURRENT), format!("{name}\n").as_bytes())?;
        crash_point("publish-current");
        let _ = fs::remove_file(&self.claim_path);
        collect_garbage(&root, &name);
        Ok(dest)
    }
}

impl Drop for NewGeneration {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_dir_all(&self.staging);
            let _ = fs::remove_file(&self.claim_path);
        }
    }
}

/// Removes every generation other than `live` that no reader pins, and the build
/// files of the layout before generations. Best effort: what cannot be removed now
/// (pinned, or an I/O error) is left for the next build.
fn collect_garbage(root: &Path, live: &str) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != live && generation_number(&name).is_some() {
            remove_generation(&entry.path(), None);
        } else if is_staging_name(&name) {
            let staging = name.strip_suffix(CLAIM_SUFFIX).unwrap_or(&name);
            remove_abandoned_staging(root, staging);
        }
    }
    // The build files of the layout before generations (also what a crash in the
    // middle of removing them left: the manifest goes first).
    if BUILD_ENTRIES.iter().any(|e| root.join(e).exists()) {
        remove_generation(root, Some(&BUILD_ENTRIES));
    }
}

/// Removes a staging directory whose build is gone (its claim file is unlocked or
/// missing), with its claim file.
fn remove_abandoned_staging(root: &Path, name: &str) {
    let claim_path = root.join(format!("{name}{CLAIM_SUFFIX}"));
    let claim = match fs::OpenOptions::new().write(true).open(&claim_path) {
        Ok(f) => match f.try_lock() {
            Ok(()) => Some(HeldLock::new(f)),
            Err(_) => return, // a build is writing it
        },
        Err(_) => None,
    };
    let _ = fs::remove_dir_all(root.join(name));
    let _ = fs::remove_file(&claim_path);
    drop(claim);
}

/// Removes a generation (or, with `only`, those entries of a directory) unless a
/// reader pins it: the manifest goes first, under the exclusive lock, so a reader
/// that pins it later sees it gone. A directory without a manifest is debris of an
/// earlier removal and goes without asking.
fn remove_generation(dir: &Path, only: Option<&[&str]>) {
    let manifest = dir.join(MANIFEST);
    let _claim = if manifest.exists() {
        match try_claim_generation(&manifest) {
            Some(claim) => {
                if fs::remove_file(&manifest).is_err() {
                    return;
                }
                crash_point("gc-manifest-removed");
                Some(claim)
            }
            None => return,
        }
    } else {
        None
    };
    match only {
        None => {
            let _ = fs::remove_dir_all(dir);
        }
        Some(names) => {
            for name in names {
                let path = dir.join(name);
                let _ = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::layout::EVENTS_DIR;
    use super::*;

    fn build(root: &Path, content: &[u8]) -> PathBuf {
        let generation = NewGeneration::begin(root).unwrap();
        fs::write(generation.path().join(MANIFEST), content).unwrap();
        let lock = WriterLock::acquire(root, false).unwrap();
        generation.publish(&lock).unwrap()
    }

    #[test]
    fn publish_moves_current_and_removes_unpinned_generations() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("idx");
        let first = build(&root, b"one");
        let (paths, pin) = open_current(&root).unwrap();
        assert_eq!(paths.data(), first);
        let second = build(&root, b"two");
        // The first is pinned: still there.
        assert!(first.join(MANIFEST).exists());
        drop(pin);
        let third = build(&root, b"three");
        assert!(!first.exists() && !second.exists());
        let (paths, _pin) = open_current(&root).unwrap();
        assert_eq!(paths.data(), third);
        assert_eq!(fs::read(paths.manifest()).unwrap(), b"three");
    }

    #[test]
    fn an_unpublished_generation_leaves_nothing_and_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("idx");
        let first = build(&root, b"one");
        {
            let g = NewGeneration::begin(&root).unwrap();
            fs::write(g.path().join(MANIFEST), b"half").unwrap();
        }
        let (paths, _pin) = open_current(&root).unwrap();
        assert_eq!(paths.data(), first);
        let names: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("staging"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn a_foreign_directory_or_a_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let docs = tmp.path().join("docs");
        fs::create_dir(&docs).unwrap();
        fs::write(docs.join("precious.txt"), b"keep").unwrap();
        let err = check_buildable(&docs).unwrap_err().to_string();
        assert!(err.contains("not a shelfrank index"), "{err}");
        let file = tmp.path().join("afile");
        fs::write(&file, b"keep").unwrap();
        let err = check_buildable(&file).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        assert_eq!(fs::read(&file).unwrap(), b"keep");
    }

    #[test]
    fn a_legacy_index_opens_and_the_next_build_converts_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("idx");
        fs::create_dir_all(root.join("events")).unwrap();
        fs::write(root.join(MANIFEST), b"legacy").unwrap();
        fs::write(root.join("products.bin"), b"p").unwrap();
        fs::write(root.join("events").join("log.bin"), b"precious").unwrap();
        let (paths, pin) = open_current(&root).unwrap();
        assert_eq!(paths.data(), root.as_path());
        drop(pin);
        let generation = build(&root, b"new");
        assert!(!root.join(MANIFEST).exists() && !root.join("products.bin").exists());
        assert_eq!(
            fs::read(root.join("events").join("log.bin")).unwrap(),
            b"precious"
        );
        assert_eq!(open_current(&root).unwrap().0.data(), generation);
    }

    #[test]
    fn every_bit_flip_in_current_is_an_error_or_the_same_generation() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("idx");
        build(&root, b"one");
        let live = build(&root, b"two");
        let original = fs::read(root.join(CURRENT)).unwrap();
        for at in 0..original.len() {
            for bit in 0..8 {
                let mut bytes = original.clone();
                bytes[at] ^= 1 << bit;
                fs::write(root.join(CURRENT), &bytes).unwrap();
                match open_current(&root) {
                    Ok((paths, _pin)) => assert_eq!(paths.data(), live, "byte {at} bit {bit}"),
                    Err(e) => assert!(e.to_string().contains("CURRENT"), "{e}"),
                }
            }
        }
    }

    #[test]
    fn a_damaged_current_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("idx");
        build(&root, b"one");
        fs::write(root.join(CURRENT), b"../../etc\n").unwrap();
        let err = open_current(&root).unwrap_err().to_string();
        assert!(
            err.contains("CURRENT") && err.contains("generation name"),
            "{err}"
        );
        fs::write(root.join(CURRENT), b"gen-000009\n").unwrap();
        let err = open_current(&root).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn an_index_reached_through_a_symlink_stays_a_symlink_with_its_events() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        fs::create_dir_all(real.join(EVENTS_DIR)).unwrap();
        fs::write(real.join(EVENTS_DIR).join("log.bin"), b"precious").unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        for content in [b"one".as_slice(), b"two"] {
            let generation = NewGeneration::begin(&link).unwrap();
            fs::write(generation.path().join(MANIFEST), content).unwrap();
            let lock = WriterLock::acquire(&link, false).unwrap();
            generation.publish(&lock).unwrap();
        }
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::read(real.join(EVENTS_DIR).join("log.bin")).unwrap(),
            b"precious"
        );
        let (paths, _pin) = open_current(&link).unwrap();
        assert_eq!(fs::read(paths.manifest()).unwrap(), b"two");
    }
}
