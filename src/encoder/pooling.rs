//! Sentence pooling and normalisation, outside the model as in
//! sentence-transformers (`sentence_transformers/models/Pooling.py`).

use std::path::Path;

use candle_core::{DType, Tensor, D};
use serde::Deserialize;

use crate::error::{Error, Result};

/// How token states become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean of the token states, padding excluded.
    Mean,
    /// The state of the first token (`[CLS]`).
    Cls,
}

impl Pooling {
    /// Name stored in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
        }
    }

    /// Reads `1_Pooling/config.json` from a sentence-transformers model directory.
    /// A directory without one (a plain Hugging Face BERT) gets mean pooling, the
    /// sentence-transformers default.
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        #[derive(Deserialize)]
        struct Cfg {
            #[serde(default)]
            pooling_mode_cls_token: bool,
            #[serde(default)]
            pooling_mode_mean_tokens: bool,
            #[serde(default)]
            pooling_mode_max_tokens: bool,
            #[serde(default)]
            pooling_mode_mean_sqrt_len_tokens: bool,
        }
        let path = dir.join("1_Pooling").join("config.json");
        if !path.exists() {
            return Ok(Pooling::Mean);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let cfg: Cfg = serde_json::from_str(&text).map_err(|e| Error::InvalidModel {
            path: path.clone(),
            reason: format!("invalid pooling config: {e}"),
        })?;
        match (
            cfg.pooling_mode_mean_tokens,
            cfg.pooling_mode_cls_token,
            cfg.pooling_mode_max_tokens || cfg.pooling_mode_mean_sqrt_len_tokens,
        ) {
            (true, false, false) => Ok(Pooling::Mean),
            (false, true, false) => Ok(Pooling::Cls),
            _ => Err(Error::InvalidModel {
                path,
                reason: "unsupported pooling: exactly one of pooling_mode_mean_tokens or pooling_mode_cls_token must be true".into(),
            }),
        }
    }

    /// Pools `hidden` (batch, seq, dim) with `mask` (batch, seq; 1 = token, 0 =
    /// padding) into (batch, dim).
    pub(crate) fn apply(self, hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
            Pooling::Mean => {
                let m = mask.to_dtype(hidden.dtype())?.unsqueeze(D::Minus1)?;
                let summed = hidden.broadcast_mul(&m)?.sum(1)?;
                let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
                summed.broadcast_div(&counts)
            }
        }
    }
}

/// Divides each row by its L2 norm (rows of norm 0 stay 0).
pub(crate) fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let x = x.to_dtype(DType::F32)?;
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    x.broadcast_div(&norm)
}
