//! Scoring a whole run against qrels ([`evaluate_run`]) and printing the results as a markdown
//! table ([`markdown_table`]).
//!
//! For each query q in the qrels, with ranking R_q (empty when the run lacks q):
//!
//! * NDCG@10 = DCG@10(R_q) / IDCG@10, DCG@k = Σ_{i<k} max(grade_i, 0) / log2(i + 2);
//! * Recall@K = |{d ∈ R_q[..K] : grade(d) ≥ min_grade}| / |{d : grade(d) ≥ min_grade}|;
//! * MRR@10 = mean over queries of 1 / rank of the first relevant document within the top 10
//!   (0 if none).
//!
//! Each reported value is the arithmetic mean over the queries for which that metric is defined
//! (IDCG > 0, resp. at least one relevant document); queries where it is undefined are left out
//! of that mean, as trec_eval does. See `metrics.rs` for the single-query definitions.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::files::Qrels;
use super::metrics::{ndcg_at_k, recall_at_k, reciprocal_rank_at_k, Mean};

/// Cut-off of the reported NDCG, the usual one for MS MARCO / BEIR (NDCG@10).
pub const NDCG_K: usize = 10;
/// Cut-off of the reported MRR, the usual one for MS MARCO (MRR@10).
pub const MRR_K: usize = 10;

/// The metrics of one query; `None` where the metric is undefined for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryMetrics {
    /// The query id.
    pub qid: String,
    /// NDCG@10; `None` when the query has no positively graded document.
    pub ndcg10: Option<f64>,
    /// Recall@K (K = [`ModeReport::recall_k`]); `None` when the query has no relevant document.
    pub recall: Option<f64>,
    /// Reciprocal rank within the top 10; `None` when the query has no relevant document.
    pub mrr10: Option<f64>,
}

/// The evaluation of one retrieval mode (e.g. `bm25`, `dense`, `hybrid`) over a query set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeReport {
    /// The name of the mode.
    pub mode: String,
    /// Mean NDCG@10 over the queries where it is defined (0 when it is defined for none).
    pub ndcg_at_10: f64,
    /// Mean Recall@`recall_k` over the queries where it is defined (0 when defined for none).
    pub recall_at_k: f64,
    /// The K of `recall_at_k`.
    pub recall_k: usize,
    /// Mean reciprocal rank within the top 10 over the queries where it is defined (0 when
    /// defined for none).
    pub mrr_at_10: f64,
    /// How many queries were evaluated: every query of the qrels, whether or not the run has it.
    pub queries: usize,
    /// How many of those queries the run lacked (they were scored as empty rankings).
    pub missing_from_run: usize,
    /// How many queries of the run were skipped because the qrels do not judge them.
    pub not_in_qrels: usize,
    /// Per-query metrics, sorted by qid.
    pub per_query: Vec<QueryMetrics>,
}

/// Scores `run` (query id → ranked product ids, best first) against `qrels`.
///
/// Every query of the qrels is evaluated: one missing from the run counts as an empty ranking
/// (metrics 0 where defined). Queries of the run absent from the qrels are skipped (counted in
/// [`ModeReport::not_in_qrels`]). If the run lists a query twice, its first ranking is used.
/// `min_grade` is the grade from which a document counts as relevant for recall and MRR; NDCG
/// uses the graded judgements.
pub fn evaluate_run(
    mode: &str,
    run: &[(String, Vec<String>)],
    qrels: &Qrels,
    recall_k: usize,
    min_grade: i32,
) -> ModeReport {
    let mut rankings: HashMap<&str, &[String]> = HashMap::new();
    for (qid, ranked) in run {
        rankings.entry(qid.as_str()).or_insert(ranked.as_slice());
    }
    let not_in_qrels = rankings
        .keys()
        .filter(|qid| !qrels.contains_key(**qid))
        .count();

    let mut qids: Vec<&String> = qrels.keys().collect();
    qids.sort();
    let (mut ndcg, mut recall, mut mrr) = (Mean::new(), Mean::new(), Mean::new());
    let mut missing_from_run = 0;
    let mut per_query = Vec::with_capacity(qids.len());
    for qid in qids {
        let Some(judged) = qrels.get(qid) else {
            continue;
        };
        let ranked: Vec<&str> = match rankings.get(qid.as_str()) {
            Some(r) => r.iter().map(String::as_str).collect(),
            None => {
                missing_from_run += 1;
                Vec::new()
            }
        };
        let m = QueryMetrics {
            qid: qid.clone(),
            ndcg10: ndcg_at_k(&ranked, judged, NDCG_K),
            recall: recall_at_k(&ranked, judged, recall_k, min_grade),
            mrr10: reciprocal_rank_at_k(&ranked, judged, MRR_K, min_grade),
        };
        ndcg.add(m.ndcg10);
        recall.add(m.recall);
        mrr.add(m.mrr10);
        per_query.push(m);
    }
    ModeReport {
        mode: mode.to_string(),
        ndcg_at_10: ndcg.value().unwrap_or(0.0),
        recall_at_k: recall.value().unwrap_or(0.0),
        recall_k,
        mrr_at_10: mrr.value().unwrap_or(0.0),
        queries: per_query.len(),
        missing_from_run,
        not_in_qrels,
        per_query,
    }
}

