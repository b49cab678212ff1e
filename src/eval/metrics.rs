//! Ranking-quality metrics: DCG/NDCG, recall, reciprocal rank, hit rate and ROC AUC, plus the
//! [`Mean`] accumulator that averages per-query values.
//!
//! `ranked` is always the system's ranking, best first, as product ids; `judged` maps product id to
//! an integer relevance grade (the qrels of one query). Positions `i` are 0-based below, ranks
//! `r = i + 1` are 1-based.
//!
//! * DCG@k = Σ_{i<k} gain_i / log2(i + 2) (Järvelin & Kekäläinen 2002, linear-gain form as in
//!   trec_eval's `ndcg_cut`).
//! * NDCG@k = DCG@k(ranking) / DCG@k(ideal), where gain = max(grade, 0) (unjudged documents and
//!   negative grades count as 0) and the ideal ranking is *all* judged documents sorted by grade,
//!   not just the retrieved ones. Undefined (`None`) when the ideal DCG is 0.
//! * Recall@k = |relevant ∩ top k| / |relevant|, relevant = grade ≥ `min_grade`. Undefined when
//!   the query has no relevant document.
//! * RR@k = 1 / r of the first relevant document with r ≤ k, else 0; MRR@k is its mean over
//!   queries. Undefined when the query has no relevant document.
//! * Hit@k = 1 if the target is in the top k, else 0.
//! * ROC AUC = (R₊ − n₊(n₊ + 1)/2) / (n₊ · n₋), where R₊ is the sum of the (1-based, ascending by
//!   score) ranks of the positives and tied scores share their average rank; this equals the
//!   Mann–Whitney U statistic normalised to [0, 1], i.e. P(score₊ > score₋) + ½ P(score₊ = score₋).
//!
//! A document listed twice in `ranked` counts only at its first position. Means skip queries
//! whose metric is undefined, as trec_eval does for queries without relevant documents.

use std::collections::{HashMap, HashSet};

/// Discounted cumulative gain of the first `k` gains: Σ_{i<k} gain_i / log2(i + 2).
pub fn dcg_at_k(gains: &[f64], k: usize) -> f64 {
    gains
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, g)| g / discount(i))
        .sum()
}

/// log2(i + 2), the DCG discount at 0-based position `i`.
fn discount(i: usize) -> f64 {
    (i as f64 + 2.0).log2()
}

/// The gain of a grade: linear, with negative grades (TREC's "junk"/spam) clamped to 0.
fn gain(grade: i32) -> f64 {
    f64::from(grade.max(0))
}

