//! Features of one (query, shopper, item) candidate, for the CTR head.
//!
//! Every feature is cheap to compute at query time from the retrieval lists, the
//! shopper's [`Profile`] and [`ItemStats`], all as of the request's time. The list
//! and its order are part of a trained head's card; [`Feature`] documents
//! each one.

use std::collections::HashSet;

use crate::catalog::Product;
use crate::profile::{ItemStats, Profile};

/// Seconds in a day.
const DAY: f32 = 86_400.0;

/// One feature of a candidate. The declaration order is the vector order, which is
/// part of a trained head's card (its `feature_names`): append new features, and a
/// head trained on another list is refused at load time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    /// `bm25`: BM25 score, 0 when the keyword list missed the item.
    Bm25,
    /// `bm25_rrank`: 1 / BM25 rank, 0 when missed.
    Bm25Rrank,
    /// `dense`: cosine of query and item embeddings (always computed).
    Dense,
    /// `dense_rrank`: 1 / dense rank, 0 when missed.
    DenseRrank,
    /// `fused`: the non-personalised fused score.
    Fused,
    /// `title_overlap`: share of query terms present in the title (analysed, stemmed).
    TitleOverlap,
    /// `profile_sim`: cosine of the shopper's taste vector and the item.
    ProfileSim,
    /// `has_profile`: 1 when the shopper has history.
    HasProfile,
    /// `user_item_count`: ln(1 + past events on this item).
    UserItemCount,
    /// `user_item_buys`: ln(1 + past purchases of this item).
    UserItemBuys,
    /// `user_item_weight`: decayed, kind-weighted past interest in this item.
    UserItemWeight,
    /// `user_item_recency`: exp(-days since last event on the item / 30), 0 if never.
    UserItemRecency,
    /// `category_affinity`: shopper's weight share on the item's top category.
    CategoryAffinity,
    /// `brand_affinity`: shopper's weight share on the item's brand.
    BrandAffinity,
    /// `popularity`: ln(1 + events on the item before the request time + the
    /// catalog's own `popularity` of the item, when it gives one).
    Popularity,
    /// `popularity_recent`: ln(1 + events on the item in the 30 days before).
    PopularityRecent,
    /// `price_gap`: |ln(1 + price) - shopper's usual ln(1 + price)|, 0 if unknown.
    PriceGap,
    /// `user_activity`: ln(1 + the shopper's number of events).
    UserActivity,
    /// `bm25_rel`: BM25 / the best BM25 among the candidates (scale-free across queries).
    Bm25Rel,
    /// `dense_gap`: dense - the best dense among the candidates.
    DenseGap,
    /// `title_len`: ln(1 + analysed title terms).
    TitleLen,
    /// `query_len`: ln(1 + analysed query terms).
    QueryLen,
    /// `title_coverage`: share of the title's distinct terms that the query has.
    TitleCoverage,
    /// `bigram_overlap`: share of the query's adjacent term pairs found adjacent in the title.
    BigramOverlap,
    /// `numeric_match`: share of the query's terms with a digit found in the title (0 if none).
    NumericMatch,
}

impl Feature {
    /// Every feature, in vector order.
    pub const ALL: [Feature; 25] = [
        Feature::Bm25,
        Feature::Bm25Rrank,
        Feature::Dense,
        Feature::DenseRrank,
        Feature::Fused,
        Feature::TitleOverlap,
        Feature::ProfileSim,
        Feature::HasProfile,
        Feature::UserItemCount,
        Feature::UserItemBuys,
        Feature::UserItemWeight,
        Feature::UserItemRecency,
        Feature::CategoryAffinity,
        Feature::BrandAffinity,
        Feature::Popularity,
        Feature::PopularityRecent,
        Feature::PriceGap,
        Feature::UserActivity,
        Feature::Bm25Rel,
        Feature::DenseGap,
        Feature::TitleLen,
        Feature::QueryLen,
        Feature::TitleCoverage,
        Feature::BigramOverlap,
        Feature::NumericMatch,
    ];

