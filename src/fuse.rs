//! Fusion of the keyword and dense candidate lists. Pure functions, no I/O.
//!
//! Three methods:
//!
//! * **Absolute** (the default): every candidate of either list is scored by both
//!   retrievers, each on a scale that does not depend on the other candidates:
//!   `score(d) = w_bm25 * bm25(d) / R(q) + w_dense * cos(q, d)`, where `R(q)` is the
//!   query's BM25 reference score ([`crate::text::TextIndex::reference_score`]: what
//!   the best conceivable product would score, each query term once in every field
//!   where it occurs, at average length) and `cos` the cosine of the embeddings. Both
//!   terms read "1 = a perfect match" (the query as a title in a title-only catalog;
//!   the same meaning), so equal weights are the principled default. A candidate
//!   that only one list found gets its exact score from the other retriever
//!   ([`Exact`]) rather than 0, so a product's fused score is a function of the query
//!   and the product alone. Min-max fusion, by contrast, maps the weakest candidate
//!   of each list to 0 and a lone, weak keyword match to 1 (a microwave above two
//!   grills for "something to cook burgers outside"), and its best weights moved
//!   from one catalog to another.
//! * **Reciprocal rank fusion** (Cormack, Clarke & Büttcher, SIGIR 2009):
//!   `score(d) = sum_i w_i / (k + rank_i(d))`, ranks from 1, a list that misses `d`
//!   contributes 0. Only ranks matter, so no score calibration is needed.
//! * **Weighted sum of min-max normalised scores** (the default before, kept for
//!   comparison): each list's scores are min-max normalised to [0, 1] over its
//!   candidates ([`min_max`]), a missing score counts as 0, and
//!   `score(d) = w_bm25 * bm25'(d) + w_dense * dense'(d)`.
//!
//! Ties are broken by the smaller product ordinal so results are deterministic.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// How two ranked lists become one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Fusion {
    /// BM25 over the query's reference score plus cosine, every candidate scored by
    /// both retrievers (see the module docs).
    Absolute {
        /// Weight of BM25 / reference score.
        bm25: f32,
        /// Weight of the cosine.
        dense: f32,
    },
    /// Reciprocal rank fusion with constant `k` and per-list weights.
    Rrf {
        /// The rank constant (60 in the original paper).
        k: f32,
        /// Weight of the keyword list.
        bm25_weight: f32,
        /// Weight of the dense list.
        dense_weight: f32,
    },
    /// Weighted sum of min-max normalised scores.
    Weighted {
        /// Weight of the normalised BM25 score.
        bm25: f32,
        /// Weight of the normalised dense score.
        dense: f32,
    },
}

impl Fusion {
    /// Plain RRF with k = 60 and equal weights.
    pub fn rrf(k: f32) -> Self {
        Fusion::Rrf {
            k,
            bm25_weight: 1.0,
            dense_weight: 1.0,
        }
    }

    /// Checks that weights are finite and non-negative and `k` positive.
    pub fn validate(&self) -> Result<(), String> {
        let ok = |x: f32| x.is_finite() && x >= 0.0;
        match *self {
            Fusion::Rrf {
                k,
                bm25_weight,
                dense_weight,
            } => {
                if !(k.is_finite() && k > 0.0) {
                    return Err(format!("RRF k must be a positive number, got {k}"));
                }
                if !ok(bm25_weight) || !ok(dense_weight) {
                    return Err("RRF weights must be finite and >= 0".into());
                }
            }
            Fusion::Weighted { bm25, dense } | Fusion::Absolute { bm25, dense } => {
                if !ok(bm25) || !ok(dense) || bm25 + dense == 0.0 {
                    return Err("fusion weights must be finite, >= 0 and not both 0".into());
                }
            }
        }
        Ok(())
    }
}

impl Default for Fusion {
    /// Absolute fusion with equal weights: both terms are on "1 = a perfect match"
    /// scales, so neither needs to be favoured by a weight tuned on one catalog. On
    /// the Home Depot dev queries any BM25 weight from 0.45 to 0.7 scores within
    /// 0.005 NDCG@10 of the best (README.md, "Measured figures").
    fn default() -> Self {
        Fusion::Absolute {
            bm25: 0.5,
            dense: 0.5,
        }
    }
}

