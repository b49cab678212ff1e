//! Encoder fine-tuning (issue #11) on the fixture index with the tiny model: the
//! loss falls and the fixture NDCG rises, the same seed gives the same model, the
//! saved directory loads and retrieves as validated, a build with it re-embeds
//! everything, and the command refuses to write a model that is not better.

mod common;

use std::path::Path;
use std::process::Command;

use shelfrank::encoder::tune::{tune_encoder, TuneData, TuneOptions, TunedEncoder};
use shelfrank::encoder::{Encoder, EncoderOptions};
use shelfrank::eval;
use shelfrank::tune::{tune_data, TuneSource, TuneSpec};
use shelfrank::{Engine, IndexBuilder, Silent};

/// Fixture pairs (relevant = grade >= 2); every query with a relevant product is
/// also scored (the fixture has too few queries to hold some out).
fn fixture_data(engine: &Engine) -> TuneData {
    let queries = eval::read_queries(Path::new("fixtures/queries.tsv")).unwrap();
    let qrels = eval::read_qrels(Path::new("fixtures/qrels.txt")).unwrap();
    let mut spec = TuneSpec::new(TuneSource::Judgements { queries, qrels });
    spec.min_grade = 2;
    spec.validation = 0.5;
    let (mut data, summary) = tune_data(engine, &spec, &Silent).unwrap();
    assert!(
        summary.pairs > 0 && summary.validation_queries > 0,
        "{summary:?}"
    );
    data.pairs = data
        .positives
        .iter()
        .enumerate()
        .flat_map(|(q, ps)| ps.iter().map(move |&p| (q, p)))
        .collect();
    data.validation = data
        .positives
        .iter()
        .enumerate()
        .filter(|(_, ps)| !ps.is_empty())
        .map(|(q, ps)| (q, ps.iter().map(|&p| (p, 1.0)).collect()))
        .collect();
    data
}

fn options(epochs: usize) -> TuneOptions {
    TuneOptions {
        layers: 2,
        batch_size: 8,
        epochs,
        learning_rate: 1e-3,
        patience: epochs,
        ..TuneOptions::default()
    }
}

fn tune(engine: &Engine, data: &TuneData, epochs: usize) -> TunedEncoder {
    tune_encoder(
        Path::new(common::TINY_MODEL),
        data,
        &options(epochs),
        &Silent,
    )
    .unwrap()
    .tap(|_| assert!(engine.encoder().is_some()))
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&Self)) -> Self {
        f(&self);
        self
    }
}
impl<T> Tap for T {}

#[test]
fn tuning_on_fixture_pairs_lowers_the_loss_and_raises_ndcg() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::open(common::build_index(tmp.path(), "idx")).unwrap();
    let data = fixture_data(&engine);
    let tuned = tune(&engine, &data, 8);
    let r = &tuned.report;
    eprintln!("{r:?}");
    assert_eq!(r.epochs.len(), 8);
    let (first, last) = (r.epochs[0].loss, r.epochs[7].loss);
    assert!(last < first * 0.9, "loss {first} -> {last}");
    assert!(
        r.tuned_ndcg > r.base_ndcg,
        "NDCG {} -> {}",
        r.base_ndcg,
        r.tuned_ndcg
    );
    assert!(tuned.improved() && r.best_epoch > 0);
}

