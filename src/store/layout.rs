//! The name of every file and directory of an index, in one place.
//!
//! ```text
//! INDEX/
//!   LOCK                         the writer lock (see `store::lock`); says who holds it
//!   CURRENT                      the name of the live generation, e.g. `gen-000003`
//!   gen-000003/                  one build of the catalog, never changed once published:
//!     manifest.json              format version, model, settings, size + CRC-32 of the files below
//!     products.bin               the catalog's products (bincode)
//!     vectors.f32                the embeddings, memory-mapped
//!     hnsw/graph.hnsw.graph      the HNSW graph (hnsw_rs dump)
//!     hnsw/graph.hnsw.data       its copy of the vectors
//!     text/                      the tantivy keyword index
//!   events/log.bin               the event store's append-only log
//!   events/snapshot.bin          the event store's last compaction
//!   rank/ctr_head-<fnv>.safetensors  the trained CTR head's weights, named after their checksum
//!   rank/ctr_head.json           its model card
//! ```
//!
//! `events/` and `rank/` belong to the shop, not to a catalog build: they sit beside
//! the generations and a rebuild never moves them. Indexes written before
//! generations (the build files directly in `INDEX/`, no `CURRENT`, manifest
//! format 1) are still recognised: opening one is refused with a hint to rebuild,
//! and a build over one reuses its embeddings and turns it into the layout above.

use std::path::{Path, PathBuf};

/// The writer lock file.
pub const LOCK: &str = "LOCK";
/// The pointer to the live generation.
pub const CURRENT: &str = "CURRENT";
/// Prefix of a generation directory's name (`gen-000003`).
pub const GENERATION_PREFIX: &str = "gen-";
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
/// The head's weights as saved before they were named after their checksum
/// (`ctr_head-<FNV-1a 64 hex>.safetensors`, named by the card), inside [`RANK_DIR`].
pub const HEAD_WEIGHTS: &str = "ctr_head.safetensors";
/// The head's model card, inside [`RANK_DIR`].
pub const HEAD_CARD: &str = "ctr_head.json";
/// Sub-directory of the live catalog updates not yet merged into a generation
/// (one file per acknowledged batch, see [`crate::store::updates`]).
pub const UPDATES_DIR: &str = "updates";
/// The directories that belong to the shop, not to a build: they sit beside the
/// generations (and, in the layout before generations, beside the build files) and
/// no build touches them.
pub const SHOP_DIRS: [&str; 3] = [EVENTS_DIR, RANK_DIR, UPDATES_DIR];

/// The files a build writes at the top of a generation directory (and, in the
/// layout before generations, at the top of the index).
pub const BUILD_ENTRIES: [&str; 5] = [MANIFEST, PRODUCTS, VECTORS, HNSW_DIR, TEXT_DIR];

/// The name of generation `n`: `gen-000003`.
pub fn generation_name(n: u64) -> String {
    format!("{GENERATION_PREFIX}{n:06}")
}

/// The number of a generation directory's name, or `None` for any other name.
pub fn generation_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(GENERATION_PREFIX)?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The paths of one index: its root (lock, pointer, events, head) and the
/// directory of the generation in use (the build's files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPaths {
    root: PathBuf,
    data: PathBuf,
}

impl IndexPaths {
    /// The paths of an index whose build files sit directly in `root` (a staging
    /// directory, or an index from before generations).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        IndexPaths {
            data: root.clone(),
            root,
        }
    }

    /// The paths of the index in `root` whose build files are in `data`.
    pub fn with_data(root: impl Into<PathBuf>, data: impl Into<PathBuf>) -> Self {
        IndexPaths {
            root: root.into(),
            data: data.into(),
        }
    }

    /// The index directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of the build's files (the generation in use).
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// `manifest.json`.
    pub fn manifest(&self) -> PathBuf {
        self.data.join(MANIFEST)
    }

    /// `products.bin`.
    pub fn products(&self) -> PathBuf {
        self.data.join(PRODUCTS)
    }

    /// `vectors.f32`.
    pub fn vectors(&self) -> PathBuf {
        self.data.join(VECTORS)
    }

    /// `hnsw/`.
    pub fn hnsw_dir(&self) -> PathBuf {
        self.data.join(HNSW_DIR)
    }

    /// `text/`.
    pub fn text_dir(&self) -> PathBuf {
        self.data.join(TEXT_DIR)
    }

    /// `events/`.
    pub fn events_dir(&self) -> PathBuf {
        self.root.join(EVENTS_DIR)
    }

    /// `rank/`.
    pub fn rank_dir(&self) -> PathBuf {
        self.root.join(RANK_DIR)
    }

    /// `updates/`.
    pub fn updates_dir(&self) -> PathBuf {
        self.root.join(UPDATES_DIR)
    }
}