/// What [`Fusion::Absolute`] needs beyond the two lists: the query's BM25 reference
/// score, and the exact score of each candidate from the retriever whose list missed
/// it. Hybrid retrieval always fills it; a missing entry counts as 0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exact {
    /// The query's BM25 reference score (`R(q)` in the module docs); 0: none.
    pub bm25_reference: f32,
    /// BM25 of candidates only the dense list has (absent: no query term matches).
    pub bm25: HashMap<u32, f32>,
    /// Cosine of candidates only the BM25 list has.
    pub dense: HashMap<u32, f32>,
}

impl Exact {
    /// The BM25 score of `f` used in fusion: its list score, else the exact one.
    pub fn bm25_of(&self, f: &Fused) -> Option<f32> {
        f.bm25
            .map(|x| x.0)
            .or_else(|| self.bm25.get(&f.ord).copied())
    }

    /// The cosine of `f` used in fusion: its list score, else the exact one.
    pub fn dense_of(&self, f: &Fused) -> Option<f32> {
        f.dense
            .map(|x| x.0)
            .or_else(|| self.dense.get(&f.ord).copied())
    }
}

/// One candidate from one retriever: product ordinal and raw score, best first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Product ordinal.
    pub ord: u32,
    /// The retriever's score (higher is better).
    pub score: f32,
}

/// A fused result with its inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fused {
    /// Product ordinal.
    pub ord: u32,
    /// The fused score.
    pub score: f32,
    /// BM25 score and 1-based rank, when the keyword list has it.
    pub bm25: Option<(f32, usize)>,
    /// Dense cosine and 1-based rank, when the dense list has it.
    pub dense: Option<(f32, usize)>,
}

/// The crate's one order of scored products: higher score first, then the smaller
/// ordinal, so equal scores rank the same way everywhere (BM25, dense, fusion).
pub fn best_first(a_score: f32, a_ord: u32, b_score: f32, b_ord: u32) -> std::cmp::Ordering {
    b_score.total_cmp(&a_score).then(a_ord.cmp(&b_ord))
}

/// Sorts candidates by [`best_first`].
pub fn sort_candidates(v: &mut [Candidate]) {
    v.sort_by(|a, b| best_first(a.score, a.ord, b.score, b.ord));
}

/// Min-max normalises `xs` in place to [0, 1], `(x - min) / (max - min)`, all 1 when
/// the values are equal. The one min-max of the crate (fusion, the fallback formula,
/// MMR).
pub fn min_max(xs: &mut [f32]) {
    let lo = xs.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for x in xs.iter_mut() {
        *x = if hi > lo { (*x - lo) / (hi - lo) } else { 1.0 };
    }
}

/// The scores of a list, min-max normalised, in list order.
fn normalised(list: &[Candidate]) -> Vec<f32> {
    let mut s: Vec<f32> = list.iter().map(|c| c.score).collect();
    min_max(&mut s);
    s
}

/// Fuses two lists (each sorted best first, no duplicates) and returns the best `k`.
/// `exact` is read by [`Fusion::Absolute`] only.
pub fn fuse(
    bm25: &[Candidate],
    dense: &[Candidate],
    exact: &Exact,
    fusion: &Fusion,
    k: usize,
) -> Vec<Fused> {
    let mut by_ord: HashMap<u32, Fused> = HashMap::with_capacity(bm25.len() + dense.len());
    for (i, c) in bm25.iter().enumerate() {
        by_ord.entry(c.ord).or_insert(Fused {
            ord: c.ord,
            score: 0.0,
            bm25: Some((c.score, i + 1)),
            dense: None,
        });
    }
    for (i, c) in dense.iter().enumerate() {
        by_ord
            .entry(c.ord)
            .and_modify(|f| f.dense = Some((c.score, i + 1)))
            .or_insert(Fused {
                ord: c.ord,
                score: 0.0,
                bm25: None,
                dense: Some((c.score, i + 1)),
            });
    }
    let (bm, dm) = (normalised(bm25), normalised(dense));
    let mut out: Vec<Fused> = by_ord
        .into_values()
        .map(|mut f| {
            f.score = match *fusion {
                Fusion::Absolute {
                    bm25: wb,
                    dense: wd,
                } => {
                    let reference = exact.bm25_reference;
                    let b = match exact.bm25_of(&f) {
                        Some(s) if reference > 0.0 => s / reference,
                        _ => 0.0,
                    };
                    wb * b + wd * exact.dense_of(&f).unwrap_or(0.0)
                }
                Fusion::Rrf {
                    k,
                    bm25_weight,
                    dense_weight,
                } => {
                    f.bm25.map_or(0.0, |(_, r)| bm25_weight / (k + r as f32))
                        + f.dense.map_or(0.0, |(_, r)| dense_weight / (k + r as f32))
                }
                Fusion::Weighted { bm25, dense } => {
                    bm25 * f.bm25.map_or(0.0, |(_, r)| bm[r - 1])
                        + dense * f.dense.map_or(0.0, |(_, r)| dm[r - 1])
                }
            };
            f
        })
        .collect();
    out.sort_by(|a, b| best_first(a.score, a.ord, b.score, b.ord));
    out.truncate(k);
    out
}

