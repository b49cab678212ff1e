//! A BERT encoder laid out for fast CPU inference.
//!
//! The same mathematics as Hugging Face's `BertModel` (and
//! `candle_transformers::models::bert`, kept as the reference path and compared
//! against in tests), with three changes to the layout of the work:
//!
//! * every linear layer runs on the flattened `(batch * seq, in)` matrix, so each
//!   is one large matrix product instead of `batch` small ones;
//! * weights are transposed once at load time into contiguous `(in, out)`
//!   matrices, so no product works on a strided right-hand side;
//! * the query, key and value projections are one product against their
//!   concatenated weights.
//!
//! Reference: `transformers/models/bert/modeling_bert.py` (`BertEmbeddings`,
//! `BertSelfAttention`, `BertSelfOutput`, `BertIntermediate`, `BertOutput`).

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};

/// A linear layer with its weight stored transposed and contiguous.
struct Linear {
    weight_t: Tensor,
    bias: Tensor,
}

impl Linear {
    fn from_parts(weight: Tensor, bias: Tensor) -> Result<Self> {
        Ok(Linear {
            weight_t: weight.t()?.contiguous()?,
            bias,
        })
    }

    fn load(vb: VarBuilder, inp: usize, out: usize) -> Result<Self> {
        Self::from_parts(vb.get((out, inp), "weight")?, vb.get(out, "bias")?)
    }

    /// `x`: (n, in) -> (n, out).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.weight_t)?.broadcast_add(&self.bias)
    }
}

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    inter: Linear,
    out: Linear,
    out_norm: LayerNorm,
}

/// The encoder stack: embeddings and layers.
pub struct FastBert {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
    act: HiddenAct,
}

impl FastBert {
    /// Loads the weights of a Hugging Face BERT (names as `BertModel` saves them,
    /// with or without a `bert.` prefix).
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp("bert")
        };
        let h = cfg.hidden_size;
        if cfg.num_attention_heads == 0 || h % cfg.num_attention_heads != 0 {
            candle_core::bail!(
                "hidden size {h} is not a multiple of {} heads",
                cfg.num_attention_heads
            );
        }
        let e = vb.pp("embeddings");
        let word = e.get((cfg.vocab_size, h), "word_embeddings.weight")?;
        let position = e.get(
            (cfg.max_position_embeddings, h),
            "position_embeddings.weight",
        )?;
        let token_type = e.get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?;
        let emb_norm = candle_nn::layer_norm(h, cfg.layer_norm_eps, e.pp("LayerNorm"))?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            let s = a.pp("self");
            let (mut ws, mut bs) = (Vec::new(), Vec::new());
            for name in ["query", "key", "value"] {
                ws.push(s.get((h, h), &format!("{name}.weight"))?);
                bs.push(s.get(h, &format!("{name}.bias"))?);
            }
            let qkv = Linear::from_parts(Tensor::cat(&ws, 0)?, Tensor::cat(&bs, 0)?)?;
            layers.push(Layer {
                qkv,
                attn_out: Linear::load(a.pp("output.dense"), h, h)?,
                attn_norm: candle_nn::layer_norm(h, cfg.layer_norm_eps, a.pp("output.LayerNorm"))?,
                inter: Linear::load(l.pp("intermediate.dense"), h, cfg.intermediate_size)?,
                out: Linear::load(l.pp("output.dense"), cfg.intermediate_size, h)?,
                out_norm: candle_nn::layer_norm(h, cfg.layer_norm_eps, l.pp("output.LayerNorm"))?,
            });
        }
        Ok(FastBert {
            word,
            position,
            token_type,
            emb_norm,
            layers,
            heads: cfg.num_attention_heads,
            hidden: h,
            act: cfg.hidden_act,
        })
    }

    /// Token states (batch, seq, hidden) for `ids` (batch, seq, u32) with `mask`
    /// (batch, seq; 1 = token, 0 = padding). Token types are all 0.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let (h, heads) = (self.hidden, self.heads);
        let dh = h / heads;
        let n = b * s;
        // Embeddings: word + position + token type 0, then LayerNorm.
        let word = self.word.index_select(&ids.flatten_all()?, 0)?; // (n, h)
        let pos = self.position.narrow(0, 0, s)?; // (s, h)
        let pos = pos.unsqueeze(0)?.broadcast_as((b, s, h))?.reshape((n, h))?;
        let x = (word + pos)?.broadcast_add(&self.token_type.narrow(0, 0, 1)?)?;
        let mut x = self.emb_norm.forward(&x)?;
        // Additive mask: 0 for tokens, a large negative number for padding.
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((b, 1, 1, s))?;
        let scale = 1.0 / (dh as f64).sqrt();
        for l in &self.layers {
            let qkv = l.qkv.forward(&x)?; // (n, 3h)
            let split = |i: usize| -> Result<Tensor> {
                qkv.narrow(1, i * h, h)?
                    .reshape((b, s, heads, dh))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let (q, k, v) = (split(0)?, split(1)?, split(2)?);
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((n, h))?;
            let attn = l.attn_out.forward(&ctx)?;
            x = l.attn_norm.forward(&(attn + &x)?)?;
            let inter = l.inter.forward(&x)?;
            let inter = match self.act {
                HiddenAct::Gelu => inter.gelu_erf()?,
                HiddenAct::GeluApproximate => inter.gelu()?,
                HiddenAct::Relu => inter.relu()?,
            };
            let out = l.out.forward(&inter)?;
            x = l.out_norm.forward(&(out + &x)?)?;
        }
        x.reshape((b, s, h))
    }
}
