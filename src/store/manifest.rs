//! The manifest: what an index directory holds and how it was built.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::layout::{PRODUCTS, VECTORS};
use crate::encoder::Precision;
use crate::error::{Error, Result};
use crate::vector::{Int8Scale, Quantization};

/// On-disk format version written by this build. Bump it on any incompatible
/// change of the files listed in the module docs; [`Manifest::read`] refuses newer
/// versions with a clear error.
///
/// Version 2 (with generations): `files` covers every file of the generation,
/// the keyword index's included, and the values are bounded. Version 1 indexes must
/// be rebuilt (a build over one keeps its events and head).
///
/// Version 3: the HNSW graph may hold int8-quantised vectors
/// (`hnsw.quantization`, `hnsw.int8_step`). A build writes the lowest version that
/// describes its index ([`Manifest::version_for`]): 2 for a float32 graph, so
/// that older shelfrank releases still open it, 3 for an int8 one, which they
/// refuse with a clear message instead of misreading the graph.
pub const FORMAT_VERSION: u32 = 3;

/// The oldest format [`Manifest::read`] accepts.
pub const OLDEST_FORMAT_VERSION: u32 = 2;

/// Largest embedding dimension accepted: 16,384. The widest text embedders in use
/// produce 4,096 (e5-mistral) to 8,192 dimensions; this leaves a factor of two, and
/// bounds one vector at 64 KiB.
pub const MAX_DIM: usize = 16_384;

/// Largest product count accepted: product ordinals are `u32` throughout (hits,
/// filters, tantivy's document ids), so 2^32 - 1.
pub const MAX_PRODUCTS: usize = u32::MAX as usize;

/// Largest `max_tokens` accepted: 8,192, the longest context of BERT-style
/// encoders (nomic-embed, jina-embeddings-v2); the usual BERT has 512 positions.
pub const MAX_TOKENS: usize = 8_192;

/// Largest size of one listed file: 1 TiB. The biggest file of an index is
/// `vectors.f32`, and [`MAX_PRODUCTS`] x 384 dims would exceed this; a catalog
/// that large needs a sharded index anyway.
pub const MAX_FILE_BYTES: u64 = 1 << 40;

/// The fewest bytes one product takes in `products.bin`: one byte for each of
/// its eight fields (an empty string or list is its one-byte length, an absent
/// option its one-byte tag). So `products x 8 <= size of products.bin`.
pub const MIN_PRODUCT_BYTES: u64 = 8;

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
    /// The format the encoder ran in when it computed the stored vectors (`f32`,
    /// `f16`, `bf16`; absent in manifests written before the option: `f32`). Queries
    /// may be encoded in another: it is the same model. Products added by live
    /// updates carry the serving engine's vectors, which a merge keeps.
    #[serde(default)]
    pub precision: Precision,
}

/// HNSW parameters, saved so that a reopened index searches as it was tuned.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HnswSettings {
    /// Maximum number of links per node and layer (M).
    pub m: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Default candidate list size while searching.
    pub ef_search: usize,
    /// How the graph stores its vectors (`f32`, or `int8`; absent before format
    /// version 3: `f32`).
    #[serde(default = "Quantization::when_absent")]
    pub quantization: Quantization,
    /// The int8 scale's step (the value of one integer unit): present exactly
    /// when `quantization` is `int8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8_step: Option<f32>,
    /// `ef_search` was picked from the graph's size (no value was asked for), so a
    /// rebuild (a live-update merge) picks it again for its own size instead of
    /// keeping this one. Absent: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ef_search_auto: bool,
}

impl HnswSettings {
    /// The settings recorded for a graph built with `params` (as resolved for its
    /// size, and `scale` for an int8 graph); `ef_search_auto` says whether the
    /// builder asked for [`EF_SEARCH_AUTO`](crate::vector::EF_SEARCH_AUTO).
    pub fn new(
        params: crate::vector::HnswParams,
        scale: Option<Int8Scale>,
        ef_search_auto: bool,
    ) -> Self {
        HnswSettings {
            m: params.m,
            ef_construction: params.ef_construction,
            ef_search: params.ef_search,
            quantization: params.quantization,
            int8_step: scale.map(|s| s.step()),
            ef_search_auto,
        }
    }

    /// The parameters to build this index again with: as [`params`](Self::params),
    /// except that an `ef_search` picked from the size is asked for again
    /// ([`EF_SEARCH_AUTO`](crate::vector::EF_SEARCH_AUTO)), so a graph that grew
    /// gets the value for its new size.
    pub fn rebuild_params(&self) -> crate::vector::HnswParams {
        crate::vector::HnswParams {
            ef_search: if self.ef_search_auto {
                crate::vector::EF_SEARCH_AUTO
            } else {
                self.ef_search
            },
            ..self.params()
        }
    }

    /// The build and search parameters (with the `ef_search` in use).
    pub fn params(&self) -> crate::vector::HnswParams {
        crate::vector::HnswParams {
            m: self.m,
            ef_construction: self.ef_construction,
            ef_search: self.ef_search,
            quantization: self.quantization,
        }
    }

    /// The int8 scale, when the graph is int8 and its step valid.
    pub fn int8_scale(&self) -> Option<Int8Scale> {
        self.int8_step.and_then(|s| Int8Scale::from_step(s).ok())
    }
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
    /// Size and CRC-32 of every file of the index (the keyword index's included),
    /// keyed by path relative to the directory holding `manifest.json`, `/`
    /// separated. Opening refuses a manifest that leaves out a file the index needs.
    pub files: BTreeMap<String, FileEntry>,
    /// The last live catalog update (`INDEX/updates/`, see
    /// [`crate::store::updates`]) folded into this generation; opening applies the
    /// later ones on top. 0 (and absent in manifests written before live updates):
    /// none.
    #[serde(default)]
    pub updates_through: u64,
}

