use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use candle_transformers::models::bert::Config;

use super::*;

const TINY: &str = "fixtures/tiny-bert";

fn tiny_config() -> Config {
    serde_json::from_str(&std::fs::read_to_string(Path::new(TINY).join("config.json")).unwrap())
        .unwrap()
}

fn tiny_encoder() -> Encoder {
    Encoder::load(&EncoderOptions::new(TINY)).unwrap()
}

/// Embeds `texts` as tuning does: the frozen layers by the fast inference path, the
/// trainable top by the training model.
fn train_embed(model: &TrainBert, encoder: &Encoder, texts: &[&str]) -> Tensor {
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| encoder.tokenize(t).unwrap()).collect();
    let (ids, mask) = pad_ids(ids.iter().map(Vec::as_slice), &Device::Cpu).unwrap();
    let fast = fast_model(model, &tiny_config(), &Device::Cpu).unwrap();
    let lower = fast
        .forward_lower(&ids, &mask, model.first_trainable())
        .unwrap();
    model.upper(&lower, &mask).unwrap()
}

const QUERIES: [&str; 4] = [
    "rain shower head",
    "cordless drill",
    "white interior paint",
    "emergency light",
];
const PRODUCTS: [&str; 4] = [
    "Moen Align Rain Shower Head 8 in. Brushed Nickel",
    "DEWALT 20V MAX Cordless Drill Driver Kit",
    "BEHR Premium Plus Interior Paint Ultra Pure White",
    "Lithonia Lighting Quantum 2-Light Black LED Emergency Fixture Unit",
];

/// The loss of one batch of `QUERIES` x `PRODUCTS` (each query's own product is its
/// positive).
fn batch_loss(model: &TrainBert, encoder: &Encoder) -> Tensor {
    let q = train_embed(model, encoder, &QUERIES);
    let p = train_embed(model, encoder, &PRODUCTS);
    let logits = (q.matmul(&p.t().unwrap()).unwrap() * 20.0).unwrap();
    let targets = Tensor::arange(0u32, 4, &Device::Cpu).unwrap();
    candle_nn::loss::cross_entropy(&logits, &targets).unwrap()
}

#[test]
fn the_training_forward_computes_what_the_inference_encoder_does() {
    let encoder = tiny_encoder();
    for layers in [1, 2] {
        let model = TrainBert::load(
            &Path::new(TINY).join("model.safetensors"),
            &tiny_config(),
            Pooling::Mean,
            layers,
            &Device::Cpu,
        )
        .unwrap();
        let texts: Vec<&str> = QUERIES.iter().chain(&PRODUCTS).copied().collect();
        let trained = train_embed(&model, &encoder, &texts)
            .to_vec2::<f32>()
            .unwrap();
        for (text, t) in texts.iter().zip(&trained) {
            let e = encoder.embed(text).unwrap();
            let cos: f32 = e.iter().zip(t).map(|(a, b)| a * b).sum();
            assert!(
                cos > 0.9999,
                "{text}: cosine {cos} with {layers} trainable layers"
            );
        }
    }
}

/// The trap this module avoids: candle-nn's fused LayerNorm has no backward, so with
/// it nothing below a LayerNorm would train. Every trainable tensor must receive a
/// non-zero gradient and move when the optimiser steps.
#[test]
fn every_trainable_tensor_gets_a_gradient_and_moves() {
    let encoder = tiny_encoder();
    let model = TrainBert::load(
        &Path::new(TINY).join("model.safetensors"),
        &tiny_config(),
        Pooling::Mean,
        2,
        &Device::Cpu,
    )
    .unwrap();
    // 2 layers x 16 tensors.
    assert_eq!(model.named_vars().len(), 32);
    let before = model.snapshot().unwrap();
    let loss = batch_loss(&model, &encoder);
    let grads = loss.backward().unwrap();
    for (name, var) in model.named_vars() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name} received no gradient"));
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(norm > 0.0, "{name}: zero gradient");
    }
    let mut opt = AdamW::new(
        model.vars(),
        ParamsAdamW {
            lr: 1e-3,
            ..ParamsAdamW::default()
        },
    )
    .unwrap();
    opt.step(&grads).unwrap();
    for ((name, var), (_, old)) in model.named_vars().iter().zip(&before) {
        let moved = (var.as_tensor() - old)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(moved > 0.0, "{name} did not move");
    }
    // A few steps on the same batch lower its loss.
    let first = loss.to_scalar::<f32>().unwrap();
    for _ in 0..5 {
        let grads = batch_loss(&model, &encoder).backward().unwrap();
        opt.step(&grads).unwrap();
    }
    let last = batch_loss(&model, &encoder).to_scalar::<f32>().unwrap();
    assert!(last < first, "loss {first} -> {last}");
}

