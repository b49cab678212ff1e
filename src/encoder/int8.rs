//! int8 linear layers for the CPU encoder ([`super::Precision::Int8`]).
//!
//! **Weights** are quantised once, at load time, per output channel: column `j`
//! of the `in x out` weight gets the step `s_j = max_k |w_kj| / 127` and is stored
//! as `q_kj = round(w_kj / s_j)`, in `[-127, 127]`.
//!
//! **Activations** are quantised on every call, per row (per token): row `i` of
//! the input gets `t_i = max_k |x_ik| / 127` and `a_ik = round(x_ik / t_i)`.
//!
//! The product is then an exact integer dot product, scaled back once per output:
//! `y_ij = t_i · s_j · Σ_k a_ik · q_kj`. Accumulation is in i32, which cannot
//! overflow for any `in` below 2^31 / 127² ≈ 133,000.
//!
//! Three kernels compute the same i32 sums, so their outputs are bit-identical;
//! the fastest the CPU has is picked at run time ([`Kernel::detect`]):
//!
//! - **avx512vnni**: `vpdpbusd` multiplies 64 unsigned by 64 signed bytes and adds
//!   each group of four products to a 32-bit lane. The activations are made
//!   unsigned by adding 128 (`a + 128` in `[1, 255]`), and `128 · Σ_k q_kj`,
//!   computed at load time, is subtracted from each sum afterwards.
//! - **avx2**: `vpmaddubsw` on `|a|` and `q` with `a`'s sign moved onto `q`
//!   (`vpsignb`): each pair sum is at most `2 · 127 · 127 = 32,258`, so the 16-bit
//!   intermediate never saturates; `vpmaddwd` by ones widens to 32 bits.
//! - **scalar**: plain loops, for every other CPU.
//!
//! The weights are packed in panels of 16 output columns: for each group of four
//! inputs `k..k+4`, the 16 columns' four bytes side by side (64 bytes, one AVX-512
//! register, two AVX2 ones), so that one broadcast of four activation bytes
//! multiplies a whole panel. `in` is padded to a multiple of 4 and `out` to one of
//! 16 with zero weights.
//!
//! The `unsafe` here is confined to the two SIMD kernels: calling a
//! `#[target_feature]` function (sound because [`Kernel::detect`] checked that the
//! CPU has the features, and [`Int8Linear::matmul_with`] refuses a kernel it lacks)
//! and unaligned vector loads and stores, whose bounds are checked with slice
//! indexing before the pointer is taken.

use candle_core::{bail, Result};
use pulp::{Simd, WithSimd};

use super::cpu_ops::{check_kernel, whole_rows, HostLinear};

/// Output columns per packed panel (one 512-bit register of i32 sums).
const PANEL: usize = 16;
/// Inputs per group: `vpdpbusd` adds four byte products into each lane.
const GROUP: usize = 4;
/// Bytes of one panel row group: 16 columns x 4 inputs.
const PANEL_GROUP_BYTES: usize = PANEL * GROUP;

/// Which integer kernel runs the products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512 VNNI (`vpdpbusd`).
    Avx512Vnni,
    /// AVX2 (`vpmaddubsw` + `vpmaddwd`).
    Avx2,
    /// Portable loops.
    Scalar,
}

impl Kernel {
    /// The fastest kernel this CPU can run.
    pub fn detect() -> Kernel {
        Kernel::available()
            .into_iter()
            .next()
            .unwrap_or(Kernel::Scalar)
    }

    /// Every kernel this CPU can run, fastest first (always ending with scalar).
    pub fn available() -> Vec<Kernel> {
        let mut out = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                out.push(Kernel::Avx512Vnni);
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                out.push(Kernel::Avx2);
            }
        }
        out.push(Kernel::Scalar);
        out
    }

    /// The name speed reports print.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512Vnni => "avx512vnni",
            Kernel::Avx2 => "avx2",
            Kernel::Scalar => "scalar",
        }
    }
}

impl std::str::FromStr for Kernel {
    type Err = crate::Error;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "avx512vnni" | "vnni" => Ok(Kernel::Avx512Vnni),
            "avx2" => Ok(Kernel::Avx2),
            "scalar" => Ok(Kernel::Scalar),
            other => Err(crate::Error::invalid(
                "int8 kernel",
                format!("{other:?}; expected avx512vnni, avx2 or scalar"),
            )),
        }
    }
}

