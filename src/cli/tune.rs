//! `shelfrank tune`: fine-tune the index's sentence encoder on the shop's judgements
//! or logs, and write the tuned model as a new model directory, if it is better on
//! held-out queries.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use shelfrank::encoder::tune::{tune_encoder, TuneOptions, TuneReport};
use shelfrank::tune::{tune_data, TuneDataSummary, TuneSource, TuneSpec};

use super::{Bars, LogArgs, Logs, ModelArgs, DEFAULT_INDEX};

#[derive(Args)]
pub struct TuneArgs {
    /// Index whose catalog and encoder are tuned (read only).
    #[arg(long, default_value = DEFAULT_INDEX)]
    index: PathBuf,
    /// Where to write the tuned model (a new directory).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    logs: LogArgs,
    /// Judged relevant: grade at or above this.
    #[arg(long, default_value_t = 3)]
    min_grade: i32,
    /// Top BERT layers trained; the others stay frozen (their outputs are computed
    /// once). The model's layer count trains them all.
    #[arg(long, default_value_t = TuneOptions::default().layers)]
    layers: usize,
    /// Upper bound on epochs (early stopping on validation NDCG@10).
    #[arg(long, default_value_t = TuneOptions::default().epochs)]
    epochs: usize,
    /// Pairs per batch (the in-batch negatives).
    #[arg(long, default_value_t = TuneOptions::default().batch_size)]
    batch: usize,
    /// Peak learning rate (AdamW, linear warm-up and decay).
    #[arg(long, default_value_t = TuneOptions::default().learning_rate)]
    lr: f64,
    /// Random seed (batch order, hard-negative choice, validation split).
    #[arg(long, default_value_t = TuneOptions::default().seed)]
    seed: u64,
    /// Share of the queries held out for validation.
    #[arg(long, default_value_t = 0.15)]
    validation: f64,
    /// Mine hard negatives from this depth of the current dense ranking (0: none).
    #[arg(long, default_value_t = 30)]
    mine_depth: usize,
    /// Write the model even when it does not beat the base on validation.
    #[arg(long)]
    force: bool,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(a: TuneArgs) -> Result<()> {
    if a.out.exists() {
        bail!(
            "--out {} exists already; choose a new directory",
            a.out.display()
        );
    }
    if a.model.dtype.parse::<shelfrank::encoder::Precision>()? != shelfrank::encoder::Precision::F32
    {
        bail!("tune trains in f32; leave --dtype out (a tuned model can run at any --dtype later)");
    }
    let engine = a.model.open(&a.index, true)?;
    let Some(encoder) = engine.encoder() else {
        bail!("the index was opened without its encoder")
    };
    let base = encoder.info().clone();
    let (logs, file) = a.logs.read()?;
    let source = match logs {
        Logs::Tasks(t) => TuneSource::Tasks(t),
        Logs::Impressions(i) => TuneSource::Impressions(i),
        Logs::Judgements { queries, qrels } => TuneSource::Judgements { queries, qrels },
    };
    let bars = Bars::new(a.quiet);
    let spec = TuneSpec {
        min_grade: a.min_grade,
        validation: a.validation,
        seed: a.seed,
        mine_depth: a.mine_depth,
        ..TuneSpec::new(source)
    };
    let (data, summary) = tune_data(&engine, &spec, &bars)?;
    eprintln!(
        "{} training queries ({} pairs, {} hard negatives for {} queries), {} validation queries",
        summary.train_queries,
        summary.pairs,
        summary.hard_negatives,
        summary.queries_with_hard_negatives,
        summary.validation_queries
    );
    let opts = TuneOptions {
        layers: a.layers,
        batch_size: a.batch,
        epochs: a.epochs,
        learning_rate: a.lr,
        seed: a.seed,
        device: a.model.device.parse()?,
        ..TuneOptions::default()
    };
    drop(engine);
    let tuned = tune_encoder(&base.path, &data, &opts, &bars)?;
    let report = &tuned.report;
    outln!("{}", serde_json::to_string(report)?);
    if !tuned.improved() && !a.force {
        eprintln!(
            "the tuned model is not better than the base on the {} validation queries (NDCG@10 {:.4} vs {:.4}); nothing written (--force writes it anyway)",
            report.validation_queries,
            report.epochs.iter().map(|e| e.validation_ndcg).fold(f64::MIN, f64::max),
            report.base_ndcg
        );
        std::process::exit(3);
    }
    let card = model_card(
        &base,
        &file.display().to_string(),
        &spec,
        &summary,
        &opts,
        report,
    );
    tuned.save(&a.out, &card)?;
    eprintln!(
        "validation NDCG@10 {:.4} -> {:.4} (epoch {} of {}), {:.0}s; wrote {}\nnext: shelfrank build --model {} ... (re-embeds every product), then shelfrank train",
        report.base_ndcg,
        report.tuned_ndcg,
        report.best_epoch,
        report.epochs.len(),
        report.seconds,
        a.out.display(),
        a.out.display()
    );
    Ok(())
}

/// The model card (README.md) of a tuned model.
fn model_card(
    base: &shelfrank::encoder::ModelInfo,
    file: &str,
    spec: &TuneSpec,
    summary: &TuneDataSummary,
    opts: &TuneOptions,
    report: &TuneReport,
) -> String {
    let source = match &spec.source {
        TuneSource::Judgements { .. } => {
            format!("graded judgements, relevant = grade >= {}", spec.min_grade)
        }
        TuneSource::Tasks(_) => "personalised search tasks (query -> item picked)".to_string(),
        TuneSource::Impressions(_) => "impressions (query -> items clicked)".to_string(),
    };
    let mut epochs = String::new();
    for e in &report.epochs {
        epochs.push_str(&format!(
            "| {} | {:.4} | {:.4} | {:.0} |\n",
            e.epoch, e.loss, e.validation_ndcg, e.seconds
        ));
    }
    format!(
        "---\nlibrary_name: sentence-transformers\npipeline_tag: sentence-similarity\ntags:\n- sentence-transformers\n- shelfrank\n---\n\n\
# {name}, tuned by shelfrank\n\n\
Fine-tuned with `shelfrank tune` (multiple-negatives ranking loss, in-batch and mined hard negatives).\n\n\
- **Base model:** {name} (`model.safetensors` SHA-256 `{sha}`), pooling {pooling}, {dim} dimensions\n\
- **Data:** {file}: {source}; {tq} training queries, {pairs} pairs, {hn} hard negatives; {vq} validation queries (held out by query)\n\
- **Settings:** {settings}\n\
- **Time:** {secs:.0} s ({cache:.0} s computing the frozen layers), {steps} steps\n\n\
| | validation NDCG@{k} |\n| --- | ---: |\n| base | {base_ndcg:.4} |\n| tuned (epoch {best}) | {tuned_ndcg:.4} |\n\n\
| epoch | mean loss | validation NDCG@{k} | seconds |\n| ---: | ---: | ---: | ---: |\n{epochs}",
        name = base.name,
        sha = base.sha256,
        pooling = base.pooling.name(),
        dim = base.dim,
        tq = summary.train_queries,
        pairs = summary.pairs,
        hn = summary.hard_negatives,
        vq = summary.validation_queries,
        settings = serde_json::to_string(opts).unwrap_or_default(),
        secs = report.seconds,
        cache = report.cache_seconds,
        steps = report.steps,
        k = opts.eval_k,
        base_ndcg = report.base_ndcg,
        best = report.best_epoch,
        tuned_ndcg = report.tuned_ndcg,
    )
}
