//! Approximate nearest-neighbour search over L2-normalised embeddings.
//!
//! The only module that names hnsw_rs. [`HnswIndex`] wraps an HNSW graph (Malkov &
//! Yashunin, "Efficient and robust approximate nearest neighbor search using
//! Hierarchical Navigable Small World graphs", 2016) with inner-product distance;
//! [`exact_search`] is the brute-force oracle it is tested against and the fallback
//! for very selective filters, where a filtered graph walk would visit most of the
//! graph anyway. Scores are cosine similarities (the vectors are unit length), so
//! higher is better. The graph can hold int8 copies of the vectors ([`Quantization`],
//! `quant.rs`), in which case its candidates are rescored with the float32 ones.

mod dump;
mod flat;
mod frozen;
mod hnsw;
mod quant;

pub use flat::{dot, exact_search, exact_search_filtered};
pub use hnsw::{
    HnswIndex, HnswParams, Insertion, EF_SEARCH_AUTO, MAX_EF_CONSTRUCTION, MAX_EF_SEARCH, MAX_M,
};
pub use quant::{dot_i8, Int8Scale, Quantization, CALIBRATION_QUANTILE};
