//! The index on disk: its layout ([`layout`]: every file and directory name), the
//! manifest and format version, durable writes and checksums (`durable.rs`: the one
//! module every writer uses), the writer lock and readers' pins ([`lock`]),
//! publication of a build as a new generation ([`generation`]), and the
//! memory-mapped vector file.
//!
//! Writes never touch a published generation: a build writes a new one beside it
//! and makes it live by replacing the small `CURRENT` file
//! ([`generation::NewGeneration::publish`]). This is the only module with `unsafe`
//! (the mmap).

pub(crate) mod durable;
pub mod generation;
pub mod layout;
pub mod lock;
mod manifest;
mod mmap;

pub use generation::{open_current, NewGeneration};
pub use layout::IndexPaths;
pub use lock::{GenerationPin, WriterLock};
pub use manifest::{FileEntry, HnswSettings, Manifest, ModelRecord, FORMAT_VERSION};
pub use mmap::VectorFile;

use std::fs;
use std::path::Path;

use crate::catalog::Product;
use crate::error::{Error, Result};

/// The on-disk form of a product in `products.bin`: every field always present
/// (bincode is not self-describing, so the JSON form's skipped fields cannot be
/// used), and decoupled from the public [`Product`] type so that the format only
/// changes with [`FORMAT_VERSION`].
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredProduct {
    id: String,
    title: String,
    description: Option<String>,
    category: Vec<String>,
    brand: Option<String>,
    price: Option<f64>,
    attributes: Vec<(String, String)>,
    popularity: Option<f64>,
}

/// Writes the products file.
pub fn write_products(path: &Path, products: &[Product]) -> Result<()> {
    let stored: Vec<StoredProduct> = products
        .iter()
        .map(|p| StoredProduct {
            id: p.id.clone(),
            title: p.title.clone(),
            description: p.description.clone(),
            category: p.category.clone(),
            brand: p.brand.clone(),
            price: p.price,
            attributes: p
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            popularity: p.popularity,
        })
        .collect();
    write_bincode(path, &stored)
}

/// Reads the products file written by [`write_products`].
pub fn read_products(path: &Path) -> Result<Vec<Product>> {
    let stored: Vec<StoredProduct> = read_bincode(path)?;
    Ok(stored
        .into_iter()
        .map(|s| Product {
            id: s.id,
            title: s.title,
            description: s.description,
            category: s.category,
            brand: s.brand,
            price: s.price,
            attributes: s.attributes.into_iter().collect(),
            popularity: s.popularity,
        })
        .collect())
}

/// Bincode configuration used for every bincode file of the index.
fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Serialises `value` with bincode into `path` (inside a staging directory) and fsyncs it.
pub fn write_bincode<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = bincode::serde::encode_to_vec(value, bincode_config())
        .map_err(|e| Error::invalid("metadata", format!("cannot serialise: {e}")))?;
    Ok(durable::write_synced(path, &bytes)?)
}

/// Reads a bincode file written by [`write_bincode`]; a short or malformed file is a
/// [`Error::CorruptIndex`].
pub fn read_bincode<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let (value, used) = bincode::serde::decode_from_slice(&bytes, bincode_config())
        .map_err(|e| Error::corrupt(path, format!("cannot decode: {e}")))?;
    if used != bytes.len() {
        return Err(Error::corrupt(
            path,
            format!("{} trailing bytes after the data", bytes.len() - used),
        ));
    }
    Ok(value)
}

/// Size and CRC-32 of a file, as recorded in the manifest.
pub fn checksum_file(path: &Path) -> Result<FileEntry> {
    let (bytes, crc32) = durable::checksum_file(path)?;
    Ok(FileEntry { bytes, crc32 })
}

/// Checks a file against its manifest entry: a missing, truncated or altered file
/// is a [`Error::CorruptIndex`] naming it.
pub fn verify_file(path: &Path, expected: &FileEntry) -> Result<()> {
    let meta =
        fs::metadata(path).map_err(|e| Error::corrupt(path, format!("cannot read it: {e}")))?;
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
    let actual = checksum_file(path)?;
    if actual.crc32 != expected.crc32 {
        return Err(Error::corrupt(
            path,
            format!(
                "CRC-32 is {:08x}, the manifest says {:08x}",
                actual.crc32, expected.crc32
            ),
        ));
    }
    Ok(())
}

/// Total size in bytes of the files below `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => total += dir_size(&entry.path()),
                Ok(_) => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_detects_truncation_and_bit_flips() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        fs::write(&p, b"hello world").unwrap();
        let entry = checksum_file(&p).unwrap();
        verify_file(&p, &entry).unwrap();
        fs::write(&p, b"hello worle").unwrap();
        let err = verify_file(&p, &entry).unwrap_err().to_string();
        assert!(err.contains("CRC-32"), "{err}");
        fs::write(&p, b"hello").unwrap();
        let err = verify_file(&p, &entry).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn bincode_round_trip_and_trailing_garbage() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("b");
        write_bincode(&p, &vec![1u32, 2, 3]).unwrap();
        let v: Vec<u32> = read_bincode(&p).unwrap();
        assert_eq!(v, vec![1, 2, 3]);
        let mut bytes = fs::read(&p).unwrap();
        bytes.push(7);
        fs::write(&p, bytes).unwrap();
        assert!(matches!(
            read_bincode::<Vec<u32>>(&p),
            Err(Error::CorruptIndex { .. })
        ));
    }
}
