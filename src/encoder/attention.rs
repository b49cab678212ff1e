//! Self-attention as one CPU pass over the fused query/key/value product.
//!
//! The candle path (`bert.rs`, also what a GPU runs) permutes `qkv` into the
//! heads' layout (a copy), multiplies `Q·Kᵀ` per head (one small gemm call per
//! batch item and head), adds the mask, runs softmax over a `batch x heads x seq x
//! seq` tensor, multiplies by `V` and transposes the context back (another copy).
//! At sentence lengths (a few to 64 tokens, 32-wide heads) those copies, calls and
//! passes cost more than the arithmetic. Here each head reads its rows of `qkv`
//! where they are, keeps one row of scores in a scratch buffer, and writes its
//! context straight into the `rows x hidden` output that the next linear layer
//! takes. Plain loops, compiled for the CPU's widest vectors by `pulp` as the
//! other fused kernels are (`cpu_ops.rs`); no `unsafe`.

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape};
use pulp::{Simd, WithSimd};

use super::cpu_ops::{contiguous, exp_non_positive, lane_max, lane_sum};

/// `softmax(Q·Kᵀ + mask)·V` per batch item and head, from `qkv` of shape
/// `(batch·seq) x 3·hidden` (each row: the query, key and value of one token, each
/// `heads x head_dim`, the query already scaled by `1/√head_dim`) to a context of
/// `(batch·seq) x hidden`.
pub(super) struct Attention<'a> {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// What each key's scores get added, `batch x seq` (0 for tokens, very
    /// negative for padding); none when nothing is padded.
    pub mask_bias: Option<&'a [f32]>,
}

impl CustomOp1 for Attention<'_> {
    fn name(&self) -> &'static str {
        "shelfrank-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = contiguous(storage, layout, self.name())?;
        let hidden = self.heads * self.head_dim;
        let rows = self.batch * self.seq;
        if hidden == 0 || qkv.len() != rows * 3 * hidden {
            bail!(
                "{}: {} values are not {rows} rows of 3 x {} heads x {}",
                self.name(),
                qkv.len(),
                self.heads,
                self.head_dim
            );
        }
        if let Some(mask) = self.mask_bias {
            if mask.len() != rows {
                bail!(
                    "{}: a mask of {} values for {rows} tokens",
                    self.name(),
                    mask.len()
                );
            }
        }
        let mut out = vec![0f32; rows * hidden];
        if rows == 0 {
            return Ok((CpuStorage::F32(out), Shape::from((rows, hidden))));
        }
        pulp::Arch::new().dispatch(AttentionPass {
            out: &mut out,
            qkv,
            op: self,
        });
        Ok((CpuStorage::F32(out), Shape::from((rows, hidden))))
    }
}

/// The loops of [`Attention`] (a struct so that `pulp` compiles them for the
/// CPU's instruction set; see `cpu_ops::BiasGeluPass`).
struct AttentionPass<'a, 'b> {
    out: &'a mut [f32],
    qkv: &'a [f32],
    op: &'a Attention<'b>,
}

/// Lanes of the fixed-size chunks the loops work in: one AVX-512 register, two
/// AVX2 ones. Sequences are padded to a multiple of it in the scratch buffers so
/// that no loop over keys has a scalar tail.
const LANES: usize = 16;

