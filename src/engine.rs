//! [`Engine`]: an opened index, and the one place that orchestrates a search.
//!
//! A query goes: filters -> allowed-product mask; text -> BM25 top-`candidates`
//! ([`crate::text`]); text -> embedding ([`crate::encoder`]) -> HNSW top-
//! `candidates` ([`crate::vector`]); both lists -> [`crate::fuse`] -> top-`k` hits
//! with their score breakdown.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::catalog::Product;
use crate::encoder::{DeviceSpec, Encoder, EncoderOptions, Implementation};
use crate::error::{Error, Result};
use crate::fuse::{self, Candidate, Fused, Fusion};
use crate::profile::events::{read_events, EventBatch, EventReadOptions};
use crate::profile::{build_profile, Event, EventStore, ItemStats, Profile, ProfileConfig};
use crate::rank::features::{self, CandidateInput, QueryContext};
use crate::rank::{CtrHead, FallbackWeights, RerankMode, NUM_FEATURES, RANK_DIR};
use crate::store::{self, Manifest, VectorFile};
use crate::text::TextIndex;
use crate::vector::{exact_search, exact_search_filtered, HnswIndex, HnswParams, Neighbor};

/// Largest `k` a request may ask for.
pub const MAX_K: usize = 10_000;

/// Default number of candidates each retriever contributes before fusion. 100
/// covers Recall@100 and is cheap (BM25 and HNSW cost grow slowly with it).
pub const DEFAULT_CANDIDATES: usize = 100;

/// When a filter leaves at most this share of the catalog (or at most
/// [`EXACT_FILTER_MIN_ROWS`] products), the dense retriever scans the allowed rows
/// exactly instead of walking the graph: a filtered HNSW walk has to visit and
/// reject most nodes in that regime, and an exact scan is then both faster and
/// complete.
const EXACT_FILTER_SHARE: f64 = 0.05;
/// See [`EXACT_FILTER_SHARE`].
const EXACT_FILTER_MIN_ROWS: usize = 4096;

/// Which retrievers a search uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Keyword (BM25) only.
    Bm25,
    /// Dense (embedding) only.
    Dense,
    /// Both, fused.
    #[default]
    Hybrid,
}

impl Mode {
    /// The mode's name as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Bm25 => "bm25",
            Mode::Dense => "dense",
            Mode::Hybrid => "hybrid",
        }
    }
}

impl FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "bm25" | "keyword" => Ok(Mode::Bm25),
            "dense" | "semantic" => Ok(Mode::Dense),
            "hybrid" => Ok(Mode::Hybrid),
            other => Err(Error::invalid(
                "mode",
                format!("{other:?}; expected bm25, dense or hybrid"),
            )),
        }
    }
}

/// Restrictions on which products may be returned. All given conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    /// Category path prefix, e.g. `["Bath"]` matches "Bath > Faucets". Segments
    /// compare case-insensitively.
    pub category_prefix: Option<Vec<String>>,
    /// Minimum price (inclusive). Products without a price never match a price bound.
    pub min_price: Option<f64>,
    /// Maximum price (inclusive).
    pub max_price: Option<f64>,
    /// Attribute equalities (`key`, `value`), exact match.
    pub attributes: Vec<(String, String)>,
}

impl Filters {
    /// True when no condition is set.
    pub fn is_empty(&self) -> bool {
        self.category_prefix.as_ref().is_none_or(|c| c.is_empty())
            && self.min_price.is_none()
            && self.max_price.is_none()
            && self.attributes.is_empty()
    }

    /// Parses a category path such as `"Bath > Faucets"` into a prefix filter.
    pub fn category(path: &str) -> Vec<String> {
        path.split('>')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    fn validate(&self) -> Result<()> {
        for (name, v) in [("min_price", self.min_price), ("max_price", self.max_price)] {
            if let Some(v) = v {
                if !v.is_finite() {
                    return Err(Error::invalid(name, format!("{v} is not a finite number")));
                }
            }
        }
        if let (Some(lo), Some(hi)) = (self.min_price, self.max_price) {
            if lo > hi {
                return Err(Error::invalid(
                    "price range",
                    format!("min_price {lo} is greater than max_price {hi}"),
                ));
            }
        }
        Ok(())
    }

    /// True when `p` satisfies every condition.
    pub fn matches(&self, p: &Product) -> bool {
        if let Some(prefix) = &self.category_prefix {
            if prefix.len() > p.category.len()
                || !prefix
                    .iter()
                    .zip(&p.category)
                    .all(|(a, b)| a.eq_ignore_ascii_case(b) || a.to_lowercase() == b.to_lowercase())
            {
                return false;
            }
        }
        if self.min_price.is_some() || self.max_price.is_some() {
            let Some(price) = p.price else { return false };
            if self.min_price.is_some_and(|lo| price < lo)
                || self.max_price.is_some_and(|hi| price > hi)
            {
                return false;
            }
        }
        self.attributes
            .iter()
            .all(|(k, v)| p.attributes.get(k).is_some_and(|x| x == v))
    }
}

/// One search call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// What the shopper typed. Any text is accepted.
    pub query: String,
    /// Which retrievers to use.
    pub mode: Mode,
    /// Number of hits wanted (1..=[`MAX_K`]).
    pub k: usize,
    /// Restrictions.
    pub filters: Filters,
    /// Fusion method; `None` uses the engine's default.
    pub fusion: Option<Fusion>,
    /// Candidates per retriever before fusion; `None` uses max(k, engine default).
    pub candidates: Option<usize>,
    /// HNSW search breadth; `None` uses the index's saved `ef_search`.
    pub ef_search: Option<usize>,
    /// A precomputed query embedding (skips the encoder), e.g. from a batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    /// The shopper, for personalised reranking. `None`: anonymous.
    #[serde(default)]
    pub user: Option<String>,
    /// Rank as of this time (Unix seconds): only events before it count. `None`:
    /// now. Evaluation sets it to each task's time.
    #[serde(default)]
    pub as_of: Option<i64>,
    /// How to rerank when a user is given.
    #[serde(default)]
    pub rerank: RerankMode,
    /// Diversity weight in [0, 1] for the MMR pass over embeddings (0: off).
    #[serde(default)]
    pub diversity: f32,
}

