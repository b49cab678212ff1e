//! Tests of the CTR head: training, prediction, explanations, saving and loading.

use std::fs;
use std::time::Instant;

use serde_json::{json, Value};

use super::fit::{mean_ndcg, soft_label_auc};
use super::*;
use crate::rng::SplitMix64;
use crate::store::layout::{HEAD_CARD as CARD_FILE, HEAD_WEIGHTS as WEIGHTS_FILE};

/// Synthetic data: `d` standard-normal-ish features (with offsets/scales so
/// normalisation matters), label from `f(x)`.
fn synth(
    n: usize,
    d: usize,
    seed: u64,
    group_size: usize,
    label: impl Fn(&[f32], &mut SplitMix64) -> f32,
) -> TrainData {
    let mut rng = SplitMix64::new(seed);
    let mut data = TrainData::default();
    for i in 0..n {
        let row: Vec<f32> = (0..d).map(|_| normal(&mut rng) as f32).collect();
        let y = label(&row, &mut rng);
        // Shift and scale raw columns: the head must normalise.
        let raw: Vec<f32> = row
            .iter()
            .enumerate()
            .map(|(j, v)| v * (1.0 + j as f32) + 10.0 * j as f32)
            .collect();
        data.rows.push(raw);
        data.labels.push(y);
        data.weights.push(1.0);
        data.groups.push((i / group_size) as u64);
    }
    data
}

fn normal(rng: &mut SplitMix64) -> f64 {
    // Box-Muller.
    let u1 = rng.next_f64().max(1e-12);
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn names(d: usize) -> Vec<String> {
    (0..d).map(|j| format!("f{j}")).collect()
}

fn separable(x: &[f32], rng: &mut SplitMix64) -> f32 {
    let noise = 0.1 * normal(rng) as f32;
    f32::from(x[0] + 0.5 * x[1] + noise > 0.0)
}

fn small_cfg() -> HeadConfig {
    HeadConfig {
        epochs: 8,
        batch_size: 128,
        ..HeadConfig::default()
    }
}

fn fit(train: &TrainData, val: &TrainData, cfg: &HeadConfig) -> (CtrHead, TrainReport) {
    let d = train.rows[0].len();
    CtrHead::train(names(d), train, val, cfg, &mut |_| {}).unwrap()
}

fn mean(xs: &[f32]) -> f64 {
    xs.iter().map(|&x| f64::from(x)).sum::<f64>() / xs.len() as f64
}

#[test]
fn is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<CtrHead>();
    check::<HeadError>();
}

#[test]
fn learns_separable_problem() {
    let train = synth(4000, 4, 1, 20, separable);
    let val = synth(1000, 4, 2, 20, separable);
    let mut seen = 0;
    let (head, report) =
        CtrHead::train(names(4), &train, &val, &small_cfg(), &mut |_| seen += 1).unwrap();
    assert_eq!(seen, report.epochs.len());
    let auc_val = report.best_val_auc.unwrap();
    assert!(auc_val > 0.95, "val AUC {auc_val}");
    let last = report.epochs.last().unwrap();
    assert!(last.val_ndcg10.unwrap() > 0.8, "{last:?}");
    assert!(report.epochs[0].train_loss > last.train_loss);
    // Predictions agree with the report.
    let p = head.predict(&val.rows).unwrap();
    assert!(p.iter().all(|p| (0.0..=1.0).contains(p)));
    assert!((soft_label_auc(&p, &val.labels).unwrap() - auc_val).abs() < 1e-6);
    assert_eq!(report.train_samples, 4000);
    assert_eq!(report.val_samples, 1000);
    assert!(report.seconds > 0.0);
    // Logits and probabilities are consistent.
    let z = head.predict_logits(&val.rows[..5]).unwrap();
    for (z, p) in z.iter().zip(&p) {
        assert!((sigmoid(*z) - p).abs() < 1e-6);
    }
}

#[test]
fn same_seed_same_model_different_seed_different_model() {
    let train = synth(1500, 3, 3, 10, separable);
    let val = synth(300, 3, 4, 10, separable);
    let cfg = HeadConfig {
        epochs: 3,
        ..small_cfg()
    };
    let bits = |h: &CtrHead| -> Vec<u32> {
        h.predict(&val.rows)
            .unwrap()
            .iter()
            .map(|p| p.to_bits())
            .collect()
    };
    let (a, ra) = fit(&train, &val, &cfg);
    let (b, rb) = fit(&train, &val, &cfg);
    assert_eq!(bits(&a), bits(&b));
    assert_eq!(ra.epochs, rb.epochs);
    let (c, _) = fit(&train, &val, &HeadConfig { seed: 43, ..cfg });
    assert_ne!(bits(&a), bits(&c));
}