/// A linear layer's weight (without bias) quantised per output channel and
/// packed for [`Kernel`]s.
pub struct Int8Linear {
    inputs: usize,
    outputs: usize,
    /// `inputs` rounded up to a multiple of [`GROUP`].
    inputs_padded: usize,
    /// Panels of [`PANEL`] columns, each `inputs_padded / 4` groups of 64 bytes.
    packed: Vec<i8>,
    /// The step of each output column (padding columns: 0).
    steps: Vec<f32>,
    /// `128 · Σ_k q_kj` per column, what the unsigned activations add.
    offsets: Vec<i32>,
    kernel: Kernel,
}

impl std::fmt::Debug for Int8Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Int8Linear")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("kernel", &self.kernel)
            .finish()
    }
}

/// `x / step` rounded to the nearest integer (ties to even) and clamped to ±127,
/// with `inv = 1 / step`. The rounding adds and subtracts 1.5·2^23, which leaves
/// an integer for any |value| < 2^22, without a call to `round` (which does not
/// vectorise without SSE4.1); a NaN becomes 0.
#[inline(always)]
fn quantize(x: f32, inv: f32) -> i8 {
    const ROUND: f32 = 12_582_912.0;
    let v = (x * inv).clamp(-127.0, 127.0);
    ((v + ROUND) - ROUND) as i8
}

/// The step that maps `max_abs` onto 127 (1 for an all-zero vector, whose
/// quantised values are then all 0).
#[inline(always)]
fn step_for(max_abs: f32) -> f32 {
    if max_abs > 0.0 && max_abs.is_finite() {
        max_abs / 127.0
    } else {
        1.0
    }
}

impl Int8Linear {
    /// Quantises `weight_t` (`inputs x outputs`, row-major: the transposed weight
    /// of a linear layer) for the fastest kernel of this CPU.
    pub fn new(weight_t: &[f32], inputs: usize, outputs: usize) -> Result<Int8Linear> {
        if inputs == 0 || outputs == 0 || weight_t.len() != inputs * outputs {
            bail!(
                "int8 linear: {} weights do not make a {inputs} x {outputs} matrix",
                weight_t.len()
            );
        }
        if weight_t.iter().any(|w| !w.is_finite()) {
            bail!("int8 linear: the weight holds a value that is not finite");
        }
        let inputs_padded = inputs.div_ceil(GROUP) * GROUP;
        let panels = outputs.div_ceil(PANEL);
        let groups = inputs_padded / GROUP;
        let mut steps = vec![0f32; panels * PANEL];
        for (j, step) in steps.iter_mut().enumerate().take(outputs) {
            let max_abs = (0..inputs)
                .map(|k| weight_t[k * outputs + j].abs())
                .fold(0.0f32, f32::max);
            *step = step_for(max_abs);
        }
        let mut packed = vec![0i8; panels * groups * PANEL_GROUP_BYTES];
        let mut offsets = vec![0i32; panels * PANEL];
        for (k, row) in weight_t.chunks_exact(outputs).enumerate() {
            let (g, t) = (k / GROUP, k % GROUP);
            for (j, &w) in row.iter().enumerate() {
                let q = quantize(w, 1.0 / steps[j]);
                let (p, c) = (j / PANEL, j % PANEL);
                packed[(p * groups + g) * PANEL_GROUP_BYTES + c * GROUP + t] = q;
                offsets[j] += 128 * i32::from(q);
            }
        }
        Ok(Int8Linear {
            inputs,
            outputs,
            inputs_padded,
            packed,
            steps,
            offsets,
            kernel: Kernel::detect(),
        })
    }

    /// The same layer run by `kernel`; an error when this CPU cannot run it.
    pub fn with_kernel(mut self, kernel: Kernel) -> Result<Int8Linear> {
        check_kernel("int8", kernel.name(), Kernel::available().contains(&kernel))?;
        self.kernel = kernel;
        Ok(self)
    }

    /// Inputs (rows of the weight).
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Outputs (columns of the weight).
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// The kernel [`matmul`](Self::matmul) runs.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// `x · W` for `x` of `rows x inputs` (row-major): `rows x outputs`.
    pub fn matmul(&self, x: &[f32]) -> Result<Vec<f32>> {
        self.matmul_with(self.kernel, x)
    }

