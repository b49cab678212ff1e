//! The click-through-rate (CTR) head: a small feed-forward network that scores one
//! (query, user, item) feature vector with the probability that the user picks the item.
//!
//! # Model
//!
//! Each raw feature `x_j` is standardised with statistics learned on the training set,
//! `u_j = (x_j - mean_j) / std_j` (population standard deviation, floored at [`STD_FLOOR`]
//! so constant features do not divide by zero). The standardised vector goes through a
//! multi-layer perceptron with ReLU hidden layers ([`HeadConfig::hidden`], default
//! `[32, 16]`) and one linear output unit, the logit `z`; the probability is
//! `p = sigmoid(z) = 1 / (1 + e^-z)`. Normalisation lives outside the network and is saved
//! with it, so serving applies exactly the statistics the network was trained with.
//!
//! # Loss
//!
//! Training minimises the weighted binary cross-entropy
//!
//! ```text
//! L = -sum_i w_i [y_i log p_i + (1 - y_i) log(1 - p_i)] / sum_i w_i
//! ```
//!
//! with labels `y_i` in `[0, 1]` (soft labels such as "clicked but returned" = 0.3 are
//! allowed) and weights `w_i >= 0` (e.g. inverse-propensity weights against position bias;
//! a zero weight removes a sample). It is computed from logits in the numerically stable
//! softplus form `l_i = max(z_i, 0) - y_i z_i + log(1 + e^-|z_i|)`, which never takes the
//! log of a probability that rounded to 0 or 1. Each mini-batch is normalised by its own
//! weight sum.
//!
//! # Optimisation
//!
//! AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019) through
//! `candle_nn::AdamW` with [`HeadConfig::learning_rate`] and [`HeadConfig::weight_decay`].
//! Every epoch visits the training set in a fresh order drawn from a SplitMix64 generator
//! seeded with [`HeadConfig::seed`]; the initial weights (He-uniform for ReLU layers,
//! PyTorch's `nn.Linear` default for the output) come from the same generator, so one seed
//! on one machine always gives the same model, bit for bit. The standardised training
//! matrix is built once as a single tensor; mini-batches are gathered from it with
//! `index_select`. On two CPU cores an epoch over 2 million samples x 20 features takes
//! about 1.5 s with the defaults.
//!
//! # Early stopping
//!
//! After each epoch the head is evaluated on the validation set (weighted loss, ROC AUC,
//! mean NDCG@10 per group). The weights of the epoch with the best validation AUC are kept
//! (a copy of the tensors, not the last state), and training stops once
//! [`HeadConfig::patience`] epochs in a row brought no improvement. If the validation set
//! holds only one class, AUC is undefined and the lowest validation loss is tracked
//! instead; with an empty validation set every epoch runs and the last weights are kept.
//!
//! # Explanations
//!
//! [`CtrHead::contributions`] attributes a logit to the features by gradient x input in
//! standardised space (autograd through the network), a first-order approximation of how
//! far each feature moves the score from that of an average item.
//!
//! # On disk
//!
//! [`CtrHead::save`] writes `ctr_head.safetensors` (the layers as `mlp.{i}.weight`
//! `[out, in]` / `mlp.{i}.bias` `[out]`, as in PyTorch's `nn.Linear`, plus `norm.mean` and
//! `norm.std`) and `ctr_head.json`, the model card: whatever the caller passes, merged with
//! `format_version`, `feature_names`, `hidden`, `normalisation` and a size + FNV-1a
//! checksum of the weights file. The weights file is written first and the card last,
//! each through a temporary file, fsync and rename, so the card is the commit point: a save
//! interrupted between the two leaves a card whose checksum no longer matches, which
//! [`CtrHead::load`] reports instead of serving mismatched weights.
//!
//! Everything runs on the CPU: the head is a few thousand parameters, far too small for a
//! GPU transfer to pay off.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Version of the on-disk format written by [`CtrHead::save`]; [`CtrHead::load`] reads
/// only this version.
pub const FORMAT_VERSION: u64 = 1;

/// File name of the weights (safetensors) inside a model directory.
pub const WEIGHTS_FILE: &str = "ctr_head.safetensors";

/// File name of the model card (JSON) inside a model directory.
pub const CARD_FILE: &str = "ctr_head.json";

/// Smallest standard deviation used for normalisation. A feature that is constant over the
/// training set would otherwise divide by zero; with the floor it is mapped to 0.
pub const STD_FLOOR: f64 = 1e-6;

/// Rank cut-off of the validation NDCG reported per epoch (NDCG@10, the usual first page).
const NDCG_K: usize = 10;

/// Rows per forward pass when predicting or evaluating, bounding the activation memory
/// (65,536 rows x 32 hidden units x 4 bytes = 8 MiB per layer).
const EVAL_CHUNK: usize = 65_536;

/// Upper bound on the width of one hidden layer. A CTR head over a few dozen features has
/// no use for more; a larger value is almost certainly a configuration typo and would
/// otherwise try to allocate gigabytes.
pub const MAX_HIDDEN: usize = 4096;

