//! `shelfrank eval`: retrieval modes against graded judgements, or personalised
//! ranking on search tasks.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use shelfrank::eval::{self, PersonalMode, PersonalOptions, RetrievalOptions};
use shelfrank::Mode;

use super::{load_events, Bars, ModelArgs, DEFAULT_INDEX};

#[derive(Args)]
pub struct EvalArgs {
    /// Index directory.
    #[arg(long, default_value = DEFAULT_INDEX)]
    index: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Queries: qid<TAB>text per line.
    #[arg(long, required_unless_present = "personal_queries")]
    queries: Option<PathBuf>,
    /// TREC qrels: qid 0 product grade.
    #[arg(long, required_unless_present = "personal_queries")]
    qrels: Option<PathBuf>,
    /// Personalised tasks (qid, user, ts, query, target_item) instead of queries + qrels.
    #[arg(long)]
    personal_queries: Option<PathBuf>,
    /// Event files for profiles in personalised evaluation (repeatable).
    #[arg(long = "events")]
    events: Vec<PathBuf>,
    /// Evaluate only queries of this half (0 or 1) of the two-fold split by query id.
    #[arg(long)]
    fold: Option<u8>,
    /// Comma-separated modes: bm25, dense, hybrid (engine default), rrf[:K], absolute:W or weighted:W (W = BM25 weight, dense = 1 - W), rerank (the trained head over hybrid). Personalised: hybrid, profile, ctr.
    #[arg(long, default_value = "bm25,dense,hybrid")]
    modes: String,
    /// Relevant for recall and MRR: grade >= this.
    #[arg(long, default_value_t = 3)]
    min_grade: i32,
    /// Recall cut-off.
    #[arg(long, default_value_t = 100)]
    recall_k: usize,
    /// Candidates per retriever before fusion (at least recall-k).
    #[arg(long)]
    candidates: Option<usize>,
    /// HNSW ef for the dense retriever (default: the index's).
    #[arg(long)]
    ef: Option<usize>,
    /// Evaluate only the first N queries.
    #[arg(long)]
    limit: Option<usize>,
    /// Directory for report.json and the TREC run files.
    #[arg(long, default_value = "eval-out")]
    out: PathBuf,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(a: EvalArgs) -> Result<()> {
    if a.personal_queries.is_some() {
        return run_personal(a);
    }
    let (Some(queries_path), Some(qrels_path)) = (&a.queries, &a.qrels) else {
        bail!("--queries and --qrels are needed (or --personal-queries)");
    };
    let opts = RetrievalOptions {
        modes: eval::parse_modes(&a.modes)?,
        min_grade: a.min_grade,
        recall_k: a.recall_k,
        candidates: a.candidates,
        ef: a.ef,
    };
    let need_encoder = opts.modes.iter().any(|m| m.mode != Mode::Bm25);
    let engine = a.model.open(&a.index, need_encoder)?;
    let mut queries = eval::read_queries(queries_path)?;
    let mut qrels = eval::read_qrels(qrels_path)?;
    queries.retain(|q| eval::in_fold(&q.qid, a.fold));
    qrels.retain(|qid, _| eval::in_fold(qid, a.fold));
    if let Some(n) = a.limit {
        queries.truncate(n);
    }
    let res = eval::retrieval(&engine, &queries, &qrels, &opts, &Bars::new(a.quiet))?;
    outln!("{}", res.table());
    outln!(
        "{} queries; encoding {:.1}s, retrieval {:.1}s; relevant = grade >= {}; default hybrid fusion: {:?}",
        res.queries,
        res.encode_secs,
        res.search_secs,
        a.min_grade,
        engine.default_fusion()
    );
    res.write(&a.out)?;
    eprintln!("wrote {}/report.json and run files", a.out.display());
    Ok(())
}

fn run_personal(a: EvalArgs) -> Result<()> {
    let path = a.personal_queries.clone().context("--personal-queries")?;
    let modes = a
        .modes
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::parse::<PersonalMode>)
        .collect::<shelfrank::Result<Vec<_>>>()?;
    let engine = a.model.open(&a.index, true)?;
    let mut tasks = eval::read_personal_tasks(&path)?;
    if let Some(n) = a.limit {
        tasks.truncate(n);
    }
    let store = load_events(&engine, &a.events)?;
    let opts = PersonalOptions {
        modes,
        candidates: a
            .candidates
            .unwrap_or(PersonalOptions::default().candidates),
    };
    let t0 = Instant::now();
    let reports = eval::personal(&engine, &tasks, &store, &opts, &Bars::new(a.quiet))?;
    print!("{}", eval::personal_table(&reports));
    outln!(
        "{} tasks, {} candidates each plus the shopper's own matching items; profiles from {} events before each task's time; {:.1}s",
        tasks.len(),
        opts.candidates,
        store.len(),
        t0.elapsed().as_secs_f64()
    );
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    eval::write_json(&a.out.join("personal_report.json"), &reports)?;
    Ok(())
}
