//! The `shelfrank` command line: a thin layer over the library.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;

use shelfrank::catalog::{self, ColumnMap, Format, ReadOptions, TextEncoding};
use shelfrank::encoder::{self, DeviceSpec, EncoderOptions};
use shelfrank::engine::{Candidates, Filters, Mode, SearchRequest};
use shelfrank::eval;
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
}

#[derive(Args)]
struct ModelArgs {
    /// Model directory (Hugging Face BERT: config.json, tokenizer.json, model.safetensors).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Device for the encoder: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    device: String,
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
    #[arg(long)]
    queries: PathBuf,
    /// TREC qrels: qid 0 product grade.
    #[arg(long)]
    qrels: PathBuf,
    /// Comma-separated modes: bm25, dense, hybrid (engine default), rrf[:K], weighted:W (W = BM25 weight, dense = 1 - W).
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
    let mut enc = EncoderOptions::new(model_dir(&a.model));
    enc.device = a.model.device.parse::<DeviceSpec>()?;
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
        .keyword_only(!need_encoder);
    if let Some(dir) = &m.model {
        b = b.model_dir(dir);
    }
    Ok(b.build()?)
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
    let engine = open_engine(&a.index, &a.model, mode != Mode::Bm25)?;
    let mut req = SearchRequest::new(a.query.clone())
        .mode(mode)
        .k(a.k)
        .filters(parse_filters(&a)?);
    req.fusion = a.fusion.fusion()?;
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
        println!(
            "{:>3}  {:>8.4}  {:<14} {:<14} {:<48} {}",
            i + 1,
            h.score,
            fmt_opt(h.breakdown.bm25, h.breakdown.bm25_rank),
            fmt_opt(h.breakdown.dense, h.breakdown.dense_rank),
            title,
            h.id
        );
    }
    Ok(())
}

/// One evaluated configuration: a name and how it ranks from the candidate lists.
struct EvalMode {
    name: String,
    mode: Mode,
    fusion: Option<Fusion>,
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
            },
            "rrf" => EvalMode {
                name: raw.into(),
                mode: Mode::Hybrid,
                fusion: Some(Fusion::rrf(
                    arg.map(str::parse).transpose()?.unwrap_or(60.0),
                )),
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
                }
            }
            _ => bail!(
                "unknown eval mode {raw:?}; expected bm25, dense, hybrid, rrf[:K] or weighted:W"
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
    let modes = parse_eval_modes(&a.modes)?;
    let need_dense = modes.iter().any(|m| m.mode != Mode::Bm25);
    let need_bm25 = modes.iter().any(|m| m.mode != Mode::Dense);
    let engine = open_engine(&a.index, &a.model, need_dense)?;
    let mut queries = eval::read_queries(&a.queries)?;
    let qrels = eval::read_qrels(&a.qrels)?;
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
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut reports = Vec::new();
    for m in &modes {
        let mut req = SearchRequest::new("").mode(m.mode).k(a.recall_k);
        req.fusion = m.fusion;
        let mut run = Vec::with_capacity(queries.len());
        let mut scored = Vec::with_capacity(queries.len());
        for (q, c) in queries.iter().zip(&cands) {
            let hits = engine.fuse(&req, c);
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
