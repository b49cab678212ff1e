//! HNSW recall against exact search, with latency, for several `ef` values: how much
//! of the exact dense top-k the graph walk finds, and at what cost.
//! `shelfrank hnsw-recall` is this and a print.

use std::time::Instant;

use serde::Serialize;

use super::files::Query;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// One `ef` value's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecallRow {
    /// The HNSW search breadth.
    pub ef: usize,
    /// Share of the exact top-k found (as searches run: an int8 graph's
    /// candidates rescored with the float32 vectors).
    pub recall: f64,
    /// For an int8 graph, the share found by the graph's own int8 scores, before
    /// rescoring; `None` for a float32 graph.
    pub recall_before_rescoring: Option<f64>,
    /// Median latency of one graph search, microseconds.
    pub median_us: f64,
    /// 95th percentile latency, microseconds.
    pub p95_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
}

/// What [`hnsw_recall`] measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HnswRecall {
    /// Queries measured.
    pub queries: usize,
    /// One row per `ef`, in the order asked.
    pub rows: Vec<RecallRow>,
}

/// Measures recall@`k` and latency for each of `efs`. The queries are the texts of
/// `queries` (at most `limit`, encoded by the engine), or without them up to
/// `limit` stored product vectors spread over the catalog.
pub fn hnsw_recall(
    engine: &Engine,
    queries: Option<&[Query]>,
    limit: usize,
    k: usize,
    efs: &[usize],
) -> Result<HnswRecall> {
    if k == 0 || efs.contains(&0) {
        return Err(Error::invalid("k and ef", "must be at least 1"));
    }
    let qvecs: Vec<Vec<f32>> = match queries {
        Some(qs) => {
            let texts: Vec<&str> = qs.iter().take(limit).map(|q| q.text.as_str()).collect();
            engine.embed_queries(&texts, &|_| {})?
        }
        None => {
            let n = engine.len();
            let step = (n / limit.max(1)).max(1);
            (0..n)
                .step_by(step)
                .take(limit)
                .filter_map(|i| engine.embedding_at(i as u32).map(<[f32]>::to_vec))
                .collect()
        }
    };
    let exact: Vec<Vec<u32>> = qvecs
        .iter()
        .map(|q| engine.exact_dense(q, k).into_iter().map(|x| x.0).collect())
        .collect();
    let total: usize = exact.iter().map(Vec::len).sum();
    let share = |found: usize| found as f64 / total.max(1) as f64;
    let int8 = engine.quantization() == crate::vector::Quantization::Int8;
    let mut rows = Vec::with_capacity(efs.len());
    for &ef in efs {
        let mut found = 0usize;
        let mut found_raw = 0usize;
        let mut lat = Vec::with_capacity(qvecs.len());
        for (q, truth) in qvecs.iter().zip(&exact) {
            let t = Instant::now();
            let got = engine.hnsw_dense(q, k, ef, true)?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            found += got.iter().filter(|(o, _)| truth.contains(o)).count();
            if int8 {
                let raw = engine.hnsw_dense(q, k, ef, false)?;
                found_raw += raw.iter().filter(|(o, _)| truth.contains(o)).count();
            }
        }
        lat.sort_by(f64::total_cmp);
        let at = |p: usize| super::metrics::percentile(&lat, p);
        rows.push(RecallRow {
            ef,
            recall: share(found),
            recall_before_rescoring: int8.then(|| share(found_raw)),
            median_us: at(50),
            p95_us: at(95),
            p99_us: at(99),
        });
    }
    Ok(HnswRecall {
        queries: qvecs.len(),
        rows,
    })
}
