//! int8 scalar quantisation of the vectors the HNSW graph walks over.
//!
//! One global, symmetric scale: a component `x` is stored as
//! `round(clamp(x / step, -127, 127))`, and the inner product of two quantised
//! vectors is `step² · Σ aᵢbᵢ`, an integer dot product. The scale is calibrated
//! on the vectors being indexed: `step = c / 127` where `c` is the
//! [`CALIBRATION_QUANTILE`] of `|x|` over their components, so a handful of outlier
//! components are clipped instead of coarsening every other one. A global scale
//! (rather than one per dimension) keeps the graph's distance a pure integer dot
//! product between any two stored vectors, which is what makes it cheap.
//!
//! The graph only chooses candidates: the engine rescores every candidate the walk
//! kept with the exact float32 vector from `vectors.f32`, so the final order and
//! scores are exact for the rescored set.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the vectors held by the HNSW graph are stored. New indexes use
/// [`HnswParams::default`](super::HnswParams)'s choice, int8; a manifest or a
/// parameter set written before the field existed means f32
/// ([`Quantization::when_absent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// Float32, as computed (4 bytes a component).
    F32,
    /// int8 with one calibrated global scale (1 byte a component); candidates are
    /// rescored with the exact float32 vectors.
    Int8,
}

impl Quantization {
    /// What a saved manifest or parameter set without the field means: f32, the
    /// only kind there was before int8 graphs (format version 3).
    pub fn when_absent() -> Self {
        Quantization::F32
    }

    /// The name used by the CLI and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Quantization::F32 => "f32",
            Quantization::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for Quantization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Quantization {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Quantization::F32),
            "int8" | "i8" => Ok(Quantization::Int8),
            other => Err(Error::invalid(
                "quantization",
                format!("{other:?} is not one of f32, int8"),
            )),
        }
    }
}

/// The share of components left unclipped by calibration: the 99.99th percentile
/// of `|x|`. Unit-length sentence embeddings have a few dimensions with much larger
/// values than the rest; clipping the top 0.01% of components costs far less
/// accuracy than a step sized for the single largest one.
pub const CALIBRATION_QUANTILE: f64 = 0.9999;

/// At most this many components are sampled (evenly spaced) for calibration.
const CALIBRATION_SAMPLE: usize = 1 << 20;

/// The largest stored magnitude.
const LEVELS: f32 = 127.0;

/// A calibrated int8 scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Int8Scale {
    step: f32,
}

impl Int8Scale {
    /// A scale with the given step (the value of one integer unit), which must be
    /// a finite positive number.
    pub fn from_step(step: f32) -> Result<Self> {
        if step.is_finite() && step > 0.0 {
            Ok(Int8Scale { step })
        } else {
            Err(Error::invalid(
                "int8 step",
                format!("{step} is not a finite positive number"),
            ))
        }
    }

    /// Calibrates on `vectors` (see the module docs). Vectors of zeros only, or no
    /// vectors, give the step of unit-range components (1/127).
    pub fn calibrate(vectors: &[Vec<f32>]) -> Self {
        let total: usize = vectors.iter().map(Vec::len).sum();
        let stride = total.div_ceil(CALIBRATION_SAMPLE).max(1);
        let mut sample: Vec<f32> = vectors
            .iter()
            .flatten()
            .step_by(stride)
            .map(|x| x.abs())
            .filter(|x| x.is_finite())
            .collect();
        let clip = if sample.is_empty() {
            0.0
        } else {
            let i = ((sample.len() - 1) as f64 * CALIBRATION_QUANTILE).round() as usize;
            *sample.select_nth_unstable_by(i, f32::total_cmp).1
        };
        let clip = if clip > 0.0 { clip } else { 1.0 };
        Int8Scale {
            step: clip / LEVELS,
        }
    }

    /// The value of one integer unit.
    pub fn step(&self) -> f32 {
        self.step
    }

    /// `v` quantised: each component divided by the step, rounded, clamped to
    /// ±127 (NaN becomes 0).
    pub fn quantize(&self, v: &[f32]) -> Vec<i8> {
        let inv = 1.0 / self.step;
        v.iter()
            .map(|&x| (x * inv).round().clamp(-LEVELS, LEVELS) as i8)
            .collect()
    }

    /// The float vector a quantised one stands for.
    pub fn dequantize(&self, q: &[i8]) -> Vec<f32> {
        q.iter().map(|&x| f32::from(x) * self.step).collect()
    }

    /// The approximate inner product of the vectors `a` and `b` stand for.
    pub fn dot(&self, a: &[i8], b: &[i8]) -> f32 {
        dot_i8(a, b) as f32 * self.step * self.step
    }
}

