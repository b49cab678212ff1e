//! [`IndexBuilder`]: catalog -> on-disk index (offline).
//!
//! Steps: embed every product (batched, length-sorted, with a progress bar),
//! build the HNSW graph, index the text with tantivy, write products, vectors and
//! manifest into a staging directory inside the index, fsync, and publish it as the
//! index's next generation under the writer lock
//! ([`crate::store::NewGeneration::publish`]). A failure or a crash at any step
//! leaves the live generation, the events and the head untouched.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::catalog::Product;
use crate::encoder::{Encoder, EncoderOptions, DEFAULT_BATCH_SIZE};
use crate::error::{Error, Result};
use crate::profile::events::now_unix;
use crate::progress::{Progress, Silent};
use crate::store::{
    self, layout, HnswSettings, IndexPaths, Manifest, ModelRecord, NewGeneration, VectorFile,
    WriterLock,
};
use crate::text::TextIndex;
use crate::vector::{HnswIndex, HnswParams};

/// The text a product is embedded from: the title, then brand and category path
/// when present. Descriptions are left out: they are long and would dilute the
/// title, which is what shoppers' queries match (and would be truncated anyway).
pub fn embedding_text(p: &Product) -> String {
    let mut s = p.title.clone();
    if let Some(b) = &p.brand {
        if !p.title.to_lowercase().contains(&b.to_lowercase()) {
            s.push_str(" | ");
            s.push_str(b);
        }
    }
    if !p.category.is_empty() {
        s.push_str(" | ");
        s.push_str(&p.category.join(" > "));
    }
    s
}

/// What a build did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildSummary {
    /// Where the index is.
    pub index: PathBuf,
    /// Number of products indexed.
    pub products: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// Products whose stored embedding was reused from the previous index.
    pub reused_embeddings: usize,
    /// Seconds spent embedding.
    pub encode_secs: f64,
    /// Seconds spent building the HNSW graph.
    pub hnsw_secs: f64,
    /// Seconds spent on the keyword index.
    pub text_secs: f64,
    /// Wall-clock seconds in all (model load and writing included).
    pub total_secs: f64,
    /// Size of the index directory in bytes.
    pub bytes: u64,
}

/// Builds an index directory from products.
#[derive(Debug, Clone)]
pub struct IndexBuilder {
    dest: PathBuf,
    encoder: EncoderOptions,
    hnsw: HnswParams,
    batch_size: usize,
    source: String,
    reuse: bool,
    wait_for_lock: bool,
    /// Embeddings known beyond the live generation's (a merge's updated products),
    /// by id: (embedding text, vector).
    known: HashMap<String, (String, Vec<f32>)>,
    /// The `updates_through` to record; `None`: the live generation's (a rebuild
    /// from a catalog file keeps the pending live updates applying on top).
    updates_through: Option<u64>,
    /// Parts of precomputed embeddings ([`crate::parts`]): when given, the build
    /// encodes nothing and takes every vector from them.
    parts: Vec<PathBuf>,
    /// How the HNSW graph is built.
    insertion: crate::vector::Insertion,
}

impl IndexBuilder {
    /// A builder writing to `dest` with the model in `model_dir`.
    pub fn new(dest: impl Into<PathBuf>, model_dir: impl Into<PathBuf>) -> Self {
        IndexBuilder {
            dest: dest.into(),
            encoder: EncoderOptions::new(model_dir),
            hnsw: HnswParams::default(),
            batch_size: DEFAULT_BATCH_SIZE,
            source: String::new(),
            reuse: true,
            wait_for_lock: false,
            known: HashMap::new(),
            updates_through: None,
            parts: Vec::new(),
            insertion: crate::vector::Insertion::Parallel,
        }
    }

    /// Builds the HNSW graph on one thread in row order, so that the same vectors
    /// always give the same graph and the same answers (default off: parallel,
    /// faster; see [`crate::vector::Insertion`]).
    pub fn deterministic_graph(mut self, yes: bool) -> Self {
        self.insertion = if yes {
            crate::vector::Insertion::Deterministic
        } else {
            crate::vector::Insertion::Parallel
        };
        self
    }

    /// Takes every product's vector from these parts of precomputed embeddings
    /// (written by [`crate::parts::embed_part`], `shelfrank embed`) instead of
    /// encoding: each part must come from this builder's model, and together they
    /// must hold every product exactly once, embedded from its current text
    /// ([`crate::parts::assemble`]). The model is still loaded, for its checksum.
    pub fn precomputed_embeddings(mut self, parts: Vec<PathBuf>) -> Self {
        self.parts = parts;
        self
    }

