//! End-to-end: build an index over the fixture catalog with the tiny BERT, open
//! it, search in every mode, with filters, from many threads.

mod common;

use std::sync::Arc;

use shelfrank::{Engine, EngineBuilder, Error, Filters, Fusion, Mode, SearchRequest};

#[test]
fn keyword_search_ranks_the_obvious_product_first() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let engine = Engine::open(&index).unwrap();
    assert_eq!(engine.len(), 40);
    let hits = engine
        .search(&SearchRequest::new("rain shower head").mode(Mode::Bm25).k(5))
        .unwrap();
    assert_eq!(hits[0].id, "p002");
    assert!(hits[0].breakdown.bm25.unwrap() > 0.0);
    assert_eq!(hits[0].breakdown.bm25_rank, Some(1));
    assert!(hits[0].breakdown.dense.is_none());
    // Stemming: "drills" finds "Drill".
    let hits = engine
        .search(&SearchRequest::new("drills").mode(Mode::Bm25))
        .unwrap();
    assert!(hits.iter().any(|h| h.id == "p008"));
}

#[test]
fn every_mode_returns_k_hits_with_breakdowns() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let engine = Engine::open(&index).unwrap();
    let dense = engine
        .search(&SearchRequest::new("cordless drill").mode(Mode::Dense).k(7))
        .unwrap();
    assert_eq!(dense.len(), 7);
    for w in dense.windows(2) {
        assert!(w[0].score >= w[1].score);
    }
    for h in &dense {
        let c = h.breakdown.dense.unwrap();
        assert!((-1.0..=1.0001).contains(&c));
        // The dense score is the cosine of the stored embeddings.
        let q = engine.encoder().unwrap().embed("cordless drill").unwrap();
        let e = engine.embedding(&h.id).unwrap();
        let exact: f32 = q.iter().zip(e).map(|(a, b)| a * b).sum();
        assert!((exact - c).abs() < 1e-4, "{exact} vs {c}");
    }
    let hybrid = engine
        .search(&SearchRequest::new("cordless drill").k(10))
        .unwrap();
    assert_eq!(hybrid.len(), 10);
    assert!(hybrid
        .iter()
        .any(|h| h.breakdown.bm25.is_some() && h.breakdown.dense.is_some()));
    for h in &hybrid {
        assert_eq!(h.score, h.breakdown.fused);
    }
    // Both BM25 matches rank above products matched by neither word.
    let top2: Vec<&str> = hybrid[..2].iter().map(|h| h.id.as_str()).collect();
    assert!(top2.contains(&"p008") && top2.contains(&"p009"), "{top2:?}");
    let rrf = engine
        .search(
            &SearchRequest::new("cordless drill")
                .fusion(Fusion::rrf(60.0))
                .k(3),
        )
        .unwrap();
    assert_eq!(rrf.len(), 3);
}

#[test]
fn filters_apply_inside_both_retrievers() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let engine = Engine::open(&index).unwrap();
    let filters = Filters {
        category_prefix: Some(Filters::category("Bath")),
        ..Default::default()
    };
    let bath: Vec<&str> = ["p001", "p002", "p003", "p028", "p029"].to_vec();
    for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
        let hits = engine
            .search(
                &SearchRequest::new("white")
                    .mode(mode)
                    .k(5)
                    .filters(filters.clone()),
            )
            .unwrap();
        for h in &hits {
            assert!(bath.contains(&h.id.as_str()), "{mode:?} returned {}", h.id);
        }
        if mode != Mode::Bm25 {
            // Dense retrieval sees every product, so all 5 Bath products come back.
            assert_eq!(hits.len(), 5, "{mode:?}");
        }
    }
    let f = Filters {
        min_price: Some(50.0),
        max_price: Some(400.0),
        attributes: vec![("finish".into(), "stainless".into())],
        ..Default::default()
    };
    let hits = engine
        .search(&SearchRequest::new("stainless").k(10).filters(f))
        .unwrap();
    let mut ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    ids.sort();
    // Stainless: p004 ($99), p005 ($329), p007 ($1999, above the range).
    assert_eq!(ids, vec!["p004", "p005"]);
}

#[test]
fn filtered_bm25_still_returns_k_when_k_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let engine = Engine::open(&index).unwrap();
    // "in" is a stop word; "ft" appears in many titles, "sq" in a few.
    let all = engine
        .search(&SearchRequest::new("ft").mode(Mode::Bm25).k(50))
        .unwrap();
    let filters = Filters {
        max_price: Some(20.0),
        ..Default::default()
    };
    let cheap: Vec<_> = all
        .iter()
        .filter(|h| engine.product(&h.id).unwrap().price.unwrap() <= 20.0)
        .collect();
    let hits = engine
        .search(
            &SearchRequest::new("ft")
                .mode(Mode::Bm25)
                .k(cheap.len())
                .filters(filters),
        )
        .unwrap();
    assert_eq!(hits.len(), cheap.len());
}

#[test]
fn hostile_queries_never_error() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let engine = Engine::open(&index).unwrap();
    let long = "faucet ".repeat(1500);
    for q in [
        "",
        "   ",
        "\"",
        "title:faucet",
        "(a OR b) AND NOT c",
        "[1 TO 5]",
        "faucet^10",
        "*",
        "💡🚿",
        "\u{0}",
        "a\"b:c(d)[e]{f}~g^h",
        &long,
    ] {
        for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
            let res = engine.search(&SearchRequest::new(q).mode(mode));
            assert!(res.is_ok(), "{q:?} {mode:?}: {res:?}");
        }
    }
}