/// Iterates over the first `k` positions of `ranked`, yielding `None` for repeated documents so
/// that each document counts only at its first position.
fn first_occurrences<'a>(ranked: &'a [&'a str], k: usize) -> impl Iterator<Item = Option<&'a str>> {
    let mut seen = HashSet::new();
    ranked
        .iter()
        .take(k)
        .map(move |doc| if seen.insert(*doc) { Some(*doc) } else { None })
}

/// NDCG@k of the gains of a ranking, in ranked order, against the ideal ordering of
/// `judged_gains`, the gains of every judged item in any order. Returns `None` when the ideal DCG
/// is 0 (no positive gain, or `k == 0`), so the query is excluded from the mean. Every NDCG of the
/// crate (evaluation, the CTR head's validation, personalised tasks) is this function.
pub fn ndcg_of_gains(ranked_gains: &[f64], judged_gains: &[f64], k: usize) -> Option<f64> {
    let mut ideal = judged_gains.to_vec();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg = dcg_at_k(&ideal, k);
    if idcg <= 0.0 {
        return None;
    }
    Some(dcg_at_k(ranked_gains, k) / idcg)
}

/// NDCG@k with linear gains (see the module docs). Unjudged documents and negative grades have
/// gain 0; the ideal DCG is computed from all judged documents. Returns `None` when the ideal DCG
/// is 0 (no positive grade, or `k == 0`), so the query is excluded from the mean.
pub fn ndcg_at_k(ranked: &[&str], judged: &HashMap<String, i32>, k: usize) -> Option<f64> {
    let ideal: Vec<f64> = judged.values().map(|&g| gain(g)).collect();
    let gains: Vec<f64> = first_occurrences(ranked, k)
        .map(|doc| doc.and_then(|d| judged.get(d)).map_or(0.0, |&g| gain(g)))
        .collect();
    ndcg_of_gains(&gains, &ideal, k)
}

/// The number of relevant (grade ≥ `min_grade`) documents of a query.
fn relevant_count(judged: &HashMap<String, i32>, min_grade: i32) -> usize {
    judged.values().filter(|&&g| g >= min_grade).count()
}

/// Whether `doc` is judged relevant, i.e. has a grade ≥ `min_grade`.
fn is_relevant(judged: &HashMap<String, i32>, doc: &str, min_grade: i32) -> bool {
    judged.get(doc).is_some_and(|&g| g >= min_grade)
}

/// Recall@k = |relevant in the top k| / |relevant|, where relevant means grade ≥ `min_grade`.
/// Returns `None` when the query has no relevant document.
pub fn recall_at_k(
    ranked: &[&str],
    judged: &HashMap<String, i32>,
    k: usize,
    min_grade: i32,
) -> Option<f64> {
    let total = relevant_count(judged, min_grade);
    if total == 0 {
        return None;
    }
    let found = first_occurrences(ranked, k)
        .flatten()
        .filter(|doc| is_relevant(judged, doc, min_grade))
        .count();
    Some(found as f64 / total as f64)
}

/// Reciprocal rank within the top k: 1 / r for the 1-based rank r ≤ k of the first relevant
/// (grade ≥ `min_grade`) document, 0 when none is in the top k. Returns `None` when the query has
/// no relevant document.
pub fn reciprocal_rank_at_k(
    ranked: &[&str],
    judged: &HashMap<String, i32>,
    k: usize,
    min_grade: i32,
) -> Option<f64> {
    if relevant_count(judged, min_grade) == 0 {
        return None;
    }
    let rr = ranked
        .iter()
        .take(k)
        .position(|doc| is_relevant(judged, doc, min_grade))
        .map_or(0.0, |i| 1.0 / (i as f64 + 1.0));
    Some(rr)
}

/// Whether `target` is among the first `k` documents of `ranked` (Hit@k, for tasks with a single
/// target item such as next-purchase prediction).
pub fn hit_at_k(ranked: &[&str], target: &str, k: usize) -> bool {
    ranked.iter().take(k).any(|doc| *doc == target)
}

/// The `p`-th percentile (0..=100) of `sorted` (ascending) by nearest rank below:
/// element `len * p / 100`, the last one for `p = 100`; 0 for an empty slice.
pub fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted
        .get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0)
}

