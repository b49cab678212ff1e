//! [`Engine`]: an opened index, and the one place that orchestrates a search.
//!
//! A query goes: filters -> allowed-product mask; text -> BM25 top-`candidates`
//! ([`crate::text`]); text -> embedding ([`crate::encoder`]) -> HNSW top-
//! `candidates` ([`crate::vector`]); both lists -> [`crate::fuse`] -> top-`k` hits
//! with their score breakdown.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::catalog::Product;
use crate::encoder::{DeviceSpec, Encoder, EncoderOptions};
use crate::error::{Error, Result};
use crate::fuse::{self, Candidate, Fused, Fusion};
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
        }
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
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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
    keyword_only: bool,
    fusion: Fusion,
    verify: bool,
}

impl EngineBuilder {
    /// Options for the index in `index_dir`: the model recorded in the manifest, on
    /// the CPU, default fusion, with checksums verified.
    pub fn new(index_dir: impl Into<PathBuf>) -> Self {
        EngineBuilder {
            index_dir: index_dir.into(),
            model_dir: None,
            device: DeviceSpec::Cpu,
            keyword_only: false,
            fusion: Fusion::default(),
            verify: true,
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
        let by_id = products
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i as u32))
            .collect();
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
    pub fn embed_queries(&self, texts: &[&str], progress: &dyn Fn(usize)) -> Result<Vec<Vec<f32>>> {
        let enc = self.encoder.as_ref().ok_or(Error::NoEncoder {
            mode: "dense".into(),
        })?;
        enc.embed_many(texts, crate::encoder::DEFAULT_BATCH_SIZE, progress)
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
                    let enc = self.encoder.as_ref().ok_or(Error::NoEncoder {
                        mode: req.mode.name().into(),
                    })?;
                    owned = enc.embed(&req.query)?;
                    &owned
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
                    },
                })
            })
            .collect()
    }

    /// Searches: retrieval, fusion, top-k.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<Hit>> {
        let cands = self.retrieve(req)?;
        Ok(self.fuse(req, &cands))
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
