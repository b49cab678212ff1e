//! The HNSW graph (hnsw_rs), its parameters, persistence and filtered search.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use hnsw_rs::api::AnnT;
use hnsw_rs::hnsw::Hnsw;
use hnsw_rs::prelude::Distance;
use serde::{Deserialize, Serialize};

use super::flat;
use super::frozen::Frozen;
use super::quant::{dot_i8, Int8Scale, Quantization};
use crate::error::{Error, Result};
use crate::fuse::{sort_candidates, Candidate};

/// Inner-product distance `1 - a.b` for unit vectors, clamped at 0.
///
/// hnsw_rs's own `DistDot` asserts that `a.b <= 1`, which rounding can break for
/// (near-)identical vectors; clamping keeps the ordering and never panics.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitDot;

impl Distance<f32> for UnitDot {
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        (1.0 - flat::dot(va, vb)).max(0.0)
    }
}

/// [`UnitDot`] over int8-quantised unit vectors: `1 - step²·a.b`, clamped at 0.
#[derive(Debug, Clone, Copy)]
pub struct Int8Dot {
    step2: f32,
}

impl Int8Dot {
    fn new(scale: Int8Scale) -> Self {
        Int8Dot {
            step2: scale.step() * scale.step(),
        }
    }
}

impl Distance<i8> for Int8Dot {
    fn eval(&self, va: &[i8], vb: &[i8]) -> f32 {
        (1.0 - dot_i8(va, vb) as f32 * self.step2).max(0.0)
    }
}

/// HNSW build and search parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    /// Links per node and layer (M). 16 is the usual default of HNSW libraries
    /// (hnswlib, Qdrant, LanceDB) and a good fit for 384-d sentence embeddings.
    pub m: usize,
    /// Candidate list size while building. 200 follows hnswlib's recommendation.
    pub ef_construction: usize,
    /// Candidate list size while searching (raised to k when smaller).
    /// [`EF_SEARCH_AUTO`] (the default) picks it from the number of vectors when
    /// the graph is built ([`HnswParams::ef_search_for`]); the index records the
    /// value picked.
    pub ef_search: usize,
    /// How the graph stores its vectors. With [`Quantization::Int8`] (the
    /// default) the graph holds int8 copies (a quarter of the memory) and
    /// [`HnswIndex::search_rescored`] rescores the candidates with the float32
    /// vectors; on Home Depot and on generated catalogs of 100k to 1M products
    /// that gave the same or better recall@10 than a float32 graph, less memory
    /// and faster searches (README, "Quantised graph").
    #[serde(default = "Quantization::when_absent")]
    pub quantization: Quantization,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            ef_search: EF_SEARCH_AUTO,
            quantization: Quantization::Int8,
        }
    }
}

/// `ef_search` value that asks for [`HnswParams::ef_search_for`] the graph's size.
pub const EF_SEARCH_AUTO: usize = 0;

/// Largest M accepted: hnsw_rs stores M in one byte of its dump (and exits the
/// process for M > 256). Graphs beyond M = 64 gain no recall on text embeddings
/// (Malkov & Yashunin, section 4), so the byte is the binding limit.
pub const MAX_M: usize = 255;
/// Largest `ef_construction` accepted: 50 times hnswlib's recommended 200; beyond
/// it a build only gets slower.
pub const MAX_EF_CONSTRUCTION: usize = 10_000;
/// Largest `ef_search` accepted. A search allocates a candidate list of `ef`
/// entries; 100,000 bounds that to a few MB while staying far above any useful
/// setting (recall saturates by ef = 1,000 on the README's table).
pub const MAX_EF_SEARCH: usize = 100_000;

