//! Opening an index: [`EngineBuilder`], the checks every open runs, and loading the
//! encoder and the trained head.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::live::Live;
use super::Engine;
use crate::encoder::{
    DeviceSpec, Encoder, EncoderOptions, Implementation, Precision, QueryBatcher,
};
use crate::error::{Error, ModelMismatch, Result};
use crate::fuse::Fusion;
use crate::profile::{EventStore, ItemStats, ProfileConfig};
use crate::rank::head::HeadError;
use crate::rank::{CtrHead, FallbackWeights, FEATURE_NAMES, FEATURE_SET_VERSION};
use crate::store::{self, layout, IndexPaths, Manifest, VectorFile};
use crate::text::TextIndex;
use crate::vector::HnswIndex;

/// Default size of the query-embedding cache: 10,000 texts, about 15 MiB of
/// 384-d vectors. Head queries repeat in every shop; this holds far more than a
/// typical head.
pub const DEFAULT_QUERY_CACHE: usize = 10_000;

/// Opens an [`Engine`] with options.
#[derive(Debug, Clone)]
pub struct EngineBuilder {
    index_dir: PathBuf,
    model_dir: Option<PathBuf>,
    device: DeviceSpec,
    implementation: Implementation,
    precision: Precision,
    keyword_only: bool,
    fusion: Fusion,
    verify: bool,
    load_head: bool,
    query_cache: usize,
    wait_for_lock: bool,
}

impl EngineBuilder {
    /// Options for the index in `index_dir`: the model recorded in the manifest, on
    /// the CPU, default fusion, with checksums verified.
    pub fn new(index_dir: impl Into<PathBuf>) -> Self {
        EngineBuilder {
            index_dir: index_dir.into(),
            model_dir: None,
            device: DeviceSpec::Cpu,
            implementation: Implementation::default(),
            precision: Precision::default(),
            keyword_only: false,
            fusion: Fusion::default(),
            verify: true,
            load_head: true,
            query_cache: DEFAULT_QUERY_CACHE,
            wait_for_lock: false,
        }
    }

