//! Which files an index needs, and the checks that they are the ones the build
//! wrote.
//!
//! Everything here works on "the data directory": the directory that holds
//! `manifest.json` and the files it lists (`products.bin`, `vectors.f32`, `hnsw/`,
//! `text/`). The shop's own data (`events/`, `rank/`) is not part of it: it changes
//! after the build and has its own checks.
//!
//! * [`checksum_tree`]: the build's record of every file of the data directory
//!   (size + CRC-32), the text index included, for `Manifest::files`.
//! * [`check_keys`] / [`check_coverage`]: a manifest's `files` keys stay inside the
//!   data directory and cover every file the index needs.
//! * [`check_files`]: at open, every listed file is a regular file (no symlink)
//!   inside the data directory with the recorded size (and CRC-32 unless turned
//!   off), and `hnsw/` and `text/` hold no file the manifest does not list.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use super::layout::{self, MANIFEST, SHOP_DIRS};
use super::manifest::{FileEntry, Manifest};
use crate::error::{Error, Result};

/// Sub-directories of the data directory whose every file is read by the index
/// (tantivy reads the segment files `text/meta.json` names, hnsw_rs the two dump
/// files): a file there that the manifest does not list is refused, since it was
/// not written by the build.
const FULLY_LISTED_DIRS: [&str; 2] = [layout::HNSW_DIR, layout::TEXT_DIR];

/// The files every index has, relative to the data directory. The tantivy segment
/// files have build-dependent names; they are covered by [`FULLY_LISTED_DIRS`].
pub fn required_files() -> [String; 5] {
    let hnsw = |ext: &str| format!("{}/{}.hnsw.{ext}", layout::HNSW_DIR, layout::HNSW_BASENAME);
    [
        layout::PRODUCTS.to_string(),
        layout::VECTORS.to_string(),
        hnsw("graph"),
        hnsw("data"),
        format!("{}/meta.json", layout::TEXT_DIR),
    ]
}

/// Size and CRC-32 of every regular file below `dir` except `dir/manifest.json`
/// (and, at the top level, the preserved `events/` and `rank/`), keyed by its path
/// relative to `dir` with `/` separators. A symbolic link or any other special
/// file is an error: the build writes none.
pub fn checksum_tree(dir: &Path) -> Result<BTreeMap<String, FileEntry>> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut |rel, path| {
        out.insert(rel.to_string(), super::checksum_file(path)?);
        Ok(())
    })?;
    Ok(out)
}

/// Calls `f(relative, path)` for each regular file below `dir` (see
/// [`checksum_tree`] for what is left out), in sorted order.
fn walk(root: &Path, dir: &Path, f: &mut dyn FnMut(&str, &Path) -> Result<()>) -> Result<()> {
    let mut entries = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = relative(root, &path)?;
        if dir == root && (rel == MANIFEST || SHOP_DIRS.contains(&rel.as_str())) {
            continue;
        }
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if kind.is_dir() {
            walk(root, &path, f)?;
        } else if kind.is_file() {
            f(&rel, &path)?;
        } else {
            return Err(Error::corrupt(
                &path,
                "is a symbolic link or special file; an index holds regular files only",
            ));
        }
    }
    Ok(())
}

/// `path` relative to `root`, as a manifest key (`/`-separated, UTF-8).
fn relative(root: &Path, path: &Path) -> Result<String> {
    let rel = path
        .strip_prefix(root)
        .map_err(|_| Error::corrupt(path, "is outside the index directory"))?;
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(
                s.to_str()
                    .ok_or_else(|| Error::corrupt(path, "the file name is not UTF-8"))?,
            ),
            _ => return Err(Error::corrupt(path, "unexpected path component")),
        }
    }
    Ok(parts.join("/"))
}

/// Checks that every key of `files` is a plain relative path inside the data
/// directory: not empty, not absolute, no `.` or `..` component, no backslash, no
/// NUL. `manifest` is the manifest's path, for the error.
pub fn check_keys(manifest: &Path, files: &BTreeMap<String, FileEntry>) -> Result<()> {
    for key in files.keys() {
        let bad = |why: &str| {
            Error::corrupt(
                manifest,
                format!(
                    "field files: key {key:?} {why}; keys are paths inside the index directory"
                ),
            )
        };
        if key.is_empty() {
            return Err(bad("is empty"));
        }
        if key.starts_with('/') || Path::new(key).is_absolute() {
            return Err(bad("is an absolute path"));
        }
        if key.contains('\\') || key.contains('\0') {
            return Err(bad("contains a backslash or NUL"));
        }
        if key == MANIFEST {
            return Err(bad("names the manifest itself"));
        }
        for part in key.split('/') {
            if part.is_empty() || part == "." || part == ".." {
                return Err(bad("has an empty, '.' or '..' component"));
            }
        }
        let top = key.split('/').next().unwrap_or_default();
        if SHOP_DIRS.contains(&top) {
            return Err(bad(
                "is inside the shop's own data, which the build does not write",
            ));
        }
    }
    Ok(())
}

/// Checks that `files` lists every file the index needs ([`required_files`]).
pub fn check_coverage(manifest: &Path, files: &BTreeMap<String, FileEntry>) -> Result<()> {
    if files.is_empty() {
        return Err(Error::corrupt(
            manifest,
            "field files is empty: it must list the size and CRC-32 of every file of the index (an index built before shelfrank recorded them must be rebuilt)",
        ));
    }
    for required in required_files() {
        if !files.contains_key(&required) {
            return Err(Error::corrupt(
                manifest,
                format!("field files does not list {required}, which every index has"),
            ));
        }
    }
    Ok(())
}