#[test]
fn sample_weights_matter() {
    let train = synth(2000, 3, 5, 10, separable);
    let val = synth(400, 3, 6, 10, separable);
    let cfg = HeadConfig {
        epochs: 5,
        ..small_cfg()
    };
    let (plain, _) = fit(&train, &val, &cfg);
    let mut no_pos = train.clone();
    for (w, y) in no_pos.weights.iter_mut().zip(&no_pos.labels) {
        if *y >= 0.5 {
            *w = 0.0;
        }
    }
    let (weighted, _) = fit(&no_pos, &val, &cfg);
    let m_plain = mean(&plain.predict(&val.rows).unwrap());
    let m_weighted = mean(&weighted.predict(&val.rows).unwrap());
    assert!(m_plain > 0.3 && m_plain < 0.7, "{m_plain}");
    assert!(m_weighted < 0.05, "{m_weighted}");
}

#[test]
fn soft_labels_accepted() {
    let soft = |x: &[f32], _: &mut SplitMix64| sigmoid(3.0 * x[0]);
    let train = synth(2000, 2, 7, 10, soft);
    let val = synth(400, 2, 8, 10, soft);
    assert!(train.labels.iter().any(|&y| y > 0.05 && y < 0.95));
    let (head, report) = fit(&train, &val, &small_cfg());
    assert!(report.epochs.iter().all(|e| e.train_loss.is_finite()));
    // Predictions track the soft target.
    let p = head.predict(&val.rows).unwrap();
    let err = p
        .iter()
        .zip(&val.labels)
        .map(|(p, y)| f64::from((p - y).abs()))
        .sum::<f64>()
        / p.len() as f64;
    assert!(err < 0.08, "mean abs error {err}");
}