impl SearchRequest {
    /// A hybrid request for the top 10 with no filters.
    pub fn new(query: impl Into<String>) -> Self {
        SearchRequest {
            query: query.into(),
            mode: Mode::Hybrid,
            k: 10,
            filters: Filters::default(),
            fusion: None,
            candidates: None,
            ef_search: None,
            embedding: None,
            user: None,
            as_of: None,
            rerank: RerankMode::Auto,
            diversity: 0.0,
        }
    }

    /// Personalises for `user`.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the number of hits.
    pub fn k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }

    /// Sets the filters.
    pub fn filters(mut self, filters: Filters) -> Self {
        self.filters = filters;
        self
    }

    /// Sets the fusion method.
    pub fn fusion(mut self, fusion: Fusion) -> Self {
        self.fusion = Some(fusion);
        self
    }
}

/// Why a hit ranks where it does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreBreakdown {
    /// BM25 score, when the keyword retriever found the product.
    pub bm25: Option<f32>,
    /// 1-based rank in the keyword list.
    pub bm25_rank: Option<usize>,
    /// Cosine similarity of query and product embeddings, when the dense retriever
    /// found the product.
    pub dense: Option<f32>,
    /// 1-based rank in the dense list.
    pub dense_rank: Option<usize>,
    /// The fused score (equals the single retriever's score in bm25/dense mode).
    pub fused: f32,
    /// The CTR head's probability, when it ranked this hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctr: Option<f32>,
    /// The profile term (taste similarity and past interest), when personalised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<f32>,
    /// Each feature's approximate contribution to the head's logit (gradient x
    /// normalised input), when the head ranked this hit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contributions: Vec<(String, f32)>,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// Product id.
    pub id: String,
    /// The product's ordinal in this index.
    pub ord: u32,
    /// Final score (higher is better).
    pub score: f32,
    /// Score breakdown.
    pub breakdown: ScoreBreakdown,
}

/// The two candidate lists of a query, before fusion (useful to evaluate several
/// fusions from one retrieval).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidates {
    /// BM25 list, best first.
    pub bm25: Vec<Candidate>,
    /// Dense list, best first.
    pub dense: Vec<Candidate>,
}

/// Opens an [`Engine`] with options.
#[derive(Debug, Clone)]
pub struct EngineBuilder {
    index_dir: PathBuf,
    model_dir: Option<PathBuf>,
    device: DeviceSpec,
    implementation: Implementation,
    keyword_only: bool,
    fusion: Fusion,
    verify: bool,
    load_head: bool,
    query_cache: usize,
}

impl EngineBuilder {
    /// Options for the index in `index_dir`: the model recorded in the manifest, on
    /// the CPU, default fusion, with checksums verified.
    pub fn new(index_dir: impl Into<PathBuf>) -> Self {
        EngineBuilder {
            index_dir: index_dir.into(),
            model_dir: None,
            device: DeviceSpec::Cpu,
            implementation: Implementation::default(),
            keyword_only: false,
            fusion: Fusion::default(),
            verify: true,
            load_head: true,
            query_cache: DEFAULT_QUERY_CACHE,
        }
    }

