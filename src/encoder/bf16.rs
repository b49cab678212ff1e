//! bf16 linear layers for the CPU encoder ([`super::Precision::Bf16`] on the CPU).
//!
//! The weight is rounded to bfloat16 once, at load time, and each call rounds its
//! input rows to bfloat16 (round to nearest even, by the `half` crate); the
//! products of those bf16 values are summed in f32. Everything around the linear
//! layers (attention, GELU, LayerNorm, pooling) stays f32.
//!
//! Two kernels, picked at run time ([`Bf16Kernel::detect`]):
//!
//! - **avx512bf16**: `vdpbf16ps` multiplies 32 pairs of bf16 values and adds each
//!   pair's two products to a 32-bit float lane: one instruction per 16 output
//!   columns and two inputs.
//! - **portable**: the same bf16 values widened to f32 (exact) and multiplied in
//!   f32 loops that `pulp` compiles for the best instruction set present. Its sums
//!   can differ from the AVX-512 kernel's in the last bits (another summation
//!   order), not in the bf16 rounding of the inputs.
//!
//! The weight is packed as [`super::int8`]'s is, in panels of 16 output columns,
//! here with two inputs per lane (64 bytes per panel and input pair). The `unsafe`
//! is confined to the AVX-512 kernel: calling it after the feature check,
//! unaligned loads and stores of bounds-checked slices, and reinterpreting 512
//! bits of packed pairs as the `__m512bh` type the instruction takes.

use candle_core::{bail, Result};
use half::bf16;
use pulp::{Simd, WithSimd};

use super::cpu_ops::{check_bias, check_kernel, whole_rows, HostLinear};

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
    /// f32 loops over the bf16 values (any CPU).
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
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
        {
            out.push(Bf16Kernel::Avx512Bf16);
        }
        out.push(Bf16Kernel::Portable);
        out
    }

    /// The name speed reports print.
    pub fn name(self) -> &'static str {
        match self {
            Bf16Kernel::Avx512Bf16 => "avx512bf16",
            Bf16Kernel::Portable => "portable",
        }
    }
}

/// A linear layer's weight (without bias) rounded to bf16 and packed.
pub struct Bf16Linear {
    inputs: usize,
    outputs: usize,
    /// `inputs` rounded up to a multiple of [`PAIR`].
    inputs_padded: usize,
    /// Panels of [`PANEL`] columns, each `inputs_padded / 2` pairs of 32 values.
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
                packed[(p * pairs + g) * PANEL_PAIR + c * PAIR + t] = bf16::from_f32(w);
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
        self.matmul_with(self.kernel, x)
    }

    /// [`matmul`](Self::matmul) with a chosen kernel; one this CPU lacks is an
    /// error.
    pub fn matmul_with(&self, kernel: Bf16Kernel, x: &[f32]) -> Result<Vec<f32>> {
        let runnable = Bf16Kernel::available().contains(&kernel);
        check_kernel("bf16", kernel.name(), runnable)?;
        let rows = whole_rows("bf16", x.len(), self.inputs)?;
        let mut codes = vec![bf16::ZERO; rows * self.inputs_padded];
        for (row, out) in x
            .chunks_exact(self.inputs)
            .zip(codes.chunks_exact_mut(self.inputs_padded))
        {
            for (o, &v) in out.iter_mut().zip(row) {
                *o = bf16::from_f32(v);
            }
        }
        let mut sums = vec![0f32; rows * self.width];
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Bf16Kernel::Avx512Bf16 => {
                // SAFETY: `available()` saw avx512f and avx512bf16.
                unsafe { x86::avx512bf16(self, &codes, rows, &mut sums) }
            }
            _ => pulp::Arch::new().dispatch(PortablePass {
                lin: self,
                codes: &codes,
                sums: &mut sums,
            }),
        }
        if self.width == self.outputs {
            return Ok(sums);
        }
        let mut out = Vec::with_capacity(rows * self.outputs);
        for row in sums.chunks_exact(self.width) {
            out.extend_from_slice(&row[..self.outputs]);
        }
        Ok(out)
    }

    fn pairs(&self) -> usize {
        self.inputs_padded / PAIR
    }

    fn panel_len(&self) -> usize {
        self.pairs() * PANEL_PAIR
    }
}

/// The portable kernel as a `WithSimd` (see `cpu_ops::BiasGeluPass` for why a
/// struct): for each row and panel, 16 f32 sums over the input pairs.
struct PortablePass<'a> {
    lin: &'a Bf16Linear,
    codes: &'a [bf16],
    sums: &'a mut [f32],
}