#[test]
fn save_load_round_trip_and_corruption() {
    let train = synth(800, 3, 9, 10, separable);
    let val = synth(200, 3, 10, 10, separable);
    let (head, _) = fit(
        &train,
        &val,
        &HeadConfig {
            epochs: 2,
            ..small_cfg()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model");
    head.save(
        &path,
        &json!({"trained_on": "synthetic", "format_version": 99}),
    )
    .unwrap();
    let loaded = CtrHead::load(&path).unwrap();
    let bits = |h: &CtrHead| -> Vec<u32> {
        h.predict(&val.rows)
            .unwrap()
            .iter()
            .map(|p| p.to_bits())
            .collect()
    };
    assert_eq!(bits(&head), bits(&loaded));
    assert_eq!(loaded.feature_names(), head.feature_names());
    assert_eq!(loaded.normalisation(), head.normalisation());
    assert_eq!(loaded.card()["trained_on"], "synthetic");
    assert_eq!(loaded.card()["format_version"], 1);
    // No temporary files left behind.
    let files: Vec<_> = fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    // Saving a loaded head again works (overwrites atomically).
    loaded.save(&path, loaded.card()).unwrap();
    assert_eq!(bits(&CtrHead::load(&path).unwrap()), bits(&head));

    let card_path = path.join(CARD_FILE);
    let card: Value = serde_json::from_slice(&fs::read(&card_path).unwrap()).unwrap();
    // The weights file is named after its content, and the card names it.
    let weights_name = card["weights"]["file"].as_str().unwrap().to_owned();
    assert!(
        weights_name.starts_with("ctr_head-") && weights_name != WEIGHTS_FILE,
        "{weights_name}"
    );
    let weights = path.join(&weights_name);
    let original = fs::read(&weights).unwrap();

    // Truncated weights: caught by the card's checksum...
    fs::write(&weights, &original[..original.len() / 2]).unwrap();
    let e = CtrHead::load(&path).unwrap_err();
    assert!(matches!(e, HeadError::Corrupt { .. }), "{e}");
    assert!(!e.is_caller_fault());
    // ...and by the safetensors parser when the card has no checksum.
    let mut no_sum = card.clone();
    no_sum["weights"] = json!({ "file": weights_name });
    fs::write(&card_path, serde_json::to_vec(&no_sum).unwrap()).unwrap();
    for cut in [0, 4, 8, 20, original.len() / 2, original.len() - 1] {
        fs::write(&weights, &original[..cut]).unwrap();
        let e = CtrHead::load(&path).unwrap_err();
        assert!(matches!(e, HeadError::Corrupt { .. }), "cut {cut}: {e}");
    }
    // Damaged bytes never panic: each is an error or (inside the data) a valid model.
    for pos in (0..original.len()).step_by(7) {
        for byte in [0x00, 0x7f, 0xff] {
            let mut damaged = original.clone();
            damaged[pos] = byte;
            fs::write(&weights, &damaged).unwrap();
            if let Err(e) = CtrHead::load(&path) {
                assert!(matches!(e, HeadError::Corrupt { .. }), "byte {pos}: {e}");
            }
        }
    }
    fs::write(&weights, &original).unwrap();
    CtrHead::load(&path).unwrap();
    // A head saved before content naming: `ctr_head.safetensors`, no `weights.file`.
    let mut legacy = card.clone();
    legacy["weights"].as_object_mut().unwrap().remove("file");
    fs::rename(&weights, path.join(WEIGHTS_FILE)).unwrap();
    fs::write(&card_path, serde_json::to_vec(&legacy).unwrap()).unwrap();
    assert_eq!(bits(&CtrHead::load(&path).unwrap()), bits(&head));
    // A card naming a path instead of a file beside it is refused.
    let mut escape = card.clone();
    escape["weights"]["file"] = json!("../ctr_head.safetensors");
    fs::write(&card_path, serde_json::to_vec(&escape).unwrap()).unwrap();
    let e = CtrHead::load(&path).unwrap_err().to_string();
    assert!(e.contains("weights.file"), "{e}");
    fs::rename(path.join(WEIGHTS_FILE), &weights).unwrap();
    fs::write(&card_path, serde_json::to_vec(&no_sum).unwrap()).unwrap();

    // Card with the wrong feature count.
    let mut wrong = no_sum.clone();
    wrong["feature_names"] = json!(["f0", "f1"]);
    wrong["normalisation"]["mean"] = json!([0.0, 0.0]);
    wrong["normalisation"]["std"] = json!([1.0, 1.0]);
    fs::write(&card_path, serde_json::to_vec(&wrong).unwrap()).unwrap();
    let e = CtrHead::load(&path).unwrap_err().to_string();
    assert!(e.contains("shape"), "{e}");
    let mut wrong = no_sum.clone();
    wrong["feature_names"] = json!(["f0", "f1"]);
    fs::write(&card_path, serde_json::to_vec(&wrong).unwrap()).unwrap();
    assert!(matches!(
        CtrHead::load(&path),
        Err(HeadError::Corrupt { .. })
    ));
    // Wrong hidden sizes, wrong version, garbage card.
    let mut wrong = no_sum.clone();
    wrong["hidden"] = json!([16, 16]);
    fs::write(&card_path, serde_json::to_vec(&wrong).unwrap()).unwrap();
    assert!(matches!(
        CtrHead::load(&path),
        Err(HeadError::Corrupt { .. })
    ));
    let mut wrong = no_sum.clone();
    wrong["format_version"] = json!(2);
    fs::write(&card_path, serde_json::to_vec(&wrong).unwrap()).unwrap();
    let e = CtrHead::load(&path).unwrap_err().to_string();
    assert!(e.contains("format_version 2"), "{e}");
    fs::write(&card_path, b"{\"format_version\": 1, \"feature_na").unwrap();
    assert!(matches!(
        CtrHead::load(&path),
        Err(HeadError::Corrupt { .. })
    ));
    // Missing directory is an I/O error.
    assert!(matches!(
        CtrHead::load(&dir.path().join("nope")),
        Err(HeadError::Io { .. })
    ));
    // A non-object card is refused.
    assert!(head
        .save(&path, &json!([1, 2]))
        .unwrap_err()
        .is_caller_fault());
}

#[test]
fn resume_keeps_normalisation_and_improves() {
    let train = synth(2000, 3, 11, 10, separable);
    let val = synth(400, 3, 12, 10, separable);
    let (head, _) = fit(
        &train,
        &val,
        &HeadConfig {
            epochs: 4,
            ..small_cfg()
        },
    );
    // New data: the relationship now also depends strongly on f2, and f1's raw scale
    // drifted (normalisation must stay the original).
    let drift = |x: &[f32], rng: &mut SplitMix64| {
        let noise = 0.1 * normal(rng) as f32;
        f32::from(x[0] - 2.0 * x[2] + noise > 0.0)
    };
    let mut new_train = synth(2000, 3, 13, 10, drift);
    let new_val = synth(400, 3, 14, 10, drift);
    for row in &mut new_train.rows {
        row[1] += 3.0;
    }
    let before = soft_label_auc(&head.predict(&new_val.rows).unwrap(), &new_val.labels).unwrap();
    let cfg = HeadConfig {
        epochs: 6,
        learning_rate: 3e-3,
        seed: 5,
        ..small_cfg()
    };
    let (tuned, report) = head
        .resume(&new_train, &new_val, &cfg, &mut |_| {})
        .unwrap();
    assert_eq!(tuned.normalisation(), head.normalisation());
    assert_eq!(tuned.feature_names(), head.feature_names());
    let after = report.best_val_auc.unwrap();
    assert!(after > before + 0.05, "before {before}, after {after}");
    assert!(after > 0.95, "{after}");
    // The original is untouched.
    let again = soft_label_auc(&head.predict(&new_val.rows).unwrap(), &new_val.labels).unwrap();
    assert_eq!(again, before);
}

#[test]
fn contributions_rank_the_strongest_feature_first() {
    // Linear logit 3*x0 + 1*x1 + 0*x2 (in standard units), Bernoulli labels.
    let linear = |x: &[f32], rng: &mut SplitMix64| {
        let p = sigmoid(3.0 * x[0] + 1.0 * x[1]);
        f32::from(rng.next_f64() < f64::from(p))
    };
    let train = synth(4000, 3, 15, 10, linear);
    let val = synth(500, 3, 16, 10, linear);
    let cfg = HeadConfig {
        hidden: vec![],
        epochs: 20,
        learning_rate: 3e-2,
        ..small_cfg()
    };
    let (head, _) = fit(&train, &val, &cfg);
    let mut total = [0f64; 3];
    for row in &val.rows[..200] {
        let c = head.contributions(row).unwrap();
        assert_eq!(c[0].0, "f0");
        for (t, (_, v)) in total.iter_mut().zip(&c) {
            *t += f64::from(v.abs());
        }
        // Exact for a linear head: contributions sum to logit - bias.
        let z = head.predict_logits(std::slice::from_ref(row)).unwrap()[0];
        let bias = head.layers[0].bias.to_vec1::<f32>().unwrap()[0];
        let sum: f32 = c.iter().map(|(_, v)| v).sum();
        assert!((sum - (z - bias)).abs() < 1e-3, "{sum} vs {}", z - bias);
    }
    assert!(
        total[0] > 2.0 * total[1] && total[1] > 2.0 * total[2],
        "{total:?}"
    );

    // With hidden layers the strongest feature still dominates.
    let (mlp, _) = fit(&train, &val, &small_cfg());
    let mut total = [0f64; 3];
    for row in &val.rows[..200] {
        for (t, (_, v)) in total.iter_mut().zip(mlp.contributions(row).unwrap()) {
            *t += f64::from(v.abs());
        }
    }
    assert!(total[0] > total[1] && total[0] > total[2], "{total:?}");
    assert!(mlp.contributions(&[1.0]).unwrap_err().is_caller_fault());
}

#[test]
fn invalid_inputs_are_clear_errors() {
    let train = synth(50, 3, 17, 10, separable);
    let empty = TrainData::default();
    let cfg = HeadConfig {
        epochs: 1,
        ..small_cfg()
    };
    let err = |data: &TrainData| -> String {
        let e = CtrHead::train(names(3), data, &empty, &cfg, &mut |_| {}).unwrap_err();
        assert!(e.is_caller_fault(), "{e}");
        e.to_string()
    };

    let mut d = train.clone();
    d.rows[7][2] = f32::NAN;
    let e = err(&d);
    assert!(
        e.contains("train.rows[7][2]") && e.contains("\"f2\"") && e.contains("NaN"),
        "{e}"
    );

    let mut d = train.clone();
    d.weights[3] = -1.0;
    let e = err(&d);
    assert!(e.contains("train.weights[3]") && e.contains(">= 0"), "{e}");

    let mut d = train.clone();
    d.labels[4] = 2.0;
    let e = err(&d);
    assert!(e.contains("train.labels[4]") && e.contains("[0, 1]"), "{e}");

    let mut d = train.clone();
    d.rows[5].pop();
    let e = err(&d);
    assert!(
        e.contains("train.rows[5]") && e.contains("expected 3"),
        "{e}"
    );

    let mut d = train.clone();
    d.labels.pop();
    assert!(err(&d).contains("train.labels"));

    let mut d = train.clone();
    d.weights.iter_mut().for_each(|w| *w = 0.0);
    assert!(err(&d).contains("zero"));

    assert!(err(&empty).contains("no samples"));

    let e = CtrHead::train(
        vec!["a".into(), "a".into(), "b".into()],
        &train,
        &empty,
        &cfg,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("more than once"), "{e}");

    let bad_cfg = HeadConfig {
        learning_rate: -1.0,
        ..cfg.clone()
    };
    let e = CtrHead::train(names(3), &train, &empty, &bad_cfg, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("learning_rate"), "{e}");
    let bad_cfg = HeadConfig {
        hidden: vec![0],
        ..cfg.clone()
    };
    assert!(CtrHead::train(names(3), &train, &empty, &bad_cfg, &mut |_| {}).is_err());

    // Validation data is checked too, and prediction rejects bad rows.
    let mut v = train.clone();
    v.rows[1][0] = f32::INFINITY;
    let e = CtrHead::train(names(3), &train, &v, &cfg, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("val.rows[1][0]"), "{e}");
    let (head, report) = fit(&train, &empty, &cfg);
    assert_eq!(report.best_epoch, 1);
    assert!(report.epochs[0].val_loss.is_nan());
    assert!(head
        .predict(&[vec![1.0, 2.0]])
        .unwrap_err()
        .is_caller_fault());
    assert!(head.predict(&[vec![1.0, f32::NAN, 2.0]]).is_err());
    assert_eq!(head.predict(&[]).unwrap(), Vec::<f32>::new());
}

#[test]
fn empty_validation_runs_all_epochs_and_patience_stops_early() {
    let train = synth(500, 2, 18, 10, separable);
    let cfg = HeadConfig {
        epochs: 4,
        ..small_cfg()
    };
    let (_, report) = fit(&train, &TrainData::default(), &cfg);
    assert_eq!(report.epochs.len(), 4);
    assert_eq!(report.best_epoch, 4);
    assert_eq!(report.best_val_auc, None);

    // A validation set whose labels are unrelated to the features stops early.
    let mut val = synth(300, 2, 19, 10, separable);
    let mut rng = SplitMix64::new(0);
    for y in &mut val.labels {
        *y = f32::from(rng.next_f64() < 0.5);
    }
    let cfg = HeadConfig {
        epochs: 30,
        patience: 2,
        ..small_cfg()
    };
    let (_, report) = fit(&train, &val, &cfg);
    assert!(report.epochs.len() < 30, "{}", report.epochs.len());
    let best = report.epochs[report.best_epoch - 1].val_auc;
    assert_eq!(best, report.best_val_auc);
    assert!(report
        .epochs
        .iter()
        .all(|e| e.val_auc.unwrap() <= best.unwrap()));
}

#[test]
fn soft_label_auc_hand_computed() {
    assert_eq!(
        soft_label_auc(&[0.1, 0.2, 0.8, 0.9], &[0.0, 0.0, 1.0, 1.0]),
        Some(1.0)
    );
    assert_eq!(
        soft_label_auc(&[0.9, 0.8, 0.2, 0.1], &[0.0, 0.0, 1.0, 1.0]),
        Some(0.0)
    );
    // Pairs (pos, neg): (0.35,0.1) win, (0.35,0.4) loss, (0.8,*) wins -> 3/4.
    assert_eq!(
        soft_label_auc(&[0.1, 0.4, 0.35, 0.8], &[0.0, 0.0, 1.0, 1.0]),
        Some(0.75)
    );
    // A tie counts half: (0.5 vs 0.5) 0.5 + (0.5 vs 0.2) 1 -> 0.75.
    assert_eq!(
        soft_label_auc(&[0.5, 0.5, 0.2], &[1.0, 0.0, 0.0]),
        Some(0.75)
    );
    assert_eq!(soft_label_auc(&[0.3; 4], &[1.0, 0.0, 1.0, 0.0]), Some(0.5));
    // Soft labels: >= 0.5 is positive.
    assert_eq!(soft_label_auc(&[0.1, 0.9], &[0.49, 0.5]), Some(1.0));
    assert_eq!(soft_label_auc(&[0.1, 0.9], &[1.0, 1.0]), None);
    assert_eq!(soft_label_auc(&[], &[]), None);
    assert_eq!(soft_label_auc(&[0.1], &[1.0, 0.0]), None);
    assert_eq!(soft_label_auc(&[f32::NAN, 0.1], &[1.0, 0.0]), None);
}

#[test]
fn ndcg_hand_computed() {
    let groups = vec![vec![0, 1, 2], vec![3, 4]];
    // Group 0 perfectly ranked; group 1 reversed: DCG = 1/log2(3), IDCG = 1.
    let scores = [0.9, 0.5, 0.1, 0.9, 0.1];
    let labels = [1.0, 0.0, 0.0, 0.0, 1.0];
    let want = (1.0 + 1.0 / 3f64.log2()) / 2.0;
    let got = mean_ndcg(&scores, &labels, &groups, 10).unwrap();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    // A group without positives is skipped; none at all -> None.
    assert_eq!(mean_ndcg(&scores, &[0.0; 5], &groups, 10), None);
}

#[test]
fn config_reads_partial_files() {
    let cfg: HeadConfig = serde_json::from_str(r#"{"epochs": 3}"#).unwrap();
    assert_eq!(
        cfg,
        HeadConfig {
            epochs: 3,
            ..HeadConfig::default()
        }
    );
    assert!(serde_json::from_str::<HeadConfig>(r#"{"epoch": 3}"#).is_err());
}

/// Timing: 2,000,000 samples x 20 features (20,000 groups x 100), 3 epochs.
/// `cargo test --release -- --ignored --nocapture timing`
#[test]
#[ignore]
fn timing_two_million_samples() {
    let d = 20;
    let coef: Vec<f32> = (0..d).map(|j| 1.0 / (1.0 + j as f32)).collect();
    let label = |x: &[f32], rng: &mut SplitMix64| {
        let z: f32 = x.iter().zip(&coef).map(|(a, b)| a * b).sum::<f32>() - 2.0;
        f32::from(rng.next_f64() < f64::from(sigmoid(2.0 * z)))
    };
    let t = Instant::now();
    let train = synth(2_000_000, d, 20, 100, label);
    let val = synth(200_000, d, 21, 100, label);
    eprintln!("data generated in {:.1}s", t.elapsed().as_secs_f64());
    let cfg = HeadConfig {
        epochs: 3,
        ..HeadConfig::default()
    };
    let t = Instant::now();
    let (_, report) = CtrHead::train(names(d), &train, &val, &cfg, &mut |e| {
        eprintln!("{:.1}s {e:?}", t.elapsed().as_secs_f64());
    })
    .unwrap();
    eprintln!(
        "trained 3 epochs on {} samples (batch {}) in {:.1}s; best val AUC {:?}",
        report.train_samples, cfg.batch_size, report.seconds, report.best_val_auc
    );
}

/// `user_activity`-like column: ln(1 + events).
fn activity(events: f32) -> f32 {
    events.ln_1p()
}

/// Appends a column to every row: `value(i)` for row `i`.
fn with_column(data: &TrainData, value: impl Fn(usize) -> f32) -> TrainData {
    let mut out = data.clone();
    for (i, row) in out.rows.iter_mut().enumerate() {
        row.push(value(i));
    }
    out
}

#[test]
fn a_near_constant_feature_cannot_dominate_the_logit() {
    // The reported failure: every training sample came from shoppers with 10 events,
    // so `user_activity` was constant; one more event at serving time moved it by 0.087,
    // which the old 1e-6 floor turned into a contribution of -30,202 to every logit.
    let base_train = synth(2000, 3, 21, 10, separable);
    let base_val = synth(500, 3, 22, 10, separable);
    let val = with_column(&base_val, |_| activity(10.0));
    // Exactly constant, and near-constant (1% of samples had one event more).
    for outliers in [0, 20] {
        let train = with_column(&base_train, |i| {
            activity(if i < outliers { 11.0 } else { 10.0 })
        });
        let (head, report) = fit(&train, &val, &small_cfg());
        assert!(report.best_val_auc.unwrap() > 0.9, "{report:?}");
        let (mean, std) = head.normalisation();
        assert!(
            std[3] >= 0.99 * RELATIVE_STD_FLOOR as f32 * mean[3],
            "std {} is floored relative to the mean {}",
            std[3],
            mean[3]
        );
        let z0 = head.predict_logits(&val.rows).unwrap();
        let spread = z0.iter().copied().fold(f32::MIN, f32::max)
            - z0.iter().copied().fold(f32::MAX, f32::min);
        // A feature that never varied starts, and stays, with zero weights: it cannot
        // move the logit at all. One that varied on 1% of the samples may have learnt
        // something from them, but a small fraction of what the informative features
        // move (the old floor moved it by tens of thousands).
        let bound = if outliers == 0 { 1e-4 } else { 0.1 * spread };
        // One more event, and a thousand more.
        for events in [11.0, 1000.0] {
            let shifted = with_column(&base_val, |_| activity(events));
            let z1 = head.predict_logits(&shifted.rows).unwrap();
            let moved = z0
                .iter()
                .zip(&z1)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                moved <= bound,
                "{outliers} outliers, {events} events: the logit moved by {moved} \
                 (spread of the logits {spread})"
            );
            for row in shifted.rows.iter().take(20) {
                let c = head.contributions(row).unwrap();
                assert!(c[3].1.abs() <= bound, "{:?} (bound {bound})", c[3]);
            }
            // Scores still rank: neither all 0 nor all 1, and the order holds.
            let p = head.predict(&shifted.rows).unwrap();
            assert!(p.iter().any(|&p| p > 0.05) && p.iter().any(|&p| p < 0.95));
            let auc = soft_label_auc(&p, &shifted.labels).unwrap();
            assert!(auc > 0.9, "AUC {auc}");
        }
    }
}

#[test]
fn standardised_values_are_clipped() {
    let train = synth(800, 3, 23, 10, separable);
    let (head, _) = fit(&train, &TrainData::default(), &small_cfg());
    assert_eq!(head.z_clip(), Z_CLIP);
    let (mean, std) = head.normalisation();
    let at = |x0: f32| head.predict_logits(&[vec![x0, mean[1], mean[2]]]).unwrap()[0];
    // Anything beyond Z_CLIP standard deviations scores as Z_CLIP would.
    let edge = at(mean[0] + Z_CLIP * std[0]);
    for x0 in [mean[0] + 10.0 * std[0], 1e30, f32::MAX] {
        assert_eq!(at(x0), edge, "{x0}");
    }
    assert_eq!(at(-f32::MAX), at(mean[0] - Z_CLIP * std[0]));
    assert!(edge.is_finite());
    // Inside the bound nothing changes: the value still moves the score.
    assert_ne!(at(mean[0] + std[0]), edge);
}

#[test]
fn heads_saved_without_a_clip_still_load() {
    let train = synth(800, 3, 25, 10, separable);
    let (mut head, _) = fit(&train, &TrainData::default(), &small_cfg());
    // A head from before the relative floor: feature 2 (mean about 20) kept a
    // near-zero deviation.
    head.std[2] = 1e-6;
    let dir = tempfile::tempdir().unwrap();
    head.save(dir.path(), &Value::Null).unwrap();
    let card_path = dir.path().join(CARD_FILE);
    let mut card: Value = serde_json::from_slice(&fs::read(&card_path).unwrap()).unwrap();
    assert_eq!(card["normalisation"]["clip"], json!(Z_CLIP));
    // Saved by this build: loaded verbatim.
    assert_eq!(
        CtrHead::load(dir.path()).unwrap().normalisation().1[2],
        1e-6
    );

    card["normalisation"]
        .as_object_mut()
        .unwrap()
        .remove("clip");
    fs::write(&card_path, serde_json::to_vec(&card).unwrap()).unwrap();
    let old = CtrHead::load(dir.path()).unwrap();
    assert_eq!(old.z_clip(), Z_CLIP);
    let (mean, std) = old.normalisation();
    let floor = RELATIVE_STD_FLOOR as f32 * mean[2].abs();
    assert!(
        (std[2] - floor).abs() <= 1e-6 * floor,
        "{} vs {floor}",
        std[2]
    );
    // The features that vary keep their statistics.
    assert_eq!(&std[..2], &head.normalisation().1[..2]);

    card["normalisation"]["clip"] = json!(-1.0);
    fs::write(&card_path, serde_json::to_vec(&card).unwrap()).unwrap();
    let e = CtrHead::load(dir.path()).unwrap_err();
    assert!(matches!(e, HeadError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("normalisation.clip"), "{e}");
}