/// Turns a single list into fused results (bm25-only or dense-only modes).
pub fn single(list: &[Candidate], is_bm25: bool, k: usize) -> Vec<Fused> {
    list.iter()
        .take(k)
        .enumerate()
        .map(|(i, c)| Fused {
            ord: c.ord,
            score: c.score,
            bm25: is_bm25.then_some((c.score, i + 1)),
            dense: (!is_bm25).then_some((c.score, i + 1)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(ord: u32, score: f32) -> Candidate {
        Candidate { ord, score }
    }

    #[test]
    fn rrf_by_hand() {
        // bm25: 1 (r1), 2 (r2); dense: 2 (r1), 3 (r2); k = 60
        let f = fuse(
            &[c(1, 9.0), c(2, 5.0)],
            &[c(2, 0.9), c(3, 0.8)],
            &Exact::default(),
            &Fusion::rrf(60.0),
            10,
        );
        assert_eq!(f[0].ord, 2);
        assert!((f[0].score - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-7);
        // 1 and 3 tie at 1/61 + 0 vs 1/62: 1 has rank 1 in bm25 -> 1/61 > 1/62
        assert_eq!(f[1].ord, 1);
        assert_eq!(f[2].ord, 3);
        assert_eq!(f[0].bm25, Some((5.0, 2)));
        assert_eq!(f[0].dense, Some((0.9, 1)));
    }

    #[test]
    fn weighted_by_hand() {
        // bm25 normalised: 1 -> 1.0, 2 -> 0.0; dense: 2 -> 1.0, 3 -> 0.0
        let fusion = Fusion::Weighted {
            bm25: 0.7,
            dense: 0.3,
        };
        let f = fuse(
            &[c(1, 9.0), c(2, 5.0)],
            &[c(2, 0.9), c(3, 0.8)],
            &Exact::default(),
            &fusion,
            10,
        );
        let score = |o: u32| f.iter().find(|x| x.ord == o).unwrap().score;
        assert!((score(1) - 0.7).abs() < 1e-6);
        assert!((score(2) - 0.3).abs() < 1e-6);
        assert!(score(3).abs() < 1e-6);
    }

    fn exact(reference: f32, bm25: &[(u32, f32)], dense: &[(u32, f32)]) -> Exact {
        Exact {
            bm25_reference: reference,
            bm25: bm25.iter().copied().collect(),
            dense: dense.iter().copied().collect(),
        }
    }

    #[test]
    fn absolute_by_hand_uses_both_exact_scores() {
        // 1: BM25 9/10, cosine 0.1 (exact) -> 0.5 * 0.9 + 0.5 * 0.1 = 0.5
        // 2: BM25 5/10, cosine 0.9         -> 0.25 + 0.45 = 0.7
        // 3: BM25 2/10 (exact), cosine 0.8 -> 0.1 + 0.4 = 0.5 (ties with 1: ordinal)
        let f = fuse(
            &[c(1, 9.0), c(2, 5.0)],
            &[c(2, 0.9), c(3, 0.8)],
            &exact(10.0, &[(3, 2.0)], &[(1, 0.1)]),
            &Fusion::default(),
            10,
        );
        let got: Vec<(u32, f32)> = f.iter().map(|x| (x.ord, x.score)).collect();
        assert_eq!(got.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 1, 3]);
        for (ord, want) in [(2, 0.7), (1, 0.5), (3, 0.5)] {
            let score = got.iter().find(|x| x.0 == ord).unwrap().1;
            assert!((score - want).abs() < 1e-6, "{ord}: {score} vs {want}");
        }
        // The lists' own scores and ranks are kept; exact scores are looked up.
        assert_eq!(f[1].dense, None);
        let e = exact(10.0, &[(3, 2.0)], &[(1, 0.1)]);
        assert_eq!(e.dense_of(&f[1]), Some(0.1));
        assert_eq!(e.bm25_of(&f[2]), Some(2.0));
    }

    #[test]
    fn a_lone_weak_keyword_match_stays_weak() {
        // One weak BM25 hit (1) against two clearly closer meanings (2, 3).
        let bm25 = [c(1, 3.0)];
        let dense = [c(2, 0.41), c(3, 0.29), c(1, 0.20)];
        let e = exact(60.0, &[], &[]);
        let absolute = fuse(&bm25, &dense, &e, &Fusion::default(), 3);
        assert_eq!(absolute[0].ord, 2, "{absolute:?}");
        // Min-max maps the lone hit to 1 and puts it first.
        let weighted = Fusion::Weighted {
            bm25: 0.7,
            dense: 0.3,
        };
        assert_eq!(fuse(&bm25, &dense, &e, &weighted, 3)[0].ord, 1);
    }

    #[test]
    fn absolute_without_exact_scores_counts_missing_as_zero() {
        let f = fuse(
            &[c(1, 4.0)],
            &[c(2, 0.5)],
            &Exact::default(),
            &Fusion::default(),
            2,
        );
        // No reference score: BM25 contributes nothing; 2 keeps its cosine.
        assert_eq!((f[0].ord, f[0].score), (2, 0.25));
        assert_eq!((f[1].ord, f[1].score), (1, 0.0));
    }

    #[test]
    fn validation() {
        assert!(Fusion::rrf(0.0).validate().is_err());
        assert!(Fusion::Weighted {
            bm25: 0.0,
            dense: 0.0
        }
        .validate()
        .is_err());
        assert!(Fusion::Weighted {
            bm25: f32::NAN,
            dense: 1.0
        }
        .validate()
        .is_err());
        assert!(Fusion::default().validate().is_ok());
        assert!(Fusion::Absolute {
            bm25: -1.0,
            dense: 1.0
        }
        .validate()
        .is_err());
    }

    fn list() -> impl Strategy<Value = Vec<Candidate>> {
        proptest::collection::btree_map(0u32..50, -10.0f32..10.0, 0..20).prop_map(|m| {
            let mut v: Vec<Candidate> = m.into_iter().map(|(o, s)| c(o, s)).collect();
            v.sort_by(|a, b| b.score.total_cmp(&a.score));
            v
        })
    }

    proptest! {
        #[test]
        fn fused_is_sorted_unique_and_covers_inputs(a in list(), b in list(), k in 0usize..60, method in 0u8..3) {
            let fusion = match method {
                0 => Fusion::rrf(60.0),
                1 => Fusion::Weighted { bm25: 0.7, dense: 0.3 },
                _ => Fusion::default(),
            };
            let f = fuse(&a, &b, &Exact::default(), &fusion, k);
            let mut union: Vec<u32> = a.iter().chain(b.iter()).map(|x| x.ord).collect();
            union.sort();
            union.dedup();
            prop_assert_eq!(f.len(), k.min(union.len()));
            for w in f.windows(2) {
                prop_assert!(w[0].score >= w[1].score);
            }
            let mut seen: Vec<u32> = f.iter().map(|x| x.ord).collect();
            seen.sort();
            seen.dedup();
            prop_assert_eq!(seen.len(), f.len());
            // top-k of fuse == sort + truncate of fuse with unlimited k
            let all = fuse(&a, &b, &Exact::default(), &fusion, usize::MAX);
            prop_assert_eq!(&all[..f.len()], &f[..]);
        }

        #[test]
        fn an_item_first_in_both_lists_wins(a in list(), b in list(), top in 50u32..60) {
            // Put `top` first in both lists.
            let mut a = a;
            let mut b = b;
            a.insert(0, c(top, 100.0));
            b.insert(0, c(top, 100.0));
            let with_reference = Exact { bm25_reference: 1.0, ..Exact::default() };
            for fusion in [Fusion::rrf(60.0), Fusion::Weighted { bm25: 0.7, dense: 0.3 }, Fusion::default()] {
                let f = fuse(&a, &b, &with_reference, &fusion, 1);
                prop_assert_eq!(f[0].ord, top);
            }
        }
    }
}
