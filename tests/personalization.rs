//! Personalised search end to end on the fixture catalog: events, profiles,
//! cold start, training the head from each kind of log, reranking external
//! candidates, forgetting a shopper, and no leakage of future events.

mod common;

use std::path::Path;

use shelfrank::eval::read_personal_tasks;
use shelfrank::profile::events::{parse_timestamp, EventReadOptions};
use shelfrank::profile::{Event, EventKind, EventStore, ItemStats};
use shelfrank::rank::samples::{self, SampleOptions};
use shelfrank::rank::{CandidateSource, HeadConfig, RerankMode, FEATURE_NAMES};
use shelfrank::store::IndexPaths;
use shelfrank::{
    train_head, Engine, Error, ExternalCandidate, Mode, SearchRequest, Silent, TrainSpec,
    TrainedHead, TrainingLogs,
};

fn ids(hits: &[shelfrank::Hit]) -> Vec<String> {
    hits.iter().map(|h| h.id.clone()).collect()
}

#[test]
fn cold_start_users_get_the_plain_order() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::open(common::build_index(tmp.path(), "idx")).unwrap();
    let plain = engine
        .search(&SearchRequest::new("white paint").k(5))
        .unwrap();
    let cold = engine
        .search(&SearchRequest::new("white paint").k(5).user("nobody"))
        .unwrap();
    assert_eq!(ids(&plain), ids(&cold));
    // A known user with no history before `as_of` is also cold.
    engine
        .record(Event::new("late", "p013", EventKind::Purchase, 1_000))
        .unwrap();
    let mut req = SearchRequest::new("white paint").k(5).user("late");
    req.as_of = Some(500);
    assert_eq!(ids(&engine.search(&req).unwrap()), ids(&plain));
}

#[test]
fn recorded_events_shape_the_ranking_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::open(common::build_index(tmp.path(), "idx")).unwrap();
    // "white" matches paint, toilet, vanity, bulbs, string lights...
    let plain = engine
        .search(&SearchRequest::new("white").mode(Mode::Bm25).k(10))
        .unwrap();
    let last = plain.last().unwrap().id.clone();
    for ts in [100, 200, 300] {
        engine
            .record(Event::new("fan", &last, EventKind::Purchase, ts))
            .unwrap();
    }
    let mut req = SearchRequest::new("white").k(10).user("fan");
    req.as_of = Some(400);
    req.rerank = RerankMode::Profile;
    let personal = engine.search(&req).unwrap();
    let pos = |v: &[shelfrank::Hit]| v.iter().position(|h| h.id == last).unwrap();
    assert!(
        pos(&personal) < pos(&plain),
        "a thrice-bought item moves up: {:?}",
        ids(&personal)
    );
    assert!(personal[0].breakdown.profile.is_some());
    // Unknown items are refused with a clear error, and nothing is stored.
    let err = engine
        .record(Event::new("fan", "no-such-item", EventKind::Click, 5))
        .unwrap_err();
    assert!(err.to_string().contains("unknown item id"), "{err}");
    assert_eq!(engine.event_count().unwrap(), 3);
}

#[test]
fn a_future_event_never_reaches_the_ranking() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::open(common::build_index(tmp.path(), "idx")).unwrap();
    engine
        .record(Event::new("u", "p013", EventKind::Purchase, 100))
        .unwrap();
    let mut req = SearchRequest::new("white").k(10).user("u");
    req.as_of = Some(150);
    req.rerank = RerankMode::Profile;
    let before = engine.search(&req).unwrap();
    let profile_before = engine.profile("u", 150).unwrap();
    // Events at or after `as_of` must change nothing.
    engine
        .record(Event::new("u", "p028", EventKind::Purchase, 150))
        .unwrap();
    engine
        .record(Event::new("u", "p029", EventKind::Purchase, 9_999))
        .unwrap();
    assert_eq!(engine.profile("u", 150).unwrap(), profile_before);
    let after = engine.search(&req).unwrap();
    assert_eq!(before, after);
}

#[test]
fn events_survive_reopen_and_rebuild_and_can_be_forgotten() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    {
        let engine = Engine::open(&index).unwrap();
        let s = engine
            .import_events(
                Path::new("fixtures/events.jsonl"),
                &EventReadOptions::default(),
            )
            .unwrap();
        assert_eq!(s.imported, 120);
    }
    // Rebuilding the catalog keeps the shop's events.
    common::build_index(tmp.path(), "idx");
    let engine = Engine::open(&index).unwrap();
    assert_eq!(engine.event_count().unwrap(), 120);
    let n = engine.forget("u3").unwrap();
    assert!(n > 0);
    drop(engine);
    let engine = Engine::open(&index).unwrap();
    assert_eq!(engine.event_count().unwrap(), 120 - n);
    assert!(engine.profile("u3", i64::MAX).unwrap().is_empty());
    assert!(!engine.profile("u4", i64::MAX).unwrap().is_empty());
}

