//! [`Engine`]: an opened index, and the one place that orchestrates a search. One
//! file per job:
//!
//! | file | job |
//! | --- | --- |
//! | `mod.rs` | the [`Engine`] and its accessors, query embedding (concurrent cache, micro-batched encodes) |
//! | `open.rs` | [`EngineBuilder`]: opening and verifying an index, loading the encoder and the head |
//! | `request.rs` | [`SearchRequest`], [`Mode`], [`Filters`] and all their validation |
//! | `hit.rs` | [`Hit`] and [`ScoreBreakdown`] |
//! | `search.rs` | retrieval (filters, BM25, dense route choice) and fusion |
//! | `personal.rs` | a shopper's candidates, features, ranking, MMR, external rerank |
//! | `events.rs` | recording, importing and forgetting events; profiles |
//!
//! A query goes: filters -> allowed-product mask; text -> BM25 top-`candidates`
//! ([`crate::text`]); text -> embedding ([`crate::encoder`]) -> HNSW top-
//! `candidates` ([`crate::vector`]); both lists -> [`crate::fuse`] -> top-`k` hits
//! with their score breakdown. With a shopper, [`crate::rank`] reranks the hybrid
//! top candidates using their profile.

mod events;
mod hit;
mod live;
mod open;
mod personal;
mod request;
mod search;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::catalog::Product;
use crate::encoder::{Encoder, QueryBatcher, DEFAULT_BATCH_SIZE};
use crate::error::{Error, Result};
use crate::fuse::Fusion;
use crate::profile::{ItemStats, ProfileConfig};
use crate::rank::{CtrHead, FallbackWeights};
use crate::store::{Manifest, VectorFile};
use crate::text::TextIndex;
use crate::vector::HnswIndex;

pub use events::{CommitStats, ImportSummary};
pub use hit::{Hit, ScoreBreakdown};
pub use live::MergeSummary;
pub use open::{EngineBuilder, DEFAULT_QUERY_CACHE};
pub use personal::{
    CandidateCheck, CandidateProblem, ExternalCandidate, RerankResponse, DEFAULT_RERANK_DEPTH,
    PERSONAL_CANDIDATES,
};
pub use request::{Filters, Mode, SearchRequest, MAX_EF_SEARCH, MAX_K};
pub use search::{Candidates, DEFAULT_CANDIDATES};

/// An opened index. `Send + Sync`: share one `Engine` (or an `Arc<Engine>`) across
/// threads; searches do not lock each other.
pub struct Engine {
    dir: PathBuf,
    /// The directory of the generation in use.
    data_dir: PathBuf,
    /// Keeps the generation from being removed while this engine uses it.
    _pin: crate::store::GenerationPin,
    wait_for_lock: bool,
    manifest: Manifest,
    products: Vec<Product>,
    by_id: HashMap<String, u32>,
    text: TextIndex,
    hnsw: HnswIndex,
    vectors: VectorFile,
    encoder: Option<Arc<Encoder>>,
    fusion: Fusion,
    events: events::SharedEvents,
    stats: RwLock<ItemStats>,
    head: Option<CtrHead>,
    head_warning: Option<String>,
    query_cache: Option<quick_cache::sync::Cache<String, Arc<Vec<f32>>>>,
    batcher: QueryBatcher,
    profile_cfg: ProfileConfig,
    fallback: FallbackWeights,
    /// Catalog updates since the generation (see `live.rs`).
    live: live::Live,
}

impl std::fmt::Debug for Engine {
    /// A summary, not the catalog (an index can hold millions of products).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.dir)
            .field("generation", &self.data_dir)
            .field("products", &self.products.len())
            .field("model", &self.manifest.model.name)
            .field("keyword_only", &self.encoder.is_none())
            .field("fusion", &self.fusion)
            .field("head", &self.head.is_some())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the index in `dir` with default options (see [`EngineBuilder`]).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        EngineBuilder::new(dir.as_ref()).build()
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of the generation this engine serves (`INDEX/gen-NNNNNN`).
    pub fn generation_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The index manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The encoder, unless opened keyword-only.
    pub fn encoder(&self) -> Option<&Encoder> {
        self.encoder.as_deref()
    }

    /// The default fusion.
    pub fn default_fusion(&self) -> Fusion {
        self.fusion
    }

    /// The trained CTR head, if any.
    pub fn head(&self) -> Option<&CtrHead> {
        self.head.as_ref()
    }

    /// Why a head found in the index was not loaded (trained for another feature
    /// set, or unreadable), if that happened. Reranking then uses the fallback.
    pub fn head_warning(&self) -> Option<&str> {
        self.head_warning.as_deref()
    }

    /// The embedding of a query text, from the query cache when it was seen
    /// recently. Concurrent calls share forward passes ([`QueryBatcher`]); the cache
    /// is a concurrent one (no lock shared by all readers).
    pub fn embed_query(&self, text: &str, mode: Mode) -> Result<Arc<Vec<f32>>> {
        if let Some(cache) = &self.query_cache {
            if let Some(v) = cache.get(text) {
                return Ok(v);
            }
        }
        let enc = self.encoder.as_ref().ok_or(Error::NoEncoder {
            mode: mode.name().into(),
        })?;
        let v = Arc::new(self.batcher.embed(enc, text)?);
        if let Some(cache) = &self.query_cache {
            cache.insert(text.to_string(), Arc::clone(&v));
        }
        Ok(v)
    }

    /// Query-cache hits and misses so far (0, 0 without a cache).
    pub fn query_cache_stats(&self) -> (u64, u64) {
        self.query_cache
            .as_ref()
            .map_or((0, 0), |c| (c.hits(), c.misses()))
    }

    /// Query texts encoded by the query path and the forward passes that took
    /// them (their ratio is the mean micro-batch size).
    pub fn query_batch_stats(&self) -> (u64, u64) {
        self.batcher.stats()
    }

    /// Embeds query texts in batches (for evaluation and bulk jobs).
    pub(crate) fn embed_queries(
        &self,
        texts: &[&str],
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<Vec<f32>>> {
        let enc = self.encoder.as_ref().ok_or(Error::NoEncoder {
            mode: "dense".into(),
        })?;
        enc.embed_many(texts, DEFAULT_BATCH_SIZE, progress)
    }

    /// Embeddings of the distinct texts among `texts` (queries repeat a lot in
    /// logs), keyed by text; empty when the engine has no encoder (requests then
    /// fall back to what they can do without one).
    pub(crate) fn embed_distinct(
        &self,
        texts: &[&str],
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<HashMap<String, Vec<f32>>> {
        if self.encoder.is_none() {
            return Ok(HashMap::new());
        }
        let distinct: Vec<&str> = texts
            .iter()
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let vecs = self.embed_queries(&distinct, progress)?;
        Ok(distinct.into_iter().map(String::from).zip(vecs).collect())
    }
}