    /// Uses this model directory instead of the one recorded at build time. It must
    /// be the same model (same weights checksum).
    pub fn model_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.model_dir = Some(dir.into());
        self
    }

    /// Runs the encoder on `device`.
    pub fn device(mut self, device: DeviceSpec) -> Self {
        self.device = device;
        self
    }

    /// Runs this implementation of the encoder's forward pass (default: the fast one).
    pub fn encoder_implementation(mut self, implementation: Implementation) -> Self {
        self.implementation = implementation;
        self
    }

    /// Opens without an encoder: only `bm25` mode and requests that carry their own
    /// embedding work.
    pub fn keyword_only(mut self, yes: bool) -> Self {
        self.keyword_only = yes;
        self
    }

    /// Sets the default fusion used when a request names none.
    pub fn fusion(mut self, fusion: Fusion) -> Self {
        self.fusion = fusion;
        self
    }

    /// Skips the CRC-32 check of the index files on open (faster; only for indexes
    /// you trust, e.g. just built).
    pub fn verify_checksums(mut self, yes: bool) -> Self {
        self.verify = yes;
        self
    }

    /// Keeps the embeddings of the `n` most recently searched query texts (LRU),
    /// so a repeated query skips the encoder. 0 turns the cache off.
    pub fn query_cache(mut self, n: usize) -> Self {
        self.query_cache = n;
        self
    }

    /// Loads the trained CTR head from `INDEX/rank/` when there is one (default on).
    pub fn load_head(mut self, yes: bool) -> Self {
        self.load_head = yes;
        self
    }

    /// Opens the index.
    pub fn build(self) -> Result<Engine> {
        self.fusion
            .validate()
            .map_err(|r| Error::invalid("fusion", r))?;
        let dir = self.index_dir.clone();
        let manifest = Manifest::read(&dir)?;
        for (rel, entry) in &manifest.files {
            let path = dir.join(rel);
            if self.verify {
                store::verify_file(&path, entry)?;
            } else if !path.is_file() {
                return Err(Error::corrupt(&path, "missing"));
            }
        }
        let products = store::read_products(&dir.join(store::PRODUCTS))?;
        if products.len() != manifest.products {
            return Err(Error::corrupt(
                dir.join(store::PRODUCTS),
                format!(
                    "{} products, the manifest says {}",
                    products.len(),
                    manifest.products
                ),
            ));
        }
        let dim = manifest.model.dim;
        let vectors = VectorFile::open(&dir.join(store::VECTORS), products.len(), dim)?;
        let params = HnswParams {
            m: manifest.hnsw.m,
            ef_construction: manifest.hnsw.ef_construction,
            ef_search: manifest.hnsw.ef_search,
        };
        let hnsw = HnswIndex::load(
            &dir.join(store::HNSW_DIR),
            store::HNSW_BASENAME,
            dim,
            products.len(),
            params,
        )?;
        let text = TextIndex::open(&dir.join(store::TEXT_DIR))?;
        if text.len() != products.len() as u64 {
            return Err(Error::corrupt(
                dir.join(store::TEXT_DIR),
                format!(
                    "{} documents, the manifest says {} products",
                    text.len(),
                    products.len()
                ),
            ));
        }
        let encoder = if self.keyword_only {
            None
        } else {
            let model_dir = self
                .model_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(&manifest.model.path));
            let mut opts = EncoderOptions::new(model_dir);
            opts.device = self.device;
            opts.implementation = self.implementation;
            opts.max_tokens = Some(manifest.model.max_tokens);
            let enc = Encoder::load(&opts)?;
            let info = enc.info();
            if info.sha256 != manifest.model.sha256 || info.dim != dim {
                return Err(Error::ModelMismatch(Box::new(
                    crate::error::ModelMismatch {
                        index: dir.clone(),
                        built_name: manifest.model.name.clone(),
                        built_dim: dim,
                        built_sha: manifest.model.sha256.chars().take(12).collect(),
                        given_name: info.name.clone(),
                        given_dim: info.dim,
                        given_sha: info.sha256.chars().take(12).collect(),
                    },
                )));
            }
            Some(Arc::new(enc))
        };
        let by_id: HashMap<String, u32> = products
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i as u32))
            .collect();
        let events = EventStore::open(&dir.join(EVENTS_DIR))?;
        let stats = ItemStats::from_events(events.iter(), &|id: &str| by_id.get(id).copied());
        let rank_dir = dir.join(RANK_DIR);
        let mut head_warning = None;
        let head = if !self.load_head || !rank_dir.join(crate::rank::head::WEIGHTS_FILE).exists() {
            None
        } else {
            match CtrHead::load(&rank_dir) {
                Ok(h) if h.feature_names() == crate::rank::FEATURE_NAMES => Some(h),
                Ok(_) => {
                    head_warning = Some(format!(
                        "the CTR head in {} was trained on another feature set and is ignored; retrain it with `shelfrank train`",
                        rank_dir.display()
                    ));
                    None
                }
                Err(e) => {
                    head_warning = Some(format!(
                        "the CTR head in {} cannot be loaded and is ignored ({e}); retrain it with `shelfrank train`",
                        rank_dir.display()
                    ));
                    None
                }
            }
        };
        Ok(Engine {
            dir,
            manifest,
            products,
            by_id,
            text,
            hnsw,
            vectors,
            encoder,
            fusion: self.fusion,
            events: Mutex::new(events),
            stats: RwLock::new(stats),
            head,
            head_warning,
            query_cache: std::num::NonZeroUsize::new(self.query_cache)
                .map(|n| Mutex::new(lru::LruCache::new(n))),
            profile_cfg: ProfileConfig::default(),
            fallback: FallbackWeights::default(),
        })
    }
}

/// An opened index. `Send + Sync`: share one `Engine` (or an `Arc<Engine>`) across
/// threads; searches do not lock each other.
#[derive(Debug)]
pub struct Engine {
    dir: PathBuf,
    manifest: Manifest,
    products: Vec<Product>,
    by_id: HashMap<String, u32>,
    text: TextIndex,
    hnsw: HnswIndex,
    vectors: VectorFile,
    encoder: Option<Arc<Encoder>>,
    fusion: Fusion,
    events: Mutex<EventStore>,
    stats: RwLock<ItemStats>,
    head: Option<CtrHead>,
    head_warning: Option<String>,
    query_cache: Option<Mutex<lru::LruCache<String, Arc<Vec<f32>>>>>,
    profile_cfg: ProfileConfig,
    fallback: FallbackWeights,
}

/// Default size of the query-embedding cache: 10,000 texts, about 15 MiB of
/// 384-d vectors. Head queries repeat in every shop; this holds far more than a
/// typical head.
pub const DEFAULT_QUERY_CACHE: usize = 10_000;

/// Directory of the event store inside an index.
pub const EVENTS_DIR: &str = "events";

/// Candidates reranked for a personalised request when the request does not say.
pub const DEFAULT_RERANK_DEPTH: usize = 200;

/// Extra candidates taken from the shopper's own past items that match the query
/// (BM25 restricted to those items), so that a repurchase is always in reach even
/// for a broad query.
pub const PERSONAL_CANDIDATES: usize = 50;

