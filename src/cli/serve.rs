//! `shelfrank serve`: the HTTP service over an index (see `shelfrank::server`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use shelfrank::server::{self, Limits, ServerConfig};

use super::{ModelArgs, DEFAULT_INDEX};

#[derive(Args)]
pub struct ServeArgs {
    /// Index directory.
    #[arg(long, default_value = DEFAULT_INDEX)]
    index: PathBuf,
    /// Address to listen on (port 0: any free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:7700")]
    addr: SocketAddr,
    #[command(flatten)]
    model: ModelArgs,
    /// File holding the bearer token that write endpoints (events, users, products)
    /// require. Without it, writes are open to anyone who can reach the address.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Searches and reranks worked on at once, and as many writes (a pool of their
    /// own); more are refused with 503 and Retry-After: 1 (default: 4 per core).
    #[arg(long)]
    max_inflight: Option<usize>,
    /// Seconds a request may take before it is answered 503.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Milliseconds between checks for a newly built generation.
    #[arg(long, default_value_t = 500)]
    poll_ms: u64,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Changed products (upserts and deletes) after which the catalog updates are
    /// merged into a new generation in the background.
    #[arg(long, default_value_t = server::DEFAULT_MERGE_AFTER)]
    merge_after: usize,
    /// Query texts whose embeddings are cached (0: no cache).
    #[arg(long, default_value_t = shelfrank::engine::DEFAULT_QUERY_CACHE)]
    query_cache: usize,
}

pub fn run(a: ServeArgs) -> Result<()> {
    let mut config = ServerConfig::new(a.addr);
    if let Some(n) = a.max_inflight {
        config.max_inflight = n;
    }
    if let Some(path) = &a.token_file {
        config.token = Some(server::load_token(path)?);
    }
    config.request_timeout = Duration::from_secs(a.timeout_secs.max(1));
    config.poll_interval = Duration::from_millis(a.poll_ms.max(10));
    config.limits.max_body_bytes = a.max_body_bytes;
    config.merge_after = a.merge_after.max(1);
    // Writes wait for another process's write (a build's publish is short) rather
    // than failing; the request timeout bounds the wait.
    let opener = a
        .model
        .builder(&a.index, true)?
        .query_cache(a.query_cache)
        .wait_for_lock(true);
    server::serve(config, opener, |addr| {
        let mut out = std::io::stdout().lock();
        // Tests and scripts read this line to learn the port.
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = out.flush();
    })?;
    Ok(())
}