/// ROC AUC of `scores` against binary `labels` (true = positive), computed from ranks in
/// O(n log n) with tied scores sharing their average rank (Mann–Whitney U), so a tie between a
/// positive and a negative counts ½.
///
/// Returns `None` when only one class is present (AUC is undefined), when the slices differ in
/// length, or when a score is NaN.
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    if scores.len() != labels.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // No NaN is left, so partial_cmp always answers; it also treats -0.0 == 0.0 as a tie.
    order.sort_by(|&a, &b| {
        scores[a]
            .partial_cmp(&scores[b])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut pos_rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let score = scores[order[start]];
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == score {
            end += 1;
        }
        // Positions start..end (0-based) hold ranks start+1..=end; their average:
        let avg_rank = (start + 1 + end) as f64 / 2.0;
        let pos_in_group = order[start..end].iter().filter(|&&i| labels[i]).count();
        pos_rank_sum += avg_rank * pos_in_group as f64;
        start = end;
    }
    let (p, n) = (n_pos as f64, n_neg as f64);
    Some((pos_rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Running mean of per-query metric values; undefined values (`None`) are skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Mean {
    sum: f64,
    n: usize,
}

impl Mean {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value; `None` (metric undefined for this query) is ignored.
    pub fn add(&mut self, value: Option<f64>) {
        if let Some(v) = value {
            self.sum += v;
            self.n += 1;
        }
    }

    /// The mean of the values added so far, `None` when none was added.
    pub fn value(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// How many values were added (not counting `None`s).
    pub fn count(&self) -> usize {
        self.n
    }
}

impl Extend<Option<f64>> for Mean {
    fn extend<I: IntoIterator<Item = Option<f64>>>(&mut self, iter: I) {
        for v in iter {
            self.add(v);
        }
    }
}

impl FromIterator<Option<f64>> for Mean {
    fn from_iter<I: IntoIterator<Item = Option<f64>>>(iter: I) -> Self {
        let mut mean = Self::new();
        mean.extend(iter);
        mean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-9;

    fn judged(pairs: &[(&str, i32)]) -> HashMap<String, i32> {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < EPS
    }

    #[test]
    fn dcg_by_hand() {
        // 3/log2(2) + 2/log2(3) + 1/log2(4) = 3 + 1.2618595071429148 + 0.5
        assert!(close(dcg_at_k(&[3.0, 2.0, 1.0], 10), 4.761_859_507_142_915));
        // k = 1 keeps only 3/log2(2) = 3
        assert!(close(dcg_at_k(&[3.0, 2.0, 1.0], 1), 3.0));
        assert_eq!(dcg_at_k(&[3.0], 0), 0.0);
        assert_eq!(dcg_at_k(&[], 10), 0.0);
    }

    #[test]
    fn ndcg_small_ranking_by_hand() {
        let j = judged(&[("a", 3), ("b", 2), ("c", 0), ("d", 1)]);
        // ranked [b, x, a, d]: gains 2, 0 (x unjudged), 3, 1
        // DCG  = 2/log2(2) + 0/log2(3) + 3/log2(4) + 1/log2(5)
        //      = 2 + 0 + 1.5 + 0.430676558073393 = 3.930676558073393
        // IDCG = 3/log2(2) + 2/log2(3) + 1/log2(4) + 0/log2(5)
        //      = 3 + 1.261859507142915 + 0.5 = 4.761859507142915
        // NDCG = 3.930676558073393 / 4.761859507142915 = 0.825449...
        let expected = (2.0 + 1.5 + 1.0 / 5f64.log2()) / (3.0 + 2.0 / 3f64.log2() + 0.5);
        let got = ndcg_at_k(&["b", "x", "a", "d"], &j, 10).unwrap();
        assert!(close(got, expected), "{got} vs {expected}");
        assert!(close(got, 3.930_676_558_073_393 / 4.761_859_507_142_915));
    }

    #[test]
    fn ndcg_cut_off_at_k() {
        let j = judged(&[("a", 3), ("b", 2), ("c", 0), ("d", 1)]);
        // k = 2, ranked [b, x, a, d]: DCG@2 = 2/1 + 0 = 2
        // IDCG@2 = 3/1 + 2/log2(3) = 4.261859507142915; NDCG@2 = 0.469278...
        let got = ndcg_at_k(&["b", "x", "a", "d"], &j, 2).unwrap();
        assert!(close(got, 2.0 / (3.0 + 2.0 / 3f64.log2())));
        // a relevant doc just beyond k does not count: k = 1, ranked [x, a] -> 0
        assert_eq!(ndcg_at_k(&["x", "a"], &j, 1), Some(0.0));
        // k = 0: the ideal DCG is 0, so undefined
        assert_eq!(ndcg_at_k(&["a"], &j, 0), None);
    }

    #[test]
    fn ndcg_perfect_ranking_is_one() {
        let j = judged(&[("a", 3), ("b", 2), ("c", 0), ("d", 1)]);
        assert!(close(
            ndcg_at_k(&["a", "b", "d", "c"], &j, 10).unwrap(),
            1.0
        ));
        // the zero-grade doc may be anywhere after the positives, or missing
        assert!(close(ndcg_at_k(&["a", "b", "d"], &j, 10).unwrap(), 1.0));
        // perfect within the cut-off: only the top 2 matter at k = 2
        assert!(close(ndcg_at_k(&["a", "b", "x"], &j, 2).unwrap(), 1.0));
    }

    #[test]
    fn ndcg_unjudged_and_missing_docs() {
        let j = judged(&[("a", 1)]);
        // ranked [x, y, a]: DCG = 1/log2(4) = 0.5; IDCG = 1/log2(2) = 1
        assert!(close(ndcg_at_k(&["x", "y", "a"], &j, 10).unwrap(), 0.5));
        // nothing relevant retrieved -> 0 (defined, since the ideal DCG is 1)
        assert_eq!(ndcg_at_k(&["x", "y"], &j, 10), Some(0.0));
        assert_eq!(ndcg_at_k(&[], &j, 10), Some(0.0));
    }

    #[test]
    fn ndcg_ideal_uses_all_judged_docs() {
        // 12 docs of grade 1: the ideal top 10 is full, so retrieving only 1 of them at rank 1
        // gives DCG 1 and IDCG = Σ_{i<10} 1/log2(i+2).
        let pairs: Vec<(String, i32)> = (0..12).map(|i| (format!("d{i}"), 1)).collect();
        let j: HashMap<String, i32> = pairs.into_iter().collect();
        let idcg: f64 = (0..10).map(|i| 1.0 / ((i + 2) as f64).log2()).sum();
        assert!(close(ndcg_at_k(&["d3"], &j, 10).unwrap(), 1.0 / idcg));
    }

    #[test]
    fn ndcg_negative_grades_count_as_zero() {
        let j = judged(&[("a", 2), ("spam", -2)]);
        // ranked [spam, a]: DCG = 0 + 2/log2(3); IDCG = 2/1
        let got = ndcg_at_k(&["spam", "a"], &j, 10).unwrap();
        assert!(close(got, (2.0 / 3f64.log2()) / 2.0));
    }

    #[test]
    fn ndcg_all_zero_grades_is_none() {
        let j = judged(&[("a", 0), ("b", 0), ("c", -1)]);
        assert_eq!(ndcg_at_k(&["a", "b"], &j, 10), None);
        assert_eq!(ndcg_at_k(&["a"], &HashMap::new(), 10), None);
    }

    #[test]
    fn duplicates_in_ranking_count_once() {
        let j = judged(&[("a", 1), ("b", 1)]);
        // [a, a]: a counts at rank 1 only -> DCG 1; IDCG = 1 + 1/log2(3)
        let got = ndcg_at_k(&["a", "a"], &j, 10).unwrap();
        assert!(close(got, 1.0 / (1.0 + 1.0 / 3f64.log2())));
        assert_eq!(recall_at_k(&["a", "a"], &j, 10, 1), Some(0.5));
    }

    #[test]
    fn recall_with_threshold() {
        let j = judged(&[("a", 3), ("b", 2), ("c", 1), ("d", 0)]);
        let ranked = ["a", "c", "x", "b"];
        // min_grade 2: relevant {a, b}; top 3 = [a, c, x] holds a -> 1/2
        assert_eq!(recall_at_k(&ranked, &j, 3, 2), Some(0.5));
        // top 4 holds a and b -> 2/2
        assert_eq!(recall_at_k(&ranked, &j, 4, 2), Some(1.0));
        // min_grade 1: relevant {a, b, c}; top 3 holds a, c -> 2/3
        assert!(close(recall_at_k(&ranked, &j, 3, 1).unwrap(), 2.0 / 3.0));
        // min_grade 0: d counts too; top 4 holds a, c, b -> 3/4
        assert_eq!(recall_at_k(&ranked, &j, 4, 0), Some(0.75));
        // k = 0 retrieves nothing
        assert_eq!(recall_at_k(&ranked, &j, 0, 1), Some(0.0));
        // nothing at grade >= 4: undefined
        assert_eq!(recall_at_k(&ranked, &j, 4, 4), None);
    }

    #[test]
    fn reciprocal_rank_positions() {
        let j = judged(&[("a", 1), ("b", 0)]);
        // first relevant (a) at rank 3 -> 1/3
        let rr = reciprocal_rank_at_k(&["x", "b", "a"], &j, 10, 1).unwrap();
        assert!(close(rr, 1.0 / 3.0));
        // same ranking cut at k = 2: a is beyond k -> 0
        assert_eq!(reciprocal_rank_at_k(&["x", "b", "a"], &j, 2, 1), Some(0.0));
        // at rank 1 -> 1
        assert_eq!(reciprocal_rank_at_k(&["a"], &j, 10, 1), Some(1.0));
        // b counts once the threshold is 0: rank 2 -> 1/2
        assert_eq!(reciprocal_rank_at_k(&["x", "b", "a"], &j, 10, 0), Some(0.5));
        // no relevant doc at all -> undefined
        assert_eq!(reciprocal_rank_at_k(&["a"], &j, 10, 2), None);
    }

    #[test]
    fn hit_at_k_cut_off() {
        assert!(hit_at_k(&["x", "t"], "t", 2));
        assert!(!hit_at_k(&["x", "t"], "t", 1));
        assert!(!hit_at_k(&[], "t", 10));
    }

    #[test]
    fn auc_perfect_reversed_ties() {
        let labels = [true, true, false, false];
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &labels), Some(1.0));
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &labels), Some(0.0));
        assert_eq!(auc(&[0.5, 0.5, 0.5, 0.5], &labels), Some(0.5));
        // -0.0 and 0.0 are the same score: a tie
        assert_eq!(auc(&[0.0, -0.0], &[true, false]), Some(0.5));
    }

    #[test]
    fn auc_mixed_by_hand() {
        // positives 0.9, 0.7; negatives 0.8, 0.6, 0.5.
        // pairs won: 0.9 beats all 3; 0.7 beats 0.6 and 0.5 -> 5 of 2*3 = 6 pairs -> 5/6
        // via ranks (ascending): 0.5:1 0.6:2 0.7:3 0.8:4 0.9:5; R+ = 3 + 5 = 8;
        // (8 - 2*3/2) / 6 = 5/6
        let got = auc(
            &[0.9, 0.8, 0.7, 0.6, 0.5],
            &[true, false, true, false, false],
        )
        .unwrap();
        assert!(close(got, 5.0 / 6.0));
        // with a tie: positives 0.9, 0.5; negatives 0.5, 0.1.
        // 0.9 beats both (2); 0.5 ties 0.5 (1/2) and beats 0.1 (1) -> 3.5 / 4 = 0.875
        // ranks: 0.1:1, 0.5 & 0.5: 2.5 each, 0.9:4; R+ = 4 + 2.5 = 6.5; (6.5 - 3) / 4 = 0.875
        let got = auc(&[0.9, 0.5, 0.5, 0.1], &[true, true, false, false]).unwrap();
        assert!(close(got, 0.875));
    }

    #[test]
    fn auc_undefined_cases() {
        assert_eq!(auc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(auc(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(auc(&[], &[]), None);
        assert_eq!(auc(&[0.1], &[true, false]), None);
        assert_eq!(auc(&[0.1, f64::NAN], &[true, false]), None);
    }

    /// O(n²) oracle: the fraction of (positive, negative) pairs ordered correctly, ties ½.
    fn auc_pairwise(scores: &[f64], labels: &[bool]) -> f64 {
        let (mut wins, mut pairs) = (0.0, 0.0);
        for (i, &si) in scores.iter().enumerate() {
            for (j, &sj) in scores.iter().enumerate() {
                if labels[i] && !labels[j] {
                    pairs += 1.0;
                    if si > sj {
                        wins += 1.0;
                    } else if si == sj {
                        wins += 0.5;
                    }
                }
            }
        }
        wins / pairs
    }

    #[test]
    fn auc_matches_pairwise_oracle() {
        // A small linear congruential generator keeps the test deterministic without a rand dep.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        };
        for n in [2usize, 3, 10, 57, 200] {
            let scores: Vec<f64> = (0..n).map(|_| (next() % 7) as f64 / 7.0).collect();
            let mut labels: Vec<bool> = (0..n).map(|_| next() % 3 == 0).collect();
            labels[0] = true;
            labels[1] = false;
            let got = auc(&scores, &labels).unwrap();
            assert!(close(got, auc_pairwise(&scores, &labels)), "n = {n}");
        }
    }

    #[test]
    fn mean_skips_none() {
        let mut m = Mean::new();
        assert_eq!(m.value(), None);
        assert_eq!(m.count(), 0);
        m.add(Some(1.0));
        m.add(None);
        m.add(Some(0.5));
        assert_eq!(m.count(), 2);
        assert_eq!(m.value(), Some(0.75));
        let m: Mean = [Some(1.0), None, Some(0.0)].into_iter().collect();
        assert_eq!((m.value(), m.count()), (Some(0.5), 2));
    }
}