/// One candidate of a personalised ranking, with its features.
#[derive(Debug, Clone)]
pub struct ScoredCandidate {
    /// Product ordinal.
    pub ord: u32,
    /// Retrieval inputs.
    pub fused: Fused,
    /// Features ([`crate::rank::FEATURE_NAMES`] order).
    pub features: [f32; NUM_FEATURES],
}

/// What [`Engine::import_events`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    /// Events stored.
    pub imported: usize,
    /// Lines skipped (with `skip_invalid`).
    pub skipped: usize,
    /// The first reasons, as text.
    pub problems: Vec<String>,
}

/// A candidate found by another engine, for [`Engine::rerank`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalCandidate {
    /// Product id.
    pub id: String,
    /// The other engine's score (higher is better), if it has one.
    #[serde(default)]
    pub score: Option<f32>,
}

/// The answer of [`Engine::rerank`].
#[derive(Debug, Clone, Serialize)]
pub struct RerankResponse {
    /// The reranked hits.
    pub hits: Vec<Hit>,
    /// Candidate ids not in this index (reported, not fatal).
    pub unknown: Vec<String>,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
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

    /// The index manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Number of products.
    pub fn len(&self) -> usize {
        self.products.len()
    }

    /// True when the index holds no product.
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// The product with ordinal `ord`.
    pub fn product(&self, ord: u32) -> Option<&Product> {
        self.products.get(ord as usize)
    }

    /// The product with id `id`.
    pub fn product_by_id(&self, id: &str) -> Option<&Product> {
        self.by_id.get(id).and_then(|&o| self.product(o))
    }

    /// The stored embedding of product `ord`.
    pub fn embedding(&self, ord: u32) -> Option<&[f32]> {
        self.vectors.row(ord as usize)
    }

    /// The encoder, unless opened keyword-only.
    pub fn encoder(&self) -> Option<&Encoder> {
        self.encoder.as_deref()
    }

    /// The default fusion.
    pub fn default_fusion(&self) -> Fusion {
        self.fusion
    }