    /// The number of features.
    pub const COUNT: usize = Self::ALL.len();

    /// The feature's name, as in a head's card.
    pub const fn name(self) -> &'static str {
        match self {
            Feature::Bm25 => "bm25",
            Feature::Bm25Rrank => "bm25_rrank",
            Feature::Dense => "dense",
            Feature::DenseRrank => "dense_rrank",
            Feature::Fused => "fused",
            Feature::TitleOverlap => "title_overlap",
            Feature::ProfileSim => "profile_sim",
            Feature::HasProfile => "has_profile",
            Feature::UserItemCount => "user_item_count",
            Feature::UserItemBuys => "user_item_buys",
            Feature::UserItemWeight => "user_item_weight",
            Feature::UserItemRecency => "user_item_recency",
            Feature::CategoryAffinity => "category_affinity",
            Feature::BrandAffinity => "brand_affinity",
            Feature::Popularity => "popularity",
            Feature::PopularityRecent => "popularity_recent",
            Feature::PriceGap => "price_gap",
            Feature::UserActivity => "user_activity",
            Feature::Bm25Rel => "bm25_rel",
            Feature::DenseGap => "dense_gap",
            Feature::TitleLen => "title_len",
            Feature::QueryLen => "query_len",
            Feature::TitleCoverage => "title_coverage",
            Feature::BigramOverlap => "bigram_overlap",
            Feature::NumericMatch => "numeric_match",
        }
    }

    /// What the feature is about.
    pub const fn group(self) -> FeatureGroup {
        match self {
            Feature::ProfileSim
            | Feature::HasProfile
            | Feature::UserItemCount
            | Feature::UserItemBuys
            | Feature::UserItemWeight
            | Feature::UserItemRecency
            | Feature::CategoryAffinity
            | Feature::BrandAffinity
            | Feature::PriceGap
            | Feature::UserActivity => FeatureGroup::Shopper,
            Feature::Popularity | Feature::PopularityRecent => FeatureGroup::Popularity,
            _ => FeatureGroup::Query,
        }
    }

    /// The feature named `name` (as in [`Feature::name`]).
    pub fn from_name(name: &str) -> Option<Feature> {
        Feature::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The feature's position in a [`FeatureVector`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// What a feature is about, for explanations: how well the item matches the query,
/// what the shopper's history says about it, or how popular it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FeatureGroup {
    /// Retrieval scores and ranks, and text overlap of query and title.
    Query,
    /// The shopper's taste, past interest in the item, affinities, price habit.
    Shopper,
    /// The item's popularity (events, and the catalog's own figure).
    Popularity,
}

impl FeatureGroup {
    /// The group's name.
    pub const fn name(self) -> &'static str {
        match self {
            FeatureGroup::Query => "query",
            FeatureGroup::Shopper => "shopper",
            FeatureGroup::Popularity => "popularity",
        }
    }
}

/// Per-feature contributions (as in a hit's breakdown) summed by [`FeatureGroup`], in
/// group order; names that are not features are left out.
pub fn contributions_by_group(contributions: &[(String, f32)]) -> Vec<(FeatureGroup, f32)> {
    let mut sums = std::collections::BTreeMap::new();
    for (name, c) in contributions {
        if let Some(f) = Feature::from_name(name) {
            *sums.entry(f.group()).or_insert(0.0) += c;
        }
    }
    sums.into_iter().collect()
}

/// Version of what the features mean. A head is trained for one version: names alone
/// do not say that a feature's meaning changed, so opening an index ignores (with a
/// warning) a head whose card records another version. History: 1, the first list;
/// 2, `fused` is absolute fusion's score and `popularity` counts the catalog's
/// popularity (issue #8). Bump it with any change to how a feature is computed.
pub const FEATURE_SET_VERSION: u64 = 2;