/// Error of the CTR head.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// Reading or writing a model file failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The caller passed invalid data or configuration.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which input is wrong, e.g. `train.features[12][3] ("price")`.
        what: String,
        /// Why, and how to fix it.
        reason: String,
    },
    /// The tensor backend failed (out of memory, an internal error).
    #[error("tensor backend error: {0}")]
    Backend(String),
    /// A model file is truncated, corrupt, or disagrees with its card.
    #[error("corrupt CTR head file {}: {reason}", path.display())]
    Corrupt {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl HeadError {
    /// Whether the caller is at fault (bad input or configuration: a 4xx) rather than the
    /// system (I/O, backend, a damaged model on disk: a 5xx).
    pub fn is_caller_fault(&self) -> bool {
        matches!(self, HeadError::Invalid { .. })
    }
}

fn invalid(what: impl Into<String>, reason: impl Into<String>) -> HeadError {
    HeadError::Invalid {
        what: what.into(),
        reason: reason.into(),
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> HeadError {
    HeadError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> HeadError + '_ {
    move |source| HeadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Converts a candle error; keeps candle out of the public error type.
fn be(e: candle_core::Error) -> HeadError {
    HeadError::Backend(e.to_string())
}

/// Training configuration; mirrors a config file section, every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadConfig {
    /// Widths of the ReLU hidden layers (may be empty: logistic regression). Default `[32, 16]`.
    pub hidden: Vec<usize>,
    /// AdamW learning rate. Default `3e-3`.
    pub learning_rate: f64,
    /// AdamW decoupled weight decay (applied to all parameters). Default `1e-4`.
    pub weight_decay: f64,
    /// Maximum number of passes over the training set. Default 30.
    pub epochs: usize,
    /// Mini-batch size. Default 256 (about 170 µs per step on two CPU cores with the
    /// default architecture and 20 features, so an epoch over 2 million samples takes
    /// about 1.5 s; larger batches mainly trade quality for fewer steps).
    pub batch_size: usize,
    /// Epochs in a row without a validation improvement before training stops. Default 4;
    /// 0 behaves like 1.
    pub patience: usize,
    /// Seed of the weight initialisation and the shuffling. Default 42.
    pub seed: u64,
}

impl Default for HeadConfig {
    fn default() -> Self {
        HeadConfig {
            hidden: vec![32, 16],
            learning_rate: 3e-3,
            weight_decay: 1e-4,
            epochs: 30,
            batch_size: 256,
            patience: 4,
            seed: 42,
        }
    }
}

impl HeadConfig {
    fn validate(&self) -> Result<(), HeadError> {
        if let Some(&h) = self.hidden.iter().find(|&&h| h == 0 || h > MAX_HIDDEN) {
            return Err(invalid(
                "config.hidden",
                format!("layer width {h} is outside 1..={MAX_HIDDEN}"),
            ));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(invalid(
                "config.learning_rate",
                format!("{} must be finite and > 0 (try 3e-3)", self.learning_rate),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(invalid(
                "config.weight_decay",
                format!("{} must be finite and >= 0", self.weight_decay),
            ));
        }
        if self.epochs == 0 {
            return Err(invalid("config.epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(invalid("config.batch_size", "must be at least 1"));
        }
        Ok(())
    }
}

/// Labelled samples for training or validation. All four vectors have one entry per sample.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainData {
    /// One row of raw (unnormalised) features per sample, in feature-name order.
    pub features: Vec<Vec<f32>>,
    /// Labels in `[0, 1]`; soft labels are allowed. For AUC, `>= 0.5` counts as positive.
    pub labels: Vec<f32>,
    /// Sample weights, finite and `>= 0`.
    pub weights: Vec<f32>,
    /// Query/task id: samples of one group are ranked against each other for NDCG. They
    /// need not be contiguous.
    pub groups: Vec<u64>,
}

impl TrainData {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.features.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// Checks lengths, row widths, labels and weights (feature values are checked while
    /// normalising, where the feature names are at hand).
    fn validate(&self, set: &str, width: usize) -> Result<(), HeadError> {
        let n = self.features.len();
        for (field, len) in [
            ("labels", self.labels.len()),
            ("weights", self.weights.len()),
            ("groups", self.groups.len()),
        ] {
            if len != n {
                return Err(invalid(
                    format!("{set}.{field}"),
                    format!(
                        "has {len} entries but {set}.features has {n} rows; give one per sample"
                    ),
                ));
            }
        }
        if n > u32::MAX as usize {
            return Err(invalid(
                format!("{set}.features"),
                format!("{n} samples is more than the supported {}", u32::MAX),
            ));
        }
        if let Some((i, row)) = self
            .features
            .iter()
            .enumerate()
            .find(|(_, r)| r.len() != width)
        {
            return Err(invalid(
                format!("{set}.features[{i}]"),
                format!(
                    "has {} values, expected {width} (one per feature name); rows must not be ragged",
                    row.len()
                ),
            ));
        }
        if let Some((i, y)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, y)| !(0.0..=1.0).contains(*y))
        {
            return Err(invalid(
                format!("{set}.labels[{i}]"),
                format!("{y} is outside [0, 1]; use 1 for chosen, 0 for not, or a probability"),
            ));
        }
        if let Some((i, w)) = self
            .weights
            .iter()
            .enumerate()
            .find(|(_, w)| !(w.is_finite() && **w >= 0.0))
        {
            return Err(invalid(
                format!("{set}.weights[{i}]"),
                format!("{w} must be finite and >= 0"),
            ));
        }
        Ok(())
    }
}

/// Metrics of one training epoch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpochReport {
    /// Epoch number, starting at 1.
    pub epoch: usize,
    /// Weighted BCE averaged over this epoch's mini-batches (weights as they changed).
    pub train_loss: f64,
    /// Weighted BCE on the validation set after this epoch; NaN (`null` in JSON) when the
    /// validation set is empty or has zero total weight.
    pub val_loss: f64,
    /// Unweighted ROC AUC on the validation set; `None` if it lacks positives or negatives.
    pub val_auc: Option<f64>,
    /// Mean NDCG@10 over validation groups, ranking each group by predicted score (ties in
    /// input order), gain = label, discount `1 / log2(rank + 1)`; groups whose labels are all
    /// 0 are skipped. `None` if no group has a positive label.
    pub val_ndcg10: Option<f64>,
}

/// Summary of a training run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainReport {
    /// One report per epoch that ran.
    pub epochs: Vec<EpochReport>,
    /// The epoch whose weights were kept (1-based).
    pub best_epoch: usize,
    /// Validation AUC of the kept epoch, if AUC was defined.
    pub best_val_auc: Option<f64>,
    /// Number of training samples.
    pub train_samples: usize,
    /// Number of validation samples.
    pub val_samples: usize,
    /// Wall-clock seconds of the whole call, data preparation included.
    pub seconds: f64,
}

/// One linear layer: `y = x W^T + b`, with `W` of shape `[out, in]` (PyTorch layout).
#[derive(Clone)]
struct Layer {
    weight: Tensor,
    bias: Tensor,
}

/// A trained CTR head: normalisation statistics, the network and its card.
///
/// Cheap to share across threads (`Send + Sync`); prediction takes `&self`.
#[derive(Clone)]
pub struct CtrHead {
    feature_names: Vec<String>,
    hidden: Vec<usize>,
    mean: Vec<f32>,
    std: Vec<f32>,
    layers: Vec<Layer>,
    card: Value,
}

impl fmt::Debug for CtrHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params: usize = self
            .layers
            .iter()
            .map(|l| l.weight.elem_count() + l.bias.elem_count())
            .sum();
        f.debug_struct("CtrHead")
            .field("feature_names", &self.feature_names)
            .field("hidden", &self.hidden)
            .field("parameters", &params)
            .finish_non_exhaustive()
    }
}

impl CtrHead {
    /// Trains a new head.
    ///
    /// `feature_names` names the columns of every feature row (unique, non-empty). The
    /// normalisation statistics are learned on `train`; `val` drives early stopping (see the
    /// module docs) and may be empty. `on_epoch` is called after every epoch, e.g. for a
    /// progress bar. Returns the head with the best epoch's weights and a report.
    ///
    /// Errors: [`HeadError::Invalid`] for an invalid configuration, mismatched lengths,
    /// ragged rows, a non-finite feature (naming the sample and the feature), a label outside
    /// `[0, 1]`, a negative or non-finite weight, or a training set with zero total weight.
    pub fn train(
        feature_names: Vec<String>,
        train: &TrainData,
        val: &TrainData,
        cfg: &HeadConfig,
        on_epoch: &mut dyn FnMut(&EpochReport),
    ) -> Result<(CtrHead, TrainReport), HeadError> {
        let started = Instant::now();
        cfg.validate()?;
        validate_names(&feature_names)?;
        let width = feature_names.len();
        train.validate("train", width)?;
        val.validate("val", width)?;
        if train.is_empty() {
            return Err(invalid("train", "has no samples"));
        }
        let (mean, std) = feature_stats(&train.features, &feature_names)?;
        let mut rng = SplitMix64::new(cfg.seed);
        let base_rate = weighted_mean(&train.labels, &train.weights);
        let layers = init_layers(width, &cfg.hidden, base_rate, &mut rng).map_err(be)?;
        let head = CtrHead {
            card: Value::Null,
            feature_names,
            hidden: cfg.hidden.clone(),
            mean,
            std,
            layers,
        };
        head.fit(train, val, cfg, rng, on_epoch, started)
    }

    /// Continues training from these weights on new data (online fine-tuning).
    ///
    /// The saved normalisation statistics are kept, so scores stay comparable with the
    /// original head; the architecture is this head's (`cfg.hidden` is ignored). The
    /// optimiser state starts fresh, so a smaller learning rate than the original run is
    /// usually wise. `cfg.seed` drives the shuffling. The card is carried over.
    pub fn resume(
        &self,
        train: &TrainData,
        val: &TrainData,
        cfg: &HeadConfig,
        on_epoch: &mut dyn FnMut(&EpochReport),
    ) -> Result<(CtrHead, TrainReport), HeadError> {
        let started = Instant::now();
        cfg.validate()?;
        let width = self.feature_names.len();
        train.validate("train", width)?;
        val.validate("val", width)?;
        if train.is_empty() {
            return Err(invalid("train", "has no samples"));
        }
        self.fit(
            train,
            val,
            cfg,
            SplitMix64::new(cfg.seed),
            on_epoch,
            started,
        )
    }

    /// The shared training loop of [`CtrHead::train`] and [`CtrHead::resume`]: starts from
    /// `self`'s weights and normalisation, returns a new head.
    fn fit(
        &self,
        train: &TrainData,
        val: &TrainData,
        cfg: &HeadConfig,
        mut rng: SplitMix64,
        on_epoch: &mut dyn FnMut(&EpochReport),
        started: Instant,
    ) -> Result<(CtrHead, TrainReport), HeadError> {
        let dev = Device::Cpu;
        let n = train.len();
        let d = self.feature_names.len();
        let total_weight: f64 = train.weights.iter().map(|&w| f64::from(w)).sum();
        if total_weight <= 0.0 {
            return Err(invalid(
                "train.weights",
                "all weights are zero; at least one sample must count",
            ));
        }

        // The standardised data, built once; batches are gathered from it.
        let xs = self.normalise(&train.features, "train")?;
        let x = Tensor::from_vec(xs, (n, d), &dev).map_err(be)?;
        let y = Tensor::from_slice(&train.labels, (n, 1), &dev).map_err(be)?;
        let w = Tensor::from_slice(&train.weights, (n, 1), &dev).map_err(be)?;
        let val_x = if val.is_empty() {
            None
        } else {
            let vs = self.normalise(&val.features, "val")?;
            Some(Tensor::from_vec(vs, (val.len(), d), &dev).map_err(be)?)
        };
        let val_groups = group_indices(&val.groups);
        let selection = Selection::for_validation(val);

        // `Var::from_tensor` copies a non-variable tensor (ours never are variables), so
        // training never writes into `self`.
        let vars: Vec<(Var, Var)> = self
            .layers
            .iter()
            .map(|l| Ok((Var::from_tensor(&l.weight)?, Var::from_tensor(&l.bias)?)))
            .collect::<candle_core::Result<_>>()
            .map_err(be)?;
        let live: Vec<Layer> = vars
            .iter()
            .map(|(w, b)| Layer {
                weight: w.as_tensor().clone(),
                bias: b.as_tensor().clone(),
            })
            .collect();
        let params = ParamsAdamW {
            lr: cfg.learning_rate,
            weight_decay: cfg.weight_decay,
            ..ParamsAdamW::default()
        };
        let flat: Vec<Var> = vars
            .iter()
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect();
        let mut opt = AdamW::new(flat, params).map_err(be)?;

        let batch = cfg.batch_size;
        // `n <= u32::MAX` was checked by `TrainData::validate`.
        let mut perm: Vec<u32> = (0..n as u32).collect();
        let mut reports = Vec::new();
        let mut best: Option<(usize, f64, Vec<Layer>)> = None;
        let mut since_best = 0usize;

        for epoch in 1..=cfg.epochs {
            rng.shuffle(&mut perm);
            let idx = Tensor::from_slice(&perm, n, &dev).map_err(be)?;
            let mut loss_sum = 0f64;
            let mut weight_sum = 0f64;
            for start in (0..n).step_by(batch) {
                let len = batch.min(n - start);
                let batch_weight: f64 = perm[start..start + len]
                    .iter()
                    .map(|&i| f64::from(train.weights[i as usize]))
                    .sum();
                if batch_weight <= 0.0 {
                    continue; // nothing to learn from; the loss would be 0/0
                }
                let loss = train_step(&live, &mut opt, &x, &y, &w, &idx, start, len, batch_weight)
                    .map_err(be)?;
                loss_sum += loss * batch_weight;
                weight_sum += batch_weight;
            }
            let train_loss = loss_sum / weight_sum;

            let (val_loss, val_auc, val_ndcg10) = match &val_x {
                None => (f64::NAN, None, None),
                Some(vx) => {
                    let logits = forward_chunked(&live, vx).map_err(be)?;
                    evaluate(&logits, val, &val_groups)
                }
            };
            let report = EpochReport {
                epoch,
                train_loss,
                val_loss,
                val_auc,
                val_ndcg10,
            };
            on_epoch(&report);
            reports.push(report);

            let score = match selection {
                Selection::Auc => val_auc,
                Selection::Loss => Some(-val_loss).filter(|s| !s.is_nan()),
                Selection::Last => None,
            };
            if let Some(score) = score {
                if best.as_ref().is_none_or(|(_, s, _)| score > *s) {
                    best = Some((epoch, score, snapshot(&vars).map_err(be)?));
                    since_best = 0;
                } else {
                    since_best += 1;
                    if since_best >= cfg.patience.max(1) {
                        break;
                    }
                }
            }
        }

        let last_epoch = reports.len();
        let (best_epoch, layers) = match best {
            Some((epoch, _, layers)) => (epoch, layers),
            None => (last_epoch, snapshot(&vars).map_err(be)?),
        };
        let best_val_auc = reports
            .get(best_epoch.saturating_sub(1))
            .and_then(|r| r.val_auc);
        let mut head = CtrHead {
            feature_names: self.feature_names.clone(),
            hidden: self.hidden.clone(),
            mean: self.mean.clone(),
            std: self.std.clone(),
            layers,
            card: self.card.clone(),
        };
        head.refresh_card();
        let report = TrainReport {
            epochs: reports,
            best_epoch,
            best_val_auc,
            train_samples: n,
            val_samples: val.len(),
            seconds: started.elapsed().as_secs_f64(),
        };
        Ok((head, report))
    }

    /// Probabilities `sigmoid(logit)` for a batch of raw feature rows.
    ///
    /// Errors with [`HeadError::Invalid`] on a row of the wrong width or a non-finite value.
    pub fn predict(&self, features: &[Vec<f32>]) -> Result<Vec<f32>, HeadError> {
        let mut out = self.predict_logits(features)?;
        for z in &mut out {
            *z = sigmoid(*z);
        }
        Ok(out)
    }

    /// Logits (log-odds) for a batch of raw feature rows; monotone in the probability and
    /// better suited to fusion with other scores.
    pub fn predict_logits(&self, features: &[Vec<f32>]) -> Result<Vec<f32>, HeadError> {
        if features.is_empty() {
            return Ok(Vec::new());
        }
        let d = self.feature_names.len();
        if let Some((i, row)) = features.iter().enumerate().find(|(_, r)| r.len() != d) {
            return Err(invalid(
                format!("features[{i}]"),
                format!(
                    "has {} values, expected {d} (one per feature name)",
                    row.len()
                ),
            ));
        }
        let xs = self.normalise(features, "features")?;
        let x = Tensor::from_vec(xs, (features.len(), d), &Device::Cpu).map_err(be)?;
        forward_chunked(&self.layers, &x).map_err(be)
    }

    /// Per-feature contribution to the logit of one raw feature row, in feature order.
    ///
    /// This is the first-order "gradient x input" attribution in normalised space:
    /// `c_j = (d z / d u_j) * u_j` with `u_j = (x_j - mean_j) / std_j`, the gradient taken by
    /// candle's autograd. It approximates how much feature `j` moves the logit away from
    /// the logit of an "average" item (all features at their training mean). It is exact
    /// for a network without hidden layers (the contributions then sum to `z - bias`) and
    /// only a local, approximate explanation otherwise: ReLU kinks and interactions are
    /// not accounted for and the contributions need not sum to anything.
    pub fn contributions(&self, features: &[f32]) -> Result<Vec<(String, f32)>, HeadError> {
        let d = self.feature_names.len();
        if features.len() != d {
            return Err(invalid(
                "features",
                format!(
                    "has {} values, expected {d} (one per feature name)",
                    features.len()
                ),
            ));
        }
        let u = self.normalise(std::slice::from_ref(&features.to_vec()), "features")?;
        let grad_x_input = || -> candle_core::Result<Vec<f32>> {
            let x = Var::from_vec(u, (1, d), &Device::Cpu)?;
            let z = forward(&self.layers, x.as_tensor())?.sum_all()?;
            let grads = z.backward()?;
            let g = grads
                .get(x.as_tensor())
                .ok_or_else(|| candle_core::Error::Msg("no gradient for the input".into()))?;
            (g * x.as_tensor())?.flatten_all()?.to_vec1::<f32>()
        };
        let c = grad_x_input().map_err(be)?;
        Ok(self.feature_names.iter().cloned().zip(c).collect())
    }

    /// Names of the features, in the column order every row must follow.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// Widths of the hidden layers.
    pub fn hidden(&self) -> &[usize] {
        &self.hidden
    }

    /// Per-feature normalisation statistics `(mean, std)` learned on the training set.
    pub fn normalisation(&self) -> (&[f32], &[f32]) {
        (&self.mean, &self.std)
    }

    /// The model card: what [`CtrHead::load`] read, or for a freshly trained head the
    /// model's own fields (`format_version`, `feature_names`, `hidden`, `normalisation`).
    pub fn card(&self) -> &Value {
        &self.card
    }

    /// Writes `dir/ctr_head.safetensors` and `dir/ctr_head.json` (creating `dir`).
    ///
    /// The card written is `card` (a JSON object, or `null` for none) with the model's
    /// fields merged over it: `format_version`, `feature_names`, `hidden`,
    /// `normalisation: {mean, std}` and `weights: {file, bytes, fnv1a64}`. Each file goes
    /// through a temporary file in `dir`, fsync and rename; the weights first, the card
    /// last (see the module docs).
    pub fn save(&self, dir: &Path, card: &Value) -> Result<(), HeadError> {
        let mut merged = match card {
            Value::Object(m) => m.clone(),
            Value::Null => Map::new(),
            other => {
                return Err(invalid(
                    "card",
                    format!("must be a JSON object or null, got {}", json_kind(other)),
                ))
            }
        };
        fs::create_dir_all(dir).map_err(io_err(dir))?;

        let weights_path = dir.join(WEIGHTS_FILE);
        let tmp = temp_path(dir, WEIGHTS_FILE);
        let result = (|| {
            let tensors = self.tensor_map();
            candle_core::safetensors::save(&tensors, &tmp).map_err(|e| HeadError::Io {
                path: tmp.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            let bytes = fs::read(&tmp).map_err(io_err(&tmp))?;
            fs::OpenOptions::new()
                .write(true)
                .open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&tmp))?;
            fs::rename(&tmp, &weights_path).map_err(io_err(&weights_path))?;
            Ok(bytes)
        })();
        let bytes = match result {
            Ok(b) => b,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };

        merged.extend(self.model_fields());
        merged.insert(
            "weights".into(),
            json!({
                "file": WEIGHTS_FILE,
                "bytes": bytes.len(),
                "fnv1a64": format!("{:016x}", fnv1a64(&bytes)),
            }),
        );
        let text = serde_json::to_vec_pretty(&Value::Object(merged))
            .map_err(|e| invalid("card", format!("cannot be serialised: {e}")))?;
        atomic_write(dir, CARD_FILE, &text)?;
        sync_dir(dir);
        Ok(())
    }

    /// Reads a head written by [`CtrHead::save`].
    ///
    /// Checks the format version, that the weights file matches the card's size and
    /// checksum (when the card records them), that every tensor is present, `f32`, finite
    /// and shaped as the card's `feature_names` and `hidden` imply, and that the card's
    /// normalisation agrees with the weights file. Missing files are [`HeadError::Io`];
    /// truncated, corrupt or inconsistent ones are [`HeadError::Corrupt`].
    pub fn load(dir: &Path) -> Result<CtrHead, HeadError> {
        let card_path = dir.join(CARD_FILE);
        let weights_path = dir.join(WEIGHTS_FILE);
        let text = fs::read(&card_path).map_err(io_err(&card_path))?;
        let card: Value = serde_json::from_slice(&text)
            .map_err(|e| corrupt(&card_path, format!("not valid JSON: {e}")))?;
        let obj = card
            .as_object()
            .ok_or_else(|| corrupt(&card_path, "the card must be a JSON object"))?;
        let field = |name: &str| {
            obj.get(name)
                .ok_or_else(|| corrupt(&card_path, format!("missing field `{name}`")))
        };
        let version = field("format_version")?
            .as_u64()
            .ok_or_else(|| corrupt(&card_path, "`format_version` must be an integer"))?;
        if version != FORMAT_VERSION {
            return Err(corrupt(
                &card_path,
                format!(
                    "format_version {version} is not supported; this build reads version \
                     {FORMAT_VERSION} (re-save the head with this build)"
                ),
            ));
        }
        let names: Vec<String> = parse_field(field("feature_names")?, "feature_names", &card_path)?;
        let hidden: Vec<usize> = parse_field(field("hidden")?, "hidden", &card_path)?;
        let norm = field("normalisation")?;
        let mean: Vec<f32> = parse_field(
            norm.get("mean").unwrap_or(&Value::Null),
            "normalisation.mean",
            &card_path,
        )?;
        let std: Vec<f32> = parse_field(
            norm.get("std").unwrap_or(&Value::Null),
            "normalisation.std",
            &card_path,
        )?;
        validate_names(&names).map_err(|e| corrupt(&card_path, e.to_string()))?;
        if let Some(h) = hidden.iter().find(|&&h| h == 0 || h > MAX_HIDDEN) {
            return Err(corrupt(
                &card_path,
                format!("hidden layer width {h} is outside 1..={MAX_HIDDEN}"),
            ));
        }
        let d = names.len();
        if mean.len() != d || std.len() != d {
            return Err(corrupt(
                &card_path,
                format!(
                    "{d} feature_names but normalisation has {} means and {} stds",
                    mean.len(),
                    std.len()
                ),
            ));
        }

        let bytes = fs::read(&weights_path).map_err(io_err(&weights_path))?;
        if let Some(w) = obj.get("weights") {
            let want_len = w.get("bytes").and_then(Value::as_u64);
            let want_sum = w.get("fnv1a64").and_then(Value::as_str);
            let sum = format!("{:016x}", fnv1a64(&bytes));
            if want_len != Some(bytes.len() as u64) || want_sum != Some(sum.as_str()) {
                return Err(corrupt(
                    &weights_path,
                    format!(
                        "does not match the card ({} bytes, checksum {sum}; the card expects \
                         {} bytes, checksum {}): the file is truncated or damaged, or a save \
                         was interrupted; re-save or re-train the head",
                        bytes.len(),
                        want_len.map_or("?".into(), |v| v.to_string()),
                        want_sum.unwrap_or("?"),
                    ),
                ));
            }
        }
        let mut tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| corrupt(&weights_path, format!("not a valid safetensors file: {e}")))?;

        let dims: Vec<usize> = std::iter::once(d)
            .chain(hidden.iter().copied())
            .chain(std::iter::once(1))
            .collect();
        let mut take = |name: &str, shape: &[usize]| -> Result<Tensor, HeadError> {
            let t = tensors
                .remove(name)
                .ok_or_else(|| corrupt(&weights_path, format!("missing tensor `{name}`")))?;
            if t.dtype() != DType::F32 {
                return Err(corrupt(
                    &weights_path,
                    format!("tensor `{name}` is {:?}, expected f32", t.dtype()),
                ));
            }
            if t.dims() != shape {
                return Err(corrupt(
                    &weights_path,
                    format!(
                        "tensor `{name}` has shape {:?} but the card ({d} feature_names, \
                         hidden {hidden:?}) implies {shape:?}",
                        t.dims()
                    ),
                ));
            }
            let values = t
                .flatten_all()
                .and_then(|f| f.to_vec1::<f32>())
                .map_err(be)?;
            if values.iter().any(|v| !v.is_finite()) {
                return Err(corrupt(
                    &weights_path,
                    format!("tensor `{name}` holds non-finite values"),
                ));
            }
            Ok(t)
        };
        let mut layers = Vec::with_capacity(dims.len() - 1);
        for (i, pair) in dims.windows(2).enumerate() {
            let weight = take(&format!("mlp.{i}.weight"), &[pair[1], pair[0]])?;
            let bias = take(&format!("mlp.{i}.bias"), &[pair[1]])?;
            layers.push(Layer { weight, bias });
        }
        let file_mean = take("norm.mean", &[d])?.to_vec1::<f32>().map_err(be)?;
        let file_std = take("norm.std", &[d])?.to_vec1::<f32>().map_err(be)?;
        if let Some(name) = tensors.keys().next() {
            return Err(corrupt(
                &weights_path,
                format!("unexpected tensor `{name}` for the architecture in the card"),
            ));
        }
        if file_std.iter().any(|&s| s <= 0.0) {
            return Err(corrupt(&weights_path, "norm.std has a value <= 0"));
        }
        let close = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-6 * x.abs().max(1.0))
        };
        if !close(&mean, &file_mean) || !close(&std, &file_std) {
            return Err(corrupt(
                &card_path,
                format!("normalisation disagrees with {WEIGHTS_FILE}; the two files are from different saves"),
            ));
        }
        Ok(CtrHead {
            feature_names: names,
            hidden,
            mean: file_mean,
            std: file_std,
            layers,
            card,
        })
    }

    /// Standardises and flattens rows, naming the sample and feature of any bad value.
    /// Row widths must already have been checked.
    fn normalise(&self, rows: &[Vec<f32>], set: &str) -> Result<Vec<f32>, HeadError> {
        let d = self.feature_names.len();
        let mut out = Vec::with_capacity(rows.len().saturating_mul(d));
        for (i, row) in rows.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let u = (v - self.mean[j]) / self.std[j];
                if !u.is_finite() {
                    return Err(bad_value(set, i, j, &self.feature_names[j], v));
                }
                out.push(u);
            }
        }
        Ok(out)
    }

    /// The fields of the card that describe the model itself.
    fn model_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("format_version".into(), json!(FORMAT_VERSION));
        m.insert("feature_names".into(), json!(self.feature_names));
        m.insert("hidden".into(), json!(self.hidden));
        m.insert(
            "normalisation".into(),
            json!({ "mean": self.mean, "std": self.std }),
        );
        m
    }

    /// Merges the model's own fields over the current card.
    fn refresh_card(&mut self) {
        let mut m = match std::mem::take(&mut self.card) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        m.extend(self.model_fields());
        self.card = Value::Object(m);
    }

    fn tensor_map(&self) -> HashMap<String, Tensor> {
        let mut map = HashMap::new();
        for (i, l) in self.layers.iter().enumerate() {
            map.insert(format!("mlp.{i}.weight"), l.weight.clone());
            map.insert(format!("mlp.{i}.bias"), l.bias.clone());
        }
        let d = self.mean.len();
        // Tensor::from_slice on a CPU device with a matching length cannot fail.
        if let Ok(t) = Tensor::from_slice(&self.mean, d, &Device::Cpu) {
            map.insert("norm.mean".into(), t);
        }
        if let Ok(t) = Tensor::from_slice(&self.std, d, &Device::Cpu) {
            map.insert("norm.std".into(), t);
        }
        map
    }
}