    /// Embeds query texts in batches (for evaluation and bulk jobs).
    pub fn embed_queries(
        &self,
        texts: &[&str],
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<Vec<f32>>> {
        let enc = self.encoder.as_ref().ok_or(Error::NoEncoder {
            mode: "dense".into(),
        })?;
        enc.embed_many(texts, crate::encoder::DEFAULT_BATCH_SIZE, progress)
    }

    /// Embeddings of the distinct texts among `texts` (queries repeat a lot in
    /// logs), keyed by text; empty when the engine has no encoder (requests then
    /// fall back to what they can do without one).
    pub fn embed_distinct(
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

    fn check(&self, req: &SearchRequest) -> Result<()> {
        if req.k == 0 || req.k > MAX_K {
            return Err(Error::invalid(
                "k",
                format!("{} is outside 1..={MAX_K}", req.k),
            ));
        }
        if let Some(c) = req.candidates {
            if c == 0 || c > MAX_K {
                return Err(Error::invalid(
                    "candidates",
                    format!("{c} is outside 1..={MAX_K}"),
                ));
            }
        }
        if let Some(f) = &req.fusion {
            f.validate().map_err(|r| Error::invalid("fusion", r))?;
        }
        if let Some(ef) = req.ef_search {
            if ef == 0 || ef > 100_000 {
                return Err(Error::invalid(
                    "ef_search",
                    format!("{ef} is outside 1..=100000"),
                ));
            }
        }
        req.filters.validate()
    }

    /// A mask over product ordinals that allows exactly `ords`.
    fn mask_of(&self, ords: impl IntoIterator<Item = u32>) -> Arc<Vec<bool>> {
        let mut mask = vec![false; self.products.len()];
        for o in ords {
            if let Some(m) = mask.get_mut(o as usize) {
                *m = true;
            }
        }
        Arc::new(mask)
    }

    /// The allowed-product mask for `filters`, `None` when unfiltered.
    fn mask(&self, filters: &Filters) -> Option<Arc<Vec<bool>>> {
        if filters.is_empty() {
            return None;
        }
        Some(Arc::new(
            self.products.iter().map(|p| filters.matches(p)).collect(),
        ))
    }

    /// Runs the retrievers `mode` needs and returns their lists (no fusion).
    pub fn retrieve(&self, req: &SearchRequest) -> Result<Candidates> {
        self.check(req)?;
        let depth = req.candidates.unwrap_or(DEFAULT_CANDIDATES.max(req.k));
        let mask = self.mask(&req.filters);
        let mut out = Candidates::default();
        if req.mode != Mode::Dense {
            out.bm25 = self
                .text
                .search(&req.query, depth, mask.clone())?
                .into_iter()
                .map(|h| Candidate {
                    ord: h.ord,
                    score: h.score,
                })
                .collect();
        }
        if req.mode != Mode::Bm25 {
            let owned;
            let query_vec: &[f32] = match &req.embedding {
                Some(v) => v,
                None => {
                    owned = self.embed_query(&req.query, req.mode)?;
                    owned.as_slice()
                }
            };
            out.dense = self
                .dense_search(query_vec, depth, req.ef_search, mask.as_deref())?
                .into_iter()
                .map(|n| Candidate {
                    ord: n.ord,
                    score: n.score,
                })
                .collect();
        }
        Ok(out)
    }

    fn dense_search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        mask: Option<&Vec<bool>>,
    ) -> Result<Vec<Neighbor>> {
        let dim = self.manifest.model.dim;
        if query.len() != dim {
            return Err(Error::invalid(
                "embedding",
                format!("has {} dims, the index has {dim}", query.len()),
            ));
        }
        let Some(mask) = mask else {
            return self.hnsw.search(query, k, ef, None);
        };
        let allowed: Vec<u32> = mask
            .iter()
            .enumerate()
            .filter(|(_, &ok)| ok)
            .map(|(i, _)| i as u32)
            .collect();
        let threshold =
            ((self.len() as f64 * EXACT_FILTER_SHARE) as usize).max(EXACT_FILTER_MIN_ROWS);
        if allowed.len() <= threshold {
            return Ok(exact_search_filtered(
                self.vectors.as_slice(),
                dim,
                query,
                k,
                &allowed,
            ));
        }
        let pred = |id: usize| mask.get(id).copied().unwrap_or(false);
        let found = self.hnsw.search(query, k, ef, Some(&pred))?;
        if found.len() < k.min(allowed.len()) {
            // The graph walk got stuck in a region with few allowed nodes.
            return Ok(exact_search_filtered(
                self.vectors.as_slice(),
                dim,
                query,
                k,
                &allowed,
            ));
        }
        Ok(found)
    }

    /// Exact dense top-k over all products (the oracle HNSW is measured against).
    pub fn exact_dense(&self, query: &[f32], k: usize) -> Vec<(u32, f32)> {
        exact_search(self.vectors.as_slice(), self.manifest.model.dim, query, k)
            .into_iter()
            .map(|n| (n.ord, n.score))
            .collect()
    }

    /// Approximate dense top-k with an explicit `ef` (for recall/latency studies).
    pub fn hnsw_dense(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<(u32, f32)>> {
        Ok(self
            .hnsw
            .search(query, k, Some(ef), None)?
            .into_iter()
            .map(|n| (n.ord, n.score))
            .collect())
    }

    /// Fuses candidate lists as `req` asks and returns the hits.
    pub fn fuse(&self, req: &SearchRequest, cands: &Candidates) -> Vec<Hit> {
        let fused: Vec<Fused> = match req.mode {
            Mode::Bm25 => fuse::single(&cands.bm25, true, req.k),
            Mode::Dense => fuse::single(&cands.dense, false, req.k),
            Mode::Hybrid => fuse::fuse(
                &cands.bm25,
                &cands.dense,
                &req.fusion.unwrap_or(self.fusion),
                req.k,
            ),
        };
        fused
            .into_iter()
            .filter_map(|f| {
                let p = self.products.get(f.ord as usize)?;
                Some(Hit {
                    id: p.id.clone(),
                    ord: f.ord,
                    score: f.score,
                    breakdown: ScoreBreakdown {
                        bm25: f.bm25.map(|x| x.0),
                        bm25_rank: f.bm25.map(|x| x.1),
                        dense: f.dense.map(|x| x.0),
                        dense_rank: f.dense.map(|x| x.1),
                        fused: f.score,
                        ..ScoreBreakdown::default()
                    },
                })
            })
            .collect()
    }

    /// Searches: retrieval, fusion, top-k; with a user, personalised reranking
    /// from the index's event store as of `req.as_of` (default now).
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<Hit>> {
        if req.user.is_some() && req.rerank != RerankMode::Off {
            let (as_of, profile) = self.request_profile(req)?;
            // Cold start (unknown shopper, or no history before `as_of`): the
            // non-personalised order, no error.
            if profile.as_ref().is_some_and(|p| !p.is_empty()) {
                let stats = self.read_stats()?;
                return self.personalize(req, profile.as_ref(), &stats, as_of);
            }
        }
        let cands = self.retrieve(req)?;
        Ok(self.fuse(req, &cands))
    }

    // ---- events and profiles -------------------------------------------------

    /// The request's time (default now) and its shopper's profile at that time.
    fn request_profile(&self, req: &SearchRequest) -> Result<(i64, Option<Profile>)> {
        let as_of = req.as_of.unwrap_or_else(now_unix);
        let profile = req
            .user
            .as_deref()
            .map(|u| self.profile(u, as_of))
            .transpose()?;
        Ok((as_of, profile))
    }

    fn read_stats(&self) -> Result<std::sync::RwLockReadGuard<'_, ItemStats>> {
        self.stats
            .read()
            .map_err(|_| Error::invalid("engine", "item statistics lock poisoned"))
    }

    fn lock_events(&self) -> Result<std::sync::MutexGuard<'_, EventStore>> {
        self.events.lock().map_err(|_| {
            Error::invalid(
                "engine",
                "event store lock poisoned by a panic in another thread",
            )
        })
    }

    /// Records one event: it is durable (fsynced) when this returns, and the
    /// shopper's profile reflects it at once.
    pub fn record(&self, event: Event) -> Result<()> {
        self.record_many(std::slice::from_ref(&event))
    }

    /// Records events (one fsync for all). Unknown item ids are refused.
    pub fn record_many(&self, events: &[Event]) -> Result<()> {
        for e in events {
            if !self.by_id.contains_key(&e.item) {
                return Err(Error::invalid(
                    "event item",
                    format!("unknown item id {:?} (not in this index's catalog)", e.item),
                ));
            }
        }
        let mut store = self.lock_events()?;
        store.append(events)?;
        let mut stats = self
            .stats
            .write()
            .map_err(|_| Error::invalid("engine", "item statistics lock poisoned"))?;
        for e in events {
            if let Some(&o) = self.by_id.get(&e.item) {
                stats.add(o, e.ts);
            }
        }
        Ok(())
    }

