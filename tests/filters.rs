//! Filters hold on every path: plain retrieval in each mode, personalised search
//! (with the fallback formula and with a trained head, with and without the
//! diversity pass), the shopper's own past items, and reranking another engine's
//! candidates. Every hit is checked against an oracle written here from the
//! product fields, independent of `Filters::matches`.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use shelfrank::eval::read_personal_tasks;
use shelfrank::profile::events::EventReadOptions;
use shelfrank::profile::{Event, EventKind};
use shelfrank::rank::samples::SampleOptions;
use shelfrank::rank::{HeadConfig, RerankMode};
use shelfrank::{
    train_head, Engine, ExternalCandidate, Filters, Hit, Mode, Product, SearchRequest, Silent,
    TrainSpec, TrainingLogs,
};

/// The oracle: does `p` satisfy `f`? Spelled out from the documented meaning of
/// each condition rather than by calling the library's predicate.
fn satisfies(p: &Product, f: &Filters) -> bool {
    let lower = |s: &str| s.trim().to_lowercase();
    if let Some(prefix) = &f.category_prefix {
        if prefix.len() > p.category.len() {
            return false;
        }
        for (want, have) in prefix.iter().zip(&p.category) {
            if lower(want) != lower(have) {
                return false;
            }
        }
    }
    if let Some(brand) = &f.brand {
        if p.brand.as_deref().map(lower) != Some(lower(brand)) {
            return false;
        }
    }
    if f.min_price.is_some() || f.max_price.is_some() {
        let Some(price) = p.price else { return false };
        if f.min_price.is_some_and(|lo| price < lo) || f.max_price.is_some_and(|hi| price > hi) {
            return false;
        }
    }
    f.attributes
        .iter()
        .all(|(k, v)| p.attributes.get(k) == Some(v))
}

fn check_hits(engine: &Engine, hits: &[Hit], f: &Filters, what: &str) -> Result<(), TestCaseError> {
    for h in hits {
        let p = engine
            .product(&h.id)
            .ok_or_else(|| TestCaseError::fail(format!("{what}: unknown hit {}", h.id)))?;
        prop_assert!(
            satisfies(p, f),
            "{what}: hit {} ({:?}, {:?}, {:?}, {:?}) violates {f:?}",
            h.id,
            p.category,
            p.brand,
            p.price,
            p.attributes
        );
    }
    Ok(())
}

/// What the strategies draw filter values from: the fixture catalog's own
/// categories (every prefix), brands, prices and attribute pairs, so that many
/// filters match something, plus values that match nothing.
struct Vocab {
    categories: Vec<String>,
    brands: Vec<String>,
    prices: Vec<f64>,
    attributes: Vec<(String, String)>,
    words: Vec<String>,
    ids: Vec<String>,
}

