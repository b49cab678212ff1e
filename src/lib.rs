//! # shelfrank
//!
//! Product search for e-commerce backends: keyword retrieval (BM25, tantivy) and
//! semantic retrieval (a BERT sentence encoder run with candle, over an HNSW index)
//! fused into one ranking, with every hit explaining its score.
//!
//! ```
//! use shelfrank::{catalog, Engine, IndexBuilder, Mode, SearchRequest};
//! # fn main() -> shelfrank::Result<()> {
//! let products = catalog::read_catalog(
//!     "fixtures/catalog.jsonl".as_ref(),
//!     &catalog::ReadOptions::default(),
//! )?.products;
//! let dir = tempfile::tempdir().expect("temp dir");
//! let index = dir.path().join("index");
//! // The tiny random BERT in fixtures/ stands in for a real model here.
//! IndexBuilder::new(&index, "fixtures/tiny-bert").build(&products)?;
//!
//! let engine = Engine::open(&index)?;
//! let hits = engine.search(&SearchRequest::new("chrome shower faucet").mode(Mode::Bm25).k(3))?;
//! assert!(!hits.is_empty());
//! for hit in &hits {
//!     println!("{} {:.3} bm25={:?} dense={:?}", hit.id, hit.score,
//!              hit.breakdown.bm25, hit.breakdown.dense);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ## Core concepts
//!
//! * **Catalog / Product** ([`catalog`]): products read from JSONL, CSV or TSV.
//! * **Index** ([`IndexBuilder`], [`store`]): an on-disk directory with the keyword
//!   index, the embeddings (memory-mapped), the HNSW graph and a versioned manifest.
//! * **Retriever**: BM25 ([`text`]) and dense ([`encoder`] + [`vector`]).
//! * **Fusion** ([`fuse`]): reciprocal rank fusion or a weighted sum of normalised
//!   scores.
//! * **Engine / SearchRequest / Hit** ([`engine`]): open an index, search it from
//!   many threads, get hits with a [`ScoreBreakdown`].
//! * **Eval** ([`eval`]): NDCG, recall, MRR, AUC over query and qrels files.

#![warn(missing_docs)]

pub mod build;
pub mod catalog;
pub mod encoder;
pub mod engine;
pub mod error;
pub mod eval;
pub mod fuse;
mod lines;
pub mod profile;
pub mod progress;
pub mod rank;
mod rng;
pub mod store;
pub mod text;
pub mod vector;

pub use build::{BuildSummary, IndexBuilder};
pub use catalog::{Catalog, Product};
pub use encoder::{DeviceSpec, Encoder, EncoderOptions};
pub use engine::{
    Candidates, Engine, EngineBuilder, ExternalCandidate, Filters, Hit, ImportSummary, Mode,
    RerankResponse, ScoreBreakdown, SearchRequest,
};
pub use error::{Error, Result};
pub use fuse::Fusion;
pub use profile::{Event, EventKind, EventStore, Profile};
pub use progress::{Progress, Silent};
pub use rank::{train_head, CtrHead, RerankMode, TrainSpec, TrainedHead, TrainingLogs};
pub use vector::HnswParams;
