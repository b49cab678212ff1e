//! Training the CTR head.
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

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    bad_value, be, forward, forward_chunked, invalid, validate_names, CtrHead, HeadError, Layer,
    MAX_HIDDEN,
};
use crate::eval::metrics;
use crate::rng::SplitMix64;

/// Smallest standard deviation used for normalisation, in absolute terms: a feature that
/// is constant at 0 over the training set would otherwise divide by zero.
pub const STD_FLOOR: f64 = 1e-6;

/// Smallest standard deviation used for normalisation, relative to the feature's scale
/// (the larger of its mean magnitude and its range over the training set): 1%.
///
/// A feature whose spread is below 1% of its own magnitude carried (almost) no
/// information in training, and dividing by that spread turns a small, ordinary change
/// at serving time into an enormous standardised value. One more event moves
/// `user_activity = ln(1 + events)` by `ln((n + 2) / (n + 1))`, about 0.087 at n = 10: with
/// only the absolute floor a training set where that feature was constant at `ln 11` made
/// it 87,000 standard deviations; with this floor (0.024) it is 3.6. The floor leaves
/// features that really vary alone: one whose spread is a few percent of its value or more
/// never meets the mean term, and since a population standard deviation is at least
/// `range / sqrt(2 n)`, the range term binds only when all but a handful of values sit at
/// one point (one outlier among more than 5,000 samples).
pub const RELATIVE_STD_FLOOR: f64 = 0.01;

/// Bound on a standardised value: `u = (x - mean) / std` is clipped to `[-Z_CLIP, Z_CLIP]`
/// in training and serving alike.
///
/// The network is only fit where training data lies; beyond it, its ReLU layers
/// extrapolate linearly without limit. By Chebyshev's inequality at most 1 / 5² = 4% of any
/// training distribution lies more than 5 standard deviations from its mean (for a roughly
/// normal feature, fewer than one in a million values), so the clip leaves the data the
/// head learnt from almost untouched while bounding what any single feature can add to the
/// first layer to 5 x its weights. Heads saved before the clip existed are served with it
/// too (their card has no `normalisation.clip`).
pub const Z_CLIP: f32 = 5.0;

/// The standard deviation normalisation divides by: the measured one, floored at
/// [`STD_FLOOR`] and at [`RELATIVE_STD_FLOOR`] x max(|mean|, range). Pass `range = 0` when it
/// is unknown (a head loaded from disk records only mean and std).
pub(super) fn floored_std(std: f64, mean: f64, range: f64) -> f64 {
    std.max(STD_FLOOR)
        .max(RELATIVE_STD_FLOOR * mean.abs().max(range))
}

