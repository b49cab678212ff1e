//! Live catalog updates: products upserted or deleted while the engine serves,
//! without a rebuild.
//!
//! An acknowledged upsert or delete is durable (one file per batch in
//! `INDEX/updates/`, [`crate::store::updates`]) and visible to the next search in
//! both retrievers and in reranking:
//!
//! - an upserted product is embedded at once and kept, with its analysed text, in
//!   an append-only arena owned by the engine (so the `&Product` a search hands out
//!   stays valid while later updates arrive);
//! - a product's row never changes while the engine lives: a replaced product keeps
//!   its row (its events and statistics stay attached), a new one gets the next row
//!   after the generation's;
//! - the rows of the generation that were replaced or deleted are masked out of the
//!   keyword index and the HNSW graph (the same in-search mask filters use), and the
//!   changed rows are scored directly: BM25 with the index's own weights
//!   ([`TextIndex::score_documents`](crate::text::TextIndex::score_documents)) and an
//!   exact dot product with their embedding. Until a merge, searching the changed
//!   rows costs a linear scan over them (a few microseconds per thousand rows);
//! - [`Engine::merge_updates`] folds the changes into a new generation (reusing every
//!   embedding), publishes it, and deletes the folded batch files; a server then
//!   opens the new generation and swaps it in.
//!
//! The set of changed rows is an immutable snapshot behind an [`ArcSwap`]: readers
//! load it without a lock, a writer builds the next one and swaps it in.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use super::Engine;
use crate::build::{embedding_text, BuildSummary, IndexBuilder};
use crate::catalog::Product;
use crate::encoder::{EncoderOptions, DEFAULT_BATCH_SIZE};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::updates::{self, UpdateBatch, UpdateOp};
use crate::store::{IndexPaths, WriterLock};
use crate::text::DocumentTerms;

/// One version of an upserted product.
pub(crate) struct Version {
    pub(crate) product: Product,
    pub(crate) vector: Vec<f32>,
    pub(crate) terms: DocumentTerms,
}

/// The rows changed since the generation, as of one update batch.
#[derive(Clone, Default)]
pub(crate) struct View {
    /// Changed rows: the version now in the row, `None` when deleted.
    rows: HashMap<u32, Option<usize>>,
    /// Products that are not in the generation, and their rows.
    new_ids: HashMap<String, u32>,
    /// The next row for a new product.
    next_row: u32,
    /// The last batch applied.
    applied: u64,
    /// Products deleted (rows holding `None`).
    deleted: usize,
    /// The generation's rows still searchable (false: replaced or deleted);
    /// `None` when none changed.
    base_mask: Option<Arc<Vec<bool>>>,
}

impl View {
    /// Rows with a live updated product, in row order.
    pub(crate) fn updated_rows(&self) -> Vec<(u32, usize)> {
        let mut out: Vec<(u32, usize)> = self
            .rows
            .iter()
            .filter_map(|(&r, v)| v.map(|i| (r, i)))
            .collect();
        out.sort_unstable();
        out
    }

    /// The mask over the generation's rows, `None` when none changed.
    pub(crate) fn base_mask(&self) -> Option<&Arc<Vec<bool>>> {
        self.base_mask.as_ref()
    }

    /// Whether `row` was changed (replaced, deleted or added) since the generation.
    pub(crate) fn changed(&self, row: u32) -> Option<Option<usize>> {
        self.rows.get(&row).copied()
    }
}

/// The live-update state of an engine.
pub(crate) struct Live {
    /// Every version ever applied, append-only.
    versions: boxcar::Vec<Version>,
    view: ArcSwap<View>,
    /// Serialises this engine's update writes.
    writer: Mutex<()>,
    /// How to load the encoder again for a merge (`None`: opened keyword-only).
    pub(crate) encoder_options: Option<EncoderOptions>,
}

impl Live {
    pub(crate) fn new(
        base_len: usize,
        applied: u64,
        encoder_options: Option<EncoderOptions>,
    ) -> Self {
        Live {
            versions: boxcar::Vec::new(),
            view: ArcSwap::from_pointee(View {
                next_row: base_len as u32,
                applied,
                ..View::default()
            }),
            writer: Mutex::new(()),
            encoder_options,
        }
    }

    pub(crate) fn version(&self, i: usize) -> Option<&Version> {
        self.versions.get(i)
    }
}

/// What [`Engine::merge_updates`] did.
#[derive(Debug, Clone)]
pub struct MergeSummary {
    /// The last update batch folded into the new generation.
    pub through: u64,
    /// The build of the new generation.
    pub build: BuildSummary,
}

impl Engine {
    /// The current snapshot of changed rows.
    pub(crate) fn view(&self) -> Arc<View> {
        self.live.view.load_full()
    }

    /// The row of product `id`, `None` when unknown or deleted.
    pub(crate) fn row_of(&self, id: &str) -> Option<u32> {
        let view = self.live.view.load();
        let row = match self.by_id.get(id) {
            Some(&r) => r,
            None => *view.new_ids.get(id)?,
        };
        match view.rows.get(&row) {
            Some(None) => None,
            _ => Some(row),
        }
    }

