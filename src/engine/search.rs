//! Retrieval and fusion: filters become a mask over product rows, BM25 and the dense
//! retriever each return their top candidates, and [`crate::fuse`] merges the two
//! lists into hits.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::live::{Version, View};
use super::{Engine, Filters, Hit, Mode, SearchRequest};
use crate::error::{Error, Result};
use crate::fuse::{self, Candidate, Exact, Fused};
use crate::rank::RerankMode;
use crate::text::DocumentTerms;
use crate::vector::{dot, exact_search, exact_search_filtered};

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

/// The two candidate lists of a query, before fusion (useful to evaluate several
/// fusions from one retrieval).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidates {
    /// BM25 list, best first.
    pub bm25: Vec<Candidate>,
    /// Dense list, best first.
    pub dense: Vec<Candidate>,
    /// Exact scores for absolute fusion (hybrid retrieval only).
    pub exact: Exact,
}

impl Engine {
    /// Searches: retrieval, fusion, top-k; with a user, personalised reranking
    /// from the index's event store as of `req.as_of` (default now).
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<Hit>> {
        // First, so that every request is checked the same way whichever path it
        // takes (personalised, cold start or anonymous).
        req.validate()?;
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

    /// Runs the retrievers `mode` needs and returns their lists (no fusion).
    pub fn retrieve(&self, req: &SearchRequest) -> Result<Candidates> {
        req.validate()?;
        let depth = req.candidates.unwrap_or(DEFAULT_CANDIDATES.max(req.k));
        let view = self.view();
        let mask = self.mask(&req.filters, &view);
        // Products upserted since the generation: scored directly (see live.rs).
        let updated: Vec<(u32, &Version)> = view
            .updated_rows()
            .into_iter()
            .filter_map(|(r, i)| Some((r, self.live.version(i)?)))
            .filter(|(_, v)| req.filters.is_empty() || req.filters.matches(&v.product))
            .collect();
        let mut out = Candidates::default();
        if req.mode != Mode::Dense {
            out.bm25 = self.text.search(&req.query, depth, mask.clone())?;
            if !updated.is_empty() {
                let docs: Vec<(u32, &DocumentTerms)> =
                    updated.iter().map(|(r, v)| (*r, &v.terms)).collect();
                out.bm25
                    .extend(self.text.score_documents(&req.query, &docs)?);
                fuse::sort_candidates(&mut out.bm25);
                out.bm25.truncate(depth);
            }
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
            out.dense = self.dense_search(query_vec, depth, req.ef_search, mask.as_deref())?;
            if !updated.is_empty() {
                out.dense.extend(updated.iter().map(|(r, v)| Candidate {
                    ord: *r,
                    score: dot(query_vec, &v.vector),
                }));
                fuse::sort_candidates(&mut out.dense);
                out.dense.truncate(depth);
            }
            if req.mode == Mode::Hybrid {
                // Whatever fusion this request names: the lists may be fused again
                // another way (evaluation does), and the exact scores cost little.
                out.exact = self.exact_scores(&req.query, query_vec, &out, depth)?;
            }
        }
        Ok(out)
    }

    /// The scores [`Fusion::Absolute`](crate::Fusion::Absolute) needs beyond the two
    /// lists: the query's BM25 reference score, the exact cosine of every BM25-only
    /// candidate (a dot product with its stored vector), and the exact BM25 of every
    /// dense-only candidate (tantivy's scorer seeking their documents; skipped when
    /// the BM25 list is not full, since then every product that matches a term is in
    /// it).
    fn exact_scores(
        &self,
        query: &str,
        query_vec: &[f32],
        lists: &Candidates,
        depth: usize,
    ) -> Result<Exact> {
        let in_bm25: HashSet<u32> = lists.bm25.iter().map(|c| c.ord).collect();
        let in_dense: HashSet<u32> = lists.dense.iter().map(|c| c.ord).collect();
        let dense = lists
            .bm25
            .iter()
            .filter(|c| !in_dense.contains(&c.ord))
            .filter_map(|c| Some((c.ord, dot(query_vec, self.embedding_at(c.ord)?))))
            .collect();
        let dense_only: Vec<u32> = lists
            .dense
            .iter()
            .map(|c| c.ord)
            .filter(|o| !in_bm25.contains(o))
            .collect();
        let bm25 = if lists.bm25.len() < depth {
            HashMap::new()
        } else {
            self.bm25_of(query, &dense_only)?
                .into_iter()
                .map(|c| (c.ord, c.score))
                .collect()
        };
        Ok(Exact {
            bm25_reference: self.text.reference_score(query)?,
            bm25,
            dense,
        })
    }

    /// Fuses candidate lists as `req` asks and returns the hits.
    pub fn fuse(&self, req: &SearchRequest, cands: &Candidates) -> Vec<Hit> {
        let fused: Vec<Fused> = match req.mode {
            Mode::Bm25 => fuse::single(&cands.bm25, true, req.k),
            Mode::Dense => fuse::single(&cands.dense, false, req.k),
            Mode::Hybrid => fuse::fuse(
                &cands.bm25,
                &cands.dense,
                &cands.exact,
                &req.fusion.unwrap_or(self.fusion),
                req.k,
            ),
        };
        fused
            .iter()
            .filter_map(|f| {
                let product = self.product_at(f.ord)?;
                Some(Hit::from_fused(product, f, &cands.exact))
            })
            .collect()
    }

    /// BM25 top-`k` among the products `ords` only, best first ([`fuse::best_first`],
    /// as [`crate::text::TextIndex::search`] orders them).
    pub(super) fn bm25_among(&self, query: &str, ords: &[u32], k: usize) -> Result<Vec<Candidate>> {
        let mut hits = self.bm25_of(query, ords)?;
        fuse::sort_candidates(&mut hits);
        hits.truncate(k);
        Ok(hits)
    }

    /// The BM25 scores of the products in rows `ords` that match the query (any
    /// order): the keyword index's for the generation's unchanged rows, the same
    /// weights applied directly for updated rows, none for deleted ones.
    fn bm25_of(&self, query: &str, ords: &[u32]) -> Result<Vec<Candidate>> {
        let view = self.view();
        let mut base = Vec::with_capacity(ords.len());
        let mut updated: Vec<(u32, &DocumentTerms)> = Vec::new();
        for &o in ords {
            match view.changed(o) {
                None => base.push(o),
                Some(Some(i)) => {
                    if let Some(v) = self.live.version(i) {
                        updated.push((o, &v.terms));
                    }
                }
                Some(None) => {}
            }
        }
        let mut hits = self.text.scores_of(query, &base)?;
        if !updated.is_empty() {
            hits.extend(self.text.score_documents(query, &updated)?);
        }
        Ok(hits)
    }

    /// The mask of the generation's rows a search may return: those `filters` allow
    /// and no live update replaced or deleted; `None` when that is all of them.
    fn mask(&self, filters: &Filters, view: &View) -> Option<Arc<Vec<bool>>> {
        if filters.is_empty() {
            return view.base_mask().cloned();
        }
        let mut mask: Vec<bool> = self.products.iter().map(|p| filters.matches(p)).collect();
        if let Some(live) = view.base_mask() {
            for (m, &l) in mask.iter_mut().zip(live.iter()) {
                *m &= l;
            }
        }
        Some(Arc::new(mask))
    }

    fn dense_search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        mask: Option<&Vec<bool>>,
    ) -> Result<Vec<Candidate>> {
        let dim = self.manifest.model.dim;
        if query.len() != dim {
            return Err(Error::invalid(
                "embedding",
                format!("has {} dims, the index has {dim}", query.len()),
            ));
        }
        let matrix = self.vectors.as_slice();
        let Some(mask) = mask else {
            return self.hnsw.search_rescored(query, k, ef, None, matrix);
        };
        let allowed: Vec<u32> = mask
            .iter()
            .enumerate()
            .filter(|(_, &ok)| ok)
            .map(|(i, _)| i as u32)
            .collect();
        let threshold =
            ((self.products.len() as f64 * EXACT_FILTER_SHARE) as usize).max(EXACT_FILTER_MIN_ROWS);
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
        let found = self
            .hnsw
            .search_rescored(query, k, ef, Some(&pred), matrix)?;
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
    pub(crate) fn exact_dense(&self, query: &[f32], k: usize) -> Vec<(u32, f32)> {
        exact_search(self.vectors.as_slice(), self.manifest.model.dim, query, k)
            .into_iter()
            .map(|n| (n.ord, n.score))
            .collect()
    }

    /// Approximate dense top-k with an explicit `ef` (for recall/latency studies),
    /// as searches run it (an int8 graph's candidates rescored), or with the
    /// graph's own scores only (`rescore` false; the same for a float32 graph).
    pub(crate) fn hnsw_dense(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        rescore: bool,
    ) -> Result<Vec<(u32, f32)>> {
        let found = if rescore {
            self.hnsw
                .search_rescored(query, k, Some(ef), None, self.vectors.as_slice())?
        } else {
            self.hnsw.search(query, k, Some(ef), None)?
        };
        Ok(found.into_iter().map(|n| (n.ord, n.score)).collect())
    }

    /// How the graph stores its vectors.
    pub fn quantization(&self) -> crate::vector::Quantization {
        self.manifest.hnsw.quantization
    }
}
