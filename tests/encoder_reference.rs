//! The encoder against the reference implementation (sentence-transformers).
//!
//! `fixtures/reference/all-MiniLM-L6-v2.json` holds sentence-transformers'
//! embeddings of varied texts (see its README for how they were made). These tests
//! need the real model in `models/all-MiniLM-L6-v2` (`scripts/fetch-model.sh`; CI
//! fetches it first). Without it they print why and pass only if
//! `SHELFRANK_REQUIRE_MODEL` is unset, so a fresh checkout's `cargo test` still
//! works offline; CI sets the variable so that they cannot be skipped there.

use std::path::Path;

use shelfrank::encoder::{Encoder, EncoderOptions};

#[derive(serde::Deserialize)]
struct Reference {
    texts: Vec<String>,
    embeddings: Vec<Vec<f32>>,
    token_counts: Vec<usize>,
}

fn model_dir() -> Option<&'static Path> {
    let dir = Path::new("models/all-MiniLM-L6-v2");
    if shelfrank::encoder::is_model_dir(dir) {
        return Some(dir);
    }
    if std::env::var_os("SHELFRANK_REQUIRE_MODEL").is_some() {
        panic!(
            "SHELFRANK_REQUIRE_MODEL is set but {} is missing; run scripts/fetch-model.sh",
            dir.display()
        );
    }
    eprintln!(
        "skipping: {} not found (run scripts/fetch-model.sh)",
        dir.display()
    );
    None
}

fn reference() -> Reference {
    let text = std::fs::read_to_string("fixtures/reference/all-MiniLM-L6-v2.json")
        .expect("reference fixture");
    serde_json::from_str(&text).expect("valid reference JSON")
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn embeddings_match_sentence_transformers() {
    let Some(dir) = model_dir() else { return };
    let enc = Encoder::load(&EncoderOptions::new(dir)).expect("load model");
    assert_eq!(enc.dim(), 384);
    let r = reference();
    for ((text, expected), tokens) in r.texts.iter().zip(&r.embeddings).zip(&r.token_counts) {
        assert_eq!(
            enc.tokenize(text).unwrap().len(),
            *tokens,
            "token count of {text:?}"
        );
        let got = enc.embed(text).unwrap();
        let c = cosine(&got, expected);
        assert!(c >= 0.999, "cosine {c} for {text:?}");
    }
}

#[test]
fn batched_equals_single_for_the_real_model() {
    let Some(dir) = model_dir() else { return };
    let enc = Encoder::load(&EncoderOptions::new(dir)).expect("load model");
    let r = reference();
    let texts: Vec<&str> = r.texts.iter().map(String::as_str).collect();
    let batched = enc.embed_many(&texts, 5, &|_| {}).unwrap();
    for (t, b) in texts.iter().zip(&batched) {
        let single = enc.embed(t).unwrap();
        assert!(cosine(&single, b) >= 0.9999, "{t:?}");
    }
}
