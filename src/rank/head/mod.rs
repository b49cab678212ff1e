//! The click-through-rate (CTR) head: a small feed-forward network that scores one
//! (query, user, item) feature vector with the probability that the user picks the item.
//!
//!
//! # Model
//!
//! Each raw feature `x_j` is standardised with statistics learned on the training set and
//! clipped: `u_j = clip((x_j - mean_j) / std_j, -Z_CLIP, Z_CLIP)`.
//!
//! * `std_j` is the population standard deviation, floored at [`STD_FLOOR`] and at
//!   [`RELATIVE_STD_FLOOR`] (1%) of the feature's scale, max(|mean_j|, range_j). A feature
//!   that (almost) did not vary in training would otherwise turn a tiny change at serving
//!   time (one more event for the shopper) into thousands of standard deviations, and one
//!   feature would decide every logit.
//! * The clip bound [`Z_CLIP`] (5) bounds what any single feature can feed the network,
//!   whatever value it takes at serving time; it applies in training too, so the network
//!   is fit on exactly the inputs it will see. See the constants for the reasoning behind
//!   each number.
//! * A feature whose deviation was floored starts with zero first-layer weights: training
//!   gives it (almost) no gradient, so it stays (almost) ignored instead of keeping random
//!   initial weights.
//!
//! The standardised vector goes through a
//! multi-layer perceptron with ReLU hidden layers ([`HeadConfig::hidden`], default
//! `[32, 16]`) and one linear output unit, the logit `z`; the probability is
//! `p = sigmoid(z) = 1 / (1 + e^-z)`. Normalisation lives outside the network and is saved
//! with it, so serving applies exactly the statistics the network was trained with.
//!
//! # Explanations
//!
//! [`CtrHead::contributions`] attributes a logit to the features by gradient x input in
//! standardised space (autograd through the network), a first-order approximation of how
//! far each feature moves the score from that of an average item.
//!
//! Everything runs on the CPU: the head is a few thousand parameters, far too small for a
//! GPU transfer to pay off.

//!
//! Files: this one holds the model (normalisation, forward pass, prediction,
//! explanations); `fit.rs` trains it (loss, optimiser, early stopping); `io.rs` saves
//! and loads it.

mod fit;
mod io;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use serde_json::Value;

pub use fit::{
    EpochReport, HeadConfig, TrainData, TrainReport, RELATIVE_STD_FLOOR, STD_FLOOR, Z_CLIP,
};
pub use io::FORMAT_VERSION;

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
        /// Which input is wrong, e.g. `train.rows[12][3] ("price")`.
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

impl From<crate::store::durable::IoFailure> for HeadError {
    fn from(e: crate::store::durable::IoFailure) -> Self {
        HeadError::Io {
            path: e.path,
            source: e.source,
        }
    }
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
    /// Standardised values are clipped to `[-z_clip, z_clip]` ([`Z_CLIP`] unless the card
    /// says otherwise).
    z_clip: f32,
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
    /// Probabilities `sigmoid(logit)` for a batch of raw feature rows.
    ///
    /// Errors with [`HeadError::Invalid`] on a row of the wrong width or a non-finite value.
    pub fn predict(&self, rows: &[Vec<f32>]) -> Result<Vec<f32>, HeadError> {
        let mut out = self.predict_logits(rows)?;
        for z in &mut out {
            *z = sigmoid(*z);
        }
        Ok(out)
    }

    /// Logits (log-odds) for a batch of raw feature rows; monotone in the probability and
    /// better suited to fusion with other scores.
    pub fn predict_logits(&self, rows: &[Vec<f32>]) -> Result<Vec<f32>, HeadError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let d = self.feature_names.len();
        if let Some((i, row)) = rows.iter().enumerate().find(|(_, r)| r.len() != d) {
            return Err(invalid(
                format!("rows[{i}]"),
                format!(
                    "has {} values, expected {d} (one per feature name)",
                    row.len()
                ),
            ));
        }
        let xs = self.normalise(rows, "rows")?;
        let x = Tensor::from_vec(xs, (rows.len(), d), &Device::Cpu).map_err(be)?;
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
    pub fn contributions(&self, row: &[f32]) -> Result<Vec<(String, f32)>, HeadError> {
        let d = self.feature_names.len();
        if row.len() != d {
            return Err(invalid(
                "row",
                format!(
                    "has {} values, expected {d} (one per feature name)",
                    row.len()
                ),
            ));
        }
        let u = self.normalise(std::slice::from_ref(&row.to_vec()), "row")?;
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

    /// The bound standardised values are clipped to (see the module docs).
    pub fn z_clip(&self) -> f32 {
        self.z_clip
    }

    /// Standardises, clips and flattens rows, naming the sample and feature of any
    /// non-finite value. Row widths must already have been checked.
    fn normalise(&self, rows: &[Vec<f32>], set: &str) -> Result<Vec<f32>, HeadError> {
        let d = self.feature_names.len();
        let mut out = Vec::with_capacity(rows.len().saturating_mul(d));
        for (i, row) in rows.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                if !v.is_finite() {
                    return Err(bad_value(set, i, j, &self.feature_names[j], v));
                }
                // Finite over a positive std: at worst +-inf (a huge value over a tiny
                // std), which the clip bounds.
                let u = ((v - self.mean[j]) / self.std[j]).clamp(-self.z_clip, self.z_clip);
                out.push(u);
            }
        }
        Ok(out)
    }
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

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// The error for a non-finite feature value.
fn bad_value(set: &str, i: usize, j: usize, name: &str, v: f32) -> HeadError {
    invalid(
        format!("{set}.rows[{i}][{j}] ({name:?})"),
        format!("is {v}; replace missing values first, e.g. with 0 plus an indicator feature"),
    )
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
