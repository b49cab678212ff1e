//! The `shelfrank` command line: a thin layer over the library.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;

use shelfrank::catalog::{self, ColumnMap, Format, ReadOptions, TextEncoding};
use shelfrank::encoder::{self, DeviceSpec, EncoderOptions};
use shelfrank::engine::{Candidates, ExternalCandidate, Filters, Mode, SearchRequest};
use shelfrank::eval;
use shelfrank::profile::events::{parse_timestamp, read_events, EventReadOptions};
use shelfrank::profile::EventStore;
use shelfrank::rank::head::{CtrHead, HeadConfig};
use shelfrank::rank::train::{self as rtrain, SampleOptions};
use shelfrank::rank::RerankMode;
use shelfrank::{EngineBuilder, Fusion, HnswParams, IndexBuilder};

#[derive(Parser)]
#[command(name = "shelfrank", version, about = "Hybrid product search: BM25 + BERT embeddings + HNSW, fused", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an index from a product catalog (JSONL, CSV or TSV).
    Build(BuildArgs),
    /// Search an index.
    Search(SearchArgs),
    /// Evaluate retrieval modes against graded judgements (TREC qrels).
    Eval(EvalArgs),
    /// Measure HNSW recall@k against exact search, and latency, for several ef values.
    HnswRecall(HnswRecallArgs),
    /// Shopper events: import a JSONL file into the index's store, or forget a shopper.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Train the CTR head from search tasks, impressions or graded judgements.
    Train(TrainArgs),
    /// Rerank candidates found by another engine for a query (and shopper).
    Rerank(RerankArgs),
    /// Measure encoder throughput on catalog titles and single-query latency.
    EmbedBench(EmbedBenchArgs),
}

#[derive(Args)]
struct EmbedBenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Catalog whose titles are encoded (JSONL with "title").
    #[arg(long)]
    catalog: PathBuf,
    /// Number of titles.
    #[arg(long, default_value_t = 2000)]
    limit: usize,
    /// Texts per batch.
    #[arg(long, default_value_t = encoder::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Maximum tokens per text.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Encoder worker threads for batches (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Single-query encodes for the latency figure.
    #[arg(long, default_value_t = 50)]
    queries: usize,
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Load events (JSONL: user, item, kind, ts, quantity?, query?, position?).
    Import {
        /// Events file.
        file: PathBuf,
        /// Index directory.
        #[arg(long, default_value = "index/main")]
        index: PathBuf,
        /// Skip invalid lines (counted and reported).
        #[arg(long)]
        skip_invalid: bool,
    },
    /// Remove everything stored about a shopper.
    Forget {
        /// The shopper's id.
        user: String,
        /// Index directory.
        #[arg(long, default_value = "index/main")]
        index: PathBuf,
    },
}

#[derive(Args)]
struct PersonalArgs {
    /// The shopper (personalised reranking).
    #[arg(long)]
    user: Option<String>,
    /// Rank as of this time (RFC 3339 or ISO 8601); default now.
    #[arg(long)]
    as_of: Option<String>,
    /// Reranking: auto (head if trained, else profile), ctr, profile, off.
    #[arg(long, default_value = "auto")]
    rerank: String,
    /// Diversity weight (MMR over embeddings), 0..1.
    #[arg(long, default_value_t = 0.0)]
    diversity: f32,
}

impl PersonalArgs {
    fn apply(&self, req: &mut SearchRequest) -> Result<()> {
        req.user = self.user.clone();
        req.as_of = self
            .as_of
            .as_deref()
            .map(|t| parse_timestamp(t).map_err(|e| anyhow::anyhow!("--as-of: {e}")))
            .transpose()?;
        req.rerank = self.rerank.parse::<RerankMode>()?;
        req.diversity = self.diversity;
        Ok(())
    }
}

