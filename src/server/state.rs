//! What every request shares: the engine holder (swapped without a lock when a new
//! generation is published), the worker permits, the write gate, the metrics; the
//! watcher that swaps engines, and the background merge of catalog updates.
//!
//! Reads load the current `Arc<Engine>` (a lock-free `ArcSwap` load) and keep it for
//! the request, so a swap never disturbs a request in flight: the old engine, and
//! the generation its pin keeps on disk, live until its last request ends.
//!
//! Writes (events, forgetting, catalog updates) hold the write gate's shared side,
//! so they run concurrently (the library groups concurrent event writes into one
//! fsync); a swap holds its exclusive side: it opens the new engine without
//! holding anything, then, with no write running, makes the new engine read what
//! was written since it opened (`Engine::refresh`) and swaps it in. No write can
//! go to the old engine after that point, and none written before is missed.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;

use super::error::ApiError;
use super::metrics::Metrics;
use super::ServerConfig;
use crate::store::layout::{generation_number, CURRENT};
use crate::{Engine, EngineBuilder};

/// The state handlers share.
pub type AppState = Arc<Shared>;

/// See the module docs.
pub struct Shared {
    /// The service's settings.
    pub config: ServerConfig,
    /// The engine now served.
    pub engine: ArcSwap<Engine>,
    /// How engines are opened (the same options for every generation).
    pub opener: EngineBuilder,
    /// One permit per read (search, rerank) the engine may work on at once.
    pub permits: Arc<Semaphore>,
    /// The same for writes: a pool of their own, so a flood of searches cannot
    /// refuse events.
    pub write_permits: Arc<Semaphore>,
    /// Shared by writes, exclusive for a swap.
    pub write_gate: RwLock<()>,
    /// A merge of catalog updates is running.
    pub merging: AtomicBool,
    /// The Prometheus registry and instruments.
    pub metrics: Metrics,
}

impl Shared {
    /// The state for `engine`, opened with `opener`.
    pub fn new(config: ServerConfig, opener: EngineBuilder, engine: Engine) -> Self {
        let metrics = Metrics::new();
        metrics.set_engine(&engine);
        Shared {
            permits: Arc::new(Semaphore::new(config.max_inflight)),
            write_permits: Arc::new(Semaphore::new(config.max_inflight)),
            config,
            engine: ArcSwap::from_pointee(engine),
            opener,
            write_gate: RwLock::new(()),
            merging: AtomicBool::new(false),
            metrics,
        }
    }