    /// Encoder options (device, number format, max tokens).
    pub fn encoder_options(mut self, opts: EncoderOptions) -> Self {
        self.encoder = opts;
        self
    }

    /// HNSW parameters.
    pub fn hnsw(mut self, params: HnswParams) -> Self {
        self.hnsw = params;
        self
    }

    /// Texts per encoder forward pass.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Reuse the embeddings of an index already at the destination (default on):
    /// a product whose id and embedding text are unchanged keeps its stored vector
    /// when the old index was built with the same model (same weights checksum and
    /// token limit), so rebuilding after a catalog update only encodes what
    /// changed. Off: everything is encoded again.
    pub fn reuse_embeddings(mut self, yes: bool) -> Self {
        self.reuse = yes;
        self
    }

    /// Vectors of the index at the destination, by product id, when reusable.
    fn reusable(&self, info: &crate::encoder::ModelInfo) -> HashMap<String, (String, Vec<f32>)> {
        let mut out = HashMap::new();
        if !self.reuse {
            return out;
        }
        let Ok((old_paths, _pin)) = store::open_current(&self.dest) else {
            return out;
        };
        // Older formats too: upgrading an index by rebuilding it re-encodes nothing.
        let Ok(old) = Manifest::read_for_reuse(old_paths.data()) else {
            return out;
        };
        if old.model.sha256 != info.sha256
            || old.model.dim != info.dim
            || old.model.max_tokens != info.max_tokens
            // Vectors from another precision are the same model's, but a rebuild
            // at a new precision is asked for to get its vectors: re-encode all.
            || old.model.precision != self.encoder.precision
        {
            return out;
        }
        let check = |rel: &str| match old.files.get(rel) {
            Some(entry) => store::verify_file(&old_paths.data().join(rel), entry).is_ok(),
            None => false,
        };
        if !check(layout::PRODUCTS) || !check(layout::VECTORS) {
            return out;
        }
        let (Ok(products), Ok(vectors)) = (
            store::read_products(&old_paths.products()),
            VectorFile::open(&old_paths.vectors(), old.products, old.model.dim),
        ) else {
            return out;
        };
        for (i, p) in products.iter().enumerate() {
            if let Some(row) = vectors.row(i) {
                out.insert(p.id.clone(), (embedding_text(p), row.to_vec()));
            }
        }
        out
    }

    /// When another process holds the index's writer lock at publish time, waits
    /// for it instead of failing with [`Error::Locked`] (default: fail).
    pub fn wait_for_lock(mut self, yes: bool) -> Self {
        self.wait_for_lock = yes;
        self
    }

    /// Embeddings to reuse beyond the live generation's, by product id: (embedding
    /// text, vector). Used when a merge folds live updates into a generation.
    pub(crate) fn known_embeddings(mut self, known: HashMap<String, (String, Vec<f32>)>) -> Self {
        self.known = known;
        self
    }

    /// Records `seq` as the last live update folded into the new generation.
    pub(crate) fn updates_through(&self) -> u64 {
        self.updates_through.unwrap_or_else(|| {
            store::open_current(&self.dest)
                .ok()
                .and_then(|(paths, _pin)| Manifest::read_for_reuse(paths.data()).ok())
                .map_or(0, |m| m.updates_through)
        })
    }

    /// Sets the `updates_through` the new generation records (see
    /// [`Manifest::updates_through`]).
    pub(crate) fn fold_updates_through(mut self, seq: u64) -> Self {
        self.updates_through = Some(seq);
        self
    }

    /// Records where the products came from (shown in the manifest).
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Builds the index for `products` and publishes it at the destination.
    pub fn build(&self, products: &[Product]) -> Result<BuildSummary> {
        self.build_with(products, &Silent)
    }

    /// [`build`](Self::build), reporting each phase (encoding, hnsw, keywords) to
    /// `progress`.
    pub fn build_with(
        &self,
        products: &[Product],
        progress: &dyn Progress,
    ) -> Result<BuildSummary> {
        let start = Instant::now();
        self.hnsw.validate()?;
        crate::catalog::check_products(products)?;
        store::generation::check_buildable(&self.dest)?;
        let encoder = Encoder::load(&self.encoder)?;
        let info = encoder.info().clone();
        let precomputed = if self.parts.is_empty() {
            None
        } else {
            let parts = self
                .parts
                .iter()
                .map(|p| crate::parts::Part::open(p))
                .collect::<Result<Vec<_>>>()?;
            Some(crate::parts::assemble(products, &parts, &info)?)
        };
        let staging = NewGeneration::begin(&self.dest)?;

        // 1. Embeddings.
        let t = Instant::now();
        let (vectors, reused, precision) = match precomputed {
            Some((vectors, precision)) => (vectors, products.len(), precision),
            None => {
                let (vectors, reused) = self.encode(products, &encoder, &info, progress)?;
                (vectors, reused, encoder.precision())
            }
        };
        let encode_secs = t.elapsed().as_secs_f64();
        self.finish(
            products,
            vectors,
            reused,
            precision,
            &info,
            staging,
            progress,
            start,
            encode_secs,
        )
    }

