//! The fast BERT forward pass used by default.
//!
//! Same model and weights as candle-transformers' `BertModel` (kept as the reference
//! path, [`super::Implementation::Reference`]), laid out for CPU matrix products:
//!
//! - Every linear layer keeps its weight **transposed once at load time**
//!   (`in x out`, contiguous). candle hands `x · Wᵀ` to the gemm crate, which packs
//!   its left operand into column panels; with the stock `out x in` layout that
//!   packing is a strided transpose of the whole weight matrix on every call, and for
//!   a short query (a handful of token rows) it cost more than the arithmetic.
//! - Query, key and value are one `in x 3·in` product instead of three, and the
//!   `1/√head_dim` attention scale is folded into the query weights.
//! - On the CPU, bias + GELU and bias + residual + LayerNorm each run as one
//!   vectorised pass (`cpu_ops.rs`) instead of candle's separate element-wise ops,
//!   in place on the product they follow, and self-attention is one pass from the
//!   `qkv` product to the context (`attention.rs`): no copies into and out of the
//!   heads' layout, no per-head gemm calls, no scores tensor.
//! - Token types are always 0 for sentence embeddings, so the token-type row is
//!   added to the position table once at load time.
//!
//! Differences from the reference are floating-point rounding only; tests hold the
//! two to cosine ≥ 0.99999 (tests/encoder_reference.rs).
//!
//! On a GPU, or in f16/bf16 ([`super::Precision`]), the fused kernels do not apply
//! and every step is a candle operation that runs on the tensors' own device
//! (matrix products on cuBLAS, candle's CUDA kernels for the rest): nothing is
//! copied back to the host before the pooled embeddings. Softmax runs in f32 on
//! the CPU for half formats (candle's CPU softmax sums in the input format; its
//! CUDA kernel already sums in f32), LayerNorm sums in f32 everywhere, and bf16
//! matrix products on the CPU, which candle lacks, are done in f32 and rounded.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};

use super::attention::Attention;
use super::bf16::{Bf16Kernel, Bf16Linear};
use super::cpu_ops::{host_matmul, BiasGelu, BiasResidualNorm};
use super::int8::{Int8Linear, Kernel};
use super::Precision;

/// The kernels the int8 or bf16 layers run instead of the fastest this CPU has
/// (`None`: the fastest).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LowerKernels {
    pub(super) int8: Option<Kernel>,
    pub(super) bf16: Option<Bf16Kernel>,
}

/// A linear layer's weight in a lower precision, multiplied on the host.
enum HostWeight {
    Int8(Int8Linear),
    Bf16(Bf16Linear),
}

/// A linear layer with its weight stored transposed (`in x out`).
struct Dense {
    weight_t: Tensor,
    bias: Tensor,
    /// `bias` as host memory, for the fused CPU kernels.
    bias_host: Vec<f32>,
    /// The weight in int8 or bf16 ([`Precision::Int8`], [`Precision::Bf16`] on
    /// the CPU): products of f32 CPU inputs use it instead of `weight_t`.
    host: Option<HostWeight>,
}

impl Dense {
    fn load(vb: &VarBuilder, inputs: usize, outputs: usize) -> Result<Dense> {
        let weight = vb.get((outputs, inputs), "weight")?;
        Dense::new(weight.t()?.contiguous()?, vb.get(outputs, "bias")?)
    }

    fn new(weight_t: Tensor, bias: Tensor) -> Result<Dense> {
        let bias_host = host_f32(&bias)?;
        Ok(Dense {
            weight_t,
            bias,
            bias_host,
            host: None,
        })
    }

