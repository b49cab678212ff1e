//! The encoder against the reference implementations: sentence-transformers'
//! vectors, and candle-transformers' stock BERT (`Implementation::Reference`), which
//! the default fast forward pass must agree with.
//!
//! `fixtures/reference/all-MiniLM-L6-v2.json` holds sentence-transformers'
//! embeddings of varied texts (see its README for how they were made). These tests
//! need the real model in `models/all-MiniLM-L6-v2` (`scripts/fetch-model.sh`; CI
//! fetches it first); the fast-versus-stock checks also run on the tiny model in
//! `fixtures/tiny-bert`, which needs no download. Without the real model its tests print why and pass only if
//! `SHELFRANK_REQUIRE_MODEL` is unset, so a fresh checkout's `cargo test` still
//! works offline; CI sets the variable so that they cannot be skipped there.

use std::path::Path;

mod common;

use shelfrank::encoder::{Encoder, EncoderOptions, Implementation, Precision};

#[derive(serde::Deserialize)]
struct Reference {
    texts: Vec<String>,
    embeddings: Vec<Vec<f32>>,
    token_counts: Vec<usize>,
}

fn model_dir() -> Option<&'static Path> {
    common::real_model()
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

fn load(dir: &Path, implementation: Implementation, workers: usize) -> Encoder {
    let mut opts = EncoderOptions::new(dir);
    opts.implementation = implementation;
    opts.workers = Some(workers);
    Encoder::load(&opts).expect("load model")
}

#[test]
fn embeddings_match_sentence_transformers() {
    let Some(dir) = model_dir() else { return };
    for implementation in [Implementation::Fast, Implementation::Reference] {
        let enc = load(dir, implementation, 1);
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
            assert!(c >= 0.999, "{implementation:?}: cosine {c} for {text:?}");
        }
    }
}

