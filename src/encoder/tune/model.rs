//! BERT for training: the same function as the inference forward passes, built only
//! from candle operations that have a backward pass.
//!
//! candle-nn's fused `layer_norm` and `softmax_last_dim` have no backward: through
//! them gradients silently stop (candle issues #2977, #3011, #3752), so a model run
//! through them would print a loss and learn nothing. Here LayerNorm and softmax are
//! written from primitive tensor operations.
//!
//! Only the trainable top layers are held here ([`TrainBert::upper`]): the frozen
//! layers below are run once per text by the fast inference path (`bert.rs`
//! `forward_lower`), whose output the top takes.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Result, Tensor, Var, D};
use candle_transformers::models::bert::{Config, HiddenAct};

use crate::encoder::Pooling;

/// A linear layer in the checkpoint's own layout (`out x in`).
struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// `x` is `rows x in`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)
    }
}

pub(crate) struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl Norm {
    /// LayerNorm over the last dimension, from primitive (differentiable) operations.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// Softmax over the last dimension, from primitive (differentiable) operations. The
/// maximum subtracted for stability is a constant to the gradient (it cancels).
fn softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: Norm,
}

/// The checkpoint's names of one layer's tensors, after `encoder.layer.{i}.`.
const LAYER_TENSORS: [&str; 16] = [
    "attention.self.query.weight",
    "attention.self.query.bias",
    "attention.self.key.weight",
    "attention.self.key.bias",
    "attention.self.value.weight",
    "attention.self.value.bias",
    "attention.output.dense.weight",
    "attention.output.dense.bias",
    "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias",
    "intermediate.dense.weight",
    "intermediate.dense.bias",
    "output.dense.weight",
    "output.dense.bias",
    "output.LayerNorm.weight",
    "output.LayerNorm.bias",
];

/// The trainable top layers of a BERT checkpoint.
pub(crate) struct TrainBert {
    /// Layers `first_trainable..` of the model.
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    act: HiddenAct,
    pooling: Pooling,
    /// Layers `first_trainable..` are trained.
    first_trainable: usize,
    /// The trainable tensors with their names in the checkpoint.
    vars: Vec<(String, Var)>,
    /// Every tensor of the checkpoint as it was read, by name.
    checkpoint: HashMap<String, Tensor>,
    /// The dtype the checkpoint stores weights in (written back in it).
    stored_dtype: DType,
}

impl TrainBert {
    /// Loads `weights` (a `model.safetensors`) for `config`, with the top `trainable`
    /// layers (at least 1, at most all) as variables.
    pub(crate) fn load(
        weights: &Path,
        config: &Config,
        pooling: Pooling,
        trainable: usize,
        device: &Device,
    ) -> Result<TrainBert> {
        let checkpoint = candle_core::safetensors::load(weights, device)?;
        let prefix = if checkpoint.contains_key("embeddings.word_embeddings.weight") {
            String::new()
        } else {
            match &config.model_type {
                Some(t)
                    if checkpoint
                        .contains_key(&format!("{t}.embeddings.word_embeddings.weight")) =>
                {
                    format!("{t}.")
                }
                _ => candle_core::bail!("no embeddings.word_embeddings.weight in the weights"),
            }
        };
        let stored_dtype =
            checkpoint[&format!("{prefix}embeddings.word_embeddings.weight")].dtype();
        let get = |name: &str| -> Result<Tensor> {
            let full = format!("{prefix}{name}");
            match checkpoint.get(&full) {
                Some(t) => t.to_dtype(DType::F32),
                None => candle_core::bail!("no tensor {full} in the weights"),
            }
        };
        let layers_total = config.num_hidden_layers;
        if trainable == 0 || trainable > layers_total {
            candle_core::bail!("cannot train {trainable} of the model's {layers_total} layers");
        }
        let h = config.hidden_size;
        let heads = config.num_attention_heads;
        if heads == 0 || !h.is_multiple_of(heads) {
            candle_core::bail!("hidden_size {h} is not a multiple of num_attention_heads {heads}");
        }
        let first_trainable = layers_total - trainable;
        let eps = config.layer_norm_eps;
        let mut vars = Vec::new();
        let mut layers = Vec::with_capacity(trainable);
        for i in first_trainable..layers_total {
            let mut t = HashMap::new();
            for name in LAYER_TENSORS {
                let local = format!("encoder.layer.{i}.{name}");
                let tensor = get(&local)?;
                let var = Var::from_tensor(&tensor)?;
                t.insert(name, var.as_tensor().clone());
                vars.push((format!("{prefix}{local}"), var));
            }
            let mut take = |name: &str| t.remove(name).expect("listed in LAYER_TENSORS");
            let mut linear = |stem: &str| Linear {
                weight: take(&format!("{stem}.weight")),
                bias: take(&format!("{stem}.bias")),
            };
            let query = linear("attention.self.query");
            let key = linear("attention.self.key");
            let value = linear("attention.self.value");
            let attn_out = linear("attention.output.dense");
            let ffn_in = linear("intermediate.dense");
            let ffn_out = linear("output.dense");
            let mut norm = |stem: &str| Norm {
                weight: t.remove(format!("{stem}.weight").as_str()).expect("listed"),
                bias: t.remove(format!("{stem}.bias").as_str()).expect("listed"),
                eps,
            };
            layers.push(Layer {
                query,
                key,
                value,
                attn_out,
                attn_norm: norm("attention.output.LayerNorm"),
                ffn_in,
                ffn_out,
                ffn_norm: norm("output.LayerNorm"),
            });
        }
        Ok(TrainBert {
            layers,
            hidden: h,
            heads,
            act: config.hidden_act,
            pooling,
            first_trainable,
            vars,
            checkpoint,
            stored_dtype,
        })
    }