impl Manifest {
    /// Reads and checks `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        Self::read_versions(dir, OLDEST_FORMAT_VERSION..=FORMAT_VERSION, true)
    }

    /// The format version a manifest with these HNSW settings is written with: the
    /// lowest that can describe it (see [`FORMAT_VERSION`]).
    pub fn version_for(hnsw: &HnswSettings) -> u32 {
        match hnsw.quantization {
            Quantization::F32 => 2,
            Quantization::Int8 => 3,
        }
    }

    /// Reads `dir/manifest.json` of this format or an older one, for a rebuild that
    /// reuses the embeddings of unchanged products: only the model record and the
    /// entries of `products.bin` and `vectors.f32` are used, and the caller verifies
    /// those two files against them (sizes and CRC-32) before reading them.
    pub(crate) fn read_for_reuse(dir: &Path) -> Result<Self> {
        Self::read_versions(dir, 1..=FORMAT_VERSION, false)
    }

    fn read_versions(
        dir: &Path,
        versions: std::ops::RangeInclusive<u32>,
        check: bool,
    ) -> Result<Self> {
        let path = super::IndexPaths::new(dir).manifest();
        if !path.exists() {
            return Err(Error::IndexNotFound {
                path: dir.to_path_buf(),
            });
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| Error::corrupt(&path, format!("not a valid manifest: {e}")))?;
        // Read the version first so that a newer format gets its own message even
        // when its other fields changed.
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let version: Version = serde_json::from_str(&text)
            .map_err(|e| Error::corrupt(&path, format!("not a valid manifest: {e}")))?;
        if !versions.contains(&version.format_version) {
            return Err(Error::UnsupportedFormat {
                path: dir.to_path_buf(),
                found: version.format_version,
                supported: FORMAT_VERSION,
            });
        }
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| Error::corrupt(&path, format!("not a valid manifest: {e}")))?;
        if check {
            manifest.check(&path)?;
        }
        Ok(manifest)
    }

    /// Checks every number against its bound and the file entries against each
    /// other, so that nothing is allocated from an absurd value: dim, product
    /// count, max_tokens, the HNSW parameters (the ranges of
    /// [`HnswParams::problem`](crate::vector::HnswParams::problem)), file sizes,
    /// `vectors.f32` = products x dim x 4 bytes, `products.bin` at least
    /// [`MIN_PRODUCT_BYTES`] per product; and the `files` keys (inside the
    /// directory, covering every required file). `path` is the manifest's path,
    /// named by every error together with the field.
    pub fn check(&self, path: &Path) -> Result<()> {
        let bad =
            |field: &str, reason: String| Error::corrupt(path, format!("field {field}: {reason}"));
        let range = |field: &str, v: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(bad(field, format!("{v} is outside {lo}..={hi}")))
            }
        };
        range("model.dim", self.model.dim, 1, MAX_DIM)?;
        range("model.max_tokens", self.model.max_tokens, 1, MAX_TOKENS)?;
        range("products", self.products, 0, MAX_PRODUCTS)?;
        if let Some((field, reason)) = self.hnsw.params().problem() {
            return Err(bad(&format!("hnsw.{field}"), reason));
        }
        match (self.hnsw.quantization, self.hnsw.int8_step) {
            (Quantization::F32, None) => {}
            (Quantization::F32, Some(_)) => {
                return Err(bad(
                    "hnsw.int8_step",
                    "present, but hnsw.quantization is f32".into(),
                ))
            }
            (Quantization::Int8, step) => {
                if step.and_then(|s| Int8Scale::from_step(s).ok()).is_none() {
                    return Err(bad(
                        "hnsw.int8_step",
                        format!("{step:?}: an int8 graph needs a finite positive step"),
                    ));
                }
                if self.format_version < 3 {
                    return Err(bad(
                        "hnsw.quantization",
                        format!(
                            "int8 needs format version 3, the manifest says {}",
                            self.format_version
                        ),
                    ));
                }
            }
        }
        super::verify::check_keys(path, &self.files)?;
        super::verify::check_coverage(path, &self.files)?;
        for (key, entry) in &self.files {
            if entry.bytes > MAX_FILE_BYTES {
                return Err(bad(
                    &format!("files.{key:?}.bytes"),
                    format!("{} is above the limit of {MAX_FILE_BYTES}", entry.bytes),
                ));
            }
        }
        let size = |key: &str| self.files.get(key).map_or(0, |e| e.bytes);
        let vectors = (self.products as u64).saturating_mul(self.model.dim as u64 * 4);
        if size(VECTORS) != vectors {
            return Err(bad(
                &format!("files.{VECTORS:?}.bytes"),
                format!(
                    "{} bytes, but {} products x {} dims x 4 = {vectors}",
                    size(VECTORS),
                    self.products,
                    self.model.dim
                ),
            ));
        }
        let least = (self.products as u64).saturating_mul(MIN_PRODUCT_BYTES);
        if size(PRODUCTS) < least {
            return Err(bad(
                &format!("files.{PRODUCTS:?}.bytes"),
                format!(
                    "{} bytes cannot hold {} products (at least {MIN_PRODUCT_BYTES} bytes each)",
                    size(PRODUCTS),
                    self.products
                ),
            ));
        }
        Ok(())
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
