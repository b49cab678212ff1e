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
pub mod updates;
pub mod verify;

pub use generation::{open_current, NewGeneration};
pub use layout::IndexPaths;
pub use lock::{GenerationPin, WriterLock};
pub use manifest::{
    FileEntry, HnswSettings, Manifest, ModelRecord, FORMAT_VERSION, MAX_DIM, MAX_FILE_BYTES,
    MAX_PRODUCTS, MAX_TOKENS, MIN_PRODUCT_BYTES,
};
pub use mmap::VectorFile;

use std::fs;
use std::path::Path;

use crate::catalog::Product;
use crate::error::{Error, Result};

/// The on-disk form of a product in `products.bin`: every field always present
/// (bincode is not self-describing, so the JSON form's skipped fields cannot be
/// used), and decoupled from the public [`Product`] type so that the format only
/// changes with [`FORMAT_VERSION`].
///
/// The strings borrow from the file's bytes when reading: bincode then checks each
/// string's length against the bytes that are left before taking it, where an
/// owned `String` would first allocate whatever length a damaged file claims.
/// (bincode encodes `&str` and `String` alike, so the format is the same.)
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredProduct<'a> {
    id: &'a str,
    title: &'a str,
    #[serde(borrow)]
    description: Option<&'a str>,
    #[serde(borrow)]
    category: Vec<&'a str>,
    #[serde(borrow)]
    brand: Option<&'a str>,
    price: Option<f64>,
    #[serde(borrow)]
    attributes: Vec<(&'a str, &'a str)>,
    popularity: Option<f64>,
}

/// Writes the products file.
pub fn write_products(path: &Path, products: &[Product]) -> Result<()> {
    let stored: Vec<StoredProduct<'_>> = products.iter().map(StoredProduct::from).collect();
    write_bincode(path, &stored)
}

/// Reads the products file written by [`write_products`]. A damaged file is a
/// [`Error::CorruptIndex`]; no length read from it is allocated before the bytes
/// it claims have been found in the file.
pub fn read_products(path: &Path) -> Result<Vec<Product>> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let stored: Vec<StoredProduct<'_>> = decode_all(path, &bytes)?;
    Ok(stored
        .into_iter()
        .map(StoredProduct::into_product)
        .collect())
}

impl<'a> From<&'a Product> for StoredProduct<'a> {
    fn from(p: &'a Product) -> Self {
        StoredProduct {
            id: &p.id,
            title: &p.title,
            description: p.description.as_deref(),
            category: p.category.iter().map(String::as_str).collect(),
            brand: p.brand.as_deref(),
            price: p.price,
            attributes: p
                .attributes
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            popularity: p.popularity,
        }
    }
}

impl StoredProduct<'_> {
    fn into_product(self) -> Product {
        Product {
            id: self.id.to_owned(),
            title: self.title.to_owned(),
            description: self.description.map(str::to_owned),
            category: self.category.into_iter().map(str::to_owned).collect(),
            brand: self.brand.map(str::to_owned),
            price: self.price,
            attributes: self
                .attributes
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            popularity: self.popularity,
        }
    }
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
    decode_all(path, &bytes)
}

/// Decodes `bytes` (the content of `path`) as one bincode value, refusing
/// trailing bytes.
fn decode_all<'a, T: serde::Deserialize<'a>>(path: &Path, bytes: &'a [u8]) -> Result<T> {
    let (value, used) = bincode::serde::borrow_decode_from_slice(bytes, bincode_config())
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
    verify::check_size(path, expected)?;
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
    fn products_round_trip_and_a_huge_claimed_length_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("products.bin");
        let mut a = Product::new("p1", "Drill");
        a.category = vec!["Tools".into(), "Power".into()];
        a.attributes.insert("color".into(), "red".into());
        a.price = Some(9.5);
        let b = Product::new("p2", "");
        write_products(&p, &[a.clone(), b.clone()]).unwrap();
        let back = read_products(&p).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(
            (back[0].id.as_str(), back[0].title.as_str()),
            ("p1", "Drill")
        );
        assert_eq!(back[0].category, a.category);
        assert_eq!(back[0].attributes, a.attributes);
        assert_eq!(back[0].price, Some(9.5));
        assert_eq!(back[1].title, "");
        // One product whose id claims 2^60 bytes (bincode varint: 0xFD + u64).
        let mut bytes = vec![1u8, 0xFD];
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        bytes.extend_from_slice(b"p1");
        fs::write(&p, &bytes).unwrap();
        let err = read_products(&p).unwrap_err();
        assert!(matches!(err, Error::CorruptIndex { .. }), "{err}");
        assert!(err.to_string().contains("products.bin"), "{err}");
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