impl Vocab {
    fn of(products: &[Product]) -> Self {
        let mut v = Vocab {
            categories: vec!["Nowhere".into()],
            brands: vec!["No Such Brand".into()],
            prices: vec![0.0, 1_000_000.0],
            attributes: vec![("finish".into(), "gold".into())],
            words: vec!["zzzz".into()],
            ids: Vec::new(),
        };
        for p in products {
            for n in 1..=p.category.len() {
                v.categories.push(p.category[..n].join(" > "));
            }
            v.brands.extend(p.brand.clone());
            v.prices.extend(p.price);
            v.attributes
                .extend(p.attributes.iter().map(|(k, x)| (k.clone(), x.clone())));
            v.words.extend(
                p.title
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| w.len() > 2)
                    .map(str::to_lowercase),
            );
            v.ids.push(p.id.clone());
        }
        for list in [&mut v.categories, &mut v.brands, &mut v.words] {
            list.sort();
            list.dedup();
        }
        v.attributes.sort();
        v.attributes.dedup();
        v
    }

    fn filters(&self) -> impl Strategy<Value = Filters> + '_ {
        let pick = |n: usize| proptest::option::weighted(0.4, 0..n);
        (
            pick(self.categories.len()),
            pick(self.brands.len()),
            any::<bool>(),
            pick(self.prices.len()),
            pick(self.prices.len()),
            proptest::collection::vec(0..self.attributes.len(), 0..=1),
        )
            .prop_map(move |(cat, brand, upper, lo, hi, attrs)| {
                let mut min_price = lo.map(|i| self.prices[i]);
                let mut max_price = hi.map(|i| self.prices[i]);
                if let (Some(a), Some(b)) = (min_price, max_price) {
                    if a > b {
                        (min_price, max_price) = (Some(b), Some(a));
                    }
                }
                Filters {
                    category_prefix: cat.map(|i| Filters::category(&self.categories[i])),
                    brand: brand.map(|i| {
                        let b = &self.brands[i];
                        if upper {
                            b.to_uppercase()
                        } else {
                            b.clone()
                        }
                    }),
                    min_price,
                    max_price,
                    attributes: attrs
                        .into_iter()
                        .map(|i| self.attributes[i].clone())
                        .collect(),
                }
            })
    }

    fn query(&self) -> impl Strategy<Value = String> + '_ {
        proptest::collection::vec(0..self.words.len(), 0..=3).prop_map(move |ws| {
            ws.iter()
                .map(|&i| self.words[i].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
    }
}

/// One drawn personalised search: filters, query, mode, the shopper's events
/// (product index, kind index), reranking, diversity and `k`.
#[derive(Debug, Clone)]
struct Case {
    filters: Filters,
    query: String,
    mode: Mode,
    events: Vec<(usize, usize)>,
    rerank: RerankMode,
    diversity: f32,
    k: usize,
    external: Vec<(usize, Option<f32>)>,
}

fn cases(v: &Vocab) -> impl Strategy<Value = Case> + '_ {
    let n = v.ids.len();
    (
        v.filters(),
        v.query(),
        prop_oneof![Just(Mode::Bm25), Just(Mode::Dense), Just(Mode::Hybrid)],
        proptest::collection::vec((0..n, 0..EventKind::ALL.len()), 1..=8),
        prop_oneof![
            Just(RerankMode::Auto),
            Just(RerankMode::Ctr),
            Just(RerankMode::Profile),
            Just(RerankMode::Off)
        ],
        prop_oneof![Just(0.0f32), Just(0.5f32)],
        1..=12usize,
        proptest::collection::vec((0..n, proptest::option::of(-5.0f32..5.0)), 0..=15),
    )
        .prop_map(
            |(filters, query, mode, events, rerank, diversity, k, external)| Case {
                filters,
                query,
                mode,
                events,
                rerank,
                diversity,
                k,
                external,
            },
        )
}

/// Trains a small head on the fixture tasks and saves it into `index`.
fn train_and_save_head(engine: &Engine, index: &Path) {
    let store = common::fixture_events(engine);
    let tasks = read_personal_tasks(Path::new("fixtures/personal_queries.tsv")).unwrap();
    let mut spec = TrainSpec::new(TrainingLogs::Tasks(tasks));
    spec.events = Some(store);
    spec.sampling = SampleOptions {
        depth: 20,
        val_fraction: 0.3,
        ..SampleOptions::default()
    };
    spec.config = HeadConfig {
        epochs: 3,
        seed: 11,
        ..HeadConfig::default()
    };
    train_head(engine, spec, &Silent)
        .unwrap()
        .save(index, false)
        .unwrap();
}

/// The fixture index with a trained head and the fixture events imported.
fn engine_with_head(dir: &Path) -> Engine {
    let index = common::build_index(dir, "idx");
    train_and_save_head(&Engine::open(&index).unwrap(), &index);
    let engine = Engine::open(&index).unwrap();
    assert!(engine.head().is_some(), "{:?}", engine.head_warning());
    engine
        .import_events(
            Path::new("fixtures/events.jsonl"),
            &EventReadOptions::default(),
        )
        .unwrap();
    engine
}

