//! The HTTP service (feature `server`): a thin layer over the library, served by
//! `shelfrank serve`.
//!
//! | file | job |
//! | --- | --- |
//! | `mod.rs` | [`ServerConfig`], [`serve`]: runtime, bind, graceful shutdown |
//! | `routes.rs` | the router, one handler per endpoint, the OpenAPI document |
//! | `api.rs` | request and response bodies, the JSON extractor, [`Limits`] |
//! | `error.rs` | [`ApiError`]: the one mapping of library errors to statuses |
//! | `metrics.rs` | Prometheus metrics and the middleware that counts requests |
//! | `state.rs` | the engine holder, worker permits, the write gate, the swap watcher, the background merge |
//!
//! Engine work runs on tokio's blocking pool, at most `max_inflight` reads and as
//! many writes worked on or waiting at once (two pools, so a flood of searches
//! cannot refuse events); one more is refused with 503 and `Retry-After: 1` (the
//! queue is bounded). A
//! background task watches the index's `CURRENT` and swaps in each generation a
//! build publishes; requests in flight finish on the engine they started with.
//! SIGTERM or Ctrl-C stops accepting connections, lets requests in flight finish,
//! and returns.

mod api;
mod error;
mod metrics;
mod routes;
mod state;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use api::Limits;
pub use error::{ApiError, ErrorBody};
pub use routes::{router, ApiDoc};
pub use state::{AppState, Shared};

use crate::EngineBuilder;

/// How long the generation watcher waits between two reads of `CURRENT`: a new
/// build is served within about half a second, and reading a 12-byte file twice a
/// second costs nothing.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Longest time one request may take before it is answered 503 (the engine work
/// behind it still finishes, holding its permit).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The service's settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen (port 0: any free port).
    pub addr: SocketAddr,
    /// Reads the engine may work on at once; writes have as many permits again.
    pub max_inflight: usize,
    /// The bearer token write endpoints require; `None`: writes are open.
    pub token: Option<String>,
    /// Request limits.
    pub limits: Limits,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Interval between reads of `CURRENT`.
    pub poll_interval: Duration,
    /// Changed products (upserted or deleted) after which the catalog updates are
    /// merged into a new generation in the background.
    pub merge_after: usize,
}

impl ServerConfig {
    /// Defaults for `addr`: 4 permits per core, no token, default limits.
    pub fn new(addr: SocketAddr) -> Self {
        ServerConfig {
            addr,
            max_inflight: default_max_inflight(),
            token: None,
            limits: Limits::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            poll_interval: DEFAULT_POLL_INTERVAL,
            merge_after: DEFAULT_MERGE_AFTER,
        }
    }
}

/// Default [`ServerConfig::merge_after`]: 1,000 changed products. Until a merge,
/// each search scans the changed products directly (about a microsecond each), so
/// this bounds that cost to around a millisecond, while merges (a rebuild of the
/// graph and keyword index from stored embeddings) stay rare.
pub const DEFAULT_MERGE_AFTER: usize = 1000;

/// 32 permits per core: a bounded queue. Requests beyond the cores wait on the
/// blocking pool (and concurrent query encodes share forward passes, so a deeper
/// queue raises throughput); at a few milliseconds of work each, a full queue
/// waits some tens of milliseconds, and one more request is refused with 503
/// instead of waiting longer.
pub fn default_max_inflight() -> usize {
    32 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The index could not be opened.
    #[error(transparent)]
    Open(#[from] crate::Error),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The token file could not be read or is empty.
    #[error("token file {}: {reason}", path.display())]
    Token {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An option is out of range.
    #[error("invalid {what}: {reason}")]
    Config {
        /// The option.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The async runtime failed to start or the server failed while serving.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads a bearer token from `path`: its content, trimmed; an empty one is refused.
pub fn load_token(path: &Path) -> Result<String, ServerError> {
    let text = std::fs::read_to_string(path).map_err(|e| ServerError::Token {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ServerError::Token {
            path: path.to_path_buf(),
            reason: "it is empty; put the token in it".into(),
        });
    }
    Ok(token.to_string())
}

/// Opens the index with `opener`, listens on `config.addr`, calls `on_listening`
/// with the bound address, and serves until SIGTERM or Ctrl-C; then waits for the
/// requests in flight and returns.
pub fn serve(
    config: ServerConfig,
    opener: EngineBuilder,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    if config.max_inflight == 0 {
        return Err(ServerError::Config {
            what: "max_inflight",
            reason: "must be at least 1".into(),
        });
    }
    let engine = opener.clone().build()?;
    if let Some(w) = engine.head_warning() {
        eprintln!("warning: {w}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // The permits bound the engine's work (reads and writes); a few more
        // threads for the generation watcher.
        .max_blocking_threads(2 * config.max_inflight + 4)
        .build()?;
    let addr = config.addr;
    let shared: AppState = Arc::new(Shared::new(config, opener, engine));
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        on_listening(listener.local_addr()?);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let watcher = tokio::spawn(state::watch_generations(Arc::clone(&shared), stop_rx));
        let app = router(Arc::clone(&shared));
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await;
        let _ = stop_tx.send(true);
        let _ = watcher.await;
        served.map_err(ServerError::Io)
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    eprintln!("shutting down: finishing requests in flight");
}
