//! Fusion of the keyword and dense candidate lists. Pure functions, no I/O.
//!
//! Two methods:
//!
//! * **Reciprocal rank fusion** (Cormack, Clarke & Büttcher, SIGIR 2009):
//!   `score(d) = sum_i w_i / (k + rank_i(d))`, ranks from 1, a list that misses `d`
//!   contributes 0. Only ranks matter, so no score calibration is needed.
//! * **Weighted sum of normalised scores**: each list's scores are min-max
//!   normalised to [0, 1] over its candidates (`(s - min) / (max - min)`, all 1 when
//!   the list's scores are equal), a missing score counts as 0, and
//!   `score(d) = w_bm25 * bm25'(d) + w_dense * dense'(d)`.
//!
//! Ties are broken by the smaller product ordinal so results are deterministic.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// How two ranked lists become one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Fusion {
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
            Fusion::Weighted { bm25, dense } => {
                if !ok(bm25) || !ok(dense) || bm25 + dense == 0.0 {
                    return Err("fusion weights must be finite, >= 0 and not both 0".into());
                }
            }
        }
        Ok(())
    }
}

impl Default for Fusion {
    /// The default, tuned on the Home Depot dev queries (see README.md, "Measured
    /// figures"): a weighted sum that leans on BM25, because on short product titles
    /// exact words matter more than paraphrase.
    fn default() -> Self {
        Fusion::Weighted {
            bm25: 0.7,
            dense: 0.3,
        }
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
pub fn fuse(bm25: &[Candidate], dense: &[Candidate], fusion: &Fusion, k: usize) -> Vec<Fused> {
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
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.ord.cmp(&b.ord)));
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
            &fusion,
            10,
        );
        let score = |o: u32| f.iter().find(|x| x.ord == o).unwrap().score;
        assert!((score(1) - 0.7).abs() < 1e-6);
        assert!((score(2) - 0.3).abs() < 1e-6);
        assert!(score(3).abs() < 1e-6);
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
        fn fused_is_sorted_unique_and_covers_inputs(a in list(), b in list(), k in 0usize..60, rrf in any::<bool>()) {
            let fusion = if rrf { Fusion::rrf(60.0) } else { Fusion::default() };
            let f = fuse(&a, &b, &fusion, k);
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
            let all = fuse(&a, &b, &fusion, usize::MAX);
            prop_assert_eq!(&all[..f.len()], &f[..]);
        }

        #[test]
        fn an_item_first_in_both_lists_wins(a in list(), b in list(), top in 50u32..60) {
            // Put `top` first in both lists.
            let mut a = a;
            let mut b = b;
            a.insert(0, c(top, 100.0));
            b.insert(0, c(top, 100.0));
            for fusion in [Fusion::rrf(60.0), Fusion::default()] {
                let f = fuse(&a, &b, &fusion, 1);
                prop_assert_eq!(f[0].ord, top);
            }
        }
    }
}
