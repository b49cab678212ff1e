//! The live catalog updates of an index: product upserts and deletes acknowledged
//! since the live generation was built, kept in `INDEX/updates/` until a merge folds
//! them into a new generation.
//!
//! Each acknowledged batch is one file, `updates/<seq, 20 digits>.upd`, written with
//! the one atomic write ([`durable::atomic_write`]: a synced temporary file renamed
//! into place, then the directory synced), so a batch is on disk whole or not at
//! all, and a crash at any step leaves no half batch to repair. Sequence numbers
//! grow by one per batch. A generation's manifest records the last sequence number
//! folded into it (`updates_through`); opening replays the batches after it, in
//! order. A merge deletes the batches it folded in once its generation is live.
//!
//! File layout: 8 magic bytes `SRUPD\0\0\0`, the format version (u32 LE), the CRC-32
//! of the payload (u32 LE), then the payload, one bincode value: the sequence number
//! and the operations, each an upsert (the product in the form of `products.bin`,
//! and its L2-normalised embedding) or a delete (the product id). The CRC is checked
//! before anything is decoded.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{bincode_config, decode_all, durable, StoredProduct};
use crate::catalog::Product;
use crate::error::{Error, Result};

/// Magic bytes at the start of an update file.
const MAGIC: [u8; 8] = *b"SRUPD\0\0\0";
/// The update file format this build reads and writes.
pub const UPDATES_FORMAT: u32 = 1;
/// Magic, version, CRC.
const HEADER_BYTES: usize = 16;
/// File name extension of an update batch.
const EXTENSION: &str = "upd";

/// One change to the catalog.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOp {
    /// Adds a product, or replaces the one with its id.
    Upsert {
        /// The product, checked by the catalog rules.
        product: Product,
        /// Its L2-normalised embedding, computed when the upsert was acknowledged.
        vector: Vec<f32>,
    },
    /// Removes the product with this id.
    Delete {
        /// The product id.
        id: String,
    },
}

/// One acknowledged batch of changes.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateBatch {
    /// Its sequence number (1, 2, ...).
    pub seq: u64,
    /// The changes, applied in order.
    pub ops: Vec<UpdateOp>,
}

#[derive(Serialize, Deserialize)]
enum StoredOp<'a> {
    Upsert {
        #[serde(borrow)]
        product: StoredProduct<'a>,
        vector: Vec<f32>,
    },
    Delete {
        id: &'a str,
    },
}

#[derive(Serialize, Deserialize)]
struct StoredBatch<'a> {
    seq: u64,
    #[serde(borrow)]
    ops: Vec<StoredOp<'a>>,
}

/// The file of batch `seq` in `dir`.
pub fn batch_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.{EXTENSION}"))
}

