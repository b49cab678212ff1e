//! The HNSW graph (hnsw_rs), its parameters, persistence and filtered search.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use hnsw_rs::api::AnnT;
use hnsw_rs::hnsw::Hnsw;
use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::Distance;
use serde::{Deserialize, Serialize};

use super::flat;
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

/// HNSW build and search parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    /// Links per node and layer (M). 16 is the usual default of HNSW libraries
    /// (hnswlib, Qdrant, LanceDB) and a good fit for 384-d sentence embeddings.
    pub m: usize,
    /// Candidate list size while building. 200 follows hnswlib's recommendation.
    pub ef_construction: usize,
    /// Candidate list size while searching (raised to k when smaller). Chosen from
    /// the ef/recall table in README.md (Home Depot embeddings).
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            ef_search: 128,
        }
    }
}

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

    /// Checks the ranges hnsw_rs accepts and that keep its allocations bounded.
    pub fn validate(&self) -> Result<()> {
        match self.problem() {
            Some((field, reason)) => Err(Error::invalid(format!("hnsw {field}"), reason)),
            None => Ok(()),
        }
    }
}

/// Maximum number of layers (hnsw_rs's upper bound is 16).
const MAX_LAYERS: usize = 16;

type Graph<'a> = Hnsw<'a, f32, UnitDot>;

self_cell::self_cell!(
    /// A graph reloaded from disk borrows from its loader; keep both together.
    struct Loaded {
        owner: HnswIo,
        #[not_covariant]
        dependent: Graph,
    }
);

enum Inner {
    Built(Graph<'static>),
    Loaded(Loaded),
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
            .finish()
    }
}

impl HnswIndex {
    /// Builds a graph over `vectors` (all `dim` long), inserting in parallel.
    /// `progress` is called with the number of vectors inserted so far.
    pub fn build(
        vectors: &[Vec<f32>],
        dim: usize,
        params: HnswParams,
        progress: &dyn Fn(usize),
    ) -> Result<Self> {
        params.validate()?;
        if let Some((i, v)) = vectors.iter().enumerate().find(|(_, v)| v.len() != dim) {
            return Err(Error::invalid(
                "vectors",
                format!("row {i} has {} dims, expected {dim}", v.len()),
            ));
        }
        let graph: Graph<'static> = Hnsw::new(
            params.m,
            vectors.len().max(1),
            MAX_LAYERS,
            params.ef_construction,
            UnitDot,
        );
        // Insert in chunks so that progress can be reported.
        const CHUNK: usize = 2048;
        let mut done = 0;
        for (c, chunk) in vectors.chunks(CHUNK).enumerate() {
            let batch: Vec<(&[f32], usize)> = chunk
                .iter()
                .enumerate()
                .map(|(i, v)| (v.as_slice(), c * CHUNK + i))
                .collect();
            graph.parallel_insert_slice(&batch);
            done += chunk.len();
            progress(done);
        }
        Ok(HnswIndex {
            inner: Inner::Built(graph),
            dim,
            len: vectors.len(),
            params,
            dir: None,
        })
    }

    /// Writes the graph into `dir` (hnsw_rs's dump format, base name `basename`).
    pub fn save(&self, dir: &Path, basename: &str) -> Result<()> {
        let res = match &self.inner {
            Inner::Built(g) => g.file_dump(dir, basename),
            Inner::Loaded(l) => l.with_dependent(|_, g| g.file_dump(dir, basename)),
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
    /// floats built with `params`. The dump files are checked field by field first
    /// (sizes, magic numbers, ids, lengths; see `dump.rs`), because hnsw_rs aborts
    /// the process on some damaged input; a damaged dump is a
    /// [`Error::CorruptIndex`] naming the file, and a panic inside hnsw_rs one
    /// naming `dir`.
    pub fn load(
        dir: &Path,
        basename: &str,
        dim: usize,
        len: usize,
        params: HnswParams,
    ) -> Result<Self> {
        super::dump::check(
            dir,
            basename,
            &super::dump::Expected {
                len,
                dim,
                m: params.m,
                ef_construction: params.ef_construction,
            },
        )?;
        let io = HnswIo::new(dir, basename);
        let loaded = catch_unwind(AssertUnwindSafe(|| {
            Loaded::try_new(io, |io| io.load_hnsw_with_dist::<f32, UnitDot>(UnitDot))
        }));
        let loaded = match loaded {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                return Err(Error::corrupt(
                    dir,
                    format!("cannot load the HNSW graph: {e}"),
                ))
            }
            Err(_) => return Err(Error::corrupt(dir, "the HNSW graph files are inconsistent")),
        };
        let (found_len, found_dim) = loaded.with_dependent(|_, g| {
            (
                g.get_nb_point(),
                g.get_point_indexation().get_data_dimension(),
            )
        });
        if found_len != len || (len > 0 && found_dim != dim) {
            return Err(Error::corrupt(
                dir,
                format!("the HNSW graph holds {found_len} vectors of {found_dim} dims, the manifest says {len} of {dim}"),
            ));
        }
        Ok(HnswIndex {
            inner: Inner::Loaded(loaded),
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

    /// The `k` approximate nearest rows to `query`, best first. `ef` defaults to
    /// the saved `ef_search`; it is raised to `k` when smaller. When `allowed` is
    /// given, only rows for which it returns true are returned.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        allowed: Option<&(dyn Fn(usize) -> bool + Sync)>,
    ) -> Result<Vec<Candidate>> {
        if query.len() != self.dim {
            return Err(Error::invalid(
                "query vector",
                format!("has {} dims, the index has {}", query.len(), self.dim),
            ));
        }
        if k == 0 || self.len == 0 {
            return Ok(Vec::new());
        }
        let ef = ef.unwrap_or(self.params.ef_search).max(k);
        let filter = allowed.map(|f| move |id: &usize| f(*id));
        let run = |g: &Graph<'_>| match &filter {
            Some(f) => g.search_filter(query, k, ef, Some(f as &dyn hnsw_rs::filter::FilterT)),
            None => g.search(query, k, ef),
        };
        let found = catch_unwind(AssertUnwindSafe(|| match &self.inner {
            Inner::Built(g) => run(g),
            Inner::Loaded(l) => l.with_dependent(|_, g| run(g)),
        }))
        .map_err(|_| match &self.dir {
            Some(dir) => Error::corrupt(dir, "hnsw_rs panicked while searching the graph"),
            None => Error::VectorIndex("hnsw_rs panicked while searching the graph".into()),
        })?;
        let mut out: Vec<Candidate> = found
            .into_iter()
            .filter(|n| n.d_id < self.len)
            .map(|n| Candidate {
                ord: n.d_id as u32,
                score: 1.0 - n.distance,
            })
            .collect();
        sort_candidates(&mut out);
        out.truncate(k);
        Ok(out)
    }
}