    /// Loads an events JSONL file into the store (see [`read_events`]).
    pub fn import_events(&self, path: &Path, opts: &EventReadOptions) -> Result<ImportSummary> {
        let EventBatch {
            events,
            skipped,
            problems,
        } = read_events(path, opts, &|id: &str| self.by_id.contains_key(id))?;
        for chunk in events.chunks(10_000) {
            self.record_many(chunk)?;
        }
        Ok(ImportSummary {
            imported: events.len(),
            skipped,
            problems: problems.iter().map(|p| p.to_string()).collect(),
        })
    }

    /// Removes everything stored about `user`; returns how many events were removed.
    pub fn forget(&self, user: &str) -> Result<usize> {
        let mut store = self.lock_events()?;
        let gone: Vec<(String, i64)> = store
            .user_events(user)
            .iter()
            .map(|e| (e.item.clone(), e.ts))
            .collect();
        let n = store.forget(user)?;
        let mut stats = self
            .stats
            .write()
            .map_err(|_| Error::invalid("engine", "item statistics lock poisoned"))?;
        for (item, ts) in gone {
            if let Some(&o) = self.by_id.get(&item) {
                stats.remove(o, ts);
            }
        }
        Ok(n)
    }

    /// Number of stored events.
    pub fn event_count(&self) -> Result<usize> {
        Ok(self.lock_events()?.len())
    }

    /// `user`'s profile from the stored events before `as_of`. Unknown users get
    /// an empty profile (cold start).
    pub fn profile(&self, user: &str, as_of: i64) -> Result<Profile> {
        let store = self.lock_events()?;
        Ok(self.profile_from(user, store.user_events(user), as_of))
    }

    /// A profile from the given events (sorted by time) before `as_of`.
    pub fn profile_from(&self, user: &str, events: &[Event], as_of: i64) -> Profile {
        build_profile(
            user,
            events,
            as_of,
            &self.profile_cfg,
            &|id: &str| self.by_id.get(id).copied(),
            &|o: u32| self.products.get(o as usize),
            &|o: u32| self.vectors.row(o as usize),
        )
    }