impl WithSimd for PortablePass<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let lin = self.lin;
        let panel_len = lin.panel_len();
        for (a, out) in self
            .codes
            .chunks_exact(lin.inputs_padded)
            .zip(self.sums.chunks_exact_mut(lin.width))
        {
            for (panel, acc_out) in lin
                .packed
                .chunks_exact(panel_len)
                .zip(out.chunks_exact_mut(PANEL))
            {
                let mut acc = [0f32; PANEL];
                for (group, a2) in panel.chunks_exact(PANEL_PAIR).zip(a.chunks_exact(PAIR)) {
                    let (a0, a1) = (a2[0].to_f32(), a2[1].to_f32());
                    for (s, w2) in acc.iter_mut().zip(group.chunks_exact(PAIR)) {
                        *s += a0 * w2[0].to_f32() + a1 * w2[1].to_f32();
                    }
                }
                acc_out.copy_from_slice(&acc);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::bf16;

    use super::{Bf16Linear, PAIR, PANEL, PANEL_PAIR};

    /// Rows x panels per tile: 6 x 2 = 12 accumulators of the 32 registers.
    const ROWS: usize = 6;
    const PANELS: usize = 2;

    /// The two bf16 values of row `row` at pair `g` as one 32-bit lane value.
    #[inline(always)]
    fn lane(row: &[bf16], g: usize) -> i32 {
        let lo = u32::from(row[g * PAIR].to_bits());
        let hi = u32::from(row[g * PAIR + 1].to_bits());
        (lo | (hi << 16)) as i32
    }

    /// `sums[i][j] = Σ_k a_ik · w_kj` with the products of bf16 pairs summed in
    /// f32.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) fn avx512bf16(lin: &Bf16Linear, codes: &[bf16], rows: usize, sums: &mut [f32]) {
        let panels = lin.width / PANEL;
        let panel_len = lin.panel_len();
        let mut p = 0;
        while p < panels {
            let np = PANELS.min(panels - p);
            let mut i = 0;
            while i < rows {
                let nr = ROWS.min(rows - i);
                let mut acc = [[_mm512_setzero_ps(); PANELS]; ROWS];
                for g in 0..lin.pairs() {
                    let mut wv = [_mm512_setzero_ps(); PANELS];
                    for (q, v) in wv.iter_mut().enumerate().take(np) {
                        let at = (p + q) * panel_len + g * PANEL_PAIR;
                        let values = &lin.packed[at..at + PANEL_PAIR];
                        // SAFETY: `values` is 32 bf16 (64 bytes); loadu has no
                        // alignment need.
                        *v = unsafe { _mm512_loadu_ps(values.as_ptr().cast()) };
                    }
                    for (r, acc_row) in acc.iter_mut().enumerate().take(nr) {
                        let at = (i + r) * lin.inputs_padded;
                        let a = _mm512_set1_epi32(lane(&codes[at..at + lin.inputs_padded], g));
                        // SAFETY: 512 bits of bf16 pairs, whatever they hold, are
                        // a valid `__m512bh`, as are `wv`'s.
                        let a: __m512bh = unsafe { std::mem::transmute(a) };
                        for (s, &v) in acc_row.iter_mut().zip(&wv).take(np) {
                            let w: __m512bh = unsafe { std::mem::transmute(v) };
                            *s = _mm512_dpbf16_ps(*s, a, w);
                        }
                    }
                }
                for (r, acc_row) in acc.iter().enumerate().take(nr) {
                    for (q, &s) in acc_row.iter().enumerate().take(np) {
                        let at = (i + r) * lin.width + (p + q) * PANEL;
                        let out = &mut sums[at..at + PANEL];
                        // SAFETY: `out` holds 16 f32.
                        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), s) };
                    }
                }
                i += nr;
            }
            p += np;
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
        let mut y = self.matmul(x)?;
        if let Some(bias) = bias {
            check_bias("bf16", bias, self.outputs)?;
            for row in y.chunks_exact_mut(self.outputs) {
                for (v, &b) in row.iter_mut().zip(bias) {
                    *v += b;
                }
            }
        }
        Ok(y)
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

    #[test]
    fn bad_shapes_are_errors() {
        assert!(Bf16Linear::new(&[0.0; 6], 4, 2).is_err());
        let lin = Bf16Linear::new(&[1.0; 8], 4, 2).unwrap();
        assert!(lin.matmul(&[1.0; 6]).is_err());
    }
}
