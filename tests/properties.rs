//! Property tests: HNSW against exact search, arbitrary query text, encoder
//! batching invariants.

mod common;

use std::sync::OnceLock;

use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use shelfrank::encoder::{Encoder, EncoderOptions};
use shelfrank::vector::{dot, exact_search, HnswIndex, HnswParams, Quantization};
use shelfrank::{Engine, Mode, SearchRequest};

fn random_unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            // Sum of uniforms: a cheap, roughly Gaussian coordinate.
            let v: Vec<f32> = (0..dim)
                .map(|_| (0..4).map(|_| rng.gen::<f32>() - 0.5).sum())
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect()
}

fn recall_at_10(n: usize, dim: usize, seed: u64) -> f64 {
    let data = random_unit_vectors(n, dim, seed);
    let queries = random_unit_vectors(100, dim, seed ^ 0xABCD);
    let index = HnswIndex::build(&data, dim, f32_params(), &|_| {}).unwrap();
    let flat: Vec<f32> = data.iter().flatten().copied().collect();
    let mut found = 0;
    for q in &queries {
        let truth: Vec<u32> = exact_search(&flat, dim, q, 10)
            .iter()
            .map(|n| n.ord)
            .collect();
        let got = index.search(q, 10, None, None).unwrap();
        found += got.iter().filter(|n| truth.contains(&n.ord)).count();
    }
    found as f64 / (queries.len() * 10) as f64
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3, ..ProptestConfig::default() })]
    #[test]
    fn hnsw_recall_at_10_is_at_least_095(seed in any::<u64>()) {
        let r = recall_at_10(3000, 32, seed);
        prop_assert!(r >= 0.95, "recall@10 = {r}");
    }
}

/// Mean share of `b`'s rows in `a`, over queries.
fn overlap(a: &[Vec<u32>], b: &[Vec<u32>]) -> f64 {
    let shared: usize = a
        .iter()
        .zip(b)
        .map(|(x, y)| y.iter().filter(|r| x.contains(r)).count())
        .sum();
    shared as f64 / b.iter().map(Vec::len).sum::<usize>() as f64
}

/// Recall@10 against exact search of each query's answer.
fn recall_of(answers: &[Vec<u32>], truth: &[Vec<u32>]) -> f64 {
    overlap(truth, answers)
}

fn ords(c: Vec<shelfrank::fuse::Candidate>) -> Vec<u32> {
    c.into_iter().map(|c| c.ord).collect()
}

#[test]
fn a_loaded_graph_finds_what_the_built_one_finds() {
    // The loaded graph is searched by shelfrank's own walk over the compact copy,
    // the built one by hnsw_rs: the same walk over the same graph gives the same
    // answers (an int8 graph's integer distances tie more often, and ties may
    // break the other way).
    let (n, dim) = (4000, 24);
    let data = random_unit_vectors(n, dim, 1);
    let flat: Vec<f32> = data.iter().flatten().copied().collect();
    let queries = random_unit_vectors(200, dim, 2);
    let truth: Vec<Vec<u32>> = queries
        .iter()
        .map(|q| ords(exact_search(&flat, dim, q, 10)))
        .collect();
    for params in [f32_params(), int8_params()] {
        let index = HnswIndex::build_with(
            &data,
            dim,
            HnswParams {
                ef_search: 32,
                ..params
            },
            shelfrank::vector::Insertion::Deterministic,
            &|_| {},
        )
        .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        index.save(tmp.path(), "g").unwrap();
        let loaded =
            HnswIndex::load(tmp.path(), "g", dim, n, index.params(), index.int8_scale()).unwrap();
        assert_eq!(loaded.int8_scale(), index.int8_scale());
        let (mut built, mut served) = (Vec::new(), Vec::new());
        for q in &queries {
            built.push(ords(
                index.search_rescored(q, 10, None, None, &flat).unwrap(),
            ));
            let got = loaded.search_rescored(q, 10, None, None, &flat).unwrap();
            assert_eq!(got.len(), 10);
            served.push(ords(got));
        }
        let (rb, rs) = (recall_of(&built, &truth), recall_of(&served, &truth));
        let same = overlap(&built, &served);
        if params.quantization == Quantization::F32 {
            assert_eq!(built, served);
        }
        assert!(same >= 0.99, "{params:?}: answers share {same}");
        assert!(
            rs >= rb - 0.002,
            "{params:?}: recall {rb} built, {rs} loaded"
        );
        assert!(rs >= 0.9, "{params:?}: recall {rs} at ef 32");
    }
}

