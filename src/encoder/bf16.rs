//! bf16 linear layers for the CPU encoder ([`super::Precision::Bf16`] on the CPU).
//!
//! The weight is rounded to bfloat16 once, at load time, and each call rounds its
//! input rows to bfloat16 (round to nearest, ties to even); the products of those
//! bf16 values are summed in f32. Everything around the linear layers (attention,
//! GELU, LayerNorm, pooling) stays f32.
//!
//! **One summation order on every CPU.** `vdpbf16ps` adds, to each f32 lane, the
//! product of its odd-indexed bf16 pair first and then the even one, rounding
//! after each addition (Intel's documented order; checked bit for bit on an AMD
//! EPYC family 26 over 3.2 million lanes, where it matched no other order). A
//! product of two bf16 values is exact in f32, so a fused multiply-add of the
//! widened values rounds exactly as one of those additions does. Every kernel here
//! therefore computes, for each output, the same sequence of f32 roundings over
//! the input pairs in order, and the kernels agree bit for bit (tested): an index
//! built in bf16 parts on different machines holds the same vectors. (The one
//! exception is subnormal numbers, which `vdpbf16ps` flushes to zero; products
//! that small do not occur in a BERT layer.)
//!
//! Three kernels, picked at run time ([`Bf16Kernel::detect`]):
//!
//! - **avx512bf16**: `vdpbf16ps`, one instruction per 16 output columns and input
//!   pair.
//! - **avx2**: the bf16 values widened to f32 (a shift or a mask of their 32-bit
//!   pairs) and two FMAs per 8 columns and input pair, for CPUs without AVX-512
//!   BF16.
//! - **portable**: the same operations in plain loops, for every other CPU.
//!
//! The weight is packed as [`super::int8`]'s is, in panels of 16 output columns,
//! here with two inputs per lane (64 bytes per panel and input pair). The `unsafe`
//! is confined to the two SIMD kernels: calling them after the feature check,
//! unaligned loads and stores of bounds-checked slices, and reinterpreting 512
//! bits of packed pairs as the `__m512bh` type `vdpbf16ps` takes.

use candle_core::{bail, Result};
use half::bf16;
use pulp::{Simd, WithSimd};

use super::cpu_ops::{check_kernel, drop_padding, padded_bias, whole_rows, HostLinear};

/// Output columns per packed panel.
const PANEL: usize = 16;
/// Inputs per lane: `vdpbf16ps` adds two products into each lane.
const PAIR: usize = 2;
/// bf16 values of one panel row pair: 16 columns x 2 inputs.
const PANEL_PAIR: usize = PANEL * PAIR;

/// Which kernel runs the bf16 products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Kernel {
    /// AVX-512 BF16 (`vdpbf16ps`).
    Avx512Bf16,
    /// AVX2 with FMA, on the bf16 values widened to f32.
    Avx2,
    /// Plain loops (any CPU).
    Portable,
}

impl Bf16Kernel {
    /// The fastest kernel this CPU can run.
    pub fn detect() -> Bf16Kernel {
        Bf16Kernel::available()[0]
    }

    /// Every kernel this CPU can run, fastest first (always ending with portable).
    pub fn available() -> Vec<Bf16Kernel> {
        let mut out = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bf16")
            {
                out.push(Bf16Kernel::Avx512Bf16);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                out.push(Bf16Kernel::Avx2);
            }
        }
        out.push(Bf16Kernel::Portable);
        out
    }

    /// The name speed reports print.
    pub fn name(self) -> &'static str {
        match self {
            Bf16Kernel::Avx512Bf16 => "avx512bf16",
            Bf16Kernel::Avx2 => "avx2",
            Bf16Kernel::Portable => "portable",
        }
    }
}

impl std::str::FromStr for Bf16Kernel {
    type Err = crate::Error;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "avx512bf16" => Ok(Bf16Kernel::Avx512Bf16),
            "avx2" => Ok(Bf16Kernel::Avx2),
            "portable" => Ok(Bf16Kernel::Portable),
            other => Err(crate::Error::invalid(
                "bf16 kernel",
                format!("{other:?}; expected avx512bf16, avx2 or portable"),
            )),
        }
    }
}

