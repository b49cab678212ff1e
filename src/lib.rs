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
//!   index, the embeddings (memory-mapped), the HNSW graph and a versioned manifest
//!   in one generation per build, beside the shop's events and the trained head
//!   ([`store::layout`] names every file). One writer at a time ([`store::lock`]);
//!   readers never write, and a crash at any step keeps every acknowledged event.
//! * **Retriever**: BM25 ([`text`]) and dense ([`encoder`] + [`vector`]).
//! * **Fusion** ([`fuse`]): by default BM25 over the query's reference score plus
//!   cosine, every candidate scored by both retrievers; RRF and min-max remain.
//! * **Engine / SearchRequest / Hit** ([`engine`]): open an index, search it from
//!   many threads, get hits with a [`ScoreBreakdown`].
//! * **Event / Profile / Reranker** ([`profile`], [`rank`]): shoppers' events in a
//!   crash-safe store, profiles as of a time, and a CTR head trained from the shop's
//!   logs ([`train_head`]) that reranks a shopper's candidates or another engine's
//!   ([`Engine::rerank`]).
//! * **Eval** ([`eval`]): retrieval and personalised evaluation, NDCG, recall, MRR,
//!   AUC over query, qrels and task files.
//!
//! * **Service** (`server`, feature `server`, on by default through `cli`): the
//!   HTTP layer `shelfrank serve` runs: JSON endpoints over an [`Engine`] that is
//!   swapped when a build publishes a new generation.
//!
//! Long work (builds, training, evaluation) reports to a [`Progress`]; errors are one
//! [`Error`], whose [`Error::is_user_error`] separates the caller's faults from the
//! system's.

#![warn(missing_docs)]

pub mod build;
pub mod catalog;
pub mod encoder;
pub mod engine;
pub mod error;
pub mod eval;
pub mod fuse;
mod lines;
pub mod parts;
pub mod profile;
pub mod progress;
pub mod rank;
mod rng;
#[cfg(feature = "server")]
pub mod server;
pub mod store;
pub mod text;
pub mod tune;
pub mod vector;

pub use build::{BuildSummary, IndexBuilder};
pub use catalog::{Catalog, Product};
pub use encoder::{DeviceSpec, Encoder, EncoderOptions};
pub use engine::{
    CandidateCheck, CandidateProblem, Candidates, Engine, EngineBuilder, ExternalCandidate,
    Filters, Hit, ImportSummary, MergeSummary, Mode, RerankResponse, ScoreBreakdown, SearchRequest,
};
pub use error::{Error, Result};
pub use fuse::Fusion;
pub use profile::{Event, EventKind, EventStore, Profile};
pub use progress::{Progress, Silent};
pub use rank::{train_head, CtrHead, RerankMode, TrainSpec, TrainedHead, TrainingLogs};
pub use vector::HnswParams;
