//! The memory-mapped embedding matrix (`vectors.f32`).

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use crate::error::{Error, Result};

/// A read-only, memory-mapped `rows x dim` matrix of little-endian `f32`.
#[derive(Debug)]
pub struct VectorFile {
    map: Mmap,
    rows: usize,
    dim: usize,
}

impl VectorFile {
    /// Maps `path` and checks that its size is exactly `rows * dim * 4` bytes.
    pub fn open(path: &Path, rows: usize, dim: usize) -> Result<Self> {
        if cfg!(target_endian = "big") {
            return Err(Error::corrupt(
                path,
                "vector files are little-endian and this platform is big-endian",
            ));
        }
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let expected = (rows as u64)
            .checked_mul(dim as u64)
            .and_then(|n| n.checked_mul(4));
        if expected != Some(len) {
            let expected = expected.map_or("more than 2^64".into(), |n| n.to_string());
            return Err(Error::corrupt(
                path,
                format!("{len} bytes, expected {rows} rows x {dim} dims x 4 = {expected}"),
            ));
        }
        // SAFETY: the file is opened read-only and the index directory is never
        // modified in place (builds publish a new directory), so the mapped bytes do
        // not change while mapped, unless another program edits the index files,
        // which the on-disk format documentation forbids.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        // Searches read scattered rows (rescoring, profiles): no read-ahead and no
        // fault-around, so a search maps the pages it reads and not their neighbours.
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Random);
        if !(map.as_ptr() as usize).is_multiple_of(std::mem::align_of::<f32>()) {
            return Err(Error::corrupt(path, "mapping is not 4-byte aligned"));
        }
        Ok(VectorFile { map, rows, dim })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The whole matrix as `f32`s.
    pub fn as_slice(&self) -> &[f32] {
        let bytes: &[u8] = &self.map;
        // SAFETY: the mapping is 4-byte aligned (checked in `open`, and mmap returns
        // page-aligned memory), its length is a multiple of 4, every bit pattern is a
        // valid f32, and the platform is little-endian (checked in `open`).
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), bytes.len() / 4) }
    }

    /// Row `i`, or `None` past the end.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        if i >= self.rows {
            return None;
        }
        self.as_slice().get(i * self.dim..(i + 1) * self.dim)
    }

    /// Writes `rows` (each `dim` long) as a little-endian matrix and fsyncs it.
    pub fn write(path: &Path, rows: &[Vec<f32>]) -> Result<()> {
        let mut bytes = Vec::with_capacity(rows.iter().map(|r| r.len() * 4).sum());
        for row in rows {
            for v in row {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
        Ok(super::durable::write_synced(path, &bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_size_check() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("v.f32");
        VectorFile::write(&p, &[vec![1.0, 2.0], vec![3.0, -4.5]]).unwrap();
        let v = VectorFile::open(&p, 2, 2).unwrap();
        assert_eq!(v.row(1).unwrap(), &[3.0, -4.5]);
        assert!(v.row(2).is_none());
        let err = VectorFile::open(&p, 3, 2).unwrap_err();
        assert!(matches!(err, Error::CorruptIndex { .. }), "{err}");
    }
}