/// A linear layer's weight (without bias) rounded to bf16 and packed.
pub struct Bf16Linear {
    inputs: usize,
    outputs: usize,
    /// `inputs` rounded up to a multiple of [`PAIR`].
    inputs_padded: usize,
    /// Panels of [`PANEL`] columns, each `inputs_padded / 2` pairs of 32 values:
    /// column `c`'s pair at `2c` (even input) and `2c + 1` (odd input).
    packed: Vec<bf16>,
    /// `outputs` rounded up to a multiple of [`PANEL`].
    width: usize,
    kernel: Bf16Kernel,
}

impl std::fmt::Debug for Bf16Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bf16Linear")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("kernel", &self.kernel)
            .finish()
    }
}

/// `v` rounded to bfloat16 (to nearest, ties to even) as its bits; a NaN stays a
/// (quiet) NaN. The same value as `half::bf16::from_f32`, written as integer
/// operations so that the loop over a row vectorises.
#[inline(always)]
fn bf16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
    if v.is_nan() {
        (b >> 16) as u16 | 0x40
    } else {
        rounded
    }
}

/// The f32 value of bf16 bits (exact).
#[inline(always)]
fn widen(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

impl Bf16Linear {
    /// Rounds `weight_t` (`inputs x outputs`, row-major) to bf16 for the fastest
    /// kernel of this CPU.
    pub fn new(weight_t: &[f32], inputs: usize, outputs: usize) -> Result<Bf16Linear> {
        if inputs == 0 || outputs == 0 || weight_t.len() != inputs * outputs {
            bail!(
                "bf16 linear: {} weights do not make a {inputs} x {outputs} matrix",
                weight_t.len()
            );
        }
        let inputs_padded = inputs.div_ceil(PAIR) * PAIR;
        let panels = outputs.div_ceil(PANEL);
        let pairs = inputs_padded / PAIR;
        let mut packed = vec![bf16::ZERO; panels * pairs * PANEL_PAIR];
        for (k, row) in weight_t.chunks_exact(outputs).enumerate() {
            let (g, t) = (k / PAIR, k % PAIR);
            for (j, &w) in row.iter().enumerate() {
                let (p, c) = (j / PANEL, j % PANEL);
                packed[(p * pairs + g) * PANEL_PAIR + c * PAIR + t] = bf16::from_bits(bf16_bits(w));
            }
        }
        Ok(Bf16Linear {
            inputs,
            outputs,
            inputs_padded,
            packed,
            width: panels * PANEL,
            kernel: Bf16Kernel::detect(),
        })
    }

    /// The same layer run by `kernel`; an error when this CPU cannot run it.
    pub fn with_kernel(mut self, kernel: Bf16Kernel) -> Result<Bf16Linear> {
        let runnable = Bf16Kernel::available().contains(&kernel);
        check_kernel("bf16", kernel.name(), runnable)?;
        self.kernel = kernel;
        Ok(self)
    }

    /// The kernel [`matmul`](Self::matmul) runs.
    pub fn kernel(&self) -> Bf16Kernel {
        self.kernel
    }

    /// `x · W` for `x` of `rows x inputs` (row-major): `rows x outputs`.
    pub fn matmul(&self, x: &[f32]) -> Result<Vec<f32>> {
        self.matmul_bias_with(self.kernel, x, None)
    }

    /// [`matmul`](Self::matmul) with a chosen kernel; one this CPU lacks is an
    /// error.
    pub fn matmul_with(&self, kernel: Bf16Kernel, x: &[f32]) -> Result<Vec<f32>> {
        self.matmul_bias_with(kernel, x, None)
    }

    /// `x · W + bias` (`bias`: one value per output) with a chosen kernel: the
    /// bias is added to each finished sum as it is written.
    pub fn matmul_bias_with(
        &self,
        kernel: Bf16Kernel,
        x: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        let runnable = Bf16Kernel::available().contains(&kernel);
        check_kernel("bf16", kernel.name(), runnable)?;
        let rows = whole_rows("bf16", x.len(), self.inputs)?;
        let bias_padded = padded_bias("bf16", bias, self.outputs, self.width)?;
        let mut out = vec![0f32; rows * self.width];
        let rounding = RoundPass {
            x,
            inputs: self.inputs,
            inputs_padded: self.inputs_padded,
        };
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Bf16Kernel::Avx512Bf16 => {
                let lanes = pulp::Arch::new().dispatch(PairPass(rounding));
                // SAFETY: `available()` saw avx512f and avx512bf16.
                unsafe { x86::avx512bf16(self, &lanes, &bias_padded, &mut out) }
            }
            #[cfg(target_arch = "x86_64")]
            Bf16Kernel::Avx2 => {
                let values = pulp::Arch::new().dispatch(rounding);
                // SAFETY: `available()` saw avx2 and fma.
                unsafe { x86::avx2(self, &values, &bias_padded, &mut out) }
            }
            _ => pulp::Arch::new().dispatch(PortablePass {
                lin: self,
                values: &pulp::Arch::new().dispatch(rounding),
                bias: &bias_padded,
                out: &mut out,
            }),
        }
        drop_padding(&mut out, rows, self.width, self.outputs);
        Ok(out)
    }

    fn pairs(&self) -> usize {
        self.inputs_padded / PAIR
    }

    fn panel_len(&self) -> usize {
        self.pairs() * PANEL_PAIR
    }

    fn panels(&self) -> usize {
        self.width / PANEL
    }
}