    /// The trainable variables.
    pub(crate) fn vars(&self) -> Vec<Var> {
        self.vars.iter().map(|(_, v)| v.clone()).collect()
    }

    /// The trainable variables with their checkpoint names.
    #[cfg(test)]
    pub(crate) fn named_vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Hidden size.
    pub(crate) fn hidden(&self) -> usize {
        self.hidden
    }

    /// The trainable top over `states` (`batch x seq x hidden`, the output of the
    /// frozen layers), then pooling and L2 normalisation: `batch x hidden`.
    pub(crate) fn upper(&self, states: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let bias = attention_bias(mask)?;
        let mut x = states.clone();
        for layer in &self.layers {
            x = self.layer_forward(layer, &x, &bias)?;
        }
        let pooled = match self.pooling {
            Pooling::Mean => {
                let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let summed = x.broadcast_mul(&m)?.sum(1)?;
                let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
                summed.broadcast_div(&counts)?
            }
            Pooling::Cls => x.narrow(1, 0, 1)?.squeeze(1)?,
        };
        let norm = pooled
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        pooled.broadcast_div(&norm)
    }

    /// One BERT layer over `x` (`batch x seq x hidden`); `bias` is `batch x 1 x 1 x seq`.
    fn layer_forward(&self, layer: &Layer, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (batch, seq, hidden) = x.dims3()?;
        let heads = self.heads;
        let head_dim = hidden / heads;
        let flat = x.reshape((batch * seq, hidden))?;
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((batch, seq, heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = (split(layer.query.forward(&flat)?)? / (head_dim as f64).sqrt())?;
        let k = split(layer.key.forward(&flat)?)?;
        let v = split(layer.value.forward(&flat)?)?;
        let scores = q.matmul(&k.t()?.contiguous()?)?.broadcast_add(bias)?;
        let probs = softmax(&scores)?;
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((batch * seq, hidden))?;
        let x1 = layer
            .attn_norm
            .forward(&(layer.attn_out.forward(&context)? + &flat)?)?;
        let inner = layer.ffn_in.forward(&x1)?;
        let inner = match self.act {
            HiddenAct::Gelu => inner.gelu_erf()?,
            HiddenAct::GeluApproximate => inner.gelu()?,
            HiddenAct::Relu => inner.relu()?,
        };
        let out = layer
            .ffn_norm
            .forward(&(layer.ffn_out.forward(&inner)? + &x1)?)?;
        out.reshape((batch, seq, hidden))
    }

    /// Current values of the trainable tensors, by checkpoint name.
    pub(crate) fn snapshot(&self) -> Result<Vec<(String, Tensor)>> {
        self.vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
            .collect()
    }

    /// Sets the trainable tensors to `snapshot` (from [`snapshot`](Self::snapshot)).
    pub(crate) fn restore(&self, snapshot: &[(String, Tensor)]) -> Result<()> {
        for ((_, var), (_, t)) in self.vars.iter().zip(snapshot) {
            var.set(t)?;
        }
        Ok(())
    }

    /// The whole checkpoint with the trainable tensors' current values, by name.
    pub(crate) fn current_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = self.checkpoint.clone();
        for (name, var) in &self.vars {
            out.insert(name.clone(), var.as_tensor().to_dtype(self.stored_dtype)?);
        }
        Ok(out)
    }

    /// Writes [`current_tensors`](Self::current_tensors) to `path` (safetensors, in
    /// the dtype the checkpoint was stored in).
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.current_tensors()?, path)
    }

    /// Layers `first_trainable()..` train.
    pub(crate) fn first_trainable(&self) -> usize {
        self.first_trainable
    }
}

/// 0 where `mask` is 1, a very negative number where it is 0: `batch x 1 x 1 x seq`.
fn attention_bias(mask: &Tensor) -> Result<Tensor> {
    let (batch, seq) = mask.dims2()?;
    ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((batch, 1, 1, seq))
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// The differentiable LayerNorm, for tests.
    pub(crate) fn norm(weight: Tensor, bias: Tensor, eps: f64) -> Norm {
        Norm { weight, bias, eps }
    }
}