    /// Uses this model directory instead of the one recorded at build time. It must
    /// be the same model (same weights checksum).
    pub fn model_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.model_dir = Some(dir.into());
        self
    }

    /// Runs the encoder on `device`.
    pub fn device(mut self, device: DeviceSpec) -> Self {
        self.device = device;
        self
    }

    /// Runs this implementation of the encoder's forward pass (default: the fast one).
    pub fn encoder_implementation(mut self, implementation: Implementation) -> Self {
        self.implementation = implementation;
        self
    }

    /// Holds the encoder's weights and activations in this format (default f32).
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Opens without an encoder: only `bm25` mode and requests that carry their own
    /// embedding work.
    pub fn keyword_only(mut self, yes: bool) -> Self {
        self.keyword_only = yes;
        self
    }

    /// Sets the default fusion used when a request names none.
    pub fn fusion(mut self, fusion: Fusion) -> Self {
        self.fusion = fusion;
        self
    }

    /// Skips the CRC-32 check of the index files on open (faster; only for indexes
    /// you trust, e.g. just built).
    pub fn verify_checksums(mut self, yes: bool) -> Self {
        self.verify = yes;
        self
    }

    /// Keeps the embeddings of up to `n` query texts (quick_cache's CLOCK-Pro
    /// policy: recent and frequent texts stay), so a repeated query skips the
    /// encoder. 0 turns the cache off.
    pub fn query_cache(mut self, n: usize) -> Self {
        self.query_cache = n;
        self
    }

    /// When a write (recording, importing, forgetting events) finds another process
    /// holding the index's writer lock, waits for it instead of failing with
    /// [`Error::Locked`] (default: fail at once).
    pub fn wait_for_lock(mut self, yes: bool) -> Self {
        self.wait_for_lock = yes;
        self
    }

    /// Loads the trained CTR head from `INDEX/rank/` when there is one (default on).
    pub fn load_head(mut self, yes: bool) -> Self {
        self.load_head = yes;
        self
    }

    /// Opens the index: finds and pins its live generation (see
    /// [`store::generation`]), checks the manifest and every file's size and CRC-32,
    /// loads the products, maps the vectors, reloads the HNSW graph and the keyword
    /// index, loads the encoder (refusing another model than the one the index was
    /// built with), reads the event store and loads the trained head if there is one.
    ///
    /// Opening creates, repairs and deletes nothing: an index on a read-only disk, or
    /// owned by another user, opens and searches. Writes take the writer lock when
    /// they happen.
    pub fn build(self) -> Result<Engine> {
        self.fusion
            .validate()
            .map_err(|r| Error::invalid("fusion", r))?;
        let (paths, pin) = store::open_current(&self.index_dir)?;
        let manifest = Manifest::read(paths.data())?;
        store::verify::check_files(paths.data(), &manifest, self.verify)?;
        let products = store::read_products(&paths.products())?;
        if products.len() != manifest.products {
            return Err(Error::corrupt(
                paths.products(),
                format!(
                    "{} products, the manifest says {}",
                    products.len(),
                    manifest.products
                ),
            ));
        }
        let dim = manifest.model.dim;
        let vectors = VectorFile::open(&paths.vectors(), products.len(), dim)?;
        let hnsw = HnswIndex::load(
            &paths.hnsw_dir(),
            layout::HNSW_BASENAME,
            dim,
            products.len(),
            manifest.hnsw.params(),
            manifest.hnsw.int8_scale(),
        )?;
        let text = TextIndex::open(&paths.text_dir())?;
        if text.len() != products.len() as u64 {
            return Err(Error::corrupt(
                paths.text_dir(),
                format!(
                    "{} documents, the manifest says {} products",
                    text.len(),
                    products.len()
                ),
            ));
        }
        let (encoder, encoder_options) = if self.keyword_only {
            (None, None)
        } else {
            let (enc, opts) = self.open_encoder(&paths, &manifest)?;
            (Some(Arc::new(enc)), Some(opts))
        };
        let live = Live::new(products.len(), manifest.updates_through, encoder_options);
        let batcher = QueryBatcher::new(encoder.as_ref().map_or(1, |e| e.workers()));
        let by_id: HashMap<String, u32> = products
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i as u32))
            .collect();
        let events = EventStore::open_read_only(&paths.events_dir())?;
        let (head, head_warning) = if self.load_head {
            load_head(&paths.rank_dir())
        } else {
            (None, None)
        };
        let engine = Engine {
            dir: self.index_dir,
            data_dir: paths.data().to_path_buf(),
            _pin: pin,
            wait_for_lock: self.wait_for_lock,
            manifest,
            products,
            by_id,
            text,
            hnsw,
            vectors,
            encoder,
            fusion: self.fusion,
            events: events.into(),
            // Filled below, once the catalog updates are applied.
            stats: RwLock::new(ItemStats::default()),
            head,
            head_warning,
            query_cache: (self.query_cache > 0)
                .then(|| quick_cache::sync::Cache::new(self.query_cache)),
            batcher,
            profile_cfg: ProfileConfig::default(),
            fallback: FallbackWeights::default(),
            live,
        };
        // The catalog updates acknowledged since the generation was built, then the
        // item statistics (events on products those updates added count too).
        engine.refresh_updates()?;
        let stats = engine.item_stats_now()?;
        *engine.write_stats()? = stats;
        Ok(engine)
    }

    /// The encoder, which must be the model the index was built with (same weights
    /// checksum and dimension).
    fn open_encoder(
        &self,
        paths: &IndexPaths,
        manifest: &Manifest,
    ) -> Result<(Encoder, EncoderOptions)> {
        let model_dir = self
            .model_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(&manifest.model.path));
        let mut opts = EncoderOptions::new(model_dir);
        opts.device = self.device;
        opts.implementation = self.implementation;
        opts.precision = self.precision;
        opts.max_tokens = Some(manifest.model.max_tokens);
        let enc = Encoder::load(&opts)?;
        let info = enc.info();
        let built = &manifest.model;
        if info.sha256 != built.sha256 || info.dim != built.dim {
            return Err(Error::ModelMismatch(Box::new(ModelMismatch {
                index: paths.root().to_path_buf(),
                built_name: built.name.clone(),
                built_dim: built.dim,
                built_sha: built.sha256.chars().take(12).collect(),
                given_name: info.name.clone(),
                given_dim: info.dim,
                given_sha: info.sha256.chars().take(12).collect(),
            })));
        }
        Ok((enc, opts))
    }
}

