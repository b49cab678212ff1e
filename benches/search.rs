//! Criterion benches of the hot paths: encoding (batch 1 and 32, the fast forward
//! pass at each CPU precision and candle-transformers' stock one side by side; int8
//! also on every fallback kernel the CPU can run), BM25 search, HNSW search and
//! one end-to-end hybrid query, uncached and cached.
//!
//! ```text
//! cargo bench --bench search
//! ```
//!
//! Inputs, from the environment:
//! * `SHELFRANK_BENCH_MODEL`: model directory (default `models/all-MiniLM-L6-v2`
//!   when present, else the tiny test model, whose timings mean little).
//! * `SHELFRANK_BENCH_INDEX`: an index built with that model (default
//!   `index/homedepot` when present; otherwise the fixture catalog is indexed into
//!   a temporary directory).

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use shelfrank::catalog::{read_catalog, ReadOptions};
use shelfrank::encoder::bf16::Bf16Kernel;
use shelfrank::encoder::int8::Kernel;
use shelfrank::encoder::{Encoder, EncoderOptions, Implementation, Precision};
use shelfrank::{Engine, Fusion, IndexBuilder, Mode, SearchRequest};

const QUERIES: [&str; 8] = [
    "rain shower head",
    "convection otr",
    "emergency light",
    "cordless drill 20v",
    "1/2 in. pex pipe",
    "white interior paint",
    "gas grill",
    "kitchen faucet pull down",
];

fn model_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("SHELFRANK_BENCH_MODEL") {
        return p.into();
    }
    let real = Path::new("models/all-MiniLM-L6-v2");
    if shelfrank::encoder::is_model_dir(real) {
        real.into()
    } else {
        "fixtures/tiny-bert".into()
    }
}

fn titles() -> Vec<String> {
    let cat = read_catalog("fixtures/catalog.jsonl".as_ref(), &ReadOptions::default()).unwrap();
    cat.products.into_iter().map(|p| p.title).collect()
}

fn bench_encode(c: &mut Criterion) {
    let titles = titles();
    let batch: Vec<&str> = titles.iter().take(32).map(String::as_str).collect();
    let mut g = c.benchmark_group("encode");
    g.sample_size(20);
    let with = |implementation, precision| {
        let mut opts = EncoderOptions::new(model_dir());
        opts.implementation = implementation;
        opts.precision = precision;
        opts
    };
    let mut variants = vec![(with(Implementation::Fast, Precision::F32), String::new())];
    // Every kernel this CPU has, the fallbacks forced, for both lower precisions.
    for kernel in Bf16Kernel::available() {
        let mut opts = with(Implementation::Fast, Precision::Bf16);
        opts.bf16_kernel = Some(kernel);
        variants.push((opts, format!("_bf16_{}", kernel.name())));
    }
    for kernel in Kernel::available() {
        let mut opts = with(Implementation::Fast, Precision::Int8);
        opts.int8_kernel = Some(kernel);
        variants.push((opts, format!("_int8_{}", kernel.name())));
    }
    variants.push((
        with(Implementation::Reference, Precision::F32),
        "_reference".into(),
    ));
    for (opts, suffix) in variants {
        let enc = Encoder::load(&opts).unwrap();
        g.bench_function(format!("batch1_query{suffix}"), |b| {
            b.iter(|| enc.embed(black_box("rain shower head")).unwrap())
        });
        g.bench_function(format!("batch32_titles{suffix}"), |b| {
            b.iter(|| enc.embed_batch(black_box(&batch)).unwrap())
        });
    }
    g.finish();
}

fn engine() -> (Option<tempfile::TempDir>, Engine) {
    let index = std::env::var_os("SHELFRANK_BENCH_INDEX")
        .map(PathBuf::from)
        .or_else(|| {
            Some(PathBuf::from("index/homedepot"))
                .filter(|p| p.join("CURRENT").exists() || p.join("manifest.json").exists())
        });
    match index {
        Some(dir) => (None, Engine::open(dir).unwrap()),
        None => {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("idx");
            let cat =
                read_catalog("fixtures/catalog.jsonl".as_ref(), &ReadOptions::default()).unwrap();
            IndexBuilder::new(&dir, model_dir())
                .build(&cat.products)
                .unwrap();
            (Some(tmp), Engine::open(&dir).unwrap())
        }
    }
}

fn bench_search(c: &mut Criterion) {
    let (_tmp, engine) = engine();
    let enc = engine.encoder().unwrap();
    let qvecs: Vec<Vec<f32>> = QUERIES.iter().map(|q| enc.embed(q).unwrap()).collect();
    let mut g = c.benchmark_group("search");
    let mut i = 0;
    g.bench_function("bm25_top100", |b| {
        b.iter(|| {
            i = (i + 1) % QUERIES.len();
            let mut req = SearchRequest::new(QUERIES[i]).mode(Mode::Bm25).k(100);
            req.candidates = Some(100);
            engine.search(black_box(&req)).unwrap()
        })
    });
    // Dense retrieval alone: a precomputed query embedding, the HNSW walk at the
    // index's ef (at least 100), hits for the top 100.
    g.bench_function("dense_top100", |b| {
        b.iter(|| {
            i = (i + 1) % QUERIES.len();
            let mut req = SearchRequest::new("").mode(Mode::Dense).k(100);
            req.candidates = Some(100);
            req.ef_search = Some(engine.manifest().hnsw.ef_search.max(100));
            req.embedding = Some(qvecs[i].clone());
            engine.search(black_box(&req)).unwrap()
        })
    });
    // Uncached: a distinct text every iteration (the query plus a counter), so the
    // query-embedding cache never hits.
    let mut n = 0u64;
    g.bench_function("hybrid_end_to_end_uncached", |b| {
        b.iter(|| {
            i = (i + 1) % QUERIES.len();
            n += 1;
            let q = format!("{} {n}", QUERIES[i]);
            engine
                .search(black_box(&SearchRequest::new(q).k(10)))
                .unwrap()
        })
    });
    // Cached: the same eight texts again and again (a shop's head queries).
    g.bench_function("hybrid_end_to_end_cached", |b| {
        b.iter(|| {
            i = (i + 1) % QUERIES.len();
            engine
                .search(black_box(&SearchRequest::new(QUERIES[i]).k(10)))
                .unwrap()
        })
    });
    // The same with min-max fusion, which needs no exact scores: the difference is
    // what the default (absolute) fusion costs on top of the two retrievers.
    let min_max = Fusion::Weighted {
        bm25: 0.7,
        dense: 0.3,
    };
    g.bench_function("hybrid_end_to_end_cached_minmax", |b| {
        b.iter(|| {
            i = (i + 1) % QUERIES.len();
            let req = SearchRequest::new(QUERIES[i]).k(10).fusion(min_max);
            engine.search(black_box(&req)).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_encode, bench_search);
criterion_main!(benches);