/// Rank cut-off of the validation NDCG reported per epoch (NDCG@10, the usual first page).
const NDCG_K: usize = 10;

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
    pub rows: Vec<Vec<f32>>,
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
        self.rows.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Checks lengths, row widths, labels and weights (feature values are checked while
    /// normalising, where the feature names are at hand).
    fn validate(&self, set: &str, width: usize) -> Result<(), HeadError> {
        let n = self.rows.len();
        for (field, len) in [
            ("labels", self.labels.len()),
            ("weights", self.weights.len()),
            ("groups", self.groups.len()),
        ] {
            if len != n {
                return Err(invalid(
                    format!("{set}.{field}"),
                    format!("has {len} entries but {set}.rows has {n} rows; give one per sample"),
                ));
            }
        }
        if n > u32::MAX as usize {
            return Err(invalid(
                format!("{set}.rows"),
                format!("{n} samples is more than the supported {}", u32::MAX),
            ));
        }
        if let Some((i, row)) = self.rows.iter().enumerate().find(|(_, r)| r.len() != width) {
            return Err(invalid(
                format!("{set}.rows[{i}]"),
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
        validate_names(&feature_names)?;
        let width = feature_names.len();
        check_inputs(cfg, train, val, width)?;
        let stats = feature_stats(&train.rows, &feature_names)?;
        let mut rng = SplitMix64::new(cfg.seed);
        let base_rate = weighted_mean(&train.labels, &train.weights);
        let layers =
            init_layers(width, &cfg.hidden, base_rate, &stats.floored, &mut rng).map_err(be)?;
        let head = CtrHead {
            card: Value::Null,
            feature_names,
            hidden: cfg.hidden.clone(),
            mean: stats.mean,
            std: stats.std,
            z_clip: Z_CLIP,
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
        check_inputs(cfg, train, val, self.feature_names.len())?;
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
        let xs = self.normalise(&train.rows, "train")?;
        let x = Tensor::from_vec(xs, (n, d), &dev).map_err(be)?;
        let y = Tensor::from_slice(&train.labels, (n, 1), &dev).map_err(be)?;
        let w = Tensor::from_slice(&train.weights, (n, 1), &dev).map_err(be)?;
        let val_x = if val.is_empty() {
            None
        } else {
            let vs = self.normalise(&val.rows, "val")?;
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
            z_clip: self.z_clip,
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
}

/// What [`CtrHead::train`] and [`CtrHead::resume`] check before fitting: the
/// configuration, both data sets for rows of `width` features, and some training data.
fn check_inputs(
    cfg: &HeadConfig,
    train: &TrainData,
    val: &TrainData,
    width: usize,
) -> Result<(), HeadError> {
    cfg.validate()?;
    train.validate("train", width)?;
    val.validate("val", width)?;
    if train.is_empty() {
        return Err(invalid("train", "has no samples"));
    }
    Ok(())
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
        soft_label_auc(logits, &val.labels),
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

/// Mean NDCG@k over groups with a positive ideal DCG ([`metrics::ndcg_of_gains`], gain =
/// label); ties in score keep input order. `None` when no group has a positive label.
pub(super) fn mean_ndcg(
    scores: &[f32],
    labels: &[f32],
    groups: &[Vec<usize>],
    k: usize,
) -> Option<f64> {
    let mut mean = metrics::Mean::new();
    for group in groups {
        let judged: Vec<f64> = group.iter().map(|&i| f64::from(labels[i])).collect();
        let mut order = group.clone();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let ranked: Vec<f64> = order.iter().map(|&i| f64::from(labels[i])).collect();
        mean.add(metrics::ndcg_of_gains(&ranked, &judged, k));
    }
    mean.value()
}

/// ROC AUC of scores against soft labels, a label `>= 0.5` counting as positive
/// ([`metrics::auc`]). `None` when the lengths differ, a value is NaN or a class is absent.
pub(super) fn soft_label_auc(scores: &[f32], labels: &[f32]) -> Option<f64> {
    if labels.iter().any(|l| l.is_nan()) {
        return None;
    }
    let scores: Vec<f64> = scores.iter().map(|&s| f64::from(s)).collect();
    let labels: Vec<bool> = labels.iter().map(|&l| l >= 0.5).collect();
    metrics::auc(&scores, &labels)
}

/// Normalisation statistics of a training set, per feature.
struct FeatureStats {
    mean: Vec<f32>,
    /// The population standard deviation after [`floored_std`].
    std: Vec<f32>,
    /// Whether a floor replaced the measured standard deviation: the feature (almost) did
    /// not vary, and its first-layer weights start at zero.
    floored: Vec<bool>,
}

/// Per-feature mean, range and population standard deviation (floored by [`floored_std`]),
/// in f64. Row widths must already have been checked; non-finite values are reported here.
fn feature_stats(rows: &[Vec<f32>], names: &[String]) -> Result<FeatureStats, HeadError> {
    let d = names.len();
    let n = rows.len() as f64;
    let mut sum = vec![0f64; d];
    let mut lo = vec![f64::INFINITY; d];
    let mut hi = vec![f64::NEG_INFINITY; d];
    for (i, row) in rows.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            if !v.is_finite() {
                return Err(bad_value("train", i, j, &names[j], v));
            }
            let v = f64::from(v);
            sum[j] += v;
            lo[j] = lo[j].min(v);
            hi[j] = hi[j].max(v);
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
    let mut stats = FeatureStats {
        mean: mean.iter().map(|&m| m as f32).collect(),
        std: Vec::with_capacity(d),
        floored: Vec::with_capacity(d),
    };
    for j in 0..d {
        let measured = (sq[j] / n).sqrt();
        let used = floored_std(measured, mean[j], (hi[j] - lo[j]).max(0.0));
        stats.std.push(used as f32);
        stats.floored.push(used > measured);
    }
    Ok(stats)
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
/// starts from the right average prediction. The first-layer weights of the features marked
/// `inert` (ones that did not vary in training) start at zero: the data gives them (almost)
/// no gradient, so random initial weights would stay as they are and turn any value seen at
/// serving time into noise in the logit.
fn init_layers(
    d: usize,
    hidden: &[usize],
    base_rate: f64,
    inert: &[bool],
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
            .map(|k| {
                // Drawn for every weight, so the other weights do not depend on `inert`.
                let v = ((2.0 * rng.next_f64() - 1.0) * bound) as f32;
                // Row-major `[out, in]`: column `k % fan_in` is input feature `k % fan_in`.
                let zero = i == 0 && inert.get(k % fan_in).copied().unwrap_or(false);
                if zero {
                    0.0
                } else {
                    v
                }
            })
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