/// The sequence number a file name stands for, if it is an update batch's name.
fn seq_of(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(EXTENSION)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The sequence numbers of the batches in `dir`, ascending (none if `dir` is
/// missing).
pub fn list(dir: &Path) -> Result<Vec<u64>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Some(seq) = seq_of(&entry.file_name().to_string_lossy()) {
            out.push(seq);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Writes `batch` durably as its own file (creating `dir` if needed). The caller
/// holds the index's writer lock and picked a sequence number no file has.
pub fn write(dir: &Path, batch: &UpdateBatch) -> Result<()> {
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        durable::sync_dir(&durable::parent_dir(dir))?;
    }
    let stored = StoredBatch {
        seq: batch.seq,
        ops: batch
            .ops
            .iter()
            .map(|op| match op {
                UpdateOp::Upsert { product, vector } => StoredOp::Upsert {
                    product: StoredProduct::from(product),
                    vector: vector.clone(),
                },
                UpdateOp::Delete { id } => StoredOp::Delete { id },
            })
            .collect(),
    };
    let payload = bincode::serde::encode_to_vec(&stored, bincode_config())
        .map_err(|e| Error::invalid("products", format!("cannot serialise: {e}")))?;
    let mut bytes = Vec::with_capacity(HEADER_BYTES + payload.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&UPDATES_FORMAT.to_le_bytes());
    bytes.extend_from_slice(&durable::crc32(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    let path = batch_path(dir, batch.seq);
    durable::atomic_write(&path, &bytes)?;
    durable::crash_point("update-written");
    Ok(())
}

/// Reads batch `seq` from `dir`. A damaged file is an [`Error::CorruptIndex`]
/// naming it.
pub fn read(dir: &Path, seq: u64) -> Result<UpdateBatch> {
    let path = batch_path(dir, seq);
    let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
    if bytes.len() < HEADER_BYTES || bytes[..8] != MAGIC {
        return Err(Error::corrupt(&path, "not a shelfrank update file"));
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(8);
    if version != UPDATES_FORMAT {
        return Err(Error::corrupt(
            &path,
            format!("update format {version}, this build reads {UPDATES_FORMAT}"),
        ));
    }
    let payload = &bytes[HEADER_BYTES..];
    if durable::crc32(payload) != word(12) {
        return Err(Error::corrupt(
            &path,
            "checksum mismatch (the file is damaged)",
        ));
    }
    let stored: StoredBatch<'_> = decode_all(&path, payload)?;
    if stored.seq != seq {
        return Err(Error::corrupt(
            &path,
            format!("holds batch {}, its name says {seq}", stored.seq),
        ));
    }
    Ok(UpdateBatch {
        seq,
        ops: stored
            .ops
            .into_iter()
            .map(|op| match op {
                StoredOp::Upsert { product, vector } => UpdateOp::Upsert {
                    product: product.into_product(),
                    vector,
                },
                StoredOp::Delete { id } => UpdateOp::Delete { id: id.to_owned() },
            })
            .collect(),
    })
}

/// The batches in `dir` after sequence number `after`, in order.
pub fn read_after(dir: &Path, after: u64) -> Result<Vec<UpdateBatch>> {
    list(dir)?
        .into_iter()
        .filter(|&s| s > after)
        .map(|s| read(dir, s))
        .collect()
}

/// Deletes the batches up to and including `through` (folded into a generation)
/// and the temporary files of interrupted writes. Best effort: a file left behind
/// is ignored by every reader, since the live generation records `through`.
pub fn remove_through(dir: &Path, through: u64) -> Result<()> {
    for seq in list(dir)?.into_iter().filter(|&s| s <= through) {
        let path = batch_path(dir, seq);
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(Error::io(&path, e));
            }
        }
    }
    durable::sync_dir(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: &str) -> Product {
        Product {
            id: id.into(),
            title: format!("title {id}"),
            description: None,
            category: vec!["Tools".into()],
            brand: None,
            price: Some(3.5),
            attributes: Default::default(),
            popularity: None,
        }
    }

    #[test]
    fn batches_round_trip_in_order_and_are_removed_through_a_number() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("updates");
        assert!(list(&d).unwrap().is_empty());
        for seq in 1..=3 {
            let batch = UpdateBatch {
                seq,
                ops: vec![
                    UpdateOp::Upsert {
                        product: product(&format!("p{seq}")),
                        vector: vec![0.5, -0.5],
                    },
                    UpdateOp::Delete { id: "old".into() },
                ],
            };
            write(&d, &batch).unwrap();
            assert_eq!(read(&d, seq).unwrap(), batch);
        }
        assert_eq!(list(&d).unwrap(), vec![1, 2, 3]);
        let after: Vec<u64> = read_after(&d, 1).unwrap().iter().map(|b| b.seq).collect();
        assert_eq!(after, vec![2, 3]);
        remove_through(&d, 2).unwrap();
        assert_eq!(list(&d).unwrap(), vec![3]);
    }

    #[test]
    fn every_flipped_byte_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let batch = UpdateBatch {
            seq: 7,
            ops: vec![UpdateOp::Upsert {
                product: product("a"),
                vector: vec![1.0; 4],
            }],
        };
        write(dir.path(), &batch).unwrap();
        let path = batch_path(dir.path(), 7);
        let good = fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x5a;
            fs::write(&path, &bad).unwrap();
            let err = read(dir.path(), 7).unwrap_err().to_string();
            assert!(err.contains(&path.display().to_string()), "byte {i}: {err}");
        }
        for len in 0..good.len() {
            fs::write(&path, &good[..len]).unwrap();
            assert!(read(dir.path(), 7).is_err(), "cut at {len}");
        }
    }

    #[test]
    fn only_batch_names_are_listed() {
        assert_eq!(seq_of("00000000000000000042.upd"), Some(42));
        assert_eq!(seq_of("42.upd"), None);
        assert_eq!(seq_of("00000000000000000042.upd.tmp"), None);
        assert_eq!(seq_of("0000000000000000004x.upd"), None);
    }
}
