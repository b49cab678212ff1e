//! Personalised ranking: a shopper's candidates (the hybrid top plus their own past
//! items that match), their features, scoring by the CTR head or the fallback formula,
//! the diversity pass, and reranking candidates another engine found.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{Engine, Filters, Hit, Mode, ScoreBreakdown, SearchRequest};
use crate::error::{Error, Result};
use crate::fuse::{self, min_max, Fused};
use crate::profile::{Event, ItemStats, Profile};
use crate::rank::features::{self, CandidateInput, QueryContext};
use crate::rank::{
    self, CandidateQuery, CandidateSource, Feature, FeatureVector, RerankMode, ScoredCandidate,
};

/// Candidates reranked for a personalised request when the request does not say.
pub const DEFAULT_RERANK_DEPTH: usize = 200;

/// Extra candidates taken from the shopper's own past items that match the query
/// (BM25 restricted to those items), so that a repurchase is always in reach even
/// for a broad query.
pub const PERSONAL_CANDIDATES: usize = 50;

/// A candidate found by another engine, for [`Engine::rerank`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalCandidate {
    /// Product id. Deserialises from a string or an integer (as the catalog readers do:
    /// `17` is the id `"17"`).
    #[serde(deserialize_with = "crate::catalog::deserialize_id")]
    pub id: String,
    /// The other engine's score (higher is better), if it has one; must be finite.
    #[serde(default)]
    pub score: Option<f32>,
}

/// Why a candidate list cannot be reranked (see [`CandidateCheck`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CandidateProblem {
    /// The id is empty (or only whitespace).
    #[error("must not be empty")]
    EmptyId,
    /// The id holds a control character ([`crate::catalog::id_control_char`]).
    #[error("{id:?} contains the control character {ch:?}; product ids are printable text")]
    ControlCharacter {
        /// The offending id.
        id: String,
        /// The first control character in it.
        ch: char,
    },
    /// The score is NaN or infinite.
    #[error("{score} is not a finite number; give a finite score, or none to rank by position")]
    NonFiniteScore {
        /// The offending score.
        score: f32,
    },
    /// The same id is listed twice: its two scores would contradict each other.
    #[error("{id:?} is listed twice (first at {first}); list each candidate once")]
    DuplicateId {
        /// The repeated id.
        id: String,
        /// Where it was first listed (`line 3`, `candidates[0]`).
        first: String,
    },
}

impl CandidateProblem {
    /// The candidate field at fault: `"id"` or `"score"`.
    pub fn field(&self) -> &'static str {
        match self {
            CandidateProblem::NonFiniteScore { .. } => "score",
            _ => "id",
        }
    }
}

/// The one set of rules a candidate list for [`Engine::rerank`] must follow, checked one
/// candidate at a time so a file reader can name the line: a non-empty id without control
/// characters, a finite score when there is one, and no id twice.
#[derive(Debug)]
pub struct CandidateCheck {
    seen: HashMap<String, usize>,
    lines: bool,
}

impl CandidateCheck {
    /// A check whose positions are 1-based line numbers of a file.
    pub fn lines() -> Self {
        CandidateCheck {
            seen: HashMap::new(),
            lines: true,
        }
    }

    /// A check whose positions are 0-based indices into a list of candidates.
    pub fn indices() -> Self {
        CandidateCheck {
            seen: HashMap::new(),
            lines: false,
        }
    }

    /// Checks the candidate at `position` (a line number or an index, as constructed).
    pub fn check(
        &mut self,
        position: usize,
        c: &ExternalCandidate,
    ) -> Result<(), CandidateProblem> {
        if c.id.trim().is_empty() {
            return Err(CandidateProblem::EmptyId);
        }
        if let Some(ch) = crate::catalog::id_control_char(&c.id) {
            return Err(CandidateProblem::ControlCharacter {
                id: c.id.clone(),
                ch,
            });
        }
        if let Some(score) = c.score.filter(|s| !s.is_finite()) {
            return Err(CandidateProblem::NonFiniteScore { score });
        }
        if let Some(&first) = self.seen.get(&c.id) {
            return Err(CandidateProblem::DuplicateId {
                id: c.id.clone(),
                first: if self.lines {
                    format!("line {first}")
                } else {
                    format!("candidates[{first}]")
                },
            });
        }
        self.seen.insert(c.id.clone(), position);
        Ok(())
    }
}

/// The answer of [`Engine::rerank`].
#[derive(Debug, Clone, Serialize)]
pub struct RerankResponse {
    /// The reranked hits.
    pub hits: Vec<Hit>,
    /// Candidate ids not in this index (reported, not fatal).
    pub unknown: Vec<String>,
}