/// How the best epoch is chosen, fixed by what the validation set allows.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Selection {
    /// Highest validation AUC (both classes present).
    Auc,
    /// Lowest validation loss (one class only, but some weight).
    Loss,
    /// No usable validation set: keep the last epoch.
    Last,
}

impl Selection {
    fn for_validation(val: &TrainData) -> Selection {
        let pos = val.labels.iter().any(|&y| y >= 0.5);
        let neg = val.labels.iter().any(|&y| y < 0.5);
        if pos && neg {
            Selection::Auc
        } else if val.weights.iter().any(|&w| w > 0.0) {
            Selection::Loss
        } else {
            Selection::Last
        }
    }
}

/// One optimiser step on the batch `idx[start..start + len]`; returns the batch loss.
#[allow(clippy::too_many_arguments)]
fn train_step(
    layers: &[Layer],
    opt: &mut AdamW,
    x: &Tensor,
    y: &Tensor,
    w: &Tensor,
    idx: &Tensor,
    start: usize,
    len: usize,
    batch_weight: f64,
) -> candle_core::Result<f64> {
    let bi = idx.narrow(0, start, len)?;
    let xb = x.index_select(&bi, 0)?;
    let yb = y.index_select(&bi, 0)?;
    let wb = w.index_select(&bi, 0)?;
    let z = forward(layers, &xb)?;
    let loss = (weighted_bce_sum(&z, &yb, &wb)? * (1.0 / batch_weight))?;
    opt.backward_step(&loss)?;
    Ok(f64::from(loss.to_scalar::<f32>()?))
}