    /// [`matmul`](Self::matmul) with a chosen kernel; one this CPU lacks is an
    /// error (tests force each kernel, the fallbacks included).
    pub fn matmul_with(&self, kernel: Kernel, x: &[f32]) -> Result<Vec<f32>> {
        check_kernel("int8", kernel.name(), Kernel::available().contains(&kernel))?;
        let rows = whole_rows("int8", x.len(), self.inputs)?;
        let (codes, row_steps) = self.quantize_rows(x);
        let width = self.steps.len();
        let mut sums = vec![0i32; rows * width];
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => {
                // SAFETY: `available()` saw avx512f, avx512bw and avx512vnni.
                unsafe { x86::vnni(self, &codes, rows, &mut sums) }
                for row in sums.chunks_exact_mut(width) {
                    for (s, &o) in row.iter_mut().zip(&self.offsets) {
                        *s -= o;
                    }
                }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                // SAFETY: `available()` saw avx2.
                unsafe { x86::avx2(self, &codes, rows, &mut sums) }
            }
            _ => scalar(self, &codes, rows, &mut sums),
        }
        let mut out = vec![0f32; rows * self.outputs];
        for ((o_row, s_row), &t) in out
            .chunks_exact_mut(self.outputs)
            .zip(sums.chunks_exact(width))
            .zip(&row_steps)
        {
            for ((o, &s), &step) in o_row.iter_mut().zip(s_row).zip(&self.steps) {
                *o = s as f32 * (t * step);
            }
        }
        Ok(out)
    }

    /// Each row of `x` quantised with its own step, padded to `inputs_padded`
    /// bytes; and the steps.
    fn quantize_rows(&self, x: &[f32]) -> (Vec<i8>, Vec<f32>) {
        let rows = x.len() / self.inputs;
        let mut codes = vec![0i8; rows * self.inputs_padded];
        let mut steps = vec![0f32; rows];
        pulp::Arch::new().dispatch(QuantizePass {
            x,
            inputs: self.inputs,
            codes: &mut codes,
            row_len: self.inputs_padded,
            steps: &mut steps,
        });
        (codes, steps)
    }

    fn groups(&self) -> usize {
        self.inputs_padded / GROUP
    }

    fn panels(&self) -> usize {
        self.steps.len() / PANEL
    }

    /// Panel `p`'s packed bytes.
    fn panel(&self, p: usize) -> &[i8] {
        let len = self.groups() * PANEL_GROUP_BYTES;
        &self.packed[p * len..(p + 1) * len]
    }
}

/// The per-row quantisation of [`Int8Linear::quantize_rows`] as a `WithSimd`, so
/// that its loops are compiled for the best instruction set present (see
/// `cpu_ops::BiasGeluPass` for why a struct).
struct QuantizePass<'a> {
    x: &'a [f32],
    inputs: usize,
    codes: &'a mut [i8],
    row_len: usize,
    steps: &'a mut [f32],
}

impl WithSimd for QuantizePass<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        for ((row, out), step) in self
            .x
            .chunks_exact(self.inputs)
            .zip(self.codes.chunks_exact_mut(self.row_len))
            .zip(self.steps.iter_mut())
        {
            let max_abs = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            *step = step_for(max_abs);
            let inv = 1.0 / *step;
            for (o, &v) in out.iter_mut().zip(row) {
                *o = quantize(v, inv);
            }
        }
    }
}