impl Engine {
    /// Reranks candidates found by another engine for `req.query` and `req.user`.
    /// Their scores (or, without scores, their order) stand for retrieval; BM25 is
    /// computed among them. Unknown ids are reported, not fatal; candidates that
    /// `req.filters` exclude are dropped before ranking, as a search would never have
    /// found them.
    ///
    /// Errors: the request's own validation, and a list that breaks a
    /// [`CandidateCheck`] rule (an empty id or one with a control character, a NaN or
    /// infinite score, an id listed twice), named as `candidates[i].id` or `.score`.
    pub fn rerank(
        &self,
        req: &SearchRequest,
        candidates: &[ExternalCandidate],
    ) -> Result<RerankResponse> {
        req.validate()?;
        let mut check = CandidateCheck::indices();
        for (i, c) in candidates.iter().enumerate() {
            check.check(i, c).map_err(|p| {
                Error::invalid(format!("candidates[{i}].{}", p.field()), p.to_string())
            })?;
        }
        let mut unknown = Vec::new();
        let mut known: Vec<(u32, f32)> = Vec::new();
        for (i, c) in candidates.iter().enumerate() {
            match self.row_of(&c.id) {
                Some(o) => {
                    if self.allowed(&req.filters, o) {
                        known.push((o, c.score.unwrap_or(1.0 / (i as f32 + 1.0))));
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
        min_max(&mut given);
        for (c, g) in cands.iter_mut().zip(&given) {
            c.fused.score = *g;
            c.features.set(Feature::Fused, *g);
        }
        let mut req = req.clone();
        if req.user.is_none() && req.rerank == RerankMode::Auto && self.head.is_none() {
            req.rerank = RerankMode::Profile;
        }
        let hits = self.rank_candidates(&req, &cands)?;
        Ok(RerankResponse { hits, unknown })
    }

    /// Ranks a personalised request with an explicit profile and statistics (the
    /// engine's own store is not read). `mode` comes from `req.rerank`.
    pub(crate) fn personalize(
        &self,
        req: &SearchRequest,
        profile: Option<&Profile>,
        stats: &ItemStats,
        as_of: i64,
    ) -> Result<Vec<Hit>> {
        req.validate()?;
        let cands = self.personal_candidates(req, profile, stats, as_of)?;
        self.rank_candidates(req, &cands)
    }

    /// The candidates of a personalised request with their features: the
    /// non-personalised hybrid top-`depth` plus the shopper's own past items that
    /// match the query. Training and evaluation use this directly.
    pub(crate) fn personal_candidates(
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
            Mode::Hybrid => fuse::fuse(&lists.bm25, &lists.dense, &lists.exact, &fusion, depth),
            _ => fuse::single(&lists.bm25, true, depth),
        };
        if let Some(p) = profile.filter(|p| !p.is_empty()) {
            // Only the shopper's items the request's filters allow: retrieval above
            // applied them through its mask, and these must obey the same predicate.
            let items: Vec<u32> = p
                .items
                .keys()
                .copied()
                .filter(|&o| self.allowed(&req.filters, o))
                .collect();
            let mine = self.bm25_among(&req.query, &items, PERSONAL_CANDIDATES)?;
            let have: HashSet<u32> = fused.iter().map(|f| f.ord).collect();
            for h in mine.into_iter().filter(|h| !have.contains(&h.ord)) {
                fused.push(Fused {
                    ord: h.ord,
                    score: 0.0,
                    // A rank within the shopper's items is not a rank in the catalog:
                    // "just beyond the list".
                    bm25: Some((h.score, depth + 1)),
                    dense: None,
                });
            }
        }
        Ok(self.featurize(req, query_vec.as_deref(), fused, profile, stats, as_of))
    }

    /// Features of the listed products as candidates for `req` (in that order):
    /// BM25 is computed among them, the dense score exactly, and each one's list
    /// position stands for its dense rank; the fused score is 0 (callers that have
    /// a retrieval score set it).
    pub(crate) fn candidates_for(
        &self,
        req: &SearchRequest,
        ords: &[u32],
        profile: Option<&Profile>,
        stats: &ItemStats,
        as_of: i64,
    ) -> Result<Vec<ScoredCandidate>> {
        let query_vec = self.query_vec(req)?;
        let bm25: HashMap<u32, (f32, usize)> = self
            .bm25_among(&req.query, ords, ords.len())?
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

    /// Scores candidates by `req.rerank`, applies the diversity pass, keeps `k`.
    pub(crate) fn rank_candidates(
        &self,
        req: &SearchRequest,
        cands: &[ScoredCandidate],
    ) -> Result<Vec<Hit>> {
        let feats: Vec<FeatureVector> = cands.iter().map(|c| c.features).collect();
        let (fallback, profile_terms) = rank::fallback_scores(&feats, &self.fallback);
        let use_head = match req.rerank {
            RerankMode::Ctr => {
                if self.head.is_none() {
                    return Err(Error::NoHead {
                        index: self.dir.clone(),
                    });
                }
                true
            }
            RerankMode::Auto => self.head.is_some(),
            RerankMode::Profile | RerankMode::Off => false,
        };
        let (scores, ctr): (Vec<f32>, Option<Vec<f32>>) = match (&self.head, use_head, req.rerank) {
            (_, _, RerankMode::Off) => (cands.iter().map(|c| c.fused.score).collect(), None),
            (Some(head), true, _) => {
                let rows: Vec<Vec<f32>> = feats.iter().map(|f| f.as_slice().to_vec()).collect();
                let p = head
                    .predict(&rows)
                    .map_err(|e| Error::Scoring(Box::new(e)))?;
                (p.clone(), Some(p))
            }
            _ => (fallback, None),
        };
        let mut order: Vec<usize> = (0..cands.len()).collect();
        order.sort_by(|&a, &b| fuse::best_first(scores[a], cands[a].ord, scores[b], cands[b].ord));
        let picked: Vec<usize> = if req.diversity > 0.0 {
            let pool: Vec<usize> = order.iter().copied().take((req.k * 3).max(req.k)).collect();
            let rel: Vec<f32> = pool.iter().map(|&i| scores[i]).collect();
            let sim = |a: usize, b: usize| match (
                self.embedding_at(cands[pool[a]].ord),
                self.embedding_at(cands[pool[b]].ord),
            ) {
                (Some(x), Some(y)) => crate::vector::dot(x, y),
                _ => 0.0,
            };
            rank::mmr(&rel, req.k, req.diversity, &sim)
                .into_iter()
                .map(|i| pool[i])
                .collect()
        } else {
            order.into_iter().take(req.k).collect()
        };
        let mut hits = Vec::with_capacity(picked.len());
        for i in picked {
            let c = &cands[i];
            let Some(p) = self.product_at(c.ord) else {
                continue;
            };
            let contributions = match (&ctr, &self.head) {
                (Some(_), Some(head)) => head
                    .contributions(c.features.as_slice())
                    .map_err(|e| Error::Scoring(Box::new(e)))?,
                _ => Vec::new(),
            };
            hits.push(Hit {
                id: p.id.clone(),
                score: scores[i],
                breakdown: ScoreBreakdown {
                    bm25: c.fused.bm25.map(|x| x.0),
                    bm25_rank: c.fused.bm25.map(|x| x.1),
                    dense: Some(c.features.get(Feature::Dense)),
                    dense_rank: c.fused.dense.map(|x| x.1),
                    fused: c.fused.score,
                    ctr: ctr.as_ref().map(|v| v[i]),
                    profile: (req.rerank != RerankMode::Off).then_some(profile_terms[i]),
                    contributions,
                },
                ord: c.ord,
            });
        }
        Ok(hits)
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
            .map(|f| features::dense_score(query_vec, self.embedding_at(f.ord)))
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
                let product = self.product_at(f.ord)?;
                let title_seq = self.title_seq(f.ord);
                let title_terms: HashSet<String> = title_seq.iter().cloned().collect();
                let input = CandidateInput {
                    ord: f.ord,
                    product,
                    embedding: self.embedding_at(f.ord),
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

    /// Whether the product at `ord` passes `filters` ([`Filters::matches`], the
    /// predicate retrieval's mask is built from).
    fn allowed(&self, filters: &Filters, ord: u32) -> bool {
        filters.is_empty() || self.product_at(ord).is_some_and(|p| filters.matches(p))
    }

    fn query_vec(&self, req: &SearchRequest) -> Result<Option<Vec<f32>>> {
        match (&req.embedding, &self.encoder) {
            (Some(v), _) => Ok(Some(v.clone())),
            (None, Some(_)) => Ok(Some(self.embed_query(&req.query, req.mode)?.to_vec())),
            (None, None) => Ok(None),
        }
    }

    /// The analysed title terms of `ord`, in order (repeats kept).
    fn title_seq(&self, ord: u32) -> Vec<String> {
        self.product_at(ord)
            .map(|p| self.text.analyze_all(&p.title))
            .unwrap_or_default()
    }
}

impl CandidateSource for Engine {
    fn ord_of(&self, id: &str) -> Option<u32> {
        self.row_of(id)
    }

    fn id_of(&self, ord: u32) -> Option<&str> {
        self.product_at(ord).map(|p| p.id.as_str())
    }

    fn embed_distinct(&self, texts: &[&str]) -> Result<HashMap<String, Vec<f32>>> {
        Engine::embed_distinct(self, texts, &|_| {})
    }

    fn profile_from(&self, user: &str, events: &[Event], as_of: i64) -> Profile {
        Engine::profile_from(self, user, events, as_of)
    }

    fn retrieved(
        &self,
        query: &CandidateQuery<'_>,
        profile: Option<&Profile>,
        stats: &ItemStats,
        as_of: i64,
    ) -> Result<Vec<ScoredCandidate>> {
        self.personal_candidates(&candidate_request(query), profile, stats, as_of)
    }

    fn listed(
        &self,
        query: &CandidateQuery<'_>,
        ords: &[u32],
        profile: Option<&Profile>,
        stats: &ItemStats,
        as_of: i64,
    ) -> Result<Vec<ScoredCandidate>> {
        self.candidates_for(&candidate_request(query), ords, profile, stats, as_of)
    }
}

/// The request training asks candidates for: `depth` candidates of the default
/// hybrid retrieval.
fn candidate_request(q: &CandidateQuery<'_>) -> SearchRequest {
    let mut req = SearchRequest::new(q.text).k(q.depth);
    req.candidates = Some(q.depth);
    req.embedding = q.embedding.map(<[f32]>::to_vec);
    req
}