impl HnswParams {
    /// The first parameter outside its range, as (field name, what is wrong), or
    /// `None`. The one statement of the ranges: [`validate`](Self::validate) and
    /// the manifest check both use it.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let out = |field: &'static str, v: usize, lo: usize, hi: usize| {
            (!(lo..=hi).contains(&v)).then(|| (field, format!("{v} is outside {lo}..={hi}")))
        };
        out("m", self.m, 2, MAX_M)
            .or_else(|| {
                out(
                    "ef_construction",
                    self.ef_construction,
                    1,
                    MAX_EF_CONSTRUCTION,
                )
            })
            .or_else(|| out("ef_search", self.ef_search, 1, MAX_EF_SEARCH))
    }

    /// The default `ef_search` for a graph of `n` vectors: 128 up to 100,000 (the
    /// flat part of the ef/recall curve on Home Depot, README), then 64 more for
    /// each doubling, rounded up to a multiple of 16 (240 at 300,000, 352 at a
    /// million). Recall at a fixed ef falls as a graph grows (README, "Scale":
    /// 0.976, 0.961 and 0.931 at 100k, 300k and 1M generated products at ef 128),
    /// and a walk's length grows with the logarithm of the size, so ef does too.
    pub fn ef_search_for(n: usize) -> usize {
        const BASE_EF: f64 = 128.0;
        const BASE_N: f64 = 100_000.0;
        let n = n as f64;
        if n <= BASE_N {
            return BASE_EF as usize;
        }
        let ef = BASE_EF * (1.0 + 0.5 * (n / BASE_N).log2());
        ((ef / 16.0).ceil() as usize * 16).min(MAX_EF_SEARCH)
    }

    /// These parameters with [`EF_SEARCH_AUTO`] replaced by the value for `n`
    /// vectors.
    pub fn resolved(self, n: usize) -> Self {
        HnswParams {
            ef_search: match self.ef_search {
                EF_SEARCH_AUTO => Self::ef_search_for(n),
                ef => ef,
            },
            ..self
        }
    }

    /// Checks the ranges hnsw_rs accepts and that keep its allocations bounded
    /// (`ef_search` may be [`EF_SEARCH_AUTO`]).
    pub fn validate(&self) -> Result<()> {
        match self.resolved(0).problem() {
            Some((field, reason)) => Err(Error::invalid(format!("hnsw {field}"), reason)),
            None => Ok(()),
        }
    }
}

/// Maximum number of layers (hnsw_rs's upper bound is 16).
const MAX_LAYERS: usize = 16;

type GraphF32<'a> = Hnsw<'a, f32, UnitDot>;
type GraphI8<'a> = Hnsw<'a, i8, Int8Dot>;

enum Inner {
    /// Just built by hnsw_rs, in its own in-memory form.
    BuiltF32(GraphF32<'static>),
    BuiltI8(GraphI8<'static>, Int8Scale),
    /// Read back from its dump into the compact, read-only form (`frozen.rs`).
    Loaded(Frozen),
}

/// The graph's answer before conversion: (row, distance).
type Found = Vec<(usize, f32)>;

/// One graph walk for `query` (already in the graph's element type).
fn walk<T, D>(
    g: &Hnsw<'_, T, D>,
    query: &[T],
    k: usize,
    ef: usize,
    filter: Option<&dyn hnsw_rs::filter::FilterT>,
) -> Found
where
    T: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    D: Distance<T> + Send + Sync,
{
    let found = match filter {
        Some(f) => g.search_filter(query, k, ef, Some(f)),
        None => g.search(query, k, ef),
    };
    found.into_iter().map(|n| (n.d_id, n.distance)).collect()
}

/// An HNSW graph over unit vectors; rows are product ordinals.
pub struct HnswIndex {
    inner: Inner,
    dim: usize,
    len: usize,
    params: HnswParams,
    /// The directory a loaded graph came from, named by errors.
    dir: Option<PathBuf>,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("dim", &self.dim)
            .field("len", &self.len)
            .field("params", &self.params)
            .field("int8_scale", &self.int8_scale())
            .finish()
    }
}

/// How a graph is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Insertion {
    /// On every core (hnsw_rs's parallel insert): fastest, but which neighbours a
    /// node gets depends on thread timing, so two builds over the same vectors give
    /// slightly different graphs (and answers that differ near the recall limit).
    #[default]
    Parallel,
    /// One vector after the other, in row order, on one thread: the same vectors
    /// always give the same graph (hnsw_rs draws levels from a fixed seed). About
    /// as many times slower as there are cores.
    Deterministic,
}

/// Inserts `vectors` into `graph` in chunks, reporting progress after each.
fn insert_all<T, D>(
    graph: &Hnsw<'static, T, D>,
    vectors: &[Vec<T>],
    insertion: Insertion,
    progress: &dyn Fn(usize),
) where
    T: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    D: Distance<T> + Send + Sync,
{
    const CHUNK: usize = 2048;
    let mut done = 0;
    for (c, chunk) in vectors.chunks(CHUNK).enumerate() {
        let batch: Vec<(&[T], usize)> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| (v.as_slice(), c * CHUNK + i))
            .collect();
        match insertion {
            Insertion::Parallel => graph.parallel_insert_slice(&batch),
            Insertion::Deterministic => batch.iter().for_each(|&b| graph.insert_slice(b)),
        }
        done += chunk.len();
        progress(done);
    }
}