/// The portable kernel: `sums[i][j] = Σ_k a_ik · q_kj` (no offset).
fn scalar(lin: &Int8Linear, codes: &[i8], rows: usize, sums: &mut [i32]) {
    let width = lin.steps.len();
    let k = lin.inputs_padded;
    for p in 0..lin.panels() {
        let panel = lin.panel(p);
        for i in 0..rows {
            let a = &codes[i * k..(i + 1) * k];
            let mut acc = [0i32; PANEL];
            for (group, a4) in panel.chunks_exact(PANEL_GROUP_BYTES).zip(a.chunks_exact(4)) {
                for (c, w4) in group.chunks_exact(GROUP).enumerate() {
                    acc[c] += w4
                        .iter()
                        .zip(a4)
                        .map(|(&w, &a)| i32::from(w) * i32::from(a))
                        .sum::<i32>();
                }
            }
            sums[i * width + p * PANEL..i * width + (p + 1) * PANEL].copy_from_slice(&acc);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Int8Linear, GROUP, PANEL, PANEL_GROUP_BYTES};

    /// Four activation bytes at group `g` of a row as one 32-bit lane value.
    #[inline(always)]
    fn lane(row: &[i8], g: usize) -> i32 {
        let b = &row[g * GROUP..(g + 1) * GROUP];
        i32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])
    }

    /// The `R` activation rows from row `i`.
    #[inline(always)]
    fn rows_from<'a, const R: usize>(lin: &Int8Linear, codes: &'a [i8], i: usize) -> [&'a [i8]; R] {
        let len = lin.inputs_padded;
        let mut out: [&[i8]; R] = [&[]; R];
        for (r, row) in out.iter_mut().enumerate() {
            *row = &codes[(i + r) * len..(i + r + 1) * len];
        }
        out
    }

    /// Runs `$tile::<R, P>` for the runtime tile shape `($nr, $np)`, every `R` in
    /// 1..=6 and `P` in 1..=2 (the kernels' largest tiles; the last tiles of a
    /// matrix may be smaller).
    macro_rules! dispatch_tile {
        ($tile:ident, ($nr:expr, $np:expr), $($arg:expr),*) => {
            match ($nr, $np) {
                (6, 2) => $tile::<6, 2>($($arg),*),
                (5, 2) => $tile::<5, 2>($($arg),*),
                (4, 2) => $tile::<4, 2>($($arg),*),
                (3, 2) => $tile::<3, 2>($($arg),*),
                (2, 2) => $tile::<2, 2>($($arg),*),
                (1, 2) => $tile::<1, 2>($($arg),*),
                (6, 1) => $tile::<6, 1>($($arg),*),
                (5, 1) => $tile::<5, 1>($($arg),*),
                (4, 1) => $tile::<4, 1>($($arg),*),
                (3, 1) => $tile::<3, 1>($($arg),*),
                (2, 1) => $tile::<2, 1>($($arg),*),
                (1, 1) => $tile::<1, 1>($($arg),*),
                // The callers cut tiles of 1..=6 rows and 1..=2 panels.
                (nr, np) => unreachable!("no {nr} x {np} tile"),
            }
        };
    }

    /// Walks the output in tiles of up to `max_rows` rows and `max_panels` panels.
    #[inline(always)]
    fn tiles(
        rows: usize,
        panels: usize,
        max_rows: usize,
        max_panels: usize,
        mut f: impl FnMut(usize, usize, usize, usize),
    ) {
        let mut p = 0;
        while p < panels {
            let np = max_panels.min(panels - p);
            let mut i = 0;
            while i < rows {
                let nr = max_rows.min(rows - i);
                f(i, nr, p, np);
                i += nr;
            }
            p += np;
        }
    }

    /// `sums[i][j] = Σ_k (a_ik + 128) · q_kj`; the caller subtracts the offsets.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) fn vnni(lin: &Int8Linear, codes: &[i8], rows: usize, sums: &mut [i32]) {
        tiles(rows, lin.panels(), 6, 2, |i, nr, p, np| {
            // The closure inherits this function's target features.
            dispatch_tile!(vnni_tile, (nr, np), lin, codes, i, p, sums)
        });
    }

    /// One `R x P` tile (`R` rows, `P` panels of 16 columns): `R·P` accumulators.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn vnni_tile<const R: usize, const P: usize>(
        lin: &Int8Linear,
        codes: &[i8],
        i: usize,
        p: usize,
        sums: &mut [i32],
    ) {
        let panel_len = lin.groups() * PANEL_GROUP_BYTES;
        let w = &lin.packed[p * panel_len..(p + P) * panel_len];
        let a_rows = rows_from::<R>(lin, codes, i);
        let flip = _mm512_set1_epi32(0x8080_8080u32 as i32);
        let mut acc = [[_mm512_setzero_si512(); P]; R];
        for g in 0..lin.groups() {
            let mut wv = [_mm512_setzero_si512(); P];
            for (q, v) in wv.iter_mut().enumerate() {
                let at = q * panel_len + g * PANEL_GROUP_BYTES;
                let bytes = &w[at..at + PANEL_GROUP_BYTES];
                // SAFETY: `bytes` is 64 bytes long; loadu has no alignment need.
                *v = unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) };
            }
            for (acc_row, a_row) in acc.iter_mut().zip(&a_rows) {
                // a + 128 as unsigned bytes: the top bit of each byte flipped.
                let a = _mm512_xor_si512(_mm512_set1_epi32(lane(a_row, g)), flip);
                for (s, &v) in acc_row.iter_mut().zip(&wv) {
                    *s = _mm512_dpbusd_epi32(*s, a, v);
                }
            }
        }
        let width = lin.steps.len();
        for (r, acc_row) in acc.iter().enumerate() {
            for (q, &s) in acc_row.iter().enumerate() {
                let at = (i + r) * width + (p + q) * PANEL;
                let out = &mut sums[at..at + PANEL];
                // SAFETY: `out` holds 16 i32 (64 bytes).
                unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), s) };
            }
        }
    }

    /// `sums[i][j] = Σ_k a_ik · q_kj`.
    #[target_feature(enable = "avx2")]
    pub(super) fn avx2(lin: &Int8Linear, codes: &[i8], rows: usize, sums: &mut [i32]) {
        tiles(rows, lin.panels(), 4, 1, |i, nr, p, np| {
            // The closure inherits this function's target feature.
            dispatch_tile!(avx2_tile, (nr, np), lin, codes, i, p, sums)
        });
    }

    /// One `R x P` tile: each panel is two 256-bit halves, so `2·R·P` accumulators
    /// (at most 8 of the 16 registers).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn avx2_tile<const R: usize, const P: usize>(
        lin: &Int8Linear,
        codes: &[i8],
        i: usize,
        p: usize,
        sums: &mut [i32],
    ) {
        let panel_len = lin.groups() * PANEL_GROUP_BYTES;
        let w = &lin.packed[p * panel_len..(p + P) * panel_len];
        let a_rows = rows_from::<R>(lin, codes, i);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[[_mm256_setzero_si256(); 2]; P]; R];
        for g in 0..lin.groups() {
            let mut wv = [[_mm256_setzero_si256(); 2]; P];
            for (q, v) in wv.iter_mut().enumerate() {
                let at = q * panel_len + g * PANEL_GROUP_BYTES;
                let bytes = &w[at..at + PANEL_GROUP_BYTES];
                // SAFETY: `bytes` is 64 bytes long: two unaligned 32-byte loads.
                *v = unsafe {
                    [
                        _mm256_loadu_si256(bytes.as_ptr().cast()),
                        _mm256_loadu_si256(bytes[32..].as_ptr().cast()),
                    ]
                };
            }
            for (acc_row, a_row) in acc.iter_mut().zip(&a_rows) {
                let a = _mm256_set1_epi32(lane(a_row, g));
                let a_abs = _mm256_sign_epi8(a, a);
                for (s2, v2) in acc_row.iter_mut().zip(&wv) {
                    for (s, &v) in s2.iter_mut().zip(v2) {
                        // |a| · (q with a's sign): pair sums stay within i16.
                        let pairs = _mm256_maddubs_epi16(a_abs, _mm256_sign_epi8(v, a));
                        *s = _mm256_add_epi32(*s, _mm256_madd_epi16(pairs, ones));
                    }
                }
            }
        }
        let width = lin.steps.len();
        for (r, acc_row) in acc.iter().enumerate() {
            for (q, s2) in acc_row.iter().enumerate() {
                let at = (i + r) * width + (p + q) * PANEL;
                let out = &mut sums[at..at + PANEL];
                // SAFETY: `out` holds 16 i32: two unaligned 32-byte stores.
                unsafe {
                    _mm256_storeu_si256(out.as_mut_ptr().cast(), s2[0]);
                    _mm256_storeu_si256(out[8..].as_mut_ptr().cast(), s2[1]);
                }
            }
        }
    }
}

