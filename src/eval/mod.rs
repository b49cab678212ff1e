//! Offline evaluation of rankings: reading query sets, TREC qrels and personalised tasks,
//! scoring runs with the standard IR metrics, and writing TREC run files, JSON reports and a
//! markdown summary table. Never used on the serving path.
//!
//! Metrics (position `i` 0-based, rank `r = i + 1`; details and edge cases in `metrics.rs`):
//!
//! * DCG@k = Σ_{i<k} gain_i / log2(i + 2), gain = max(grade, 0);
//!   NDCG@k = DCG@k / IDCG@k, the ideal from all judged documents; undefined when IDCG = 0.
//! * Recall@k = |relevant ∩ top k| / |relevant|, relevant = grade ≥ `min_grade`.
//! * RR@k = 1 / r of the first relevant document within the top k (0 if none); MRR = its mean.
//! * Hit@k = [target ∈ top k].
//! * ROC AUC = (R₊ − n₊(n₊ + 1)/2) / (n₊ n₋) with average ranks for ties (Mann–Whitney U).
//!
//! Per-query values that are undefined (`None`) are left out of the means, as in trec_eval.
//!
//! Typical use: [`read_queries`] and [`read_qrels`], then [`retrieval`] (every mode from one
//! retrieval per query), [`RetrievalEval::write`] for the TREC run files and `report.json`, and
//! [`RetrievalEval::table`] for the summary. Personalised tasks: [`read_personal_tasks`], then
//! [`personal`]. HNSW recall against exact search: [`hnsw_recall`].
//!
//! Files: `error.rs` ([`EvalError`]), `files.rs` (readers and atomic writers), `metrics.rs`
//! (single-query metrics, [`Mean`]; the crate's one AUC and NDCG), `report.rs` (whole-run
//! evaluation, the table), `retrieval.rs`, `personal.rs` and `recall.rs` (the three drivers).

mod error;
mod files;
pub(crate) mod metrics;
mod personal;
mod recall;
mod report;
mod retrieval;

pub use error::{EvalError, EvalErrorKind};
pub use files::{
    read_candidates, read_personal_tasks, read_qrels, read_queries, read_trec_run, write_json,
    write_trec_run, PersonalTask, Qrels, Query, ScoredRanking,
};
pub use metrics::{
    auc, dcg_at_k, hit_at_k, ndcg_at_k, ndcg_of_gains, percentile, recall_at_k,
    reciprocal_rank_at_k, Mean,
};
pub use personal::{
    personal, personal_table, PersonalMode, PersonalOptions, PersonalReport, PERSONAL_MRR_K,
    PERSONAL_TOP,
};
pub use recall::{hnsw_recall, HnswRecall, RecallRow};
pub use report::{evaluate_run, markdown_table, ModeReport, QueryMetrics, MRR_K, NDCG_K};
pub use retrieval::{
    in_fold, parse_modes, retrieval, EvalMode, RetrievalEval, RetrievalOptions, Run,
};