#[test]
fn bad_requests_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let engine = Engine::open(&index).unwrap();
    let err = engine.search(&SearchRequest::new("x").k(0)).unwrap_err();
    assert!(err.is_user_error());
    assert!(err.to_string().contains("k"), "{err}");
    let f = Filters {
        min_price: Some(9.0),
        max_price: Some(1.0),
        ..Default::default()
    };
    let err = engine
        .search(&SearchRequest::new("x").filters(f))
        .unwrap_err();
    assert!(err.to_string().contains("greater than"), "{err}");
    let mut req = SearchRequest::new("x").mode(Mode::Dense);
    req.embedding = Some(vec![0.0; 3]);
    let err = engine.search(&req).unwrap_err();
    assert!(err.to_string().contains("dims"), "{err}");
}

#[test]
fn keyword_only_engine_refuses_dense_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let engine = EngineBuilder::new(&index)
        .keyword_only(true)
        .build()
        .unwrap();
    assert!(engine
        .search(&SearchRequest::new("drill").mode(Mode::Bm25))
        .is_ok());
    let err = engine
        .search(&SearchRequest::new("drill").mode(Mode::Dense))
        .unwrap_err();
    assert!(matches!(err, Error::NoEncoder { .. }), "{err}");
}

#[test]
fn many_threads_search_one_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let engine = Arc::new(Engine::open(&index).unwrap());
    let expected = engine
        .search(&SearchRequest::new("gas grill").k(5))
        .unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let e = Arc::clone(&engine);
            let expected = expected.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let hits = e.search(&SearchRequest::new("gas grill").k(5)).unwrap();
                    assert_eq!(hits, expected, "every search in every thread agrees");
                }
                e.search(&SearchRequest::new("gas grill").k(5)).unwrap()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), expected);
    }
}

#[test]
fn repeated_queries_come_from_the_cache_with_the_same_results() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let cached = EngineBuilder::new(&index).query_cache(4).build().unwrap();
    let uncached = EngineBuilder::new(&index).query_cache(0).build().unwrap();
    for _ in 0..3 {
        for q in [
            "gas grill",
            "white paint",
            "drill",
            "faucet",
            "lamp",
            "gas grill",
        ] {
            let a = cached.search(&SearchRequest::new(q).k(5)).unwrap();
            let b = uncached.search(&SearchRequest::new(q).k(5)).unwrap();
            assert_eq!(a, b, "{q}");
        }
    }
    let v1 = cached.embed_query("gas grill", Mode::Dense).unwrap();
    let v2 = cached.embed_query("gas grill", Mode::Dense).unwrap();
    assert!(
        Arc::ptr_eq(&v1, &v2),
        "the second lookup is served from the cache"
    );
}

/// README's showcase: the only keyword match of "something to cook burgers
/// outside" is a microwave ("sensor cooking" in its description), while the real
/// model puts two grills closest in meaning. Absolute fusion ranks a grill first;
/// min-max fusion gave the lone keyword match a normalised 1.0 and the microwave won.
#[test]
fn showcase_query_ranks_a_grill_first() {
    let Some(model) = common::real_model() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index_with(tmp.path(), "idx", model);
    let engine = Engine::open(&index).unwrap();
    let query = "something to cook burgers outside";
    let hits = engine.search(&SearchRequest::new(query).k(3)).unwrap();
    let titles: Vec<&str> = hits
        .iter()
        .map(|h| engine.product(&h.id).unwrap().title.as_str())
        .collect();
    assert!(titles[0].contains("Grill"), "{titles:?}");
    let min_max = engine
        .search(&SearchRequest::new(query).k(3).fusion(Fusion::Weighted {
            bm25: 0.7,
            dense: 0.3,
        }))
        .unwrap();
    assert_eq!(min_max[0].id, "p005", "the microwave, first under min-max");
}

/// An index whose graph holds int8 vectors: recorded in the manifest (format 3),
/// reopened, and its dense hits carry the exact float32 scores, in the order the
/// float32 index gives them.
#[test]
fn an_int8_index_answers_with_exact_scores() {
    use shelfrank::vector::Quantization;
    let tmp = tempfile::tempdir().unwrap();
    let f32_index = common::build_index_quantized(tmp.path(), "f32", Quantization::F32);
    let int8_index = common::build_index_quantized(tmp.path(), "int8", Quantization::Int8);
    let read = |index: &std::path::Path| -> serde_json::Value {
        let text = std::fs::read_to_string(common::data_dir(index).join("manifest.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let (m32, m8) = (read(&f32_index), read(&int8_index));
    assert_eq!(m32["format_version"], 2);
    assert_eq!(m32["hnsw"]["quantization"], "f32");
    assert!(m32["hnsw"].get("int8_step").is_none());
    assert_eq!(m8["format_version"], 3);
    assert_eq!(m8["hnsw"]["quantization"], "int8");
    assert!(m8["hnsw"]["int8_step"].as_f64().unwrap() > 0.0);
    let (e32, e8) = (
        Engine::open(&f32_index).unwrap(),
        Engine::open(&int8_index).unwrap(),
    );
    assert_eq!(e8.quantization(), Quantization::Int8);
    let mut compared = 0;
    for q in [
        "cordless drill",
        "shower head",
        "led light bulb",
        "garden hose",
    ] {
        let req = SearchRequest::new(q).mode(Mode::Dense).k(5);
        let (a, b) = (e32.search(&req).unwrap(), e8.search(&req).unwrap());
        // Same products with the same exact scores; a fixture catalog this small
        // leaves no room for the graph walk to miss one.
        let pairs = |hits: &[shelfrank::Hit]| -> Vec<(String, f32)> {
            hits.iter().map(|h| (h.id.clone(), h.score)).collect()
        };
        assert_eq!(pairs(&a), pairs(&b), "query {q}");
        compared += a.len();
    }
    assert!(compared >= 10);
}
