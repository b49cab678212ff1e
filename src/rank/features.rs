//! Features of one (query, shopper, item) candidate, for the CTR head.
//!
//! Every feature is cheap to compute at query time from the retrieval lists, the
//! shopper's [`Profile`] and [`ItemStats`], all as of the request's time. The list
//! and its order are part of a trained head's card; [`FEATURE_NAMES`] documents
//! each one.

use std::collections::HashSet;

use crate::catalog::Product;
use crate::profile::{ItemStats, Profile};

/// Seconds in a day.
const DAY: f32 = 86_400.0;

/// Names of the features, in vector order.
pub const FEATURE_NAMES: [&str; 25] = [
    "bm25",              // BM25 score, 0 when the keyword list missed the item
    "bm25_rrank",        // 1 / BM25 rank, 0 when missed
    "dense",             // cosine of query and item embeddings (always computed)
    "dense_rrank",       // 1 / dense rank, 0 when missed
    "fused",             // the non-personalised fused score
    "title_overlap",     // share of query terms present in the title (analysed, stemmed)
    "profile_sim",       // cosine of the shopper's taste vector and the item
    "has_profile",       // 1 when the shopper has history
    "user_item_count",   // ln(1 + past events on this item)
    "user_item_buys",    // ln(1 + past purchases of this item)
    "user_item_weight",  // decayed, kind-weighted past interest in this item
    "user_item_recency", // exp(-days since last event on the item / 30), 0 if never
    "category_affinity", // shopper's weight share on the item's top category
    "brand_affinity",    // shopper's weight share on the item's brand
    "popularity",        // ln(1 + events on the item before the request time)
    "popularity_recent", // ln(1 + events on the item in the 30 days before)
    "price_gap",         // |ln(1 + price) - shopper's usual ln(1 + price)|, 0 if unknown
    "user_activity",     // ln(1 + the shopper's number of events)
    "bm25_rel",          // BM25 / the best BM25 among the candidates (scale-free across queries)
    "dense_gap",         // dense - the best dense among the candidates
    "title_len",         // ln(1 + analysed title terms)
    "query_len",         // ln(1 + analysed query terms)
    "title_coverage",    // share of the title's distinct terms that the query has
    "bigram_overlap",    // share of the query's adjacent term pairs found adjacent in the title
    "numeric_match",     // share of the query's terms with a digit found in the title (0 if none)
];

/// Number of features.
pub const NUM_FEATURES: usize = FEATURE_NAMES.len();

/// Everything about the query and shopper that does not depend on the item.
#[derive(Debug, Clone, Copy)]
pub struct QueryContext<'a> {
    /// The query's analysed terms (distinct).
    pub terms: &'a HashSet<String>,
    /// The query's analysed terms in order.
    pub ordered_terms: &'a [String],
    /// The query embedding, when there is one.
    pub query_vec: Option<&'a [f32]>,
    /// The shopper's profile (None: anonymous).
    pub profile: Option<&'a Profile>,
    /// Item popularity.
    pub stats: &'a ItemStats,
    /// Request time (Unix seconds).
    pub as_of: i64,
    /// Best BM25 score among the candidates (0 when none matched).
    pub max_bm25: f32,
    /// Best dense score among the candidates.
    pub max_dense: f32,
}

/// What retrieval said about one candidate.
#[derive(Debug, Clone, Copy)]
pub struct CandidateInput<'a> {
    /// Product ordinal.
    pub ord: u32,
    /// The product.
    pub product: &'a Product,
    /// Its stored embedding.
    pub embedding: Option<&'a [f32]>,
    /// BM25 score and rank.
    pub bm25: Option<(f32, usize)>,
    /// Cosine of query and item embeddings ([`dense_score`]; 0 without either).
    pub dense: f32,
    /// Dense rank.
    pub dense_rank: Option<usize>,
    /// Fused score.
    pub fused: f32,
    /// Analysed terms of the title (distinct).
    pub title_terms: &'a HashSet<String>,
    /// Analysed terms of the title in order.
    pub title_seq: &'a [String],
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    crate::vector::dot(a, b)
}