#[test]
fn the_fused_layer_norm_would_stop_gradients() {
    // Shows the trap is real in the candle version in use: if this starts failing,
    // candle-nn's fused LayerNorm got a backward pass and the module docs can say so.
    let x = candle_core::Var::from_tensor(&Tensor::new(&[[1f32, 2.0, 4.0]], &Device::Cpu).unwrap())
        .unwrap();
    let w = Tensor::ones(3, candle_core::DType::F32, &Device::Cpu).unwrap();
    let b = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
    let y = candle_nn::ops::layer_norm(x.as_tensor(), &w, &b, 1e-5).unwrap();
    let weights = Tensor::new(&[[1f32, 0.0, -1.0]], &Device::Cpu).unwrap();
    let loss = (y * weights).unwrap().sum_all().unwrap();
    let fused = loss.backward().map(|g| g.get(x.as_tensor()).is_some());
    assert!(
        !matches!(fused, Ok(true)),
        "the fused layer norm now has a backward"
    );
    // Ours does.
    let norm = model::tests_support::norm(w, b, 1e-5);
    let y = norm.forward(x.as_tensor()).unwrap();
    let weights = Tensor::new(&[[1f32, 0.0, -1.0]], &Device::Cpu).unwrap();
    let grads = (y * weights)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(x.as_tensor()).is_some());
}

#[test]
fn clipping_scales_the_global_norm_down_to_the_limit() {
    let a =
        candle_core::Var::from_tensor(&Tensor::new(&[3f32, 4.0], &Device::Cpu).unwrap()).unwrap();
    let loss = (a.as_tensor() * a.as_tensor()).unwrap().sum_all().unwrap();
    // Gradient 2a = (6, 8): norm 10.
    let mut grads = loss.backward().unwrap();
    let norm = clip_gradients(&mut grads, std::slice::from_ref(&a), 1.0).unwrap();
    assert!((norm - 10.0).abs() < 1e-4);
    let g = grads.get(a.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    let clipped = (g[0] * g[0] + g[1] * g[1]).sqrt();
    assert!((clipped - 1.0).abs() < 1e-3, "{clipped}");
    // Below the limit: unchanged.
    let mut grads = loss.backward().unwrap();
    clip_gradients(&mut grads, std::slice::from_ref(&a), 100.0).unwrap();
    assert_eq!(
        grads.get(a.as_tensor()).unwrap().to_vec1::<f32>().unwrap(),
        [6.0, 8.0]
    );
}

#[test]
fn the_learning_rate_warms_up_then_decays_to_zero() {
    let lr = |s| learning_rate(1.0, s, 10, 100);
    assert!((lr(0) - 0.1).abs() < 1e-12);
    assert!((lr(9) - 1.0).abs() < 1e-12);
    assert!((lr(10) - 1.0).abs() < 1e-12);
    assert!((lr(55) - 0.5).abs() < 1e-12);
    assert_eq!(lr(100), 0.0);
    assert!(lr(20) > lr(21));
}

#[test]
fn batches_cover_every_pair_with_at_most_n_per_query() {
    let pairs: Vec<(usize, usize)> = (0..50).map(|i| (i % 7, i)).collect();
    let mut rng = SplitMix64::new(1);
    let batches = make_batches(&pairs, 8, 100, &mut rng);
    let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
    assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 8));
    // Seeded: the same order again.
    assert_eq!(
        make_batches(&pairs, 8, 100, &mut SplitMix64::new(1)),
        batches
    );
    // Capped: query 0 has 8 pairs, at most 3 are taken.
    let capped = make_batches(&pairs, 8, 3, &mut SplitMix64::new(1));
    let mut per_query = [0; 7];
    for &i in capped.iter().flatten() {
        per_query[pairs[i].0] += 1;
    }
    assert_eq!(per_query, [3; 7]);
    // The step count of the learning-rate schedule comes from the same cap.
    assert_eq!(pairs_per_epoch(&pairs, 3), 21);
    assert_eq!(pairs_per_epoch(&pairs, 100), 50);
}

#[test]
fn top_k_takes_the_largest_first() {
    assert_eq!(top_k(&[0.1, 0.9, 0.5, 0.9], 3), [1, 3, 2]);
    assert_eq!(top_k(&[0.1], 5), [0]);
    assert!(top_k(&[], 5).is_empty());
}

#[test]
fn bad_data_is_refused_with_a_reason() {
    let mut data = TuneData {
        queries: vec!["q".into()],
        products: vec!["p".into()],
        pairs: vec![(0, 0)],
        hard_negatives: vec![vec![]],
        positives: vec![vec![0]],
        validation: vec![(0, vec![(0, 1.0)])],
    };
    assert!(check_data(&data).is_ok());
    data.pairs.push((0, 5));
    assert!(check_data(&data)
        .unwrap_err()
        .to_string()
        .contains("out of range"));
    data.pairs.truncate(1);
    data.validation.clear();
    assert!(check_data(&data)
        .unwrap_err()
        .to_string()
        .contains("validation"));
}