impl HostLinear for Int8Linear {
    fn inputs(&self) -> usize {
        self.inputs
    }

    fn outputs(&self) -> usize {
        self.outputs
    }

    fn product(&self, x: &[f32]) -> Result<Vec<f32>> {
        self.matmul(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1) with a few large outliers.
    fn values(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..n)
            .map(|i| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let v = ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
                if i % 97 == 0 {
                    v * 8.0
                } else {
                    v
                }
            })
            .collect()
    }

    fn exact(x: &[f32], w: &[f32], inputs: usize, outputs: usize) -> Vec<f32> {
        let rows = x.len() / inputs;
        let mut out = vec![0f32; rows * outputs];
        for i in 0..rows {
            for k in 0..inputs {
                let a = x[i * inputs + k];
                for j in 0..outputs {
                    out[i * outputs + j] += a * w[k * outputs + j];
                }
            }
        }
        out
    }

    #[test]
    fn every_kernel_gives_the_same_bits() {
        // Shapes with and without padding of inputs (to 4) and outputs (to 16),
        // and row counts that leave partial tiles.
        for (rows, inputs, outputs) in [(1, 4, 16), (7, 37, 45), (13, 384, 64), (3, 9, 1)] {
            let w = values(inputs as u64, inputs * outputs);
            let x = values(rows as u64 + 100, rows * inputs);
            let lin = Int8Linear::new(&w, inputs, outputs).unwrap();
            let want = lin.matmul_with(Kernel::Scalar, &x).unwrap();
            for kernel in Kernel::available() {
                let got = lin.matmul_with(kernel, &x).unwrap();
                assert_eq!(got, want, "{kernel:?} on {rows}x{inputs}x{outputs}");
            }
        }
    }

    #[test]
    fn the_product_is_within_the_quantisation_bound() {
        let (rows, inputs, outputs) = (9, 96, 40);
        let w = values(1, inputs * outputs);
        let x = values(2, rows * inputs);
        let lin = Int8Linear::new(&w, inputs, outputs).unwrap();
        let got = lin.matmul(&x).unwrap();
        let want = exact(&x, &w, inputs, outputs);
        for i in 0..rows {
            let row = &x[i * inputs..(i + 1) * inputs];
            let t = step_for(row.iter().fold(0.0f32, |m, v| m.max(v.abs())));
            for j in 0..outputs {
                let col: Vec<f32> = (0..inputs).map(|k| w[k * outputs + j]).collect();
                let s = lin.steps[j];
                // |x·w - x̂·ŵ| ≤ Σ |x||ŵ - w| + |x̂ - x||ŵ| ≤ Σ (|x| s/2 + t/2 (|w| + s/2)).
                let bound: f32 = row
                    .iter()
                    .zip(&col)
                    .map(|(a, b)| a.abs() * s / 2.0 + t / 2.0 * (b.abs() + s / 2.0))
                    .sum();
                let err = (got[i * outputs + j] - want[i * outputs + j]).abs();
                assert!(err <= bound * 1.001 + 1e-5, "[{i}][{j}]: {err} > {bound}");
            }
        }
    }

    #[test]
    fn zero_rows_and_columns_give_zeros() {
        let (inputs, outputs) = (8, 20);
        let mut w = values(3, inputs * outputs);
        for k in 0..inputs {
            w[k * outputs + 5] = 0.0;
        }
        let mut x = values(4, 2 * inputs);
        x[..inputs].fill(0.0);
        let lin = Int8Linear::new(&w, inputs, outputs).unwrap();
        for kernel in Kernel::available() {
            let y = lin.matmul_with(kernel, &x).unwrap();
            assert!(y[..outputs].iter().all(|&v| v == 0.0), "{kernel:?}");
            assert_eq!(y[outputs + 5], 0.0, "{kernel:?}");
        }
    }

    #[test]
    fn bad_shapes_and_values_are_errors() {
        assert!(Int8Linear::new(&[0.0; 6], 4, 2).is_err());
        assert!(Int8Linear::new(&[], 0, 0).is_err());
        assert!(Int8Linear::new(&[f32::NAN, 0.0], 1, 2).is_err());
        let lin = Int8Linear::new(&[1.0; 8], 4, 2).unwrap();
        assert!(lin.matmul(&[1.0; 6]).is_err());
    }

    #[test]
    fn the_candle_op_keeps_leading_dimensions() {
        use candle_core::Tensor;
        let (inputs, outputs) = (12, 5);
        let w = values(5, inputs * outputs);
        let lin = Int8Linear::new(&w, inputs, outputs).unwrap();
        let x = Tensor::from_vec(
            values(6, 2 * 3 * inputs),
            (2, 3, inputs),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let y = super::super::cpu_ops::host_matmul(&x, &lin).unwrap();
        assert_eq!(y.dims(), &[2, 3, outputs]);
        let flat = lin
            .matmul(&x.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .unwrap();
        assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), flat);
    }
}