#[test]
fn the_same_seed_gives_the_same_model_and_a_saved_model_retrieves_as_validated() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let engine = Engine::open(&index).unwrap();
    let data = fixture_data(&engine);
    let a = tune(&engine, &data, 3);
    let b = tune(&engine, &data, 3);
    let losses = |t: &TunedEncoder| -> Vec<(f64, f64)> {
        t.report
            .epochs
            .iter()
            .map(|e| (e.loss, e.validation_ndcg))
            .collect()
    };
    assert_eq!(losses(&a), losses(&b));
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    a.save(&dir_a, "card a").unwrap();
    b.save(&dir_b, "card b").unwrap();
    assert_eq!(
        std::fs::read(dir_a.join("model.safetensors")).unwrap(),
        std::fs::read(dir_b.join("model.safetensors")).unwrap()
    );
    // A complete model directory, with the card; saving over it is refused.
    for f in [
        "config.json",
        "tokenizer.json",
        "vocab.txt",
        "1_Pooling/config.json",
        "README.md",
    ] {
        assert!(dir_a.join(f).is_file(), "{f} missing");
    }
    let err = a.save(&dir_a, "again").unwrap_err().to_string();
    assert!(err.contains("exists"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir_a.join("README.md")).unwrap(),
        "card a"
    );

    // The inference encoder loads the tuned weights unchanged: its retrieval gives the
    // NDCG the tuning measured for the kept epoch.
    let base = Encoder::load(&EncoderOptions::new(common::TINY_MODEL)).unwrap();
    let tuned = Encoder::load(&EncoderOptions::new(&dir_a)).unwrap();
    assert_ne!(base.info().sha256, tuned.info().sha256);
    let texts = |ids: &[usize], of: &[String]| -> Vec<String> {
        ids.iter().map(|&i| of[i].clone()).collect()
    };
    let all: Vec<usize> = (0..data.products.len()).collect();
    let embed = |t: Vec<String>| {
        let refs: Vec<&str> = t.iter().map(String::as_str).collect();
        tuned.embed_many(&refs, 32, &|_| {}).unwrap()
    };
    let products = embed(texts(&all, &data.products));
    let qids: Vec<usize> = data.validation.iter().map(|v| v.0).collect();
    let queries = embed(texts(&qids, &data.queries));
    let mut sum = 0.0;
    for (q, (_, judged)) in queries.iter().zip(&data.validation) {
        let mut scored: Vec<(usize, f32)> = products
            .iter()
            .enumerate()
            .map(|(i, p)| (i, p.iter().zip(q).map(|(x, y)| x * y).sum()))
            .collect();
        scored.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        let ranked: Vec<f64> = scored
            .iter()
            .take(10)
            .map(|(i, _)| judged.iter().find(|(j, _)| j == i).map_or(0.0, |(_, g)| *g))
            .collect();
        let ideal: Vec<f64> = judged.iter().map(|(_, g)| *g).collect();
        sum += eval::ndcg_of_gains(&ranked, &ideal, 10).unwrap();
    }
    let ndcg = sum / data.validation.len() as f64;
    assert!(
        (ndcg - a.report.tuned_ndcg).abs() < 1e-3,
        "inference {ndcg} vs tuning {}",
        a.report.tuned_ndcg
    );

    // A build with the tuned model re-embeds every product (reuse keys on the
    // model's checksum), then reuses its own embeddings.
    drop(engine);
    let products = common::products();
    let summary = IndexBuilder::new(&index, &dir_a).build(&products).unwrap();
    assert_eq!(summary.reused_embeddings, 0);
    let summary = IndexBuilder::new(&index, &dir_a).build(&products).unwrap();
    assert_eq!(summary.reused_embeddings, products.len());
}

fn shelfrank(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shelfrank"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_command_refuses_a_model_that_is_not_better_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let out = tmp.path().join("tuned");
    let index_arg = index.to_str().unwrap();
    let out_arg = out.to_str().unwrap();
    // A learning rate this high wrecks the model.
    let args = [
        "tune",
        "--index",
        index_arg,
        "--out",
        out_arg,
        "--queries",
        "fixtures/queries.tsv",
        "--qrels",
        "fixtures/qrels.txt",
        "--min-grade",
        "2",
        "--validation",
        "0.5",
        "--batch",
        "4",
        "--epochs",
        "2",
        "--lr",
        "0.5",
        "--quiet",
    ];
    let run = shelfrank(&args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("not better"), "{stderr}");
    assert!(!out.exists(), "a refused model was written");
    let mut forced = args.to_vec();
    forced.push("--force");
    let run = shelfrank(&forced);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(out.join("model.safetensors").is_file());
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    let base_sha = Encoder::load(&EncoderOptions::new(common::TINY_MODEL))
        .unwrap()
        .info()
        .sha256
        .clone();
    assert!(card.contains(&base_sha), "{card}");
    // Bad input is refused with the flag named, and nothing is written.
    let run = shelfrank(&[
        "tune", "--index", index_arg, "--out", out_arg, "--tasks", "x.tsv",
    ]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("exists already"));
}