#[derive(Args)]
struct TrainArgs {
    /// Index directory (the head is saved in INDEX/rank/).
    #[arg(long, default_value = "index/main")]
    index: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Personalised search tasks: qid, user, ts, query, target_item (TSV).
    #[arg(long)]
    tasks: Option<PathBuf>,
    /// Impression log (JSONL: user, query, ts, shown, clicked).
    #[arg(long)]
    impressions: Option<PathBuf>,
    /// Queries (with --qrels): graded judgements as soft labels.
    #[arg(long)]
    queries: Option<PathBuf>,
    /// TREC qrels (with --queries).
    #[arg(long)]
    qrels: Option<PathBuf>,
    /// Event files for profiles (repeatable); without it, the index's own store.
    #[arg(long = "events")]
    events: Vec<PathBuf>,
    /// Candidates per task (the "shown" list).
    #[arg(long, default_value_t = 100)]
    depth: usize,
    /// Use at most this many tasks/queries.
    #[arg(long)]
    limit: Option<usize>,
    /// Train only on queries whose id hashes into this half (0 or 1) of a two-fold split (qrels).
    #[arg(long)]
    fold: Option<u8>,
    /// Epochs (upper bound; early stopping on validation AUC).
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Random seed (same seed, same model).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Epochs without validation AUC improvement before stopping.
    #[arg(long, default_value_t = HeadConfig::default().patience)]
    patience: usize,
    /// Hidden layer sizes, comma-separated.
    #[arg(long, default_value = "32,16")]
    hidden: String,
    /// No inverse-propensity weighting.
    #[arg(long)]
    no_ips: bool,
    /// No class re-weighting.
    #[arg(long)]
    no_class_weights: bool,
    /// Continue training the existing head on these logs, keeping its normalisation.
    #[arg(long)]
    resume: bool,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct RerankArgs {
    /// The query.
    #[arg(long)]
    query: String,
    /// Candidates: a file (or - for stdin) with one `id` or `id<TAB>score` per line, or a JSON array of {"id", "score"}.
    #[arg(long)]
    candidates: PathBuf,
    /// Index directory.
    #[arg(long, default_value = "index/main")]
    index: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    personal: PersonalArgs,
    /// Number of hits.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
}

#[derive(Args)]
struct ModelArgs {
    /// Model directory (Hugging Face BERT: config.json, tokenizer.json, model.safetensors).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Device for the encoder: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Encoder implementation: fast (default) or reference (candle-transformers'
    /// stock BERT, slower; for checking the fast one).
    #[arg(long, default_value = "fast")]
    encoder: String,
}

#[derive(Args)]
struct BuildArgs {
    /// Catalog file.
    #[arg(long)]
    catalog: PathBuf,
    /// Where to write the index (replaced atomically if it exists).
    #[arg(long, default_value = "index/main")]
    index: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Catalog format: jsonl, csv or tsv (default: from the file extension).
    #[arg(long)]
    format: Option<String>,
    /// CSV/TSV column mapping, e.g. "id=sku,title=name,attr.color=colour".
    #[arg(long)]
    columns: Option<String>,
    /// Text encoding of the catalog: utf8 or latin1.
    #[arg(long, default_value = "utf8")]
    encoding: String,
    /// Skip invalid lines (counted and reported) instead of stopping at the first.
    #[arg(long)]
    skip_invalid: bool,
    /// Texts per encoder batch.
    #[arg(long, default_value_t = encoder::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Maximum tokens per product text (default: the model's own limit).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// HNSW links per node (M).
    #[arg(long, default_value_t = HnswParams::default().m)]
    hnsw_m: usize,
    /// HNSW candidate list size while building.
    #[arg(long, default_value_t = HnswParams::default().ef_construction)]
    hnsw_ef_construction: usize,
    /// HNSW candidate list size while searching (saved with the index).
    #[arg(long, default_value_t = HnswParams::default().ef_search)]
    hnsw_ef_search: usize,
    /// Encode every product again instead of reusing unchanged products'
    /// embeddings from an index already at --index.
    #[arg(long)]
    no_reuse: bool,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct FusionArgs {
    /// Fusion for hybrid mode: weighted or rrf (default: the engine's default).
    #[arg(long)]
    fusion: Option<String>,
    /// RRF rank constant.
    #[arg(long, default_value_t = 60.0)]
    rrf_k: f32,
    /// Weight of BM25 (weighted fusion and RRF).
    #[arg(long)]
    bm25_weight: Option<f32>,
    /// Weight of the dense score (weighted fusion and RRF).
    #[arg(long)]
    dense_weight: Option<f32>,
}

impl FusionArgs {
    fn fusion(&self) -> Result<Option<Fusion>> {
        let Some(kind) = &self.fusion else {
            if self.bm25_weight.is_some() || self.dense_weight.is_some() {
                bail!("--bm25-weight/--dense-weight need --fusion weighted or --fusion rrf");
            }
            return Ok(None);
        };
        Ok(Some(match kind.as_str() {
            "rrf" => Fusion::Rrf {
                k: self.rrf_k,
                bm25_weight: self.bm25_weight.unwrap_or(1.0),
                dense_weight: self.dense_weight.unwrap_or(1.0),
            },
            "weighted" => Fusion::Weighted {
                bm25: self.bm25_weight.unwrap_or(0.5),
                dense: self.dense_weight.unwrap_or(0.5),
            },
            other => bail!("unknown fusion {other:?}; expected weighted or rrf"),
        }))
    }
}

#[derive(Args)]
struct SearchArgs {
    /// The query text.
    query: String,
    /// Index directory.
    #[arg(long, default_value = "index/main")]
    index: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// bm25, dense or hybrid.
    #[arg(long, default_value = "hybrid")]
    mode: String,
    /// Number of hits.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    /// Category prefix filter, e.g. "Bath > Faucets".
    #[arg(long)]
    category: Option<String>,
    /// Minimum price.
    #[arg(long)]
    min_price: Option<f64>,
    /// Maximum price.
    #[arg(long)]
    max_price: Option<f64>,
    /// Attribute filter KEY=VALUE (repeatable).
    #[arg(long = "attr")]
    attrs: Vec<String>,
    #[command(flatten)]
    fusion: FusionArgs,
    #[command(flatten)]
    personal: PersonalArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// Index directory.
    #[arg(long, default_value = "index/main")]
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
    /// Comma-separated modes: bm25, dense, hybrid (engine default), rrf[:K], weighted:W (W = BM25 weight, dense = 1 - W), rerank (the trained head over hybrid). Personalised: hybrid, profile, ctr.
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

#[derive(Args)]
struct HnswRecallArgs {
    /// Index directory.
    #[arg(long, default_value = "index/main")]
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

fn main() {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Build(a) => build(a),
        Command::Search(a) => search(a),
        Command::Eval(a) => run_eval(a),
        Command::HnswRecall(a) => hnsw_recall(a),
        Command::Events(c) => events(c),
        Command::Train(a) => train(a),
        Command::Rerank(a) => rerank(a),
        Command::EmbedBench(a) => embed_bench(a),
    };
    if let Err(e) = res {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn bar(len: usize, prefix: &str, quiet: bool) -> ProgressBar {
    let target = if quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(len as u64), target);
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} ({per_sec}, ETA {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(prefix.to_string());
    bar
}

fn human_bytes(b: u64) -> String {
    let mb = b as f64 / (1024.0 * 1024.0);
    if mb >= 1.0 {
        format!("{mb:.1} MiB")
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

fn model_dir(m: &ModelArgs) -> PathBuf {
    m.model.clone().unwrap_or_else(encoder::default_model_dir)
}

/// Encoder options for the model, device and implementation named on the command line.
fn encoder_options(m: &ModelArgs) -> Result<EncoderOptions> {
    let mut opts = EncoderOptions::new(model_dir(m));
    opts.device = m.device.parse::<DeviceSpec>()?;
    opts.implementation = m.encoder.parse()?;
    Ok(opts)
}

fn build(a: BuildArgs) -> Result<()> {
    let start = Instant::now();
    let opts = ReadOptions {
        format: a.format.as_deref().map(str::parse::<Format>).transpose()?,
        encoding: a.encoding.parse::<TextEncoding>()?,
        columns: match &a.columns {
            Some(c) => c.parse::<ColumnMap>()?,
            None => ColumnMap::default(),
        },
        skip_invalid: a.skip_invalid,
        ..ReadOptions::default()
    };
    let cat = catalog::read_catalog(&a.catalog, &opts)?;
    eprintln!(
        "read {} products from {}{}",
        cat.products.len(),
        a.catalog.display(),
        if cat.skipped > 0 {
            format!(", skipped {} invalid lines", cat.skipped)
        } else {
            String::new()
        }
    );
    for p in &cat.problems {
        eprintln!("  skipped: {p}");
    }
    if cat.skipped > cat.problems.len() {
        eprintln!("  ... and {} more", cat.skipped - cat.problems.len());
    }
    let mut enc = encoder_options(&a.model)?;
    enc.max_tokens = a.max_tokens;
    let summary = IndexBuilder::new(&a.index, enc.model_dir.clone())
        .encoder_options(enc)
        .hnsw(HnswParams {
            m: a.hnsw_m,
            ef_construction: a.hnsw_ef_construction,
            ef_search: a.hnsw_ef_search,
        })
        .batch_size(a.batch_size)
        .reuse_embeddings(!a.no_reuse)
        .progress(!a.quiet)
        .source(a.catalog.display().to_string())
        .build(&cat.products)?;
    println!(
        "built {} with {} products ({} dims) in {:.1}s (encoding {:.1}s{}, hnsw {:.1}s, keywords {:.1}s); index size {}",
        summary.index.display(),
        summary.products,
        summary.dim,
        start.elapsed().as_secs_f64(),
        summary.encode_secs,
        if summary.reused_embeddings > 0 {
            format!(" with {} embeddings reused", summary.reused_embeddings)
        } else {
            String::new()
        },
        summary.hnsw_secs,
        summary.text_secs,
        human_bytes(summary.bytes)
    );
    Ok(())
}

fn open_engine(index: &Path, m: &ModelArgs, need_encoder: bool) -> Result<shelfrank::Engine> {
    let mut b = EngineBuilder::new(index)
        .device(m.device.parse::<DeviceSpec>()?)
        .encoder_implementation(m.encoder.parse()?)
        .keyword_only(!need_encoder);
    if let Some(dir) = &m.model {
        b = b.model_dir(dir);
    }
    let engine = b.build()?;
    if let Some(w) = engine.head_warning() {
        eprintln!("warning: {w}");
    }
    Ok(engine)
}

fn parse_filters(a: &SearchArgs) -> Result<Filters> {
    let mut f = Filters {
        category_prefix: a.category.as_deref().map(Filters::category),
        min_price: a.min_price,
        max_price: a.max_price,
        attributes: Vec::new(),
    };
    for kv in &a.attrs {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--attr {kv:?}: expected KEY=VALUE"))?;
        f.attributes
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(f)
}

fn fmt_opt(v: Option<f32>, rank: Option<usize>) -> String {
    match (v, rank) {
        (Some(v), Some(r)) => format!("{v:.3} (#{r})"),
        _ => "-".into(),
    }
}

fn search(a: SearchArgs) -> Result<()> {
    let mode: Mode = a.mode.parse()?;
    let engine = open_engine(
        &a.index,
        &a.model,
        mode != Mode::Bm25 || a.personal.user.is_some(),
    )?;
    let mut req = SearchRequest::new(a.query.clone())
        .mode(mode)
        .k(a.k)
        .filters(parse_filters(&a)?);
    req.fusion = a.fusion.fusion()?;
    a.personal.apply(&mut req)?;
    let t = Instant::now();
    let hits = engine.search(&req)?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if a.json {
        let rows: Vec<serde_json::Value> = hits
            .iter()
            .map(|h| {
                serde_json::json!({
                    "id": h.id,
                    "title": engine.product(h.ord).map(|p| p.title.as_str()),
                    "score": h.score,
                    "breakdown": h.breakdown,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "query": a.query, "mode": mode.name(), "hits": rows })
            )?
        );
        return Ok(());
    }
    println!(
        "{} hits for {:?} ({}, {:.1} ms)",
        hits.len(),
        a.query,
        mode.name(),
        ms
    );
    println!(
        "{:>3}  {:>8}  {:<14} {:<14} {:<48} id",
        "#", "score", "bm25", "dense", "title"
    );
    for (i, h) in hits.iter().enumerate() {
        let title: String = engine
            .product(h.ord)
            .map(|p| p.title.chars().take(48).collect())
            .unwrap_or_default();
        let mut personal = String::new();
        if let Some(c) = h.breakdown.ctr {
            personal.push_str(&format!("  ctr={c:.3}"));
        }
        if let Some(p) = h.breakdown.profile {
            personal.push_str(&format!("  profile={p:.3}"));
        }
        println!(
            "{:>3}  {:>8.4}  {:<14} {:<14} {:<48} {}{}",
            i + 1,
            h.score,
            fmt_opt(h.breakdown.bm25, h.breakdown.bm25_rank),
            fmt_opt(h.breakdown.dense, h.breakdown.dense_rank),
            title,
            h.id,
            personal
        );
    }
    Ok(())
}

fn events(c: EventsCommand) -> Result<()> {
    match c {
        EventsCommand::Import {
            file,
            index,
            skip_invalid,
        } => {
            let engine = EngineBuilder::new(&index).keyword_only(true).build()?;
            let opts = EventReadOptions {
                skip_invalid,
                ..EventReadOptions::default()
            };
            let t = Instant::now();
            let s = engine.import_events(&file, &opts)?;
            for p in &s.problems {
                eprintln!("  skipped: {p}");
            }
            println!(
                "imported {} events from {} in {:.1}s{}; the store holds {}",
                s.imported,
                file.display(),
                t.elapsed().as_secs_f64(),
                if s.skipped > 0 {
                    format!(", skipped {} invalid lines", s.skipped)
                } else {
                    String::new()
                },
                engine.event_count()?
            );
        }
        EventsCommand::Forget { user, index } => {
            let engine = EngineBuilder::new(&index).keyword_only(true).build()?;
            let n = engine.forget(&user)?;
            println!("forgot {user}: {n} events removed");
        }
    }
    Ok(())
}

/// Loads event files into an in-memory store (for training and evaluation).
fn load_events(engine: &shelfrank::Engine, files: &[PathBuf]) -> Result<EventStore> {
    let mut store = EventStore::open_in_memory();
    for f in files {
        let batch = read_events(
            f,
            &EventReadOptions {
                skip_invalid: true,
                ..Default::default()
            },
            &|id: &str| engine.ord_of(id).is_some(),
        )?;
        if batch.skipped > 0 {
            eprintln!(
                "{}: skipped {} lines (first: {})",
                f.display(),
                batch.skipped,
                batch
                    .problems
                    .first()
                    .map(|p| p.to_string())
                    .unwrap_or_default()
            );
        }
        store.append(&batch.events)?;
        eprintln!("loaded {} events from {}", batch.events.len(), f.display());
    }
    Ok(store)
}

fn in_fold(qid: &str, fold: Option<u8>) -> bool {
    match fold {
        None => true,
        Some(f) => {
            let mut h: u32 = 2_166_136_261;
            for b in qid.bytes() {
                h = (h ^ b as u32).wrapping_mul(16_777_619);
            }
            (h % 2) as u8 == f
        }
    }
}

fn train(a: TrainArgs) -> Result<()> {
    let start = Instant::now();
    let engine = open_engine(&a.index, &a.model, true)?;
    let mut opts = SampleOptions {
        depth: a.depth,
        ips: !a.no_ips,
        class_weights: !a.no_class_weights,
        ..SampleOptions::default()
    };
    let store = if a.events.is_empty() {
        None
    } else {
        Some(load_events(&engine, &a.events)?)
    };
    let sources = [
        a.tasks.is_some(),
        a.impressions.is_some(),
        a.queries.is_some() || a.qrels.is_some(),
    ];
    if sources.iter().filter(|x| **x).count() != 1 {
        bail!(
            "give exactly one training source: --tasks, --impressions, or --queries with --qrels"
        );
    }
    let b = bar(0, "samples", a.quiet);
    let (groups, added, source) = if let Some(path) = &a.tasks {
        let mut tasks = eval::read_personal_tasks(path)?;
        if let Some(n) = a.limit {
            tasks.truncate(n);
        }
        b.set_length(tasks.len() as u64);
        let store = store.context("--tasks needs --events (the shoppers' history)")?;
        let stats = engine.item_stats(store.iter());
        let (g, added) =
            rtrain::personal_task_groups(&engine, &tasks, &store, &stats, &opts, &|n| {
                b.set_position(n as u64)
            })?;
        (g, added, format!("personal tasks {}", path.display()))
    } else if let Some(path) = &a.impressions {
        let imps = rtrain::read_impressions(path)?;
        let store = store.unwrap_or_else(EventStore::open_in_memory);
        let stats = engine.item_stats(store.iter());
        let (g, unknown) = rtrain::impression_groups(&engine, &imps, &store, &stats)?;
        if unknown > 0 {
            eprintln!("{unknown} shown ids are not in the index and were skipped");
        }
        (g, 0, format!("impressions {}", path.display()))
    } else {
        let (Some(q), Some(r)) = (&a.queries, &a.qrels) else {
            bail!("--queries and --qrels go together")
        };
        let mut queries = eval::read_queries(q)?;
        queries.retain(|q| in_fold(&q.qid, a.fold));
        if let Some(n) = a.limit {
            queries.truncate(n);
        }
        let qrels = eval::read_qrels(r)?;
        // Judgements are not clicks: no position bias to correct, and the graded
        // soft labels already say how relevant each item is, so the class
        // re-weighting meant for rare binary clicks is left out.
        opts.ips = false;
        opts.class_weights = false;
        b.set_length(queries.len() as u64);
        let g = rtrain::qrels_groups(&engine, &queries, &qrels, &opts, &|n| {
            b.set_position(n as u64)
        })?;
        (g, 0, format!("qrels {} (fold {:?})", r.display(), a.fold))
    };
    b.finish();
    let data = rtrain::weigh(groups, &opts, added);
    let s = &data.summary;
    eprintln!(
        "{} groups ({} targets added beyond the shown list), {} train / {} validation samples, {} train positives",
        s.groups, s.targets_added, s.train_samples, s.val_samples, s.train_positives
    );
    if !s.propensities.is_empty() {
        let est: Vec<String> = s
            .bucket_ends
            .iter()
            .zip(&s.propensities)
            .map(|(e, p)| format!("<={e}: {p:.3}"))
            .collect();
        eprintln!(
            "position propensities (clipped at {}): {}",
            opts.min_propensity,
            est.join(", ")
        );
    }
    eprintln!(
        "class weights: positive {:.2}, negative {:.3}",
        s.class_weights.0, s.class_weights.1
    );
    let sample_secs = start.elapsed().as_secs_f64();
    let hidden = a
        .hidden
        .split(',')
        .map(|h| {
            h.trim()
                .parse::<usize>()
                .with_context(|| format!("--hidden: bad size {h:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let cfg = HeadConfig {
        epochs: a.epochs,
        seed: a.seed,
        patience: a.patience,
        hidden,
        ..HeadConfig::default()
    };
    let names: Vec<String> = shelfrank::rank::FEATURE_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let eb = bar(cfg.epochs, "epochs", a.quiet);
    let mut on_epoch = |r: &shelfrank::rank::head::EpochReport| {
        eb.set_position(r.epoch as u64);
        eb.set_message(format!("loss {:.4} val AUC {:?}", r.train_loss, r.val_auc));
        eprintln!(
            "epoch {:>2}: train loss {:.4}, val loss {:.4}, val AUC {}, val NDCG@10 {}",
            r.epoch,
            r.train_loss,
            r.val_loss,
            r.val_auc.map_or("-".into(), |v| format!("{v:.4}")),
            r.val_ndcg10.map_or("-".into(), |v| format!("{v:.4}"))
        );
    };
    let rank_dir = a.index.join(shelfrank::rank::RANK_DIR);
    let (head, report) = if a.resume {
        let old = CtrHead::load(&rank_dir)
            .with_context(|| format!("--resume: no head in {}", rank_dir.display()))?;
        old.resume(&data.train, &data.val, &cfg, &mut on_epoch)?
    } else {
        CtrHead::train(names, &data.train, &data.val, &cfg, &mut on_epoch)?
    };
    eb.finish_and_clear();
    let card = serde_json::json!({
        "trained_unix": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "source": source,
        "events": a.events.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "sampling": opts,
        "dataset": data.summary,
        "config": cfg,
        "report": report,
        "resumed": a.resume,
    });
    std::fs::create_dir_all(&rank_dir)
        .with_context(|| format!("creating {}", rank_dir.display()))?;
    head.save(&rank_dir, &card)?;
    println!(
        "trained the CTR head in {:.1}s (samples {:.1}s, training {:.1}s): best epoch {}, validation AUC {}; saved in {}",
        start.elapsed().as_secs_f64(),
        sample_secs,
        report.seconds,
        report.best_epoch,
        report.best_val_auc.map_or("-".into(), |v| format!("{v:.4}")),
        rank_dir.display()
    );
    Ok(())
}

fn read_candidates(path: &Path) -> Result<Vec<ExternalCandidate>> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: expected a JSON array of {{\"id\", \"score\"}}",
                path.display()
            )
        });
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (id, score) =
            match line.split_once('\t') {
                Some((id, s)) => (
                    id,
                    Some(s.trim().parse::<f32>().with_context(|| {
                        format!("{}:{}: bad score {s:?}", path.display(), i + 1)
                    })?),
                ),
                None => (line, None),
            };
        out.push(ExternalCandidate {
            id: id.to_string(),
            score,
        });
    }
    Ok(out)
}

fn rerank(a: RerankArgs) -> Result<()> {
    let engine = open_engine(&a.index, &a.model, true)?;
    let cands = read_candidates(&a.candidates)?;
    let mut req = SearchRequest::new(a.query.clone()).k(a.k);
    a.personal.apply(&mut req)?;
    let res = engine.rerank(&req, &cands)?;
    let hits: Vec<serde_json::Value> = res
        .hits
        .iter()
        .map(|h| serde_json::json!({"id": h.id, "title": engine.product(h.ord).map(|p| p.title.as_str()), "score": h.score, "breakdown": h.breakdown}))
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(
            &serde_json::json!({"query": a.query, "user": a.personal.user, "hits": hits, "unknown": res.unknown})
        )?
    );
    Ok(())
}

/// One evaluated configuration: a name and how it ranks from the candidate lists.
struct EvalMode {
    name: String,
    mode: Mode,
    fusion: Option<Fusion>,
    /// Hybrid retrieval reranked by the trained head.
    rerank: bool,
}

fn parse_eval_modes(s: &str) -> Result<Vec<EvalMode>> {
    let mut out = Vec::new();
    for raw in s.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (head, arg) = match raw.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (raw, None),
        };
        let m = match head {
            "bm25" | "dense" | "hybrid" if arg.is_none() => EvalMode {
                name: raw.into(),
                mode: head.parse()?,
                fusion: None,
                rerank: false,
            },
            "rerank" if arg.is_none() => EvalMode {
                name: raw.into(),
                mode: Mode::Hybrid,
                fusion: None,
                rerank: true,
            },
            "rrf" => EvalMode {
                name: raw.into(),
                mode: Mode::Hybrid,
                fusion: Some(Fusion::rrf(
                    arg.map(str::parse).transpose()?.unwrap_or(60.0),
                )),
                rerank: false,
            },
            "weighted" => {
                let w: f32 = arg
                    .context("weighted needs a BM25 weight, e.g. weighted:0.7")?
                    .parse()?;
                if !(0.0..=1.0).contains(&w) {
                    bail!("weighted:{w}: the weight must be within 0..=1");
                }
                EvalMode {
                    name: raw.into(),
                    mode: Mode::Hybrid,
                    fusion: Some(Fusion::Weighted {
                        bm25: w,
                        dense: 1.0 - w,
                    }),
                    rerank: false,
                }
            }
            _ => bail!(
                "unknown eval mode {raw:?}; expected bm25, dense, hybrid, rrf[:K], weighted:W or rerank"
            ),
        };
        out.push(m);
    }
    if out.is_empty() {
        bail!("--modes lists no mode");
    }
    Ok(out)
}

fn run_eval(a: EvalArgs) -> Result<()> {
    if a.personal_queries.is_some() {
        return run_personal_eval(a);
    }
    let (Some(queries_path), Some(qrels_path)) = (&a.queries, &a.qrels) else {
        bail!("--queries and --qrels are needed (or --personal-queries)");
    };
    let modes = parse_eval_modes(&a.modes)?;
    let wants_rerank = modes.iter().any(|m| m.rerank);
    let need_dense = modes.iter().any(|m| m.mode != Mode::Bm25);
    let need_bm25 = modes.iter().any(|m| m.mode != Mode::Dense);
    let engine = open_engine(&a.index, &a.model, need_dense)?;
    if wants_rerank && engine.head().is_none() {
        bail!(
            "mode rerank needs a trained head in {}/rank (shelfrank train)",
            a.index.display()
        );
    }
    let mut queries = eval::read_queries(queries_path)?;
    let mut qrels = eval::read_qrels(qrels_path)?;
    queries.retain(|q| in_fold(&q.qid, a.fold));
    qrels.retain(|qid, _| in_fold(qid, a.fold));
    if let Some(n) = a.limit {
        queries.truncate(n);
    }
    let depth = a.candidates.unwrap_or(a.recall_k.max(100)).max(a.recall_k);
    let t = Instant::now();
    let embeddings: Vec<Option<Vec<f32>>> = if need_dense {
        let texts: Vec<&str> = queries.iter().map(|q| q.text.as_str()).collect();
        let b = bar(texts.len(), "encoding", a.quiet);
        let e = engine.embed_queries(&texts, &|n| b.set_position(n as u64))?;
        b.finish();
        e.into_iter().map(Some).collect()
    } else {
        vec![None; queries.len()]
    };
    let encode_secs = t.elapsed().as_secs_f64();
    let retrieval_mode = match (need_bm25, need_dense) {
        (true, true) => Mode::Hybrid,
        (false, true) => Mode::Dense,
        _ => Mode::Bm25,
    };
    let t = Instant::now();
    let b = bar(queries.len(), "searching", a.quiet);
    let cands: Vec<Candidates> = queries
        .par_iter()
        .zip(embeddings.into_par_iter())
        .map(|(q, emb)| {
            let mut req = SearchRequest::new(q.text.clone())
                .mode(retrieval_mode)
                .k(a.recall_k);
            req.candidates = Some(depth);
            req.ef_search = a.ef;
            req.embedding = emb;
            let c = engine.retrieve(&req);
            b.inc(1);
            c
        })
        .collect::<shelfrank::Result<_>>()?;
    b.finish();
    let search_secs = t.elapsed().as_secs_f64();
    let reranked: Vec<Vec<shelfrank::Hit>> = if wants_rerank {
        let empty = shelfrank::profile::ItemStats::default();
        let texts: Vec<&str> = queries.iter().map(|q| q.text.as_str()).collect();
        let vecs = engine.embed_queries(&texts, &|_| {})?;
        queries
            .par_iter()
            .zip(vecs.into_par_iter())
            .map(|(q, v)| {
                let mut req = SearchRequest::new(q.text.clone()).k(a.recall_k);
                // The serving default of a reranked request.
                req.candidates = Some(
                    a.candidates
                        .unwrap_or(shelfrank::engine::DEFAULT_RERANK_DEPTH)
                        .max(a.recall_k),
                );
                req.embedding = Some(v);
                req.rerank = RerankMode::Ctr;
                engine.personalize(&req, None, &empty, 0)
            })
            .collect::<shelfrank::Result<_>>()?
    } else {
        Vec::new()
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut reports = Vec::new();
    for m in &modes {
        let mut req = SearchRequest::new("").mode(m.mode).k(a.recall_k);
        req.fusion = m.fusion;
        let mut run = Vec::with_capacity(queries.len());
        let mut scored = Vec::with_capacity(queries.len());
        for (i, (q, c)) in queries.iter().zip(&cands).enumerate() {
            let hits = if m.rerank {
                reranked[i].clone()
            } else {
                engine.fuse(&req, c)
            };
            run.push((
                q.qid.clone(),
                hits.iter().map(|h| h.id.clone()).collect::<Vec<_>>(),
            ));
            scored.push((
                q.qid.clone(),
                hits.iter()
                    .map(|h| (h.id.clone(), h.score as f64))
                    .collect(),
            ));
        }
        let file_name: String = m
            .name
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        eval::write_trec_run(
            &a.out.join(format!("run.{file_name}.txt")),
            &file_name,
            &scored,
        )?;
        reports.push(eval::evaluate_run(
            &m.name,
            &run,
            &qrels,
            a.recall_k,
            a.min_grade,
        ));
    }
    println!("{}", eval::markdown_table(&reports));
    println!(
        "{} queries; encoding {:.1}s, retrieval {:.1}s; relevant = grade >= {}; default hybrid fusion: {:?}",
        queries.len(),
        encode_secs,
        search_secs,
        a.min_grade,
        engine.default_fusion()
    );
    eval::write_json(&a.out.join("report.json"), &reports)?;
    eprintln!("wrote {}/report.json and run files", a.out.display());
    Ok(())
}

fn run_personal_eval(a: EvalArgs) -> Result<()> {
    let path = a.personal_queries.clone().context("--personal-queries")?;
    let engine = open_engine(&a.index, &a.model, true)?;
    let mut tasks = eval::read_personal_tasks(&path)?;
    if let Some(n) = a.limit {
        tasks.truncate(n);
    }
    let modes: Vec<(String, RerankMode)> = a
        .modes
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| match m {
            "hybrid" => Ok((m.to_string(), RerankMode::Off)),
            "profile" | "+profile" => Ok(("+profile".to_string(), RerankMode::Profile)),
            "ctr" | "+ctr" => Ok(("+ctr".to_string(), RerankMode::Ctr)),
            other => bail!("personalised eval modes are hybrid, profile, ctr; got {other:?}"),
        })
        .collect::<Result<_>>()?;
    if modes.iter().any(|m| m.1 == RerankMode::Ctr) && engine.head().is_none() {
        bail!(
            "mode ctr needs a trained head in {}/rank (shelfrank train)",
            a.index.display()
        );
    }
    let store = load_events(&engine, &a.events)?;
    let stats = engine.item_stats(store.iter());
    let depth = a
        .candidates
        .unwrap_or(shelfrank::engine::DEFAULT_RERANK_DEPTH);
    let t0 = Instant::now();
    let texts: Vec<&str> = tasks.iter().map(|t| t.query.as_str()).collect();
    let qvecs = engine.embed_distinct(&texts, &|_| {})?;
    let b = bar(tasks.len(), "tasks", a.quiet);
    // Per task and mode: the 1-based rank of the target within the top 100, if any.
    let ranks: Vec<Vec<Option<usize>>> = tasks
        .par_iter()
        .map(|t| -> Result<Vec<Option<usize>>> {
            let ts = parse_timestamp(&t.ts).map_err(|e| anyhow::anyhow!("task {}: {e}", t.qid))?;
            let profile = engine.profile_from(&t.user, store.user_events(&t.user), ts);
            let mut req = SearchRequest::new(t.query.clone()).k(100);
            req.candidates = Some(depth);
            req.embedding = qvecs.get(t.query.as_str()).cloned();
            let cands = engine.personal_candidates(&req, Some(&profile), &stats, ts)?;
            let mut out = Vec::new();
            for (_, mode) in &modes {
                req.rerank = *mode;
                let hits = engine.rank_candidates(&req, &cands)?;
                out.push(hits.iter().position(|h| h.id == t.target).map(|r| r + 1));
            }
            b.inc(1);
            Ok(out)
        })
        .collect::<Result<_>>()?;
    b.finish();
    let n = tasks.len().max(1) as f64;
    let mut rows = Vec::new();
    println!("| mode | HR@10 | MRR@100 | NDCG@10 | tasks |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (mi, (name, _)) in modes.iter().enumerate() {
        let (mut hr, mut mrr, mut ndcg) = (0.0, 0.0, 0.0);
        for r in ranks.iter().filter_map(|r| r[mi]) {
            mrr += 1.0 / r as f64;
            if r <= 10 {
                hr += 1.0;
                ndcg += 1.0 / ((r + 1) as f64).log2();
            }
        }
        println!(
            "| {name} | {:.4} | {:.4} | {:.4} | {} |",
            hr / n,
            mrr / n,
            ndcg / n,
            tasks.len()
        );
        rows.push(serde_json::json!({"mode": name, "hr_at_10": hr / n, "mrr_at_100": mrr / n, "ndcg_at_10": ndcg / n, "tasks": tasks.len()}));
    }
    println!(
        "{} tasks, {} candidates each plus the shopper's own matching items; profiles from {} events before each task's time; {:.1}s",
        tasks.len(), depth, store.len(), t0.elapsed().as_secs_f64()
    );
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    eval::write_json(&a.out.join("personal_report.json"), &rows)?;
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn embed_bench(a: EmbedBenchArgs) -> Result<()> {
    let mut opts = encoder_options(&a.model)?;
    opts.max_tokens = Some(a.max_tokens);
    opts.workers = a.workers;
    let enc = shelfrank::Encoder::load(&opts)?;
    let cat = catalog::read_catalog(
        &a.catalog,
        &ReadOptions {
            skip_invalid: true,
            ..ReadOptions::default()
        },
    )?;
    let titles: Vec<&str> = cat
        .products
        .iter()
        .take(a.limit)
        .map(|p| p.title.as_str())
        .collect();
    enc.embed_many(&titles[..titles.len().min(64)], a.batch_size, &|_| {})?; // warm-up
    let mut rates = Vec::new();
    for _ in 0..a.repeat.max(1) {
        let t = Instant::now();
        enc.embed_many(&titles, a.batch_size, &|_| {})?;
        rates.push(titles.len() as f64 / t.elapsed().as_secs_f64());
    }
    let mut lat = Vec::new();
    for _ in 0..a.queries.max(1) {
        let t = Instant::now();
        enc.embed("rain shower head")?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "shelfrank: {} titles, batch {}, {} workers: {:.1} texts/s (median of {}); single query: {:.2} ms median",
        titles.len(),
        a.batch_size,
        enc.workers(),
        median(rates),
        a.repeat.max(1),
        median(lat)
    );
    Ok(())
}

fn hnsw_recall(a: HnswRecallArgs) -> Result<()> {
    let engine = open_engine(&a.index, &a.model, a.queries.is_some())?;
    let qvecs: Vec<Vec<f32>> = match &a.queries {
        Some(path) => {
            let qs = eval::read_queries(path)?;
            let texts: Vec<&str> = qs.iter().take(a.limit).map(|q| q.text.as_str()).collect();
            engine.embed_queries(&texts, &|_| {})?
        }
        None => {
            let n = engine.len();
            let step = (n / a.limit.max(1)).max(1);
            (0..n)
                .step_by(step)
                .take(a.limit)
                .filter_map(|i| engine.embedding(i as u32).map(<[f32]>::to_vec))
                .collect()
        }
    };
    let exact: Vec<Vec<u32>> = qvecs
        .iter()
        .map(|q| {
            engine
                .exact_dense(q, a.k)
                .into_iter()
                .map(|x| x.0)
                .collect()
        })
        .collect();
    println!("| ef | recall@{} | median latency (µs) | p95 (µs) |", a.k);
    println!("| --- | --- | --- | --- |");
    for ef in a.ef.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let ef: usize = ef.parse().with_context(|| format!("--ef {ef:?}"))?;
        let mut found = 0usize;
        let mut lat = Vec::with_capacity(qvecs.len());
        for (q, truth) in qvecs.iter().zip(&exact) {
            let t = Instant::now();
            let got = engine.hnsw_dense(q, a.k, ef)?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            found += got.iter().filter(|(o, _)| truth.contains(o)).count();
        }
        lat.sort_by(f64::total_cmp);
        let total: usize = exact.iter().map(Vec::len).sum();
        println!(
            "| {ef} | {:.4} | {:.0} | {:.0} |",
            found as f64 / total.max(1) as f64,
            lat.get(lat.len() / 2).copied().unwrap_or(0.0),
            lat.get(lat.len() * 95 / 100).copied().unwrap_or(0.0)
        );
    }
    println!(
        "{} queries, exact search over {} products as the reference",
        qvecs.len(),
        engine.len()
    );
    Ok(())
}
