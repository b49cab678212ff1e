//! Build an index over the sample catalog and search it from Rust.
//!
//! ```text
//! cargo run --release --example search [-- MODEL_DIR]
//! ```
//!
//! MODEL_DIR defaults to `models/all-MiniLM-L6-v2` (fetch it with
//! `scripts/fetch-model.sh`); `fixtures/tiny-bert` works too, with meaningless
//! dense scores.

use shelfrank::catalog::{read_catalog, ReadOptions};
use shelfrank::{Engine, Filters, IndexBuilder, Mode, SearchRequest};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "models/all-MiniLM-L6-v2".to_string());
    let catalog = read_catalog("fixtures/catalog.jsonl".as_ref(), &ReadOptions::default())?;
    let dir = tempfile::tempdir()?;
    let index = dir.path().join("sample");
    let summary = IndexBuilder::new(&index, &model).build(&catalog.products)?;
    println!(
        "indexed {} products in {:.1}s",
        summary.products, summary.total_secs
    );

    // One engine, shared by every thread of a server.
    let engine = std::sync::Arc::new(Engine::open(&index)?);
    for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
        let hits = engine.search(&SearchRequest::new("rain shower head").mode(mode).k(3))?;
        println!("{}:", mode.name());
        for h in hits {
            let title = engine
                .product(&h.id)
                .map(|p| p.title.as_str())
                .unwrap_or("");
            println!("  {:.3}  {title}  {:?}", h.score, h.breakdown);
        }
    }
    // Filters apply inside both retrievers.
    let filters = Filters {
        category_prefix: Some(Filters::category("Bath")),
        max_price: Some(200.0),
        ..Filters::default()
    };
    let hits = engine.search(&SearchRequest::new("chrome").filters(filters).k(5))?;
    println!(
        "bath under $200 matching 'chrome': {:?}",
        hits.iter().map(|h| &h.id).collect::<Vec<_>>()
    );
    Ok(())
}