impl HnswIndex {
    /// Builds a graph over `vectors` (all `dim` long), inserting in parallel.
    /// `progress` is called with the number of vectors inserted so far. With
    /// [`Quantization::Int8`] the scale is calibrated on `vectors` first.
    pub fn build(
        vectors: &[Vec<f32>],
        dim: usize,
        params: HnswParams,
        progress: &dyn Fn(usize),
    ) -> Result<Self> {
        Self::build_with(vectors, dim, params, Insertion::Parallel, progress)
    }

    /// [`build`](Self::build), inserting as `insertion` says.
    pub fn build_with(
        vectors: &[Vec<f32>],
        dim: usize,
        params: HnswParams,
        insertion: Insertion,
        progress: &dyn Fn(usize),
    ) -> Result<Self> {
        params.validate()?;
        let params = params.resolved(vectors.len());
        if let Some((i, v)) = vectors.iter().enumerate().find(|(_, v)| v.len() != dim) {
            return Err(Error::invalid(
                "vectors",
                format!("row {i} has {} dims, expected {dim}", v.len()),
            ));
        }
        let capacity = vectors.len().max(1);
        let inner = match params.quantization {
            Quantization::F32 => {
                let graph: GraphF32<'static> = Hnsw::new(
                    params.m,
                    capacity,
                    MAX_LAYERS,
                    params.ef_construction,
                    UnitDot,
                );
                insert_all(&graph, vectors, insertion, progress);
                Inner::BuiltF32(graph)
            }
            Quantization::Int8 => {
                let scale = Int8Scale::calibrate(vectors);
                let quantised: Vec<Vec<i8>> = vectors.iter().map(|v| scale.quantize(v)).collect();
                let graph: GraphI8<'static> = Hnsw::new(
                    params.m,
                    capacity,
                    MAX_LAYERS,
                    params.ef_construction,
                    Int8Dot::new(scale),
                );
                insert_all(&graph, &quantised, insertion, progress);
                Inner::BuiltI8(graph, scale)
            }
        };
        Ok(HnswIndex {
            inner,
            dim,
            len: vectors.len(),
            params,
            dir: None,
        })
    }

    /// The int8 scale of a quantised graph (recorded in the manifest), `None` for
    /// a float32 one.
    pub fn int8_scale(&self) -> Option<Int8Scale> {
        match &self.inner {
            Inner::BuiltI8(_, s) => Some(*s),
            Inner::BuiltF32(_) => None,
            Inner::Loaded(f) => f.scale(),
        }
    }

    /// Writes a graph built by [`build`](Self::build) into `dir` (hnsw_rs's dump
    /// format, base name `basename`). A loaded graph is already on disk: copy its
    /// files instead.
    pub fn save(&self, dir: &Path, basename: &str) -> Result<()> {
        let res = match &self.inner {
            Inner::BuiltF32(g) => g.file_dump(dir, basename),
            Inner::BuiltI8(g, _) => g.file_dump(dir, basename),
            Inner::Loaded(_) => {
                return Err(Error::VectorIndex(
                    "a graph loaded from disk is not written again; copy its files".into(),
                ))
            }
        };
        match res {
            Ok(written) if written == basename => Ok(()),
            Ok(other) => Err(Error::VectorIndex(format!(
                "hnsw_rs wrote base name {other} instead of {basename} in {}",
                dir.display()
            ))),
            Err(e) => Err(Error::VectorIndex(format!(
                "cannot write the graph to {}: {e}",
                dir.display()
            ))),
        }
    }

    /// Loads a graph written by [`HnswIndex::save`], holding `len` vectors of `dim`
    /// components built with `params` (and, for an int8 graph, `scale`, which it
    /// requires), into the compact read-only form searches use (`frozen.rs`): the
    /// links as `u32` ids, the vectors read in place from the memory-mapped data
    /// file. Every field of the dump is checked on the way (sizes, magic numbers,
    /// ids, lengths; see `dump.rs`): a damaged dump is a [`Error::CorruptIndex`]
    /// naming the file.
    pub fn load(
        dir: &Path,
        basename: &str,
        dim: usize,
        len: usize,
        params: HnswParams,
        scale: Option<Int8Scale>,
    ) -> Result<Self> {
        let params = params.resolved(len);
        let scale = match (params.quantization, scale) {
            (Quantization::F32, _) => None,
            (Quantization::Int8, Some(scale)) => Some(scale),
            (Quantization::Int8, None) => {
                return Err(Error::invalid(
                    "hnsw quantization",
                    "an int8 graph needs its scale (the manifest's hnsw.int8_step)",
                ))
            }
        };
        let layout = super::dump::read(
            dir,
            basename,
            &super::dump::Expected {
                len,
                dim,
                m: params.m,
                ef_construction: params.ef_construction,
                quantization: params.quantization,
            },
        )?;
        let data = dir.join(format!("{basename}.hnsw.data"));
        let frozen = Frozen::open(&data, layout, dim, scale)?;
        Ok(HnswIndex {
            inner: Inner::Loaded(frozen),
            dim,
            len,
            params,
            dir: Some(dir.to_path_buf()),
        })
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the graph holds no vector.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The parameters.
    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// One graph walk returning up to `n` rows with the graph's own scores
    /// (approximate for an int8 graph).
    fn walk(
        &self,
        query: &[f32],
        n: usize,
        ef: usize,
        allowed: Option<&(dyn Fn(usize) -> bool + Sync)>,
    ) -> Result<Vec<Candidate>> {
        if query.len() != self.dim {
            return Err(Error::invalid(
                "query vector",
                format!("has {} dims, the index has {}", query.len(), self.dim),
            ));
        }
        if n == 0 || self.len == 0 {
            return Ok(Vec::new());
        }
        let filter = allowed.map(|f| move |id: &usize| f(*id));
        let filter = filter.as_ref().map(|f| f as &dyn hnsw_rs::filter::FilterT);
        let found = catch_unwind(AssertUnwindSafe(|| match &self.inner {
            Inner::BuiltF32(g) => walk(g, query, n, ef, filter),
            Inner::BuiltI8(g, s) => walk(g, &s.quantize(query), n, ef, filter),
            Inner::Loaded(f) => f.search(query, n, ef, allowed),
        }))
        .map_err(|_| match &self.dir {
            Some(dir) => Error::corrupt(dir, "hnsw_rs panicked while searching the graph"),
            None => Error::VectorIndex("hnsw_rs panicked while searching the graph".into()),
        })?;
        let mut out: Vec<Candidate> = found
            .into_iter()
            .filter(|&(id, _)| id < self.len)
            .map(|(id, distance)| Candidate {
                ord: id as u32,
                score: 1.0 - distance,
            })
            .collect();
        sort_candidates(&mut out);
        out.truncate(n);
        Ok(out)
    }

    /// The `k` approximate nearest rows to `query`, best first, with the graph's
    /// scores (exact cosines for a float32 graph, int8 approximations for a
    /// quantised one: see [`search_rescored`](Self::search_rescored)). `ef`
    /// defaults to the saved `ef_search`; it is raised to `k` when smaller. When
    /// `allowed` is given, only rows for which it returns true are returned.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        allowed: Option<&(dyn Fn(usize) -> bool + Sync)>,
    ) -> Result<Vec<Candidate>> {
        let ef = ef.unwrap_or(self.params.ef_search).max(k);
        self.walk(query, k, ef, allowed)
    }

    /// Like [`search`](Self::search), with exact scores: for an int8 graph, every
    /// candidate the walk kept (`ef` of them, not only `k`) is rescored with its
    /// float32 row of `matrix` (row-major, `dim` wide: the index's `vectors.f32`),
    /// and the best `k` of those are returned in exact order. A float32 graph's
    /// scores are already exact, so it is [`search`](Self::search).
    pub fn search_rescored(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        allowed: Option<&(dyn Fn(usize) -> bool + Sync)>,
        matrix: &[f32],
    ) -> Result<Vec<Candidate>> {
        if self.int8_scale().is_none() {
            return self.search(query, k, ef, allowed);
        }
        let ef = ef.unwrap_or(self.params.ef_search).max(k);
        let kept = self.walk(query, ef, ef, allowed)?;
        let rows: Vec<u32> = kept.iter().map(|c| c.ord).collect();
        Ok(flat::exact_search_filtered(
            matrix, self.dim, query, k, &rows,
        ))
    }
}