#[test]
fn import_reports_bad_lines_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::open(common::build_index(tmp.path(), "idx")).unwrap();
    let f = tmp.path().join("ev.jsonl");
    std::fs::write(
        &f,
        "{\"user\":\"a\",\"item\":\"p001\",\"kind\":\"click\",\"ts\":\"2011-10-02T10:32:00\"}\n\
         {\"user\":\"a\",\"item\":\"nope\",\"kind\":\"click\",\"ts\":\"2011-10-02T10:32:00\"}\n\
         {\"user\":\"a\",\"item\":\"p001\",\"kind\":\"like\",\"ts\":\"2011-10-02T10:32:00\"}\n\
         {\"user\":\"a\",\"item\":\"p001\",\"kind\":\"view\",\"ts\":\"yesterday\"}\n",
    )
    .unwrap();
    let err = engine
        .import_events(&f, &EventReadOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::Events(_)));
    assert!(err.to_string().contains("ev.jsonl:2"), "{err}");
    assert_eq!(
        engine.event_count().unwrap(),
        0,
        "nothing stored from a failed import"
    );
    let opts = EventReadOptions {
        skip_invalid: true,
        ..Default::default()
    };
    let s = engine.import_events(&f, &opts).unwrap();
    assert_eq!((s.imported, s.skipped), (1, 3));
    assert!(
        s.problems
            .iter()
            .any(|p| p.contains(":3") && p.contains("kind")),
        "{:?}",
        s.problems
    );
    assert!(
        s.problems
            .iter()
            .any(|p| p.contains(":4") && p.contains("ts")),
        "{:?}",
        s.problems
    );
}

/// Item statistics over `store` for the products of `engine`.
fn stats_of(engine: &Engine, store: &EventStore) -> ItemStats {
    ItemStats::from_events(store.iter(), &|id: &str| {
        CandidateSource::ord_of(engine, id)
    })
}

fn train_head_from_tasks(engine: &Engine, seed: u64) -> TrainedHead {
    let store = common::fixture_events(engine);
    let stats = stats_of(engine, &store);
    let tasks = read_personal_tasks(Path::new("fixtures/personal_queries.tsv")).unwrap();
    let opts = SampleOptions {
        depth: 20,
        val_fraction: 0.3,
        ..SampleOptions::default()
    };
    let (groups, _) =
        samples::personal_task_groups(engine, &tasks, &store, &stats, &opts, &|_| {}).unwrap();
    assert_eq!(groups.len(), tasks.len());
    for g in &groups {
        assert_eq!(
            g.labels.iter().filter(|l| **l == 1.0).count(),
            1,
            "exactly the target is positive"
        );
    }
    let mut spec = TrainSpec::new(TrainingLogs::Tasks(tasks));
    spec.events = Some(store);
    spec.sampling = opts;
    spec.config = HeadConfig {
        epochs: 5,
        seed,
        ..HeadConfig::default()
    };
    let trained = train_head(engine, spec, &Silent).unwrap();
    assert_eq!(trained.dataset.groups, groups.len());
    trained
}

#[test]
fn training_is_reproducible_and_the_head_serves_with_explanations() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let engine = Engine::open(&index).unwrap();
    let first = train_head_from_tasks(&engine, 7);
    let second = train_head_from_tasks(&engine, 7);
    assert_eq!(
        first.report.best_val_auc, second.report.best_val_auc,
        "same seed, same validation AUC"
    );
    first.save(&index, false).unwrap();
    drop(engine);
    let engine = Engine::open(&index).unwrap();
    assert!(engine.head().is_some(), "{:?}", engine.head_warning());
    engine
        .import_events(
            Path::new("fixtures/events.jsonl"),
            &EventReadOptions::default(),
        )
        .unwrap();
    let mut req = SearchRequest::new("white").k(5).user("u1");
    req.rerank = RerankMode::Ctr;
    let hits = engine.search(&req).unwrap();
    assert!(!hits.is_empty());
    for h in &hits {
        let ctr = h.breakdown.ctr.unwrap();
        assert!((0.0..=1.0).contains(&ctr));
        assert_eq!(h.breakdown.contributions.len(), FEATURE_NAMES.len());
    }
    for w in hits.windows(2) {
        assert!(w[0].score >= w[1].score);
    }
    // Diversity changes nothing about validity.
    req.diversity = 0.5;
    assert_eq!(engine.search(&req).unwrap().len(), 5);
}

#[test]
fn a_head_for_another_feature_set_is_ignored_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let engine = Engine::open(&index).unwrap();
    let trained = train_head_from_tasks(&engine, 3);
    drop(engine);
    let rank = IndexPaths::new(&index).rank_dir();
    // Same names, but a card from before the features changed meaning.
    for card in [
        serde_json::json!({"source": "old"}),
        serde_json::json!({"feature_set": 1}),
    ] {
        trained.head.save(&rank, &card).unwrap();
        let engine = Engine::open(&index).unwrap();
        assert!(engine.head().is_none(), "{card}");
        let warning = engine.head_warning().unwrap();
        assert!(warning.contains("another feature set"), "{warning}");
    }
    trained.save(&index, false).unwrap();
    assert!(Engine::open(&index).unwrap().head().is_some());
}

