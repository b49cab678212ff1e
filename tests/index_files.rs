//! On-disk robustness: corrupt, truncated, foreign or newer indexes, a different
//! model, and atomic replacement.

mod common;

use std::fs;

use shelfrank::{Engine, EngineBuilder, Error, IndexBuilder, SearchRequest};

#[test]
fn rebuilding_replaces_the_index_atomically() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let mut products = common::products();
    products.truncate(10);
    IndexBuilder::new(&index, common::TINY_MODEL)
        .build(&products)
        .unwrap();
    assert_eq!(Engine::open(&index).unwrap().len(), 10);
    // Nothing but the index is left in the parent directory.
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn a_failed_build_keeps_the_previous_index() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let err = IndexBuilder::new(&index, tmp.path().join("no-such-model"))
        .build(&common::products())
        .unwrap_err();
    assert!(matches!(err, Error::ModelNotFound { .. }), "{err}");
    assert!(err.to_string().contains("scripts/fetch-model.sh"), "{err}");
    assert_eq!(Engine::open(&index).unwrap().len(), 40);
    // Duplicate ids in code-built products are refused before anything is written.
    let mut dup = common::products();
    dup.push(dup[0].clone());
    let err = IndexBuilder::new(&index, common::TINY_MODEL)
        .build(&dup)
        .unwrap_err();
    assert!(matches!(err, Error::Catalog(_)), "{err}");
    assert!(err.to_string().contains("duplicate id \"p001\""), "{err}");
    assert_eq!(Engine::open(&index).unwrap().len(), 40);
}

#[test]
fn missing_index_says_how_to_build_one() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Engine::open(tmp.path().join("nothing")).unwrap_err();
    assert!(matches!(err, Error::IndexNotFound { .. }), "{err}");
    assert!(err.to_string().contains("shelfrank build"), "{err}");
}

#[test]
fn newer_format_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let path = common::data_dir(&index).join("manifest.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert!(value["format_version"].as_u64().unwrap() <= shelfrank::store::FORMAT_VERSION as u64);
    value["format_version"] = 99.into();
    fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    let err = Engine::open(&index).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedFormat { found: 99, .. }),
        "{err}"
    );
}

#[test]
fn truncated_or_flipped_files_are_detected() {
    for file in [
        "vectors.f32",
        "products.bin",
        "hnsw/graph.hnsw.graph",
        "hnsw/graph.hnsw.data",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let index = common::build_index(tmp.path(), "idx");
        let path = common::data_dir(&index).join(file);
        let mut bytes = fs::read(&path).unwrap();
        // Truncate.
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = Engine::open(&index).unwrap_err();
        assert!(matches!(err, Error::CorruptIndex { .. }), "{file}: {err}");
        assert!(
            err.to_string().contains(file.rsplit('/').next().unwrap()),
            "{err}"
        );
        // Flip one byte, same length.
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        fs::write(&path, &bytes).unwrap();
        let err = Engine::open(&index).unwrap_err();
        assert!(matches!(err, Error::CorruptIndex { .. }), "{file}: {err}");
    }
}

#[test]
fn unverified_open_of_garbage_files_still_does_not_panic() {
    for file in [
        "products.bin",
        "hnsw/graph.hnsw.graph",
        "hnsw/graph.hnsw.data",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let index = common::build_index(tmp.path(), "idx");
        let path = common::data_dir(&index).join(file);
        let len = fs::metadata(&path).unwrap().len() as usize;
        fs::write(&path, vec![0xAB; len]).unwrap();
        let res = EngineBuilder::new(&index).verify_checksums(false).build();
        assert!(
            matches!(res, Err(Error::CorruptIndex { .. })),
            "{file}: {:?}",
            res.err()
        );
    }
}

#[test]
fn garbage_manifest_is_corrupt_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    fs::write(common::data_dir(&index).join("manifest.json"), "{ not json").unwrap();
    assert!(matches!(
        Engine::open(&index),
        Err(Error::CorruptIndex { .. })
    ));
}

#[test]
fn opening_with_another_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let other = tmp.path().join("other-model");
    shelfrank::encoder::create_tiny_model(&other, &["faucet", "drill"], 7).unwrap();
    let err = EngineBuilder::new(&index)
        .model_dir(&other)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::ModelMismatch(_)), "{err}");
    assert!(err.to_string().contains("rebuild"), "{err}");
    // Keyword-only opening needs no model at all.
    let engine = EngineBuilder::new(&index)
        .model_dir(&other)
        .keyword_only(true)
        .build()
        .unwrap();
    assert!(!engine
        .search(&SearchRequest::new("faucet").mode(shelfrank::Mode::Bm25))
        .unwrap()
        .is_empty());
}

#[test]
fn cuda_without_the_feature_is_a_clear_error() {
    if shelfrank::encoder::CUDA_COMPILED {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let err = EngineBuilder::new(&index)
        .device("cuda:0".parse().unwrap())
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Device { .. }), "{err}");
    assert!(err.to_string().contains("--features cuda"), "{err}");
}

#[test]
fn rebuild_reuses_unchanged_embeddings_only() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let mut products = common::products();
    let before = Engine::open(&index).unwrap();
    let old_vec = before.embedding(&products[1].id).unwrap().to_vec();
    drop(before);
    products[0].title = "Completely different title".into();
    let summary = IndexBuilder::new(&index, common::TINY_MODEL)
        .build(&products)
        .unwrap();
    assert_eq!(summary.reused_embeddings, products.len() - 1);
    let after = Engine::open(&index).unwrap();
    assert_eq!(after.embedding(&products[1].id).unwrap(), &old_vec[..]);
    let fresh = after
        .encoder()
        .unwrap()
        .embed(&shelfrank::build::embedding_text(&products[0]))
        .unwrap();
    let stored = after.embedding(&products[0].id).unwrap();
    let cos: f32 = fresh.iter().zip(stored).map(|(a, b)| a * b).sum();
    assert!(cos > 0.9999, "product 0 was re-encoded: {cos}");
    // Opting out encodes everything.
    let summary = IndexBuilder::new(&index, common::TINY_MODEL)
        .reuse_embeddings(false)
        .build(&products)
        .unwrap();
    assert_eq!(summary.reused_embeddings, 0);
}

#[test]
fn the_manifest_records_the_precision_and_a_new_one_re_encodes() {
    use shelfrank::encoder::{EncoderOptions, Precision};
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let products = common::products();
    let precision_of = || {
        let engine = Engine::open(&index).unwrap();
        engine.manifest().model.precision
    };
    assert_eq!(precision_of(), Precision::F32);
    let mut opts = EncoderOptions::new(common::TINY_MODEL);
    opts.precision = Precision::Bf16;
    let bf16 = |opts: &EncoderOptions| {
        IndexBuilder::new(&index, common::TINY_MODEL)
            .encoder_options(opts.clone())
            .build(&products)
            .unwrap()
    };
    assert_eq!(
        bf16(&opts).reused_embeddings,
        0,
        "f32 vectors reused for bf16"
    );
    assert_eq!(precision_of(), Precision::Bf16);
    assert_eq!(bf16(&opts).reused_embeddings, products.len());
    // A bf16 index answers queries encoded in f32: it is the same model.
    let engine = Engine::open(&index).unwrap();
    assert_eq!(engine.encoder().unwrap().precision(), Precision::F32);
    let hits = engine.search(&SearchRequest::new("faucet")).unwrap();
    assert!(!hits.is_empty());
}
