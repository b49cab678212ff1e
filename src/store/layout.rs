//! The name of every file and directory of an index, in one place.
//!
//! ```text
//! INDEX/
//!   manifest.json              format version, model, settings, size + CRC-32 of the files below
//!   products.bin               the catalog's products (bincode)
//!   vectors.f32                the embeddings, memory-mapped
//!   hnsw/graph.hnsw.graph      the HNSW graph (hnsw_rs dump)
//!   hnsw/graph.hnsw.data       its copy of the vectors
//!   text/                      the tantivy keyword index
//!   events/log.bin             the event store's append-only log
//!   events/snapshot.bin        the event store's last compaction
//!   rank/ctr_head.safetensors  the trained CTR head's weights
//!   rank/ctr_head.json         its model card
//! ```
//!
//! `events/` and `rank/` belong to the shop, not to the catalog build: a rebuild
//! carries them over ([`PRESERVED_DIRS`]).

use std::path::{Path, PathBuf};

/// The manifest.
pub const MANIFEST: &str = "manifest.json";
/// The product metadata.
pub const PRODUCTS: &str = "products.bin";
/// The raw embedding matrix.
pub const VECTORS: &str = "vectors.f32";
/// Sub-directory of the HNSW dump.
pub const HNSW_DIR: &str = "hnsw";
/// Base name of the HNSW dump files inside [`HNSW_DIR`].
pub const HNSW_BASENAME: &str = "graph";
/// Sub-directory of the tantivy index.
pub const TEXT_DIR: &str = "text";
/// Sub-directory of the event store.
pub const EVENTS_DIR: &str = "events";
/// The event store's log, inside [`EVENTS_DIR`].
pub const EVENT_LOG: &str = "log.bin";
/// The event store's snapshot, inside [`EVENTS_DIR`].
pub const EVENT_SNAPSHOT: &str = "snapshot.bin";
/// Sub-directory of the trained CTR head.
pub const RANK_DIR: &str = "rank";
/// The head's weights, inside [`RANK_DIR`].
pub const HEAD_WEIGHTS: &str = "ctr_head.safetensors";
/// The head's model card, inside [`RANK_DIR`].
pub const HEAD_CARD: &str = "ctr_head.json";
/// Sub-directories that a rebuild carries over from the index it replaces, so
/// rebuilding never loses a recorded event or the trained head.
pub const PRESERVED_DIRS: [&str; 2] = [EVENTS_DIR, RANK_DIR];

/// The paths of one index directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPaths {
    root: PathBuf,
}

impl IndexPaths {
    /// The paths of the index in `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        IndexPaths { root: root.into() }
    }

    /// The index directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `manifest.json`.
    pub fn manifest(&self) -> PathBuf {
        self.root.join(MANIFEST)
    }

    /// `products.bin`.
    pub fn products(&self) -> PathBuf {
        self.root.join(PRODUCTS)
    }

    /// `vectors.f32`.
    pub fn vectors(&self) -> PathBuf {
        self.root.join(VECTORS)
    }

    /// `hnsw/`.
    pub fn hnsw_dir(&self) -> PathBuf {
        self.root.join(HNSW_DIR)
    }

    /// `text/`.
    pub fn text_dir(&self) -> PathBuf {
        self.root.join(TEXT_DIR)
    }

    /// `events/`.
    pub fn events_dir(&self) -> PathBuf {
        self.root.join(EVENTS_DIR)
    }

    /// `rank/`.
    pub fn rank_dir(&self) -> PathBuf {
        self.root.join(RANK_DIR)
    }
}
