//! What a caller asks: [`SearchRequest`] (with its [`Mode`] and [`Filters`]) and all
//! of its validation.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::catalog::Product;
use crate::error::{Error, Result};
use crate::fuse::Fusion;
use crate::rank::RerankMode;

/// Largest `k` a request may ask for.
pub const MAX_K: usize = 10_000;

/// Largest HNSW search breadth a request may ask for.
pub const MAX_EF_SEARCH: usize = 100_000;

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
///
/// [`Filters::matches`] is the one predicate: retrieval builds its mask with it, and
/// the personalised paths (the shopper's own past items, reranking another engine's
/// candidates) drop every candidate it refuses, so no path returns a product the
/// filters exclude.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    /// Category path prefix, e.g. `["Bath"]` matches "Bath > Faucets". Segments
    /// compare case-insensitively.
    pub category_prefix: Option<Vec<String>>,
    /// Brand, compared case-insensitively after trimming. Products without a brand
    /// never match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
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
            && self.brand.is_none()
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

    /// Checks that the price bounds are finite, not negative (catalog prices are
    /// >= 0, so a negative bound is a mistake, not a filter) and in order.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("min_price", self.min_price), ("max_price", self.max_price)] {
            if let Some(v) = v {
                if !v.is_finite() {
                    return Err(Error::invalid(name, format!("{v} is not a finite number")));
                }
                if v < 0.0 {
                    return Err(Error::invalid(
                        name,
                        format!("{v} is negative; prices are >= 0"),
                    ));
                }
            }
        }
        if let (Some(lo), Some(hi)) = (self.min_price, self.max_price) {
            if lo > hi {
                return Err(Error::invalid(
                    "min_price",
                    format!("{lo} is greater than max_price {hi}"),
                ));
            }
        }
        Ok(())
    }

    /// True when `p` satisfies every condition.
    pub fn matches(&self, p: &Product) -> bool {
        if let Some(prefix) = &self.category_prefix {
            if prefix.len() > p.category.len()
                || !prefix.iter().zip(&p.category).all(|(a, b)| same_text(a, b))
            {
                return false;
            }
        }
        if let Some(brand) = &self.brand {
            let Some(have) = &p.brand else { return false };
            if !same_text(brand, have) {
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

/// Case-insensitive equality of two trimmed texts (ASCII fast path, then Unicode
/// lower-casing), the comparison of category segments and brands.
fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    a.eq_ignore_ascii_case(b) || a.to_lowercase() == b.to_lowercase()
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

    /// Checks every field: `k` and `candidates` within 1..=[`MAX_K`], a valid fusion,
    /// `ef_search` within 1..=100,000, `diversity` within 0..=1, and the filters. Every
    /// way into the engine (search, personalised search, rerank) calls it first.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 || self.k > MAX_K {
            return Err(Error::invalid(
                "k",
                format!("{} is outside 1..={MAX_K}", self.k),
            ));
        }
        if let Some(c) = self.candidates {
            if c == 0 || c > MAX_K {
                return Err(Error::invalid(
                    "candidates",
                    format!("{c} is outside 1..={MAX_K}"),
                ));
            }
        }
        if let Some(f) = &self.fusion {
            f.validate().map_err(|r| Error::invalid("fusion", r))?;
        }
        if let Some(ef) = self.ef_search {
            if ef == 0 || ef > MAX_EF_SEARCH {
                return Err(Error::invalid(
                    "ef_search",
                    format!("{ef} is outside 1..={MAX_EF_SEARCH}"),
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.diversity) {
            return Err(Error::invalid(
                "diversity",
                format!("{} is outside 0..=1", self.diversity),
            ));
        }
        self.filters.validate()
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
    fn brand_filter_ignores_case_and_needs_a_brand() {
        let mut p = product(&["Tools"], Some(99.0), &[]);
        let f = Filters {
            brand: Some(" dewalt ".into()),
            ..Default::default()
        };
        assert!(!f.is_empty());
        assert!(!f.matches(&p), "a product without a brand never matches");
        p.brand = Some("DeWalt".into());
        assert!(f.matches(&p));
        p.brand = Some("Makita".into());
        assert!(!f.matches(&p));
    }

    #[test]
    fn negative_prices_are_rejected_naming_the_field() {
        for (min, max, field) in [
            (Some(-5.0), None, "min_price"),
            (None, Some(-0.01), "max_price"),
            (Some(f64::INFINITY), None, "min_price"),
            (None, Some(f64::NAN), "max_price"),
            (Some(3.0), Some(2.0), "min_price"),
        ] {
            let f = Filters {
                min_price: min,
                max_price: max,
                ..Default::default()
            };
            let err = SearchRequest::new("x").filters(f).validate().unwrap_err();
            assert!(err.is_user_error());
            assert!(
                matches!(&err, Error::InvalidArgument { what, .. } if what == field),
                "{min:?} {max:?}: {err}"
            );
        }
        let ok = Filters {
            min_price: Some(0.0),
            max_price: Some(0.0),
            ..Default::default()
        };
        assert!(ok.validate().is_ok(), "a zero bound is a valid filter");
    }

    #[test]
    fn diversity_outside_unit_interval_is_rejected() {
        for d in [5.0, -0.1, f32::NAN, f32::INFINITY] {
            let mut req = SearchRequest::new("x").user("anyone");
            req.diversity = d;
            let err = req.validate().unwrap_err();
            assert!(
                matches!(&err, Error::InvalidArgument { what, .. } if what == "diversity"),
                "{d}: {err}"
            );
        }
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