/// Rounds each input row to bf16, padded with zeros to `inputs_padded`, and
/// widens the values back to f32 (exact), as a `WithSimd` so that its loop
/// compiles for the best instruction set present (see `cpu_ops::BiasGeluPass`
/// for why a struct).
struct RoundPass<'a> {
    x: &'a [f32],
    inputs: usize,
    inputs_padded: usize,
}

impl WithSimd for RoundPass<'_> {
    type Output = Vec<f32>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> Vec<f32> {
        let rows = self.x.len() / self.inputs;
        let mut values = vec![0f32; rows * self.inputs_padded];
        for (row, out) in self
            .x
            .chunks_exact(self.inputs)
            .zip(values.chunks_exact_mut(self.inputs_padded))
        {
            for (o, &v) in out.iter_mut().zip(row) {
                *o = widen(bf16_bits(v));
            }
        }
        values
    }
}

/// The same rounding, each row as `inputs_padded / 2` 32-bit lanes with the
/// even input's bits low and the odd one's high: the operand `vdpbf16ps`
/// broadcasts.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct PairPass<'a>(RoundPass<'a>);

impl WithSimd for PairPass<'_> {
    type Output = Vec<u32>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> Vec<u32> {
        let RoundPass {
            x,
            inputs,
            inputs_padded,
        } = self.0;
        let pairs = inputs_padded / PAIR;
        let mut lanes = vec![0u32; x.len() / inputs * pairs];
        for (row, out) in x.chunks_exact(inputs).zip(lanes.chunks_exact_mut(pairs)) {
            let mut two = row.chunks_exact(PAIR);
            for (o, p) in out.iter_mut().zip(&mut two) {
                *o = u32::from(bf16_bits(p[0])) | (u32::from(bf16_bits(p[1])) << 16);
            }
            if let (Some(o), [last]) = (out.last_mut(), two.remainder()) {
                *o = u32::from(bf16_bits(*last));
            }
        }
        lanes
    }
}

/// The portable kernel as a `WithSimd`: for each row and panel, 16 f32 sums,
/// each pair's odd product added before its even one.
struct PortablePass<'a> {
    lin: &'a Bf16Linear,
    values: &'a [f32],
    bias: &'a [f32],
    out: &'a mut [f32],
}