/// Integer inner product of two equally long slices (16 independent i32
/// accumulators so the compiler vectorises it; no overflow below 2^31 / 127² ≈
/// 133,000 components, far above any embedding width).
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0i32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in ca.by_ref().zip(cb.by_ref()) {
        for j in 0..16 {
            acc[j] += i32::from(x[j]) * i32::from(y[j]);
        }
    }
    let tail: i32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum();
    acc.iter().sum::<i32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = SplitMix64::new(seed);
        (0..n)
            .map(|_| {
                let mut v: Vec<f32> = (0..dim)
                    .map(|_| rng.next_f64() as f32 * 2.0 - 1.0)
                    .collect();
                // A few heavier dimensions, as sentence embeddings have.
                v[0] *= 4.0;
                v[1] *= 3.0;
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                v
            })
            .collect()
    }

    #[test]
    fn round_trip_error_is_at_most_half_a_step_inside_the_clip_range() {
        let vs = unit_vectors(500, 64, 7);
        let s = Int8Scale::calibrate(&vs);
        let clip = s.step() * LEVELS;
        let mut clipped = 0usize;
        for v in &vs {
            let back = s.dequantize(&s.quantize(v));
            for (x, y) in v.iter().zip(&back) {
                if x.abs() <= clip {
                    assert!((x - y).abs() <= s.step() / 2.0 + 1e-7, "{x} -> {y}");
                } else {
                    clipped += 1;
                    // A clipped component keeps its sign and lands on the clip value.
                    assert_eq!(y.abs(), clip);
                    assert_eq!(x.signum(), y.signum());
                }
            }
        }
        // The calibration quantile bounds how many components are clipped.
        let total = 500 * 64;
        assert!(
            clipped as f64 <= total as f64 * (1.0 - CALIBRATION_QUANTILE) + 2.0,
            "{clipped} of {total} clipped"
        );
    }

    #[test]
    fn quantised_dot_stays_close_to_the_float_dot() {
        let vs = unit_vectors(200, 384, 11);
        let s = Int8Scale::calibrate(&vs);
        let qs: Vec<Vec<i8>> = vs.iter().map(|v| s.quantize(v)).collect();
        let mut worst = 0f32;
        for i in 0..vs.len() {
            for j in (i..vs.len()).step_by(7) {
                let exact = crate::vector::dot(&vs[i], &vs[j]);
                worst = worst.max((s.dot(&qs[i], &qs[j]) - exact).abs());
            }
        }
        // Each product of two components is off by at most step·(|a|+|b|)/2 +
        // step²/4 (without clipping); summed over unit vectors that is below
        // step·√dim + dim·step²/4.
        let bound = s.step() * (384f32).sqrt() + 384.0 * s.step() * s.step() / 4.0;
        assert!(worst <= bound, "worst error {worst}, bound {bound}");
        assert!(worst < 0.02, "worst error {worst}");
    }

    #[test]
    fn dot_i8_matches_a_plain_sum_on_every_length() {
        for n in [0usize, 1, 15, 16, 17, 33, 384] {
            let a: Vec<i8> = (0..n).map(|i| ((i * 37) % 255) as i32 as i8).collect();
            let b: Vec<i8> = (0..n)
                .map(|i| (127 - (i * 11 % 255) as i32) as i8)
                .collect();
            let plain: i32 = a.iter().zip(&b).map(|(&x, &y)| x as i32 * y as i32).sum();
            assert_eq!(dot_i8(&a, &b), plain, "n = {n}");
        }
        let extreme = vec![-127i8; 384];
        assert_eq!(dot_i8(&extreme, &extreme), 384 * 127 * 127);
    }

    #[test]
    fn calibration_handles_degenerate_input() {
        assert_eq!(Int8Scale::calibrate(&[]).step(), 1.0 / LEVELS);
        assert_eq!(Int8Scale::calibrate(&[vec![0.0; 8]]).step(), 1.0 / LEVELS);
        let s = Int8Scale::calibrate(&[vec![f32::NAN, 0.5, -0.25]]);
        assert!(s.step().is_finite() && s.step() > 0.0);
        assert_eq!(s.quantize(&[f32::NAN])[0], 0);
        assert!(Int8Scale::from_step(0.0).is_err());
        assert!(Int8Scale::from_step(f32::NAN).is_err());
        assert!(Int8Scale::from_step(-1.0).is_err());
        assert_eq!("INT8".parse::<Quantization>().unwrap(), Quantization::Int8);
        assert!("int4".parse::<Quantization>().is_err());
    }
}