fn run_case(engine: &Engine, v: &Vocab, case: &Case, user: &str) -> Result<(), TestCaseError> {
    let f = &case.filters;
    let events: Vec<Event> = case
        .events
        .iter()
        .enumerate()
        .map(|(t, &(item, kind))| {
            Event::new(user, &v.ids[item], EventKind::ALL[kind], 1_000 + t as i64)
        })
        .collect();
    engine.record_many(&events).unwrap();

    let mut req = SearchRequest::new(case.query.clone())
        .mode(case.mode)
        .k(case.k)
        .filters(f.clone());
    let plain = engine.search(&req).unwrap();
    check_hits(engine, &plain, f, "anonymous search")?;

    req.user = Some(user.to_string());
    req.rerank = case.rerank;
    req.diversity = case.diversity;
    let personal = engine.search(&req).unwrap();
    check_hits(engine, &personal, f, "personalised search")?;
    // A fixture shopper with a longer history, the same filters.
    req.user = Some("u5".into());
    check_hits(engine, &engine.search(&req).unwrap(), f, "fixture shopper")?;

    req.user = Some(user.to_string());
    let external: Vec<ExternalCandidate> = {
        let mut seen = std::collections::HashSet::new();
        case.external
            .iter()
            .filter(|(i, _)| seen.insert(*i))
            .map(|&(i, score)| ExternalCandidate {
                id: v.ids[i].clone(),
                score,
            })
            .collect()
    };
    let res = engine.rerank(&req, &external).unwrap();
    check_hits(engine, &res.hits, f, "external rerank")?;
    // Nothing the filters allow is lost on the way.
    let allowed = external
        .iter()
        .filter(|c| satisfies(engine.product(&c.id).unwrap(), f))
        .count();
    prop_assert_eq!(res.hits.len(), allowed.min(case.k));
    Ok(())
}

#[test]
fn every_hit_satisfies_the_filters_on_every_path() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine_with_head(tmp.path());
    let products = common::products();
    let vocab = Vocab::of(&products);
    let next_user = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&cases(&vocab), |case| {
            let user = format!("shopper-{}", next_user.fetch_add(1, Ordering::Relaxed));
            run_case(&engine, &vocab, &case, &user)
        })
        .unwrap();
}

/// The reported cases: a shopper's own past items used to come back whatever the
/// filters said.
#[test]
fn own_past_items_obey_category_price_brand_and_attribute_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::open(common::build_index(tmp.path(), "idx")).unwrap();
    engine
        .import_events(
            Path::new("fixtures/events.jsonl"),
            &EventReadOptions::default(),
        )
        .unwrap();
    // u5 bought and carted Bath faucets (p001, p003); u6 clicked the $199 drill p009.
    let ids = |hits: &[Hit]| hits.iter().map(|h| h.id.clone()).collect::<Vec<_>>();
    let mut req = SearchRequest::new("faucet").k(10).user("u5");
    req.rerank = RerankMode::Profile;
    let unfiltered = engine.search(&req).unwrap();
    assert!(
        ids(&unfiltered)
            .iter()
            .any(|id| id == "p001" || id == "p003"),
        "the shopper's Bath faucets rank without filters: {:?}",
        ids(&unfiltered)
    );
    let checks = [
        (
            "faucet",
            "u5",
            Filters {
                category_prefix: Some(Filters::category("Kitchen")),
                ..Default::default()
            },
        ),
        (
            "faucet",
            "u5",
            Filters {
                attributes: vec![("finish".into(), "stainless".into())],
                ..Default::default()
            },
        ),
        (
            "faucet",
            "u5",
            Filters {
                brand: Some("glacier bay".into()),
                ..Default::default()
            },
        ),
        (
            "drill",
            "u6",
            Filters {
                max_price: Some(50.0),
                ..Default::default()
            },
        ),
    ];
    for (query, user, filters) in checks {
        let mut req = SearchRequest::new(query)
            .k(10)
            .user(user)
            .filters(filters.clone());
        for rerank in [RerankMode::Profile, RerankMode::Auto] {
            req.rerank = rerank;
            for diversity in [0.0, 0.7] {
                req.diversity = diversity;
                let hits = engine.search(&req).unwrap();
                for h in &hits {
                    let p = engine.product(&h.id).unwrap();
                    assert!(
                        satisfies(p, &filters),
                        "{query} for {user} with {filters:?}: {} ({:?}, {:?})",
                        h.id,
                        p.category,
                        p.price
                    );
                }
            }
        }
    }
    // The Kitchen faucet itself is still found for u5.
    let req = SearchRequest::new("faucet")
        .k(10)
        .user("u5")
        .filters(Filters {
            category_prefix: Some(Filters::category("Kitchen")),
            ..Default::default()
        });
    assert_eq!(ids(&engine.search(&req).unwrap()), vec!["p004".to_string()]);
}