#[test]
fn a_loaded_graph_returns_only_allowed_rows_and_finds_them() {
    let (n, dim) = (3000, 16);
    let data = random_unit_vectors(n, dim, 7);
    let flat: Vec<f32> = data.iter().flatten().copied().collect();
    let index = HnswIndex::build(&data, dim, int8_params(), &|_| {}).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    index.save(tmp.path(), "g").unwrap();
    let loaded =
        HnswIndex::load(tmp.path(), "g", dim, n, int8_params(), index.int8_scale()).unwrap();
    // Every third row is allowed.
    let allowed = |row: usize| row.is_multiple_of(3);
    let rows: Vec<u32> = (0..n as u32).filter(|&r| allowed(r as usize)).collect();
    let (mut truth, mut got) = (Vec::new(), Vec::new());
    for q in random_unit_vectors(100, dim, 8) {
        truth.push(ords(shelfrank::vector::exact_search_filtered(
            &flat, dim, &q, 10, &rows,
        )));
        let found = ords(
            loaded
                .search_rescored(&q, 10, None, Some(&allowed), &flat)
                .unwrap(),
        );
        assert!(found.iter().all(|&r| allowed(r as usize)), "{found:?}");
        assert_eq!(found.len(), 10);
        got.push(found);
    }
    let r = recall_of(&got, &truth);
    assert!(r >= 0.95, "filtered recall@10 {r}");
    // Nothing allowed: nothing found.
    let none = |_: usize| false;
    assert!(loaded
        .search(&data[0], 10, None, Some(&none))
        .unwrap()
        .is_empty());
}

/// A float32 graph (the default is int8).
fn f32_params() -> HnswParams {
    HnswParams {
        quantization: Quantization::F32,
        ..HnswParams::default()
    }
}

#[test]
fn the_default_ef_search_grows_with_the_graph() {
    use shelfrank::vector::EF_SEARCH_AUTO;
    assert_eq!(HnswParams::default().ef_search, EF_SEARCH_AUTO);
    assert_eq!(HnswParams::ef_search_for(0), 128);
    assert_eq!(HnswParams::ef_search_for(55_000), 128);
    assert_eq!(HnswParams::ef_search_for(100_000), 128);
    assert_eq!(HnswParams::ef_search_for(200_000), 192);
    assert_eq!(HnswParams::ef_search_for(1_000_000), 352);
    let mut last = 0;
    for n in (0..30).map(|i| 1usize << i) {
        let ef = HnswParams::ef_search_for(n);
        assert!(ef >= last && ef.is_multiple_of(16) && ef <= shelfrank::vector::MAX_EF_SEARCH);
        last = ef;
    }
    assert_eq!(HnswParams::ef_search_for(usize::MAX), 3168);
    // A built graph records the value it picked; an explicit one is kept.
    let data = random_unit_vectors(300, 8, 3);
    let auto = HnswIndex::build(&data, 8, HnswParams::default(), &|_| {}).unwrap();
    assert_eq!(auto.params().ef_search, 128);
    let fixed = HnswParams {
        ef_search: 40,
        ..HnswParams::default()
    };
    let set = HnswIndex::build(&data, 8, fixed, &|_| {}).unwrap();
    assert_eq!(set.params().ef_search, 40);
}

