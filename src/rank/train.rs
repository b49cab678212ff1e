//! Training a CTR head end to end: samples from one kind of log ([`super::samples`]),
//! importance weights, fitting ([`super::head`]) and the model card. The CLI's
//! `shelfrank train` is this function and a few prints; a server calls it the same way.

use std::path::Path;
use std::time::Instant;

use serde_json::{json, Value};

use super::head::{CtrHead, EpochReport, HeadConfig, TrainReport};
use super::samples::{self, CandidateSource, DatasetSummary, Impression, SampleOptions};
use super::{FEATURE_NAMES, FEATURE_SET_VERSION};
use crate::error::{Error, Result};
use crate::eval::{PersonalTask, Qrels, Query};
use crate::profile::events::now_unix;
use crate::profile::{EventStore, ItemStats};
use crate::progress::Progress;
use crate::store::{IndexPaths, WriterLock};

/// The logs a head learns from: exactly one kind per training run.
#[derive(Debug, Clone)]
pub enum TrainingLogs {
    /// Personalised search tasks: the shopper chose `target` after searching `query`.
    /// Needs the shoppers' event history ([`TrainSpec::events`]).
    Tasks(Vec<PersonalTask>),
    /// Impressions: what was shown for a query and what was clicked.
    Impressions(Vec<Impression>),
    /// Graded judgements of queries (soft labels, no shopper).
    Judgements {
        /// The queries.
        queries: Vec<Query>,
        /// Their judgements.
        qrels: Qrels,
    },
}

impl TrainingLogs {
    /// What the card calls this kind of log.
    fn kind(&self) -> &'static str {
        match self {
            TrainingLogs::Tasks(_) => "personal tasks",
            TrainingLogs::Impressions(_) => "impressions",
            TrainingLogs::Judgements { .. } => "judgements",
        }
    }
}

/// One training run.
#[derive(Debug)]
pub struct TrainSpec {
    /// The logs.
    pub logs: TrainingLogs,
    /// The shoppers' events; a profile for a task or impression uses only those
    /// strictly before its time. `None`: no shopper has history.
    pub events: Option<EventStore>,
    /// How samples are drawn and weighted.
    pub sampling: SampleOptions,
    /// The network and its optimiser.
    pub config: HeadConfig,
    /// Fine-tune this head on the new logs instead of starting afresh (its
    /// normalisation statistics are kept).
    pub resume: Option<CtrHead>,
    /// Where the logs came from, recorded in the model card (e.g. file names).
    pub provenance: Value,
}

impl TrainSpec {
    /// A run over `logs` with default sampling and network settings.
    pub fn new(logs: TrainingLogs) -> Self {
        TrainSpec {
            logs,
            events: None,
            sampling: SampleOptions::default(),
            config: HeadConfig::default(),
            resume: None,
            provenance: Value::Null,
        }
    }
}

/// A trained head with what went into it.
#[derive(Debug, Clone)]
pub struct TrainedHead {
    /// The head (weights of the best validation epoch).
    pub head: CtrHead,
    /// Per-epoch metrics.
    pub report: TrainReport,
    /// The samples it saw.
    pub dataset: DatasetSummary,
    /// Shown item ids of impressions that are not in the index (skipped).
    pub unknown_shown: usize,
    /// Seconds spent building samples.
    pub sample_secs: f64,
    /// The model card saved beside the weights.
    pub card: Value,
}

impl TrainedHead {
    /// Saves the head into `INDEX/rank/`, where opening the index finds it, under
    /// the index's writer lock (waiting for another writer with `wait`).
    pub fn save(&self, index_dir: &Path, wait: bool) -> Result<()> {
        let _writer = WriterLock::acquire(index_dir, wait)?;
        let dir = IndexPaths::new(index_dir).rank_dir();
        Ok(self.head.save(&dir, &self.card)?)
    }
}

