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

use std::mem::MaybeUninit;

use candle_core::{bail, Result};
use pulp::{Simd, WithSimd};

use super::cpu_ops::{check_kernel, drop_padding, lane_max, padded_bias, whole_rows, HostLinear};

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
/// with `inv = 1 / step`, as its two's-complement byte. Adding 1.5·2^23 to a value
/// of magnitude below 2^22 leaves the rounded integer in the low mantissa bits
/// (the float's bits are `0x4B40_0000 + n`), so the low byte of the bits is `n` as
/// an `i8`: no float-to-integer conversion, which keeps the loops over it
/// vectorised. A NaN becomes 0 (its bits end in a zero byte).
#[inline(always)]
fn quantize(x: f32, inv: f32) -> i8 {
    const ROUND: f32 = 12_582_912.0;
    let v = (x * inv).clamp(-127.0, 127.0);
    (v + ROUND).to_bits() as u8 as i8
}

/// The largest `|v|` in `values` (0 for none; NaNs are skipped).
#[inline(always)]
fn max_abs(values: &[f32]) -> f32 {
    lane_max(values, 0.0, f32::abs)
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

/// The activations of one product, quantised per row: each row as
/// `inputs_padded / 4` little-endian words of four codes (one `vpdpbusd` lane),
/// and each row's step.
struct Activations {
    words: Vec<i32>,
    steps: Vec<f32>,
    /// Words per row.
    groups: usize,
}

impl Activations {
    /// Row `i`'s words.
    #[inline(always)]
    fn row(&self, i: usize) -> &[i32] {
        &self.words[i * self.groups..(i + 1) * self.groups]
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
        self.matmul_bias_with(kernel, x, None)
    }

    /// `x · W + bias` (`bias`: one value per output) with a chosen kernel: the
    /// bias is added as each output is written, without another pass.
    pub fn matmul_bias_with(
        &self,
        kernel: Kernel,
        x: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        check_kernel("int8", kernel.name(), Kernel::available().contains(&kernel))?;
        let rows = whole_rows("int8", x.len(), self.inputs)?;
        let width = self.steps.len();
        let bias_padded = padded_bias("int8", bias, self.outputs, width)?;
        let acts = self.quantize_rows(x, kernel == Kernel::Avx512Vnni);
        // Each kernel writes `y_ij = (Σ_k a_ik · q_kj) as f32 · (t_i · s_j) + b_j`
        // for every column of every panel, padding included; the same i32 sums
        // and the same float operations, so the kernels agree bit for bit.
        // Not zeroed first: the kernels write every value (zeroing the FFN's
        // `rows x 1536` outputs cost about 5% of an int8 batch).
        let len = rows * width;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        let spare = &mut out.spare_capacity_mut()[..len];
        let bias = &bias_padded;
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => {
                // SAFETY: `available()` saw avx512f, avx512bw and avx512vnni.
                unsafe { x86::vnni(self, &acts, bias, spare) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                // SAFETY: `available()` saw avx2.
                unsafe { x86::avx2(self, &acts, bias, spare) }
            }
            _ => scalar(self, &acts, bias, spare),
        }
        // SAFETY: every kernel writes all `len` values: the scalar one loops over
        // every panel of every row, and the SIMD ones store every column of every
        // tile, whose positions (`tiles`) cover all rows and panels.
        unsafe { out.set_len(len) };
        drop_padding(&mut out, rows, width, self.outputs);
        Ok(out)
    }

    /// Each row of `x` quantised with its own step and packed in words of four
    /// codes, `inputs` padded with zero codes to `inputs_padded`. With
    /// `unsigned`, every code is stored plus 128 (its top bit flipped), as
    /// `vpdpbusd` takes its first operand unsigned.
    fn quantize_rows(&self, x: &[f32], unsigned: bool) -> Activations {
        let rows = x.len() / self.inputs;
        let groups = self.groups();
        let mut acts = Activations {
            words: vec![0i32; rows * groups],
            steps: vec![0f32; rows],
            groups,
        };
        pulp::Arch::new().dispatch(QuantizePass {
            x,
            inputs: self.inputs,
            flip: if unsigned { 0x8080_8080u32 as i32 } else { 0 },
            acts: &mut acts,
        });
        acts
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
    /// XORed into every word (0, or `0x80808080` for unsigned codes).
    flip: i32,
    acts: &'a mut Activations,
}

impl WithSimd for QuantizePass<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let groups = self.acts.groups;
        let mut codes = vec![0i8; groups * GROUP];
        for ((row, words), step) in self
            .x
            .chunks_exact(self.inputs)
            .zip(self.acts.words.chunks_exact_mut(groups))
            .zip(self.acts.steps.iter_mut())
        {
            *step = step_for(max_abs(row));
            let inv = 1.0 / *step;
            for (c, &v) in codes.iter_mut().zip(row) {
                *c = quantize(v, inv);
            }
            for (w, c) in words.iter_mut().zip(codes.chunks_exact(GROUP)) {
                *w = i32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8])
                    ^ self.flip;
            }
        }
    }
}

