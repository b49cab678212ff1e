//! Fused element-wise CPU kernels for the fast BERT path (`bert.rs`).
//!
//! candle runs `x + bias`, GELU, `+ residual` and layer norm as separate passes over
//! memory, and its GELU calls libm's scalar `erff` per element; on a 2-core machine
//! these took about 45% of a batch's time against 40% for the matrix products. Here
//! they are two fused passes, written as plain loops without calls so that the
//! compiler vectorises them; `pulp::Arch::dispatch` compiles each loop for the best
//! instruction set the CPU has (AVX-512, AVX2 or baseline), chosen at run time, with
//! no `unsafe` in this crate.
//!
//! Only f32 tensors on the CPU take these kernels; [`super::bert`] falls back to
//! candle's own ops elsewhere (CUDA).

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, InplaceOp1, InplaceOp2, Layout, Result, Shape};
use pulp::{Simd, WithSimd};

/// The widest x86 vector instructions the CPU kernels (these and gemm's matrix
/// products) pick at run time on this machine: `avx512`, `avx2` or `baseline`, so
/// that speed figures name what they ran on.
pub fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "avx2";
        }
    }
    "baseline"
}

/// `0.5·x·(1 + erf(x/√2))`, BERT's exact (erf) GELU, to within 1e-6 absolute of the
/// libm-based one for all finite `x` (tested against candle's `gelu_erf`).
#[inline(always)]
pub(super) fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf by Abramowitz & Stegun, Handbook of Mathematical Functions, formula 7.1.28
/// (absolute error ≤ 3e-7): `1 - 1/(1 + a1·z + ... + a6·z⁶)^16` on |z| with the sign
/// put back. One division and no exponential (7.1.26, used before, needed both),
/// branch-free, so loops over it vectorise; a large |z| makes the power infinite
/// and the result exactly ±1.
#[inline(always)]
fn erf(z: f32) -> f32 {
    // a1..a6 of formula 7.1.28.
    const A: [f32; 6] = [
        0.070_523_08,
        0.042_282_01,
        0.009_270_527,
        0.000_152_014_3,
        0.000_276_567_2,
        0.000_043_063_8,
    ];
    let a = z.abs();
    let p = 1.0 + a * (A[0] + a * (A[1] + a * (A[2] + a * (A[3] + a * (A[4] + a * A[5])))));
    let p2 = p * p;
    let p4 = p2 * p2;
    let p8 = p4 * p4;
    let e = 1.0 - 1.0 / (p8 * p8);
    e.copysign(z)
}

/// `e^y` for `y ≤ 0`, softmax's `e^(x - max)` (inputs below -87 give e^-87 ≈
/// 1.6e-38, a normal f32), relative error below 5e-7: `e^y = 2^n · e^g` with `n = round(y·log2 e)` and
/// `g = y - n·ln2` (ln2 split in two parts, Cody & Waite's reduction, so that `g` is
/// exact even for large `n`), `|g| ≤ ln2/2`, and `e^g` its Taylor series to degree 7.
#[inline(always)]
pub(super) fn exp_non_positive(y: f32) -> f32 {
    // 1.5·2^23: adding and subtracting it rounds an f32 of magnitude < 2^22 to an
    // integer without a call to `round` (which does not vectorise without SSE4.1).
    const ROUND: f32 = 12_582_912.0;
    // ln2 = LN2_HI + LN2_LO, LN2_HI with few enough mantissa bits that n·LN2_HI is exact.
    const LN2_HI: f32 = 355.0 / 512.0;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let y = y.max(-87.0);
    let n = (y * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let g = (y - n * LN2_HI) - n * LN2_LO;
    let poly = 1.0
        + g * (1.0
            + g * (0.5
                + g * (1.0 / 6.0
                    + g * (1.0 / 24.0 + g * (1.0 / 120.0 + g * (1.0 / 720.0 + g / 5040.0))))));
    // 2^n built from its exponent bits; n is in [-126, 0] here.
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    poly * scale
}

/// The f32 data of a contiguous CPU tensor.
pub(super) fn contiguous<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("{op}: expected f32, got {:?}", storage.dtype())
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: input is not contiguous"),
    }
}