    /// Rows handed out so far: the generation's, then those of products added since
    /// (some may be deleted: [`product_at`](Self::product_at) says).
    pub(crate) fn row_count(&self) -> u32 {
        self.live.view.load().next_row
    }

    /// The product in `row`, `None` when the row is empty or deleted.
    pub(crate) fn product_at(&self, row: u32) -> Option<&Product> {
        let changed = self.live.view.load().changed(row);
        match changed {
            Some(Some(i)) => self.live.version(i).map(|v| &v.product),
            Some(None) => None,
            None => self.products.get(row as usize),
        }
    }

    /// The stored embedding in `row`.
    pub(crate) fn embedding_at(&self, row: u32) -> Option<&[f32]> {
        let changed = self.live.view.load().changed(row);
        match changed {
            Some(Some(i)) => self.live.version(i).map(|v| v.vector.as_slice()),
            Some(None) => None,
            None => self.vectors.row(row as usize),
        }
    }

    /// The product with id `id`, live updates included.
    pub fn product(&self, id: &str) -> Option<&Product> {
        self.product_at(self.row_of(id)?)
    }

    /// The stored (L2-normalised) embedding of product `id`, live updates included.
    pub fn embedding(&self, id: &str) -> Option<&[f32]> {
        self.embedding_at(self.row_of(id)?)
    }

    /// Number of products, live updates included.
    pub fn len(&self) -> usize {
        let view = self.live.view.load();
        (view.next_row as usize).saturating_sub(view.deleted)
    }

    /// True when the index holds no product.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Products changed (upserted or deleted) since the generation was built: what a
    /// merge would fold in.
    pub fn pending_updates(&self) -> usize {
        self.live.view.load().rows.len()
    }

    /// The last update batch this engine applied (0: none since the index was first
    /// built).
    pub fn updates_applied(&self) -> u64 {
        self.live.view.load().applied
    }

    /// Adds products or replaces those with the same ids, durably: when this returns
    /// `Ok`, the batch is on disk (it survives a killed process) and the next search
    /// finds the products by keyword and by meaning, and never their old versions.
    /// Returns how many were stored.
    ///
    /// The products are checked by the catalog rules first ([`crate::catalog::check_products`]:
    /// the same errors as the catalog reader, naming the product's 1-based position
    /// as the line; an id given twice is refused); a refused batch changes nothing.
    /// Needs the encoder (an engine opened keyword-only refuses). Takes the index's
    /// writer lock for the write.
    pub fn upsert_products(&self, products: Vec<Product>) -> Result<usize> {
        crate::catalog::check_products(&products)?;
        let encoder = self.encoder.as_ref().ok_or(Error::NoEncoder {
            mode: "product upsert".into(),
        })?;
        let texts: Vec<String> = products.iter().map(embedding_text).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = encoder.embed_many(&refs, DEFAULT_BATCH_SIZE, &|_| {})?;
        let n = products.len();
        let ops = products
            .into_iter()
            .zip(vectors)
            .map(|(product, vector)| UpdateOp::Upsert { product, vector })
            .collect();
        self.write_updates(|_| Ok(Some(ops)))?;
        Ok(n)
    }

    /// Deletes product `id`, durably; `Ok(false)` when there is no such product
    /// (nothing is written then). A deleted product is never returned again.
    pub fn delete_product(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        let written = self.write_updates(|engine| {
            Ok(engine
                .row_of(&id)
                .map(|_| vec![UpdateOp::Delete { id: id.clone() }]))
        })?;
        Ok(written)
    }

    /// Applies the update batches another process (or another engine on this index)
    /// wrote since this engine last looked; returns how many it applied.
    pub fn refresh_updates(&self) -> Result<usize> {
        let _guard = self.lock_live_writer()?;
        self.catch_up()
    }

    /// Catches up with what other writers stored since this engine opened or last
    /// wrote: catalog update batches and shopper events. A server calls it before
    /// it swaps in an engine it opened while writes went on.
    pub fn refresh(&self) -> Result<()> {
        if self.refresh_updates()? > 0 || self.refresh_events()? {
            let stats = self.item_stats_now()?;
            *self.write_stats()? = stats;
        }
        Ok(())
    }

    /// Writes the batch `ops` returns (nothing when it returns `None`) under the
    /// writer lock, after catching up with batches written elsewhere, and applies it.
    fn write_updates(
        &self,
        ops: impl FnOnce(&Engine) -> Result<Option<Vec<UpdateOp>>>,
    ) -> Result<bool> {
        let _guard = self.lock_live_writer()?;
        let _lock = WriterLock::acquire(&self.dir, self.wait_for_lock)?;
        self.catch_up()?;
        let Some(ops) = ops(self)? else {
            return Ok(false);
        };
        let dir = IndexPaths::new(&self.dir).updates_dir();
        let view = self.live.view.load_full();
        let last_on_disk = updates::list(&dir)?.last().copied().unwrap_or(0);
        let seq = view
            .applied
            .max(last_on_disk)
            .max(self.manifest.updates_through)
            + 1;
        let batch = UpdateBatch { seq, ops };
        updates::write(&dir, &batch)?;
        let next = self.applied(&view, batch);
        self.live.view.store(Arc::new(next));
        Ok(true)
    }