/// `(sum as f32) · (t · step) + bias`: an output from its integer sum, the row's
/// step `t`, the column's step and bias (the SIMD kernels do the same
/// operations, lane by lane, without fusing the multiply and the add).
#[inline(always)]
fn finish(sum: i32, t: f32, step: f32, bias: f32) -> f32 {
    sum as f32 * (t * step) + bias
}

/// The portable kernel.
fn scalar(lin: &Int8Linear, acts: &Activations, bias: &[f32], out: &mut [MaybeUninit<f32>]) {
    let width = lin.steps.len();
    for p in 0..lin.panels() {
        let panel = lin.panel(p);
        let steps = &lin.steps[p * PANEL..(p + 1) * PANEL];
        for (i, o_row) in out.chunks_exact_mut(width).enumerate() {
            let mut acc = [0i32; PANEL];
            for (group, &word) in panel.chunks_exact(PANEL_GROUP_BYTES).zip(acts.row(i)) {
                let a4 = word.to_le_bytes();
                for (c, w4) in group.chunks_exact(GROUP).enumerate() {
                    acc[c] += w4
                        .iter()
                        .zip(a4)
                        .map(|(&w, a)| i32::from(w) * i32::from(a as i8))
                        .sum::<i32>();
                }
            }
            let t = acts.steps[i];
            let panel_bias = &bias[p * PANEL..(p + 1) * PANEL];
            for ((o, &s), (&step, &b)) in o_row[p * PANEL..(p + 1) * PANEL]
                .iter_mut()
                .zip(&acc)
                .zip(steps.iter().zip(panel_bias))
            {
                o.write(finish(s, t, step, b));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::super::tiling::{dispatch_tile, tiles};
    use super::{Activations, Int8Linear, PANEL, PANEL_GROUP_BYTES};

    /// The `R` activation rows from row `i`, each `groups` words long.
    #[inline(always)]
    fn rows_from<const R: usize>(acts: &Activations, i: usize) -> [&[i32]; R] {
        let mut out: [&[i32]; R] = [&[]; R];
        for (r, row) in out.iter_mut().enumerate() {
            *row = acts.row(i + r);
        }
        out
    }

    /// The VNNI kernel's largest tile: 4 rows x 3 panels, 12 accumulators. Larger
    /// tiles (8 x 3, 6 x 2, 8 x 2, 4 x 4) measured no faster on Home Depot titles,
    /// and 8 x 3 made the compiler spill accumulators to the stack.
    const VNNI_ROWS: usize = 4;
    const VNNI_PANELS: usize = 3;
    /// The AVX2 kernel's largest tile: 4 rows x 1 panel, 8 of 16 registers.
    const AVX2_ROWS: usize = 4;
    const AVX2_PANELS: usize = 1;
    // The `dispatch_tile!` lists in `vnni` and `avx2` name every size up to these.
    const _: () = assert!(VNNI_ROWS == 4 && VNNI_PANELS == 3);
    const _: () = assert!(AVX2_ROWS == 4 && AVX2_PANELS == 1);

    /// `out = Σ_k a_ik · q_kj` scaled; `acts` hold unsigned codes (`a + 128`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) fn vnni(
        lin: &Int8Linear,
        acts: &Activations,
        bias: &[f32],
        out: &mut [MaybeUninit<f32>],
    ) {
        let rows = acts.steps.len();
        tiles(
            rows,
            lin.panels(),
            VNNI_ROWS,
            VNNI_PANELS,
            |i, nr, p, np| {
                // The closure inherits this function's target features.
                dispatch_tile!(
                    vnni_tile,
                    (nr, np),
                    [1 2 3 4],
                    [1 2 3],
                    (lin, acts, bias, i, p, out)
                )
            },
        );
    }

    /// One `R x P` tile (`R` rows, `P` panels of 16 columns): `R·P` accumulators.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn vnni_tile<const R: usize, const P: usize>(
        lin: &Int8Linear,
        acts: &Activations,
        bias: &[f32],
        i: usize,
        p: usize,
        out: &mut [MaybeUninit<f32>],
    ) {
        let groups = lin.groups();
        let panel_len = groups * PANEL_GROUP_BYTES;
        let w = &lin.packed[p * panel_len..(p + P) * panel_len];
        // Cut to `groups` words so that indexing by `g < groups` needs no checks.
        let a_rows = rows_from::<R>(acts, i).map(|row| &row[..groups]);
        let mut acc = [[_mm512_setzero_si512(); P]; R];
        for g in 0..groups {
            let mut wv = [_mm512_setzero_si512(); P];
            for (q, v) in wv.iter_mut().enumerate() {
                let at = q * panel_len + g * PANEL_GROUP_BYTES;
                let bytes = &w[at..at + PANEL_GROUP_BYTES];
                // SAFETY: `bytes` is 64 bytes long; loadu has no alignment need.
                *v = unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) };
            }
            for (acc_row, a_row) in acc.iter_mut().zip(&a_rows) {
                let a = _mm512_set1_epi32(a_row[g]);
                for (s, &v) in acc_row.iter_mut().zip(&wv) {
                    *s = _mm512_dpbusd_epi32(*s, a, v);
                }
            }
        }
        let width = lin.steps.len();
        for (r, acc_row) in acc.iter().enumerate() {
            let t = _mm512_set1_ps(acts.steps[i + r]);
            for (q, &s) in acc_row.iter().enumerate() {
                let col = (p + q) * PANEL;
                let offsets = &lin.offsets[col..col + PANEL];
                let steps = &lin.steps[col..col + PANEL];
                let b = &bias[col..col + PANEL];
                let at = (i + r) * width + col;
                let dst = &mut out[at..at + PANEL];
                // SAFETY: each slice holds 16 i32 or f32 (64 bytes); no alignment need.
                unsafe {
                    let sum = _mm512_sub_epi32(s, _mm512_loadu_si512(offsets.as_ptr().cast()));
                    let scale = _mm512_mul_ps(t, _mm512_loadu_ps(steps.as_ptr()));
                    let y = _mm512_mul_ps(_mm512_cvtepi32_ps(sum), scale);
                    let y = _mm512_add_ps(y, _mm512_loadu_ps(b.as_ptr()));
                    _mm512_storeu_ps(dst.as_mut_ptr().cast(), y);
                }
            }
        }
    }

    /// `out = Σ_k a_ik · q_kj` scaled; `acts` hold signed codes.
    #[target_feature(enable = "avx2")]
    pub(super) fn avx2(
        lin: &Int8Linear,
        acts: &Activations,
        bias: &[f32],
        out: &mut [MaybeUninit<f32>],
    ) {
        let rows = acts.steps.len();
        tiles(
            rows,
            lin.panels(),
            AVX2_ROWS,
            AVX2_PANELS,
            |i, nr, p, np| {
                // The closure inherits this function's target feature.
                dispatch_tile!(avx2_tile, (nr, np), [1 2 3 4], [1], (lin, acts, bias, i, p, out))
            },
        );
    }

    /// One `R x P` tile: each panel is two 256-bit halves, so `2·R·P` accumulators
    /// (at most 8 of the 16 registers).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn avx2_tile<const R: usize, const P: usize>(
        lin: &Int8Linear,
        acts: &Activations,
        bias: &[f32],
        i: usize,
        p: usize,
        out: &mut [MaybeUninit<f32>],
    ) {
        let groups = lin.groups();
        let panel_len = groups * PANEL_GROUP_BYTES;
        let w = &lin.packed[p * panel_len..(p + P) * panel_len];
        let a_rows = rows_from::<R>(acts, i).map(|row| &row[..groups]);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[[_mm256_setzero_si256(); 2]; P]; R];
        for g in 0..groups {
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
                let a = _mm256_set1_epi32(a_row[g]);
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
            let t = _mm256_set1_ps(acts.steps[i + r]);
            for (q, s2) in acc_row.iter().enumerate() {
                let col = (p + q) * PANEL;
                let steps = &lin.steps[col..col + PANEL];
                let b = &bias[col..col + PANEL];
                let at = (i + r) * width + col;
                let dst = &mut out[at..at + PANEL];
                for (h, &s) in s2.iter().enumerate() {
                    // SAFETY: `steps`, `b` and `dst` hold 16 f32: two 8-lane halves,
                    // unaligned loads and stores.
                    unsafe {
                        let scale = _mm256_mul_ps(t, _mm256_loadu_ps(steps[h * 8..].as_ptr()));
                        let y = _mm256_mul_ps(_mm256_cvtepi32_ps(s), scale);
                        let y = _mm256_add_ps(y, _mm256_loadu_ps(b[h * 8..].as_ptr()));
                        _mm256_storeu_ps(dst[h * 8..].as_mut_ptr().cast(), y);
                    }
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

    fn product(&self, x: &[f32], bias: Option<&[f32]>) -> Result<Vec<f32>> {
        self.matmul_bias_with(self.kernel, x, bias)
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
    fn the_bias_is_added_by_every_kernel_alike() {
        for (rows, inputs, outputs) in [(5, 37, 45), (9, 384, 64)] {
            let w = values(inputs as u64 + 7, inputs * outputs);
            let x = values(rows as u64 + 200, rows * inputs);
            let bias = values(3, outputs);
            let lin = Int8Linear::new(&w, inputs, outputs).unwrap();
            let plain = lin.matmul_with(Kernel::Scalar, &x).unwrap();
            let want: Vec<f32> = plain
                .iter()
                .enumerate()
                .map(|(n, v)| v + bias[n % outputs])
                .collect();
            for kernel in Kernel::available() {
                let got = lin.matmul_bias_with(kernel, &x, Some(&bias)).unwrap();
                assert_eq!(got, want, "{kernel:?} on {rows}x{inputs}x{outputs}");
            }
            assert!(lin
                .matmul_bias_with(Kernel::Scalar, &x, Some(&bias[1..]))
                .is_err());
        }
    }

    #[test]
    fn quantisation_rounds_half_to_even_clamps_and_zeroes_nan() {
        for (x, want) in [
            (0.0, 0),
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (-2.4, -2),
            (126.6, 127),
            (300.0, 127),
            (-300.0, -127),
            (f32::INFINITY, 127),
            (f32::NEG_INFINITY, -127),
            (f32::NAN, 0),
        ] {
            assert_eq!(quantize(x, 1.0), want, "{x}");
        }
        // Against the rounding the bit trick replaces, over a fine grid.
        for n in -130_000..=130_000 {
            let x = n as f32 / 1000.0;
            let want = x.round_ties_even().clamp(-127.0, 127.0) as i8;
            assert_eq!(quantize(x, 1.0), want, "{x}");
        }
    }

    #[test]
    fn the_largest_magnitude_is_found_in_every_lane_and_the_tail() {
        for len in [0, 1, 15, 16, 17, 33, 384] {
            for at in 0..len {
                let mut v = values(len as u64, len);
                for x in &mut v {
                    *x = x.clamp(-1.0, 1.0);
                }
                v[at] = -5.0;
                assert_eq!(max_abs(&v), 5.0, "len {len}, at {at}");
            }
        }
        assert_eq!(max_abs(&[]), 0.0);
        assert_eq!(max_abs(&[f32::NAN, -2.0]), 2.0);
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
        let y = super::super::cpu_ops::host_matmul(&x, &lin, None).unwrap();
        assert_eq!(y.dims(), &[2, 3, outputs]);
        let flat = lin
            .matmul(&x.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .unwrap();
        assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), flat);
    }
}