/// The f32 data of a contiguous CPU tensor, to be overwritten in place.
fn contiguous_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a mut [f32]> {
    let dtype = storage.dtype();
    let CpuStorage::F32(data) = storage else {
        bail!("{op}: expected f32, got {dtype:?}")
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&mut data[start..end]),
        None => bail!("{op}: input is not contiguous"),
    }
}

/// `x ← gelu_erf(x + bias)` in place, with `x` of shape `rows x bias.len()`. In
/// place because `x` is always a fresh product: a new buffer would cost an
/// allocation and a pass of zeroing per layer.
pub(super) struct BiasGelu<'a> {
    pub bias: &'a [f32],
}

impl InplaceOp1 for BiasGelu<'_> {
    fn name(&self) -> &'static str {
        "shelfrank-bias-gelu"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let name = self.name();
        let x = contiguous_mut(storage, layout, name)?;
        let width = self.bias.len();
        if width == 0 || x.len() % width != 0 {
            bail!(
                "{name}: {} values do not split into rows of {width}",
                x.len()
            );
        }
        pulp::Arch::new().dispatch(BiasGeluPass { x, bias: self.bias });
        Ok(())
    }
}

/// The loop of [`BiasGelu`]. A `WithSimd` whose `with_simd` is inlined into pulp's
/// `#[target_feature]` entry point, so the loop is compiled for that instruction set
/// (a closure handed to `dispatch` is not inlined there and stays baseline code).
struct BiasGeluPass<'a> {
    x: &'a mut [f32],
    bias: &'a [f32],
}

impl WithSimd for BiasGeluPass<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        for row in self.x.chunks_exact_mut(self.bias.len()) {
            for (v, &b) in row.iter_mut().zip(self.bias) {
                *v = gelu_erf(*v + b);
            }
        }
    }
}

/// `x ← layer_norm(x + bias + residual)` over rows of `bias.len()`: the end of a
/// BERT sub-layer (dense output, residual connection, LayerNorm) in one pass, in
/// place as [`BiasGelu`] is.
pub(super) struct BiasResidualNorm<'a> {
    pub bias: &'a [f32],
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub eps: f32,
}

impl InplaceOp2 for BiasResidualNorm<'_> {
    fn name(&self) -> &'static str {
        "shelfrank-bias-residual-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let x = contiguous_mut(s1, l1, self.name())?;
        let residual = contiguous(s2, l2, self.name())?;
        let width = self.bias.len();
        if width == 0
            || x.len() % width != 0
            || residual.len() != x.len()
            || self.gamma.len() != width
            || self.beta.len() != width
        {
            bail!(
                "{}: shapes do not match ({} values, {} residual, width {width})",
                self.name(),
                x.len(),
                residual.len()
            );
        }
        pulp::Arch::new().dispatch(NormPass {
            x,
            residual,
            op: self,
        });
        Ok(())
    }
}

/// The loop of [`BiasResidualNorm`] (see [`BiasGeluPass`] for why a struct).
struct NormPass<'a, 'b> {
    x: &'a mut [f32],
    residual: &'a [f32],
    op: &'a BiasResidualNorm<'b>,
}

impl WithSimd for NormPass<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let BiasResidualNorm {
            bias,
            gamma,
            beta,
            eps,
        } = *self.op;
        let width = bias.len();
        let inv_width = 1.0 / width as f32;
        for (o_row, r_row) in self
            .x
            .chunks_exact_mut(width)
            .zip(self.residual.chunks_exact(width))
        {
            for (o, (&r, &b)) in o_row.iter_mut().zip(r_row.iter().zip(bias)) {
                *o += r + b;
            }
            let mean = lane_sum(o_row, |v| v) * inv_width;
            for o in o_row.iter_mut() {
                *o -= mean;
            }
            let var = lane_sum(o_row, |v| v * v);
            let inv_std = 1.0 / (var * inv_width + eps).sqrt();
            for ((o, &g), &b) in o_row.iter_mut().zip(gamma).zip(beta) {
                *o = *o * inv_std * g + b;
            }
        }
    }
}