/// The feature-set version a head's card records (heads from before the version was
/// recorded are version 1).
fn feature_set(head: &CtrHead) -> u64 {
    head.card()
        .get("feature_set")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1)
}

/// The trained head in `rank_dir`, if there is one that fits this build's features;
/// otherwise why it is ignored (reranking then uses the fallback formula).
fn load_head(rank_dir: &Path) -> (Option<CtrHead>, Option<String>) {
    if !rank_dir.join(layout::HEAD_CARD).exists() {
        // The card is a save's commit point: weights without one are the leftovers of
        // an interrupted first save, not a head.
        return (None, None);
    }
    // A save writes new content-named weights, replaces the card, then removes the
    // old weights: a load that read the old card just before may find its weights
    // gone. Only that error is worth reading again; damage is not.
    let weights_gone = |r: &std::result::Result<CtrHead, HeadError>| matches!(r, Err(HeadError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound);
    let mut loaded = CtrHead::load(rank_dir);
    for attempt in 1..=3 {
        if !weights_gone(&loaded) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20 * attempt));
        loaded = CtrHead::load(rank_dir);
    }
    match loaded {
        Ok(h) if h.feature_names() == FEATURE_NAMES && feature_set(&h) == FEATURE_SET_VERSION => {
            (Some(h), None)
        }
        Ok(_) => (
            None,
            Some(format!(
                "the CTR head in {} was trained on another feature set (this build has version {FEATURE_SET_VERSION}) and is ignored; retrain it with `shelfrank train`",
                rank_dir.display()
            )),
        ),
        Err(e) => (
            None,
            Some(format!(
                "the CTR head in {} cannot be loaded and is ignored ({e}); retrain it with `shelfrank train`",
                rank_dir.display()
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_without_its_weights_is_reported_not_ignored_silently() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(
            load_head(tmp.path()).1,
            None,
            "no head at all: nothing to say"
        );
        let d = FEATURE_NAMES.len();
        let card = serde_json::json!({
            "format_version": 1,
            "feature_names": FEATURE_NAMES,
            "hidden": [4],
            "normalisation": {"mean": vec![0.0; d], "std": vec![1.0; d]},
            "weights": {"file": "ctr_head-00000000000000ab.safetensors", "bytes": 10, "fnv1a64": "00"},
        });
        std::fs::write(
            tmp.path().join(layout::HEAD_CARD),
            serde_json::to_vec(&card).unwrap(),
        )
        .unwrap();
        let (head, warning) = load_head(tmp.path());
        assert!(head.is_none());
        let warning = warning.expect("a warning");
        assert!(
            warning.contains("ctr_head-00000000000000ab.safetensors"),
            "{warning}"
        );
        // Weights without a card are an interrupted first save: no head, nothing to say.
        std::fs::remove_file(tmp.path().join(layout::HEAD_CARD)).unwrap();
        std::fs::write(tmp.path().join(layout::HEAD_WEIGHTS), b"w").unwrap();
        assert_eq!(load_head(tmp.path()).1, None);
    }
}