/// Renders reports as a markdown table, one row per mode, values to 4 decimals:
///
/// ```text
/// | mode | NDCG@10 | Recall@100 | MRR@10 | queries |
/// | --- | ---: | ---: | ---: | ---: |
/// | bm25 | 0.3120 | 0.7000 | 0.2500 | 43 |
/// ```
///
/// The recall column is headed `Recall@K` with K filled in when all reports share one K; when
/// they differ, the header reads `Recall@K` and each cell names its K (`0.7000 (@100)`). A `|` in
/// a mode name is escaped. Every line ends with a newline.
pub fn markdown_table(reports: &[ModeReport]) -> String {
    let shared_k = match reports.split_first() {
        Some((first, rest)) if rest.iter().all(|r| r.recall_k == first.recall_k) => {
            Some(first.recall_k)
        }
        _ => None,
    };
    let recall_header = match shared_k {
        Some(k) => format!("Recall@{k}"),
        None => "Recall@K".to_string(),
    };
    let mut out = format!("| mode | NDCG@10 | {recall_header} | MRR@10 | queries |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: |\n");
    for r in reports {
        let recall = match shared_k {
            Some(_) => format!("{:.4}", r.recall_at_k),
            None => format!("{:.4} (@{})", r.recall_at_k, r.recall_k),
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {:.4} | {} | {:.4} | {} |",
            r.mode.replace('|', "\\|"),
            r.ndcg_at_10,
            recall,
            r.mrr_at_10,
            r.queries
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qrels(entries: &[(&str, &[(&str, i32)])]) -> Qrels {
        entries
            .iter()
            .map(|(q, docs)| {
                let docs = docs.iter().map(|(d, g)| (d.to_string(), *g)).collect();
                (q.to_string(), docs)
            })
            .collect()
    }

    fn run(entries: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        entries
            .iter()
            .map(|(q, docs)| (q.to_string(), docs.iter().map(|d| d.to_string()).collect()))
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn evaluate_run_with_missing_and_extra_queries() {
        let qrels = qrels(&[
            ("q1", &[("a", 2), ("b", 1)]),
            ("q2", &[("c", 1)]),
            ("q3", &[("d", 0)]),
        ]);
        let run = run(&[
            ("q1", &["a", "x", "b"]),
            ("q9", &["a"]),
            // q2 is missing; q1 repeated: the first ranking wins
            ("q1", &["x"]),
            ("q3", &["d"]),
        ]);
        let r = evaluate_run("bm25", &run, &qrels, 2, 1);
        assert_eq!(r.queries, 3);
        assert_eq!(r.missing_from_run, 1);
        assert_eq!(r.not_in_qrels, 1);
        let qids: Vec<&str> = r.per_query.iter().map(|m| m.qid.as_str()).collect();
        assert_eq!(qids, ["q1", "q2", "q3"]);

        // q1: gains [2, 0, 1]; DCG = 2/1 + 0 + 1/log2(4) = 2.5;
        //     IDCG = 2/1 + 1/log2(3) = 2.630929753571457; NDCG = 0.950236...
        //     recall@2 (min grade 1): relevant {a, b}, top 2 = [a, x] -> 1/2; RR = 1/1
        let q1 = &r.per_query[0];
        let ndcg_q1 = 2.5 / (2.0 + 1.0 / 3f64.log2());
        assert!(close(q1.ndcg10.unwrap(), ndcg_q1));
        assert_eq!((q1.recall, q1.mrr10), (Some(0.5), Some(1.0)));
        // q2: missing from the run -> empty ranking -> all 0, but defined
        let q2 = &r.per_query[1];
        assert_eq!(
            (q2.ndcg10, q2.recall, q2.mrr10),
            (Some(0.0), Some(0.0), Some(0.0))
        );
        // q3: no positive grade -> all undefined, excluded from the means
        let q3 = &r.per_query[2];
        assert_eq!((q3.ndcg10, q3.recall, q3.mrr10), (None, None, None));

        // means over q1 and q2 only
        assert!(close(r.ndcg_at_10, ndcg_q1 / 2.0));
        assert!(close(r.recall_at_k, 0.25));
        assert!(close(r.mrr_at_10, 0.5));
        assert_eq!(r.recall_k, 2);
    }

    #[test]
    fn evaluate_empty_inputs() {
        let r = evaluate_run("none", &[], &Qrels::new(), 100, 1);
        assert_eq!(
            (r.queries, r.ndcg_at_10, r.recall_at_k, r.mrr_at_10),
            (0, 0.0, 0.0, 0.0)
        );
        assert!(r.per_query.is_empty());
    }

    #[test]
    fn report_serialises_to_json() {
        let qrels = qrels(&[("q1", &[("a", 1)])]);
        let r = evaluate_run("dense", &run(&[("q1", &["a"])]), &qrels, 10, 1);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["mode"], "dense");
        assert_eq!(json["ndcg_at_10"], 1.0);
        assert_eq!(json["per_query"][0]["qid"], "q1");
        let back: ModeReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    fn report(
        mode: &str,
        ndcg: f64,
        recall: f64,
        k: usize,
        mrr: f64,
        queries: usize,
    ) -> ModeReport {
        ModeReport {
            mode: mode.into(),
            ndcg_at_10: ndcg,
            recall_at_k: recall,
            recall_k: k,
            mrr_at_10: mrr,
            queries,
            missing_from_run: 0,
            not_in_qrels: 0,
            per_query: Vec::new(),
        }
    }

    #[test]
    fn markdown_table_formatting() {
        let reports = [
            report("bm25", 0.31204, 0.7, 100, 0.25, 43),
            report("hybrid|rrf", 1.0 / 3.0, 0.123_46, 100, 0.0, 43),
        ];
        assert_eq!(
            markdown_table(&reports),
            "| mode | NDCG@10 | Recall@100 | MRR@10 | queries |\n\
             | --- | ---: | ---: | ---: | ---: |\n\
             | bm25 | 0.3120 | 0.7000 | 0.2500 | 43 |\n\
             | hybrid\\|rrf | 0.3333 | 0.1235 | 0.0000 | 43 |\n"
        );
    }

    #[test]
    fn markdown_table_mixed_k_and_empty() {
        let reports = [
            report("a", 0.5, 0.5, 10, 0.5, 1),
            report("b", 0.5, 0.25, 100, 0.5, 1),
        ];
        let t = markdown_table(&reports);
        assert!(t.starts_with("| mode | NDCG@10 | Recall@K | MRR@10 | queries |\n"));
        assert!(t.contains("| a | 0.5000 | 0.5000 (@10) | 0.5000 | 1 |\n"));
        assert!(t.contains("| b | 0.5000 | 0.2500 (@100) | 0.5000 | 1 |\n"));
        assert_eq!(
            markdown_table(&[]),
            "| mode | NDCG@10 | Recall@K | MRR@10 | queries |\n| --- | ---: | ---: | ---: | ---: |\n"
        );
    }
}