    /// Applies the batches on disk after the one this engine applied last. The
    /// caller holds the live writer mutex.
    fn catch_up(&self) -> Result<usize> {
        let dir = IndexPaths::new(&self.dir).updates_dir();
        let mut view = self.live.view.load_full();
        let batches = updates::read_after(&dir, view.applied)?;
        let n = batches.len();
        for batch in batches {
            self.check_batch(&dir, &batch)?;
            view = Arc::new(self.applied(&view, batch));
        }
        if n > 0 {
            self.live.view.store(view);
        }
        Ok(n)
    }

    /// Refuses a batch read from disk whose vectors do not fit the index.
    fn check_batch(&self, dir: &std::path::Path, batch: &UpdateBatch) -> Result<()> {
        let dim = self.manifest.model.dim;
        for op in &batch.ops {
            if let UpdateOp::Upsert { product, vector } = op {
                if vector.len() != dim || vector.iter().any(|x| !x.is_finite()) {
                    return Err(Error::corrupt(
                        updates::batch_path(dir, batch.seq),
                        format!(
                            "the embedding of product {:?} has {} values (or a non-finite one), the index has {dim} dimensions",
                            product.id,
                            vector.len()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The view after `batch`.
    fn applied(&self, view: &View, batch: UpdateBatch) -> View {
        let mut next = view.clone();
        for op in batch.ops {
            match op {
                UpdateOp::Upsert { product, vector } => {
                    let row = match self.by_id.get(&product.id) {
                        Some(&r) => r,
                        None => match next.new_ids.get(&product.id) {
                            Some(&r) => r,
                            None => {
                                let r = next.next_row;
                                next.next_row += 1;
                                next.new_ids.insert(product.id.clone(), r);
                                r
                            }
                        },
                    };
                    let terms = self.text.document_terms(&product);
                    let i = self.live.versions.push(Version {
                        product,
                        vector,
                        terms,
                    });
                    next.rows.insert(row, Some(i));
                }
                UpdateOp::Delete { id } => {
                    let row = self
                        .by_id
                        .get(&id)
                        .or_else(|| next.new_ids.get(&id))
                        .copied();
                    if let Some(row) = row {
                        next.rows.insert(row, None);
                    }
                }
            }
        }
        next.applied = batch.seq;
        next.deleted = next.rows.values().filter(|v| v.is_none()).count();
        let base = self.products.len();
        let mut mask: Option<Vec<bool>> = None;
        for &row in next.rows.keys().filter(|&&r| (r as usize) < base) {
            mask.get_or_insert_with(|| vec![true; base])[row as usize] = false;
        }
        next.base_mask = mask.map(Arc::new);
        next
    }

    fn lock_live_writer(&self) -> Result<MutexGuard<'_, ()>> {
        self.live.writer.lock().map_err(|_| Error::Poisoned {
            what: "catalog updates",
        })
    }

    /// Folds the live updates into a new generation and publishes it: the
    /// generation's unchanged products and every updated one (their embeddings
    /// reused, nothing is encoded again), with the same model and HNSW settings.
    /// Then deletes the folded batch files. `Ok(None)` when there is nothing to
    /// fold. This engine keeps serving its own generation with the updates on top;
    /// open the index again to serve the new one (updates acknowledged during the
    /// merge are applied on top of it then).
    pub fn merge_updates(&self, progress: &dyn Progress) -> Result<Option<MergeSummary>> {
        let view = self.view();
        if view.rows.is_empty() {
            return Ok(None);
        }
        let Some(mut opts) = self.live.encoder_options.clone() else {
            return Err(Error::NoEncoder {
                mode: "merge of catalog updates".into(),
            });
        };
        // The generation's vectors are reused only at the precision they were
        // computed in, and this engine may serve at another (an index built in f16
        // on a GPU, served in f32 on a CPU): merge at the index's own.
        opts.precision = self.manifest.model.precision;
        let mut products: Vec<Product> = Vec::with_capacity(self.len());
        let mut known = HashMap::new();
        for (row, p) in self.products.iter().enumerate() {
            if view.changed(row as u32).is_none() {
                products.push(p.clone());
            }
        }
        for (_, i) in view.updated_rows() {
            let Some(v) = self.live.version(i) else {
                continue;
            };
            known.insert(
                v.product.id.clone(),
                (embedding_text(&v.product), v.vector.clone()),
            );
            products.push(v.product.clone());
        }
        let summary = IndexBuilder::new(&self.dir, PathBuf::from(&opts.model_dir))
            .encoder_options(opts)
            .hnsw(self.manifest.hnsw.rebuild_params())
            .source(self.manifest.source.clone())
            .wait_for_lock(true)
            .known_embeddings(known)
            .fold_updates_through(view.applied)
            .build_with(&products, progress)?;
        let _lock = WriterLock::acquire(&self.dir, true)?;
        updates::remove_through(&IndexPaths::new(&self.dir).updates_dir(), view.applied)?;
        Ok(Some(MergeSummary {
            through: view.applied,
            build: summary,
        }))
    }
}