impl WithSimd for PortablePass<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let lin = self.lin;
        let panel_len = lin.panel_len();
        for (a, out) in self
            .values
            .chunks_exact(lin.inputs_padded)
            .zip(self.out.chunks_exact_mut(lin.width))
        {
            for ((panel, acc_out), bias) in lin
                .packed
                .chunks_exact(panel_len)
                .zip(out.chunks_exact_mut(PANEL))
                .zip(self.bias.chunks_exact(PANEL))
            {
                let mut acc = [0f32; PANEL];
                for (group, a2) in panel.chunks_exact(PANEL_PAIR).zip(a.chunks_exact(PAIR)) {
                    for (s, w2) in acc.iter_mut().zip(group.chunks_exact(PAIR)) {
                        // Each product is exact: one rounding per addition, as
                        // `vdpbf16ps` and an FMA make.
                        *s += a2[1] * widen(w2[1].to_bits());
                        *s += a2[0] * widen(w2[0].to_bits());
                    }
                }
                for ((o, &s), &b) in acc_out.iter_mut().zip(&acc).zip(bias) {
                    *o = s + b;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::tiling::{dispatch_tile, tiles};
    use super::{Bf16Linear, PAIR, PANEL, PANEL_PAIR};

    /// The AVX-512 kernel's largest tile: 8 rows x 2 panels, 16 accumulators of
    /// the 32 registers.
    const ZMM_ROWS: usize = 8;
    const ZMM_PANELS: usize = 2;
    /// The AVX2 kernel's largest tile: 6 rows x 1 panel (two halves), 12
    /// accumulators, 2 widened weight vectors and 2 broadcasts of the 16
    /// registers. Each pair is two dependent FMAs on an accumulator, so 8 of them
    /// (4 rows) would only just cover the FMA latency.
    const YMM_ROWS: usize = 4;
    // The `dispatch_tile!` lists below name every size up to these.
    const _: () = assert!(ZMM_ROWS == 8 && ZMM_PANELS == 2 && YMM_ROWS == 4);

    /// `out[i][j] = Σ_k a_ik · w_kj + b_j`, each lane by `vdpbf16ps`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) fn avx512bf16(lin: &Bf16Linear, lanes: &[u32], bias: &[f32], out: &mut [f32]) {
        let rows = lanes.len() / lin.pairs();
        tiles(rows, lin.panels(), ZMM_ROWS, ZMM_PANELS, |i, nr, p, np| {
            // The closure inherits this function's target features.
            dispatch_tile!(
                zmm_tile,
                (nr, np),
                [1 2 3 4 5 6 7 8],
                [1 2],
                (lin, lanes, bias, i, p, out)
            )
        });
    }

    /// One `R x P` tile of the AVX-512 kernel.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    fn zmm_tile<const R: usize, const P: usize>(
        lin: &Bf16Linear,
        lanes: &[u32],
        bias: &[f32],
        i: usize,
        p: usize,
        out: &mut [f32],
    ) {
        let pairs = lin.pairs();
        let panel_len = lin.panel_len();
        let w = &lin.packed[p * panel_len..(p + P) * panel_len];
        // Cut to `pairs` lanes so that indexing by `g < pairs` needs no checks.
        let a_rows: [&[u32]; R] =
            std::array::from_fn(|r| &lanes[(i + r) * pairs..(i + r + 1) * pairs]);
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        for g in 0..pairs {
            let mut wv = [_mm512_setzero_ps(); P];
            for (q, v) in wv.iter_mut().enumerate() {
                let at = q * panel_len + g * PANEL_PAIR;
                let values = &w[at..at + PANEL_PAIR];
                // SAFETY: `values` is 32 bf16 (64 bytes); loadu has no alignment need.
                *v = unsafe { _mm512_loadu_ps(values.as_ptr().cast()) };
            }
            for (acc_row, a_row) in acc.iter_mut().zip(&a_rows) {
                let a = _mm512_set1_epi32(a_row[g] as i32);
                // SAFETY: 512 bits of bf16 pairs, whatever they hold, are a valid
                // `__m512bh`, as are `wv`'s.
                let a: __m512bh = unsafe { std::mem::transmute(a) };
                for (s, &v) in acc_row.iter_mut().zip(&wv) {
                    let w: __m512bh = unsafe { std::mem::transmute(v) };
                    *s = _mm512_dpbf16_ps(*s, a, w);
                }
            }
        }
        for (r, acc_row) in acc.iter().enumerate() {
            for (q, &s) in acc_row.iter().enumerate() {
                let col = (p + q) * PANEL;
                let b = &bias[col..col + PANEL];
                let at = (i + r) * lin.width + col;
                let dst = &mut out[at..at + PANEL];
                // SAFETY: `b` and `dst` hold 16 f32; no alignment need.
                unsafe {
                    let y = _mm512_add_ps(s, _mm512_loadu_ps(b.as_ptr()));
                    _mm512_storeu_ps(dst.as_mut_ptr(), y);
                }
            }
        }
    }

    /// `out[i][j] = Σ_k a_ik · w_kj + b_j` by FMAs on widened values, in
    /// `vdpbf16ps`'s order.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn avx2(lin: &Bf16Linear, values: &[f32], bias: &[f32], out: &mut [f32]) {
        let rows = values.len() / lin.inputs_padded;
        tiles(rows, lin.panels(), YMM_ROWS, 1, |i, nr, p, np| {
            // The closure inherits this function's target features.
            dispatch_tile!(
                ymm_tile,
                (nr, np),
                [1 2 3 4],
                [1],
                (lin, values, bias, i, p, out)
            )
        });
    }

    /// One `R`-row tile of one panel for the AVX2 kernel: two 8-column halves.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn ymm_tile<const R: usize, const P: usize>(
        lin: &Bf16Linear,
        values: &[f32],
        bias: &[f32],
        i: usize,
        p: usize,
        out: &mut [f32],
    ) {
        let width = lin.inputs_padded;
        let panel_len = lin.panel_len();
        let w = &lin.packed[p * panel_len..(p + 1) * panel_len];
        let a_rows: [&[f32]; R] =
            std::array::from_fn(|r| &values[(i + r) * width..(i + r + 1) * width]);
        let high = _mm256_set1_epi32(0xffff_0000_u32 as i32);
        // Accumulators by half (8 columns) and row: indexed only through
        // iterators over fixed-size arrays, so that they stay in registers.
        let mut acc = [[_mm256_setzero_ps(); R]; 2];
        for g in 0..lin.pairs() {
            let pair = &w[g * PANEL_PAIR..(g + 1) * PANEL_PAIR];
            // SAFETY: `pair` is 32 bf16 (64 bytes): two unaligned 32-byte loads.
            let halves = unsafe {
                [
                    _mm256_loadu_si256(pair.as_ptr().cast()),
                    _mm256_loadu_si256(pair[PANEL..].as_ptr().cast()),
                ]
            };
            for (acc_h, v) in acc.iter_mut().zip(halves) {
                // Each 32-bit lane holds one column's pair: the odd input's bits
                // high (masked, they are its f32), the even input's low (shifted up).
                let odd = _mm256_castsi256_ps(_mm256_and_si256(v, high));
                let even = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v));
                for (s, a_row) in acc_h.iter_mut().zip(&a_rows) {
                    let a = &a_row[g * PAIR..g * PAIR + PAIR];
                    *s = _mm256_fmadd_ps(_mm256_set1_ps(a[1]), odd, *s);
                    *s = _mm256_fmadd_ps(_mm256_set1_ps(a[0]), even, *s);
                }
            }
        }
        let col = p * PANEL;
        for (h, acc_h) in acc.iter().enumerate() {
            let b = &bias[col + h * 8..col + h * 8 + 8];
            for (r, &s) in acc_h.iter().enumerate() {
                let at = (i + r) * lin.width + col + h * 8;
                let dst = &mut out[at..at + 8];
                // SAFETY: `b` and `dst` hold 8 f32; no alignment need.
                unsafe {
                    let y = _mm256_add_ps(s, _mm256_loadu_ps(b.as_ptr()));
                    _mm256_storeu_ps(dst.as_mut_ptr(), y);
                }
            }
        }
    }
}

