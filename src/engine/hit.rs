//! What a search returns: [`Hit`]s, each with its [`ScoreBreakdown`].

use serde::{Deserialize, Serialize};

use crate::catalog::Product;
use crate::fuse::{Exact, Fused};

/// Why a hit ranks where it does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreBreakdown {
    /// BM25 score: from the keyword list, or (hybrid search with absolute fusion)
    /// the exact score fusion used for a product only the dense list found.
    pub bm25: Option<f32>,
    /// 1-based rank in the keyword list, when the list has the product.
    pub bm25_rank: Option<usize>,
    /// Cosine similarity of query and product embeddings: from the dense list, or
    /// (hybrid search with absolute fusion) computed for a product only the keyword
    /// list found.
    pub dense: Option<f32>,
    /// 1-based rank in the dense list, when the list has the product.
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
    /// Product id: the stable way to refer to the product.
    pub id: String,
    /// Final score (higher is better).
    pub score: f32,
    /// Score breakdown.
    pub breakdown: ScoreBreakdown,
    /// The product's row in this index: valid for this opened engine only (a rebuild
    /// renumbers), so it stays inside the crate.
    #[serde(skip)]
    pub(crate) ord: u32,
}

impl Hit {
    /// The hit of a fused candidate: each retriever's score (from its list, or the
    /// exact one fusion used) and rank (only when its list has the product).
    pub(crate) fn from_fused(product: &Product, f: &Fused, exact: &Exact) -> Hit {
        Hit {
            id: product.id.clone(),
            score: f.score,
            breakdown: ScoreBreakdown {
                bm25: exact.bm25_of(f),
                bm25_rank: f.bm25.map(|x| x.1),
                dense: exact.dense_of(f),
                dense_rank: f.dense.map(|x| x.1),
                fused: f.score,
                ..ScoreBreakdown::default()
            },
            ord: f.ord,
        }
    }
}
