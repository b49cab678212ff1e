//! Exact (brute-force) top-k search: the oracle for HNSW and the path for small
//! filtered subsets.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::fuse::{sort_candidates, Candidate};

/// Inner product of two equally long slices (eight independent accumulators so
/// the compiler vectorises it).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        let (x, y) = (&a[c * 8..c * 8 + 8], &b[c * 8..c * 8 + 8]);
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for j in chunks * 8..n {
        sum += a[j] * b[j];
    }
    sum
}

/// Min-heap entry on score (ties broken by the larger ordinal being "smaller", so
/// the final order prefers smaller ordinals on equal scores, deterministically).
#[derive(PartialEq)]
struct Entry(Candidate);

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reverse: the heap's top is the worst kept neighbour.
        other
            .0
            .score
            .total_cmp(&self.0.score)
            .then(self.0.ord.cmp(&other.0.ord))
    }
}

fn top_k(k: usize, candidates: impl Iterator<Item = Candidate>) -> Vec<Candidate> {
    if k == 0 {
        return Vec::new();
    }
    let mut heap = BinaryHeap::with_capacity(k + 1);
    for n in candidates {
        if n.score.is_nan() {
            continue;
        }
        heap.push(Entry(n));
        if heap.len() > k {
            heap.pop();
        }
    }
    let mut out: Vec<Candidate> = heap.into_iter().map(|e| e.0).collect();
    sort_candidates(&mut out);
    out
}

/// The `k` rows of `matrix` (row-major, `dim` wide) with the highest inner product
/// with `query`, best first.
pub fn exact_search(matrix: &[f32], dim: usize, query: &[f32], k: usize) -> Vec<Candidate> {
    if dim == 0 {
        return Vec::new();
    }
    top_k(
        k,
        matrix
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, row)| Candidate {
                ord: i as u32,
                score: dot(row, query),
            }),
    )
}

/// Like [`exact_search`] over the listed rows only (out-of-range rows are ignored).
pub fn exact_search_filtered(
    matrix: &[f32],
    dim: usize,
    query: &[f32],
    k: usize,
    rows: &[u32],
) -> Vec<Candidate> {
    top_k(
        k,
        rows.iter().filter_map(|&r| {
            let start = (r as usize).checked_mul(dim)?;
            let row = matrix.get(start..start + dim)?;
            Some(Candidate {
                ord: r,
                score: dot(row, query),
            })
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_equals_sort_and_truncate() {
        let dim = 3;
        let m: Vec<f32> = (0..60).map(|i| ((i * 37 % 11) as f32) - 5.0).collect();
        let q = [0.3, -0.2, 0.9];
        let got = exact_search(&m, dim, &q, 5);
        let mut all: Vec<Candidate> = m
            .chunks(dim)
            .enumerate()
            .map(|(i, r)| Candidate {
                ord: i as u32,
                score: dot(r, &q),
            })
            .collect();
        sort_candidates(&mut all);
        all.truncate(5);
        assert_eq!(got, all);
    }

    #[test]
    fn filtered_search_only_returns_listed_rows() {
        let m = [1.0, 0.0, 0.0, 1.0, 0.7, 0.7];
        let got = exact_search_filtered(&m, 2, &[1.0, 0.0], 5, &[1, 2, 99]);
        let ords: Vec<u32> = got.iter().map(|n| n.ord).collect();
        assert_eq!(ords, vec![2, 1]);
    }

    #[test]
    fn dot_handles_tails() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let expect: f32 = a.iter().map(|x| x * x).sum();
        assert!((dot(&a, &a) - expect).abs() < 1e-3);
    }
}