#[test]
fn new_graphs_are_int8_and_old_parameter_sets_f32() {
    assert_eq!(HnswParams::default().quantization, Quantization::Int8);
    let old: HnswParams =
        serde_json::from_str(r#"{"m": 16, "ef_construction": 200, "ef_search": 128}"#).unwrap();
    assert_eq!(old.quantization, Quantization::F32);
}

fn int8_params() -> HnswParams {
    HnswParams {
        quantization: Quantization::Int8,
        ..HnswParams::default()
    }
}

/// Recall@10 of an int8 graph on `n` random vectors, before and after rescoring
/// with the float32 vectors.
fn int8_recall_at_10(n: usize, dim: usize, seed: u64) -> (f64, f64) {
    let data = random_unit_vectors(n, dim, seed);
    let queries = random_unit_vectors(100, dim, seed ^ 0xABCD);
    let index = HnswIndex::build(&data, dim, int8_params(), &|_| {}).unwrap();
    assert!(index.int8_scale().is_some());
    let flat: Vec<f32> = data.iter().flatten().copied().collect();
    let (mut raw, mut rescored) = (0, 0);
    for q in &queries {
        let truth: Vec<u32> = exact_search(&flat, dim, q, 10)
            .iter()
            .map(|n| n.ord)
            .collect();
        let count = |got: Vec<shelfrank::fuse::Candidate>| {
            got.iter().filter(|n| truth.contains(&n.ord)).count()
        };
        raw += count(index.search(q, 10, None, None).unwrap());
        rescored += count(index.search_rescored(q, 10, None, None, &flat).unwrap());
    }
    let total = (queries.len() * 10) as f64;
    (raw as f64 / total, rescored as f64 / total)
}

#[test]
fn int8_graph_recall_after_rescoring_is_at_least_095_and_not_below_before() {
    let (raw, rescored) = int8_recall_at_10(3000, 32, 5);
    assert!(rescored >= 0.95, "recall@10 after rescoring = {rescored}");
    assert!(
        rescored >= raw,
        "rescoring lowered recall: {raw} -> {rescored}"
    );
}

#[test]
fn rescoring_returns_exact_scores_in_exact_order() {
    let dim = 48;
    let data = random_unit_vectors(2000, dim, 9);
    let flat: Vec<f32> = data.iter().flatten().copied().collect();
    let index = HnswIndex::build(&data, dim, int8_params(), &|_| {}).unwrap();
    let mut approximate = 0;
    for q in random_unit_vectors(30, dim, 10) {
        let ef = 64;
        let graph = index.search(&q, ef, Some(ef), None).unwrap();
        let got = index
            .search_rescored(&q, 10, Some(ef), None, &flat)
            .unwrap();
        assert_eq!(got.len(), 10);
        // Every score is the exact inner product of its float32 row ...
        for c in &got {
            let row = &data[c.ord as usize];
            assert_eq!(c.score, dot(row, &q), "row {}", c.ord);
        }
        // ... the order is the exact one (best first, ties by row) ...
        for w in got.windows(2) {
            assert!(
                w[0].score > w[1].score || (w[0].score == w[1].score && w[0].ord < w[1].ord),
                "{w:?}"
            );
        }
        // ... and they are the exact top 10 of the candidates the walk kept.
        let mut kept: Vec<(f32, u32)> = graph
            .iter()
            .map(|c| (dot(&data[c.ord as usize], &q), c.ord))
            .collect();
        kept.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let expect: Vec<u32> = kept.iter().take(10).map(|x| x.1).collect();
        let ords: Vec<u32> = got.iter().map(|c| c.ord).collect();
        assert_eq!(ords, expect);
        // The graph's own scores are int8 approximations, not the exact ones.
        approximate += graph
            .iter()
            .filter(|c| c.score != dot(&data[c.ord as usize], &q))
            .count();
    }
    assert!(
        approximate > 0,
        "int8 scores were all exact: rescoring tested nothing"
    );
}

#[test]
fn int8_graph_saved_and_loaded_finds_the_same_rows_and_needs_its_scale() {
    let dim = 16;
    let data = random_unit_vectors(500, dim, 3);
    let flat: Vec<f32> = data.iter().flatten().copied().collect();
    let index = HnswIndex::build(&data, dim, int8_params(), &|_| {}).unwrap();
    let scale = index.int8_scale().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    index.save(tmp.path(), "g").unwrap();
    // The graph's data file holds one byte a component.
    let data_bytes = std::fs::metadata(tmp.path().join("g.hnsw.data"))
        .unwrap()
        .len();
    assert_eq!(data_bytes, 4 + 8 + 500 * (20 + dim as u64));
    let loaded = HnswIndex::load(tmp.path(), "g", dim, 500, int8_params(), Some(scale)).unwrap();
    assert_eq!(loaded.int8_scale(), Some(scale));
    let (mut built, mut served) = (Vec::new(), Vec::new());
    for q in random_unit_vectors(20, dim, 4) {
        built.push(ords(
            index.search_rescored(&q, 10, None, None, &flat).unwrap(),
        ));
        served.push(ords(
            loaded.search_rescored(&q, 10, None, None, &flat).unwrap(),
        ));
    }
    assert!(overlap(&built, &served) >= 0.97);
    let e = HnswIndex::load(tmp.path(), "g", dim, 500, int8_params(), None).unwrap_err();
    assert!(e.to_string().contains("int8_step"), "{e}");
    // Read as a float32 graph, the dump is refused, naming the file.
    let e = HnswIndex::load(tmp.path(), "g", dim, 500, f32_params(), None).unwrap_err();
    assert!(e.to_string().contains("g.hnsw.data"), "{e}");
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<(tempfile::TempDir, Engine)> = OnceLock::new();
    &ENGINE
        .get_or_init(|| {
            let tmp = tempfile::tempdir().unwrap();
            let index = common::build_index(tmp.path(), "idx");
            let engine = Engine::open(&index).unwrap();
            (tmp, engine)
        })
        .1
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn any_query_text_searches_without_error(q in any::<String>(), k in 1usize..50, mode in 0u8..3) {
        let mode = [Mode::Bm25, Mode::Dense, Mode::Hybrid][mode as usize];
        let hits = engine().search(&SearchRequest::new(q).mode(mode).k(k));
        prop_assert!(hits.is_ok(), "{:?}", hits.err());
        prop_assert!(hits.unwrap().len() <= k);
    }

    #[test]
    fn query_syntax_characters_are_plain_text(words in proptest::collection::vec("[a-z]{1,8}|[\"():\\[\\]{}^~*?!+-]|AND|OR|NOT", 0..12)) {
        let q = words.join(" ");
        prop_assert!(engine().search(&SearchRequest::new(q).mode(Mode::Bm25)).is_ok());
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn tiny_encoder_batches_agree_with_single_texts() {
    let enc = Encoder::load(&EncoderOptions::new(common::TINY_MODEL)).unwrap();
    let texts = [
        "",
        "rain shower head",
        "Delta Vero Single-Handle Shower Faucet in Chrome",
        "3/4 in. x 3 in. x 8 ft. MDF",
        "💡",
        &"drill ".repeat(200),
    ];
    let singles: Vec<Vec<f32>> = texts.iter().map(|t| enc.embed(t).unwrap()).collect();
    for v in &singles {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
    }
    for batch in [1, 2, 4, 32] {
        let many = enc.embed_many(&texts, batch, &|_| {}).unwrap();
        for (s, m) in singles.iter().zip(&many) {
            assert!(cosine(s, m) >= 0.9999, "batch {batch}: {}", cosine(s, m));
        }
    }
    // Truncation: the model's limit is 64 tokens.
    assert_eq!(enc.tokenize(&"drill ".repeat(200)).unwrap().len(), 64);
}

#[test]
fn data_parallel_workers_agree_with_one_worker() {
    let texts: Vec<String> = (0..70)
        .map(|i| format!("{} cordless drill {}", "white ".repeat(i % 9), i))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut one = EncoderOptions::new(common::TINY_MODEL);
    one.workers = Some(1);
    let mut two = one.clone();
    two.workers = Some(2);
    let e1 = Encoder::load(&one).unwrap();
    let e2 = Encoder::load(&two).unwrap();
    for batch in [1, 7, 32] {
        let a = e1.embed_many(&refs, batch, &|_| {}).unwrap();
        let b = e2.embed_many(&refs, batch, &|_| {}).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!(cosine(x, y) >= 0.9999, "batch {batch}");
        }
    }
}

#[test]
fn a_deterministic_graph_build_gives_the_same_graph_every_time() {
    use shelfrank::vector::Insertion;
    let dim = 24;
    let data = random_unit_vectors(1200, dim, 21);
    let tmp = tempfile::tempdir().unwrap();
    let mut dumps = Vec::new();
    for (i, q) in [
        Quantization::F32,
        Quantization::F32,
        Quantization::Int8,
        Quantization::Int8,
    ]
    .into_iter()
    .enumerate()
    {
        let params = HnswParams {
            quantization: q,
            ..HnswParams::default()
        };
        let index =
            HnswIndex::build_with(&data, dim, params, Insertion::Deterministic, &|_| {}).unwrap();
        let dir = tmp.path().join(i.to_string());
        std::fs::create_dir(&dir).unwrap();
        index.save(&dir, "g").unwrap();
        dumps.push(std::fs::read(dir.join("g.hnsw.graph")).unwrap());
    }
    assert_eq!(dumps[0], dumps[1], "two float32 builds differ");
    assert_eq!(dumps[2], dumps[3], "two int8 builds differ");
}