/// Checks the files of the index in `dir` against `manifest`: each listed file is a
/// regular file inside `dir` (no symbolic link on the way; after resolving, still
/// below `dir`) with the recorded size, and with the recorded CRC-32 when `crc` is
/// true; and `hnsw/` and `text/` hold no file the manifest does not list (nor a
/// symbolic link). Reads nothing but metadata when `crc` is false.
pub fn check_files(dir: &Path, manifest: &Manifest, crc: bool) -> Result<()> {
    let manifest_path = dir.join(MANIFEST);
    check_keys(&manifest_path, &manifest.files)?;
    check_coverage(&manifest_path, &manifest.files)?;
    let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    for (rel, entry) in &manifest.files {
        let path = dir.join(rel);
        check_no_links(dir, rel)?;
        let real = path
            .canonicalize()
            .map_err(|e| Error::corrupt(&path, format!("cannot read it: {e}")))?;
        if !real.starts_with(&root) {
            return Err(Error::corrupt(
                &path,
                "resolves outside the index directory",
            ));
        }
        if crc {
            super::verify_file(&path, entry)?;
        } else {
            check_size(&path, entry)?;
        }
    }
    for sub in FULLY_LISTED_DIRS {
        let sub_dir = dir.join(sub);
        if !sub_dir.is_dir() {
            continue; // its required files are reported missing above
        }
        walk(dir, &sub_dir, &mut |rel, path| {
            if manifest.files.contains_key(rel) {
                Ok(())
            } else {
                Err(Error::corrupt(
                    path,
                    "is not listed in manifest.json; the build did not write it",
                ))
            }
        })?;
    }
    Ok(())
}

/// Refuses a symbolic link at any component of `rel` below `dir`.
fn check_no_links(dir: &Path, rel: &str) -> Result<()> {
    let mut path = PathBuf::from(dir);
    for part in rel.split('/') {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Error::corrupt(
                    &path,
                    "is a symbolic link; an index holds regular files only",
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(Error::corrupt(&path, format!("cannot read it: {e}"))),
        }
    }
    Ok(())
}

/// The size check of [`super::verify_file`] alone: a regular file of the recorded
/// length.
pub(super) fn check_size(path: &Path, expected: &FileEntry) -> Result<()> {
    let meta =
        fs::metadata(path).map_err(|e| Error::corrupt(path, format!("cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(Error::corrupt(path, "is not a regular file"));
    }
    if meta.len() != expected.bytes {
        return Err(Error::corrupt(
            path,
            format!(
                "size is {} bytes, the manifest says {} (truncated or replaced)",
                meta.len(),
                expected.bytes
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> FileEntry {
        FileEntry { bytes: 1, crc32: 0 }
    }

    #[test]
    fn keys_must_stay_inside_the_directory() {
        let m = Path::new("idx/manifest.json");
        for key in [
            "../../../../etc/passwd",
            "/etc/passwd",
            "text/../../x",
            "./products.bin",
            "text//meta.json",
            "",
            "a\\..\\b",
            "manifest.json",
            "events/log.bin",
        ] {
            let files = BTreeMap::from([(key.to_string(), entry())]);
            let err = check_keys(m, &files).unwrap_err();
            assert!(matches!(err, Error::CorruptIndex { .. }), "{key}: {err}");
            assert!(err.to_string().contains("manifest.json"), "{key}: {err}");
        }
        let files = BTreeMap::from([("text/meta.json".to_string(), entry())]);
        check_keys(m, &files).unwrap();
    }

    #[test]
    fn coverage_names_the_missing_file() {
        let m = Path::new("idx/manifest.json");
        let err = check_coverage(m, &BTreeMap::new()).unwrap_err().to_string();
        assert!(err.contains("files is empty"), "{err}");
        let mut files: BTreeMap<String, FileEntry> =
            required_files().into_iter().map(|k| (k, entry())).collect();
        check_coverage(m, &files).unwrap();
        files.remove("text/meta.json");
        let err = check_coverage(m, &files).unwrap_err().to_string();
        assert!(err.contains("text/meta.json"), "{err}");
    }

    #[test]
    fn checksum_tree_lists_nested_files_but_not_the_manifest_or_shop_data() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        fs::create_dir_all(d.join("text/sub")).unwrap();
        fs::create_dir_all(d.join("events")).unwrap();
        fs::write(d.join("products.bin"), b"abc").unwrap();
        fs::write(d.join("text/sub/x"), b"hello").unwrap();
        fs::write(d.join(MANIFEST), b"{}").unwrap();
        fs::write(d.join("events/log.bin"), b"e").unwrap();
        let files = checksum_tree(d).unwrap();
        let keys: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(keys, ["products.bin", "text/sub/x"]);
        assert_eq!(files["text/sub/x"].bytes, 5);
        assert_eq!(
            files["text/sub/x"].crc32,
            crate::store::durable::crc32(b"hello")
        );
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("idx");
        fs::create_dir_all(d.join("text")).unwrap();
        fs::write(tmp.path().join("outside"), b"x").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside"), d.join("text/meta.json")).unwrap();
        let err = checksum_tree(&d).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        let err = check_no_links(&d, "text/meta.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("symbolic link"), "{err}");
    }
}