#[test]
fn impressions_and_qrels_train_too() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::open(common::build_index(tmp.path(), "idx")).unwrap();
    let store = common::fixture_events(&engine);
    let stats = stats_of(&engine, &store);
    let imps = samples::read_impressions(Path::new("fixtures/impressions.jsonl")).unwrap();
    let (groups, unknown) = samples::impression_groups(&engine, &imps, &store, &stats).unwrap();
    assert_eq!(unknown, 0);
    assert_eq!(groups.len(), 12);
    assert!(groups
        .iter()
        .all(|g| g.positions == (1..=8).collect::<Vec<_>>()));
    let queries = shelfrank::eval::read_queries(Path::new("fixtures/queries.tsv")).unwrap();
    let qrels = shelfrank::eval::read_qrels(Path::new("fixtures/qrels.txt")).unwrap();
    let opts = SampleOptions {
        depth: 10,
        ..SampleOptions::default()
    };
    let groups = samples::qrels_groups(&engine, &queries, &qrels, &opts, &|_| {}).unwrap();
    let soft: Vec<f32> = groups
        .iter()
        .flat_map(|g| g.labels.clone())
        .filter(|l| *l > 0.0 && *l < 1.0)
        .collect();
    assert!(!soft.is_empty(), "grades become soft labels");
}

#[test]
fn rerank_external_candidates_reports_unknown_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::open(common::build_index(tmp.path(), "idx")).unwrap();
    let cands = vec![
        ExternalCandidate {
            id: "p033".into(),
            score: Some(3.0),
        },
        ExternalCandidate {
            id: "ghost".into(),
            score: Some(2.0),
        },
        ExternalCandidate {
            id: "p032".into(),
            score: Some(1.0),
        },
    ];
    let res = engine
        .rerank(&SearchRequest::new("gas grill").k(10), &cands)
        .unwrap();
    assert_eq!(res.unknown, vec!["ghost".to_string()]);
    let got: Vec<&str> = res.hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(got.len(), 2, "{got:?}");
    // BM25 among the candidates: only the gas grill matches both words.
    let gas = res.hits.iter().find(|h| h.id == "p032").unwrap();
    assert_eq!(gas.breakdown.bm25_rank, Some(1));
    let empty = engine.rerank(&SearchRequest::new("x"), &[]).unwrap();
    assert!(empty.hits.is_empty());
    let _ = parse_timestamp("2011-10-02T10:32:00").unwrap();
}

#[test]
fn bad_rerank_candidates_and_requests_are_refused_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::open(common::build_index(tmp.path(), "idx")).unwrap();
    let cand = |id: &str, score: Option<f32>| ExternalCandidate {
        id: id.into(),
        score,
    };
    let req = SearchRequest::new("grill").k(5);
    let cases = [
        (
            vec![cand("p032", Some(1.0)), cand("p033", Some(f32::NAN))],
            "candidates[1].score",
        ),
        (
            vec![cand("p032", Some(f32::INFINITY))],
            "candidates[0].score",
        ),
        (
            vec![cand("p032", None), cand("p033", None), cand("p032", None)],
            "candidates[2].id",
        ),
        (vec![cand("p03\t2", None)], "candidates[0].id"),
        (vec![cand("p032\n", None)], "candidates[0].id"),
        (vec![cand(" ", None)], "candidates[0].id"),
    ];
    for (list, field) in cases {
        let err = engine.rerank(&req, &list).unwrap_err();
        assert!(err.is_user_error(), "{err}");
        assert!(
            matches!(&err, Error::InvalidArgument { what, .. } if what == field),
            "{list:?}: {err}"
        );
    }
    // Integer ids are read as the catalog reads them.
    let json: Vec<ExternalCandidate> =
        serde_json::from_str(r#"[{"id": "p033", "score": 2}, {"id": 7}]"#).unwrap();
    assert_eq!(json[1].id, "7");
    let res = engine.rerank(&req, &json).unwrap();
    assert_eq!(res.unknown, vec!["7".to_string()]);
    assert_eq!(res.hits.len(), 1);

    // Request validation holds on every path, cold start included.
    for user in [None, Some("nobody")] {
        let mut req = SearchRequest::new("grill");
        req.user = user.map(str::to_string);
        req.diversity = 5.0;
        let err = engine.search(&req).unwrap_err();
        assert!(err.to_string().contains("diversity"), "{user:?}: {err}");
        assert!(engine.rerank(&req, &[]).is_err());
        req.diversity = 0.0;
        req.filters.min_price = Some(-5.0);
        let err = engine.search(&req).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { what, .. } if what == "min_price"),
            "{user:?}: {err}"
        );
    }
}