/// `Σ f(v)` over `values`, summed in 16 independent lanes (then the lanes and the
/// tail in order), so that the loop vectorises: a single running sum is a chain
/// the compiler may not reorder. The order is fixed, so the result does not
/// depend on anything but `values`.
#[inline(always)]
pub(super) fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l += f(v);
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    lanes.iter().sum::<f32>() + tail
}

/// The largest `f(v)` over `values` and `init` (NaNs skipped, as `f32::max` does),
/// over 16 independent lanes so that the loop vectorises: a running `max` is a
/// chain the compiler keeps scalar (f32 max is not associative for NaN).
#[inline(always)]
pub(super) fn lane_max(values: &[f32], init: f32, f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [init; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = m.max(f(v));
        }
    }
    let tail = chunks.remainder().iter().fold(init, |m, &v| m.max(f(v)));
    lanes.iter().fold(tail, |m, &v| m.max(v))
}

/// A linear layer whose product runs on host memory (the int8 and bf16 layers).
pub(super) trait HostLinear {
    /// Inputs (the last dimension of `x`).
    fn inputs(&self) -> usize;
    /// Outputs.
    fn outputs(&self) -> usize;
    /// `x · W (+ bias)` for `x` of `rows x inputs`, row-major: `rows x outputs`;
    /// `bias` holds one value per output.
    fn product(&self, x: &[f32], bias: Option<&[f32]>) -> Result<Vec<f32>>;
}

/// Refuses a kernel this CPU cannot run (`runnable` false), naming the layer
/// kind (`int8`, `bf16`) and the kernel.
pub(super) fn check_kernel(layer: &str, kernel: &str, runnable: bool) -> Result<()> {
    if !runnable {
        bail!("{layer} linear: this CPU cannot run the {kernel} kernel");
    }
    Ok(())
}

/// Refuses a bias whose length is not the layer's number of outputs.
pub(super) fn check_bias(layer: &str, bias: &[f32], outputs: usize) -> Result<()> {
    if bias.len() != outputs {
        bail!(
            "{layer} linear: a bias of {} values for {outputs} outputs",
            bias.len()
        );
    }
    Ok(())
}

/// `bias` (one value per output, checked) padded with zeros to `width` columns,
/// the whole panels a kernel writes (adding 0 changes no value); all zeros for
/// no bias.
pub(super) fn padded_bias(
    layer: &str,
    bias: Option<&[f32]>,
    outputs: usize,
    width: usize,
) -> Result<Vec<f32>> {
    let mut padded = vec![0f32; width];
    if let Some(bias) = bias {
        check_bias(layer, bias, outputs)?;
        padded[..outputs].copy_from_slice(bias);
    }
    Ok(padded)
}

/// Cuts `out`, `rows` rows of `width` values, to their first `outputs` values
/// each, in place.
pub(super) fn drop_padding(out: &mut Vec<f32>, rows: usize, width: usize, outputs: usize) {
    if width != outputs {
        for i in 1..rows {
            out.copy_within(i * width..i * width + outputs, i * outputs);
        }
        out.truncate(rows * outputs);
    }
}

/// The number of rows in `len` values for a layer of `inputs` inputs, or an
/// error when they do not split into whole rows.
pub(super) fn whole_rows(layer: &str, len: usize, inputs: usize) -> Result<usize> {
    if inputs == 0 || !len.is_multiple_of(inputs) {
        bail!("{layer} linear: {len} values do not split into rows of {inputs}");
    }
    Ok(len / inputs)
}

/// `x · W (+ bias)` as a candle op on a contiguous f32 CPU tensor whose last
/// dimension is the layer's inputs; the leading dimensions are kept.
struct HostMatmul<'a, L>(&'a L, Option<&'a [f32]>);