/// Texts of very different lengths, so that batches mix padding and no padding.
fn varied_texts() -> Vec<String> {
    let mut texts: Vec<String> = [
        "drill",
        "cordless drill with two 20V batteries and a carrying case",
        "",
        "rain shower head",
        "Ceiling fan, 52 in., brushed nickel, with light kit and remote control",
        "faucet faucet faucet",
        "ÉCLAIRAGE extérieur à DEL",
        "30 gal. electric water heater",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    texts.push("long ".repeat(300));
    texts.push("a b c d e f g h i j k l m n o p".into());
    texts
}

/// The fast forward pass against the stock one on the same model: every text, in
/// batches of 1, 3 and all, with one and two workers, and each batched result equal
/// to the single-text one.
fn assert_fast_matches_reference(dir: &Path) {
    let texts = varied_texts();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let reference = load(dir, Implementation::Reference, 1);
    let expected: Vec<Vec<f32>> = texts.iter().map(|t| reference.embed(t).unwrap()).collect();
    for workers in [1, 2] {
        let fast = load(dir, Implementation::Fast, workers);
        for batch in [1, 3, texts.len()] {
            let got = fast.embed_many(&texts, batch, &|_| {}).unwrap();
            for ((t, g), e) in texts.iter().zip(&got).zip(&expected) {
                let c = cosine(g, e);
                assert!(
                    c >= 0.99999,
                    "batch {batch}, {workers} workers: cosine {c} for {t:?}"
                );
                let single = fast.embed(t).unwrap();
                let max_diff = single
                    .iter()
                    .zip(g)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(
                    max_diff < 1e-4,
                    "batch {batch}: batched and single differ by {max_diff} for {t:?}"
                );
            }
        }
    }
}

#[test]
fn fast_path_matches_stock_bert_on_the_tiny_model() {
    assert_fast_matches_reference(Path::new("fixtures/tiny-bert"));
}

#[test]
fn fast_path_matches_stock_bert_on_the_real_model() {
    let Some(dir) = model_dir() else { return };
    assert_fast_matches_reference(dir);
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

/// f16, bf16 and int8 against f32 on the same model: every varied text, batched
/// and single, stays close to the f32 embedding (cosine at least `min` for each
/// text, `min_mean` on average), and the reported precision is the one asked for.
fn assert_lower_precision_close(dir: &Path, bounds: &[(Precision, f32, f32)]) {
    let texts = varied_texts();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let full = load(dir, Implementation::Fast, 1);
    let expected = full.embed_many(&texts, 4, &|_| {}).unwrap();
    for &(precision, min, min_mean) in bounds {
        let mut opts = EncoderOptions::new(dir);
        opts.precision = precision;
        opts.workers = Some(2);
        let low = Encoder::load(&opts).unwrap();
        assert_eq!(low.precision(), precision);
        let got = low.embed_many(&texts, 4, &|_| {}).unwrap();
        let mut sum = 0.0;
        for ((t, g), e) in texts.iter().zip(&got).zip(&expected) {
            assert_eq!(g.len(), e.len());
            let norm: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!(
                (norm - 1.0).abs() < 1e-3,
                "{precision}: norm {norm} for {t:?}"
            );
            let c = cosine(g, e);
            sum += c;
            assert!(c >= min, "{precision}: cosine {c} < {min} for {t:?}");
            let single = low.embed(t).unwrap();
            let c = cosine(&single, g);
            assert!(
                c >= min,
                "{precision}: batched vs single cosine {c} for {t:?}"
            );
        }
        let mean = sum / texts.len() as f32;
        assert!(
            mean >= min_mean,
            "{precision}: mean cosine {mean} < {min_mean}"
        );
    }
}

/// The per-text and mean cosine bounds to f32: f16 and bf16 round every
/// activation; int8 quantises the linear layers' inputs and weights.
const LOWER_PRECISION_BOUNDS: [(Precision, f32, f32); 3] = [
    (Precision::F16, 0.999, 0.999),
    (Precision::Bf16, 0.99, 0.99),
    (Precision::Int8, 0.97, 0.99),
];

#[test]
fn lower_precision_stays_close_to_f32_on_the_tiny_model() {
    assert_lower_precision_close(Path::new("fixtures/tiny-bert"), &LOWER_PRECISION_BOUNDS);
}

#[test]
fn lower_precision_stays_close_to_f32_on_the_real_model() {
    let Some(dir) = model_dir() else { return };
    assert_lower_precision_close(dir, &LOWER_PRECISION_BOUNDS);
}

/// The tiny model's embeddings of varied texts at `precision` on each of
/// `kernels` (installed into the options by `set`), all required to equal the
/// first kernel's bit for bit.
fn assert_kernels_agree<K: Copy + std::fmt::Debug>(
    precision: Precision,
    kernels: Vec<K>,
    set: impl Fn(&mut EncoderOptions, K),
) {
    let texts = varied_texts();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut opts = EncoderOptions::new("fixtures/tiny-bert");
    opts.precision = precision;
    let mut results = Vec::new();
    for kernel in kernels {
        set(&mut opts, kernel);
        let enc = Encoder::load(&opts).unwrap();
        results.push((kernel, enc.embed_many(&texts, 3, &|_| {}).unwrap()));
    }
    // The portable kernel always runs; an AVX2 CPU adds at least one SIMD kernel.
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        assert!(results.len() >= 2, "only {:?} ran", results[0].0);
    }
    for (kernel, got) in &results[1..] {
        assert_eq!(got, &results[0].1, "{kernel:?} vs {:?}", results[0].0);
    }
}

/// int8 on every kernel this CPU has (the AVX2 and portable fallbacks forced):
/// the integer sums are exact, so every kernel gives the same embeddings.
#[test]
fn every_int8_kernel_gives_the_same_embeddings() {
    assert_kernels_agree(
        Precision::Int8,
        shelfrank::encoder::int8::Kernel::available(),
        |opts, kernel| opts.int8_kernel = Some(kernel),
    );
}

/// bf16 on every kernel this CPU has: each makes the same f32 roundings in the
/// same order as `vdpbf16ps`, so every kernel gives the same embeddings.
#[test]
fn every_bf16_kernel_gives_the_same_embeddings() {
    assert_kernels_agree(
        Precision::Bf16,
        shelfrank::encoder::bf16::Bf16Kernel::available(),
        |opts, kernel| opts.bf16_kernel = Some(kernel),
    );
}

#[test]
fn int8_is_for_the_cpu_and_the_fast_encoder() {
    let mut opts = EncoderOptions::new("fixtures/tiny-bert");
    opts.precision = Precision::Int8;
    opts.implementation = Implementation::Reference;
    let err = Encoder::load(&opts).unwrap_err().to_string();
    assert!(err.contains("f32 only"), "{err}");
}

#[test]
fn the_reference_encoder_refuses_half_precision() {
    let mut opts = EncoderOptions::new("fixtures/tiny-bert");
    opts.implementation = Implementation::Reference;
    opts.precision = Precision::Bf16;
    let err = Encoder::load(&opts).unwrap_err().to_string();
    assert!(err.contains("f32 only"), "{err}");
}