/// Names of the features, in vector order (from [`Feature::name`]).
pub const FEATURE_NAMES: [&str; Feature::COUNT] = {
    let mut names = [""; Feature::COUNT];
    let mut i = 0;
    while i < Feature::COUNT {
        names[i] = Feature::ALL[i].name();
        i += 1;
    }
    names
};

/// Number of features.
pub const NUM_FEATURES: usize = Feature::COUNT;

/// The features of one candidate, addressed by [`Feature`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FeatureVector([f32; Feature::COUNT]);

impl FeatureVector {
    /// All zeros.
    pub fn zeros() -> Self {
        Self::default()
    }

    /// The value of `f`.
    pub fn get(&self, f: Feature) -> f32 {
        self.0[f.index()]
    }

    /// Sets the value of `f`.
    pub fn set(&mut self, f: Feature, value: f32) {
        self.0[f.index()] = value;
    }

    /// The values in vector order (what the head reads).
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }
}

/// Everything about the query and shopper that does not depend on the item.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueryContext<'a> {
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
pub(crate) struct CandidateInput<'a> {
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
pub(crate) fn compute(ctx: &QueryContext<'_>, c: &CandidateInput<'_>) -> FeatureVector {
    let rr = |r: Option<usize>| r.map_or(0.0, |r| 1.0 / r as f32);
    let dense = c.dense;
    // Query terms found in the title.
    let shared = ctx
        .terms
        .iter()
        .filter(|t| c.title_terms.contains(*t))
        .count() as f32;
    let overlap = if ctx.terms.is_empty() {
        0.0
    } else {
        shared / ctx.terms.len() as f32
    };
    let mut f = FeatureVector::zeros();
    f.set(Feature::Bm25, c.bm25.map_or(0.0, |b| b.0));
    f.set(Feature::Bm25Rrank, rr(c.bm25.map(|b| b.1)));
    f.set(Feature::Dense, dense);
    f.set(Feature::DenseRrank, rr(c.dense_rank));
    f.set(Feature::Fused, c.fused);
    f.set(Feature::TitleOverlap, overlap);
    if let Some(p) = ctx.profile.filter(|p| !p.is_empty()) {
        f.set(
            Feature::ProfileSim,
            match (&p.embedding, c.embedding) {
                (Some(u), Some(e)) => dot(u, e),
                _ => 0.0,
            },
        );
        f.set(Feature::HasProfile, 1.0);
        if let Some(h) = p.items.get(&c.ord) {
            f.set(Feature::UserItemCount, (h.count as f32).ln_1p());
            f.set(Feature::UserItemBuys, (h.purchases as f32).ln_1p());
            f.set(Feature::UserItemWeight, h.weight);
            f.set(
                Feature::UserItemRecency,
                (-((ctx.as_of - h.last_ts).max(0) as f32 / DAY) / 30.0).exp(),
            );
        }
        if let Some(top) = c.product.category.first() {
            f.set(
                Feature::CategoryAffinity,
                p.categories
                    .get(&top.to_lowercase())
                    .copied()
                    .unwrap_or(0.0),
            );
        }
        if let Some(b) = &c.product.brand {
            f.set(
                Feature::BrandAffinity,
                p.brands.get(&b.to_lowercase()).copied().unwrap_or(0.0),
            );
        }
        if let (Some(lp), Some(price)) = (p.log_price, c.product.price) {
            f.set(Feature::PriceGap, ((price as f32).ln_1p() - lp).abs());
        }
        f.set(Feature::UserActivity, (p.events as f32).ln_1p());
    }
    // The catalog's popularity (past sales, ratings) counts like events seen before;
    // summed and logged in f64, so a huge value stays finite.
    let prior = c.product.popularity.unwrap_or(0.0);
    let seen = ctx.stats.count_before(c.ord, ctx.as_of) as f64 + prior;
    f.set(Feature::Popularity, seen.ln_1p() as f32);
    f.set(
        Feature::PopularityRecent,
        (ctx.stats.recent_before(c.ord, ctx.as_of) as f32).ln_1p(),
    );
    f.set(
        Feature::Bm25Rel,
        if ctx.max_bm25 > 0.0 {
            f.get(Feature::Bm25) / ctx.max_bm25
        } else {
            0.0
        },
    );
    f.set(
        Feature::DenseGap,
        if ctx.query_vec.is_some() {
            dense - ctx.max_dense
        } else {
            0.0
        },
    );
    f.set(Feature::TitleLen, (c.title_terms.len() as f32).ln_1p());
    f.set(Feature::QueryLen, (ctx.terms.len() as f32).ln_1p());
    f.set(
        Feature::TitleCoverage,
        if c.title_terms.is_empty() {
            0.0
        } else {
            shared / c.title_terms.len() as f32
        },
    );
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
        f.set(Feature::BigramOverlap, hits as f32 / (q.len() - 1) as f32);
    }
    let numeric: Vec<&String> = q
        .iter()
        .filter(|t| t.chars().any(|ch| ch.is_ascii_digit()))
        .collect();
    if !numeric.is_empty() {
        f.set(
            Feature::NumericMatch,
            numeric
                .iter()
                .filter(|t| c.title_terms.contains(t.as_str()))
                .count() as f32
                / numeric.len() as f32,
        );
    }
    f
}