    /// Converts the weight to `precision` (int8, run by `kernel` or the fastest
    /// this CPU has; or bf16) for the products of f32 CPU inputs.
    fn lower(&mut self, precision: Precision, kernels: LowerKernels) -> Result<()> {
        let (inputs, outputs) = self.weight_t.dims2()?;
        let host = self
            .weight_t
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        self.host = match precision {
            Precision::Int8 => {
                let mut linear = Int8Linear::new(&host, inputs, outputs)?;
                if let Some(kernel) = kernels.int8 {
                    linear = linear.with_kernel(kernel)?;
                }
                Some(HostWeight::Int8(linear))
            }
            Precision::Bf16 => {
                let mut linear = Bf16Linear::new(&host, inputs, outputs)?;
                if let Some(kernel) = kernels.bf16 {
                    linear = linear.with_kernel(kernel)?;
                }
                Some(HostWeight::Bf16(linear))
            }
            Precision::F32 | Precision::F16 => None,
        };
        Ok(())
    }

    /// `x·W` (without the bias): by the int8 or bf16 weight when there is one
    /// and `x` is f32 on the CPU.
    fn product(&self, x: &Tensor) -> Result<Tensor> {
        self.host_product(x, None)
            .unwrap_or_else(|| matmul(x, &self.weight_t))
    }

    /// `x·W (+ bias)` by the int8 or bf16 weight, when there is one and `x` is
    /// f32 on the CPU.
    fn host_product(&self, x: &Tensor, bias: Option<&[f32]>) -> Option<Result<Tensor>> {
        match &self.host {
            Some(w) if x.device().is_cpu() && x.dtype() == DType::F32 => Some(match w {
                HostWeight::Int8(q) => host_matmul(x, q, bias),
                HostWeight::Bf16(b) => host_matmul(x, b, bias),
            }),
            _ => None,
        }
    }

    /// `x` is `rows x in`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self.host_product(x, Some(&self.bias_host)) {
            Some(y) => y,
            None => matmul(x, &self.weight_t)?.broadcast_add(&self.bias),
        }
    }

    /// `act(x·W + b)`.
    fn forward_act(&self, x: &Tensor, act: HiddenAct, fused: bool) -> Result<Tensor> {
        let y = self.product(x)?;
        if fused && fused_kernels_apply(&y) && act == HiddenAct::Gelu {
            // `y` is this call's own product: nothing else sees it change.
            y.inplace_op1(&BiasGelu {
                bias: &self.bias_host,
            })?;
            return Ok(y);
        }
        let y = y.broadcast_add(&self.bias)?;
        match act {
            HiddenAct::Gelu => y.gelu_erf(),
            HiddenAct::GeluApproximate => y.gelu(),
            HiddenAct::Relu => y.relu(),
        }
    }

    /// `norm(x·W + b + residual)`: the end of a BERT sub-layer.
    fn forward_residual_norm(
        &self,
        x: &Tensor,
        residual: &Tensor,
        norm: &LayerNorm,
        fused: bool,
    ) -> Result<Tensor> {
        let y = self.product(x)?;
        if fused && fused_kernels_apply(&y) && fused_kernels_apply(residual) {
            // `y` is this call's own product, as in `forward_act`.
            y.inplace_op2(
                residual,
                &BiasResidualNorm {
                    bias: &self.bias_host,
                    gamma: &norm.weight_host,
                    beta: &norm.bias_host,
                    eps: norm.eps,
                },
            )?;
            return Ok(y);
        }
        norm.forward(&(y.broadcast_add(&self.bias)? + residual)?)
    }
}

/// The fused kernels of `cpu_ops` run on contiguous f32 tensors in main memory.
fn fused_kernels_apply(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous()
}

/// A vector's values as f32 in host memory, whatever its format and device.
fn host_f32(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.to_vec1::<f32>()
}

/// `a · b`. candle's CPU backend has no bf16 matrix product, so on the CPU bf16
/// operands are multiplied in f32 and the product rounded back to bf16, which is
/// what a GPU's bf16 product (f32 accumulation) computes too.
fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.device().is_cpu() && a.dtype() == DType::BF16 {
        let product = a.to_dtype(DType::F32)?.matmul(&b.to_dtype(DType::F32)?)?;
        return product.to_dtype(DType::BF16);
    }
    a.matmul(b)
}

