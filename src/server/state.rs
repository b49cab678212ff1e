//! What every request shares: the engine holder (swapped without a lock when a new
//! generation is published), the worker permits, the write mutex, the metrics; and
//! the watcher that swaps engines.
//!
//! Reads load the current `Arc<Engine>` (a lock-free `ArcSwap` load) and keep it for
//! the request, so a swap never disturbs a request in flight: the old engine, and
//! the generation its pin keeps on disk, live until its last request ends.
//!
//! Writes (events, forgetting, catalog updates) run under one write mutex, and so
//! does the swap: a write goes to the engine that is current while it runs, and an
//! engine opened while writes went on is not swapped in until it has seen them (it
//! is reopened; its last try opens under the mutex).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
    /// refuse events (writes run one at a time under the write mutex anyway).
    pub write_permits: Arc<Semaphore>,
    /// Held around every write and around a swap.
    pub write_lock: Mutex<()>,
    /// Counts writes, so a swap can tell whether one happened while it opened.
    pub write_epoch: AtomicU64,
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
            write_lock: Mutex::new(()),
            write_epoch: AtomicU64::new(0),
            metrics,
        }
    }

    /// The write mutex. It guards no data, so a panic while it was held leaves
    /// nothing inconsistent: a poisoned lock is taken as it is.
    fn lock_writes(&self) -> MutexGuard<'_, ()> {
        self.write_lock
            .lock()
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

    /// Runs a write on the current engine in the blocking pool, under the write
    /// mutex (so it never races a swap), holding a worker permit.
    pub async fn write<T, F>(self: &Arc<Self>, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, ApiError> + Send + 'static,
    {
        let permit = Self::permit(&self.write_permits, &self.metrics)?;
        let shared = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _writes = shared.lock_writes();
            shared.write_epoch.fetch_add(1, Ordering::SeqCst);
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

    /// Reads and writes the engine is working on now (or, for writes, waiting for
    /// the write mutex).
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
        /// Tries to open an engine without holding writes back; the last try holds
        /// the write mutex while it opens, so it cannot miss a write.
        const UNLOCKED_TRIES: usize = 2;
        for attempt in 0..=UNLOCKED_TRIES {
            let served = self.engine.load();
            if current_generation(served.dir()) == served_generation(&served) {
                return Ok(false);
            }
            drop(served);
            let last = attempt == UNLOCKED_TRIES;
            let held = last.then(|| self.lock_writes());
            // Read under the mutex, so a write in progress has finished first.
            let epoch = match &held {
                Some(_) => self.write_epoch.load(Ordering::SeqCst),
                None => {
                    let _writes = self.lock_writes();
                    self.write_epoch.load(Ordering::SeqCst)
                }
            };
            let fresh = self.opener.clone().build()?;
            let _writes = match held {
                Some(guard) => guard,
                None => self.lock_writes(),
            };
            if last || self.write_epoch.load(Ordering::SeqCst) == epoch {
                if let Some(w) = fresh.head_warning() {
                    eprintln!("warning: {w}");
                }
                self.metrics.set_engine(&fresh);
                self.engine.store(Arc::new(fresh));
                self.metrics.swaps.inc();
                return Ok(true);
            }
            // Writes went to the old engine while this one opened: open again.
        }
        Ok(false)
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