/// Builds samples from `spec.logs` over the index behind `source`, weighs them,
/// trains (or fine-tunes) the head with early stopping on validation AUC, and
/// writes its card. Reports the "samples" and "epochs" phases, and a line per
/// epoch, to `progress`.
pub fn train_head(
    source: &dyn CandidateSource,
    spec: TrainSpec,
    progress: &dyn Progress,
) -> Result<TrainedHead> {
    let start = Instant::now();
    let mut opts = spec.sampling.clone();
    let empty = EventStore::open_in_memory();
    let events = spec.events.as_ref().unwrap_or(&empty);
    let stats = ItemStats::from_events(events.iter(), &|id: &str| source.ord_of(id));
    let (groups, added, unknown_shown) = match &spec.logs {
        TrainingLogs::Tasks(tasks) => {
            if spec.events.is_none() {
                return Err(Error::invalid(
                    "events",
                    "training from search tasks needs the shoppers' event history (--events FILE)",
                ));
            }
            progress.start("samples", tasks.len());
            let (g, added) =
                samples::personal_task_groups(source, tasks, events, &stats, &opts, &|n| {
                    progress.set(n)
                })?;
            (g, added, 0)
        }
        TrainingLogs::Impressions(imps) => {
            progress.start("samples", imps.len());
            let (g, unknown) = samples::impression_groups(source, imps, events, &stats)?;
            (g, 0, unknown)
        }
        TrainingLogs::Judgements { queries, qrels } => {
            // Judgements are not clicks: no position bias to correct, and the graded
            // soft labels already say how relevant each item is, so the class
            // re-weighting meant for rare binary clicks is left out.
            opts.ips = false;
            opts.class_weights = false;
            progress.start("samples", queries.len());
            let g = samples::qrels_groups(source, queries, qrels, &opts, &|n| progress.set(n))?;
            (g, 0, 0)
        }
    };
    progress.finish();
    let data = samples::weigh(groups, &opts, added);
    let sample_secs = start.elapsed().as_secs_f64();
    report_dataset(&data.summary, &opts, unknown_shown, progress);

    let cfg = &spec.config;
    progress.start("epochs", cfg.epochs);
    let mut on_epoch = |r: &EpochReport| {
        progress.set(r.epoch);
        progress.message(&format!(
            "epoch {:>2}: train loss {:.4}, val loss {:.4}, val AUC {}, val NDCG@10 {}",
            r.epoch,
            r.train_loss,
            r.val_loss,
            r.val_auc.map_or("-".into(), |v| format!("{v:.4}")),
            r.val_ndcg10.map_or("-".into(), |v| format!("{v:.4}"))
        ));
    };
    let (head, report) = match &spec.resume {
        Some(old) => old.resume(&data.train, &data.val, cfg, &mut on_epoch)?,
        None => {
            let names = FEATURE_NAMES.iter().map(|s| s.to_string()).collect();
            CtrHead::train(names, &data.train, &data.val, cfg, &mut on_epoch)?
        }
    };
    progress.finish();
    let card = json!({
        "trained_unix": now_unix(),
        "feature_set": FEATURE_SET_VERSION,
        "logs": spec.logs.kind(),
        "source": spec.provenance,
        "sampling": opts,
        "dataset": data.summary,
        "config": cfg,
        "report": report,
        "resumed": spec.resume.is_some(),
    });
    Ok(TrainedHead {
        head,
        report,
        dataset: data.summary,
        unknown_shown,
        sample_secs,
        card,
    })
}

/// Tells `progress` what the samples are: counts, propensities, class weights.
fn report_dataset(
    s: &DatasetSummary,
    opts: &SampleOptions,
    unknown_shown: usize,
    progress: &dyn Progress,
) {
    if unknown_shown > 0 {
        progress.message(&format!(
            "{unknown_shown} shown ids are not in the index and were skipped"
        ));
    }
    progress.message(&format!(
        "{} groups ({} targets added beyond the shown list), {} train / {} validation samples, {} train positives",
        s.groups, s.targets_added, s.train_samples, s.val_samples, s.train_positives
    ));
    if !s.propensities.is_empty() {
        let est: Vec<String> = s
            .bucket_ends
            .iter()
            .zip(&s.propensities)
            .map(|(e, p)| format!("<={e}: {p:.3}"))
            .collect();
        progress.message(&format!(
            "position propensities (clipped at {}): {}",
            opts.min_propensity,
            est.join(", ")
        ));
    }
    progress.message(&format!(
        "class weights: positive {:.2}, negative {:.3}",
        s.class_weights.0, s.class_weights.1
    ));
}
