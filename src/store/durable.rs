//! Durability: the one place that writes files so that they survive a crash, and
//! the checksums that tell a damaged file from a good one.
//!
//! Every writer of shelfrank (index builds, the manifest, the event store, the CTR
//! head, evaluation reports) goes through these functions:
//!
//! * [`write_synced`]: create or truncate, write, `fsync`. For files inside a
//!   directory that is published as a whole later (a staging directory).
//! * [`append_synced`] / [`truncate_synced`]: append to a log and `fsync`; cut a
//!   log back (a torn tail, a failed append) and `fsync`.
//! * [`atomic_write`] / [`atomic_write_with`]: a temporary file in the same
//!   directory ([`temp_path`]), `fsync`, rename over the target, `fsync` of the
//!   directory. Readers see the old or the new content, never a mix, and once the
//!   call returns the new content survives a power loss (POSIX rename semantics;
//!   the pattern of tantivy's `atomic_write` and of LevelDB's `CURRENT`).
//! * [`sync_dir`] / [`sync_tree`]: make creations and renames durable.
//! * [`make_public`]: the modes of a published index (files 0644, directories
//!   0755), so that another account can read it.
//! * [`crc32`] / [`checksum_file`]: CRC-32 (IEEE) of bytes or of a file, streamed.
//!   Every index file and every event-store record carries one.
//! * [`fnv1a64`]: FNV-1a, 64 bit (Fowler, Noll & Vo). Used where a stable,
//!   dependency-free hash of a key or a byte string is wanted: the CTR head's
//!   weights checksum and the deterministic train/validation and fold splits.
//!
//! Failures are an [`IoFailure`] naming the path and the step that failed; each
//! module converts it into its own error type.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A named step of a multi-file write where the crash tests stop the process
/// (`tests/crash.rs`). Built with the `failpoints` feature and run with
/// `FAILPOINTS=NAME=return`, the process aborts there, as `kill -9` would stop it:
/// no destructor runs, nothing is flushed. Without the feature it compiles to
/// nothing.
pub(crate) fn crash_point(name: &str) {
    let _ = name; // unused without the feature
    fail::fail_point!(name, |_| std::process::abort());
}

/// An I/O step that failed, with the path it concerned.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct IoFailure {
    /// The file or directory.
    pub path: PathBuf,
    /// What was being done: `"create"`, `"write"`, `"fsync"`, `"rename onto"` ...
    pub action: &'static str,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

/// `Result` of a durability step.
pub type IoResult<T> = std::result::Result<T, IoFailure>;

fn fail<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> IoFailure + 'a {
    move |source| IoFailure {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Marker inside the name of every temporary file [`temp_path`] makes.
const TEMP_MARKER: &str = ".tmp-";

/// Makes temporary names unique among the writes of this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh temporary path beside `target` (same directory, so the rename is
/// atomic): `.NAME.tmp-PID-N`. Hidden, and recognised by [`is_temp_name`]. The
/// name may still exist, left by a crashed process that had the same PID (common
/// in containers): [`atomic_write_with`] then takes the next one.
pub fn temp_path(target: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(target.file_name().unwrap_or_default());
    name.push(format!(
        "{TEMP_MARKER}{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    parent_dir(target).join(name)
}

/// How many temporary names [`atomic_write_with`] tries before giving up.
const TEMP_ATTEMPTS: usize = 64;

/// Creates a new temporary file beside `target`, skipping names that exist.
fn create_temp(target: &Path) -> IoResult<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..TEMP_ATTEMPTS {
        let tmp = temp_path(target);
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((tmp, e)),
            Err(e) => return Err(fail(&tmp, "create")(e)),
        }
    }
    let (tmp, e) = last.unwrap_or_else(|| {
        (
            temp_path(target),
            io::Error::other("no temporary name could be tried"),
        )
    });
    Err(fail(&tmp, "create")(e))
}

/// True for a file name made by [`temp_path`]: the leftover of a write that was
/// interrupted before its rename, never part of any published state.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARKER)
}

/// Removes the leftovers of interrupted atomic writes of `dir/NAME` for each of
/// `names` (best effort). Only a process that owns `dir` may call this: another
/// writer's temporary file may still be in flight.
pub fn remove_temp_files(dir: &Path, names: &[&str]) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let ours = names
            .iter()
            .any(|n| file.starts_with(&format!(".{n}{TEMP_MARKER}")));
        if ours && is_temp_name(&file) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates or truncates `path`, writes `bytes` and fsyncs the file.
