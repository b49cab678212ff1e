//! Live catalog updates: upserts and deletes are durable, visible to the next
//! search in both retrievers and in reranking, survive a reopen, and a merge folds
//! them into a new generation without changing what searches return.

mod common;

use shelfrank::rank::RerankMode;
use shelfrank::{Engine, ExternalCandidate, Filters, Mode, Product, SearchRequest};

fn ids(engine: &Engine, req: &SearchRequest) -> Vec<String> {
    engine
        .search(req)
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect()
}

fn new_product(id: &str, title: &str) -> Product {
    let mut p = Product::new(id, title);
    p.category = vec!["Garden".into(), "Hoses".into()];
    p.brand = Some("Flexzilla".into());
    p.price = Some(39.0);
    p
}

#[test]
fn an_upserted_product_is_found_at_once_by_both_retrievers_and_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let index = common::build_index(dir.path(), "idx");
    let engine = Engine::open(&index).unwrap();
    let before = engine.len();
    let query = "zebrawood garden hose reel";
    assert!(!ids(&engine, &SearchRequest::new(query).mode(Mode::Bm25)).contains(&"new-1".into()));

    let n = engine
        .upsert_products(vec![new_product("new-1", "Zebrawood Garden Hose Reel")])
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(engine.len(), before + 1);
    assert_eq!(
        engine.product("new-1").unwrap().title,
        "Zebrawood Garden Hose Reel"
    );
    for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
        let found = ids(&engine, &SearchRequest::new(query).mode(mode).k(5));
        assert_eq!(
            found.first().map(String::as_str),
            Some("new-1"),
            "{mode:?}: {found:?}"
        );
    }
    // Filters see it too.
    let mut filtered = SearchRequest::new(query).k(5);
    filtered.filters = Filters {
        category_prefix: Some(vec!["Garden".into()]),
        ..Filters::default()
    };
    assert_eq!(ids(&engine, &filtered), vec!["new-1".to_string()]);
    drop(engine);

    let reopened = Engine::open(&index).unwrap();
    assert_eq!(reopened.len(), before + 1);
    assert_eq!(
        ids(&reopened, &SearchRequest::new(query).k(1)),
        vec!["new-1"]
    );
}

#[test]
fn a_replaced_product_is_found_by_its_new_text_only_and_a_deleted_one_never() {
    let dir = tempfile::tempdir().unwrap();
    let index = common::build_index(dir.path(), "idx");
    let engine = Engine::open(&index).unwrap();
    let victim = common::products()[0].clone();
    let old_query = victim.title.clone();
    let first = engine
        .search(&SearchRequest::new(&old_query).mode(Mode::Bm25).k(3))
        .unwrap();
    assert_eq!(first[0].id, victim.id);

    let mut replaced = victim.clone();
    replaced.title = "Quokka Patio Umbrella".into();
    replaced.description = None;
    engine.upsert_products(vec![replaced]).unwrap();
    let len = engine.len();
    let hits = ids(
        &engine,
        &SearchRequest::new("quokka patio umbrella")
            .mode(Mode::Bm25)
            .k(3),
    );
    assert_eq!(hits[0], victim.id);
    let by_old = engine
        .search(&SearchRequest::new(&old_query).mode(Mode::Bm25).k(50))
        .unwrap();
    // The old title's words no longer match the product (only its unchanged
    // category and brand may).
    let score_now = by_old.iter().find(|h| h.id == victim.id).map(|h| h.score);
    assert!(
        score_now.is_none_or(|s| s < first[0].score * 0.6),
        "{score_now:?} vs {}",
        first[0].score
    );

    assert!(engine.delete_product(&victim.id).unwrap());
    assert!(
        !engine.delete_product(&victim.id).unwrap(),
        "deleting twice"
    );
    assert_eq!(engine.len(), len - 1);
    assert!(engine.product(&victim.id).is_none());
    for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
        for q in ["quokka patio umbrella", old_query.as_str()] {
            let found = ids(&engine, &SearchRequest::new(q).mode(mode).k(50));
            assert!(!found.contains(&victim.id), "{mode:?} {q}: {found:?}");
        }
    }
    // Reranking another engine's candidates: the deleted id is unknown.
    let cands = vec![
        ExternalCandidate {
            id: victim.id.clone(),
            score: None,
        },
        ExternalCandidate {
            id: common::products()[1].id.clone(),
            score: None,
        },
    ];
    let mut req = SearchRequest::new("faucet");
    req.rerank = RerankMode::Profile;
    let out = engine.rerank(&req, &cands).unwrap();
    assert_eq!(out.unknown, vec![victim.id.clone()]);
    assert_eq!(out.hits.len(), 1);
    drop(engine);
    let reopened = Engine::open(&index).unwrap();
    assert!(reopened.product(&victim.id).is_none());
    assert_eq!(reopened.len(), len - 1);
}