    /// The write gate's shared side (writes). It guards no data, so a panic while
    /// it was held leaves nothing inconsistent: a poisoned lock is taken as it is.
    fn writing(&self) -> RwLockReadGuard<'_, ()> {
        self.write_gate
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The write gate's exclusive side (a swap).
    fn swapping(&self) -> RwLockWriteGuard<'_, ()> {
        self.write_gate
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `work` on the current engine in the blocking pool, holding a worker
    /// permit until it returns; 503 at once when none is free.
    pub async fn read<T, F>(self: &Arc<Self>, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, ApiError> + Send + 'static,
    {
        let permit = Self::permit(&self.permits, &self.metrics)?;
        let engine = self.engine.load_full();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(&engine)
        })
        .await
        .map_err(|e| ApiError::internal(format!("the worker failed: {e}")))?
    }

    /// Runs a write on the current engine in the blocking pool, holding the write
    /// gate's shared side (so it never races a swap) and a worker permit.
    pub async fn write<T, F>(self: &Arc<Self>, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, ApiError> + Send + 'static,
    {
        let permit = Self::permit(&self.write_permits, &self.metrics)?;
        let shared = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _writes = shared.writing();
            let engine = shared.engine.load_full();
            let out = work(&engine);
            shared.metrics.set_engine(&engine);
            out
        })
        .await
        .map_err(|e| ApiError::internal(format!("the worker failed: {e}")))?
    }

    fn permit(
        pool: &Arc<Semaphore>,
        metrics: &Metrics,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        Arc::clone(pool).try_acquire_owned().map_err(|_| {
            metrics.rejected.inc();
            ApiError::busy()
        })
    }

    /// Reads and writes the engine is working on now (writes include those waiting
    /// for a swap to finish).
    pub fn in_flight(&self) -> (usize, usize) {
        let max = self.config.max_inflight;
        (
            max.saturating_sub(self.permits.available_permits()),
            max.saturating_sub(self.write_permits.available_permits()),
        )
    }

    /// Opens the generation `CURRENT` names now and swaps it in, unless it is the
    /// one served. Blocking: call it from the blocking pool. Returns whether it
    /// swapped.
    pub fn swap_if_published(&self) -> crate::Result<bool> {
        {
            let served = self.engine.load();
            if current_generation(served.dir()) == served_generation(&served) {
                return Ok(false);
            }
        }
        // Opening takes seconds on a large index: writes go on meanwhile.
        let fresh = self.opener.clone().build()?;
        let _swap = self.swapping();
        // What was written since it opened (events, catalog updates).
        fresh.refresh()?;
        if let Some(w) = fresh.head_warning() {
            eprintln!("warning: {w}");
        }
        // The swap is counted before the new generation's gauges are set, so that
        // a scrape never shows the new generation without its swap.
        self.metrics.swaps.inc();
        self.metrics.set_engine(&fresh);
        self.engine.store(Arc::new(fresh));
        Ok(true)
    }

    /// Starts a merge of the catalog updates in the background when enough have
    /// piled up (`config.merge_after` changed products) and none is running; the
    /// merged generation is swapped in when it is published.
    pub fn merge_soon(self: &Arc<Self>) {
        let pending = self.engine.load().pending_updates();
        if pending < self.config.merge_after.max(1) {
            return;
        }
        if self.merging.swap(true, Ordering::SeqCst) {
            return;
        }
        let shared = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let engine = shared.engine.load_full();
            // On one thread: the graph and keyword index are rebuilt while the
            // server goes on serving, and must leave the other cores to requests.
            let merged = match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
                Ok(pool) => pool.install(|| engine.merge_updates(&crate::Silent)),
                Err(e) => Err(crate::Error::Io {
                    path: engine.dir().to_path_buf(),
                    source: std::io::Error::other(format!("cannot start the merge thread: {e}")),
                }),
            };
            match merged {
                Ok(Some(m)) => {
                    shared.metrics.merges.inc();
                    eprintln!(
                        "merged catalog updates through batch {} into a new generation ({} products, {:.1} s)",
                        m.through,
                        m.build.products,
                        t.elapsed().as_secs_f64()
                    );
                    if let Err(e) = shared.swap_if_published() {
                        eprintln!("error: cannot open the merged generation: {e}");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    shared.metrics.merge_failures.inc();
                    eprintln!(
                        "error: merging catalog updates failed (they stay applied on top): {e}"
                    );
                }
            }
            drop(engine);
            shared.merging.store(false, Ordering::SeqCst);
        });
    }
}

/// The generation name `CURRENT` holds (`None` when it cannot be read, or for an
/// index from before generations).
fn current_generation(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join(CURRENT)).ok()?;
    let name = text.trim();
    generation_number(name).map(|_| name.to_string())
}

/// The generation name `engine` serves.
fn served_generation(engine: &Engine) -> Option<String> {
    engine
        .generation_dir()
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| generation_number(n).is_some())
        .map(str::to_string)
}

/// The generation number `engine` serves (0 for an index from before generations).
pub fn generation_of(engine: &Engine) -> u64 {
    served_generation(engine)
        .and_then(|n| generation_number(&n))
        .unwrap_or(0)
}

/// Polls `CURRENT` every `config.poll_interval` and swaps in newly published
/// generations until `stop` resolves. A failed open keeps the served engine, is
/// logged, and is retried after a pause.
pub async fn watch_generations(shared: AppState, stop: tokio::sync::watch::Receiver<bool>) {
    /// Wait before retrying a generation that failed to open.
    const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
    let mut stop = stop;
    let mut failed_at: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.config.poll_interval) => {}
            _ = stop.changed() => return,
        }
        if failed_at.is_some_and(|t| t.elapsed() < RETRY_AFTER_FAILURE) {
            continue;
        }
        let s = Arc::clone(&shared);
        match tokio::task::spawn_blocking(move || s.swap_if_published()).await {
            Ok(Ok(true)) => {
                failed_at = None;
                let engine = shared.engine.load();
                eprintln!(
                    "serving {} ({} products)",
                    engine.generation_dir().display(),
                    engine.len()
                );
            }
            Ok(Ok(false)) => failed_at = None,
            Ok(Err(e)) => {
                shared.metrics.swap_failures.inc();
                eprintln!("error: cannot open the new generation, still serving the old one: {e}");
                failed_at = Some(Instant::now());
            }
            Err(e) => {
                shared.metrics.swap_failures.inc();
                eprintln!("error: the generation watcher failed: {e}");
                failed_at = Some(Instant::now());
            }
        }
    }
}