    /// Item statistics over the given events (for evaluation with external logs).
    pub fn item_stats<'e>(&self, events: impl IntoIterator<Item = &'e Event>) -> ItemStats {
        ItemStats::from_events(events, &|id: &str| self.by_id.get(id).copied())
    }

    /// The product ordinal of `id`.
    pub fn ord_of(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
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

    // ---- personalised ranking -------------------------------------------------

    fn query_vec(&self, req: &SearchRequest) -> Result<Option<Vec<f32>>> {
        match (&req.embedding, &self.encoder) {
            (Some(v), _) => Ok(Some(v.clone())),
            (None, Some(_)) => Ok(Some(self.embed_query(&req.query, req.mode)?.to_vec())),
            (None, None) => Ok(None),
        }
    }

    /// The embedding of a query text, from the LRU cache when it was seen recently.
    pub fn embed_query(&self, text: &str, mode: Mode) -> Result<Arc<Vec<f32>>> {
        if let Some(cache) = &self.query_cache {
            if let Ok(mut c) = cache.lock() {
                if let Some(v) = c.get(text) {
                    return Ok(Arc::clone(v));
                }
            }
        }
        let enc = self.encoder.as_ref().ok_or(Error::NoEncoder {
            mode: mode.name().into(),
        })?;
        let v = Arc::new(enc.embed(text)?);
        if let Some(cache) = &self.query_cache {
            if let Ok(mut c) = cache.lock() {
                c.put(text.to_string(), Arc::clone(&v));
            }
        }
        Ok(v)
    }

    /// The analysed title terms of `ord`, in order (repeats kept).
    fn title_seq(&self, ord: u32) -> Vec<String> {
        self.products
            .get(ord as usize)
            .map(|p| self.text.analyze_all(&p.title))
            .unwrap_or_default()
    }

    fn featurize(
        &self,
        req: &SearchRequest,
        query_vec: Option<&[f32]>,
        fused: Vec<Fused>,
        profile: Option<&Profile>,
        stats: &ItemStats,
        as_of: i64,
    ) -> Vec<ScoredCandidate> {
        let ordered_terms = self.text.analyze(&req.query);
        let terms: HashSet<String> = ordered_terms.iter().cloned().collect();
        let max_bm25 = fused
            .iter()
            .filter_map(|f| f.bm25.map(|b| b.0))
            .fold(0.0f32, f32::max);
        let dense: Vec<f32> = fused
            .iter()
            .map(|f| features::dense_score(query_vec, self.vectors.row(f.ord as usize)))
            .collect();
        let max_dense = dense.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let ctx = QueryContext {
            terms: &terms,
            ordered_terms: &ordered_terms,
            query_vec,
            profile,
            stats,
            as_of,
            max_bm25,
            max_dense: if max_dense.is_finite() {
                max_dense
            } else {
                0.0
            },
        };
        fused
            .into_iter()
            .zip(dense)
            .filter_map(|(f, dense)| {
                let product = self.products.get(f.ord as usize)?;
                let title_seq = self.title_seq(f.ord);
                let title_terms: HashSet<String> = title_seq.iter().cloned().collect();
                let input = CandidateInput {
                    ord: f.ord,
                    product,
                    embedding: self.vectors.row(f.ord as usize),
                    bm25: f.bm25,
                    dense,
                    dense_rank: f.dense.map(|d| d.1),
                    fused: f.score,
                    title_terms: &title_terms,
                    title_seq: &title_seq,
                };
                Some(ScoredCandidate {
                    ord: f.ord,
                    fused: f,
                    features: features::compute(&ctx, &input),
                })
            })
            .collect()
    }

    /// The candidates of a personalised request with their features: the
    /// non-personalised hybrid top-`depth` plus the shopper's own past items that
    /// match the query. Training and evaluation use this directly.
    pub fn personal_candidates(
        &self,
        req: &SearchRequest,
        profile: Option<&Profile>,
        stats: &ItemStats,
        as_of: i64,
    ) -> Result<Vec<ScoredCandidate>> {
        let depth = req.candidates.unwrap_or(DEFAULT_RERANK_DEPTH.max(req.k));
        let query_vec = self.query_vec(req)?;
        let mut base = req.clone();
        base.mode = if query_vec.is_some() {
            Mode::Hybrid
        } else {
            Mode::Bm25
        };
        base.candidates = Some(depth);
        base.embedding = query_vec.clone();
        let lists = self.retrieve(&base)?;
        let fusion = req.fusion.unwrap_or(self.fusion);
        let mut fused = match base.mode {
            Mode::Hybrid => fuse::fuse(&lists.bm25, &lists.dense, &fusion, depth),
            _ => fuse::single(&lists.bm25, true, depth),
        };
        if let Some(p) = profile.filter(|p| !p.is_empty()) {
            let mask = self.mask_of(p.items.keys().copied());
            let mine = self
                .text
                .search(&req.query, PERSONAL_CANDIDATES, Some(mask))?;
            let have: HashSet<u32> = fused.iter().map(|f| f.ord).collect();
            for h in mine.into_iter().filter(|h| !have.contains(&h.ord)) {
                fused.push(Fused {
                    ord: h.ord,
                    score: 0.0,
                    bm25: Some((h.score, usize::MAX)),
                    dense: None,
                });
            }
            // A rank from the restricted list is not a global rank.
            for f in &mut fused {
                if let Some((s, usize::MAX)) = f.bm25 {
                    f.bm25 = Some((s, depth + 1));
                }
            }
        }
        Ok(self.featurize(req, query_vec.as_deref(), fused, profile, stats, as_of))
    }

    /// Features of the listed products as candidates for `req` (in that order):
    /// BM25 is computed among them, the dense score exactly, and each one's list
    /// position stands for its dense rank; the fused score is 0 (callers that have
    /// a retrieval score set it).
    pub fn candidates_for(
        &self,
        req: &SearchRequest,
        ords: &[u32],
        profile: Option<&Profile>,
        stats: &ItemStats,
        as_of: i64,
    ) -> Result<Vec<ScoredCandidate>> {
        let query_vec = self.query_vec(req)?;
        let mask = self.mask_of(ords.iter().copied());
        let bm25 = self
            .text
            .search(&req.query, ords.len().max(1), Some(mask))?;
        let bm25: HashMap<u32, (f32, usize)> = bm25
            .into_iter()
            .enumerate()
            .map(|(r, h)| (h.ord, (h.score, r + 1)))
            .collect();
        let fused: Vec<Fused> = ords
            .iter()
            .enumerate()
            .map(|(r, &o)| Fused {
                ord: o,
                score: 0.0,
                bm25: bm25.get(&o).copied(),
                dense: Some((0.0, r + 1)),
            })
            .collect();
        Ok(self.featurize(req, query_vec.as_deref(), fused, profile, stats, as_of))
    }

    /// Ranks a personalised request with an explicit profile and statistics (the
    /// engine's own store is not read). `mode` comes from `req.rerank`.
    pub fn personalize(
        &self,
        req: &SearchRequest,
        profile: Option<&Profile>,
        stats: &ItemStats,
        as_of: i64,
    ) -> Result<Vec<Hit>> {
        self.check(req)?;
        let cands = self.personal_candidates(req, profile, stats, as_of)?;
        self.rank_candidates(req, &cands)
    }

    /// Scores candidates by `req.rerank`, applies the diversity pass, keeps `k`.
    pub fn rank_candidates(
        &self,
        req: &SearchRequest,
        cands: &[ScoredCandidate],
    ) -> Result<Vec<Hit>> {
        if !(0.0..=1.0).contains(&req.diversity) {
            return Err(Error::invalid(
                "diversity",
                format!("{} is outside 0..=1", req.diversity),
            ));
        }
        let feats: Vec<[f32; NUM_FEATURES]> = cands.iter().map(|c| c.features).collect();
        let (fallback, profile_terms) = crate::rank::fallback_scores(&feats, &self.fallback);
        let use_head = match req.rerank {
            RerankMode::Ctr => {
                if self.head.is_none() {
                    return Err(Error::invalid(
                        "rerank mode",
                        "ctr needs a trained head; run `shelfrank train` first",
                    ));
                }
                true
            }
            RerankMode::Auto => self.head.is_some(),
            RerankMode::Profile | RerankMode::Off => false,
        };
        let (scores, ctr): (Vec<f32>, Option<Vec<f32>>) = match (&self.head, use_head, req.rerank) {
            (_, _, RerankMode::Off) => (cands.iter().map(|c| c.fused.score).collect(), None),
            (Some(head), true, _) => {
                let rows: Vec<Vec<f32>> = feats.iter().map(|f| f.to_vec()).collect();
                let p = head
                    .predict(&rows)
                    .map_err(|e| Error::Encoder(format!("ctr head: {e}")))?;
                (p.clone(), Some(p))
            }
            _ => (fallback, None),
        };
        let mut order: Vec<usize> = (0..cands.len()).collect();
        order.sort_by(|&a, &b| {
            scores[b]
                .total_cmp(&scores[a])
                .then(cands[a].ord.cmp(&cands[b].ord))
        });
        let picked: Vec<usize> = if req.diversity > 0.0 {
            let pool: Vec<usize> = order.iter().copied().take((req.k * 3).max(req.k)).collect();
            let rel: Vec<f32> = pool.iter().map(|&i| scores[i]).collect();
            let sim = |a: usize, b: usize| match (
                self.vectors.row(cands[pool[a]].ord as usize),
                self.vectors.row(cands[pool[b]].ord as usize),
            ) {
                (Some(x), Some(y)) => crate::vector::dot(x, y),
                _ => 0.0,
            };
            crate::rank::mmr(&rel, req.k, req.diversity, &sim)
                .into_iter()
                .map(|i| pool[i])
                .collect()
        } else {
            order.into_iter().take(req.k).collect()
        };
        let mut hits = Vec::with_capacity(picked.len());
        for i in picked {
            let c = &cands[i];
            let Some(p) = self.products.get(c.ord as usize) else {
                continue;
            };
            let contributions = match (&ctr, &self.head) {
                (Some(_), Some(head)) => head
                    .contributions(&c.features)
                    .map_err(|e| Error::Encoder(format!("ctr head: {e}")))?,
                _ => Vec::new(),
            };
            let global = |r: Option<(f32, usize)>| r.filter(|x| x.1 != usize::MAX);
            hits.push(Hit {
                id: p.id.clone(),
                ord: c.ord,
                score: scores[i],
                breakdown: ScoreBreakdown {
                    bm25: c.fused.bm25.map(|x| x.0),
                    bm25_rank: global(c.fused.bm25).map(|x| x.1),
                    dense: Some(c.features[2]),
                    dense_rank: c.fused.dense.map(|x| x.1),
                    fused: c.fused.score,
                    ctr: ctr.as_ref().map(|v| v[i]),
                    profile: (req.rerank != RerankMode::Off).then_some(profile_terms[i]),
                    contributions,
                },
            });
        }
        Ok(hits)
    }

    /// Reranks candidates found by another engine for `req.query` and `req.user`.
    /// Their scores (or, without scores, their order) stand for retrieval; BM25 is
    /// computed among them. Unknown ids are reported, not fatal.
    pub fn rerank(
        &self,
        req: &SearchRequest,
        candidates: &[ExternalCandidate],
    ) -> Result<RerankResponse> {
        self.check(req)?;
        let mut unknown = Vec::new();
        let mut seen = HashSet::new();
        let mut known: Vec<(u32, f32)> = Vec::new();
        for (i, c) in candidates.iter().enumerate() {
            match self.by_id.get(&c.id) {
                Some(&o) => {
                    if seen.insert(o) {
                        let s = c
                            .score
                            .filter(|s| s.is_finite())
                            .unwrap_or(1.0 / (i as f32 + 1.0));
                        known.push((o, s));
                    }
                }
                None => unknown.push(c.id.clone()),
            }
        }
        if known.is_empty() {
            return Ok(RerankResponse {
                hits: Vec::new(),
                unknown,
            });
        }
        let (as_of, profile) = self.request_profile(req)?;
        let stats = self.read_stats()?;
        let ords: Vec<u32> = known.iter().map(|k| k.0).collect();
        let mut cands = self.candidates_for(req, &ords, profile.as_ref(), &stats, as_of)?;
        let mut given: Vec<f32> = known.iter().map(|k| k.1).collect();
        crate::rank::min_max(&mut given);
        for (c, g) in cands.iter_mut().zip(&given) {
            c.fused.score = *g;
            c.features[4] = *g;
        }
        let mut req = req.clone();
        if req.user.is_none() && req.rerank == RerankMode::Auto && self.head.is_none() {
            req.rerank = RerankMode::Profile;
        }
        let hits = self.rank_candidates(&req, &cands)?;
        Ok(RerankResponse { hits, unknown })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(cat: &[&str], price: Option<f64>, attrs: &[(&str, &str)]) -> Product {
        Product {
            id: "x".into(),
            title: "t".into(),
            description: None,
            category: cat.iter().map(|s| s.to_string()).collect(),
            brand: None,
            price,
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            popularity: None,
        }
    }

    #[test]
    fn filters_match_prefix_price_and_attributes() {
        let p = product(&["Bath", "Faucets"], Some(20.0), &[("color", "chrome")]);
        let mut f = Filters {
            category_prefix: Some(Filters::category("bath")),
            ..Default::default()
        };
        assert!(f.matches(&p));
        f.category_prefix = Some(Filters::category("Bath > Faucets > Extra"));
        assert!(!f.matches(&p));
        f.category_prefix = Some(Filters::category("Kitchen"));
        assert!(!f.matches(&p));
        let f = Filters {
            min_price: Some(10.0),
            max_price: Some(20.0),
            ..Default::default()
        };
        assert!(f.matches(&p));
        assert!(!f.matches(&product(&[], None, &[])));
        let f = Filters {
            attributes: vec![("color".into(), "chrome".into())],
            ..Default::default()
        };
        assert!(f.matches(&p));
        let f = Filters {
            attributes: vec![("color".into(), "black".into())],
            ..Default::default()
        };
        assert!(!f.matches(&p));
    }

    #[test]
    fn bad_price_range_is_rejected() {
        let f = Filters {
            min_price: Some(5.0),
            max_price: Some(1.0),
            ..Default::default()
        };
        assert!(f.validate().is_err());
        let f = Filters {
            min_price: Some(f64::NAN),
            ..Default::default()
        };
        assert!(f.validate().is_err());
    }

    #[test]
    fn modes_parse() {
        assert_eq!("BM25".parse::<Mode>().unwrap(), Mode::Bm25);
        assert!("fuzzy".parse::<Mode>().is_err());
    }
}
