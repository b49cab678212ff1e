//! The manifest: what an index directory holds and how it was built.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// On-disk format version written by this build. Bump it on any incompatible
/// change of the files listed in the module docs; [`Manifest::read`] refuses newer
/// versions with a clear error.
pub const FORMAT_VERSION: u32 = 1;

/// Size and checksum of one file of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Length in bytes.
    pub bytes: u64,
    /// CRC-32 (IEEE) of the content.
    pub crc32: u32,
}

/// The encoder an index was built with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Model name (the directory name, or `_name_or_path` of its config).
    pub name: String,
    /// The model directory used at build time (absolute), the default for opening.
    pub path: String,
    /// Embedding dimension.
    pub dim: usize,
    /// Pooling (`mean` or `cls`).
    pub pooling: String,
    /// Maximum number of tokens per text.
    pub max_tokens: usize,
    /// SHA-256 of `model.safetensors`, hex.
    pub sha256: String,
}

/// HNSW parameters, saved so that a reopened index searches as it was tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswSettings {
    /// Maximum number of links per node and layer (M).
    pub m: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Default candidate list size while searching.
    pub ef_search: usize,
}

/// The content of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// On-disk format version ([`FORMAT_VERSION`] when written by this build).
    pub format_version: u32,
    /// Version of shelfrank that wrote the index.
    pub shelfrank_version: String,
    /// Seconds since the Unix epoch at build time.
    pub created_unix: u64,
    /// Number of products.
    pub products: usize,
    /// The catalog file the index was built from, as given.
    pub source: String,
    /// The encoder.
    pub model: ModelRecord,
    /// HNSW settings.
    pub hnsw: HnswSettings,
    /// Size and CRC-32 of every file outside `text/` (tantivy checks its own),
    /// keyed by path relative to the index directory.
    pub files: BTreeMap<String, FileEntry>,
}

impl Manifest {
    /// Reads and checks `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = super::IndexPaths::new(dir).manifest();
        if !path.exists() {
            return Err(Error::IndexNotFound {
                path: dir.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        // Read the version first so that a newer format gets its own message even
        // when its other fields changed.
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let version: Version = serde_json::from_str(&text)
            .map_err(|e| Error::corrupt(&path, format!("not a valid manifest: {e}")))?;
        if version.format_version != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                path: dir.to_path_buf(),
                found: version.format_version,
                supported: FORMAT_VERSION,
            });
        }
        serde_json::from_str(&text)
            .map_err(|e| Error::corrupt(&path, format!("not a valid manifest: {e}")))
    }

    /// Writes `dir/manifest.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid("manifest", e.to_string()))?;
        Ok(super::durable::atomic_write(
            &dir.join(super::layout::MANIFEST),
            text.as_bytes(),
        )?)
    }
}
