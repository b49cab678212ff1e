//! The number format the encoder's weights and activations are held in: `f32`
//! (the default), `f16` / `bf16` for GPUs, whose tensor cores run half-precision
//! matrix products many times faster than f32 ones, or `int8` for CPUs: the
//! linear layers' weights quantised per output channel and their inputs per
//! token, multiplied in integers (`int8.rs`), everything else in f32.
//!
//! Half precision changes the embeddings slightly (README gives the measured
//! cosine to f32); it is the same model, so an index built at one precision
//! answers queries encoded at another. On the CPU, f16 runs through candle's
//! generic kernels and is slower than f32 (it is there so that the GPU path can
//! be tested on any machine); bf16 runs the fast f32 pass with its linear layers
//! in bfloat16 (`bf16.rs`).

use std::fmt;
use std::str::FromStr;

use candle_core::DType;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Weights and activations in f32, f16 or bf16, or int8 linear layers.
/// Normalisation and softmax sums, pooling and the final L2 normalisation are
/// accumulated in f32 whatever the choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats (the default; the fused CPU kernels run on these).
    #[default]
    F32,
    /// IEEE half precision: 10-bit mantissa, range ±65504.
    F16,
    /// bfloat16: f32's range with an 7-bit mantissa.
    Bf16,
    /// int8 linear layers on the CPU (AVX-512 VNNI, AVX2 or portable kernels,
    /// picked at run time); activations between them, attention, normalisation
    /// and pooling in f32.
    Int8,
}

impl Precision {
    /// The name `--dtype` takes.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }

    /// The format candle holds the weights and activations in (int8 layers keep
    /// f32 tensors around their integer products).
    pub(crate) fn dtype(self) -> DType {
        match self {
            Precision::F32 | Precision::Int8 => DType::F32,
            Precision::F16 => DType::F16,
            Precision::Bf16 => DType::BF16,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "f16" | "fp16" | "float16" | "half" => Ok(Precision::F16),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "int8" | "i8" | "q8" => Ok(Precision::Int8),
            other => Err(Error::invalid(
                "dtype",
                format!("{other:?}; expected f32, f16, bf16 or int8"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_aliases() {
        for p in [
            Precision::F32,
            Precision::F16,
            Precision::Bf16,
            Precision::Int8,
        ] {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!("FP16".parse::<Precision>().unwrap(), Precision::F16);
        assert_eq!("bfloat16".parse::<Precision>().unwrap(), Precision::Bf16);
        let err = "int4".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("expected f32, f16, bf16 or int8"), "{err}");
    }
}