#[test]
fn a_refused_batch_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let index = common::build_index(dir.path(), "idx");
    let engine = Engine::open(&index).unwrap();
    let len = engine.len();
    let mut bad = new_product("bad", "Bad Price Hose");
    bad.price = Some(-1.0);
    let err = engine
        .upsert_products(vec![new_product("ok", "Good Hose"), bad])
        .unwrap_err();
    let text = err.to_string();
    assert!(err.is_user_error(), "{text}");
    assert!(text.contains("price") && text.contains('2'), "{text}");
    let dup = engine
        .upsert_products(vec![new_product("d", "Hose A"), new_product("d", "Hose B")])
        .unwrap_err();
    assert!(dup.is_user_error(), "{dup}");
    assert_eq!(engine.len(), len);
    assert!(engine.product("ok").is_none());
    assert_eq!(engine.pending_updates(), 0);
    assert!(
        !index.join("updates").exists()
            || std::fs::read_dir(index.join("updates")).unwrap().count() == 0
    );
}

#[test]
fn a_second_engine_sees_the_first_ones_updates_after_a_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let index = common::build_index(dir.path(), "idx");
    let writer = Engine::open(&index).unwrap();
    let reader = Engine::open(&index).unwrap();
    writer
        .upsert_products(vec![new_product("new-2", "Aardvark Sprinkler")])
        .unwrap();
    assert!(reader.product("new-2").is_none());
    assert_eq!(reader.refresh_updates().unwrap(), 1);
    assert!(reader.product("new-2").is_some());
    // The reader writes next: it catches up first, so sequence numbers never clash.
    reader
        .upsert_products(vec![new_product("new-3", "Platypus Planter")])
        .unwrap();
    writer.refresh_updates().unwrap();
    assert!(writer.product("new-3").is_some());
    assert_eq!(writer.len(), reader.len());
}

#[test]
fn a_merge_folds_the_updates_into_a_generation_that_searches_alike() {
    let dir = tempfile::tempdir().unwrap();
    let index = common::build_index(dir.path(), "idx");
    let engine = Engine::open(&index).unwrap();
    engine
        .upsert_products(vec![
            new_product("new-1", "Zebrawood Garden Hose Reel"),
            new_product("new-2", "Aardvark Sprinkler"),
        ])
        .unwrap();
    let gone = common::products()[3].id.clone();
    engine.delete_product(&gone).unwrap();
    let queries = ["garden hose", "shower faucet", "cordless drill", "aardvark"];
    let before: Vec<Vec<String>> = queries
        .iter()
        .map(|q| ids(&engine, &SearchRequest::new(*q).k(5)))
        .collect();
    let summary = engine
        .merge_updates(&shelfrank::progress::Silent)
        .unwrap()
        .expect("something to merge");
    assert_eq!(summary.through, 2);
    assert_eq!(
        summary.build.reused_embeddings, summary.build.products,
        "nothing re-encoded"
    );
    let merged = Engine::open(&index).unwrap();
    assert_ne!(merged.generation_dir(), engine.generation_dir());
    assert_eq!(merged.pending_updates(), 0);
    assert_eq!(merged.manifest().updates_through, 2);
    assert_eq!(merged.len(), engine.len());
    assert!(merged.product(&gone).is_none());
    let after: Vec<Vec<String>> = queries
        .iter()
        .map(|q| ids(&merged, &SearchRequest::new(*q).k(5)))
        .collect();
    assert_eq!(before, after);
    assert_eq!(
        shelfrank::store::updates::list(&index.join("updates")).unwrap(),
        Vec::<u64>::new()
    );
    // Nothing left to merge.
    assert!(merged
        .merge_updates(&shelfrank::progress::Silent)
        .unwrap()
        .is_none());
}

