//! Copies a model directory with its weights stored in f16: half the bytes, for
//! carrying a model where space is short (the GPU machine takes 64 MiB per call;
//! all-MiniLM-L6-v2's f32 weights are 87 MiB). shelfrank loads such a directory at
//! any `--dtype` (the weights are widened on load); it is another checksum, so an
//! index built with it is another model's index.
//!
//! `cargo run --release --example half_weights -- IN_DIR OUT_DIR`

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [from, to] = args.as_slice() else {
        return Err("usage: half_weights IN_DIR OUT_DIR".into());
    };
    let (from, to) = (Path::new(from), Path::new(to));
    if to.exists() {
        return Err(format!("{} exists already", to.display()).into());
    }
    copy_dir(from, to)?;
    let weights = from.join("model.safetensors");
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)?;
    let half = tensors
        .into_iter()
        .map(|(name, t)| {
            let t = if t.dtype() == DType::F32 {
                t.to_dtype(DType::F16)?
            } else {
                t
            };
            Ok((name, t))
        })
        .collect::<candle_core::Result<HashMap<String, Tensor>>>()?;
    candle_core::safetensors::save(&half, to.join("model.safetensors"))?;
    println!(
        "{} -> {}: {} tensors in f16",
        from.display(),
        to.display(),
        half.len()
    );
    Ok(())
}

/// Copies every file but the weights (and other weight formats, which would be
/// another model).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &to.join(&name))?;
        } else if !(name_str.ends_with(".safetensors")
            || name_str.ends_with(".bin")
            || name_str.ends_with(".onnx"))
        {
            std::fs::copy(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}