/// Softmax over the last dimension, summed in f32 (see the module docs). The
/// fused CPU attention (`attention.rs`) has its own.
fn softmax(scores: &Tensor) -> Result<Tensor> {
    if scores.device().is_cpu() && scores.dtype() != DType::F32 {
        let probs = candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?;
        return probs.to_dtype(scores.dtype());
    }
    candle_nn::ops::softmax_last_dim(scores)
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    weight_host: Vec<f32>,
    bias_host: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    fn load(vb: &VarBuilder, size: usize, eps: f64) -> Result<LayerNorm> {
        let weight = vb.get(size, "weight")?;
        let bias = vb.get(size, "bias")?;
        Ok(LayerNorm {
            weight_host: host_f32(&weight)?,
            bias_host: host_f32(&bias)?,
            weight,
            bias,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

struct Layer {
    /// Query, key and value in one product; the query part is pre-scaled.
    qkv: Dense,
    attn_out: Dense,
    attn_norm: LayerNorm,
    ffn_in: Dense,
    ffn_out: Dense,
    ffn_norm: LayerNorm,
}

impl Layer {
    fn load(vb: &VarBuilder, config: &Config, heads: usize) -> Result<Layer> {
        let h = config.hidden_size;
        let attn = vb.pp("attention");
        let own = attn.pp("self");
        let scale = 1.0 / ((h / heads) as f64).sqrt();
        let q = Dense::load(&own.pp("query"), h, h)?;
        let k = Dense::load(&own.pp("key"), h, h)?;
        let v = Dense::load(&own.pp("value"), h, h)?;
        let qkv = Dense::new(
            Tensor::cat(&[(q.weight_t * scale)?, k.weight_t, v.weight_t], 1)?.contiguous()?,
            Tensor::cat(&[(q.bias * scale)?, k.bias, v.bias], 0)?,
        )?;
        let attn_output = attn.pp("output");
        let output = vb.pp("output");
        Ok(Layer {
            qkv,
            attn_out: Dense::load(&attn_output.pp("dense"), h, h)?,
            attn_norm: LayerNorm::load(&attn_output.pp("LayerNorm"), h, config.layer_norm_eps)?,
            ffn_in: Dense::load(
                &vb.pp("intermediate").pp("dense"),
                h,
                config.intermediate_size,
            )?,
            ffn_out: Dense::load(&output.pp("dense"), config.intermediate_size, h)?,
            ffn_norm: LayerNorm::load(&output.pp("LayerNorm"), h, config.layer_norm_eps)?,
        })
    }

    /// `x` is `(batch·seq) x hidden`.
    fn forward(
        &self,
        x: &Tensor,
        mask: &MaskBias,
        shape: (usize, usize, usize, usize),
        act: HiddenAct,
        fused: bool,
    ) -> Result<Tensor> {
        let (batch, seq, heads, head_dim) = shape;
        let hidden = heads * head_dim;
        let qkv = self.qkv.forward(x)?;
        // The fused attention needs the mask in host memory whenever there is one
        // (`run_layers` makes it for f32 on the CPU, as `qkv` is here).
        let mask_ready = mask.tensor.is_none() || mask.host.is_some();
        let context = if fused && fused_kernels_apply(&qkv) && mask_ready {
            qkv.apply_op1_no_bwd(&Attention {
                batch,
                seq,
                heads,
                head_dim,
                mask_bias: mask.host.as_deref(),
            })?
        } else {
            // (batch, seq, 3, heads, head_dim) -> (3, batch, heads, seq, head_dim)
            let qkv = qkv
                .reshape((batch, seq, 3, heads, head_dim))?
                .permute((2, 0, 3, 1, 4))?
                .contiguous()?;
            let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
            let mut scores = matmul(&q, &k.t()?)?;
            if let Some(bias) = &mask.tensor {
                scores = scores.broadcast_add(bias)?;
            }
            let probs = softmax(&scores)?;
            matmul(&probs, &v)?
                .transpose(1, 2)?
                .reshape((batch * seq, hidden))?
        };
        let x = self
            .attn_out
            .forward_residual_norm(&context, x, &self.attn_norm, fused)?;
        let inner = self.ffn_in.forward_act(&x, act, fused)?;
        self.ffn_out
            .forward_residual_norm(&inner, &x, &self.ffn_norm, fused)
    }
}

/// BERT encoder with the CPU-friendly layout described in the module docs.
pub(super) struct FastBert {
    words: Embedding,
    /// Position embeddings with token type 0 already added: `max_positions x hidden`.
    positions: Tensor,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    act: HiddenAct,
    /// Whether the fused CPU kernels may run where they apply
    /// ([`fused_kernels_apply`]: f32 on the CPU); tests turn them off to check the
    /// path a GPU takes.
    fused: bool,
}

impl FastBert {
    /// Loads the weights under `embeddings.*` / `encoder.*` in `vb`'s format and on
    /// its device, or under
    /// `<model_type>.` as Hugging Face's pretraining checkpoints name them.
    pub(super) fn load(vb: VarBuilder, config: &Config) -> Result<FastBert> {
        match Self::load_at(&vb, config) {
            Ok(model) => Ok(model),
            Err(err) => match &config.model_type {
                Some(prefix) => Self::load_at(&vb.pp(prefix), config).map_err(|_| err),
                None => Err(err),
            },
        }
    }

    fn load_at(vb: &VarBuilder, config: &Config) -> Result<FastBert> {
        let h = config.hidden_size;
        let heads = config.num_attention_heads;
        if heads == 0 || !h.is_multiple_of(heads) {
            candle_core::bail!("hidden_size {h} is not a multiple of num_attention_heads {heads}");
        }
        let emb = vb.pp("embeddings");
        let words = candle_nn::embedding(config.vocab_size, h, emb.pp("word_embeddings"))?;
        let positions = emb.get(
            (config.max_position_embeddings, h),
            "position_embeddings.weight",
        )?;
        let types = emb.get((config.type_vocab_size, h), "token_type_embeddings.weight")?;
        let positions = positions.broadcast_add(&types.get(0)?)?;
        let embed_norm = LayerNorm::load(&emb.pp("LayerNorm"), h, config.layer_norm_eps)?;
        let enc = vb.pp("encoder").pp("layer");
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(&enc.pp(i.to_string()), config, heads))
            .collect::<Result<Vec<_>>>()?;
        Ok(FastBert {
            words,
            positions,
            embed_norm,
            layers,
            heads,
            act: config.hidden_act,
            fused: true,
        })
    }

    /// Converts every linear layer's weight to `precision` (int8 or bf16, on the
    /// CPU; `kernel` picks the int8 kernel); the embeddings, attention and
    /// normalisation stay f32.
    pub(super) fn lower_linears(
        mut self,
        precision: Precision,
        kernels: LowerKernels,
    ) -> Result<FastBert> {
        for layer in &mut self.layers {
            for dense in [
                &mut layer.qkv,
                &mut layer.attn_out,
                &mut layer.ffn_in,
                &mut layer.ffn_out,
            ] {
                dense.lower(precision, kernels)?;
            }
        }
        Ok(self)
    }

    /// The same model with the fused CPU kernels off: every step a plain candle
    /// operation, as on a GPU.
    #[cfg(test)]
    pub(super) fn without_fused_kernels(mut self) -> FastBert {
        self.fused = false;
        self
    }

    /// Token states for `ids` (`batch x seq`, u32) with `mask` (`batch x seq`, 1 for
    /// real tokens, 0 for padding): `batch x seq x hidden`.
    pub(super) fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let lower = self.forward_lower(ids, mask, 0)?;
        self.forward_upper(&lower, mask, 0)
    }

    /// The embeddings and layers `..upto`: `batch x seq x hidden`.
    pub(super) fn forward_lower(&self, ids: &Tensor, mask: &Tensor, upto: usize) -> Result<Tensor> {
        let (batch, seq) = ids.dims2()?;
        let hidden = self.positions.dim(1)?;
        let x = self
            .words
            .forward(ids)?
            .broadcast_add(&self.positions.narrow(0, 0, seq)?)?;
        let x = self.embed_norm.forward(&x)?.reshape((batch, seq, hidden))?;
        self.run_layers(&x, mask, 0..upto)
    }

    /// Layers `from..` over `states` (`batch x seq x hidden`, from
    /// [`forward_lower`](Self::forward_lower)): `batch x seq x hidden`.
    pub(super) fn forward_upper(
        &self,
        states: &Tensor,
        mask: &Tensor,
        from: usize,
    ) -> Result<Tensor> {
        self.run_layers(states, mask, from..self.layers.len())
    }

    fn run_layers(
        &self,
        x: &Tensor,
        mask: &Tensor,
        layers: std::ops::Range<usize>,
    ) -> Result<Tensor> {
        let (batch, seq, hidden) = x.dims3()?;
        let Some(layers) = self.layers.get(layers) else {
            candle_core::bail!("the model has {} layers", self.layers.len());
        };
        let mut x = x.reshape((batch * seq, hidden))?;
        // Batches of one token count (what `Encoder::embed_many` makes) have no
        // padding: adding a zero bias to every score would change nothing.
        let padded = mask.to_dtype(DType::F32)?.min_all()?.to_scalar::<f32>()? < 1.0;
        let mask_bias = if padded {
            let bias = attention_bias(mask, self.positions.dtype())?;
            MaskBias {
                host: if self.fused && fused_kernels_apply(&x) {
                    Some(bias.flatten_all()?.to_vec1::<f32>()?)
                } else {
                    None
                },
                tensor: Some(bias.reshape((batch, 1, 1, seq))?),
            }
        } else {
            MaskBias {
                tensor: None,
                host: None,
            }
        };
        let shape = (batch, seq, self.heads, hidden / self.heads);
        for layer in layers {
            x = layer.forward(&x, &mask_bias, shape, self.act, self.fused)?;
        }
        x.reshape((batch, seq, hidden))
    }
}

/// What the attention scores of a padded batch get added; both none when nothing
/// is padded.
struct MaskBias {
    /// `batch x 1 x 1 x seq`, for candle's attention.
    tensor: Option<Tensor>,
    /// `batch x seq` in host memory, for the fused CPU attention (f32 on the CPU).
    host: Option<Vec<f32>>,
}

/// What the attention scores get added, in `dtype`: 0 where `mask` is 1, and where
/// it is 0 (padding) the most negative f32, as Hugging Face's
/// `get_extended_attention_mask` does, or in half formats -65504 (f16's lowest;
/// the sum with a negative score may round to -inf in f16, which softmax turns
/// into 0 as well: every row keeps its real tokens, so none is all -inf).
fn attention_bias(mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let big = if dtype == DType::F32 {
        f64::from(f32::MAX)
    } else {
        65504.0
    };
    ((mask.to_dtype(DType::F32)? - 1.0)? * big)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    // The whole forward pass is compared with the reference `BertModel` in
    // tests/encoder_reference.rs.
    use super::*;

    #[test]
    fn attention_bias_is_zero_on_tokens_and_very_negative_on_padding() {
        let mask = Tensor::new(&[[1u32, 1, 0]], &candle_core::Device::Cpu).unwrap();
        let bias = attention_bias(&mask, DType::F32)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(bias[0][0], 0.0);
        assert_eq!(bias[0][1], 0.0);
        assert!(bias[0][2] < -1e30);
        for dtype in [DType::F16, DType::BF16] {
            let bias = attention_bias(&mask, dtype).unwrap();
            assert_eq!(bias.dtype(), dtype);
            let bias = bias.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap();
            assert_eq!(bias[0][..2], [0.0, 0.0]);
            assert!(bias[0][2].is_finite() && bias[0][2] < -6e4, "{dtype:?}");
        }
    }
}
