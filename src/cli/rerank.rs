//! `shelfrank rerank`: rerank another engine's candidates for a query and shopper.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use shelfrank::{eval, SearchRequest};

use super::search::{hits_json, print_table};
use super::{ModelArgs, PersonalArgs, DEFAULT_INDEX};

#[derive(Args)]
pub struct RerankArgs {
    /// The query.
    #[arg(long)]
    query: String,
    /// Candidates: a file (or - for stdin) with one `id` or `id<TAB>score` per line, or a JSON array of {"id", "score"} (ids may be strings or integers; scores must be finite; each id once).
    #[arg(long)]
    candidates: PathBuf,
    /// Index directory.
    #[arg(long, default_value = DEFAULT_INDEX)]
    index: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    personal: PersonalArgs,
    /// Number of hits.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    /// Print a table instead of JSON.
    #[arg(long)]
    table: bool,
}

pub fn run(a: RerankArgs) -> Result<()> {
    let engine = a.model.open(&a.index, true)?;
    let cands = eval::read_candidates(&a.candidates)?;
    let mut req = SearchRequest::new(a.query.clone()).k(a.k);
    a.personal.apply(&mut req)?;
    let res = engine.rerank(&req, &cands)?;
    if a.table {
        print_table(&engine, &res.hits)?;
        if !res.unknown.is_empty() {
            outln!("not in the index: {}", res.unknown.join(", "));
        }
        return Ok(());
    }
    let doc = serde_json::json!({
        "query": a.query,
        "user": a.personal.user,
        "hits": hits_json(&engine, &res.hits),
        "unknown": res.unknown,
    });
    outln!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
