//! `shelfrank train`: train the CTR head from search tasks, impressions or graded
//! judgements, and save it in the index.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use shelfrank::rank::{CtrHead, HeadConfig, SampleOptions};
use shelfrank::store::IndexPaths;
use shelfrank::{train_head, TrainSpec, TrainingLogs};

use super::{load_events, number_list, Bars, LogArgs, Logs, ModelArgs, DEFAULT_INDEX};

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
    #[command(flatten)]
    logs: LogArgs,
    /// Event files for profiles (repeatable).
    #[arg(long = "events")]
    events: Vec<PathBuf>,
    /// Candidates per task (the "shown" list).
    #[arg(long, default_value_t = SampleOptions::default().depth)]
    depth: usize,
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
    let engine = a.model.open(&a.index, true)?;
    let (logs, file) = a.logs.read()?;
    let logs = match logs {
        Logs::Tasks(t) => TrainingLogs::Tasks(t),
        Logs::Impressions(i) => TrainingLogs::Impressions(i),
        Logs::Judgements { queries, qrels } => TrainingLogs::Judgements { queries, qrels },
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
        "fold": a.logs.fold,
    });
    let trained = train_head(&engine, spec, &Bars::new(a.quiet))?;
    trained.save(&a.index, a.wait)?;
    outln!(
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