impl WithSimd for AttentionPass<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let Attention {
            seq,
            heads,
            head_dim: dim,
            mask_bias,
            ..
        } = *self.op;
        let hidden = heads * dim;
        let stride = 3 * hidden;
        let width = seq.div_ceil(LANES) * LANES;
        // One head's keys transposed, `dim x width` (zero past `seq`), so that a
        // query's scores are `dim` passes over whole chunks of keys; what the
        // scores start from (the mask, and a very negative value on the padding
        // columns); one row of scores.
        let mut keys = vec![0f32; dim * width];
        let mut start = vec![f32::MIN; width];
        let mut scores = vec![0f32; width];
        for (item, (tokens, out)) in self
            .qkv
            .chunks_exact(seq * stride)
            .zip(self.out.chunks_exact_mut(seq * hidden))
            .enumerate()
        {
            match mask_bias {
                Some(m) => start[..seq].copy_from_slice(&m[item * seq..(item + 1) * seq]),
                None => start[..seq].fill(0.0),
            }
            for head in 0..heads {
                let k_at = hidden + head * dim;
                let v_at = 2 * hidden + head * dim;
                for (j, token) in tokens.chunks_exact(stride).enumerate() {
                    for (d, &k) in token[k_at..k_at + dim].iter().enumerate() {
                        keys[d * width + j] = k;
                    }
                }
                for (token, out_row) in tokens
                    .chunks_exact(stride)
                    .zip(out.chunks_exact_mut(hidden))
                {
                    let query = &token[head * dim..(head + 1) * dim];
                    for (c, (s, s0)) in scores
                        .chunks_exact_mut(LANES)
                        .zip(start.chunks_exact(LANES))
                        .enumerate()
                    {
                        let mut acc: [f32; LANES] = s0.try_into().unwrap_or([0.0; LANES]);
                        for (&q, key_row) in query.iter().zip(keys.chunks_exact(width)) {
                            let k = &key_row[c * LANES..(c + 1) * LANES];
                            for (a, &k) in acc.iter_mut().zip(k) {
                                *a = q.mul_add(k, *a);
                            }
                        }
                        s.copy_from_slice(&acc);
                    }
                    let max = lane_max(&scores, f32::NEG_INFINITY, |v| v);
                    for s in scores.iter_mut() {
                        *s = exp_non_positive(*s - max);
                    }
                    scores[seq..].fill(0.0);
                    let inv = 1.0 / lane_sum(&scores, |v| v);
                    let context = &mut out_row[head * dim..(head + 1) * dim];
                    let mut chunks = context.chunks_exact_mut(LANES);
                    for (c, chunk) in (&mut chunks).enumerate() {
                        let at = v_at + c * LANES;
                        let mut acc = [0f32; LANES];
                        for (&p, token) in scores.iter().zip(tokens.chunks_exact(stride)) {
                            for (a, &v) in acc.iter_mut().zip(&token[at..at + LANES]) {
                                *a = p.mul_add(v, *a);
                            }
                        }
                        for (o, a) in chunk.iter_mut().zip(acc) {
                            *o = a * inv;
                        }
                    }
                    let tail = chunks.into_remainder();
                    let at = v_at + dim - tail.len();
                    for (&p, token) in scores.iter().zip(tokens.chunks_exact(stride)) {
                        for (o, &v) in tail.iter_mut().zip(&token[at..]) {
                            *o = p.mul_add(v, *o);
                        }
                    }
                    for o in tail.iter_mut() {
                        *o *= inv;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// The same attention by candle's operations, as `bert.rs` runs it off the CPU.
    fn by_candle(qkv: &Tensor, op: &Attention) -> Tensor {
        let (b, s, h, d) = (op.batch, op.seq, op.heads, op.head_dim);
        let qkv = qkv
            .reshape((b, s, 3, h, d))
            .unwrap()
            .permute((2, 0, 3, 1, 4))
            .unwrap()
            .contiguous()
            .unwrap();
        let (q, k, v) = (
            qkv.get(0).unwrap(),
            qkv.get(1).unwrap(),
            qkv.get(2).unwrap(),
        );
        let mut scores = q.matmul(&k.t().unwrap()).unwrap();
        if let Some(mask) = op.mask_bias {
            let mask = Tensor::from_slice(mask, (b, 1, 1, s), &Device::Cpu).unwrap();
            scores = scores.broadcast_add(&mask).unwrap();
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        probs
            .matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b * s, h * d))
            .unwrap()
    }

    #[test]
    fn matches_candles_attention_on_varied_shapes_and_masks() {
        // Head widths below, at and between the 16-value chunks; sequences
        // shorter than, equal to and just past a chunk.
        for (batch, seq, heads, head_dim) in [
            (1, 1, 1, 8),
            (2, 5, 4, 8),
            (3, 16, 12, 32),
            (2, 17, 2, 20),
            (1, 40, 3, 48),
            (4, 9, 6, 64),
        ] {
            let n = batch * seq * 3 * heads * head_dim;
            let values: Vec<f32> = (0..n)
                .map(|i| ((i as u32).wrapping_mul(2_654_435_761) % 2000) as f32 / 1000.0 - 1.0)
                .collect();
            let qkv = Tensor::from_vec(values, (batch * seq, 3 * heads * head_dim), &Device::Cpu)
                .unwrap();
            // Every item but the first has its last third padded (at least one
            // token kept), as a padded batch's mask makes it.
            let mask: Vec<f32> = (0..batch * seq)
                .map(|t| {
                    let (item, j) = (t / seq, t % seq);
                    if item > 0 && j > 0 && j >= seq - seq / 3 {
                        -f32::MAX
                    } else {
                        0.0
                    }
                })
                .collect();
            for mask_bias in [None, Some(mask.as_slice())] {
                let op = Attention {
                    batch,
                    seq,
                    heads,
                    head_dim,
                    mask_bias,
                };
                let got = qkv.apply_op1_no_bwd(&op).unwrap();
                let want = by_candle(&qkv, &op);
                let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
                let diff = diff.to_scalar::<f32>().unwrap();
                assert!(
                    diff < 1e-5,
                    "{batch}x{seq}, {heads} heads of {head_dim}, mask {}: {diff}",
                    mask_bias.is_some()
                );
            }
        }
    }

    #[test]
    fn mismatched_shapes_are_errors_not_panics() {
        let qkv = Tensor::zeros((4, 3 * 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        let op = |batch, seq, mask_bias| Attention {
            batch,
            seq,
            heads: 2,
            head_dim: 4,
            mask_bias,
        };
        assert!(qkv.apply_op1_no_bwd(&op(2, 2, None)).is_ok());
        let empty = Tensor::zeros((0, 3 * 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert_eq!(
            empty.apply_op1_no_bwd(&op(0, 5, None)).unwrap().dims(),
            [0, 8]
        );
        assert!(qkv.apply_op1_no_bwd(&op(2, 3, None)).is_err());
        assert!(qkv.apply_op1_no_bwd(&op(2, 2, Some(&[0.0; 3]))).is_err());
        let no_heads = Attention {
            heads: 0,
            ..op(2, 2, None)
        };
        assert!(qkv.apply_op1_no_bwd(&no_heads).is_err());
    }
}