/// The feature vector of one candidate.
pub fn compute(ctx: &QueryContext<'_>, c: &CandidateInput<'_>) -> [f32; NUM_FEATURES] {
    let rr = |r: Option<usize>| r.map_or(0.0, |r| 1.0 / r as f32);
    let dense = c.dense;
    let overlap = if ctx.terms.is_empty() {
        0.0
    } else {
        ctx.terms
            .iter()
            .filter(|t| c.title_terms.contains(*t))
            .count() as f32
            / ctx.terms.len() as f32
    };
    let mut f = [0.0f32; NUM_FEATURES];
    f[0] = c.bm25.map_or(0.0, |b| b.0);
    f[1] = rr(c.bm25.map(|b| b.1));
    f[2] = dense;
    f[3] = rr(c.dense_rank);
    f[4] = c.fused;
    f[5] = overlap;
    if let Some(p) = ctx.profile.filter(|p| !p.is_empty()) {
        f[6] = match (&p.embedding, c.embedding) {
            (Some(u), Some(e)) => dot(u, e),
            _ => 0.0,
        };
        f[7] = 1.0;
        if let Some(h) = p.items.get(&c.ord) {
            f[8] = (h.count as f32).ln_1p();
            f[9] = (h.purchases as f32).ln_1p();
            f[10] = h.weight;
            f[11] = (-((ctx.as_of - h.last_ts).max(0) as f32 / DAY) / 30.0).exp();
        }
        if let Some(top) = c.product.category.first() {
            f[12] = p
                .categories
                .get(&top.to_lowercase())
                .copied()
                .unwrap_or(0.0);
        }
        if let Some(b) = &c.product.brand {
            f[13] = p.brands.get(&b.to_lowercase()).copied().unwrap_or(0.0);
        }
        if let (Some(lp), Some(price)) = (p.log_price, c.product.price) {
            f[16] = ((price as f32).ln_1p() - lp).abs();
        }
        f[17] = (p.events as f32).ln_1p();
    }
    f[14] = (ctx.stats.count_before(c.ord, ctx.as_of) as f32).ln_1p();
    f[15] = (ctx.stats.recent_before(c.ord, ctx.as_of) as f32).ln_1p();
    f[18] = if ctx.max_bm25 > 0.0 {
        f[0] / ctx.max_bm25
    } else {
        0.0
    };
    f[19] = if ctx.query_vec.is_some() {
        dense - ctx.max_dense
    } else {
        0.0
    };
    f[20] = (c.title_terms.len() as f32).ln_1p();
    f[21] = (ctx.terms.len() as f32).ln_1p();
    let shared = ctx
        .terms
        .iter()
        .filter(|t| c.title_terms.contains(*t))
        .count() as f32;
    f[22] = if c.title_terms.is_empty() {
        0.0
    } else {
        shared / c.title_terms.len() as f32
    };
    let q = ctx.ordered_terms;
    if q.len() > 1 {
        let pairs: HashSet<(&str, &str)> = c
            .title_seq
            .windows(2)
            .map(|w| (w[0].as_str(), w[1].as_str()))
            .collect();
        let hits = q
            .windows(2)
            .filter(|w| pairs.contains(&(w[0].as_str(), w[1].as_str())))
            .count();
        f[23] = hits as f32 / (q.len() - 1) as f32;
    }
    let numeric: Vec<&String> = q
        .iter()
        .filter(|t| t.chars().any(|ch| ch.is_ascii_digit()))
        .collect();
    if !numeric.is_empty() {
        f[24] = numeric
            .iter()
            .filter(|t| c.title_terms.contains(t.as_str()))
            .count() as f32
            / numeric.len() as f32;
    }
    f
}

/// The dense feature of a candidate: the query/item cosine, 0 without either.
pub fn dense_score(query_vec: Option<&[f32]>, embedding: Option<&[f32]>) -> f32 {
    match (query_vec, embedding) {
        (Some(q), Some(e)) => dot(q, e),
        _ => 0.0,
    }
}