    /// Every product's vector, reusing what [`Self::reusable`] and the known
    /// embeddings offer and encoding the rest; and how many were reused.
    fn encode(
        &self,
        products: &[Product],
        encoder: &Encoder,
        info: &crate::encoder::ModelInfo,
        progress: &dyn Progress,
    ) -> Result<(Vec<Vec<f32>>, usize)> {
        let texts: Vec<String> = products.iter().map(embedding_text).collect();
        let mut old = self.reusable(info);
        old.extend(self.known.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(products.len());
        let mut todo: Vec<usize> = Vec::new();
        for (i, (p, text)) in products.iter().zip(&texts).enumerate() {
            match old.remove(&p.id) {
                Some((old_text, v)) if &old_text == text => vectors.push(v),
                _ => {
                    vectors.push(Vec::new());
                    todo.push(i);
                }
            }
        }
        drop(old);
        let reused = products.len() - todo.len();
        let refs: Vec<&str> = todo.iter().map(|&i| texts[i].as_str()).collect();
        progress.start("encoding", refs.len());
        let fresh = encoder.embed_many(&refs, self.batch_size, &|n| progress.set(n))?;
        progress.finish();
        for (i, v) in todo.into_iter().zip(fresh) {
            vectors[i] = v;
        }
        Ok((vectors, reused))
    }

    /// Graph, keyword index, files and manifest for `vectors`, then the publish.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        products: &[Product],
        vectors: Vec<Vec<f32>>,
        reused: usize,
        precision: crate::encoder::Precision,
        info: &crate::encoder::ModelInfo,
        staging: NewGeneration,
        progress: &dyn Progress,
        start: Instant,
        encode_secs: f64,
    ) -> Result<BuildSummary> {
        let dir = staging.path().to_path_buf();
        let paths = IndexPaths::new(&dir);

        // 2. HNSW graph.
        let t = Instant::now();
        progress.start("hnsw", products.len());
        let hnsw = HnswIndex::build_with(&vectors, info.dim, self.hnsw, self.insertion, &|n| {
            progress.set(n)
        })?;
        progress.finish();
        let hnsw_dir = paths.hnsw_dir();
        std::fs::create_dir(&hnsw_dir).map_err(|e| Error::io(&hnsw_dir, e))?;
        hnsw.save(&hnsw_dir, layout::HNSW_BASENAME)?;
        let hnsw_secs = t.elapsed().as_secs_f64();

        // 3. Keyword index.
        let t = Instant::now();
        progress.start("keywords", products.len());
        TextIndex::build(products, Some(&paths.text_dir()), &|n| progress.set(n))?;
        progress.finish();
        let text_secs = t.elapsed().as_secs_f64();

        // 4. Products, vectors, manifest.
        store::write_products(&paths.products(), products)?;
        VectorFile::write(&paths.vectors(), &vectors)?;
        let files = store::verify::checksum_tree(&dir)?;
        let hnsw_settings = HnswSettings::new(
            hnsw.params(),
            hnsw.int8_scale(),
            self.hnsw.ef_search == crate::vector::EF_SEARCH_AUTO,
        );
        let manifest = Manifest {
            format_version: Manifest::version_for(&hnsw_settings),
            shelfrank_version: env!("CARGO_PKG_VERSION").to_string(),
            created_unix: u64::try_from(now_unix()).unwrap_or(0),
            products: products.len(),
            source: self.source.clone(),
            model: ModelRecord {
                name: info.name.clone(),
                path: info.path.to_string_lossy().into_owned(),
                dim: info.dim,
                pooling: info.pooling.name().to_string(),
                max_tokens: info.max_tokens,
                sha256: info.sha256.clone(),
                precision,
            },
            hnsw: hnsw_settings,
            files,
            updates_through: self.updates_through(),
        };
        manifest.write(&dir)?;
        store::durable::make_public(&dir)?;
        let lock = WriterLock::acquire(&self.dest, self.wait_for_lock)?;
        let live = staging.publish(&lock)?;
        Ok(BuildSummary {
            index: self.dest.clone(),
            products: products.len(),
            dim: info.dim,
            reused_embeddings: reused,
            encode_secs,
            hnsw_secs,
            text_secs,
            total_secs: start.elapsed().as_secs_f64(),
            bytes: store::dir_size(&live),
        })
    }
}