/// The dense feature of a candidate: the query/item cosine, 0 without either.
pub(crate) fn dense_score(query_vec: Option<&[f32]>, embedding: Option<&[f32]>) -> f32 {
    match (query_vec, embedding) {
        (Some(q), Some(e)) => dot(q, e),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_positions_come_from_the_enum() {
        for (i, f) in Feature::ALL.iter().enumerate() {
            assert_eq!(f.index(), i, "{f:?}");
            assert_eq!(FEATURE_NAMES[i], f.name());
        }
        let distinct: HashSet<&str> = FEATURE_NAMES.iter().copied().collect();
        assert_eq!(distinct.len(), NUM_FEATURES);
        let mut v = FeatureVector::zeros();
        v.set(Feature::Fused, 0.5);
        assert_eq!(v.get(Feature::Fused), 0.5);
        assert_eq!(v.as_slice()[Feature::Fused.index()], 0.5);
        assert_eq!(v.as_slice().iter().filter(|x| **x != 0.0).count(), 1);
    }

    #[test]
    fn contributions_sum_by_group() {
        let c = vec![
            ("bm25".to_string(), 0.5),
            ("profile_sim".to_string(), 0.25),
            ("user_item_weight".to_string(), 0.5),
            ("popularity".to_string(), -0.1),
            ("not_a_feature".to_string(), 9.0),
        ];
        assert_eq!(
            contributions_by_group(&c),
            vec![
                (FeatureGroup::Query, 0.5),
                (FeatureGroup::Shopper, 0.75),
                (FeatureGroup::Popularity, -0.1)
            ]
        );
        assert_eq!(Feature::from_name("price_gap"), Some(Feature::PriceGap));
    }

    #[test]
    fn catalog_popularity_counts_like_earlier_events() {
        let terms = HashSet::new();
        let stats = ItemStats::default();
        let ctx = QueryContext {
            terms: &terms,
            ordered_terms: &[],
            query_vec: None,
            profile: None,
            stats: &stats,
            as_of: 0,
            max_bm25: 0.0,
            max_dense: 0.0,
        };
        let mut product = Product::new("p1", "Gas Grill");
        let popularity = |product: &Product| {
            let input = CandidateInput {
                ord: 0,
                product,
                embedding: None,
                bm25: None,
                dense: 0.0,
                dense_rank: None,
                fused: 0.0,
                title_terms: &terms,
                title_seq: &[],
            };
            compute(&ctx, &input).get(Feature::Popularity)
        };
        assert_eq!(popularity(&product), 0.0);
        product.popularity = Some(9.0);
        assert!((popularity(&product) - 10f32.ln()).abs() < 1e-6);
        product.popularity = Some(f64::MAX);
        assert!(popularity(&product).is_finite());
    }
}