#[test]
fn a_damaged_update_file_is_an_error_naming_it_not_a_silent_loss() {
    let dir = tempfile::tempdir().unwrap();
    let index = common::build_index(dir.path(), "idx");
    Engine::open(&index)
        .unwrap()
        .upsert_products(vec![new_product("new-1", "Zebrawood Garden Hose Reel")])
        .unwrap();
    let file = shelfrank::store::updates::batch_path(&index.join("updates"), 1);
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();
    let err = Engine::open(&index).unwrap_err().to_string();
    assert!(err.contains(&file.display().to_string()), "{err}");
}

#[test]
fn a_merge_served_at_another_precision_reuses_every_vector_and_keeps_the_index_precision() {
    use shelfrank::encoder::{EncoderOptions, Precision};
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("idx");
    let mut opts = EncoderOptions::new(common::TINY_MODEL);
    opts.precision = Precision::Bf16;
    shelfrank::IndexBuilder::new(&index, common::TINY_MODEL)
        .encoder_options(opts)
        .build(&common::products())
        .unwrap();
    // Served in f32 (the default), as on a CPU after a half-precision GPU build.
    let engine = Engine::open(&index).unwrap();
    assert_eq!(engine.manifest().model.precision, Precision::Bf16);
    engine
        .upsert_products(vec![new_product("new-1", "Zebrawood Garden Hose Reel")])
        .unwrap();
    let summary = engine
        .merge_updates(&shelfrank::progress::Silent)
        .unwrap()
        .expect("something to merge");
    assert_eq!(
        summary.build.reused_embeddings, summary.build.products,
        "a merge re-encoded products"
    );
    let merged = Engine::open(&index).unwrap();
    assert_eq!(merged.manifest().model.precision, Precision::Bf16);
    assert!(merged.product("new-1").is_some());
}

#[test]
fn a_manifest_written_before_precision_existed_opens_as_f32() {
    let dir = tempfile::tempdir().unwrap();
    let index = common::build_index(dir.path(), "idx");
    common::edit_manifest(&index, |json| {
        let removed = json["model"].as_object_mut().unwrap().remove("precision");
        assert!(removed.is_some(), "the manifest records the precision");
    });
    let engine = Engine::open(&index).unwrap();
    assert_eq!(
        engine.manifest().model.precision,
        shelfrank::encoder::Precision::F32
    );
}

/// Sets the generation's recorded `ef_search` (as an index built when it was a
/// different size would hold) and whether it was picked from the size.
fn record_ef(index: &std::path::Path, ef: usize, auto: bool) {
    common::edit_manifest(index, |json| {
        json["hnsw"]["ef_search"] = ef.into();
        json["hnsw"]["ef_search_auto"] = auto.into();
    });
}

fn merged_ef(index: &std::path::Path) -> (usize, bool) {
    let engine = Engine::open(index).unwrap();
    engine
        .upsert_products(vec![new_product("new-1", "Zebrawood Garden Hose Reel")])
        .unwrap();
    engine
        .merge_updates(&shelfrank::progress::Silent)
        .unwrap()
        .expect("something to merge");
    let hnsw = Engine::open(index).unwrap().manifest().hnsw;
    (hnsw.ef_search, hnsw.ef_search_auto)
}

#[test]
fn a_merge_picks_the_size_aware_ef_again_but_keeps_one_that_was_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let index = common::build_index(dir.path(), "idx");
    let built = Engine::open(&index).unwrap().manifest().hnsw;
    assert!(
        built.ef_search_auto,
        "the default build picks ef from the size"
    );
    let n = common::products().len() + 1;
    let picked = shelfrank::vector::HnswParams::ef_search_for(n);
    // Picked from the size when built: the merged graph gets its own size's value.
    record_ef(&index, 999, true);
    assert_eq!(merged_ef(&index), (picked, true));
    // Asked for: the merge keeps it.
    record_ef(&index, 999, false);
    assert_eq!(merged_ef(&index), (999, false));
}