pub fn write_synced(path: &Path, bytes: &[u8]) -> IoResult<()> {
    let mut f = File::create(path).map_err(fail(path, "create"))?;
    f.write_all(bytes).map_err(fail(path, "write"))?;
    f.sync_all().map_err(fail(path, "fsync"))
}

/// Appends `bytes` to `file` (opened for appending at `path`) and fsyncs its data:
/// the bytes are on disk when this returns `Ok`. The append-only logs' one write.
pub fn append_synced(file: &mut File, path: &Path, bytes: &[u8]) -> IoResult<()> {
    file.write_all(bytes).map_err(fail(path, "write"))?;
    file.sync_data().map_err(fail(path, "fsync"))
}

/// Cuts `file` (at `path`) to `len` bytes and fsyncs it: how a log drops a torn tail
/// or a failed append.
pub fn truncate_synced(file: &File, path: &Path, len: u64) -> IoResult<()> {
    file.set_len(len).map_err(fail(path, "cut"))?;
    file.sync_all().map_err(fail(path, "fsync"))
}

/// Replaces `path` with `bytes` atomically and durably (see the module docs).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> IoResult<()> {
    atomic_write_with(path, |w| w.write_all(bytes))
}

/// Like [`atomic_write`], with the content produced by `write` into a buffered
/// writer (for large outputs such as TREC run files).
pub fn atomic_write_with(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> IoResult<()> {
    replace_with(path, write)?;
    sync_dir(&parent_dir(path))
}

/// Replaces `path` with `bytes` through a synced temporary file and a rename, but
/// does not fsync the directory: for a caller that must know whether the rename
/// happened. On `Err` nothing was renamed and `path` is as it was; after `Ok` the
/// new content is in place, and durable once the directory is synced
/// ([`sync_dir`]).
pub fn replace(path: &Path, bytes: &[u8]) -> IoResult<()> {
    replace_with(path, |w| w.write_all(bytes))
}

/// [`replace`] with the content produced by `write`. On failure the temporary file
/// is removed and `path` is left as it was.
fn replace_with(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> IoResult<()> {
    if path.file_name().is_none() {
        return Err(IoFailure {
            path: path.to_path_buf(),
            action: "write",
            source: io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
        });
    }
    let (tmp, file) = create_temp(path)?;
    let result = (|| {
        let mut writer = BufWriter::new(file);
        write(&mut writer).map_err(fail(&tmp, "write"))?;
        let file = writer
            .into_inner()
            .map_err(|e| fail(&tmp, "write")(e.into_error()))?;
        file.sync_all().map_err(fail(&tmp, "fsync"))?;
        drop(file);
        fs::rename(&tmp, path).map_err(fail(path, "rename a new version onto"))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsyncs a directory so that creations and renames inside it are durable. A no-op
/// where the platform cannot open directories, and on file systems that do not
/// support syncing a directory (they answer EINVAL; some network and FUSE mounts).
pub fn sync_dir(dir: &Path) -> IoResult<()> {
    #[cfg(unix)]
    {
        let f = File::open(dir).map_err(fail(dir, "open the directory"))?;
        match f.sync_all() {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
                ) => {}
            Err(e) => return Err(fail(dir, "fsync the directory")(e)),
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Calls `on_file` for every regular file below `dir` and `on_dir` for every
/// directory, `dir` included, once its contents are done. Symbolic links and other
/// special files are skipped.
fn walk_tree(
    dir: &Path,
    on_file: &mut dyn FnMut(&Path) -> IoResult<()>,
    on_dir: &mut dyn FnMut(&Path) -> IoResult<()>,
) -> IoResult<()> {
    for entry in fs::read_dir(dir).map_err(fail(dir, "list"))? {
        let entry = entry.map_err(fail(dir, "list"))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(fail(&path, "stat"))?;
        if kind.is_dir() {
            walk_tree(&path, on_file, on_dir)?;
        } else if kind.is_file() {
            on_file(&path)?;
        }
    }
    on_dir(dir)
}

/// fsyncs every file below `dir`, then the directories themselves.
pub fn sync_tree(dir: &Path) -> IoResult<()> {
    walk_tree(
        dir,
        &mut |path| {
            let f = File::open(path).map_err(fail(path, "open"))?;
            f.sync_all().map_err(fail(path, "fsync"))
        },
        &mut |dir| sync_dir(dir),
    )
}

/// Mode of every file of a published index: readable by everyone, writable by the
/// owner (`rw-r--r--`), so an index built by one account can be served by another.
#[cfg(unix)]
pub const PUBLIC_FILE_MODE: u32 = 0o644;
/// Mode of every directory of a published index (`rwxr-xr-x`).
#[cfg(unix)]
pub const PUBLIC_DIR_MODE: u32 = 0o755;

/// Sets every file below `dir` to [`PUBLIC_FILE_MODE`] and every directory (`dir`
/// included) to [`PUBLIC_DIR_MODE`], whatever the umask or the temporary-file
/// mode they were created with. Symbolic links are left alone (their mode is not
/// their own). A no-op on platforms without Unix permissions.
pub fn make_public(dir: &Path) -> IoResult<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let set = |path: &Path, mode: u32| {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(fail(path, "set the permissions of"))
        };
        walk_tree(dir, &mut |file| set(file, PUBLIC_FILE_MODE), &mut |dir| {
            set(dir, PUBLIC_DIR_MODE)
        })
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// CRC-32 (IEEE) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Length and CRC-32 of a file, streamed in 1 MiB blocks.
pub fn checksum_file(path: &Path) -> IoResult<(u64, u32)> {
    let mut f = File::open(path).map_err(fail(path, "open"))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(fail(path, "read"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hasher.finalize()))
}

/// FNV-1a, 64 bit: offset basis 0xcbf29ce484222325, prime 0x100000001b3. Stable
/// across platforms and versions; detects truncation and mixed-up files, not
/// tampering. Its lowest bit equals that of the 32-bit variant (both offset bases
/// and primes are odd), so `fnv1a64(key) % 2` splits keys as FNV-1a 32 does.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_failed_writer_leaves_the_target_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        atomic_write(&p, b"keep").unwrap();
        let err = atomic_write_with(&p, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.action, "write");
        assert_eq!(fs::read(&p).unwrap(), b"keep");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn errors_name_the_path_and_step() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("no-such-dir").join("f");
        let err = atomic_write(&p, b"x").unwrap_err();
        assert_eq!(err.action, "create");
        assert!(err.to_string().contains("no-such-dir"), "{err}");
        let err = atomic_write(Path::new("/"), b"x").unwrap_err();
        assert!(err.to_string().contains("no file name"), "{err}");
    }

    #[test]
    fn a_leftover_temp_name_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("card.json");
        // Leftovers of a crashed process with this PID, under the next names.
        let next = TEMP_COUNTER.load(Ordering::Relaxed);
        for n in next..next + 3 {
            let name = format!(".card.json{TEMP_MARKER}{}-{n}", std::process::id());
            fs::write(tmp.path().join(name), b"stale").unwrap();
        }
        atomic_write(&target, b"fresh").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"fresh");
    }

    #[test]
    fn replace_renames_without_the_directory_sync() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("s.bin");
        replace(&p, b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert!(replace(&tmp.path().join("missing").join("x"), b"y").is_err());
    }

    #[test]
    fn temp_files_are_recognised_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("log.bin");
        let t = temp_path(&target);
        fs::write(&t, b"x").unwrap();
        fs::write(tmp.path().join("other.bin"), b"y").unwrap();
        assert!(is_temp_name(&t.file_name().unwrap().to_string_lossy()));
        assert!(!is_temp_name("log.bin"));
        remove_temp_files(tmp.path(), &["log.bin"]);
        assert!(!t.exists());
        assert!(tmp.path().join("other.bin").exists());
    }

    #[cfg(unix)]
    #[test]
    fn make_public_sets_file_and_directory_modes() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("idx");
        fs::create_dir_all(d.join("text")).unwrap();
        // An atomic write's temporary file is created 0600.
        atomic_write(&d.join("text").join("meta.json"), b"{}").unwrap();
        fs::write(d.join("products.bin"), b"x").unwrap();
        fs::set_permissions(d.join("text"), fs::Permissions::from_mode(0o700)).unwrap();
        make_public(&d).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&d), 0o755);
        assert_eq!(mode(&d.join("text")), 0o755);
        assert_eq!(mode(&d.join("text").join("meta.json")), 0o644);
        assert_eq!(mode(&d.join("products.bin")), 0o644);
    }

    #[test]
    fn checksums() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        fs::write(&p, b"hello world").unwrap();
        assert_eq!(checksum_file(&p).unwrap(), (11, crc32(b"hello world")));
        // Reference values of the published test vectors.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn fnv64_low_bit_matches_fnv32() {
        let fnv32 = |s: &str| {
            s.bytes().fold(2_166_136_261u32, |h, b| {
                (h ^ b as u32).wrapping_mul(16_777_619)
            })
        };
        for key in ["", "q1", "qid-10042", "ü", "40000"] {
            assert_eq!(
                fnv1a64(key.as_bytes()) % 2,
                u64::from(fnv32(key) % 2),
                "{key}"
            );
        }
    }
}
