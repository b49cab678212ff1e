//! `shelfrank hnsw-recall`: HNSW recall@k against exact search, with latency.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use shelfrank::eval;

use super::{number_list, ModelArgs, DEFAULT_INDEX};

#[derive(Args)]
pub struct HnswRecallArgs {
    /// Index directory.
    #[arg(long, default_value = DEFAULT_INDEX)]
    index: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Queries (qid<TAB>text); without it, stored product vectors serve as queries.
    #[arg(long)]
    queries: Option<PathBuf>,
    /// Number of queries.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// Recall at this k.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    /// Comma-separated ef values.
    #[arg(long, default_value = "16,32,64,128,256")]
    ef: String,
}

pub fn run(a: HnswRecallArgs) -> Result<()> {
    let efs: Vec<usize> = number_list("--ef", &a.ef)?;
    let engine = a.model.open(&a.index, a.queries.is_some())?;
    let queries = a.queries.as_deref().map(eval::read_queries).transpose()?;
    let res = eval::hnsw_recall(&engine, queries.as_deref(), a.limit, a.k, &efs)?;
    outln!(
        "| ef | recall@{k} | recall@{k} before rescoring | median latency (µs) | p95 (µs) | p99 (µs) |",
        k = a.k
    );
    outln!("| --- | --- | --- | --- | --- | --- |");
    for r in &res.rows {
        let raw = r
            .recall_before_rescoring
            .map_or("n/a (f32 graph)".to_string(), |x| format!("{x:.4}"));
        outln!(
            "| {} | {:.4} | {raw} | {:.0} | {:.0} | {:.0} |",
            r.ef,
            r.recall,
            r.median_us,
            r.p95_us,
            r.p99_us
        );
    }
    outln!(
        "{} queries, exact search over {} products as the reference; graph vectors {}",
        res.queries,
        engine.len(),
        engine.quantization()
    );
    Ok(())
}
