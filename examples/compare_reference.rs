//! Compares shelfrank's embeddings of a model directory with reference vectors
//! written by `scripts/make_reference_vectors.py` (sentence-transformers), text by
//! text. Used by `scripts/check-tuned-model.sh` for models made by `shelfrank tune`.
//!
//! Usage: cargo run --release --example compare_reference -- MODEL_DIR REFERENCE_JSON [MIN_COSINE]
//! Exits non-zero when any text's cosine is below MIN_COSINE (default 0.999).

use std::path::PathBuf;
use std::process::ExitCode;

use shelfrank::encoder::{Encoder, EncoderOptions};

#[derive(serde::Deserialize)]
struct Reference {
    texts: Vec<String>,
    embeddings: Vec<Vec<f32>>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(model), Some(reference)) = (args.first(), args.get(1)) else {
        eprintln!("usage: compare_reference MODEL_DIR REFERENCE_JSON [MIN_COSINE]");
        return ExitCode::from(2);
    };
    let min: f32 = match args.get(2).map(|s| s.parse()) {
        None => 0.999,
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            eprintln!("MIN_COSINE: {e}");
            return ExitCode::from(2);
        }
    };
    let run = || -> Result<f32, Box<dyn std::error::Error>> {
        let r: Reference = serde_json::from_str(&std::fs::read_to_string(reference)?)?;
        let encoder = Encoder::load(&EncoderOptions::new(PathBuf::from(model)))?;
        let mut worst = f32::MAX;
        for (text, expected) in r.texts.iter().zip(&r.embeddings) {
            let got = encoder.embed(text)?;
            let cos: f32 = got.iter().zip(expected).map(|(a, b)| a * b).sum();
            if cos < worst {
                worst = cos;
            }
            if cos < min {
                eprintln!("{cos:.6} {text:?}");
            }
        }
        println!(
            "{} texts, lowest cosine {worst:.6} (threshold {min})",
            r.texts.len()
        );
        Ok(worst)
    };
    match run() {
        Ok(worst) if worst >= min => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
