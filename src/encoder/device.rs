//! Where the encoder runs: `cpu`, `cuda[:N]` or `auto`.
//!
//! One API on every build: without the `cuda` cargo feature, asking for CUDA is a
//! clear [`Error::Device`] instead of a compile-time difference for callers.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::error::{Error, Result};

/// A device request, parsed from `cpu`, `cuda`, `cuda:N` or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The CPU (the default).
    #[default]
    Cpu,
    /// CUDA device N (needs the `cuda` feature and an NVIDIA GPU).
    Cuda(usize),
    /// CUDA device 0 when this build has the `cuda` feature and a GPU answers,
    /// otherwise the CPU.
    Auto,
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceSpec::Auto => write!(f, "auto"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "auto" => Ok(DeviceSpec::Auto),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceSpec::Cuda(n)),
                _ => Err(Error::invalid(
                    "device",
                    format!("{s:?}; expected cpu, cuda, cuda:N or auto"),
                )),
            },
        }
    }
}

/// True when this build was compiled with the `cuda` feature.
pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");

impl DeviceSpec {
    /// The candle device for this request.
    pub(crate) fn to_candle(self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => {
                if !CUDA_COMPILED {
                    return Err(Error::Device {
                        requested: self.to_string(),
                        reason: "this shelfrank was built without CUDA support\nhint: rebuild with `cargo build --release --features cuda` on a machine with the CUDA toolkit, or use --device cpu".into(),
                    });
                }
                Device::new_cuda(n).map_err(|e| Error::Device {
                    requested: self.to_string(),
                    reason: format!("cannot open the GPU: {e}"),
                })
            }
            DeviceSpec::Auto => {
                if CUDA_COMPILED {
                    if let Ok(d) = Device::new_cuda(0) {
                        return Ok(d);
                    }
                }
                Ok(Device::Cpu)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("CUDA".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        assert_eq!("auto".parse::<DeviceSpec>().unwrap(), DeviceSpec::Auto);
        let err = "tpu".parse::<DeviceSpec>().unwrap_err().to_string();
        assert!(err.contains("expected cpu, cuda"), "{err}");
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn cuda_without_feature_is_a_clear_error() {
        if CUDA_COMPILED {
            return;
        }
        let err = DeviceSpec::Cuda(0).to_candle().unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
        assert!(matches!(DeviceSpec::Auto.to_candle().unwrap(), Device::Cpu));
    }
}