impl<L: HostLinear> CustomOp1 for HostMatmul<'_, L> {
    fn name(&self) -> &'static str {
        "shelfrank-host-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(storage, layout, self.name())?;
        let dims = layout.shape().dims();
        if dims.last() != Some(&self.0.inputs()) {
            bail!(
                "{}: input shape {dims:?} does not end in {}",
                self.name(),
                self.0.inputs()
            );
        }
        let out = self.0.product(x, self.1)?;
        let mut shape = dims.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = self.0.outputs();
        }
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// `x · W (+ bias)` by a [`HostLinear`] layer; `x` is made contiguous first.
pub(super) fn host_matmul<L: HostLinear>(
    x: &candle_core::Tensor,
    layer: &L,
    bias: Option<&[f32]>,
) -> Result<candle_core::Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&HostMatmul(layer, bias))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn the_simd_level_is_one_the_kernels_know() {
        let level = simd_level();
        assert!(["avx512", "avx2", "baseline"].contains(&level), "{level}");
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            assert_eq!(level, "avx512");
        }
    }

    #[test]
    fn gelu_matches_candles_erf_gelu() {
        let xs: Vec<f32> = (-200_000..=200_000).map(|i| i as f32 * 5e-5).collect();
        let want = Tensor::new(xs.as_slice(), &Device::Cpu)
            .unwrap()
            .gelu_erf()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let worst = xs
            .iter()
            .zip(&want)
            .map(|(&x, &w)| (gelu_erf(x) - w).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-6, "max abs error {worst}");
        for x in [-1e30f32, -100.0, -20.0, 20.0, 100.0, 1e30] {
            let want = if x > 0.0 { x } else { 0.0 };
            assert!(
                (gelu_erf(x) - want).abs() <= 1e-6 * x.abs().max(1.0),
                "gelu({x})"
            );
        }
    }

    #[test]
    fn exp_is_accurate_down_to_the_clamp() {
        for i in 0..=8700 {
            let y = -(i as f32) * 0.01;
            let rel = (exp_non_positive(y) - y.exp()).abs() / y.exp();
            assert!(rel < 5e-7, "exp({y}): relative error {rel}");
        }
    }

    #[test]
    fn fused_kernels_match_candles_separate_ops() {
        let dev = Device::Cpu;
        let (rows, width) = (5, 48);
        let vals = |seed: u32, n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| {
                    ((((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 - 500.0)
                        / 125.0
                })
                .collect()
        };
        let x = Tensor::from_vec(vals(1, rows * width), (rows, width), &dev).unwrap();
        let residual = Tensor::from_vec(vals(2, rows * width), (rows, width), &dev).unwrap();
        let (bias, gamma, beta) = (vals(3, width), vals(4, width), vals(5, width));
        let t = |v: &[f32]| Tensor::new(v, &dev).unwrap();

        let got = x.copy().unwrap();
        got.inplace_op1(&BiasGelu { bias: &bias }).unwrap();
        let want = x.broadcast_add(&t(&bias)).unwrap().gelu_erf().unwrap();
        let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);

        let op = BiasResidualNorm {
            bias: &bias,
            gamma: &gamma,
            beta: &beta,
            eps: 1e-12,
        };
        let got = x.copy().unwrap();
        got.inplace_op2(&residual, &op).unwrap();
        let summed = (x.broadcast_add(&t(&bias)).unwrap() + &residual).unwrap();
        let want = candle_nn::ops::layer_norm(&summed, &t(&gamma), &t(&beta), 1e-12).unwrap();
        let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
    }

    #[test]
    fn mismatched_shapes_are_errors_not_panics() {
        let x = Tensor::zeros((2, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        let bias = [0.0f32; 4];
        assert!(x.inplace_op1(&BiasGelu { bias: &bias }).is_err());
        let op = BiasResidualNorm {
            bias: &bias,
            gamma: &bias,
            beta: &bias,
            eps: 1e-12,
        };
        assert!(x.inplace_op2(&x.copy().unwrap(), &op).is_err());
    }
}