impl HostLinear for Bf16Linear {
    fn inputs(&self) -> usize {
        self.inputs
    }

    fn outputs(&self) -> usize {
        self.outputs
    }

    fn product(&self, x: &[f32], bias: Option<&[f32]>) -> Result<Vec<f32>> {
        self.matmul_bias_with(self.kernel, x, bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(seed: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503);
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// The exact product of the bf16-rounded operands, summed in f64.
    fn rounded_product(x: &[f32], w: &[f32], inputs: usize, outputs: usize) -> Vec<f64> {
        let r = |v: f32| f64::from(bf16::from_f32(v).to_f32());
        let rows = x.len() / inputs;
        let mut out = vec![0f64; rows * outputs];
        for i in 0..rows {
            for k in 0..inputs {
                for j in 0..outputs {
                    out[i * outputs + j] += r(x[i * inputs + k]) * r(w[k * outputs + j]);
                }
            }
        }
        out
    }

    #[test]
    fn every_kernel_sums_the_rounded_products() {
        for (rows, inputs, outputs) in [(1, 2, 16), (7, 37, 45), (13, 384, 64), (3, 9, 1)] {
            let w = values(inputs as u32, inputs * outputs);
            let x = values(rows as u32 + 7, rows * inputs);
            let lin = Bf16Linear::new(&w, inputs, outputs).unwrap();
            let want = rounded_product(&x, &w, inputs, outputs);
            for kernel in Bf16Kernel::available() {
                let got = lin.matmul_with(kernel, &x).unwrap();
                assert_eq!(got.len(), want.len());
                for (g, e) in got.iter().zip(&want) {
                    // f32 summation of `inputs` products of magnitude <= 1.
                    let tol = 1e-6 * inputs as f64 + 1e-6 * e.abs();
                    assert!(
                        (f64::from(*g) - e).abs() <= tol,
                        "{kernel:?} {rows}x{inputs}x{outputs}: {g} vs {e}"
                    );
                }
            }
        }
    }

    /// The kernels agree bit for bit: the same f32 roundings in the same order.
    /// Shapes cover odd input counts (a padded last pair), partial panels and
    /// every tile height of both SIMD kernels, with and without a bias.
    #[test]
    fn every_kernel_gives_the_same_bits() {
        for (rows, inputs, outputs) in [(1, 1, 1), (9, 37, 45), (17, 384, 48), (11, 65, 33)] {
            let w = values(inputs as u32 + 3, inputs * outputs);
            let x: Vec<f32> = values(rows as u32 + 11, rows * inputs)
                .iter()
                .enumerate()
                .map(|(i, v)| if i % 29 == 0 { v * 40.0 } else { *v })
                .collect();
            let bias = values(5, outputs);
            let lin = Bf16Linear::new(&w, inputs, outputs).unwrap();
            for b in [None, Some(&bias[..])] {
                let want = lin.matmul_bias_with(Bf16Kernel::Portable, &x, b).unwrap();
                for kernel in Bf16Kernel::available() {
                    let got = lin.matmul_bias_with(kernel, &x, b).unwrap();
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(g, e)| g.to_bits() == e.to_bits());
                    assert!(
                        got.len() == want.len() && same,
                        "{kernel:?} {rows}x{inputs}x{outputs} differs from portable"
                    );
                }
            }
        }
    }

    #[test]
    fn rounding_matches_the_half_crate() {
        let mut specials = vec![
            0.0f32,
            -0.0,
            1.0,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
            1e-40,
            // Exact ties between two bf16 values: to even, both ways.
            f32::from_bits(0x3f80_8000),
            f32::from_bits(0x3f81_8000),
            f32::from_bits(0xbf80_8000),
        ];
        specials.extend(values(9, 10_000).iter().map(|v| v * 1e3));
        for v in specials {
            assert_eq!(bf16_bits(v), bf16::from_f32(v).to_bits(), "{v:e}");
        }
        assert!(widen(bf16_bits(f32::NAN)).is_nan());
    }

    #[test]
    fn kernel_names_parse() {
        for kernel in [
            Bf16Kernel::Avx512Bf16,
            Bf16Kernel::Avx2,
            Bf16Kernel::Portable,
        ] {
            assert_eq!(kernel.name().parse::<Bf16Kernel>().unwrap(), kernel);
        }
        let err = "vnni".parse::<Bf16Kernel>().unwrap_err().to_string();
        assert!(err.contains("avx512bf16, avx2 or portable"), "{err}");
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(Bf16Linear::new(&[0.0; 6], 4, 2).is_err());
        let lin = Bf16Linear::new(&[1.0; 8], 4, 2).unwrap();
        assert!(lin.matmul(&[1.0; 6]).is_err());
    }
}