/// `sum_i w_i l_i` with the stable form `l = max(z, 0) - y z + log(1 + e^-|z|)`.
fn weighted_bce_sum(z: &Tensor, y: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let softplus_tail = ((z.abs()?.neg()?.exp()? + 1.0)?).log()?;
    let l = ((z.relu()? - (y * z)?)? + softplus_tail)?;
    (l * w)?.sum_all()
}

/// The network: `[n, d]` standardised rows to `[n, 1]` logits.
fn forward(layers: &[Layer], x: &Tensor) -> candle_core::Result<Tensor> {
    let mut h = x.clone();
    for (i, layer) in layers.iter().enumerate() {
        h = h.matmul(&layer.weight.t()?)?.broadcast_add(&layer.bias)?;
        if i + 1 < layers.len() {
            h = h.relu()?;
        }
    }
    Ok(h)
}

/// Logits for all rows of `x`, [`EVAL_CHUNK`] rows at a time.
fn forward_chunked(layers: &[Layer], x: &Tensor) -> candle_core::Result<Vec<f32>> {
    let n = x.dim(0)?;
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(EVAL_CHUNK) {
        let len = EVAL_CHUNK.min(n - start);
        let z = forward(layers, &x.narrow(0, start, len)?)?;
        out.extend(z.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// Deep copies of the current parameter values.
fn snapshot(vars: &[(Var, Var)]) -> candle_core::Result<Vec<Layer>> {
    vars.iter()
        .map(|(w, b)| {
            Ok(Layer {
                weight: w.as_detached_tensor().copy()?,
                bias: b.as_detached_tensor().copy()?,
            })
        })
        .collect()
}

/// Validation loss, AUC and mean NDCG@10 from logits.
fn evaluate(
    logits: &[f32],
    val: &TrainData,
    groups: &[Vec<usize>],
) -> (f64, Option<f64>, Option<f64>) {
    let mut loss = 0f64;
    let mut weight = 0f64;
    for ((&z, &y), &w) in logits.iter().zip(&val.labels).zip(&val.weights) {
        let (z, y, w) = (f64::from(z), f64::from(y), f64::from(w));
        loss += w * (z.max(0.0) - y * z + (-z.abs()).exp().ln_1p());
        weight += w;
    }
    let val_loss = if weight > 0.0 {
        loss / weight
    } else {
        f64::NAN
    };
    (
        val_loss,
        auc(logits, &val.labels),
        mean_ndcg(logits, &val.labels, groups, NDCG_K),
    )
}

/// Sample indices per group, groups in ascending id order (deterministic).
fn group_indices(groups: &[u64]) -> Vec<Vec<usize>> {
    let mut by_group: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, &g) in groups.iter().enumerate() {
        by_group.entry(g).or_default().push(i);
    }
    let mut out: Vec<(u64, Vec<usize>)> = by_group.into_iter().collect();
    out.sort_unstable_by_key(|(g, _)| *g);
    out.into_iter().map(|(_, v)| v).collect()
}

/// Mean NDCG@k over groups with a positive ideal DCG (Järvelin & Kekäläinen 2002, linear
/// gain = label, discount `1 / log2(rank + 1)`); ties in score keep input order.
fn mean_ndcg(scores: &[f32], labels: &[f32], groups: &[Vec<usize>], k: usize) -> Option<f64> {
    let dcg = |gains: &mut dyn Iterator<Item = f32>| -> f64 {
        gains
            .take(k)
            .enumerate()
            .map(|(r, g)| f64::from(g) / ((r + 2) as f64).log2())
            .sum()
    };
    let mut total = 0f64;
    let mut counted = 0usize;
    for group in groups {
        let mut ideal: Vec<f32> = group.iter().map(|&i| labels[i]).collect();
        ideal.sort_by(|a, b| b.total_cmp(a));
        let idcg = dcg(&mut ideal.into_iter());
        if idcg <= 0.0 {
            continue;
        }
        let mut order = group.clone();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        total += dcg(&mut order.iter().map(|&i| labels[i])) / idcg;
        counted += 1;
    }
    (counted > 0).then(|| total / counted as f64)
}

/// ROC AUC of `scores` against `labels` (`>= 0.5` is positive), computed from ranks
/// (Mann-Whitney U) in O(n log n); tied scores count half.
///
/// `None` when the lengths differ, a score or label is NaN, or either class is absent.
pub fn auc(scores: &[f32], labels: &[f32]) -> Option<f64> {
    if scores.len() != labels.len()
        || scores.iter().any(|s| s.is_nan())
        || labels.iter().any(|l| l.is_nan())
    {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0f64;
    let mut n_pos = 0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let avg_rank = (i + j + 2) as f64 / 2.0;
        for &k in &order[i..=j] {
            if labels[k] >= 0.5 {
                rank_sum_pos += avg_rank;
                n_pos += 1.0;
            }
        }
        i = j + 1;
    }
    let n_neg = scores.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    Some((rank_sum_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

fn bad_value(set: &str, i: usize, j: usize, name: &str, v: f32) -> HeadError {
    let reason = if v.is_finite() {
        format!("{v} is too far from the training mean to normalise")
    } else {
        format!("is {v}; replace missing values first, e.g. with 0 plus an indicator feature")
    };
    invalid(format!("{set}.features[{i}][{j}] ({name:?})"), reason)
}

fn validate_names(names: &[String]) -> Result<(), HeadError> {
    if names.is_empty() {
        return Err(invalid(
            "feature_names",
            "is empty; the head needs at least one feature",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() {
            return Err(invalid(format!("feature_names[{i}]"), "is empty"));
        }
        if !seen.insert(n.as_str()) {
            return Err(invalid(
                format!("feature_names[{i}]"),
                format!("{n:?} appears more than once"),
            ));
        }
    }
    Ok(())
}

/// Per-feature mean and population standard deviation (floored at [`STD_FLOOR`]), in f64.
/// Row widths must already have been checked; non-finite values are reported here.
fn feature_stats(rows: &[Vec<f32>], names: &[String]) -> Result<(Vec<f32>, Vec<f32>), HeadError> {
    let d = names.len();
    let n = rows.len() as f64;
    let mut sum = vec![0f64; d];
    for (i, row) in rows.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            if !v.is_finite() {
                return Err(bad_value("train", i, j, &names[j], v));
            }
            sum[j] += f64::from(v);
        }
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let mut sq = vec![0f64; d];
    for row in rows {
        for (j, &v) in row.iter().enumerate() {
            let c = f64::from(v) - mean[j];
            sq[j] += c * c;
        }
    }
    let std = sq
        .iter()
        .map(|s| (s / n).sqrt().max(STD_FLOOR) as f32)
        .collect();
    Ok((mean.iter().map(|&m| m as f32).collect(), std))
}

fn weighted_mean(values: &[f32], weights: &[f32]) -> f64 {
    let (s, w) = values
        .iter()
        .zip(weights)
        .fold((0f64, 0f64), |(s, t), (&v, &w)| {
            (s + f64::from(v) * f64::from(w), t + f64::from(w))
        });
    if w > 0.0 {
        s / w
    } else {
        0.5
    }
}

/// Random initial layers: He-uniform (`U(±sqrt(6 / fan_in))`, He et al. 2015) for ReLU
/// layers, `U(±1 / sqrt(fan_in))` (PyTorch's `nn.Linear` default) for the output layer, zero
/// biases except the output bias, set to the log-odds of the weighted base rate so training
/// starts from the right average prediction.
fn init_layers(
    d: usize,
    hidden: &[usize],
    base_rate: f64,
    rng: &mut SplitMix64,
) -> candle_core::Result<Vec<Layer>> {
    let dims: Vec<usize> = std::iter::once(d)
        .chain(hidden.iter().copied())
        .chain(std::iter::once(1))
        .collect();
    let last = dims.len() - 2;
    let mut layers = Vec::with_capacity(dims.len() - 1);
    for (i, pair) in dims.windows(2).enumerate() {
        let (fan_in, fan_out) = (pair[0], pair[1]);
        let bound = if i == last {
            1.0 / (fan_in as f64).sqrt()
        } else {
            (6.0 / fan_in as f64).sqrt()
        };
        let w: Vec<f32> = (0..fan_in * fan_out)
            .map(|_| ((2.0 * rng.next_f64() - 1.0) * bound) as f32)
            .collect();
        let mut b = vec![0f32; fan_out];
        if i == last {
            let p = base_rate.clamp(1e-4, 1.0 - 1e-4);
            b[0] = (p / (1.0 - p)).ln() as f32;
        }
        layers.push(Layer {
            weight: Tensor::from_vec(w, (fan_out, fan_in), &Device::Cpu)?,
            bias: Tensor::from_vec(b, fan_out, &Device::Cpu)?,
        });
    }
    Ok(layers)
}

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, fast, well-mixed generator; ours so that
/// a seed means the same stream on every platform and candle version.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-32 for our sizes).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Fisher-Yates shuffle.
    fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }
}

/// FNV-1a, 64 bit: a dependency-free checksum to tie the card to its weights file
/// (detects truncation and mismatched saves, not tampering).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_field<T: serde::de::DeserializeOwned>(
    v: &Value,
    name: &str,
    path: &Path,
) -> Result<T, HeadError> {
    T::deserialize(v).map_err(|e| corrupt(path, format!("field `{name}`: {e}")))
}

/// A fresh temporary path next to `name` in `dir` (same file system, so rename is atomic).
fn temp_path(dir: &Path, name: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Writes `bytes` to `dir/name` through a temporary file, fsync and rename.
fn atomic_write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), HeadError> {
    let tmp = temp_path(dir, name);
    let target = dir.join(name);
    let result = fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .map_err(io_err(&tmp))
        .and_then(|()| fs::rename(&tmp, &target).map_err(io_err(&target)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Best effort: makes the renames durable on file systems that need the directory synced
/// (Linux); platforms that cannot open a directory simply skip it.
fn sync_dir(dir: &Path) {
    if let Ok(f) = fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synthetic data: `d` standard-normal-ish features (with offsets/scales so
    /// normalisation matters), label from `f(x)`.
    fn synth(
        n: usize,
        d: usize,
        seed: u64,
        group_size: usize,
        label: impl Fn(&[f32], &mut SplitMix64) -> f32,
    ) -> TrainData {
        let mut rng = SplitMix64::new(seed);
        let mut data = TrainData::default();
        for i in 0..n {
            let row: Vec<f32> = (0..d).map(|_| normal(&mut rng) as f32).collect();
            let y = label(&row, &mut rng);
            // Shift and scale raw columns: the head must normalise.
            let raw: Vec<f32> = row
                .iter()
                .enumerate()
                .map(|(j, v)| v * (1.0 + j as f32) + 10.0 * j as f32)
                .collect();
            data.features.push(raw);
            data.labels.push(y);
            data.weights.push(1.0);
            data.groups.push((i / group_size) as u64);
        }
        data
    }

    fn normal(rng: &mut SplitMix64) -> f64 {
        // Box-Muller.
        let u1 = rng.next_f64().max(1e-12);
        let u2 = rng.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn names(d: usize) -> Vec<String> {
        (0..d).map(|j| format!("f{j}")).collect()
    }

    fn separable(x: &[f32], rng: &mut SplitMix64) -> f32 {
        let noise = 0.1 * normal(rng) as f32;
        f32::from(x[0] + 0.5 * x[1] + noise > 0.0)
    }

    fn small_cfg() -> HeadConfig {
        HeadConfig {
            epochs: 8,
            batch_size: 128,
            ..HeadConfig::default()
        }
    }

    fn fit(train: &TrainData, val: &TrainData, cfg: &HeadConfig) -> (CtrHead, TrainReport) {
        let d = train.features[0].len();
        CtrHead::train(names(d), train, val, cfg, &mut |_| {}).unwrap()
    }

    fn mean(xs: &[f32]) -> f64 {
        xs.iter().map(|&x| f64::from(x)).sum::<f64>() / xs.len() as f64
    }

    #[test]
    fn is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<CtrHead>();
        check::<HeadError>();
    }

    #[test]
    fn learns_separable_problem() {
        let train = synth(4000, 4, 1, 20, separable);
        let val = synth(1000, 4, 2, 20, separable);
        let mut seen = 0;
        let (head, report) =
            CtrHead::train(names(4), &train, &val, &small_cfg(), &mut |_| seen += 1).unwrap();
        assert_eq!(seen, report.epochs.len());
        let auc_val = report.best_val_auc.unwrap();
        assert!(auc_val > 0.95, "val AUC {auc_val}");
        let last = report.epochs.last().unwrap();
        assert!(last.val_ndcg10.unwrap() > 0.8, "{last:?}");
        assert!(report.epochs[0].train_loss > last.train_loss);
        // Predictions agree with the report.
        let p = head.predict(&val.features).unwrap();
        assert!(p.iter().all(|p| (0.0..=1.0).contains(p)));
        assert!((auc(&p, &val.labels).unwrap() - auc_val).abs() < 1e-6);
        assert_eq!(report.train_samples, 4000);
        assert_eq!(report.val_samples, 1000);
        assert!(report.seconds > 0.0);
        // Logits and probabilities are consistent.
        let z = head.predict_logits(&val.features[..5]).unwrap();
        for (z, p) in z.iter().zip(&p) {
            assert!((sigmoid(*z) - p).abs() < 1e-6);
        }
    }

    #[test]
    fn same_seed_same_model_different_seed_different_model() {
        let train = synth(1500, 3, 3, 10, separable);
        let val = synth(300, 3, 4, 10, separable);
        let cfg = HeadConfig {
            epochs: 3,
            ..small_cfg()
        };
        let bits = |h: &CtrHead| -> Vec<u32> {
            h.predict(&val.features)
                .unwrap()
                .iter()
                .map(|p| p.to_bits())
                .collect()
        };
        let (a, ra) = fit(&train, &val, &cfg);
        let (b, rb) = fit(&train, &val, &cfg);
        assert_eq!(bits(&a), bits(&b));
        assert_eq!(ra.epochs, rb.epochs);
        let (c, _) = fit(&train, &val, &HeadConfig { seed: 43, ..cfg });
        assert_ne!(bits(&a), bits(&c));
    }

    #[test]
    fn sample_weights_matter() {
        let train = synth(2000, 3, 5, 10, separable);
        let val = synth(400, 3, 6, 10, separable);
        let cfg = HeadConfig {
            epochs: 5,
            ..small_cfg()
        };
        let (plain, _) = fit(&train, &val, &cfg);
        let mut no_pos = train.clone();
        for (w, y) in no_pos.weights.iter_mut().zip(&no_pos.labels) {
            if *y >= 0.5 {
                *w = 0.0;
            }
        }
        let (weighted, _) = fit(&no_pos, &val, &cfg);
        let m_plain = mean(&plain.predict(&val.features).unwrap());
        let m_weighted = mean(&weighted.predict(&val.features).unwrap());
        assert!(m_plain > 0.3 && m_plain < 0.7, "{m_plain}");
        assert!(m_weighted < 0.05, "{m_weighted}");
    }

    #[test]
    fn soft_labels_accepted() {
        let soft = |x: &[f32], _: &mut SplitMix64| sigmoid(3.0 * x[0]);
        let train = synth(2000, 2, 7, 10, soft);
        let val = synth(400, 2, 8, 10, soft);
        assert!(train.labels.iter().any(|&y| y > 0.05 && y < 0.95));
        let (head, report) = fit(&train, &val, &small_cfg());
        assert!(report.epochs.iter().all(|e| e.train_loss.is_finite()));
        // Predictions track the soft target.
        let p = head.predict(&val.features).unwrap();
        let err = p
            .iter()
            .zip(&val.labels)
            .map(|(p, y)| f64::from((p - y).abs()))
            .sum::<f64>()
            / p.len() as f64;
        assert!(err < 0.08, "mean abs error {err}");
    }

    #[test]
    fn save_load_round_trip_and_corruption() {
        let train = synth(800, 3, 9, 10, separable);
        let val = synth(200, 3, 10, 10, separable);
        let (head, _) = fit(
            &train,
            &val,
            &HeadConfig {
                epochs: 2,
                ..small_cfg()
            },
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model");
        head.save(
            &path,
            &json!({"trained_on": "synthetic", "format_version": 99}),
        )
        .unwrap();
        let loaded = CtrHead::load(&path).unwrap();
        let bits = |h: &CtrHead| -> Vec<u32> {
            h.predict(&val.features)
                .unwrap()
                .iter()
                .map(|p| p.to_bits())
                .collect()
        };
        assert_eq!(bits(&head), bits(&loaded));
        assert_eq!(loaded.feature_names(), head.feature_names());
        assert_eq!(loaded.normalisation(), head.normalisation());
        assert_eq!(loaded.card()["trained_on"], "synthetic");
        assert_eq!(loaded.card()["format_version"], 1);
        // No temporary files left behind.
        let files: Vec<_> = fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files.len(), 2, "{files:?}");
        // Saving a loaded head again works (overwrites atomically).
        loaded.save(&path, loaded.card()).unwrap();
        assert_eq!(bits(&CtrHead::load(&path).unwrap()), bits(&head));

        let weights = path.join(WEIGHTS_FILE);
        let card_path = path.join(CARD_FILE);
        let original = fs::read(&weights).unwrap();
        let card: Value = serde_json::from_slice(&fs::read(&card_path).unwrap()).unwrap();

        // Truncated weights: caught by the card's checksum...
        fs::write(&weights, &original[..original.len() / 2]).unwrap();
        let e = CtrHead::load(&path).unwrap_err();
        assert!(matches!(e, HeadError::Corrupt { .. }), "{e}");
        assert!(!e.is_caller_fault());
        // ...and by the safetensors parser when the card has no checksum.
        let mut no_sum = card.clone();
        no_sum.as_object_mut().unwrap().remove("weights");
        fs::write(&card_path, serde_json::to_vec(&no_sum).unwrap()).unwrap();
        for cut in [0, 4, 8, 20, original.len() / 2, original.len() - 1] {
            fs::write(&weights, &original[..cut]).unwrap();
            let e = CtrHead::load(&path).unwrap_err();
            assert!(matches!(e, HeadError::Corrupt { .. }), "cut {cut}: {e}");
        }
        // Damaged bytes never panic: each is an error or (inside the data) a valid model.
        for pos in (0..original.len()).step_by(7) {
            for byte in [0x00, 0x7f, 0xff] {
                let mut damaged = original.clone();
                damaged[pos] = byte;
                fs::write(&weights, &damaged).unwrap();
                if let Err(e) = CtrHead::load(&path) {
                    assert!(matches!(e, HeadError::Corrupt { .. }), "byte {pos}: {e}");
                }
            }
        }
        fs::write(&weights, &original).unwrap();
        CtrHead::load(&path).unwrap();

        // Card with the wrong feature count.
        let mut wrong = no_sum.clone();
        wrong["feature_names"] = json!(["f0", "f1"]);
        wrong["normalisation"]["mean"] = json!([0.0, 0.0]);
        wrong["normalisation"]["std"] = json!([1.0, 1.0]);
        fs::write(&card_path, serde_json::to_vec(&wrong).unwrap()).unwrap();
        let e = CtrHead::load(&path).unwrap_err().to_string();
        assert!(e.contains("shape"), "{e}");
        let mut wrong = no_sum.clone();
        wrong["feature_names"] = json!(["f0", "f1"]);
        fs::write(&card_path, serde_json::to_vec(&wrong).unwrap()).unwrap();
        assert!(matches!(
            CtrHead::load(&path),
            Err(HeadError::Corrupt { .. })
        ));
        // Wrong hidden sizes, wrong version, garbage card.
        let mut wrong = no_sum.clone();
        wrong["hidden"] = json!([16, 16]);
        fs::write(&card_path, serde_json::to_vec(&wrong).unwrap()).unwrap();
        assert!(matches!(
            CtrHead::load(&path),
            Err(HeadError::Corrupt { .. })
        ));
        let mut wrong = no_sum.clone();
        wrong["format_version"] = json!(2);
        fs::write(&card_path, serde_json::to_vec(&wrong).unwrap()).unwrap();
        let e = CtrHead::load(&path).unwrap_err().to_string();
        assert!(e.contains("format_version 2"), "{e}");
        fs::write(&card_path, b"{\"format_version\": 1, \"feature_na").unwrap();
        assert!(matches!(
            CtrHead::load(&path),
            Err(HeadError::Corrupt { .. })
        ));
        // Missing directory is an I/O error.
        assert!(matches!(
            CtrHead::load(&dir.path().join("nope")),
            Err(HeadError::Io { .. })
        ));
        // A non-object card is refused.
        assert!(head
            .save(&path, &json!([1, 2]))
            .unwrap_err()
            .is_caller_fault());
    }

    #[test]
    fn resume_keeps_normalisation_and_improves() {
        let train = synth(2000, 3, 11, 10, separable);
        let val = synth(400, 3, 12, 10, separable);
        let (head, _) = fit(
            &train,
            &val,
            &HeadConfig {
                epochs: 4,
                ..small_cfg()
            },
        );
        // New data: the relationship now also depends strongly on f2, and f1's raw scale
        // drifted (normalisation must stay the original).
        let drift = |x: &[f32], rng: &mut SplitMix64| {
            let noise = 0.1 * normal(rng) as f32;
            f32::from(x[0] - 2.0 * x[2] + noise > 0.0)
        };
        let mut new_train = synth(2000, 3, 13, 10, drift);
        let new_val = synth(400, 3, 14, 10, drift);
        for row in &mut new_train.features {
            row[1] += 3.0;
        }
        let before = auc(&head.predict(&new_val.features).unwrap(), &new_val.labels).unwrap();
        let cfg = HeadConfig {
            epochs: 6,
            learning_rate: 3e-3,
            seed: 5,
            ..small_cfg()
        };
        let (tuned, report) = head
            .resume(&new_train, &new_val, &cfg, &mut |_| {})
            .unwrap();
        assert_eq!(tuned.normalisation(), head.normalisation());
        assert_eq!(tuned.feature_names(), head.feature_names());
        let after = report.best_val_auc.unwrap();
        assert!(after > before + 0.05, "before {before}, after {after}");
        assert!(after > 0.95, "{after}");
        // The original is untouched.
        let again = auc(&head.predict(&new_val.features).unwrap(), &new_val.labels).unwrap();
        assert_eq!(again, before);
    }

    #[test]
    fn contributions_rank_the_strongest_feature_first() {
        // Linear logit 3*x0 + 1*x1 + 0*x2 (in standard units), Bernoulli labels.
        let linear = |x: &[f32], rng: &mut SplitMix64| {
            let p = sigmoid(3.0 * x[0] + 1.0 * x[1]);
            f32::from(rng.next_f64() < f64::from(p))
        };
        let train = synth(4000, 3, 15, 10, linear);
        let val = synth(500, 3, 16, 10, linear);
        let cfg = HeadConfig {
            hidden: vec![],
            epochs: 20,
            learning_rate: 3e-2,
            ..small_cfg()
        };
        let (head, _) = fit(&train, &val, &cfg);
        let mut total = [0f64; 3];
        for row in &val.features[..200] {
            let c = head.contributions(row).unwrap();
            assert_eq!(c[0].0, "f0");
            for (t, (_, v)) in total.iter_mut().zip(&c) {
                *t += f64::from(v.abs());
            }
            // Exact for a linear head: contributions sum to logit - bias.
            let z = head.predict_logits(std::slice::from_ref(row)).unwrap()[0];
            let bias = head.layers[0].bias.to_vec1::<f32>().unwrap()[0];
            let sum: f32 = c.iter().map(|(_, v)| v).sum();
            assert!((sum - (z - bias)).abs() < 1e-3, "{sum} vs {}", z - bias);
        }
        assert!(
            total[0] > 2.0 * total[1] && total[1] > 2.0 * total[2],
            "{total:?}"
        );

        // With hidden layers the strongest feature still dominates.
        let (mlp, _) = fit(&train, &val, &small_cfg());
        let mut total = [0f64; 3];
        for row in &val.features[..200] {
            for (t, (_, v)) in total.iter_mut().zip(mlp.contributions(row).unwrap()) {
                *t += f64::from(v.abs());
            }
        }
        assert!(total[0] > total[1] && total[0] > total[2], "{total:?}");
        assert!(mlp.contributions(&[1.0]).unwrap_err().is_caller_fault());
    }

    #[test]
    fn invalid_inputs_are_clear_errors() {
        let train = synth(50, 3, 17, 10, separable);
        let empty = TrainData::default();
        let cfg = HeadConfig {
            epochs: 1,
            ..small_cfg()
        };
        let err = |data: &TrainData| -> String {
            let e = CtrHead::train(names(3), data, &empty, &cfg, &mut |_| {}).unwrap_err();
            assert!(e.is_caller_fault(), "{e}");
            e.to_string()
        };

        let mut d = train.clone();
        d.features[7][2] = f32::NAN;
        let e = err(&d);
        assert!(
            e.contains("train.features[7][2]") && e.contains("\"f2\"") && e.contains("NaN"),
            "{e}"
        );

        let mut d = train.clone();
        d.weights[3] = -1.0;
        let e = err(&d);
        assert!(e.contains("train.weights[3]") && e.contains(">= 0"), "{e}");

        let mut d = train.clone();
        d.labels[4] = 2.0;
        let e = err(&d);
        assert!(e.contains("train.labels[4]") && e.contains("[0, 1]"), "{e}");

        let mut d = train.clone();
        d.features[5].pop();
        let e = err(&d);
        assert!(
            e.contains("train.features[5]") && e.contains("expected 3"),
            "{e}"
        );

        let mut d = train.clone();
        d.labels.pop();
        assert!(err(&d).contains("train.labels"));

        let mut d = train.clone();
        d.weights.iter_mut().for_each(|w| *w = 0.0);
        assert!(err(&d).contains("zero"));

        assert!(err(&empty).contains("no samples"));

        let e = CtrHead::train(
            vec!["a".into(), "a".into(), "b".into()],
            &train,
            &empty,
            &cfg,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("more than once"), "{e}");

        let bad_cfg = HeadConfig {
            learning_rate: -1.0,
            ..cfg.clone()
        };
        let e = CtrHead::train(names(3), &train, &empty, &bad_cfg, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("learning_rate"), "{e}");
        let bad_cfg = HeadConfig {
            hidden: vec![0],
            ..cfg.clone()
        };
        assert!(CtrHead::train(names(3), &train, &empty, &bad_cfg, &mut |_| {}).is_err());

        // Validation data is checked too, and prediction rejects bad rows.
        let mut v = train.clone();
        v.features[1][0] = f32::INFINITY;
        let e = CtrHead::train(names(3), &train, &v, &cfg, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("val.features[1][0]"), "{e}");
        let (head, report) = fit(&train, &empty, &cfg);
        assert_eq!(report.best_epoch, 1);
        assert!(report.epochs[0].val_loss.is_nan());
        assert!(head
            .predict(&[vec![1.0, 2.0]])
            .unwrap_err()
            .is_caller_fault());
        assert!(head.predict(&[vec![1.0, f32::NAN, 2.0]]).is_err());
        assert_eq!(head.predict(&[]).unwrap(), Vec::<f32>::new());
    }

    #[test]
    fn empty_validation_runs_all_epochs_and_patience_stops_early() {
        let train = synth(500, 2, 18, 10, separable);
        let cfg = HeadConfig {
            epochs: 4,
            ..small_cfg()
        };
        let (_, report) = fit(&train, &TrainData::default(), &cfg);
        assert_eq!(report.epochs.len(), 4);
        assert_eq!(report.best_epoch, 4);
        assert_eq!(report.best_val_auc, None);

        // A validation set whose labels are unrelated to the features stops early.
        let mut val = synth(300, 2, 19, 10, separable);
        let mut rng = SplitMix64::new(0);
        for y in &mut val.labels {
            *y = f32::from(rng.next_f64() < 0.5);
        }
        let cfg = HeadConfig {
            epochs: 30,
            patience: 2,
            ..small_cfg()
        };
        let (_, report) = fit(&train, &val, &cfg);
        assert!(report.epochs.len() < 30, "{}", report.epochs.len());
        let best = report.epochs[report.best_epoch - 1].val_auc;
        assert_eq!(best, report.best_val_auc);
        assert!(report
            .epochs
            .iter()
            .all(|e| e.val_auc.unwrap() <= best.unwrap()));
    }

    #[test]
    fn auc_hand_computed() {
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &[0.0, 0.0, 1.0, 1.0]), Some(1.0));
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &[0.0, 0.0, 1.0, 1.0]), Some(0.0));
        // Pairs (pos, neg): (0.35,0.1) win, (0.35,0.4) loss, (0.8,*) wins -> 3/4.
        assert_eq!(
            auc(&[0.1, 0.4, 0.35, 0.8], &[0.0, 0.0, 1.0, 1.0]),
            Some(0.75)
        );
        // A tie counts half: (0.5 vs 0.5) 0.5 + (0.5 vs 0.2) 1 -> 0.75.
        assert_eq!(auc(&[0.5, 0.5, 0.2], &[1.0, 0.0, 0.0]), Some(0.75));
        assert_eq!(auc(&[0.3; 4], &[1.0, 0.0, 1.0, 0.0]), Some(0.5));
        // Soft labels: >= 0.5 is positive.
        assert_eq!(auc(&[0.1, 0.9], &[0.49, 0.5]), Some(1.0));
        assert_eq!(auc(&[0.1, 0.9], &[1.0, 1.0]), None);
        assert_eq!(auc(&[], &[]), None);
        assert_eq!(auc(&[0.1], &[1.0, 0.0]), None);
        assert_eq!(auc(&[f32::NAN, 0.1], &[1.0, 0.0]), None);
    }

    #[test]
    fn ndcg_hand_computed() {
        let groups = vec![vec![0, 1, 2], vec![3, 4]];
        // Group 0 perfectly ranked; group 1 reversed: DCG = 1/log2(3), IDCG = 1.
        let scores = [0.9, 0.5, 0.1, 0.9, 0.1];
        let labels = [1.0, 0.0, 0.0, 0.0, 1.0];
        let want = (1.0 + 1.0 / 3f64.log2()) / 2.0;
        let got = mean_ndcg(&scores, &labels, &groups, 10).unwrap();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        // A group without positives is skipped; none at all -> None.
        assert_eq!(mean_ndcg(&scores, &[0.0; 5], &groups, 10), None);
    }

    #[test]
    fn config_reads_partial_files() {
        let cfg: HeadConfig = serde_json::from_str(r#"{"epochs": 3}"#).unwrap();
        assert_eq!(
            cfg,
            HeadConfig {
                epochs: 3,
                ..HeadConfig::default()
            }
        );
        assert!(serde_json::from_str::<HeadConfig>(r#"{"epoch": 3}"#).is_err());
    }

    /// Timing: 2,000,000 samples x 20 features (20,000 groups x 100), 3 epochs.
    /// `cargo test --release -- --ignored --nocapture timing`
    #[test]
    #[ignore]
    fn timing_two_million_samples() {
        let d = 20;
        let coef: Vec<f32> = (0..d).map(|j| 1.0 / (1.0 + j as f32)).collect();
        let label = |x: &[f32], rng: &mut SplitMix64| {
            let z: f32 = x.iter().zip(&coef).map(|(a, b)| a * b).sum::<f32>() - 2.0;
            f32::from(rng.next_f64() < f64::from(sigmoid(2.0 * z)))
        };
        let t = Instant::now();
        let train = synth(2_000_000, d, 20, 100, label);
        let val = synth(200_000, d, 21, 100, label);
        eprintln!("data generated in {:.1}s", t.elapsed().as_secs_f64());
        let cfg = HeadConfig {
            epochs: 3,
            ..HeadConfig::default()
        };
        let t = Instant::now();
        let (_, report) = CtrHead::train(names(d), &train, &val, &cfg, &mut |e| {
            eprintln!("{:.1}s {e:?}", t.elapsed().as_secs_f64());
        })
        .unwrap();
        eprintln!(
            "trained 3 epochs on {} samples (batch {}) in {:.1}s; best val AUC {:?}",
            report.train_samples, cfg.batch_size, report.seconds, report.best_val_auc
        );
    }
}
