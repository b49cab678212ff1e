//! `shelfrank train`: train the CTR head from search tasks, impressions or graded
//! judgements, and save it in the index.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use shelfrank::eval;
use shelfrank::rank::samples::read_impressions;
use shelfrank::rank::{CtrHead, HeadConfig, SampleOptions};
use shelfrank::store::IndexPaths;
use shelfrank::{train_head, TrainSpec, TrainingLogs};

use super::{load_events, number_list, Bars, ModelArgs, DEFAULT_INDEX};

#[derive(Args)]
pub struct TrainArgs {
    /// Index directory (the head is saved in INDEX/rank/).
    #[arg(long, default_value = DEFAULT_INDEX)]
    index: PathBuf,
    /// If another process is writing the index when the head is saved, wait for it
    /// instead of failing.
    #[arg(long)]
    wait: bool,
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
    /// Event files for profiles (repeatable).
    #[arg(long = "events")]
    events: Vec<PathBuf>,
    /// Candidates per task (the "shown" list).
    #[arg(long, default_value_t = SampleOptions::default().depth)]
    depth: usize,
    /// Use at most this many tasks/queries.
    #[arg(long)]
    limit: Option<usize>,
    /// Train only on queries whose id hashes into this half (0 or 1) of a two-fold split (qrels).
    #[arg(long)]
    fold: Option<u8>,
    /// Epochs (upper bound; early stopping on validation AUC).
    #[arg(long, default_value_t = HeadConfig::default().epochs)]
    epochs: usize,
    /// Random seed (same seed, same model).
    #[arg(long, default_value_t = HeadConfig::default().seed)]
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

pub fn run(a: TrainArgs) -> Result<()> {
    let start = Instant::now();
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
    let engine = a.model.open(&a.index, true)?;
    let (logs, file) = if let Some(path) = &a.tasks {
        let mut tasks = eval::read_personal_tasks(path)?;
        if let Some(n) = a.limit {
            tasks.truncate(n);
        }
        (TrainingLogs::Tasks(tasks), path)
    } else if let Some(path) = &a.impressions {
        (TrainingLogs::Impressions(read_impressions(path)?), path)
    } else {
        let (Some(q), Some(r)) = (&a.queries, &a.qrels) else {
            bail!("--queries and --qrels go together")
        };
        let mut queries = eval::read_queries(q)?;
        queries.retain(|q| eval::in_fold(&q.qid, a.fold));
        if let Some(n) = a.limit {
            queries.truncate(n);
        }
        let qrels = eval::read_qrels(r)?;
        (TrainingLogs::Judgements { queries, qrels }, r)
    };
    let mut spec = TrainSpec::new(logs);
    spec.events = if a.events.is_empty() {
        None
    } else {
        Some(load_events(&engine, &a.events)?)
    };
    spec.sampling = SampleOptions {
        depth: a.depth,
        ips: !a.no_ips,
        class_weights: !a.no_class_weights,
        ..SampleOptions::default()
    };
    spec.config = HeadConfig {
        epochs: a.epochs,
        seed: a.seed,
        patience: a.patience,
        hidden: number_list("--hidden", &a.hidden)?,
        ..HeadConfig::default()
    };
    let rank_dir = IndexPaths::new(&a.index).rank_dir();
    if a.resume {
        spec.resume = Some(
            CtrHead::load(&rank_dir)
                .with_context(|| format!("--resume: no head in {}", rank_dir.display()))?,
        );
    }
    spec.provenance = serde_json::json!({
        "file": file.display().to_string(),
        "events": a.events.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "fold": a.fold,
    });
    let trained = train_head(&engine, spec, &Bars::new(a.quiet))?;
    trained.save(&a.index, a.wait)?;
    println!(
        "trained the CTR head in {:.1}s (samples {:.1}s, training {:.1}s): best epoch {}, validation AUC {}; saved in {}",
        start.elapsed().as_secs_f64(),
        trained.sample_secs,
        trained.report.seconds,
        trained.report.best_epoch,
        trained
            .report
            .best_val_auc
            .map_or("-".into(), |v| format!("{v:.4}")),
        rank_dir.display()
    );
    Ok(())
}
